"""Render the report from the tracked RunRecords: Markdown, PNG plots, and the same content as JSON.

    python -m scripts.report                                  # latest commit of the latest machine
    python -m scripts.report --machine h200 --commit abcd1234 --out docs/report

Writes report.md, report.json and the plots into --out (default docs/report). Sections whose data is
missing (no GPU samples in CPU runs, one variant, one GPU count) say so instead of failing. The cohort
table (--samples, --gpus-per-node, --nodes) is projected from the same cost model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

from analysis import advice, plots, sections
from analysis import markdown as M
from analysis.against import against_section
from analysis.fmt import fmt_bytes
from analysis.history import history_section, read_asv_results
from analysis.output import atomic_write
from analysis.projection import projection_document, series_key
from analysis.record import Record, load_records
from scripts import options

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
    options.add_arguments(parser)
    parser.add_argument("--tool", help="the harness target: vnp or cli (default: vnp if measured)")
    parser.add_argument("--out", type=Path, default=options.ROOT / "docs" / "report", help="output folder")
    return parser.parse_args(argv)


def choose_group(groups: list[dict], machine: str | None, tool: str | None, commit: str | None) -> dict:
    """The group the report is about: the asked-for one, else the newest commit of the largest scale."""
    candidates = [
        g
        for g in groups
        if (not machine or g["machine"] == machine)
        and (not tool or g["target"] == tool)
        and (not commit or g["commit"].startswith(commit[:8]))
    ]
    if not candidates:
        raise ValueError("no projection matches --machine/--tool/--commit")
    return max(
        candidates, key=lambda g: (g["target"] == "vnp", SCALE_RANK.get(g["scale"], 0), g["date"], g["started_at"])
    )


def group_records(records: list[Record], group: dict) -> list[Record]:
    """The chosen group's successful, complete runs of every variant (the variants section needs them)."""
    key = (group["machine"], group["commit"], group["target"], group["scale"])
    return [
        r
        for r in records
        if (r.machine, r.commit, r.target, r.scale) == key
        and r.chunk_size in (group["chunk_size"], None)
        and r.exit_code == 0
        and r.validated is not False
        and not r.resumed
    ]


def hardware(records: list[Record]) -> dict:
    by_index = {gpu.get("index"): gpu for r in records for gpu in (r.run.get("host") or {}).get("gpus") or []}
    if not by_index:
        return {"description": None, "gpus": []}
    names = Counter(f"{gpu.get('name')} ({fmt_bytes(gpu.get('total_bytes'))})" for gpu in by_index.values())
    return {"description": ", ".join(f"{n} × {name}" for name, n in names.items()), "gpus": list(by_index.values())}


def build_report(query, machine: str | None = None, tool: str | None = None) -> dict:
    document = projection_document(dataclasses.replace(query, commit=None))  # every commit, for the history
    group = choose_group(document["groups"], machine, tool, query.commit)
    records = group_records(load_records(query.records)[0], group)
    runs = [r for r in records if r.variant == group["variant"]]
    reference = sections.reference_record(runs)
    content = {
        "stage_breakdown": sections.stage_breakdown_section(runs),
        "memory_timeline": sections.memory_timeline_section(reference),
        "peak_memory": sections.peak_memory_section(reference),
        "variants": sections.variants_section(records),
        "scaling": sections.scaling_section(runs),
        "throughput": sections.throughput_section(runs),
        "utilisation": sections.utilisation_section(reference),
        "token_budget": advice.token_budget_section(runs),
    }
    series = [g for g in document["groups"] if series_key(g) == series_key(group)]
    asv = read_asv_results(query.results) if query.results else {}
    content["kernels"] = advice.kernel_bottleneck_section(asv, group["machine"], group["commit"])
    content["against"] = against_section(load_records(query.records)[0], group["machine"], group["composition"],
                                         Path(query.records))
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
        "synthetic_weights": any(r.run.get("synthetic_weights") for r in runs),
        "projection": group,
        "projection_markdown": M.projection_markdown(group, group["composition"]),
        "cohort": group.get("cohort"),
        "bottleneck": advice.bottleneck_section(
            group["projection"], group["fit"], content["variants"], content["utilisation"], runs
        ),
        **content,
        "history": history_section(series, asv, group["machine"], _history_gpus(group)),
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
        handle.write(M.render_markdown(report))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = build_report(options.query(args), args.machine, args.tool)
    except ValueError as err:
        print(f"report: {err}", file=sys.stderr)
        return 2
    write_report(report, args.out)
    print(f"report: {args.out / 'report.md'} ({report['machine']}, commit {report['commit']}, scale {report['scale']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
