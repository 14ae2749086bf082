"""The report and the projection as Markdown, from the JSON-ready dicts of the sections."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from analysis.advice import CARD_SIZES_GB
from analysis.fmt import (
    fmt_bytes,
    fmt_count,
    fmt_hours,
    fmt_percent,
    fmt_ratio,
    fmt_seconds,
    gpus_label,
    markdown_table,
    plural,
)


def projection_markdown(group: Mapping, composition_info: Mapping) -> str:
    """The projection table of one group (machine, commit, scale, variant), with its verdict and check."""
    projection, fit = group["projection"], group["fit"]
    rows, target = projection["rows"], projection["target_hours"]
    comp = composition_info.get("composition") or {}
    estimated = composition_info.get("estimated") or []
    lines = []
    if group["scale"] == "ci":
        lines += [
            "> `ci` scale: tiny models on CPU. These hours exercise the machinery; "
            "they say nothing about the real pipeline.",
            "",
        ]
    lines += [
        f"**{group['machine']}**, commit `{group['commit']}`, scale `{group['scale']}`, target `{group['target']}`, "
        f"variant `{group['variant']}`, chunk size {group.get('chunk_size') or 'any'}: "
        f"fitted on {plural(fit['runs'], 'run')} (datasets {', '.join(fit['datasets'])}; "
        f"GPU counts measured {', '.join(map(str, fit['measured_gpus']))}).",
        "",
        f"Sample: {fmt_count(comp.get('reads'))} reads, {fmt_count(comp.get('frames'))} frames, "
        f"{fmt_count(comp.get('esm_tokens'))} ESM tokens, {fmt_count(comp.get('dnabert_tokens'))} DNABERT tokens "
        f"({composition_info.get('source', 'unknown source')}"
        + (f"; estimated from the measured runs' per-read ratios: {', '.join(estimated)}" if estimated else "")
        + ").",
        "",
        "Projected hours (interval from the fastest and slowest repeats):",
        "",
        _projection_table(rows, target),
        "",
    ]
    if any(r["extrapolated"] for r in rows):
        lines += [
            "\\* extrapolated: Amdahl's law fitted on the measured GPU counts "
            "(ideal scaling if only one was measured).",
            "",
        ]
    fewest = projection["fewest_gpus_meeting_target"]
    if fewest is None:
        lines.append(f"**No GPU count up to {rows[-1]['gpus'] if rows else '?'} meets {fmt_hours(target)} h.**")
    else:
        kind = "extrapolated" if projection["fewest_gpus_extrapolated"] else "measured GPU count"
        lines.append(f"**Fewest GPUs meeting {fmt_hours(target)} h: {fewest}** ({kind}).")
    lines += ["", check_markdown(group["check"])]
    if group.get("measured_sample"):
        lines += ["", measured_sample_markdown(group["measured_sample"])]
    if fit.get("flags"):
        lines += ["", "Model notes: " + "; ".join(fit["flags"]) + "."]
    return "\n".join(lines)


def _projection_table(rows: Sequence[Mapping], target: float) -> str:
    """Hours per stage and GPU count, the total with its interval, the verdict and the limits."""
    header = ["stage"] + [gpus_label(r["gpus"]) + ("*" if r["extrapolated"] else "") for r in rows]
    stages = list(rows[0]["stages"]) if rows else []
    body = [[f"`{name}`"] + [fmt_hours(r["stages"][name]["hours"]) for r in rows] for name in stages]
    body.append(
        ["**total**"]
        + [
            f"**{fmt_hours(r['total_hours'])}** ({fmt_hours(r['low_hours'])}–{fmt_hours(r['high_hours'])})"
            for r in rows
        ]
    )
    body.append([f"{fmt_hours(target)} h target"] + ["PASS" if r["meets_target"] else "FAIL" for r in rows])
    body.append(
        [f"largest sample in {fmt_hours(target)} h (reads)"] + [fmt_count(r["max_reads_within_target"]) for r in rows]
    )
    body.append(["scaling efficiency"] + [fmt_percent(r["scaling_efficiency"]) for r in rows])
    return markdown_table(header, body)


def check_markdown(check: Mapping) -> str:
    if not check.get("available"):
        return f"Check ({check['from']} → {check['to']}): not available, {check.get('reason', 'unknown reason')}."
    parts = ", ".join(
        f"{gpus_label(r['gpus'])}{' (extrapolated)' if r.get('extrapolated') else ''}: "
        f"{fmt_seconds(r['predicted_seconds'])} s predicted, "
        f"{fmt_seconds(r['measured_seconds'])} s measured ({r['error']:+.1%})"
        for r in check["per_gpus"]
    )
    verdict = (
        f"**WARNING: error above {check['tolerance']:.0%}**; treat the projection with care."
        if check["warning"]
        else f"within {check['tolerance']:.0%}."
    )
    return f"Check: fitted on `{check['from']}` alone, the `{check['to']}` runs are predicted {parts}: {verdict}"


def measured_sample_markdown(rows: Sequence[Mapping]) -> str:
    """The projected sample itself, measured: each run against this projection at its GPU count."""
    parts = []
    for r in rows:
        notes = [note for note, on in (("in the fit", r["in_fit"]), ("extrapolated", r["extrapolated"])) if on]
        parts.append(
            f"{gpus_label(r['gpus'])} (commit `{r['commit']}`{'; ' + ', '.join(notes) if notes else ''}): "
            f"{fmt_hours(r['measured_seconds'] / 3600)} h measured, "
            f"{fmt_hours(r['projected_seconds'] / 3600)} h projected "
            f"({r['error']:+.1%})"
        )
    return "Measured on the sample itself: " + "; ".join(parts) + "."


def history_markdown(history: Mapping, gpu_counts: Sequence[int]) -> str:
    if not history["rows"]:
        return "No projections to compare across commits."
    header = ["commit", "date"] + [f"hours on {gpus_label(g)}" for g in gpu_counts] + ["fewest GPUs", "fitted on"]
    body = []
    for row in history["rows"]:
        date = row["date"]
        day = np.datetime64(int(date), "ms").astype("datetime64[D]") if date else "n/a"
        body.append(
            [f"`{row['commit']}`", str(day)]
            + [fmt_hours(row["hours"].get(str(g))) for g in gpu_counts]
            + [row["fewest_gpus_meeting_target"] or "none", ", ".join(row.get("fitted_on") or []) or "n/a"]
        )
    return markdown_table(header, body)


def _section(title: str, section: Mapping, header: Sequence[str], cells, intro: str | None = None) -> list[str]:
    """A ``## title`` section: an intro and a table of the section's rows, or its note when it has none."""
    out = [f"## {title}", ""]
    if not section.get("rows"):
        return out + [f"_{section.get('note') or 'nothing measured'}_", ""]
    out += ([intro, ""] if intro else []) + [markdown_table(header, [cells(row) for row in section["rows"]]), ""]
    return out + ([f"_{section['note']}_", ""] if section.get("note") else [])


