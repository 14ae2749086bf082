#!/usr/bin/env python
"""How long does a full sample take? Project it from the tracked results, per stage and GPU count.

    python scripts/project.py                           # every machine and commit in results/, `full` dataset
    python scripts/project.py --sample reads.fa         # your own FASTA (scanned, no model) instead
    python scripts/project.py --target 10 --json projection.json

Prints, per machine, the latest commit's table (hours per stage for 1, 2, 4 and 8 GPUs, interval,
pass/fail, largest sample within the target) and the projection across commits; ``--json`` writes every
group. Exit 0 on success (also when the target is missed); 2 when there is nothing to project.
docs/projection.md explains the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the working tree's harness, never an installed copy

from benchmarks.harness import projection as P  # noqa: E402
from benchmarks.harness import reporting as R  # noqa: E402
from vnp.atomic import atomic_write  # noqa: E402
from vnp.errors import InputError, VnpError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--json", type=Path, help="write every group's projection to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="print nothing but warnings")
    return parser.parse_args(argv)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with scripts/report.py: where the results are and what sample to project."""
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="asv results dir with records/")
    parser.add_argument("--target", type=float, default=P.DEFAULT_TARGET_HOURS, help="target hours (default 10)")
    parser.add_argument("--gpus", default=",".join(map(str, P.GPU_COUNTS)), help="GPU counts (default 1,2,4,8)")
    parser.add_argument("--variant", default="all", help="the pipeline variant to project (default all)")
    parser.add_argument("--machine", help="only this machine")
    parser.add_argument("--commit", help="only this commit (a prefix is enough)")
    parser.add_argument("--scale", help="only this scale (ci, gpu, full)")
    sample = parser.add_mutually_exclusive_group()
    sample.add_argument("--composition", type=Path, help="JSON with the sample's reads, frames, tokens, ...")
    sample.add_argument("--sample", type=Path, help="a FASTA to scan for its composition")
    sample.add_argument("--dataset", default="full", help="dataset definition to project (default full)")
    parser.add_argument("--datasets-file", type=Path, default=ROOT / "data" / "datasets.json")
    parser.add_argument(
        "--chunk-size", type=int, help="the sample's chunk size (model type): only runs at it are used "
        "(default: the dataset's model_type; for --sample the runs' chunk size)"
    )
    parser.add_argument("--check", help="trust check FROM:TO dataset roles (default: each group's two largest "
                        "reads datasets, e.g. typical:large or subset1m:full)")


def load_projections(args: argparse.Namespace) -> dict:
    """Read the results, project every selected group, and return the JSON document."""
    if not args.results.is_dir():
        raise InputError(f"{args.results}: no results directory")
    records, skipped = P.load_records(args.results)
    every_run, left_out = P.observations_from_records(records)
    skipped += left_out
    observations = [
        obs
        for obs in every_run
        if (not args.machine or obs.machine == args.machine)
        and (not args.commit or obs.commit.startswith(args.commit[:8]))
        and (not args.scale or obs.scale == args.scale)
    ]
    if not any(obs.variant == args.variant for obs in observations):
        found = sorted({obs.variant for obs in observations})
        raise InputError(
            f"no usable runs of variant '{args.variant}' under {args.results}/records"
            + (f" (variants found: {', '.join(found)})" if found else "")
        )
    # a scanned FASTA is chunked like the runs it is projected from, unless asked otherwise
    chunk_size = args.chunk_size or (_runs_chunk_size(records) if args.sample else None)
    composition, source, chunk_size = P.sample_composition(
        args.composition, args.sample, chunk_size, args.datasets_file, args.dataset
    )
    if args.check and ":" not in args.check:
        raise InputError(f"--check takes FROM:TO dataset roles, like typical:large, not {args.check!r}")
    check = tuple(args.check.split(":", 1)) if args.check else None
    gpu_counts = tuple(int(g) for g in args.gpus.split(","))
    # runs of the sample itself count as evidence whatever the filters (another scale or commit)
    groups = P.project_results(observations, composition, source, gpu_counts, args.target, args.variant, check, chunk_size,
                               sample_pool=every_run)
    if not groups:
        raise InputError(f"no usable runs of variant '{args.variant}' at chunk size {chunk_size}")
    dates = R.read_asv_results(args.results)
    for group in groups:
        # asv's date of the commit (ms); a commit measured only outside asv: the time of its first run
        asv_date = (dates.get(group["machine"], {}).get(group["commit"]) or {}).get("date")
        group["date"] = asv_date or int(group["started_at"] * 1000)
    groups.sort(key=lambda g: (g["machine"], g["chunk_size"] or 0, g["date"], g["started_at"]))
    return {
        "schema": P.SCHEMA,
        "results": str(args.results),
        "target_hours": args.target,
        "gpu_counts": list(gpu_counts),
        "variant": args.variant,
        "groups": groups,
        "skipped": skipped,
    }


def _runs_chunk_size(records) -> int:
    sizes = Counter(((r.get("run") or {}).get("config") or {}).get("chunk_size") for _, r in records)
    sizes.pop(None, None)
    return sizes.most_common(1)[0][0] if sizes else 500


def latest_per_machine(groups: list[dict]) -> dict[str, list[dict]]:
    """Groups per (machine, target, scale, chunk size), oldest first (the document's order)."""
    series: dict[tuple, list[dict]] = {}
    for group in groups:
        series.setdefault(series_key(group), []).append(group)
    return series


def series_key(group: dict) -> tuple:
    """Groups that form one history: the same machine, target, scale and chunk size, commit after commit."""
    return (group["machine"], group["target"], group["scale"], group["chunk_size"])


def render(document: dict) -> str:
    out = [f"# Projected hours for a full sample, target {R.fmt_hours(document['target_hours'])} h", ""]
    for (machine, *_), groups in latest_per_machine(document["groups"]).items():
        latest = groups[-1]
        out += [R.projection_markdown(latest, latest["composition"]), ""]
        if len(groups) > 1:
            history = R.history_section(groups, {}, machine)
            out += [f"Across commits on {machine}:", "", R.history_markdown(history, document["gpu_counts"]), ""]
    if document["skipped"]:
        out += [f"{len(document['skipped'])} record(s) left out (see the JSON's `skipped`)."]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        document = load_projections(args)
    except (VnpError, ValueError) as err:
        print(f"project: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
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
