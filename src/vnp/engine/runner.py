"""Run the workers: in this process for one device, one spawned process per device otherwise.

Workers start before preprocessing and load their models while the parent reads and translates the
input (start-up, CUDA initialisation and model loading otherwise add seconds to every run); they begin
embedding once the parent writes the plan (``plan.json``: the part size, known only after
preprocessing). Spawn, not fork: a forked child cannot use CUDA once the parent has touched it, and the
parent here never does (device discovery goes through NVML), so each child initialises only its own GPU.
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import threading
import time
from dataclasses import replace
from pathlib import Path

from vnp.atomic import atomic_write
from vnp.engine.worker import Worker, WorkerConfig
from vnp.errors import VnpError
from vnp.progress import progress_bar

PLAN = "plan.json"


class WorkerPool:
    def __init__(self, configs: list[WorkerConfig], *, quiet: bool):
        self.configs = configs
        self.workdir = Path(configs[0].workdir)
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
        self._processes = [context.Process(target=worker_main, args=(replace(c, parent_pid=os.getpid()), self._messages),
                                           name=f"vnp-worker-{c.rank}") for c in self.configs]
        for process in self._processes:
            process.start()

    def run(self, part_size: int, total_frames: int) -> list[dict]:
        """Hand the workers the plan, wait for them, return their summaries."""
        with atomic_write(self.workdir / PLAN) as handle:
            json.dump({"part_size": part_size}, handle)
        with progress_bar(total_frames, "embedding", quiet=self.quiet) as self._bar:
            if not self._processes:
                if self._loader is not None:
                    self._loader.join()
                    if self._load_error is not None:
                        raise self._load_error
                return [self._worker.run(part_size)]
            return self._wait_spawned()

    def _advance(self, stage: str, items: int) -> None:
        if self._bar is not None and stage in ("esm2", "skipped"):
            self._bar.update(items)

    def _wait_spawned(self) -> list[dict]:
        while any(p.is_alive() for p in self._processes):
            self._drain(timeout=0.5)
            if any(p.exitcode not in (None, 0) for p in self._processes):
                break
        self._drain(timeout=0)
        self.close()
        for config, process in zip(self.configs, self._processes):
            if process.exitcode != 0:
                error_file = self.workdir / f"worker{config.rank}.error"
                reason = error_file.read_text() if error_file.exists() else f"exit code {process.exitcode}"
                raise VnpError(f"worker on {config.device} failed: {reason}")
        return [json.loads((self.workdir / f"worker{c.rank}.json").read_text()) for c in self.configs]

    def _drain(self, timeout: float) -> None:
        try:
            while True:
                _rank, stage, items = self._messages.get(timeout=timeout)
                self._advance(stage, items)
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


def _wait_for_plan(workdir: Path, parent: int | None) -> dict:
    """Block until the parent writes the plan; give up if the parent is gone (killed: nobody will)."""
    path = workdir / PLAN
    while not path.exists():
        if parent and os.getppid() != parent:
            raise SystemExit(1)
        time.sleep(0.02)
    return json.loads(path.read_text())


def worker_main(config: WorkerConfig, queue) -> None:
    """Entry point of a spawned worker: load the models, wait for the plan, run, leave a summary (or the error)."""
    workdir = Path(config.workdir)
    progress = lambda stage, items: queue.put((config.rank, stage, items))  # noqa: E731
    try:
        worker = Worker(config, progress)
        worker.load_models()
        plan = _wait_for_plan(workdir, config.parent_pid)
        summary = worker.run(plan["part_size"])
        with atomic_write(workdir / f"worker{config.rank}.json") as handle:
            json.dump(summary, handle)
    except BaseException as error:  # the parent turns this into one line on stderr
        if isinstance(error, SystemExit):
            raise
        message = str(error) if isinstance(error, VnpError) else f"{type(error).__name__}: {error}"
        with atomic_write(workdir / f"worker{config.rank}.error") as handle:
            handle.write(message)
        raise SystemExit(1)
