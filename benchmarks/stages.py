"""The stages of one run: seconds per stage, and per stage and GPU the peak memory as torch and NVML
see it. They read end_to_end's runs (no extra run)."""

from benchmarks.harness import host
from benchmarks.harness.metrics import GPU_STAGES
from benchmarks.harness.scale import GPU_COUNTS
from benchmarks.harness.suite import SCALE, PipelineSuite, core_run, value

STAGES = ("preprocess", "dnabert", "esm2", "classify", "write", "consensus")


class StageSeconds(PipelineSuite):
    """Seconds per stage; for the GPU stages, the busy time of the slowest GPU."""

    params = (["typical", "large"], list(GPU_COUNTS), list(STAGES))
    param_names = ("dataset", "gpus", "stage")
    version = "1"

    def setup(self, memo, dataset, gpus, stage):
        self.seconds = self.run(memo, core_run(dataset, gpus))["stage_seconds"].get(stage)

    def track_seconds(self, memo, dataset, gpus, stage):
        return value(self.seconds)

    track_seconds.unit = "s"


class StageGpuPeak(PipelineSuite):
    """Peak GPU bytes per stage and GPU of the typical run on every GPU of the host."""

    params = (list(GPU_STAGES), list(range(max(GPU_COUNTS))))
    param_names = ("stage", "gpu")
    version = "1"

    def setup(self, memo, stage, gpu):
        if not SCALE.on_gpu:
            raise NotImplementedError(f"the {SCALE.name} scale runs on the CPU")
        widest = max((n for n in GPU_COUNTS if n <= host.gpu_count()), default=0)
        if gpu >= widest:
            raise NotImplementedError(f"GPU {gpu} is not used by the widest run here ({widest} GPUs)")
        self.peak = self.run(memo, core_run("typical", widest))["stage_peaks"].get(f"{stage}:{gpu}") or {}

    def track_torch_allocated_bytes(self, memo, stage, gpu):
        return value(self.peak.get("torch_peak_allocated_bytes"))

    track_torch_allocated_bytes.unit = "bytes"

    def track_torch_reserved_bytes(self, memo, stage, gpu):
        return value(self.peak.get("torch_peak_reserved_bytes"))

    track_torch_reserved_bytes.unit = "bytes"

    def track_nvml_bytes(self, memo, stage, gpu):
        """All memory in use on the GPU during the stage, the CUDA context and other processes included."""
        return value(self.peak.get("nvml_peak_bytes"))

    track_nvml_bytes.unit = "bytes"
