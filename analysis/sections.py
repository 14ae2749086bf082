"""The report's sections, computed from Records: each ``*_section`` returns a JSON-ready dict.

When the data a section needs is missing (a CPU run has no GPU samples, no variant was measured) the
section says so in ``note`` instead of failing. ``advice.py`` holds the two sections that recommend
(token budgets, the bottleneck); ``markdown.py`` and ``plots.py`` render them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from analysis.costmodel import stage_kind
from analysis.record import Record

VARIANTS = ("baseline", "sdpa", "bf16", "packing", "persistent", "all", "compiled", "fp8")
TIMELINE_POINTS = 2000  # per GPU, in the report's JSON and plot


def _mean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def by_config(records: Iterable[Record]) -> dict[tuple[str, int], list[Record]]:
    """Records grouped by (dataset, GPU count), configurations ordered by work then GPUs."""
    groups: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for record in records:
        groups[record.config_key].append(record)
    size = {key: rs[0].composition.get("reads") or 0 for key, rs in groups.items()}
    return {key: groups[key] for key in sorted(groups, key=lambda k: (size[k], k[1], k[0]))}


def reference_record(records: Sequence[Record]) -> Record | None:
    """The run the timeline and peaks are shown for: most work, then most GPUs, then the first repeat."""
    if not records:
        return None
    return max(
        records,
        key=lambda r: (r.composition.get("reads") or 0, r.gpus or 1, -(r.repeat or 0)),
    )


def gpu_peaks(record: Record) -> list[dict]:
    """Peak GPU memory per (stage, GPU): the harness's stage_peaks, else the run's own torch peaks."""
    if record.stage_peaks:
        return [dict(p) for p in record.stage_peaks]
    return [
        {
            "stage": d.stage,
            "gpu": d.gpu,
            "nvml_peak_bytes": None,
            "torch_peak_allocated_bytes": d.info.get("peak_allocated_bytes"),
            "torch_peak_reserved_bytes": d.info.get("peak_reserved_bytes"),
            "host_peak_rss_bytes": None,
        }
        for d in record.devices
    ]


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
    nvml = record.samples.get("nvml") or {}
    if not nvml.get("t"):
        return None
    columns = {key: np.asarray(values, dtype=float) for key, values in nvml.items() if isinstance(values, list)}
    if len({len(values) for values in columns.values()}) != 1:
        return None
    if columns["t"].max() < 1e9:  # relative to the run's start rather than Unix time
        columns["t"] = columns["t"] + record.started_at
    return columns


def stage_spans(record: Record, gpu: int) -> list[tuple[str, float, float]]:
    """(stage, start, end) seen from one GPU: its worker's busy intervals in the GPU stages (which
    interleave part by part), the parent process's interval for the other stages."""
    spans = []
    for stage in record.stages:
        intervals = [
            interval
            for d in record.devices
            if d.stage == stage["name"] and d.gpu == gpu
            for interval in d.info.get("intervals") or []
        ]
        if not intervals and all(isinstance(stage.get(key), (int, float)) for key in ("start", "end")):
            intervals = [(stage["start"], stage["end"])]
        spans += [(stage["name"], float(begin), float(end)) for begin, end in intervals]
    return spans


