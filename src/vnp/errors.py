"""User-facing errors: each becomes one line on stderr and a non-zero exit code, never a traceback."""


class VnpError(Exception):
    """An error the user can act on. ``str(err)`` is the one line printed on stderr."""

    exit_code = 1


class InputError(VnpError):
    """The input FASTA is missing, empty or malformed."""

    exit_code = 2


class WeightsError(VnpError):
    """A weight or tokenizer file is missing, truncated or does not match the architecture."""

    exit_code = 3


class OutputDirError(VnpError):
    """The output directory is not empty, is locked by another run, or cannot be written."""

    exit_code = 4


class NonFiniteScoresError(VnpError):
    """The models produced NaN or infinite scores (broken weights): no result is written."""

    exit_code = 6
