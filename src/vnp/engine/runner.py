"""Run the workers: in this process for one device, one spawned process per device otherwise.

Workers start before preprocessing and load their models while the parent reads and translates the
input (start-up, CUDA initialisation and model loading otherwise add seconds to every run); they begin
embedding once the parent sends the plan (the part size, known only after preprocessing, and the run id
that stamps every part file). Spawn, not fork: a forked child cannot use CUDA once the parent has touched
it, and the parent here never does (device discovery goes through NVML), so each child initialises only
its own GPU.

Workers die with their parent (a parent-death signal on Linux, a check of the parent's pid before every
part everywhere), and talk to it only through queues: plan in; progress, summary or error out. A worker
of a killed run can therefore never start on, or report into, the next run in the same OUTDIR, and the
part files it might still write carry its own run's id (``parts.py``).
"""

from __future__ import annotations

import os
import queue as queue_module
import threading
from dataclasses import replace

from vnp.engine.lifetime import die_with_parent
from vnp.engine.worker import Worker, WorkerConfig
from vnp.errors import VnpError
from vnp.progress import progress_bar


class WorkerPool:
    def __init__(self, configs: list[WorkerConfig], *, quiet: bool):
        self.configs = configs
        self.quiet = quiet
        self._bar = None
        self._processes = []
        self._loader = None
        self._load_error = None
        if len(configs) == 1:
            self._start_in_process(configs[0])
        else:
            self._start_spawned()

    # -- one device: this process; the models load in a thread while the parent preprocesses ---------
    def _start_in_process(self, config: WorkerConfig) -> None:
        self._worker = Worker(config, self._advance)
        if self._worker.is_cuda:  # on a CPU, loading would only compete with preprocessing for the cores
            self._loader = threading.Thread(target=self._load, name="vnp-model-loader", daemon=True)
            self._loader.start()

    def _load(self) -> None:
        try:
            self._worker.load_models()
        except BaseException as error:  # re-raised in the main thread by run()
            self._load_error = error

    # -- several devices: a spawned process each -------------------------------------------------------
    def _start_spawned(self) -> None:
        import torch.multiprocessing as mp

        context = mp.get_context("spawn")
        self._messages = context.Queue()
        self._plans = [context.Queue() for _ in self.configs]
        self._processes = [
            context.Process(target=worker_main, args=(replace(c, parent_pid=os.getpid()), plans, self._messages),
                            name=f"vnp-worker-{c.rank}")
            for c, plans in zip(self.configs, self._plans)
        ]
        for process in self._processes:
            process.start()

    def run(self, part_size: int, total_frames: int, run_id: str) -> list[dict]:
        """Hand the workers the plan, wait for them, return their summaries."""
        with progress_bar(total_frames, "embedding", quiet=self.quiet) as self._bar:
            if not self._processes:
                if self._loader is not None:
                    self._loader.join()
                    if self._load_error is not None:
                        raise self._load_error
                return [self._worker.run(part_size, run_id)]
            for plans in self._plans:
                plans.put({"part_size": part_size, "run_id": run_id})
            return self._wait_spawned()

    def _advance(self, stage: str, items: int) -> None:
        if self._bar is not None and stage in ("esm2", "skipped"):
            self._bar.update(items)

    def _wait_spawned(self) -> list[dict]:
        summaries, failures = {}, {}
        while any(p.is_alive() for p in self._processes) and not failures:
            self._drain(summaries, failures, timeout=0.5)
            if any(p.exitcode not in (None, 0) for p in self._processes):
                break
        self._drain(summaries, failures, timeout=0)
        if not failures and any(p.exitcode not in (None, 0) for p in self._processes):
            self._drain(summaries, failures, timeout=2.0)  # a failed worker's last message may be in the pipe
        self.close()  # stops the others (their exit codes then say only that we stopped them)
        # A failure a worker reported explains the stop; an exit code alone comes second.
        pairs = sorted(zip(self.configs, self._processes), key=lambda pair: pair[0].rank not in failures)
        for config, process in pairs:
            if config.rank in failures or process.exitcode != 0:
                reason, code = failures.get(config.rank, (f"exit code {process.exitcode}", VnpError.exit_code))
                error = VnpError(f"worker on {config.device} failed: {reason}")
                error.exit_code = code  # a worker's NonFiniteScoresError keeps its exit code
                raise error
        return [summaries[c.rank] for c in self.configs]

    def _drain(self, summaries: dict, failures: dict, timeout: float) -> None:
        try:
            while True:
                kind, rank, payload = self._messages.get(timeout=timeout)
                if kind == "progress":
                    self._advance(*payload)
                elif kind == "done":
                    summaries[rank] = payload
                else:
                    failures[rank] = payload
                timeout = 0
        except queue_module.Empty:
            pass

    def close(self) -> None:
        """Stop what still runs (one worker failed, or the parent did): --resume keeps what finished."""
        if self._loader is not None:
            self._loader.join()  # never leave a thread inside CUDA calls at interpreter exit
        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _wait_for_plan(plans, parent: int | None) -> dict:
    """Block until the parent sends the plan; give up if the parent is gone (killed: nobody will)."""
    while True:
        try:
            return plans.get(timeout=0.5)
        except queue_module.Empty:
            if parent and os.getppid() != parent:
                raise SystemExit(1) from None


def worker_main(config: WorkerConfig, plans, messages) -> None:
    """Entry point of a spawned worker: load the models, wait for the plan, run, send the summary (or the error)."""
    die_with_parent(config.parent_pid)
    progress = lambda stage, items: messages.put(("progress", config.rank, (stage, items)))  # noqa: E731
    try:
        worker = Worker(config, progress)
        worker.load_models()
        plan = _wait_for_plan(plans, config.parent_pid)
        messages.put(("done", config.rank, worker.run(plan["part_size"], plan["run_id"])))
    except BaseException as error:  # the parent turns this into one line on stderr
        if isinstance(error, SystemExit):
            raise
        message = str(error) if isinstance(error, VnpError) else f"{type(error).__name__}: {error}"
        messages.put(("failed", config.rank, (message, getattr(error, "exit_code", VnpError.exit_code))))
        raise SystemExit(1) from None
