"""Sharding and token-budget batching: pure index arithmetic, no torch, so it is cheap to test."""

from __future__ import annotations

import numpy as np


def length_sorted_order(lengths: np.ndarray) -> np.ndarray:
    """Indices that sort records by length, longest first (stable, so ties keep input order)."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def shard(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Length-sorted stride: worker ``rank`` takes every ``world``-th record of the sorted order.

    Neighbours in the sorted order have nearly equal lengths, so every worker gets the same mix of
    long and short records and the workers finish together.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of {world}")
    return order[rank::world]


def split_parts(indices: np.ndarray, part_size: int) -> list[np.ndarray]:
    """Cut a shard into parts of at most ``part_size`` records: the unit of reload and resume."""
    return [indices[i : i + part_size] for i in range(0, len(indices), part_size)]


def next_batch_end(sorted_lengths: np.ndarray, start: int, budget: int, *, padded: bool) -> int:
    """End (exclusive) of the batch that starts at ``start`` and fits ``budget`` tokens.

    ``sorted_lengths`` must be sorted longest first. Packed batches count real tokens (the sum of
    lengths); padded batches count what the GEMMs really compute, rows x longest row. A record
    longer than the budget gets a batch of its own.
    """
    if padded:
        rows = budget // max(int(sorted_lengths[start]), 1)
    else:
        rows = int(np.searchsorted(np.cumsum(sorted_lengths[start:]), budget, side="right"))
    return min(len(sorted_lengths), start + max(1, rows))


def token_batches(sorted_lengths: np.ndarray, budget: int, *, padded: bool) -> list[tuple[int, int]]:
    """All (start, end) batches of a length-sorted list under a fixed budget."""
    sorted_lengths = np.asarray(sorted_lengths, dtype=np.int64)
    batches, start = [], 0
    while start < len(sorted_lengths):
        end = next_batch_end(sorted_lengths, start, budget, padded=padded)
        batches.append((start, end))
        start = end
    return batches


def gather_packed(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, rows: np.ndarray):
    """Concatenate the token runs of ``rows`` (no Python loop): (tokens, cu_seqlens int32)."""
    lens = lengths[rows].astype(np.int64)
    cu = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=cu[1:])
    index = np.repeat(starts[rows] - cu[:-1], lens) + np.arange(cu[-1])
    return flat[index], cu.astype(np.int32)


def gather_padded(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, rows: np.ndarray, pad: int):
    """The same rows as a padded [B, Lmax] matrix filled with ``pad``: (tokens, lengths)."""
    tokens, cu = gather_packed(flat, starts, lengths, rows)
    lens = lengths[rows]
    matrix = np.full((len(rows), int(lens.max())), pad, dtype=flat.dtype)
    matrix[np.arange(matrix.shape[1]) < lens[:, None]] = tokens
    return matrix, lens


def backing_off(run_batch, cut, start: int, budget: int, out_of_memory: tuple, on_backoff=None):
    """Run the batch from ``start`` that ``cut(start, budget)`` ends; out of memory: halve the budget and retry.

    Returns ``(end, result, budget)`` with the budget that fitted. A batch of one record that does not
    fit raises its error again: records are never dropped, only batches made smaller.
    """
    while True:
        end = cut(start, budget)
        try:
            return end, run_batch(start, end), budget
        except out_of_memory:
            if end - start == 1:
                raise
            budget = max(1, budget // 2)
            if on_backoff is not None:
                on_backoff()
