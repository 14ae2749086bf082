"""Child processes that never outlive the run: a killed `vnp predict` must leave no process behind that
could still write into a work directory the next run has recreated."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int | None) -> None:
    """Have the kernel kill this process when its parent dies (Linux); exit now if it already has."""
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # died before the signal was armed
        os._exit(1)


@contextlib.contextmanager
def helper_pool(processes: int):
    """A spawned process pool whose processes die with this one; on an error (SIGTERM, SIGINT included)
    the queued tasks are cancelled rather than run to the end."""
    pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
