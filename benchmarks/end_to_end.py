"""Whole runs of the pipeline: typical, large and contig datasets (plus a 1M-read subset and a whole
6M-read sample at the `full` scale), per GPU count. One run per configuration feeds every track_*;
`time_predict` times one more run of the datasets the scale times (every run is validated)."""

from asv_runner.benchmarks.mark import SkipNotImplemented

from benchmarks.harness import runs
from benchmarks.harness.scale import GPU_COUNTS, ROLES
from benchmarks.harness.suite import SCALE, PipelineSuite, core_run, value


class EndToEnd(PipelineSuite):
    """Costs of one whole run; every metric is bigger-is-worse."""

    params = (list(ROLES), list(GPU_COUNTS))
    param_names = ("dataset", "gpus")
    version = "1"

    def setup(self, memo, dataset, gpus):
        self.metrics = self.run(memo, core_run(dataset, gpus))

    def track_wall_seconds(self, memo, dataset, gpus):
        return value(self.metrics, "wall_seconds")

    track_wall_seconds.unit = "s"

    def track_seconds_per_million_esm_tokens(self, memo, dataset, gpus):
        return value(self.metrics, "seconds_per_million_esm_tokens")

    track_seconds_per_million_esm_tokens.unit = "s/Mtoken"

    def track_model_load_seconds(self, memo, dataset, gpus):
        return value(self.metrics, "model_load_seconds")

    track_model_load_seconds.unit = "s"

    def track_projected_full_sample_hours(self, memo, dataset, gpus):
        """A whole 6M-read sample on this many GPUs, by the cost model fitted on this run alone.

        n/a at the ci scale: tiny models on a CPU say nothing about a whole sample on full-size ones
        (asv shows a benchmark as n/a for SkipNotImplemented; a plain NotImplementedError counts as
        skipped only in setup)."""
        if not SCALE.on_gpu:
            raise SkipNotImplemented(f"the {SCALE.name} scale's tiny CPU runs project no real sample")
        return value(self.metrics, "projected_full_sample_hours")

    track_projected_full_sample_hours.unit = "h"

    def track_peak_host_rss(self, memo, dataset, gpus):
        """Peak RSS of the pipeline's whole process tree (asv's peakmem_* would see only this process)."""
        return value(self.metrics, "peak_host_rss_bytes")

    track_peak_host_rss.unit = "bytes"

    def track_peak_gpu_bytes(self, memo, dataset, gpus):
        """Peak NVML memory used on the busiest GPU (all processes, the CUDA context included)."""
        return value(self.metrics, "peak_gpu_bytes_nvml")

    track_peak_gpu_bytes.unit = "bytes"


class EndToEndTime(PipelineSuite):
    """asv's own wall clock around one more validated run (its record is repeat 1, 2, ...)."""

    params = (list(ROLES), list(GPU_COUNTS))
    param_names = ("dataset", "gpus")
    version = "1"
    # Exactly one call: a run takes seconds (ci) to hours (full), and its variation is measured across
    # commits and repeats of `asv run`, not by calling it several times here.
    number, repeat, rounds, warmup_time, min_run_count = 1, 1, 1, 0.0, 1

    def setup(self, memo, dataset, gpus):
        if dataset not in SCALE.timed_roles:
            raise NotImplementedError(f"the {SCALE.name} scale does not time {dataset} twice")
        self.run(memo, core_run(dataset, gpus))  # skips or fails exactly like the tracks

    def time_predict(self, memo, dataset, gpus):
        runs.execute(core_run(dataset, gpus), SCALE, resume=False)  # asv times it: the whole run, always
