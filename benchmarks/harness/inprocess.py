"""Run the `vnp` command inside this process, so that asv's own time_ and peakmem_ measure it.

The harness never imports vnp's modules (asv runs today's suites against old commits, whose internals
differ); the command line is the stable contract. Running `python -m vnp` through runpy keeps to that
contract while paying no interpreter start-up: the measured cost is the command's own.

A command or option that the commit under test does not have is NotImplementedError, which asv shows
as n/a; any other non-zero exit is a failure with the command's own reason.
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import sys


class CommandFailed(RuntimeError):
    """`vnp ...` exited non-zero; the message is the command line, its exit code and its last stderr line."""


def run_vnp(*args: str) -> str:
    """Run `vnp ARGS...` in this process; return its stderr. Raises CommandFailed on a non-zero exit."""
    code, _, stderr = _run(list(args))
    if code != 0:
        if _is_usage_error(stderr):  # argparse: this commit does not know the command or an option
            raise NotImplementedError(f"this commit's vnp does not accept: vnp {' '.join(args)}: {_last_line(stderr)}")
        raise CommandFailed(f"vnp {' '.join(args)}: exit {code}: {_last_line(stderr)}")
    return stderr


def require(command: str, *options: str) -> None:
    """NotImplementedError unless this commit's `vnp COMMAND --help` exists and lists every option."""
    try:
        code, help_text, _ = _run([command, "--help"])
    except ImportError as error:  # a commit before the package had a __main__
        raise NotImplementedError(f"this commit has no runnable vnp: {error}") from None
    if code != 0:
        raise NotImplementedError(f"this commit's vnp has no '{command}' command")
    missing = [option for option in options if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text)]
    if missing:
        raise NotImplementedError(f"this commit's vnp {command} has no {', '.join(missing)}")


def _run(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m vnp ARGS` run here; sys.argv is restored afterwards."""
    saved_argv = sys.argv
    stdout, stderr = io.StringIO(), io.StringIO()
    sys.argv = ["vnp", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_module("vnp", run_name="__main__", alter_sys=False)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, (int, type(None))):
            stderr.write(f"{done.code}\n")
    finally:
        sys.argv = saved_argv
    return code, stdout.getvalue(), stderr.getvalue()


def _is_usage_error(stderr: str) -> bool:
    """argparse's refusal: a usage line, then 'PROG: error: ...' (vnp's own errors are one line)."""
    return stderr.startswith("usage:") and re.search(r"^vnp[\w -]*: error: ", stderr, re.MULTILINE) is not None


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(nothing on stderr)"