def _signed_bytes(value: float | None) -> str:
    return "n/a" if value is None else ("+" if value >= 0 else "−") + fmt_bytes(abs(value))


def cohort_markdown(cohort: Mapping) -> str:
    """The cohort table: N samples on 1 .. K nodes, marked as projected."""
    header = ["nodes", "GPUs", "samples per node", "hours (projected)", "interval", "node-hours"]
    body = [
        [
            r["nodes"],
            r["gpus"],
            r["samples_per_node"],
            f"**{fmt_hours(r['hours'])}**",
            f"{fmt_hours(r['low_hours'])}–{fmt_hours(r['high_hours'])}",
            fmt_hours(r["node_hours"]),
        ]
        for r in cohort["rows"]
    ]
    extrapolated = " (extrapolated: that GPU count was not measured)" if cohort["extrapolated"] else ""
    return "\n".join(
        [
            f"**Projected, not measured:** {cohort['samples']} samples like the one above, one `vnp predict` per "
            f"sample on nodes of {gpus_label(cohort['gpus_per_node'])}; one sample takes "
            f"{fmt_hours(cohort['sample_hours'])} h{extrapolated}, and a node runs its samples one after another.",
            "",
            markdown_table(header, body),
        ]
    )


def render_markdown(report: Mapping) -> str:
    """The whole report as Markdown, from the dict the ``report`` entry point builds (and saves as JSON)."""
    parts = (
        _title,
        _answer,
        _against,
        _cohort,
        _bottleneck,
        _stage_breakdown,
        _memory,
        _variants,
        _scaling,
        _throughput,
        _utilisation,
        _token_budget,
        _history,
        _left_out,
    )
    images = _Images(report.get("plots") or {})
    out = [line for part in parts for line in part(report, images)]
    return "\n".join(out).rstrip() + "\n"


