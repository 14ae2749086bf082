"""The bottleneck analysis, per commit: where each model's time goes between its GEMMs, and how far it runs
from its GEMM-only ceiling.

`vnp profile MODEL` (the command line, run in this process through runpy, never vnp's modules) runs one packed
batch shaped like the pipeline's under torch's profiler and times the model's GEMMs alone on the same shapes in
the same process; the harness names each kernel into a category by its own rules (`harness/kernel_groups.py`).
gpu scales: the full models in bf16 on the first GPU, ESM-2 on 64,875 tokens of 51-52-token frames (the batch
the issue profiled) and DNABERT-S on 65,536 tokens of 22-46; each with the eager and the fused kernels
(`--kernels fused`). ci scale: the tiny models on the CPU, eager only, whose "kernels" are aten operators: the
chain runs in CI, the numbers say nothing about a GPU.

Every figure is a cost whose growth is bad (docs/benchmarks.md, "Metrics"): per category the share of the
profiled time (not for the GEMMs, whose share growing is good) and nanoseconds per token (the GEMMs included);
per model the shortfall from the GEMM-only ceiling, 1 - (GEMM-only seconds / forward seconds), and the
forward pass's seconds per million tokens. A commit without `vnp profile`, or fused kernels that did not run
(they fall back to eager, and the profile says so), is n/a.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.harness import kernel_groups
from benchmarks.harness.inprocess import CommandFailed, require, run_vnp
from benchmarks.harness.suite import SCALE

MODELS = ["esm2", "dnabert"]
KERNELS = ["eager", "fused"]
# model -> (tokens, frame lengths) of the profiled batch at the gpu scales; the ci scale's is small
BATCHES = {"esm2": (64875, "51-52"), "dnabert": (65536, "22-46")} if SCALE.on_gpu else \
    {"esm2": (4096, "51-52"), "dnabert": (4096, "22-46")}


def profile(model: str, kernels: str, folder: Path) -> dict:
    """The harness's summary of `vnp profile MODEL --kernels KERNELS`, or why there is none."""
    if kernels == "fused" and not SCALE.on_gpu:
        return {"skip": "the fused kernels need a GPU"}
    tokens, lengths = BATCHES[model]
    device_flags = ["--model-size", SCALE.model_size] + (["--precision", "bf16"] if SCALE.on_gpu else ["--cpu"])
    out = folder / f"{model}-{kernels}.json"
    try:
        require("profile", "--out", "--kernels", "--tokens", "--frame-lengths",
                *[flag for flag in device_flags if flag.startswith("--")])
        run_vnp("profile", model, "--out", str(out), "--kernels", kernels, "--tokens", str(tokens),
                "--frame-lengths", lengths, *device_flags)
    except NotImplementedError as reason:
        return {"skip": str(reason)}
    except CommandFailed as reason:
        return {"failed": str(reason)}
    document = json.loads(out.read_text())
    if document["kernels_used"] != kernels:
        return {"skip": f"--kernels {kernels} fell back to {document['kernels_used']}: {document['kernels_fallback']}"}
    return kernel_groups.summary(document)


class _Profiles:
    """One profile per (model, kernels) for every benchmark here, made once per commit by `setup_cache`."""

    version = "1"
    timeout = 900

    def setup_cache(self):
        import torch  # here, not at import: asv discovers the suite without torch or CUDA

        if SCALE.on_gpu and not torch.cuda.is_available():
            return {(m, k): {"skip": "no CUDA device"} for m in MODELS for k in KERNELS}
        with tempfile.TemporaryDirectory(prefix="vnp-bench-kernels-") as folder:
            return {(m, k): profile(m, k, Path(folder)) for m in MODELS for k in KERNELS}

    setup_cache.timeout = 900

    def setup(self, profiles, model, kernels, *rest):
        self.summary = profiles[(model, kernels)]
        if "skip" in self.summary:
            raise NotImplementedError(self.summary["skip"])
        if "failed" in self.summary:
            raise RuntimeError(self.summary["failed"])


class KernelShare(_Profiles):
    """Share of the profiled time per category of the work between the GEMMs (GPU time; CPU at the ci scale)."""

    params = (MODELS, KERNELS, list(kernel_groups.GLUE))
    param_names = ("model", "kernels", "category")

    def track_share(self, profiles, model, kernels, category):
        return self.summary["share"][category]

    track_share.unit = "fraction"


class KernelTime(_Profiles):
    """Profiled time per token, per category, the GEMMs included."""

    params = (MODELS, KERNELS, list(kernel_groups.CATEGORIES))
    param_names = ("model", "kernels", "category")

    def track_ns_per_token(self, profiles, model, kernels, category):
        return self.summary["ns_per_token"][category]

    track_ns_per_token.unit = "ns/token"


class GemmCeiling(_Profiles):
    """How far the forward pass runs from its GEMMs alone (same shapes, same process), and its own time."""

    params = (MODELS, KERNELS)
    param_names = ("model", "kernels")

    def track_shortfall(self, profiles, model, kernels):
        """1 - fraction of the GEMM-only ceiling: 0 when the model runs as fast as its GEMMs alone."""
        return max(0.0, 1.0 - self.summary["fraction_of_gemm_ceiling"])

    track_shortfall.unit = "fraction"

    def track_seconds_per_million_tokens(self, profiles, model, kernels):
        return 1e6 / self.summary["tokens_per_second"]

    track_seconds_per_million_tokens.unit = "s/Mtoken"