def gpu_stage_window(record: Record) -> tuple[float, float] | None:
    """First start and last end of the stages that run in the per-GPU workers."""
    spans = [
        (s["start"], s["end"])
        for s in record.stages
        if stage_kind(s.get("name", ""))[1] and isinstance(s.get("start"), (int, float)) and s.get("end")
    ]
    return (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None


def stage_breakdown_section(records: Sequence[Record]) -> dict:
    """Seconds and share of each stage, averaged over repeats, per (dataset, GPU count)."""
    rows = []
    for (dataset, gpus), group in by_config(records).items():
        per_run = [r.stage_seconds for r in group]
        names = list(dict.fromkeys(name for seconds in per_run for name in seconds))
        means = {name: _mean(seconds.get(name) for seconds in per_run) or 0.0 for name in names}
        total = sum(means.values())
        rows.append(
            {
                "dataset": dataset,
                "gpus": gpus,
                "runs": len(group),
                "wall_seconds": _mean(r.wall_seconds for r in group),
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
        return {"available": False, "note": "no GPU samples", "dataset": record.dataset}
    start = float(samples["t"].min())
    gpu_column = samples.get("gpu", np.zeros_like(samples["t"]))
    capacity = {gpu.get("index"): gpu.get("total_bytes") for gpu in (record.run.get("host") or {}).get("gpus") or []}
    gpus = []
    for gpu in np.unique(gpu_column):
        spans = [
            {"stage": name, "start": begin - start, "end": end - start}
            for name, begin, end in stage_spans(record, int(gpu))
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
        "dataset": record.dataset,
        "gpus_in_run": record.gpus,
        "repeat": record.repeat,
        "gpus": gpus,
        "note": None,
    }


def peak_memory_section(record: Record | None) -> dict:
    """Peak GPU memory per stage and GPU (torch's allocated/reserved, and NVML's view of the card)."""
    if record is None:
        return {"rows": [], "note": "no runs"}
    rows = gpu_peaks(record)
    if not rows or peak_gpu_bytes(record) is None:
        return {"rows": [], "note": "no GPU memory measured (a CPU run)", "dataset": record.dataset}
    return {"rows": rows, "dataset": record.dataset, "gpus_in_run": record.gpus, "note": None}


def variants_section(records: Sequence[Record]) -> dict:
    """Each optimisation's speed-up and peak GPU memory against ``baseline``, on one configuration.

    Only the named optimisation variants (the memory suite's "oom", "reload", ... are experiments, not
    variants), and only the variants suite's runs when there are any: they share one footing.
    """
    records = [r for r in records if r.variant in VARIANTS]
    if any(r.suite == "variants" for r in records):
        records = [r for r in records if r.suite == "variants"]
    by_variant_config: dict[tuple[str, int], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_variant_config[record.config_key][record.variant].append(record)
    if not by_variant_config:
        return {"rows": [], "note": "no runs"}
    # the configuration where most variants were measured (the variants suite's), preferring a baseline
    config = max(by_variant_config, key=lambda k: (len(by_variant_config[k]), "baseline" in by_variant_config[k]))
    variants = by_variant_config[config]
    if len(variants) < 2:
        return {"rows": [], "note": "only one variant measured", "dataset": config[0], "gpus": config[1]}
    base = variants.get("baseline")
    base_wall = _mean(r.wall_seconds for r in base) if base else None
    base_memory = _mean(peak_gpu_bytes(r) for r in base) if base else None
    order = [v for v in VARIANTS if v in variants]
    rows = []
    for variant in order:
        group = variants[variant]
        wall = _mean(r.wall_seconds for r in group)
        memory = _mean(peak_gpu_bytes(r) for r in group)
        stage_means = {}
        for name in dict.fromkeys(n for r in group for n in r.stage_seconds):
            stage_means[name] = _mean(r.stage_seconds.get(name) for r in group)
        rows.append(
            {
                "variant": variant,
                "precision_used": "/".join(sorted({str(r.precision_used) for r in group})),
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
        dataset, gpus = record.config_key
        by_dataset[dataset][gpus].append(record)
    if not by_dataset:
        return {"rows": [], "note": "no runs"}
    dataset = max(
        by_dataset,
        key=lambda d: (len(by_dataset[d]), next(iter(by_dataset[d].values()))[0].composition.get("reads") or 0),
    )
    counts = sorted(by_dataset[dataset])
    if len(counts) < 2:
        return {"dataset": dataset, "rows": [], "note": f"one GPU count measured ({counts[0]}): no scaling curve"}

    def gpu_stage_seconds(record):
        return sum(v for k, v in record.stage_seconds.items() if stage_kind(k)[1])

    base_gpus = counts[0]
    base_wall = _mean(r.wall_seconds for r in by_dataset[dataset][base_gpus])
    base_gpu = _mean(gpu_stage_seconds(r) for r in by_dataset[dataset][base_gpus])
    rows = []
    for gpus in counts:
        group = by_dataset[dataset][gpus]
        wall = _mean(r.wall_seconds for r in group)
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
        comp = group[0].composition
        wall = _mean(r.wall_seconds for r in group)
        stage = {name: _mean(r.stage_seconds.get(name) for r in group) for name in ("esm2", "dnabert")}

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
                "util_percent_gpu_stages": float(samples["util_percent"][in_window].mean())
                if in_window.any()
                else None,
                "util_percent_run": float(samples["util_percent"][mask].mean()),
                "power_w_gpu_stages": float(power[in_window].mean()) if power is not None and in_window.any() else None,
            }
        )
    return {"rows": rows, "dataset": record.dataset, "note": None}
