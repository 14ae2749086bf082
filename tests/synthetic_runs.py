"""Synthetic RunRecords generated from a known cost model: the truth the projection and report tests check."""

from analysis import costmodel as C
from analysis.record import Record, usable_records

# The truth the synthetic runs are generated from: stage -> (fixed s, s per work unit on 1 GPU, Amdahl
# parallel fraction). Work units follow projection.stage_kind (bases, DNABERT/ESM tokens, frames, chunks).
TRUTH = {
    "preprocess": (0.5, 2e-6, 0.0),
    "dnabert": (1.0, 1e-5, 0.9),
    "esm2": (2.0, 1e-4, 0.95),
    "classify": (0.2, 1e-4, 1.0),
    "write": (0.1, 1e-5, 0.0),
    "consensus": (0.05, 2e-5, 0.0),
}
STARTUP_SECONDS = 7.0
GPU_STAGES = ("dnabert", "esm2", "classify")
T0 = 1_764_340_000.0
GIB = 2**30


def composition(reads):
    frames = 0.8 * reads
    return {
        "reads": reads,
        "bases": 150.0 * reads,
        "chunks": float(reads),
        "chunks_with_frame": 0.6 * reads,
        "frames": frames,
        "dnabert_tokens": 33.0 * frames,
        "esm_tokens": 51.0 * frames,
    }


def true_seconds(stage, comp, gpus, truth=TRUTH):
    fixed, rate, parallel_fraction = truth[stage]
    unit, parallel = C.stage_kind(stage)
    factor = (1 - parallel_fraction) + parallel_fraction / gpus if parallel else 1.0
    return fixed + rate * factor * comp[unit]


def true_total(comp, gpus, truth=TRUTH):
    return STARTUP_SECONDS + sum(true_seconds(stage, comp, gpus, truth) for stage in truth)


def synthetic_record(
    dataset="typical",
    reads=1000,
    gpus=1,
    repeat=0,
    factor=1.0,
    variant="all",
    machine="m1",
    commit="abcdef1234567890",
    suite="end_to_end",
    scale="gpu",
    truth=TRUTH,
    comp=None,
    samples=True,
    start=T0,
    peak_per_token=1000,
    static_bytes=8 * GIB,
    token_budget=16384,
):
    """A vnp-runrecord/1 dict whose stage times follow ``truth`` (times ``factor``), with sampler columns."""
    comp = comp or composition(reads)
    t = start + STARTUP_SECONDS * factor
    stages = []
    for name in truth:
        seconds = true_seconds(name, comp, gpus, truth) * factor
        unit, parallel = C.stage_kind(name)
        devices = []
        if parallel:
            devices = [
                {
                    "device": f"cuda:{g}",
                    "seconds": seconds,
                    "items": comp["frames"] / gpus,
                    "tokens": comp[unit] / gpus,
                    "padding_tokens": 0,
                    "batches": 3,
                    "peak_allocated_bytes": static_bytes + peak_per_token * token_budget,
                    "peak_reserved_bytes": static_bytes + 2 * peak_per_token * token_budget,
                    "oom_backoffs": 0,
                    "intervals": [[t, t + seconds]],
                }
                for g in range(gpus)
            ]
        stages.append(
            {
                "name": name,
                "start": t,
                "end": t + seconds,
                "seconds": seconds,
                "items": comp["frames"],
                "tokens": comp[unit] if unit.endswith("tokens") else None,
                "devices": devices,
            }
        )
        t += seconds
    wall = t - start
    run = {
        "schema": "vnp-run/1",
        "tool": {"name": "vnp", "version": "0.1.0", "commit": commit},
        "host": {"gpus": [{"index": g, "name": "Test GPU", "total_bytes": 80 * GIB} for g in range(gpus)]},
        "config": {
            "chunk_size": 300,
            "model_size": "full",
            "precision": "bf16",
            "attention": "sdpa",
            "packing": True,
            "persistent_models": True,
            "token_budget": {"dnabert": token_budget, "esm2": token_budget},
        },
        "synthetic_weights": True,
        "input": comp,
        "output": {"frames": comp["frames"], "consensus_rows": comp["chunks_with_frame"]},
        "stages": stages,
        "workers": [{"device": f"cuda:{g}", "model_load_seconds": {"esm2": 3.0, "dnabert": 0.5}} for g in range(gpus)],
        "model_load_seconds": 3.5,
        "started_at": start,
        "ended_at": t,
        "wall_seconds": wall,
        "exit": {"status": "ok", "code": 0, "error": None},
    }
    nvml = {"t": [], "gpu": [], "mem_used_bytes": [], "util_percent": [], "power_w": []}
    host = {"t": [], "rss_bytes": [], "cpu_percent": []}
    gpu_span = (stages[1]["start"], stages[3]["end"])
    if samples:
        steps = 40
        for i in range(steps + 1):
            now = start + wall * i / steps
            busy = gpu_span[0] <= now <= gpu_span[1]
            for g in range(gpus):
                nvml["t"].append(now)
                nvml["gpu"].append(g)
                nvml["mem_used_bytes"].append(static_bytes + (peak_per_token * token_budget if busy else 0))
                nvml["util_percent"].append(90.0 if busy else 5.0)
                nvml["power_w"].append(500.0 if busy else 80.0)
            host["t"].append(now)
            host["rss_bytes"].append(2 * GIB)
            host["cpu_percent"].append(100.0)
    peaks = [
        {
            "stage": s["name"],
            "gpu": int(d["device"].split(":")[1]),
            "nvml_peak_bytes": static_bytes + peak_per_token * token_budget,
            "torch_peak_allocated_bytes": d["peak_allocated_bytes"],
            "torch_peak_reserved_bytes": d["peak_reserved_bytes"],
            "host_peak_rss_bytes": 2 * GIB,
        }
        for s in stages
        for d in s["devices"]
    ]
    return {
        "schema": "vnp-runrecord/1",
        "harness": {
            "target": "vnp",
            "suite": suite,
            "dataset": dataset,
            "scale": scale,
            "gpus": gpus,
            "variant": variant,
            "repeat": repeat,
            "machine": machine,
            "commit": commit,
            "argv": ["vnp", "predict"],
            "started_at": start,
            "ended_at": t,
            "wall_seconds": wall,
            "exit_code": 0,
            "validated": True,
            "records_in": comp["frames"],
            "records_out": comp["frames"],
            "resumed": False,
            "sampler_interval_s": 0.1,
        },
        "run": run,
        "samples": {"nvml": nvml, "host": host},
        "stage_peaks": peaks,
    }


def observations(specs, **kwargs):
    """Observations of synthetic runs: specs are (dataset, reads, gpus[, repeat, factor])."""
    records = []
    for spec in specs:
        dataset, reads, gpus, repeat, factor = (*spec, *(None, None, None, 0, 1.0)[len(spec) :])
        records.append((f"{dataset}-{gpus}-{repeat}", synthetic_record(dataset, reads, gpus, repeat, factor, **kwargs)))
    obs, skipped = from_pairs(records)
    assert not skipped
    return obs


def from_pairs(pairs):
    """The usable Records among (source, RunRecord dict) pairs, and why the others were left out."""
    return usable_records([Record.from_json(document, str(source)) for source, document in pairs])
