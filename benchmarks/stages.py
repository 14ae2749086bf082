"""The stages of one run: seconds per stage, and per stage and GPU the peak memory as torch and NVML
see it. They read end_to_end's runs (no extra run)."""

from benchmarks.harness import host
from benchmarks.harness.metrics import GPU_STAGES
from benchmarks.harness.scale import GPU_COUNTS
from benchmarks.harness.suite import SCALE, PipelineSuite, core_run, value

STAGES = ("preprocess", "dnabert", "esm2", "classify", "write", "consensus")


class StageSeconds(PipelineSuite):
    """Seconds per stage; for the GPU stages, the busy time of the slowest GPU. The GPU stages also
    report their seconds less the time the worker waited for a CPU (what other load on the host adds),
    and the worker's CPU seconds: the figures the regression gate judges on a shared CPU."""

    params = (["typical", "large"], list(GPU_COUNTS), list(STAGES))
    param_names = ("dataset", "gpus", "stage")
    version = "1"

    def setup(self, memo, dataset, gpus, stage):
        self.metrics = self.run(memo, core_run(dataset, gpus))

    def track_seconds(self, memo, dataset, gpus, stage):
        return value(self.metrics, lambda m: m["stage_seconds"].get(stage))

    track_seconds.unit = "s"

    def track_seconds_without_cpu_wait(self, memo, dataset, gpus, stage):
        return value(self.metrics, lambda m: (m.get("stage_seconds_without_cpu_wait") or {}).get(stage))

    track_seconds_without_cpu_wait.unit = "s"

    def track_cpu_seconds(self, memo, dataset, gpus, stage):
        return value(self.metrics, lambda m: (m.get("stage_cpu_seconds") or {}).get(stage))

    track_cpu_seconds.unit = "s"


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
        self.metrics = self.run(memo, core_run("typical", widest))
        self.key = f"{stage}:{gpu}"

    def peak(self, name: str) -> float | dict:
        return value(self.metrics, lambda m: (m["stage_peaks"].get(self.key) or {}).get(name))

    def track_torch_allocated_bytes(self, memo, stage, gpu):
        return self.peak("torch_peak_allocated_bytes")

    track_torch_allocated_bytes.unit = "bytes"

    def track_torch_reserved_bytes(self, memo, stage, gpu):
        return self.peak("torch_peak_reserved_bytes")

    track_torch_reserved_bytes.unit = "bytes"

    def track_nvml_bytes(self, memo, stage, gpu):
        """All memory in use on the GPU during the stage, the CUDA context and other processes included."""
        return self.peak("nvml_peak_bytes")

    track_nvml_bytes.unit = "bytes"
