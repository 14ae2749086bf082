"""User-facing errors: each becomes one line on stderr and a documented exit code, never a traceback.

docs/reliability.md has the exit-code table; `exit_code` and `one_line` are the only places that map an
exception to it, so the command's exit status and run.json's ``exit`` always agree.
"""

from __future__ import annotations

import contextlib
import errno


class VnpError(Exception):
    """An error the user can act on (a bad option, for instance). ``str(err)`` is the line printed on stderr."""

    exit_code = 1


class InputError(VnpError):
    """The input FASTA is missing, empty or malformed."""

    exit_code = 2


@contextlib.contextmanager
def utf8_text(path):
    """Reading ``path`` as text: a byte that is not UTF-8 is one InputError line, not a traceback."""
    try:
        yield
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a binary or otherwise encoded file?)") from None


class WeightsError(VnpError):
    """A weight or tokenizer file is missing, truncated or does not match the architecture."""

    exit_code = 3


class OutputDirError(VnpError):
    """OUTDIR cannot be used: not empty, holds foreign files or the input, locked, read-only, damaged work."""

    exit_code = 4


class NonFiniteScoresError(VnpError):
    """The models produced NaN or infinite scores (broken weights): no result is written."""

    exit_code = 6


SYSTEM_ERROR = 5  # the operating system refused a read or write (disk full, I/O error, no permission)


class Terminated(BaseException):
    """SIGTERM, raised in the parent like KeyboardInterrupt so that run.json records the stop.

    A BaseException, as KeyboardInterrupt is, so that no ``except Exception`` on the way swallows it.
    """

    exit_code = 128 + 15

    def __str__(self) -> str:
        return "terminated"


def is_system_error(error: BaseException) -> bool:
    """An OSError the operating system raised (it has an errno); anything else is a bug, shown as one."""
    return isinstance(error, OSError) and error.errno is not None


def exit_code(error: BaseException) -> int:
    if isinstance(error, (VnpError, Terminated)):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return 128 + 2
    return SYSTEM_ERROR if is_system_error(error) else 1


def one_line(error: BaseException) -> str:
    """The reason, on one line: for an OSError the file and the system's words ('No space left on device')."""
    if is_system_error(error):
        reason = error.strerror or errno.errorcode.get(error.errno, str(error.errno))
        return f"{error.filename}: {reason}" if error.filename else reason
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
