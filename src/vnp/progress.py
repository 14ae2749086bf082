"""Progress bars on a terminal, silence everywhere else (logs, CI, asv, --quiet)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, description: str, *, quiet: bool = False) -> tqdm:
    return tqdm(total=total, desc=description, unit="frame", unit_scale=True, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty(), leave=False)
