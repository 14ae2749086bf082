"""How long does a full sample take? Project it from the tracked RunRecords, per stage and GPU count.

    python -m scripts.project                            # every machine and commit, the `full` dataset
    python -m scripts.project --sample reads.fa          # your own FASTA (counted, no model) instead
    python -m scripts.project --target 10 --json projection.json
    python -m scripts.project --samples 48 --gpus-per-node 4 --nodes 6   # a cohort of samples on 6 nodes

Prints, per machine, the latest commit's table (hours per stage for 1, 2, 4 and 8 GPUs, interval,
pass/fail, largest sample within the target), the cohort table (projected) and the projection across
commits; ``--json`` writes every group. Exit 0 on success (also when the target is missed); 2 when there
is nothing to project. docs/projection.md explains the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from analysis import markdown as M
from analysis.fmt import fmt_hours
from analysis.history import history_section
from analysis.output import atomic_write
from analysis.projection import projection_document, series_key
from scripts import options


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_arguments(parser)
    parser.add_argument("--json", type=Path, help="write every group's projection to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="print nothing but warnings")
    return parser.parse_args(argv)


def render(document: dict) -> str:
    out = [f"# Projected hours for a full sample, target {fmt_hours(document['target_hours'])} h", ""]
    series: dict[tuple, list[dict]] = {}
    for group in document["groups"]:  # oldest first: the document's order
        series.setdefault(series_key(group), []).append(group)
    for (machine, *_), groups in series.items():
        latest = groups[-1]
        out += [M.projection_markdown(latest, latest["composition"]), ""]
        if latest.get("cohort"):
            out += [M.cohort_markdown(latest["cohort"]), ""]
        if len(groups) > 1:
            history = history_section(groups, {}, machine)
            out += [f"Across commits on {machine}:", "", M.history_markdown(history, document["gpu_counts"]), ""]
    if document["skipped"]:
        out += [f"{len(document['skipped'])} record(s) left out (see the JSON's `skipped`)."]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        document = projection_document(options.query(args))
    except ValueError as err:
        print(f"project: {err}", file=sys.stderr)
        return 2
    if args.json:
        with atomic_write(args.json) as handle:
            json.dump(document, handle, indent=1)
    if not args.quiet:
        print(render(document), end="")
    for group in document["groups"]:
        check = group["check"]
        if check.get("warning"):
            print(
                f"project: warning: {group['machine']} {group['commit']}: predicting '{check['to']}' from "
                f"'{check['from']}' is off by {check['max_abs_error']:.1%} (> {check['tolerance']:.0%})",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
