#!/usr/bin/env python
"""Render the report from the tracked results: Markdown, PNG plots, and the same content as JSON.

    python scripts/report.py                                  # latest commit of the latest machine
    python scripts/report.py --machine h200 --commit abcd1234 --out docs/report

Writes report.md, report.json and the plots into --out (default docs/report). Sections whose data is
missing (no GPU samples in CPU runs, one variant, one GPU count) say so instead of failing.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/project.py, beside this file
from project import ROOT, add_common_arguments, load_projections, series_key  # noqa: E402

from benchmarks.harness import projection as P  # noqa: E402
from benchmarks.harness import plots  # noqa: E402
from benchmarks.harness import reporting as R  # noqa: E402
from vnp.atomic import atomic_write  # noqa: E402
from vnp.errors import InputError, VnpError  # noqa: E402

REPORT_SCHEMA = "vnp-report/1"
SCALE_RANK = {"full": 3, "gpu": 2, "ci": 1}
PLOTS = {
    "projection": lambda report: plots.plot_projection(report["projection"]["projection"]),
    "stages": lambda report: plots.plot_stage_breakdown(report["stage_breakdown"]),
    "memory_timeline": lambda report: plots.plot_memory_timeline(report["memory_timeline"]),
    "scaling": lambda report: plots.plot_scaling(report["scaling"]),
    "variants": lambda report: plots.plot_variants(report["variants"]),
    "history": lambda report: plots.plot_history(report["history"], report["target_hours"]),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--tool", help="the harness target: vnp or cli (default: vnp if measured)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report", help="output folder")
    return parser.parse_args(argv)


def choose_group(groups: list[dict], args: argparse.Namespace) -> dict:
    """The group the report is about: the asked-for one, else the newest commit of the largest scale."""
    candidates = [
        g
        for g in groups
        if (not args.machine or g["machine"] == args.machine)
        and (not args.tool or g["target"] == args.tool)
        and (not args.commit or g["commit"].startswith(args.commit[:8]))
    ]
    if not candidates:
        raise InputError("no projection matches --machine/--tool/--commit")
    return max(
        candidates,
        key=lambda g: (g["target"] == "vnp", SCALE_RANK.get(g["scale"], 0), g["date"], g["started_at"]),
    )


def group_records(results: Path, group: dict) -> list[dict]:
    """The chosen group's successful, complete runs of every variant (the variants section needs them)."""
    records, _ = P.load_records(results)
    selected = []
    for _, record in records:
        h = record["harness"]
        chunk_size = h.get("model_type") or ((record.get("run") or {}).get("config") or {}).get("chunk_size")
        same = (h.get("machine"), str(h.get("commit"))[:8], h.get("target") or "vnp", h.get("scale") or "unknown") == (
            group["machine"], group["commit"], group["target"], group["scale"]
        ) and chunk_size in (group["chunk_size"], None)
        ok = h.get("exit_code", 0) == 0 and h.get("validated") is not False and not h.get("resumed")
        if same and ok:
            selected.append(record)
    return selected


def hardware(records: list[dict]) -> dict:
    gpus = [gpu for r in records for gpu in ((r.get("run") or {}).get("host") or {}).get("gpus") or []]
    if not gpus:
        return {"description": None, "gpus": []}
    by_index = {gpu.get("index"): gpu for gpu in gpus}
    names = Counter(f"{gpu.get('name')} ({R.fmt_bytes(gpu.get('total_bytes'))})" for gpu in by_index.values())
    return {"description": ", ".join(f"{n} × {name}" for name, n in names.items()), "gpus": list(by_index.values())}


def build_report(args: argparse.Namespace) -> dict:
    history_args = copy.copy(args)
    history_args.commit = None  # every commit, for the history section
    document = load_projections(history_args)
    group = choose_group(document["groups"], args)
    records = group_records(args.results, group)
    runs = [r for r in records if str(r["harness"].get("variant") or "default") == group["variant"]]
    reference = R.reference_record(runs)
    sections = {
        "stage_breakdown": R.stage_breakdown_section(runs),
        "memory_timeline": R.memory_timeline_section(reference),
        "peak_memory": R.peak_memory_section(reference),
        "variants": R.variants_section(records),
        "scaling": R.scaling_section(runs),
        "throughput": R.throughput_section(runs),
        "utilisation": R.utilisation_section(reference),
        "token_budget": R.token_budget_section(runs),
    }
    series = [g for g in document["groups"] if series_key(g) == series_key(group)]
    return {
        "schema": REPORT_SCHEMA,
        "machine": group["machine"],
        "commit": group["commit"],
        "scale": group["scale"],
        "target": group["target"],
        "variant": group["variant"],
        "target_hours": document["target_hours"],
        "gpu_counts": document["gpu_counts"],
        "hardware": hardware(runs),
        "synthetic_weights": any((r.get("run") or {}).get("synthetic_weights") for r in runs),
        "projection": group,
        "projection_markdown": R.projection_markdown(group, group["composition"]),
        "bottleneck": R.bottleneck_section(
            group["projection"], group["fit"], sections["variants"], sections["utilisation"], runs
        ),
        **sections,
        "history": R.history_section(series, R.read_asv_results(args.results), group["machine"], _history_gpus(group)),
        "skipped": document["skipped"],
    }


def _history_gpus(group: dict) -> int:
    """History is shown for the requirement's 4-GPU host (or the largest count projected)."""
    counts = [row["gpus"] for row in group["projection"]["rows"]]
    return 4 if 4 in counts else max(counts)


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = {}
    for name, plot in PLOTS.items():
        figure = plot(report)
        if figure is not None:
            plots.save_figure(figure, out / f"{name}.png")
            report["plots"][name] = f"{name}.png"
    with atomic_write(out / "report.json") as handle:
        json.dump(report, handle, indent=1)
    with atomic_write(out / "report.md") as handle:
        handle.write(R.render_markdown(report))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = build_report(args)
    except (VnpError, ValueError) as err:
        print(f"report: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    write_report(report, args.out)
    print(f"report: {args.out / 'report.md'} ({report['machine']}, commit {report['commit']}, scale {report['scale']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
