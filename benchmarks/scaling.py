"""Scaling over 1, 2, 4 and 8 GPUs (as many as the host has): seconds, and the share of the extra GPUs
that is wasted, 1 - T1 / (n * Tn) (0 when better than linear), for the whole run and for ESM-2 alone.
Reads end_to_end's runs (the median of their repeats)."""

from benchmarks.harness.scale import GPU_COUNTS
from benchmarks.harness.suite import PipelineSuite, core_run, median, number, value


def inefficiency(one: float | None, many: float | None, gpus: int) -> float | None:
    if not one or not many:
        return None
    return max(0.0, 1.0 - one / (gpus * many))  # better than linear is perfect: a cost never goes below 0


class Scaling(PipelineSuite):
    """1 - efficiency is a cost: 0 is perfect scaling, 0.5 means half of the added GPU time is lost."""

    params = (["typical", "large"], list(GPU_COUNTS))
    param_names = ("dataset", "gpus")
    version = "1"

    def setup(self, memo, dataset, gpus):
        self.many = self.run(memo, core_run(dataset, gpus))
        self.one = self.run(memo, core_run(dataset, 1))

    def track_seconds(self, memo, dataset, gpus):
        return value(self.many, "wall_seconds")

    track_seconds.unit = "s"

    def track_scaling_inefficiency(self, memo, dataset, gpus):
        return number(inefficiency(median(self.one, "wall_seconds"), median(self.many, "wall_seconds"), gpus))

    track_scaling_inefficiency.unit = "fraction"

    def track_esm2_scaling_inefficiency(self, memo, dataset, gpus):
        def esm2(metrics):
            return metrics["stage_seconds"].get("esm2")

        return number(inefficiency(median(self.one, esm2), median(self.many, esm2), gpus))

    track_esm2_scaling_inefficiency.unit = "fraction"
