"""Part files: one worker's scores for one part of its shard, stamped with the identity of the run.

A part file's existence marks the part done, so ``--resume`` redoes only the others. A worker of a
killed run may still finish a part after the next run has recreated the work directory; the run id
inside every part is what keeps such a part from ever being counted: a part of another run is deleted
and redone by the workers, and never gathered. The run id lives beside the parts (``scores/run_id``):
a ``--resume`` keeps it, so the interrupted run's finished parts count; any other run draws a new one.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import numpy as np

from vnp.atomic import atomic_write
from vnp.errors import VnpError

SCORES = "scores"
RUN_ID = "run_id"


def part_path(workdir: Path, rank: int, part: int) -> Path:
    return Path(workdir) / SCORES / f"rank{rank}_part{part:05d}.npz"


def open_run(workdir: Path, *, resume: bool) -> str:
    """This run's id: on ``--resume`` the interrupted run's (its parts count), else a new one."""
    path = Path(workdir) / SCORES / RUN_ID
    if resume and path.exists():
        return path.read_text().strip()
    run_id = secrets.token_hex(8)
    with atomic_write(path) as handle:
        handle.write(run_id)
    return run_id


def write_part(path: Path, run_id: str, rows: np.ndarray, scores: np.ndarray, dnabert_tokens: int) -> None:
    with atomic_write(path, "wb") as handle:
        np.savez(handle, run_id=np.str_(run_id), rows=rows, scores=scores, dnabert_tokens=dnabert_tokens)


def part_run_id(path: Path) -> str | None:
    """The run a part file belongs to (None: unreadable, or written before parts carried one)."""
    try:
        with np.load(path) as data:
            return str(data["run_id"]) if "run_id" in data.files else None
    except (OSError, ValueError, EOFError):
        return None


def check_part(path: Path, run_id: str) -> str:
    """"done" (this run's scores are there), "todo", or "stale": a part of another run, now deleted."""
    if not path.exists():
        return "todo"
    if part_run_id(path) == run_id:
        return "done"
    path.unlink(missing_ok=True)
    print(f"vnp: {path.name} was written by another run (a worker of a killed run?): deleted, redoing it",
          file=sys.stderr, flush=True)
    return "stale"


def done_parts(workdir: Path, run_id: str) -> int:
    return sum(part_run_id(p) == run_id for p in (Path(workdir) / SCORES).glob("*.npz"))


def gather_scores(workdir: Path, frames: int, run_id: str) -> tuple[np.ndarray, int]:
    """Scores of every frame in frame order and the DNABERT token count, from this run's parts only.

    Checks that each frame came back exactly once; a part of another run is deleted, never counted.
    """
    scores = np.full((frames, 2), np.nan, dtype=np.float32)
    seen = np.zeros(frames, dtype=np.int64)
    dnabert_tokens, foreign = 0, []
    for part in sorted((Path(workdir) / SCORES).glob("*.npz")):
        if part_run_id(part) != run_id:
            foreign.append(part)
            continue
        with np.load(part) as data:
            scores[data["rows"]] = data["scores"]
            np.add.at(seen, data["rows"], 1)
            dnabert_tokens += int(data["dnabert_tokens"])
    for part in foreign:
        part.unlink(missing_ok=True)
        print(f"vnp: {part.name} was written by another run (a worker of a killed run?): deleted, not counted",
              file=sys.stderr, flush=True)
    if frames and not (seen == 1).all():
        missing, doubled = int((seen == 0).sum()), int((seen > 1).sum())
        if foreign:
            raise VnpError(f"{len(foreign)} score part(s) in the work directory came from another run (a worker "
                           f"of a killed run?) and were deleted; {missing} frames have no score: use --resume")
        raise VnpError(f"internal error: {missing} frames have no score and {doubled} have several")
    return scores, dnabert_tokens
