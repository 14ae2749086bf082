"""The report's content: sections computed from RunRecords and projections, rendered as Markdown and PNG.

Every ``*_section`` function takes plain data (RunRecord dicts, projection dicts) and returns a
JSON-ready dict; when the data a section needs is missing (a CPU run has no GPU samples, no variant
was measured) the section says so in ``note`` instead of failing. ``render_markdown`` here and the
``plot_*`` functions of ``plots.py`` turn those dicts into the report; ``scripts/report.py`` wires them
together.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from benchmarks.harness.projection import STARTUP, stage_kind

GIB = 2**30
CARD_SIZES_GB = (24, 40, 48, 80, 141)
CARD_HEADROOM = 0.90  # keep 10% of a card free for fragmentation and the allocator's slack
BUDGET_QUANTUM = 1024  # recommended token budgets are multiples of this
VARIANTS = ("baseline", "sdpa", "bf16", "packing", "persistent", "all")
LOW_UTILISATION_PERCENT = 70.0
TIMELINE_POINTS = 2000  # per GPU, in the report's JSON and plot

Record = Mapping  # a vnp-runrecord/1 dict


# --------------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------------


def fmt_hours(hours: float | None) -> str:
    if hours is None or not math.isfinite(hours):
        return "n/a"
    return f"{hours:.2f}" if hours < 10 else f"{hours:.1f}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:,.0f}"


def fmt_count(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    for size, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:,.0f}"


def fmt_bytes(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) >= GIB:
        return f"{value / GIB:.2f} GiB"
    return f"{value / 2**20:.0f} MiB"


def fmt_ratio(value: float | None, suffix: str = "x") -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}{suffix}"


def fmt_percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def gpus_label(gpus: int) -> str:
    return plural(gpus, "GPU")


# --------------------------------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------------------------------


def harness(record: Record) -> Mapping:
    return record.get("harness") or {}


def run_of(record: Record) -> Mapping:
    return record.get("run") or {}


def stage_seconds(record: Record) -> dict[str, float]:
    """Seconds per stage in pipeline order, plus the start-up time outside every stage."""
    seconds = {
        stage["name"]: float(stage["seconds"])
        for stage in run_of(record).get("stages") or []
        if stage.get("name") and isinstance(stage.get("seconds"), (int, float))
    }
    wall = wall_seconds(record)
    if wall is not None:
        seconds[STARTUP] = max(0.0, wall - sum(seconds.values()))
    return seconds


def wall_seconds(record: Record) -> float | None:
    wall = harness(record).get("wall_seconds") or run_of(record).get("wall_seconds")
    return float(wall) if wall else None


def composition(record: Record) -> Mapping:
    """The pipeline's count of the input, else the dataset's (a `cli` run reports none)."""
    return run_of(record).get("input") or harness(record).get("expected") or {}


def config_key(record: Record) -> tuple[str, int]:
    return (str(harness(record).get("dataset")), int(harness(record).get("gpus") or 1))


def _mean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def by_config(records: Iterable[Record]) -> dict[tuple[str, int], list[Record]]:
    """Records grouped by (dataset, GPU count), configurations ordered by work then GPUs."""
    groups: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for record in records:
        groups[config_key(record)].append(record)
    size = {key: composition(rs[0]).get("reads") or 0 for key, rs in groups.items()}
    return {key: groups[key] for key in sorted(groups, key=lambda k: (size[k], k[1], k[0]))}


def reference_record(records: Sequence[Record]) -> Record | None:
    """The run the timeline and peaks are shown for: most work, then most GPUs, then the first repeat."""
    if not records:
        return None
    return max(
        records,
        key=lambda r: (composition(r).get("reads") or 0, harness(r).get("gpus") or 1, -(harness(r).get("repeat") or 0)),
    )


def gpu_peaks(record: Record) -> list[dict]:
    """Peak GPU memory per (stage, GPU): the harness's stage_peaks, else the run's own torch peaks."""
    peaks = [dict(p) for p in record.get("stage_peaks") or [] if isinstance(p, Mapping)]
    if peaks:
        return peaks
    for stage in run_of(record).get("stages") or []:
        for device in stage.get("devices") or []:
            index = str(device.get("device", "")).rpartition(":")[2]
            peaks.append(
                {
                    "stage": stage.get("name"),
                    "gpu": int(index) if index.isdigit() else index,
                    "nvml_peak_bytes": None,
                    "torch_peak_allocated_bytes": device.get("peak_allocated_bytes"),
                    "torch_peak_reserved_bytes": device.get("peak_reserved_bytes"),
                    "host_peak_rss_bytes": None,
                }
            )
    return peaks


def peak_gpu_bytes(record: Record) -> float | None:
    """The run's peak GPU memory as the card sees it (NVML), else torch's peak reserved; None if unmeasured."""
    peaks = gpu_peaks(record)
    for key in ("nvml_peak_bytes", "torch_peak_reserved_bytes"):
        values = [p.get(key) or 0 for p in peaks]
        if values and max(values) > 0:
            return float(max(values))
    return None


def nvml_samples(record: Record) -> dict[str, np.ndarray] | None:
    """The NVML sampler's columns as arrays with ``t`` in Unix seconds; None without GPU samples."""
    nvml = (record.get("samples") or {}).get("nvml") or {}
    if not nvml.get("t"):
        return None
    columns = {key: np.asarray(values, dtype=float) for key, values in nvml.items() if isinstance(values, list)}
    if len({len(values) for values in columns.values()}) != 1:
        return None
    started = harness(record).get("started_at") or run_of(record).get("started_at") or 0.0
    if columns["t"].max() < 1e9:  # relative to the run's start rather than Unix time
        columns["t"] = columns["t"] + started
    return columns


