"""The numbers the suites report, computed once per RunRecord. Every one is a cost: bigger is worse.

A metric a run cannot have (GPU bytes of a CPU run, a stage the command does not report) is None,
which the suites turn into NaN: asv shows it as n/a rather than as a measurement. A resumed run has no
times: its clock covers only the part of the work left after the interruption.
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness.stagework import stage_work

GPU_STAGES = ("dnabert", "esm2", "classify")
TIMES = ("wall_seconds", "seconds_per_million_esm_tokens", "seconds_per_million_reads",
         "esm2_seconds_per_million_tokens", "projected_full_sample_hours")  # gone when resumed


def summarise(rec: dict, full_sample: dict | None = None) -> dict:
    """Every metric of one RunRecord, as plain JSON-ready values; `full_sample` is the whole sample's dataset
    definition (its `composition` and `model_type`), for the projected hours."""
    harness, run = rec["harness"], rec.get("run") or {}
    # The harness's own count, not the pipeline's: a build that over-reported its tokens would look faster.
    esm_tokens = harness["expected"].get("esm_tokens") or (run.get("input") or {}).get("esm_tokens")
    wall = harness["wall_seconds"]
    gpu_devices = [d for s in run.get("stages") or [] if s.get("name") in GPU_STAGES
                   for d in s.get("devices") or [] if str(d.get("device", "")).startswith("cuda")]
    # NVML's memory is the whole card's: when another process held some of it during the run, it is not the
    # run's figure (n/a), and a record that could not tell (card_shared None) keeps it.
    shared = bool(harness.get("card_shared"))
    nvml_used = [] if shared else rec["samples"]["nvml"]["mem_used_bytes"]
    host_rss = rec["samples"]["host"]["rss_bytes"]
    gpu_leak, host_leak = leak_per_batch(rec)
    without_wait, cpu = stage_scheduling(rec)
    reads = harness["expected"].get("reads")
    esm2_seconds = next((s.get("seconds") for s in run.get("stages") or [] if s.get("name") == "esm2"), None)
    summary = {
        "wall_seconds": wall,
        "seconds_per_million_esm_tokens": wall / (esm_tokens / 1e6) if esm_tokens else None,
        "seconds_per_million_reads": wall / (reads / 1e6) if reads else None,
        "esm2_seconds_per_million_tokens": esm2_seconds / (esm_tokens / 1e6) if esm_tokens and esm2_seconds else None,
        "model_load_seconds": run.get("model_load_seconds"),
        "projected_full_sample_hours": projected_hours(rec, full_sample),
        "peak_host_rss_bytes": max(host_rss, default=None),
        "peak_gpu_bytes_nvml": max(nvml_used, default=None),
        "peak_gpu_allocated_bytes": max((d.get("peak_allocated_bytes") or 0 for d in gpu_devices), default=None),
        "peak_gpu_reserved_bytes": max((d.get("peak_reserved_bytes") or 0 for d in gpu_devices), default=None),
        "fragmentation_bytes": max(((d.get("peak_reserved_bytes") or 0) - (d.get("peak_allocated_bytes") or 0)
                                    for d in gpu_devices), default=None),
        "oom_backoffs": sum(d.get("oom_backoffs") or 0
                            for s in run.get("stages") or [] for d in s.get("devices") or []),
        "stage_seconds": {s["name"]: s.get("seconds") for s in run.get("stages") or []},
        "stage_seconds_without_cpu_wait": without_wait,
        "stage_cpu_seconds": cpu,
        "stage_peaks": {f"{p['stage']}:{p['gpu']}": {**p, **({"nvml_peak_bytes": None} if shared else {})}
                        for p in rec.get("stage_peaks") or []},
        # Growth only: memory that shrinks is no benefit, and a cost must not cross zero.
        "gpu_bytes_per_batch": None if gpu_leak is None else max(0.0, gpu_leak),
        "host_bytes_per_batch": None if host_leak is None else max(0.0, host_leak),
    }
    if harness.get("resumed"):
        summary.update({name: None for name in TIMES}, stage_seconds={}, stage_seconds_without_cpu_wait={},
                       stage_cpu_seconds={})
    return summary


def projected_hours(rec: dict, sample: dict | None) -> float | None:
    """Hours for a whole sample on the run's GPU count, from this run alone.

    The cost model of docs/projection.md fitted on one run: each stage's seconds grow in proportion to its
    unit of work (`stagework`), and the time outside every stage (start-up, model load) is fixed. None when
    the run was chunked at another size than the sample (its `model_type`): per-token costs depend on the
    chunk length, so a contigs run at 500 says nothing about a sample of reads at 300. Also None without
    stage times, or without a count of the work in the sample.
    """
    harness, run = rec["harness"], rec.get("run") or {}
    chunk_size = harness.get("model_type") or (run.get("config") or {}).get("chunk_size")
    if not sample or not chunk_size or chunk_size != sample.get("model_type"):
        return None
    done, wanted = counted_work(rec), sample.get("composition") or {}
    stages = [s for s in run.get("stages") or [] if isinstance(s.get("seconds"), (int, float))]
    if not stages or not harness.get("wall_seconds") or not done.get("reads") or not wanted.get("reads"):
        return None
    seconds = max(0.0, harness["wall_seconds"] - sum(s["seconds"] for s in stages))
    for stage in stages:
        unit, _ = stage_work(stage["name"])
        if not done.get(unit):  # no work measured: a fixed cost
            seconds += stage["seconds"]
            continue
        # a unit the sample's definition lacks: the run's per-read ratio (as the analysis estimates it)
        sample_work = wanted.get(unit, done[unit] * wanted["reads"] / done["reads"])
        seconds += stage["seconds"] * sample_work / done[unit]
    return seconds / 3600.0


def counted_work(rec: dict) -> dict[str, float]:
    """The run's work per unit: the harness's own counts, and run.json's DNABERT tokens where the harness only
    estimated them (the analysis reads a record the same way: `analysis/record.py`)."""
    expected = rec["harness"].get("expected") or {}
    reported = (rec.get("run") or {}).get("input") or {}
    work = {**reported, **expected}
    if expected.get("dnabert_tokens_estimated") and reported.get("dnabert_tokens"):
        work["dnabert_tokens"] = reported["dnabert_tokens"]
    return {unit: float(n) for unit, n in work.items() if isinstance(n, (int, float)) and not isinstance(n, bool)}


def stage_scheduling(rec: dict) -> tuple[dict, dict]:
    """Per GPU stage: its seconds less the time its worker waited for a CPU, and the worker's CPU seconds.

    From the sampler's /proc/PID/schedstat columns (each worker's main thread, which runs the stage),
    read at the stage's intervals by interpolating the cumulative counters. Other load on the host
    delays a stage by making its worker wait for a CPU; taking that wait out leaves compute, I/O and
    sleep, which are the commit's. For several devices, the slowest one, as `stage_seconds`.
    """
    run = rec.get("run") or {}
    sched = {k: np.asarray(v, dtype=float) for k, v in (rec["samples"].get("sched") or {}).items()}
    pids = {w.get("device"): w.get("pid") for w in run.get("workers") or []}
    without_wait, cpu = {}, {}
    if not len(sched.get("t", ())):
        return without_wait, cpu
    for stage in run.get("stages") or []:
        if stage.get("name") not in GPU_STAGES or not stage.get("devices"):
            continue
        per_device = [_scheduled(sched, pids.get(d.get("device")), d) for d in stage["devices"]]
        if all(figures is not None for figures in per_device):
            without_wait[stage["name"]] = max(f[0] for f in per_device)
            cpu[stage["name"]] = max(f[1] for f in per_device)
    return without_wait, cpu


def _scheduled(sched: dict, pid, device: dict) -> tuple[float, float] | None:
    chosen = sched["pid"] == pid
    t = sched["t"][chosen]
    intervals = device.get("intervals") or []
    if pid is None or len(t) < 2 or not intervals or t[0] > min(start for start, _ in intervals):
        return None  # the sampler never saw this worker before the stage began

    def during(column: str) -> float:
        values = sched[column][chosen]
        return float(sum(np.interp(end, t, values) - np.interp(start, t, values) for start, end in intervals))

    return max(0.0, device["seconds"] - during("wait_s")), during("run_s")


def leak_per_batch(rec: dict) -> tuple[float | None, float | None]:
    """Growth of GPU memory (NVML, first GPU) and host RSS per batch over the second half of the GPU work.

    The first half is left out: allocator caches and the models fill memory there by design. Slopes come
    from a least-squares line over time, turned into bytes per batch with the run's batch rate.
    """
    run = rec.get("run") or {}
    stages = [s for s in run.get("stages") or [] if s.get("name") in GPU_STAGES and s.get("start") and s.get("end")]
    batches = sum(d.get("batches") or 0 for s in stages for d in s.get("devices") or [])
    if not stages or not batches:
        return None, None
    start, end = min(s["start"] for s in stages), max(s["end"] for s in stages)
    devices = max(len(s.get("devices") or []) for s in stages) or 1
    seconds_per_batch = (end - start) * devices / batches
    window = ((start + end) / 2, end)
    nvml, host = rec["samples"]["nvml"], rec["samples"]["host"]
    on_first_gpu = [g == 0 for g in nvml["gpu"]]
    gpu = _slope(nvml["t"], nvml["mem_used_bytes"], window, on_first_gpu)
    rss = _slope(host["t"], host["rss_bytes"], window, None)
    return (None if gpu is None else gpu * seconds_per_batch, None if rss is None else rss * seconds_per_batch)


def _slope(t, values, window, keep) -> float | None:
    t, values = np.asarray(t, dtype=float), np.asarray(values, dtype=float)
    chosen = (t >= window[0]) & (t <= window[1])
    if keep is not None:
        chosen &= np.asarray(keep, dtype=bool)
    if chosen.sum() < 5:
        return None
    return float(np.polyfit(t[chosen] - window[0], values[chosen], 1)[0])