class _Images:
    """The plots the report has, as Markdown image lines (none when a plot was not drawn)."""

    def __init__(self, plots: Mapping[str, str]):
        self.plots = plots

    def __call__(self, name: str, alt: str) -> list[str]:
        return [f"![{alt}]({self.plots[name]})", ""] if name in self.plots else []


def _title(report: Mapping, image: _Images) -> list[str]:
    hardware = report.get("hardware") or {}
    synthetic = (
        " Weights were synthetic (speed and memory real, labels not)." if report.get("synthetic_weights") else ""
    )
    return [
        f"# VirNucPro on `{report['machine']}`: can a full sample finish in {fmt_hours(report['target_hours'])} h?",
        "",
        f"Commit `{report['commit']}`, scale `{report['scale']}`, target `{report['target']}`, "
        f"variant `{report['variant']}`. GPUs: {hardware.get('description') or 'none (CPU runs)'}." + synthetic,
        "",
    ]


def _answer(report: Mapping, image: _Images) -> list[str]:
    return [
        "## The answer",
        "",
        report.get("projection_markdown") or "_no projection_",
        "",
        *image("projection", "projected hours per GPU count"),
    ]


def _against(report: Mapping, image: _Images) -> list[str]:
    section = report.get("against")
    return ["## Against VirNucPro", "", *against_markdown(section), ""] if section and section["rows"] else []


def against_markdown(section: Mapping) -> list[str]:
    """The side-by-side table: each program on the same card, reads and weights, and the fork's cited figure."""
    def agreement(row: Mapping) -> str:
        found = row.get("agreement")
        if row["program"] == "original":
            return "(the reference)"
        if not found:
            return "not compared"
        order = "same IDs, same order" if found["same_ids"] and found["same_order"] else "IDs or order differ"
        differ = round((1 - found["labels"]) * found["frames"])
        labels = f"{differ:,} of {found['frames']:,} labels differ" if differ else "all labels equal"
        return (f"{labels}, calls {100 * found['chunks']:.2f}% equal, "
                f"scores within {found['max_score_difference']:.1g}; {order}")

    rows = [[row["label"], f"`{row['source']}`", fmt_seconds(row["wall_seconds"]), fmt_count(row["reads_per_second"]),
             fmt_count(row["esm_tokens_per_second"]), fmt_hours(row["projected_hours"]["1"]),
             fmt_hours(row["projected_hours"]["4"]) if row["projected_hours"]["4"] is not None else "one GPU only",
             fmt_ratio(row["vnp_speedup"]), agreement(row)] for row in section["rows"]]
    cited = section["cited"]
    rows.append([cited["label"], "", fmt_seconds(cited["seconds"]) + f" ({fmt_count(cited['reads'])} reads)",
                 fmt_count(cited["reads_per_second"]), "n/a", fmt_hours(cited["projected_hours_1"]), "", "", ""])
    return [
        f"The same `{section['role']}` reads and the same seeded random weights (one weights kit in each program's "
        f"own formats) on `{section['machine']}`, vnp at commit `{section['commit']}`. Projected hours: a whole "
        "sample by each run's own cost model (one run: proportional per stage, ideal scaling over GPUs). vnp's "
        "speed-up is the program's wall time over vnp's default run; agreement is with the original's outputs.",
        "",
        markdown_table(["program", "at", "wall s", "reads/s", "ESM-2 tokens/s", "sample h, 1 GPU", "sample h, 4 GPUs",
                        "vnp faster by", "outputs against the original"], rows),
    ]


def _cohort(report: Mapping, image: _Images) -> list[str]:
    cohort = report.get("cohort")
    return ["## A cohort of samples (projected)", "", cohort_markdown(cohort), ""] if cohort else []


