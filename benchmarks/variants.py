"""The optimisations one at a time: the original's way (baseline: fp32, math attention, padded batches,
models reloaded per part), baseline plus one switch, everything on (the pipeline's defaults), and the two
opt-in steps beyond them (compiled, fp8). On one GPU, on the scale's typical dataset, back to back:
seconds and peak GPU bytes each."""

from benchmarks.harness.suite import SCALE, PipelineSuite, spec, value

BASELINE = {"variant": "baseline"}
# asv parameter -> (record label, as the report names variants; options that differ from the defaults)
VARIANTS = {
    "baseline": ("baseline", BASELINE),
    "+sdpa": ("sdpa", {**BASELINE, "attention": "sdpa"}),
    "+bf16": ("bf16", {**BASELINE, "precision": "bf16"}),
    "+packing": ("packing", {**BASELINE, "packing": True}),
    "+persistent-models": ("persistent", {**BASELINE, "persistent_models": True}),
    "all": ("all", {}),
    # beyond the defaults: static-shape compiled layers, and fp8 ESM-2 behind its fidelity check (run.json's
    # precision_used says whether fp8 ran; compile_seconds what compiling cost, inside the wall seconds)
    "compiled": ("compiled", {"compile": True}),
    "fp8": ("fp8", {"precision": "fp8", "compile": True}),
}
GPU_ONLY = {"+bf16": "bf16 needs a GPU", "fp8": "fp8 needs a GPU",
            "compiled": "compiling is measured on the GPU (on the CPU it is all compile time)"}


def variant_run(variant: str):
    if variant in GPU_ONLY and not SCALE.on_gpu:
        raise NotImplementedError(GPU_ONLY[variant])
    label, options = VARIANTS[variant]
    return spec("variants", SCALE.variants_role, 1, label, options)


class Variants(PipelineSuite):
    """Cost of each configuration; compare a row with `baseline` and `all` for what one switch buys."""

    params = (list(VARIANTS),)
    param_names = ("variant",)
    version = "1"

    def setup(self, memo, variant):
        self.metrics = self.run(memo, variant_run(variant))

    def track_seconds(self, memo, variant):
        return value(self.metrics, "wall_seconds")

    track_seconds.unit = "s"

    def track_peak_gpu_allocated_bytes(self, memo, variant):
        """torch's peak allocated bytes over the GPU stages (n/a on the CPU)."""
        return value(self.metrics, "peak_gpu_allocated_bytes")

    track_peak_gpu_allocated_bytes.unit = "bytes"

    def track_peak_gpu_bytes(self, memo, variant):
        """NVML's peak memory used (n/a without a GPU)."""
        return value(self.metrics, "peak_gpu_bytes_nvml")

    track_peak_gpu_bytes.unit = "bytes"
