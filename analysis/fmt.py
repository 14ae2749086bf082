"""How the report writes numbers: hours, seconds, counts, bytes, ratios, and Markdown tables."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

GIB = 2**30


def fmt_hours(hours: float | None) -> str:
    if hours is None or not math.isfinite(hours):
        return "n/a"
    return f"{hours:.2f}" if hours < 10 else f"{hours:.1f}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:,.0f}"


def fmt_count(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    for size, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:,.0f}"


def fmt_bytes(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) >= GIB:
        return f"{value / GIB:.2f} GiB"
    return f"{value / 2**20:.0f} MiB"


def fmt_ratio(value: float | None, suffix: str = "x") -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}{suffix}"


def fmt_percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def gpus_label(gpus: int) -> str:
    return plural(gpus, "GPU")