def _bottleneck(report: Mapping, image: _Images) -> list[str]:
    bottleneck = report["bottleneck"]
    findings = [f"- {line}" for line in bottleneck["findings"]] or [f"_{bottleneck.get('note')}_"]
    return ["## Bottleneck", "", *findings, "", *kernel_bottleneck_markdown(report.get("kernels"))]


MODEL_NAMES = {"esm2": "ESM-2", "dnabert": "DNABERT-S"}


def kernel_bottleneck_markdown(section: Mapping | None) -> list[str]:
    """Inside the models: time per category between the GEMMs, the GEMM-only ceiling, what to fuse next."""
    if not section:
        return []
    out = ["### Inside the models: between the GEMMs", ""]
    if section["note"]:
        return [*out, f"_{section['note']}_", ""]
    out += [f"From the asv `kernels` suite on `{section['machine']}`, commit `{section['commit']}`: one packed batch "
            "per model under torch's profiler; the ceiling is the same shapes' GEMMs alone, timed in the same process.",
            ""]
    for row in section["rows"]:
        fuse_next = f" Fuse next: `{row['fuse_next']}`." if row["fuse_next"] else ""
        out += [f"**{MODEL_NAMES.get(row['model'], row['model'])}, {row['kernels']} kernels**: "
                f"{fmt_percent(row['fraction_of_gemm_ceiling'])} of its GEMM-only ceiling, "
                f"{fmt_seconds(row['seconds_per_million_tokens'])} s per million tokens.{fuse_next}", "",
                markdown_table(["category", "ns per token", "share of the profiled time"],
                               [[f"`{c['category']}`", _fmt_number(c["ns_per_token"]), fmt_percent(c["share"])]
                                for c in row["categories"]]), ""]
    history = section["history"]
    if len(history) > 1:
        columns = sorted({key for entry in history for key in entry["fraction_of_gemm_ceiling"]})
        out += ["Share of the GEMM-only ceiling per commit (oldest first):", "",
                markdown_table(["commit", *columns],
                               [[f"`{entry['commit']}`", *(fmt_percent(entry["fraction_of_gemm_ceiling"].get(key))
                                                           for key in columns)] for entry in history]), ""]
    return out


def _fmt_number(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:,.1f}"


def _stage_breakdown(report: Mapping, image: _Images) -> list[str]:
    breakdown = report["stage_breakdown"]
    out = ["## Stage breakdown", ""]
    for row in breakdown["rows"]:
        table = markdown_table(
            ["stage", "seconds", "share"],
            [[f"`{s['stage']}`", fmt_seconds(s["seconds"]), fmt_percent(s["share"])] for s in row["stages"]],
        )
        out += [
            f"`{row['dataset']}` on {gpus_label(row['gpus'])} ({plural(row['runs'], 'run')}, "
            f"wall {fmt_seconds(row['wall_seconds'])} s):",
            "",
            table,
            "",
        ]
    out += [f"_{breakdown['note']}_", ""] if breakdown.get("note") else []
    return out + image("stages", "stage breakdown")


def _memory(report: Mapping, image: _Images) -> list[str]:
    timeline = report["memory_timeline"]
    out = ["## GPU memory over time", ""]
    if timeline.get("available"):
        out += [
            f"`{timeline['dataset']}` on {gpus_label(timeline['gpus_in_run'])}, repeat {timeline['repeat']}; "
            "shaded spans are the stages each GPU was in, the dashed line the card's memory.",
            "",
            *image("memory_timeline", "GPU memory timeline"),
        ]
    else:
        out += [f"_{timeline['note']}_", ""]
    return out + _section(
        "Peak GPU memory per stage",
        report["peak_memory"],
        ["stage", "GPU", "torch allocated", "torch reserved", "NVML (card)"],
        lambda p: [
            f"`{p.get('stage')}`",
            p.get("gpu"),
            fmt_bytes(p.get("torch_peak_allocated_bytes")),
            fmt_bytes(p.get("torch_peak_reserved_bytes")),
            fmt_bytes(p.get("nvml_peak_bytes")),
        ],
    )


