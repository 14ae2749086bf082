"""Benchmark scales (`VNP_BENCH_SCALE`): which models, datasets, devices and time limits a run gets.

The suites' parameters never change with the scale (asv keeps one parameter grid per benchmark); a
scale maps each dataset *role* (typical, large, contigs, subset1m, full) to a concrete dataset, or leaves
it out, and a combination left out is skipped. Results of different scales never mix because the
scale is part of asv's environment name (`env_nobuild` matrix in asv.conf.json).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

ROLES = ("typical", "large", "contigs", "subset1m", "full")
GPU_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Scale:
    name: str
    model_size: str  # vnp --model-size
    on_gpu: bool  # False: every run on the CPU, and "1 GPU" means the CPU
    datasets: dict  # role -> dataset name
    all_gpus_only: tuple = ()  # roles run only with every GPU of the host (a whole sample on one GPU takes days)
    timed_roles: tuple = ()  # roles whose end-to-end run asv also times (time_predict): one more run each
    fixed_limit_s: float = 600.0  # per pipeline run: start-up, model load, ...
    esm_tokens_per_s_floor: float = 5000.0  # ... plus ESM tokens at the slowest plausible speed
    variants_role: str = "typical"
    leak_role: str = "large"
    oom_options: dict = field(default_factory=dict)  # how the OOM back-off benchmark provokes OOMs
    threads: int | None = None  # vnp --threads for every run (None: the pipeline's default, all cores)
    env: dict = field(default_factory=dict)  # set for every run
    repeats: int = 1  # runs of each core configuration per `asv run`: its tracks report them as samples
    sampler_interval_s: float = 0.1  # NVML/psutil/schedstat sampling period (VNP_BENCH_SAMPLER_INTERVAL overrides)
    # The regression gate (scripts/gate.sh): `asv continuous` rounds whose samples add up, the factor a
    # figure must grow by, and the benchmarks it judges (the others are shown, and fail only by failing).
    gate_rounds: int = 1
    gate_factor: float = 1.1
    gate_judged: str = ".*"
    # "rank": asv's own rule (the median grew by the factor and a rank test says the samples differ), for many
    # samples; "best": each commit's best sample grew by the factor, for a few long runs per commit.
    gate_rule: str = "rank"
    # A dataset run once, untimed and unrecorded, before a commit's first measured run in each `asv run`: the
    # first process to use a GPU after a while pays a cold start (libraries read from disk, clocks, caches).
    warmup_dataset: str | None = None

    def run_limit_s(self, esm_tokens: int) -> float:
        """Wall-clock limit of one pipeline run: a run that takes longer is killed and fails."""
        return self.fixed_limit_s + esm_tokens / self.esm_tokens_per_s_floor

# What the gate judges on a GPU: figures that belong to the run alone. Not NVML's memory (the whole card's, other
# processes included), not stages of milliseconds, not figures derived from those judged (projected hours).
GPU_GATE_JUDGED = (r"^(end_to_end\.EndToEnd\.track_(wall_seconds|seconds_per_million_esm_tokens|model_load_seconds)"
                   r"|end_to_end\.EndToEndTime\.time_predict"
                   r"|stages\.StageGpuPeak\.track_torch_(allocated|reserved)_bytes)\("
                   r"|^stages\.StageSeconds\.track_seconds\(.*'(dnabert|esm2)'\)$")
# Two rounds in alternating order, each commit warmed up first, judged on its best run: a cold first run, or a
# round disturbed by something else on the host, cannot make either commit look slower.
GPU_GATE = {"gate_rounds": 2, "gate_rule": "best", "gate_judged": GPU_GATE_JUDGED, "warmup_dataset": "tiny"}


SCALES = {
    "ci": Scale(
        name="ci", model_size="tiny", on_gpu=False,
        datasets={"typical": "tiny", "large": "small", "contigs": "tiny_contigs"},
        timed_roles=("typical", "large", "contigs"),
        fixed_limit_s=300.0, esm_tokens_per_s_floor=2000.0, leak_role="large",
        # On the CPU nothing runs out of memory: inject OOMs into batches 3 and 7 of each worker.
        oom_options={"env": {"VNP_FAULT_OOM": "3,7"}, "flags": {"token_budget": 2048}},
        # A shared 2-core machine: torch's intra-op threads fighting other load made the ESM-2 stage
        # vary 0.8-1.7 s; one thread everywhere leaves the OS scheduler as the only source of noise.
        threads=1, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        # Wall time there still varies 3x with other load, so the gate judges the figures that load cannot
        # inflate (a stage's seconds less its worker's wait for a CPU, and its CPU seconds), on the stages
        # that last (DNABERT-S, ESM-2): 2 runs x 4 rounds = 8 samples per commit (asv's rank test, p < 0.002
        # two-sided, needs at least 7 a side to call any difference real; 8 leaves a margin); at 1.2x.
        # Stages of 0.1-0.5 s need the CPU wait sampled every 20 ms to be attributed to the right stage.
        repeats=2, gate_rounds=4, gate_factor=1.2, sampler_interval_s=0.02,
        gate_judged=r"^stages\.StageSeconds\.track_(seconds_without_cpu_wait|cpu_seconds)\(.*'(dnabert|esm2)'\)$",
    ),
    "gpu": Scale(
        name="gpu", model_size="full", on_gpu=True,
        datasets={"typical": "typical", "large": "large", "contigs": "contigs"},
        timed_roles=("typical", "contigs"),
        # Cap torch at 12% of each GPU (~17 GB of an H200: the 3B model plus little room) under a large
        # token budget, so real allocations fail and the pipeline must halve its batches.
        oom_options={"env": {}, "flags": {"token_budget": 262144, "max_memory_fraction": 0.12}},
        **GPU_GATE,
    ),
    "full": Scale(
        name="full", model_size="full", on_gpu=True,
        datasets={"typical": "typical", "large": "large", "contigs": "contigs", "subset1m": "subset1m", "full": "full"},
        all_gpus_only=("full",),
        timed_roles=("typical", "contigs"),
        oom_options={"env": {}, "flags": {"token_budget": 262144, "max_memory_fraction": 0.12}},
        **GPU_GATE,
    ),
}


def current() -> Scale:
    """The scale VNP_BENCH_SCALE names; VNP_BENCH_WARMUP=none runs it without its warm-up (a host already warm)."""
    name = os.environ.get("VNP_BENCH_SCALE", "ci")
    if name not in SCALES:
        raise ValueError(f"VNP_BENCH_SCALE={name!r}: expected one of {', '.join(SCALES)}")
    if os.environ.get("VNP_BENCH_WARMUP") == "none":
        return replace(SCALES[name], warmup_dataset=None)
    return SCALES[name]
