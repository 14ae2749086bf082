"""Memory behaviour: leaks over a long run, allocator fragmentation, surviving out-of-memory errors,
what persistent models cost and save, and expandable segments on and off. All on one GPU."""

from benchmarks.harness.suite import SCALE, PipelineSuite, core_run, median, number, spec, value


def _gpu_only():
    if not SCALE.on_gpu:
        raise NotImplementedError(f"the {SCALE.name} scale runs on the CPU: no allocator to measure")


class Leak(PipelineSuite):
    """Growth per batch over the second half of the GPU stages of the scale's long run; 0 when nothing leaks
    (memory that shrinks counts as 0: a cost never goes below zero)."""

    version = "1"

    def setup(self, memo):
        self.metrics = self.run(memo, core_run(SCALE.leak_role, 1))

    def track_gpu_bytes_per_batch(self, memo):
        return value(self.metrics, "gpu_bytes_per_batch")

    track_gpu_bytes_per_batch.unit = "bytes/batch"

    def track_host_bytes_per_batch(self, memo):
        return value(self.metrics, "host_bytes_per_batch")

    track_host_bytes_per_batch.unit = "bytes/batch"


class Fragmentation(PipelineSuite):
    """Peak reserved minus peak allocated bytes (worst GPU stage): memory the allocator holds but cannot use."""

    version = "1"

    def setup(self, memo):
        _gpu_only()
        self.metrics = self.run(memo, core_run("typical", 1))

    def track_fragmentation_bytes(self, memo):
        return value(self.metrics, "fragmentation_bytes")

    track_fragmentation_bytes.unit = "bytes"


class OomBackoff(PipelineSuite):
    """A run that must hit out-of-memory errors (a memory cap on a GPU, injected faults on the CPU) still
    completes with every record; the count of halved batches and the seconds it took are its costs."""

    version = "1"

    def setup(self, memo):
        options, env = SCALE.oom_options["flags"], SCALE.oom_options["env"]
        self.metrics = self.run(memo, spec("memory", "typical", 1, "oom", options, env))

    def track_backoffs(self, memo):
        return value(self.metrics, "oom_backoffs")

    track_backoffs.unit = "backoffs"

    def track_seconds(self, memo):
        return value(self.metrics, "wall_seconds")

    track_seconds.unit = "s"


class PersistentModels(PipelineSuite):
    """Keeping the models loaded (the default) against reloading them per part, as the original does: the
    seconds of each, side by side (their difference crosses zero with noise, and reads backwards)."""

    version = "2"

    def setup(self, memo):
        self.kept = self.run(memo, core_run("typical", 1))
        self.reloaded = self.run(memo, spec("memory", "typical", 1, "reload", {"persistent_models": False}))

    def track_seconds_reloading_models(self, memo):
        """Wall seconds when the models are reloaded for every part."""
        return value(self.reloaded, "wall_seconds")

    track_seconds_reloading_models.unit = "s"

    def track_seconds_persistent_models(self, memo):
        """Wall seconds with the models kept loaded (the default)."""
        return value(self.kept, "wall_seconds")

    track_seconds_persistent_models.unit = "s"

    def track_resident_extra_bytes(self, memo):
        """GPU bytes persistent models cost at peak (with them minus without them, 0 if not more)."""
        kept, reloaded = (median(runs, "peak_gpu_allocated_bytes") for runs in (self.kept, self.reloaded))
        return number(None if kept is None or reloaded is None else max(0, kept - reloaded))

    track_resident_extra_bytes.unit = "bytes"


class ExpandableSegments(PipelineSuite):
    """PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True against the default allocator."""

    params = ([False, True],)
    param_names = ("expandable_segments",)
    version = "1"

    def setup(self, memo, expandable_segments):
        _gpu_only()
        run = (spec("memory", "typical", 1, "expandable", {"expandable_segments": True})
               if expandable_segments else core_run("typical", 1))
        self.metrics = self.run(memo, run)

    def track_peak_reserved_bytes(self, memo, expandable_segments):
        return value(self.metrics, "peak_gpu_reserved_bytes")

    track_peak_reserved_bytes.unit = "bytes"

    def track_fragmentation_bytes(self, memo, expandable_segments):
        return value(self.metrics, "fragmentation_bytes")

    track_fragmentation_bytes.unit = "bytes"
