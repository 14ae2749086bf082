"""OUTDIR: what `vnp predict` may write and delete there, its lock, and how new results replace old ones.

vnp deletes only what it writes itself: the two result files, run.json, the work directory, the lock and
the --keep-intermediate files (named after the input of this run or of the run whose run.json is there).
An OUTDIR holding anything else, the input included, is refused, --force or not. New outputs are built in
the work directory and moved in only once all of them are complete, so a run that fails, --force or not,
leaves the previous results as they were.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vnp.atomic import fsync_directory
from vnp.errors import OutputDirError
from vnp.preprocess import output_names

WORKDIR = ".vnp-work"
LOCKFILE = ".vnp.lock"
RECORD = "run.json"
RESULTS = "prediction_results.txt"
CONSENSUS = "prediction_results_highestscore.csv"
STAGED = "outputs"  # in the work directory: the new outputs until all are complete
MANIFEST = "manifest.json"  # in the work directory: a complete frame store and the run it belongs to
ANOTHER_RUN = "{} holds a run with another input or configuration: use --force to start over"


@dataclass
class Claim:
    """This run's hold on OUTDIR (valid inside `claim`)."""

    outdir: Path
    previous: dict | None  # run.json's config of the run already in OUTDIR, if readable
    previous_unreadable: bool  # a run.json is there but cannot be read
    created: list[Path] = field(default_factory=list)  # directories this run made, deepest first
    own_workdir: bool = True  # False: the work directory is an interrupted run's, to keep on failure
    abandoned: bool = False  # set on a failure that should leave nothing behind

    @property
    def workdir(self) -> Path:
        return self.outdir / WORKDIR

    @property
    def staged(self) -> Path:
        return self.workdir / STAGED

    def has_results(self) -> bool:
        return (self.outdir / RESULTS).exists() or (self.outdir / CONSENSUS).exists()

    def abandon(self) -> None:
        """Remove what this run made (a work directory it started, directories it created)."""
        self.abandoned = True
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def claim(outdir: Path, input_path: Path, config: dict, *, force: bool, resume: bool):
    """Lock OUTDIR and check that this run may use it; --force clears the previous run's work directory."""
    if outdir.exists() and not outdir.is_dir():
        raise OutputDirError(f"output path {outdir} exists and is not a directory")
    if outdir in input_path.resolve().parents:
        raise OutputDirError(f"the input {input_path} lies inside the output directory {outdir}: "
                             "choose another OUTDIR")
    created = [d for d in (outdir, *outdir.parents) if not d.exists()]
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        lock = os.open(outdir / LOCKFILE, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError as error:
        _remove_created(created)
        raise OutputDirError(f"cannot write in {outdir}: {error.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The run before us unlinks its lock file when it ends: a lock taken on that unlinked file guards
        # nothing, since the next run locks a new file of the same name. Holding the lock on the file that
        # is there now is what counts.
        if os.fstat(lock).st_ino != os.stat(outdir / LOCKFILE).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        os.close(lock)  # and leave the lock file alone: it is the other run's
        raise OutputDirError(f"another vnp run is using {outdir} right now") from None
    held = None
    try:
        held = _check_contents(outdir, config, force=force, resume=resume, created=created)
        yield held
    finally:
        with contextlib.suppress(OSError):  # a lock file left behind is harmless: the lock is the flock
            (outdir / LOCKFILE).unlink()
        os.close(lock)
        if held is None or held.abandoned:
            _remove_created(created)


def _check_contents(outdir: Path, config: dict, *, force: bool, resume: bool, created: list[Path]) -> Claim:
    previous, unreadable = _previous_config(outdir / RECORD)
    own = own_names(None) | own_names(previous)  # what an earlier run says it wrote; this run has written nothing
    entries = sorted(p.name for p in outdir.iterdir() if p.name != LOCKFILE)
    if entries and not (force or resume):
        raise OutputDirError(f"output directory {outdir} is not empty: use --resume to continue the run "
                             "in it or --force to overwrite it")
    foreign = [name for name in entries if not is_own(name, own)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputDirError(f"{outdir} holds files vnp did not write ({shown}): vnp replaces only its own "
                             "outputs; move them or choose another OUTDIR")
    workdir = outdir / WORKDIR
    if force and workdir.exists():
        try:
            shutil.rmtree(workdir)
        except OSError as error:
            raise OutputDirError(f"--force cannot remove {error.filename or workdir}: {error.strerror}") from None
    return Claim(outdir, previous, unreadable, created, own_workdir=not workdir.exists())


def own_names(config: dict | None) -> set[str]:
    """Names of what a run with run.json ``config`` writes into OUTDIR (None: what every run writes).

    The --keep-intermediate files count only when the record says the run wrote them: a file of the same
    name made by the user or the original tool is not vnp's to delete.
    """
    names = {RESULTS, CONSENSUS, RECORD, WORKDIR, LOCKFILE}
    if isinstance(config, dict) and config.get("keep_intermediate") is True:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            names.update(output_names(config["input"], int(config["chunk_size"])))
    return names


def is_own(name: str, own: set[str]) -> bool:
    """One of ``own``, or a temporary file atomic_write left of one (a run killed mid-write)."""
    return name in own or name.endswith(".part") and any(name.startswith(f".{n}.") for n in own)


def _previous_config(path: Path) -> tuple[dict | None, bool]:
    if not path.exists():
        return None, False
    try:
        config = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, True
    return (config, False) if isinstance(config, dict) else (None, True)


def _remove_created(created: list[Path]) -> None:
    for directory in created:  # deepest first; rmdir removes only what stayed empty
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def publish(held: Claim, config: dict) -> None:
    """Move the staged outputs into OUTDIR (run.json last) and remove the previous run's own leftovers.

    run.json goes first and comes back last: results without it read as unfinished, never as the old run's.
    """
    outdir, staged = held.outdir, held.staged
    new = set(os.listdir(staged))
    (outdir / RECORD).unlink(missing_ok=True)
    keep = new | {WORKDIR, LOCKFILE}
    own = own_names(config) | own_names(held.previous)
    for path in outdir.iterdir():
        if path.name not in keep and is_own(path.name, own):
            path.unlink()
    for name in sorted(new - {RECORD}) + [RECORD]:
        os.replace(staged / name, outdir / name)
    fsync_directory(outdir)