def stage_spans(record: Record, gpu: int) -> list[tuple[str, float, float]]:
    """(stage, start, end) seen from one GPU: its worker's busy intervals in the GPU stages (which
    interleave part by part), the parent process's interval for the other stages."""
    spans = []
    for stage in run_of(record).get("stages") or []:
        intervals = [
            interval
            for device in stage.get("devices") or []
            if str(device.get("device", "")).rpartition(":")[2] == str(gpu)
            for interval in device.get("intervals") or []
        ]
        if not intervals and isinstance(stage.get("start"), (int, float)) and isinstance(stage.get("end"), (int, float)):
            intervals = [(stage["start"], stage["end"])]
        spans += [(stage["name"], float(begin), float(end)) for begin, end in intervals]
    return spans


def gpu_stage_window(record: Record) -> tuple[float, float] | None:
    """First start and last end of the stages that run in the per-GPU workers."""
    spans = [
        (s["start"], s["end"])
        for s in run_of(record).get("stages") or []
        if stage_kind(s.get("name", ""))[1] and isinstance(s.get("start"), (int, float)) and s.get("end")
    ]
    return (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def stage_breakdown_section(records: Sequence[Record]) -> dict:
    """Seconds and share of each stage, averaged over repeats, per (dataset, GPU count)."""
    rows = []
    for (dataset, gpus), group in by_config(records).items():
        per_run = [stage_seconds(r) for r in group]
        names = list(dict.fromkeys(name for seconds in per_run for name in seconds))
        means = {name: _mean(seconds.get(name) for seconds in per_run) or 0.0 for name in names}
        total = sum(means.values())
        rows.append(
            {
                "dataset": dataset,
                "gpus": gpus,
                "runs": len(group),
                "wall_seconds": _mean(wall_seconds(r) for r in group),
                "stages": [
                    {"stage": name, "seconds": value, "share": value / total if total > 0 else None}
                    for name, value in means.items()
                ],
            }
        )
    return {"rows": rows, "note": None if rows else "no runs"}


def memory_timeline_section(record: Record | None) -> dict:
    """GPU memory used over time per GPU, with the stage boundaries, for one run."""
    if record is None:
        return {"available": False, "note": "no runs"}
    samples = nvml_samples(record)
    if samples is None or "mem_used_bytes" not in samples:
        return {"available": False, "note": "no GPU samples", "dataset": harness(record).get("dataset")}
    start = float(samples["t"].min())
    gpu_column = samples.get("gpu", np.zeros_like(samples["t"]))
    capacity = {gpu.get("index"): gpu.get("total_bytes") for gpu in (run_of(record).get("host") or {}).get("gpus") or []}
    gpus = []
    for gpu in np.unique(gpu_column):
        spans = [
            {"stage": name, "start": begin - start, "end": end - start} for name, begin, end in stage_spans(record, int(gpu))
        ]
        t, used = samples["t"][gpu_column == gpu], samples["mem_used_bytes"][gpu_column == gpu]
        keep = slice(None, None, max(1, len(t) // TIMELINE_POINTS))  # an hour at 10 Hz needs no 36,000 points
        gpus.append(
            {
                "gpu": int(gpu),
                "t": (t[keep] - start).round(3).tolist(),
                "mem_used_bytes": used[keep].tolist(),
                "peak_bytes": float(used.max()),
                "total_bytes": capacity.get(int(gpu)),
                "spans": spans,
            }
        )
    return {
        "available": True,
        "dataset": harness(record).get("dataset"),
        "gpus_in_run": harness(record).get("gpus"),
        "repeat": harness(record).get("repeat"),
        "gpus": gpus,
        "note": None,
    }


def peak_memory_section(record: Record | None) -> dict:
    """Peak GPU memory per stage and GPU (torch's allocated/reserved, and NVML's view of the card)."""
    if record is None:
        return {"rows": [], "note": "no runs"}
    rows = gpu_peaks(record)
    if not rows or peak_gpu_bytes(record) is None:
        return {"rows": [], "note": "no GPU memory measured (a CPU run)", "dataset": harness(record).get("dataset")}
    return {"rows": rows, "dataset": harness(record).get("dataset"), "gpus_in_run": harness(record).get("gpus"), "note": None}


def variants_section(records: Sequence[Record]) -> dict:
    """Each optimisation's speed-up and peak GPU memory against ``baseline``, on one configuration.

    Only the named optimisation variants (the memory suite's "oom", "reload", ... are experiments, not
    variants), and only the variants suite's runs when there are any: they share one footing.
    """
    records = [r for r in records if harness(r).get("variant") in VARIANTS]
    if any(harness(r).get("suite") == "variants" for r in records):
        records = [r for r in records if harness(r).get("suite") == "variants"]
    by_variant_config: dict[tuple[str, int], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_variant_config[config_key(record)][str(harness(record).get("variant"))].append(record)
    if not by_variant_config:
        return {"rows": [], "note": "no runs"}
    # the configuration where most variants were measured (the variants suite's), preferring a baseline
    config = max(by_variant_config, key=lambda k: (len(by_variant_config[k]), "baseline" in by_variant_config[k]))
    variants = by_variant_config[config]
    if len(variants) < 2:
        return {"rows": [], "note": "only one variant measured", "dataset": config[0], "gpus": config[1]}
    base = variants.get("baseline")
    base_wall = _mean(wall_seconds(r) for r in base) if base else None
    base_memory = _mean(peak_gpu_bytes(r) for r in base) if base else None
    order = [v for v in VARIANTS if v in variants]
    rows = []
    for variant in order:
        group = variants[variant]
        wall = _mean(wall_seconds(r) for r in group)
        memory = _mean(peak_gpu_bytes(r) for r in group)
        stage_means = {}
        for name in dict.fromkeys(n for r in group for n in stage_seconds(r)):
            stage_means[name] = _mean(stage_seconds(r).get(name) for r in group)
        rows.append(
            {
                "variant": variant,
                "runs": len(group),
                "wall_seconds": wall,
                "speedup": base_wall / wall if base_wall and wall else None,
                "peak_gpu_bytes": memory,
                "memory_delta_bytes": memory - base_memory if memory is not None and base_memory is not None else None,
                "stage_seconds": stage_means,
            }
        )
    note = None if base else "no baseline run: speed-ups cannot be computed"
    return {"dataset": config[0], "gpus": config[1], "rows": rows, "note": note}


def scaling_section(records: Sequence[Record]) -> dict:
    """Wall and GPU-stage speed-up per GPU count, on the dataset measured at the most GPU counts."""
    by_dataset: dict[str, dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        dataset, gpus = config_key(record)
        by_dataset[dataset][gpus].append(record)
    if not by_dataset:
        return {"rows": [], "note": "no runs"}
    dataset = max(
        by_dataset, key=lambda d: (len(by_dataset[d]), composition(next(iter(by_dataset[d].values()))[0]).get("reads") or 0)
    )
    counts = sorted(by_dataset[dataset])
    if len(counts) < 2:
        return {"dataset": dataset, "rows": [], "note": f"one GPU count measured ({counts[0]}): no scaling curve"}

    def gpu_stage_seconds(record):
        return sum(v for k, v in stage_seconds(record).items() if stage_kind(k)[1])

    base_gpus = counts[0]
    base_wall = _mean(wall_seconds(r) for r in by_dataset[dataset][base_gpus])
    base_gpu = _mean(gpu_stage_seconds(r) for r in by_dataset[dataset][base_gpus])
    rows = []
    for gpus in counts:
        group = by_dataset[dataset][gpus]
        wall = _mean(wall_seconds(r) for r in group)
        gpu_time = _mean(gpu_stage_seconds(r) for r in group)
        ideal = gpus / base_gpus
        speedup = base_wall / wall if wall else None
        gpu_speedup = base_gpu / gpu_time if gpu_time else None
        rows.append(
            {
                "gpus": gpus,
                "runs": len(group),
                "wall_seconds": wall,
                "gpu_stage_seconds": gpu_time,
                "ideal_speedup": ideal,
                "speedup": speedup,
                "gpu_stage_speedup": gpu_speedup,
                "efficiency": speedup / ideal if speedup else None,
                "gpu_stage_efficiency": gpu_speedup / ideal if gpu_speedup else None,
            }
        )
    return {"dataset": dataset, "relative_to_gpus": base_gpus, "rows": rows, "note": None}


def throughput_section(records: Sequence[Record]) -> dict:
    """Reads and frames per second over the wall time; tokens per second inside the model stages."""
    rows = []
    for (dataset, gpus), group in by_config(records).items():
        comp = composition(group[0])
        wall = _mean(wall_seconds(r) for r in group)
        stage = {name: _mean(stage_seconds(r).get(name) for r in group) for name in ("esm2", "dnabert")}

        def rate(amount, seconds):
            return amount / seconds if amount and seconds else None

        rows.append(
            {
                "dataset": dataset,
                "gpus": gpus,
                "reads_per_second": rate(comp.get("reads"), wall),
                "frames_per_second": rate(comp.get("frames"), wall),
                "esm_tokens_per_second": rate(comp.get("esm_tokens"), stage["esm2"]),
                "dnabert_tokens_per_second": rate(comp.get("dnabert_tokens"), stage["dnabert"]),
            }
        )
    return {"rows": rows, "note": None if rows else "no runs"}


def utilisation_section(record: Record | None) -> dict:
    """Mean GPU utilisation and power per GPU, during the GPU stages and over the whole run."""
    samples = nvml_samples(record) if record is not None else None
    if samples is None or "util_percent" not in samples:
        return {"rows": [], "note": "no GPU samples"}
    window = gpu_stage_window(record)
    gpu_column = samples.get("gpu", np.zeros_like(samples["t"]))
    rows = []
    for gpu in np.unique(gpu_column):
        mask = gpu_column == gpu
        in_window = mask & (samples["t"] >= window[0]) & (samples["t"] <= window[1]) if window else mask
        power = samples.get("power_w")
        rows.append(
            {
                "gpu": int(gpu),
                "util_percent_gpu_stages": float(samples["util_percent"][in_window].mean()) if in_window.any() else None,
                "util_percent_run": float(samples["util_percent"][mask].mean()),
                "power_w_gpu_stages": float(power[in_window].mean()) if power is not None and in_window.any() else None,
            }
        )
    return {"rows": rows, "dataset": harness(record).get("dataset"), "note": None}


def _token_budget(record: Record, stage: str) -> int | None:
    budget = (run_of(record).get("config") or {}).get("token_budget")
    if isinstance(budget, Mapping):
        budget = budget.get(stage)
    return int(budget) if isinstance(budget, (int, float)) and budget > 0 else None


def _static_bytes(record: Record, gpu) -> float | None:
    """NVML memory on ``gpu`` just before the first GPU stage: CUDA context plus resident models."""
    samples, window = nvml_samples(record), gpu_stage_window(record)
    if samples is None or window is None:
        return None
    mask = (samples.get("gpu", np.zeros_like(samples["t"])) == gpu) & (samples["t"] <= window[0])
    return float(samples["mem_used_bytes"][mask][-1]) if mask.any() else None


def token_budget_section(records: Sequence[Record], cards_gb: Sequence[float] = CARD_SIZES_GB) -> dict:
    """Token budgets per card size from the measured memory per token of the embedding stages.

    Memory = static + per_token x budget. With two or more budgets measured both are fitted; with one,
    static is the card's memory just before the first batch (NVML); without samples static is taken as 0,
    which charges everything to the tokens and so recommends conservatively.
    """
    stages = {}
    for stage in ("esm2", "dnabert"):
        points, statics = [], []
        for record in records:
            budget = _token_budget(record, stage)
            for peak in gpu_peaks(record):
                used = peak.get("nvml_peak_bytes") or peak.get("torch_peak_reserved_bytes") or 0
                if peak.get("stage") == stage and budget and used > 0:
                    points.append((budget, float(used)))
                    static = _static_bytes(record, peak.get("gpu")) if peak.get("nvml_peak_bytes") else None
                    if static is not None:
                        statics.append(static)
        if not points:
            continue
        budgets, used = np.array(points).T
        if len(set(budgets)) >= 2:
            slope, intercept = np.polyfit(budgets, used, 1)
            method = "fitted over the measured token budgets"
        elif statics:
            intercept = float(np.median(statics))
            slope = float(np.mean((used - intercept) / budgets))
            method = "static memory from NVML before the first batch"
        else:
            intercept, slope = 0.0, float(np.mean(used / budgets))
            method = "static memory not separated: conservative (all memory charged to tokens)"
        if slope <= 0:
            continue
        cards = {}
        for gb in cards_gb:
            room = gb * GIB * CARD_HEADROOM - intercept
            cards[str(gb)] = int(room / slope // BUDGET_QUANTUM * BUDGET_QUANTUM) if room > 0 else 0
        stages[stage] = {
            "bytes_per_token": float(slope),
            "static_bytes": float(intercept),
            "measured_budgets": sorted({int(b) for b in budgets}),
            "method": method,
            "budget_by_card_gb": cards,
        }
    note = None if stages else "no GPU memory measured with a token budget (CPU runs): no recommendation"
    precision = next(((run_of(r).get("config") or {}).get("precision") for r in records), None)
    return {"stages": stages, "precision": precision, "headroom": CARD_HEADROOM, "note": note}


def decision_row(projection: Mapping) -> Mapping | None:
    """The projection row the verdict is about: the fewest GPUs meeting the target, else 4, else the last."""
    rows = projection.get("rows") or []
    if not rows:
        return None
    fewest = projection.get("fewest_gpus_meeting_target")
    for gpus in (fewest, 4):
        for row in rows:
            if row["gpus"] == gpus:
                return row
    return rows[-1]


def bottleneck_section(
    projection: Mapping, fit: Mapping, variants: Mapping, utilisation: Mapping, records: Sequence[Record]
) -> dict:
    """Name the stage that dominates the projected time and what would move it, from the numbers."""
    row = decision_row(projection)
    if row is None or not row["stages"]:
        return {"findings": [], "note": "no projection"}
    target = projection["target_hours"]
    stage, cost = max(row["stages"].items(), key=lambda item: item[1]["hours"])
    hours, total, gpus = cost["hours"], row["total_hours"], row["gpus"]
    findings = [
        f"`{stage}` dominates: {fmt_hours(hours)} h of {fmt_hours(total)} h ({fmt_percent(hours / total)}) "
        f"projected on {gpus_label(gpus)}."
    ]
    stage_fit = (fit.get("stages") or {}).get(stage, {})
    if stage_fit.get("parallel"):
        more = [r for r in projection["rows"] if r["gpus"] > gpus]
        if more:
            last = more[-1]
            findings.append(
                f"More GPUs: on {gpus_label(last['gpus'])} it would take {fmt_hours(last['stages'][stage]['hours'])} h"
                + (" (extrapolated)." if last["stages"][stage]["extrapolated"] else ".")
            )
        fraction = (stage_fit.get("amdahl") or {}).get("parallel_fraction")
        if fraction is not None and fraction < 1:
            findings.append(
                f"Its fitted parallel fraction is {fraction:.3f}: more GPUs can speed it up at most "
                f"{fmt_ratio(1 / (1 - fraction))}."
            )
    serial = sum(c["hours"] for name, c in row["stages"].items() if not (fit.get("stages") or {}).get(name, {}).get("parallel"))
    findings.append(
        f"Stages that do not scale with GPUs take {fmt_hours(serial)} h: no GPU count brings the total below that."
    )
    if total > target:
        cut = total - target
        if cut < hours:
            findings.append(
                f"To meet {fmt_hours(target)} h on {gpus_label(gpus)}, `{stage}` must become "
                f"{fmt_ratio(hours / (hours - cut))} faster (or the total must lose {fmt_hours(cut)} h)."
            )
        else:
            findings.append(
                f"Even without `{stage}` the total would exceed {fmt_hours(target)} h on {gpus_label(gpus)}: "
                "several stages must get faster."
            )
    else:
        findings.append(f"The target is met with {fmt_hours(target - total)} h to spare on {gpus_label(gpus)}.")
        if row["high_hours"] > target:
            findings.append(
                f"Not at the slow end of the interval: the slowest repeats project {fmt_hours(row['high_hours'])} h."
            )
    padding = _padding_share(records, stage)
    if padding:
        findings.append(f"{fmt_percent(padding)} of the tokens `{stage}` computed were padding: packing removes them.")
    busy = [r["util_percent_gpu_stages"] for r in utilisation.get("rows") or [] if r.get("util_percent_gpu_stages") is not None]
    if busy and np.mean(busy) < LOW_UTILISATION_PERCENT and stage_fit.get("parallel"):
        findings.append(
            f"GPUs were busy only {np.mean(busy):.0f}% of the GPU-stage time: feeding them (host side) limits it."
        )
    best = _best_variant_for(variants, stage)
    if best:
        findings.append(f"Of the measured optimisations, `{best[0]}` cut `{stage}` the most: {fmt_ratio(best[1])} against baseline.")
    return {"gpus": gpus, "stage": stage, "hours": hours, "share": hours / total if total else None, "findings": findings, "note": None}


def _padding_share(records: Sequence[Record], stage: str) -> float | None:
    padding = tokens = 0.0
    for record in records:
        for s in run_of(record).get("stages") or []:
            if s.get("name") == stage:
                for device in s.get("devices") or []:
                    padding += device.get("padding_tokens") or 0
                    tokens += device.get("tokens") or 0
    return padding / (padding + tokens) if padding > 0 else None


def _best_variant_for(variants: Mapping, stage: str) -> tuple[str, float] | None:
    rows = {row["variant"]: row for row in variants.get("rows") or []}
    base = (rows.get("baseline") or {}).get("stage_seconds", {}).get(stage)
    if not base:
        return None
    gains = [
        (name, base / row["stage_seconds"][stage])
        for name, row in rows.items()
        if name not in ("baseline", "all") and row["stage_seconds"].get(stage)
    ]
    return max(gains, key=lambda gain: gain[1]) if gains else None


# --------------------------------------------------------------------------------------------------
# Reading asv's results (through asv's own API)
# --------------------------------------------------------------------------------------------------


def read_asv_results(results_dir: str | Path) -> dict[str, dict[str, dict]]:
    """{machine: {commit8: {"commit", "date" (ms), "values": {"name(params)": value}}}} from asv's results.

    Empty when asv is not installed or there are no results; values that failed or were skipped are None.
    """
    try:
        from asv import util
        from asv.results import iter_results_for_machine
    except ImportError:
        return {}
    root = Path(results_dir)
    try:
        benchmarks = util.load_json(root / "benchmarks.json", api_version=2)
    except (OSError, util.UserError):
        benchmarks = {}
    history: dict[str, dict[str, dict]] = {}
    for machine_json in sorted(root.glob("*/machine.json")):
        machine = machine_json.parent.name
        for result in iter_results_for_machine(str(root), machine):
            entry = history.setdefault(machine, {}).setdefault(
                result.commit_hash[:8], {"commit": result.commit_hash, "date": result.date, "values": {}}
            )
            for key in result.get_result_keys(benchmarks):
                params = benchmarks[key].get("params") or []
                values = result.get_result_value(key, params)
                names = [f"{key}({', '.join(combo)})" for combo in itertools.product(*params)] if params else [key]
                for name, value in zip(names, values):
                    finite = isinstance(value, (int, float)) and math.isfinite(value)
                    entry["values"][name] = float(value) if finite else None
    return history


def history_section(groups: Sequence[Mapping], asv: Mapping[str, Mapping], machine: str, gpus: int = 4) -> dict:
    """The projection per commit on one machine, oldest first, with asv's tracked projection beside it."""
    commits = asv.get(machine, {})
    rows = []
    for group in groups:
        date = (commits.get(group["commit"]) or {}).get("date") or group.get("date")
        by_gpus = {row["gpus"]: row for row in group["projection"]["rows"]}
        tracked = {
            name: value
            for name, value in (commits.get(group["commit"]) or {}).get("values", {}).items()
            if "projected" in name and value is not None
        }
        rows.append(
            {
                "commit": group["commit"],
                "date": date,
                "started_at": group.get("started_at"),
                "hours": {str(g): row["total_hours"] for g, row in by_gpus.items()},
                "low_hours": {str(g): row["low_hours"] for g, row in by_gpus.items()},
                "high_hours": {str(g): row["high_hours"] for g, row in by_gpus.items()},
                "fewest_gpus_meeting_target": group["projection"]["fewest_gpus_meeting_target"],
                "asv_tracked": tracked,
            }
        )
    rows.sort(key=lambda r: (r["date"] is None, r["date"] or 0, r["started_at"] or 0))
    return {"machine": machine, "gpus": gpus, "rows": rows, "note": None if rows else "no projections"}


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


def projection_markdown(group: Mapping, composition_info: Mapping) -> str:
    """The projection table of one group (machine, commit, scale, variant), with its verdict and check."""
    projection, fit = group["projection"], group["fit"]
    rows, target = projection["rows"], projection["target_hours"]
    comp = composition_info.get("composition") or {}
    header = ["stage"] + [gpus_label(r["gpus"]) + ("*" if r["extrapolated"] else "") for r in rows]
    stages = list(rows[0]["stages"]) if rows else []
    body = [[f"`{name}`"] + [fmt_hours(r["stages"][name]["hours"]) for r in rows] for name in stages]
    body.append(["**total**"] + [f"**{fmt_hours(r['total_hours'])}** ({fmt_hours(r['low_hours'])}–{fmt_hours(r['high_hours'])})" for r in rows])
    body.append([f"{fmt_hours(target)} h target"] + ["PASS" if r["meets_target"] else "FAIL" for r in rows])
    body.append([f"largest sample in {fmt_hours(target)} h (reads)"] + [fmt_count(r["max_reads_within_target"]) for r in rows])
    body.append(["scaling efficiency"] + [fmt_percent(r["scaling_efficiency"]) for r in rows])
    estimated = composition_info.get("estimated") or []
    lines = []
    if group["scale"] == "ci":
        lines += ["> `ci` scale: tiny models on CPU. These hours exercise the machinery; they say nothing about the real pipeline.", ""]
    lines += [
        f"**{group['machine']}**, commit `{group['commit']}`, scale `{group['scale']}`, target `{group['target']}`, "
        f"variant `{group['variant']}`, chunk size {group.get('chunk_size') or 'any'}: fitted on {plural(fit['runs'], 'run')} (datasets {', '.join(fit['datasets'])}; "
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
        markdown_table(header, body),
        "",
    ]
    if any(r["extrapolated"] for r in rows):
        lines += ["\\* extrapolated: Amdahl's law fitted on the measured GPU counts (ideal scaling if only one was measured).", ""]
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


def check_markdown(check: Mapping) -> str:
    if not check.get("available"):
        return f"Check ({check['from']} → {check['to']}): not available, {check.get('reason', 'unknown reason')}."
    parts = ", ".join(
        f"{gpus_label(r['gpus'])}{' (extrapolated)' if r.get('extrapolated') else ''}: {fmt_seconds(r['predicted_seconds'])} s predicted, "
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
            f"{fmt_hours(r['measured_seconds'] / 3600)} h measured, {fmt_hours(r['projected_seconds'] / 3600)} h projected "
            f"({r['error']:+.1%})"
        )
    return "Measured on the sample itself: " + "; ".join(parts) + "."


def history_markdown(history: Mapping, gpu_counts: Sequence[int]) -> str:
    if not history["rows"]:
        return "No projections to compare across commits."
    header = ["commit", "date"] + [f"hours on {gpus_label(g)}" for g in gpu_counts] + ["fewest GPUs"]
    body = []
    for row in history["rows"]:
        date = row["date"]
        day = np.datetime64(int(date), "ms").astype("datetime64[D]") if date else "n/a"
        body.append(
            [f"`{row['commit']}`", str(day)]
            + [fmt_hours(row["hours"].get(str(g))) for g in gpu_counts]
            + [row["fewest_gpus_meeting_target"] or "none"]
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


def render_markdown(report: Mapping) -> str:
    """The whole report as Markdown, from the dict ``scripts/report.py`` builds (and saves as JSON)."""
    plots = report.get("plots") or {}

    def image(name, alt):
        return [f"![{alt}]({plots[name]})", ""] if name in plots else []

    hardware = report.get("hardware") or {}
    out = [
        f"# VirNucPro on `{report['machine']}`: can a full sample finish in {fmt_hours(report['target_hours'])} h?",
        "",
        f"Commit `{report['commit']}`, scale `{report['scale']}`, target `{report['target']}`, "
        f"variant `{report['variant']}`. GPUs: {hardware.get('description') or 'none (CPU runs)'}."
        + (" Weights were synthetic (speed and memory real, labels not)." if report.get("synthetic_weights") else ""),
        "",
        "## The answer",
        "",
        report.get("projection_markdown") or "_no projection_",
        "",
        *image("projection", "projected hours per GPU count"),
    ]
    bottleneck = report["bottleneck"]
    out += ["## Bottleneck", ""]
    out += [f"- {line}" for line in bottleneck["findings"]] or [f"_{bottleneck.get('note')}_"]
    out += [""]

    breakdown = report["stage_breakdown"]
    out += ["## Stage breakdown", ""]
    for row in breakdown["rows"]:
        out += [
            f"`{row['dataset']}` on {gpus_label(row['gpus'])} ({plural(row['runs'], 'run')}, wall {fmt_seconds(row['wall_seconds'])} s):",
            "",
            markdown_table(
                ["stage", "seconds", "share"],
                [[f"`{s['stage']}`", fmt_seconds(s["seconds"]), fmt_percent(s["share"])] for s in row["stages"]],
            ),
            "",
        ]
    out += ([f"_{breakdown['note']}_", ""] if breakdown.get("note") else []) + image("stages", "stage breakdown")

    timeline = report["memory_timeline"]
    out += ["## GPU memory over time", ""]
    if timeline.get("available"):
        out += [
            f"`{timeline['dataset']}` on {gpus_label(timeline['gpus_in_run'])}, repeat {timeline['repeat']}; "
            "shaded spans are the stages each GPU was in, the dashed line the card's memory.",
            "",
        ] + image("memory_timeline", "GPU memory timeline")
    else:
        out += [f"_{timeline['note']}_", ""]

    out += _section(
        "Peak GPU memory per stage",
        report["peak_memory"],
        ["stage", "GPU", "torch allocated", "torch reserved", "NVML (card)"],
        lambda p: [f"`{p.get('stage')}`", p.get("gpu"), fmt_bytes(p.get("torch_peak_allocated_bytes")),
                   fmt_bytes(p.get("torch_peak_reserved_bytes")), fmt_bytes(p.get("nvml_peak_bytes"))],
    )
    variants = report["variants"]
    out += _section(
        "Optimisations (variants)",
        variants,
        ["variant", "runs", "wall s", "speed-up", "peak GPU memory", "memory vs baseline"],
        lambda r: [f"`{r['variant']}`", r["runs"], fmt_seconds(r["wall_seconds"]), fmt_ratio(r["speedup"]),
                   fmt_bytes(r["peak_gpu_bytes"]), _signed_bytes(r["memory_delta_bytes"])],
        intro=variants["rows"] and f"`{variants['dataset']}` on {gpus_label(variants['gpus'])}; against `baseline`.",
    ) + image("variants", "variant speed-ups")
    scaling = report["scaling"]
    out += _section(
        "Scaling",
        scaling,
        ["GPUs", "wall s", "speed-up", "ideal", "efficiency", "GPU-stage speed-up", "GPU-stage efficiency"],
        lambda r: [r["gpus"], fmt_seconds(r["wall_seconds"]), fmt_ratio(r["speedup"]), fmt_ratio(r["ideal_speedup"]),
                   fmt_percent(r["efficiency"]), fmt_ratio(r["gpu_stage_speedup"]), fmt_percent(r["gpu_stage_efficiency"])],
        intro=scaling["rows"] and f"`{scaling['dataset']}`, relative to {gpus_label(scaling['relative_to_gpus'])}:",
    ) + image("scaling", "scaling curve")
    out += _section(
        "Throughput",
        report["throughput"],
        ["dataset", "GPUs", "reads/s", "frames/s", "ESM tokens/s (esm2)", "DNABERT tokens/s (dnabert)"],
        lambda r: [f"`{r['dataset']}`", r["gpus"], fmt_count(r["reads_per_second"]), fmt_count(r["frames_per_second"]),
                   fmt_count(r["esm_tokens_per_second"]), fmt_count(r["dnabert_tokens_per_second"])],
    )
    out += _section(
        "GPU utilisation",
        report["utilisation"],
        ["GPU", "busy % (GPU stages)", "busy % (whole run)", "power W (GPU stages)"],
        lambda r: [r["gpu"], fmt_seconds(r["util_percent_gpu_stages"]), fmt_seconds(r["util_percent_run"]),
                   fmt_seconds(r["power_w_gpu_stages"])],
    )
    budget = report["token_budget"]
    budget_rows = {"rows": [{"stage": name, **stage} for name, stage in budget["stages"].items()], "note": budget["note"]}
    cards = [str(gb) for gb in CARD_SIZES_GB]
    out += _section(
        "Token budget per card",
        budget_rows,
        ["stage", "bytes/token", "static", "measured budgets"] + [f"{gb} GB" for gb in cards],
        lambda s: [f"`{s['stage']}`", fmt_count(s["bytes_per_token"]), fmt_bytes(s["static_bytes"]),
                   ", ".join(map(str, s["measured_budgets"]))] + [f"{s['budget_by_card_gb'][gb]:,}" for gb in cards],
        intro=f"Largest token budget per batch that keeps {fmt_percent(1 - budget['headroom'])} of the card free, at "
        f"precision `{budget['precision']}` (0: the models alone do not fit). "
        + "; ".join(f"`{name}`: {s['method']}" for name, s in budget["stages"].items()) + ".",
    )
    out += ["## History", "", history_markdown(report["history"], report["gpu_counts"]), ""]
    out += image("history", "projection history")
    if report.get("skipped"):
        out += ["## Records left out", ""] + [f"- {line}" for line in report["skipped"]] + [""]
    return "\n".join(out).rstrip() + "\n"
