"""Run the workers: in this process for one device, one spawned process per device otherwise.

Spawn, not fork: a forked child cannot use CUDA once the parent has touched it, and the parent
here never does (device discovery goes through NVML), so each child initialises only its own GPU.
"""

from __future__ import annotations

import json
import queue as queue_module
from pathlib import Path

from vnp.engine.worker import Worker, WorkerConfig, worker_main
from vnp.errors import VnpError
from vnp.progress import progress_bar


def run_workers(configs: list[WorkerConfig], total_frames: int, *, quiet: bool) -> list[dict]:
    with progress_bar(total_frames, "embedding", quiet=quiet) as bar:
        def advance(stage: str, items: int) -> None:
            if stage in ("esm2", "skipped"):
                bar.update(items)

        if len(configs) == 1:
            return [Worker(configs[0], advance).run()]
        return _run_spawned(configs, advance)


def _run_spawned(configs: list[WorkerConfig], advance) -> list[dict]:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    messages = context.Queue()
    processes = [context.Process(target=worker_main, args=(c, messages), name=f"vnp-worker-{c.rank}") for c in configs]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            _drain(messages, advance, timeout=0.5)
            failed = [c for c, p in zip(configs, processes) if p.exitcode not in (None, 0)]
            if failed:
                break
        _drain(messages, advance, timeout=0)
    finally:
        for process in processes:  # one failed: stop the others, --resume keeps what they finished
            if process.is_alive():
                process.terminate()
            process.join()
    workdir = Path(configs[0].workdir)
    for config, process in zip(configs, processes):
        if process.exitcode != 0:
            error_file = workdir / f"worker{config.rank}.error"
            reason = error_file.read_text() if error_file.exists() else f"exit code {process.exitcode}"
            raise VnpError(f"worker on {config.device} failed: {reason}")
    return [json.loads((workdir / f"worker{c.rank}.json").read_text()) for c in configs]


def _drain(messages, advance, timeout: float) -> None:
    try:
        while True:
            _rank, stage, items = messages.get(timeout=timeout)
            advance(stage, items)
            timeout = 0
    except queue_module.Empty:
        pass
