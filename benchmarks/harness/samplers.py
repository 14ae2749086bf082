"""What only an outside observer sees: GPU memory, utilisation and power (NVML), and the host memory and
CPU of the pipeline's whole process tree (psutil), sampled in a thread at ~10 Hz.

Samples are kept as columns (`{"t": [...], "gpu": [...], ...}`), one row per GPU per tick for NVML and one
row per tick for the host, with Unix timestamps so they join the run record's stage times. Without a
GPU or without nvidia-ml-py the NVML columns stay empty; without psutil the host columns do.
The sampler measures its own cost: the CPU seconds its thread used (`cpu_seconds`).
"""

from __future__ import annotations

import contextlib
import threading
import time

from benchmarks.harness.host import gpu_processes, nvml, visible_nvml_indices

# ours_bytes / others_bytes: GPU memory of the compute processes inside / outside the pipeline's process tree
# (None where NVML lists no processes or the tree is unknown): whether the card was shared during the run.
NVML_COLUMNS = ("t", "gpu", "mem_used_bytes", "util_percent", "power_w", "ours_bytes", "others_bytes")
HOST_COLUMNS = ("t", "rss_bytes", "cpu_percent")
# Per process and tick, its main thread's cumulative seconds on a CPU and waiting for one (Linux
# /proc/PID/schedstat): a stage's wall time less that wait is what other load on the host cannot inflate.
SCHED_COLUMNS = ("t", "pid", "run_s", "wait_s")
TREE_REFRESH_S = 1.0  # finding new child processes walks /proc; memory is read every tick


class Sampler:
    """Start it before the run with the run's root pid, stop it after; `stop()` returns the columns."""

    def __init__(self, interval_s: float = 0.1, gpus: bool = True, host: bool = True):
        self.interval_s = interval_s
        empty = self.no_samples()
        self.nvml, self.host, self.sched = empty["nvml"], empty["host"], empty["sched"]
        self.cpu_seconds = 0.0
        self._want_gpus, self._want_host = gpus, host
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._root = None
        self._processes: dict = {}
        self._refreshed = 0.0

    @staticmethod
    def no_samples() -> dict:
        """The empty columns of a run measured without samplers."""
        return {"nvml": {name: [] for name in NVML_COLUMNS}, "host": {name: [] for name in HOST_COLUMNS},
                "sched": {name: [] for name in SCHED_COLUMNS}}

    def start(self, pid: int) -> Sampler:
        self._pid = pid
        self._thread = threading.Thread(target=self._loop, name="vnp-bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return {"nvml": self.nvml, "host": self.host, "sched": self.sched}

    def _loop(self) -> None:
        started_cpu = time.thread_time()
        with nvml() if self._want_gpus else contextlib.nullcontext() as pynvml:
            handles = []
            if pynvml:
                handles = [(gpu, pynvml.nvmlDeviceGetHandleByIndex(index))
                           for gpu, index in enumerate(visible_nvml_indices(pynvml))]
            psutil = self._psutil()
            while True:
                now = time.time()
                for gpu, handle in handles:
                    self._sample_gpu(pynvml, gpu, handle, now)
                if psutil:
                    self._sample_host(psutil, now)
                if self._stop.wait(self.interval_s):
                    break
        self.cpu_seconds = time.thread_time() - started_cpu

    def _psutil(self):
        if not self._want_host:
            return None
        try:
            import psutil

            self._root = psutil.Process(self._pid)
        except (ImportError, Exception):
            return None
        return psutil

    def _sample_gpu(self, pynvml, gpu: int, handle, now: float) -> None:
        try:
            used = pynvml.nvmlDeviceGetMemoryInfo(handle).used
            util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        except Exception:  # a GPU that stops answering must not end the run's measurement
            return
        ours = others = None
        processes = gpu_processes(pynvml, handle)
        if processes and self._root is not None:
            mine = {pid: self._in_tree(pid) for pid in processes}
            ours = sum(used for pid, used in processes.items() if mine[pid])
            others = sum(used for pid, used in processes.items() if not mine[pid])
        for name, value in zip(NVML_COLUMNS, (now, gpu, int(used), float(util), power, ours, others)):
            self.nvml[name].append(value)

    def _in_tree(self, pid: int) -> bool:
        """Whether `pid` is the pipeline or one of its descendants, asked of the process itself when the tree has
        not seen it yet (a worker can open its GPU context before the next refresh of the tree)."""
        if pid == self._pid or pid in self._processes:
            return True
        import psutil  # (the caller checked it is there: self._root is a psutil.Process)

        try:
            return any(parent.pid == self._pid for parent in psutil.Process(pid).parents())
        except psutil.Error:  # gone, or not a process of this host
            return False

    def _sample_host(self, psutil, now: float) -> None:
        # At a fine interval (the ci scale's 20 ms) look for new workers every few ticks: a worker that starts
        # its stage within a second of starting would otherwise have no schedstat sample before the stage.
        if now - self._refreshed >= min(TREE_REFRESH_S, 5 * self.interval_s):
            self._refresh_tree(psutil)
            self._refreshed = now
        rss = cpu = 0.0
        for pid, process in list(self._processes.items()):
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    cpu += process.cpu_percent(None)
            except psutil.Error:  # exited between two ticks
                del self._processes[pid]
                continue
            self._sample_sched(pid, now)
        if self._processes:
            for name, value in zip(HOST_COLUMNS, (now, int(rss), cpu)):
                self.host[name].append(value)

    def _sample_sched(self, pid: int, now: float) -> None:
        try:
            with open(f"/proc/{pid}/schedstat") as handle:
                run_ns, wait_ns = handle.read().split()[:2]
        except (OSError, ValueError):  # not Linux, or the process just exited
            return
        for name, value in zip(SCHED_COLUMNS, (now, pid, int(run_ns) / 1e9, int(wait_ns) / 1e9), strict=True):
            self.sched[name].append(value)

    def _refresh_tree(self, psutil) -> None:
        """Follow the root and all its descendants; keep Process objects so cpu_percent has a baseline."""
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            tree = []
        alive = {p.pid: p for p in tree}
        for pid, process in alive.items():
            if pid not in self._processes:
                with contextlib.suppress(psutil.Error):
                    process.cpu_percent(None)  # first call sets the baseline and returns 0
                    self._processes[pid] = process
        for pid in set(self._processes) - set(alive):
            del self._processes[pid]
