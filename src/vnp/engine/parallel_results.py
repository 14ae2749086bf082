"""Write `prediction_results.txt` with several processes.

Formatting a whole sample's 4.76 M rows (two float32 reprs each, as the original writes them) took
10.6 s of the parent's time on the 4-GPU host, after every GPU had finished. Here spawned processes
each format a contiguous block of rows (IDs read from the frame store, scores passed in) into a part
file, and the parent concatenates the parts in order: the same bytes as `consensus.write_prediction_results`.
"""

from __future__ import annotations

import shutil
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from vnp.atomic import atomic_write
from vnp.consensus import RESULTS_HEADER_LINE, result_lines, write_prediction_results
from vnp.engine.lifetime import helper_pool
from vnp.engine.store import FrameStore

# Worth it when rows x (1 - 1/processes) reaches this: spawning the writers, concatenating their parts and
# re-reading the IDs is a fixed cost that only large outputs repay (measured with scripts/bench_parallel.py;
# the figures are in docs/performance.md).
MIN_ROWS = 600_000


def pays(rows: int, processes: int, min_rows: int = MIN_ROWS) -> bool:
    """Whether writing ``rows`` rows with ``processes`` processes beats one process."""
    return processes > 1 and rows * (1 - 1 / processes) >= min_rows


def write(path: Path, store_dir: Path, scores: np.ndarray, processes: int, parts_dir: Path) -> None:
    """`prediction_results.txt` for the frames of the store at ``store_dir`` and their ``scores`` [N, 2]."""
    bounds = np.linspace(0, len(scores), processes + 1).astype(int)
    blocks = [(int(a), int(b)) for a, b in zip(bounds, bounds[1:]) if b > a]
    parts_dir.mkdir(parents=True, exist_ok=True)
    parts = [parts_dir / f"results{index:04d}.part" for index in range(len(blocks))]
    try:
        with helper_pool(len(blocks)) as pool:
            list(pool.map(_write_block, [str(store_dir)] * len(blocks), blocks,
                          [scores[a:b] for a, b in blocks], map(str, parts)))
        with atomic_write(path, "wb") as out:
            out.write(RESULTS_HEADER_LINE.encode("utf-8"))
            for part in parts:
                with open(part, "rb") as block:
                    shutil.copyfileobj(block, out, 16 << 20)
    except BrokenProcessPool:  # a process killed (out of memory?): one process still writes it
        write_prediction_results(path, FrameStore(store_dir).column("ids"), scores[:, 0], scores[:, 1])
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def _write_block(store_dir: str, block: tuple[int, int], scores: np.ndarray, part: str) -> None:
    ids = FrameStore(Path(store_dir)).column("ids", *block)
    with open(part, "w", encoding="utf-8") as handle:
        handle.writelines(result_lines(ids, scores[:, 0], scores[:, 1]))
