"""Cut records into chunks of C bases with the original tool's overlap rule, its quirk included.

For a record of length L: n = ceil(L/C) chunks; the surplus R = n*C - L is taken back as shifts between
chunk starts, q = R // n each, with the first (R - q*(n-1)) shifts one larger. When that count exceeds the
n-1 shifts actually used, every shift is q+1 and the last chunk comes out short, exactly as the original.
"""

from __future__ import annotations

from collections.abc import Iterator


def chunk_count(length: int, chunk_size: int) -> int:
    """Number of chunks a record of `length` bases becomes: ceil(L / C)."""
    return -(-length // chunk_size)


def chunk_bounds(length: int, chunk_size: int) -> list[tuple[int, int]]:
    """[start, end) of every chunk of a record of `length` bases (length >= 1)."""
    return list(iter_chunk_bounds(length, chunk_size))


def iter_chunk_bounds(length: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """`chunk_bounds`, one at a time: a 200 Mbp record need not hold its 400,000 bounds at once."""
    if length < 1 or chunk_size < 1:
        raise ValueError(f"cannot chunk {length} bases into chunks of {chunk_size}")
    count = chunk_count(length, chunk_size)
    surplus = count * chunk_size - length
    shift = surplus // count
    larger_shifts = surplus - shift * (count - 1)  # how many shifts are shift+1 (may exceed count-1)
    start = 0
    for k in range(count):
        yield start, min(start + chunk_size, length)
        start += chunk_size - (shift + 1 if k < larger_shifts else shift)


def chunk_record(record_id: str, seq: str, chunk_size: int) -> list[tuple[str, str]]:
    """(f"{record_id}_chunk_{k+1}", chunk) for every chunk of one record, in order."""
    if 0 < len(seq) <= chunk_size:  # the common case of short reads, without the general machinery
        return [(f"{record_id}_chunk_1", seq)]
    return list(iter_chunks(record_id, seq, chunk_size))


def iter_chunks(record_id: str, seq: str, chunk_size: int) -> Iterator[tuple[str, str]]:
    """`chunk_record`, one chunk at a time, so a long record's chunks are never all held at once."""
    for k, (start, end) in enumerate(iter_chunk_bounds(len(seq), chunk_size), start=1):
        yield f"{record_id}_chunk_{k}", seq[start:end]
