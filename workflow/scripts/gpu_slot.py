"""Run a command on GPUs of its own: take free GPUs from a pool, export them as CUDA_VISIBLE_DEVICES, run it.

    python gpu_slot.py --pool 0,1,2,3 --take 1 --record job.gpus -- COMMAND [ARG ...]

Each GPU of the pool is a lock file in $TMPDIR/vnp-gpu-slots-USER, held with flock by the command itself (the
lock's file descriptor survives the exec), so a GPU is free again the moment its command ends, however it ends: a
killed job cannot leave a GPU taken. Concurrent jobs on one host get different GPUs; a job that finds too few
free waits for them. Without --pool a scheduler has already chosen the job's GPUs (Slurm sets
CUDA_VISIBLE_DEVICES): they are recorded and used as they are. --take 0 hides every GPU (a CPU job).
--record writes the CUDA_VISIBLE_DEVICES the command runs with, so the cohort summary can say where it ran.
"""

import argparse
import fcntl
import getpass
import os
import sys
import tempfile
import time
from pathlib import Path

WAIT_SECONDS = 1.0  # between looks for free GPUs, when all are taken


def try_take(pool: list[str], count: int, locks: Path) -> dict[str, int]:
    """GPU -> its locked file descriptor, for the first COUNT free GPUs of POOL; empty (nothing held) if fewer."""
    held = {}
    for gpu in pool:
        descriptor = os.open(locks / f"gpu-{gpu}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        held[gpu] = descriptor
        if len(held) == count:
            return held
    for descriptor in held.values():
        os.close(descriptor)
    return {}


def take(pool: list[str], count: int, locks: Path) -> dict[str, int]:
    """Wait until COUNT GPUs of POOL are free and lock them."""
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "choose.lock", "w") as guard:
        waited = False
        while True:
            # One job chooses at a time, so that two jobs wanting two GPUs each do not keep taking one apiece,
            # letting go and trying again.
            fcntl.flock(guard, fcntl.LOCK_EX)
            held = try_take(pool, count, locks)
            fcntl.flock(guard, fcntl.LOCK_UN)
            if held:
                return held
            if not waited:
                print(f"gpu_slot: waiting for {count} of the GPUs {','.join(pool)} to be free", file=sys.stderr)
                waited = True
            time.sleep(WAIT_SECONDS)


def parse_pool(text: str) -> list[str]:
    pool = [gpu.strip() for gpu in text.split(",") if gpu.strip()]
    bad = [gpu for gpu in pool if "/" in gpu]
    if bad:
        raise SystemExit(f"gpu_slot: --pool takes GPU indices or UUIDs like 0,1,2,3, not {bad[0]!r}")
    if len(set(pool)) != len(pool):
        raise SystemExit(f"gpu_slot: --pool lists a GPU twice: {text}")
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=parse_pool,
                        help="this host's GPUs to choose from (without it: the ones the scheduler chose)")
    parser.add_argument("--take", type=int, required=True, help="how many GPUs the command gets (0: none, the CPU)")
    parser.add_argument("--record", type=Path, help="write the command's CUDA_VISIBLE_DEVICES here")
    parser.add_argument("command", nargs="+", help="the command and its arguments (after --)")
    args = parser.parse_args()
    if args.take < 0:
        raise SystemExit(f"gpu_slot: --take must be 0 or more, not {args.take}")

    if args.take == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif args.pool is not None:
        if args.take > len(args.pool):
            raise SystemExit(f"gpu_slot: a job takes {args.take} GPUs but the pool has {len(args.pool)}: give "
                             "Snakemake --resources gpu=N (this host's GPUs) or set CUDA_VISIBLE_DEVICES")
        held = take(args.pool, args.take, Path(tempfile.gettempdir()) / f"vnp-gpu-slots-{getpass.getuser()}")
        for descriptor in held.values():
            os.set_inheritable(descriptor, True)  # the command holds the locks; they go when it does
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(held)
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "") + "\n")
    try:
        os.execvp(args.command[0], args.command)
    except OSError as error:
        raise SystemExit(f"gpu_slot: cannot run {args.command[0]}: {error.strerror}") from None


if __name__ == "__main__":
    main()