def _variants(report: Mapping, image: _Images) -> list[str]:
    variants = report["variants"]
    return _section(
        "Optimisations (variants)",
        variants,
        ["variant", "ESM-2 ran in", "runs", "wall s", "speed-up", "peak GPU memory", "memory vs baseline"],
        lambda r: [
            f"`{r['variant']}`",
            r["precision_used"],
            r["runs"],
            fmt_seconds(r["wall_seconds"]),
            fmt_ratio(r["speedup"]),
            fmt_bytes(r["peak_gpu_bytes"]),
            _signed_bytes(r["memory_delta_bytes"]),
        ],
        intro=variants["rows"] and f"`{variants['dataset']}` on {gpus_label(variants['gpus'])}; against `baseline`.",
    ) + image("variants", "variant speed-ups")


def _scaling(report: Mapping, image: _Images) -> list[str]:
    scaling = report["scaling"]
    return _section(
        "Scaling",
        scaling,
        ["GPUs", "wall s", "speed-up", "ideal", "efficiency", "GPU-stage speed-up", "GPU-stage efficiency"],
        lambda r: [
            r["gpus"],
            fmt_seconds(r["wall_seconds"]),
            fmt_ratio(r["speedup"]),
            fmt_ratio(r["ideal_speedup"]),
            fmt_percent(r["efficiency"]),
            fmt_ratio(r["gpu_stage_speedup"]),
            fmt_percent(r["gpu_stage_efficiency"]),
        ],
        intro=scaling["rows"] and f"`{scaling['dataset']}`, relative to {gpus_label(scaling['relative_to_gpus'])}:",
    ) + image("scaling", "scaling curve")


def _throughput(report: Mapping, image: _Images) -> list[str]:
    return _section(
        "Throughput",
        report["throughput"],
        ["dataset", "GPUs", "reads/s", "frames/s", "ESM tokens/s (esm2)", "DNABERT tokens/s (dnabert)"],
        lambda r: [
            f"`{r['dataset']}`",
            r["gpus"],
            fmt_count(r["reads_per_second"]),
            fmt_count(r["frames_per_second"]),
            fmt_count(r["esm_tokens_per_second"]),
            fmt_count(r["dnabert_tokens_per_second"]),
        ],
    )


def _utilisation(report: Mapping, image: _Images) -> list[str]:
    return _section(
        "GPU utilisation",
        report["utilisation"],
        ["GPU", "busy % (GPU stages)", "busy % (whole run)", "power W (GPU stages)"],
        lambda r: [
            r["gpu"],
            fmt_seconds(r["util_percent_gpu_stages"]),
            fmt_seconds(r["util_percent_run"]),
            fmt_seconds(r["power_w_gpu_stages"]),
        ],
    )


def _token_budget(report: Mapping, image: _Images) -> list[str]:
    budget = report["token_budget"]
    rows = {"rows": [{"stage": name, **stage} for name, stage in budget["stages"].items()], "note": budget["note"]}
    cards = [str(gb) for gb in CARD_SIZES_GB]
    methods = "; ".join(f"`{name}`: {s['method']}" for name, s in budget["stages"].items())
    return _section(
        "Token budget per card",
        rows,
        ["stage", "bytes/token", "static", "measured budgets"] + [f"{gb} GB" for gb in cards],
        lambda s: (
            [
                f"`{s['stage']}`",
                fmt_count(s["bytes_per_token"]),
                fmt_bytes(s["static_bytes"]),
                ", ".join(map(str, s["measured_budgets"])),
            ]
            + [f"{s['budget_by_card_gb'][gb]:,}" for gb in cards]
        ),
        intro=f"Largest token budget per batch that keeps {fmt_percent(1 - budget['headroom'])} of the card free, "
        f"at precision `{budget['precision']}` (0: the models alone do not fit). {methods}.",
    )


def _history(report: Mapping, image: _Images) -> list[str]:
    return [
        "## History",
        "",
        history_markdown(report["history"], report["gpu_counts"]),
        "",
        *image("history", "projection history"),
    ]


def _left_out(report: Mapping, image: _Images) -> list[str]:
    if not report.get("skipped"):
        return []
    return ["## Records left out", "", *[f"- {line}" for line in report["skipped"]], ""]
