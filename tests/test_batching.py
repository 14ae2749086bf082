import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vnp.engine.batching import (
    backing_off,
    gather_packed,
    gather_padded,
    length_sorted_order,
    next_batch_end,
    shard,
    split_parts,
    token_batches,
)

lengths_strategy = st.lists(st.integers(min_value=1, max_value=300), min_size=0, max_size=400)


@given(lengths=lengths_strategy, world=st.integers(1, 8), part_size=st.integers(1, 50))
def test_shards_and_parts_cover_every_record_exactly_once(lengths, world, part_size):
    order = length_sorted_order(np.array(lengths, dtype=np.int64))
    seen = np.zeros(len(lengths), dtype=int)
    for rank in range(world):
        for part in split_parts(shard(order, rank, world), part_size):
            assert len(part) <= part_size
            np.add.at(seen, part, 1)
    assert (seen == 1).all()


def test_shards_are_balanced_by_length():
    lengths = np.random.default_rng(0).integers(20, 170, size=10_000)
    order = length_sorted_order(lengths)
    totals = [lengths[shard(order, rank, 4)].sum() for rank in range(4)]
    assert max(totals) - min(totals) <= 170 * 2  # stride over a sorted list: within a couple of records


@settings(max_examples=200)
@given(lengths=lengths_strategy, budget=st.integers(1, 2000), padded=st.booleans())
def test_batches_respect_the_budget_and_cover_everything(lengths, budget, padded):
    sorted_lengths = np.sort(np.array(lengths, dtype=np.int64))[::-1]
    batches = token_batches(sorted_lengths, budget, padded=padded)
    covered = [i for start, end in batches for i in range(start, end)]
    assert covered == list(range(len(lengths)))
    for start, end in batches:
        chunk = sorted_lengths[start:end]
        cost = len(chunk) * chunk.max() if padded else chunk.sum()
        assert cost <= budget or end - start == 1  # only a lone over-long record may exceed it


def test_next_batch_end_packed_fills_up_to_the_budget():
    lengths = np.array([5, 4, 3, 2, 1])
    assert next_batch_end(lengths, 0, 9, padded=False) == 2  # 5+4
    assert next_batch_end(lengths, 0, 12, padded=False) == 3  # 5+4+3
    assert next_batch_end(lengths, 0, 10, padded=True) == 2  # 2 rows x 5


def test_gather_packed_and_padded_match_the_records():
    records = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]]
    flat = np.array([t for r in records for t in r], dtype=np.int64)
    lengths = np.array([len(r) for r in records])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = np.array([3, 0, 2])
    tokens, cu = gather_packed(flat, starts, lengths, rows)
    assert tokens.tolist() == [7, 8, 9, 10, 1, 2, 3, 5, 6]
    assert cu.tolist() == [0, 4, 7, 9]
    matrix, lens = gather_padded(flat, starts, lengths, rows, pad=-1)
    assert matrix.tolist() == [[7, 8, 9, 10], [1, 2, 3, -1], [5, 6, -1, -1]]
    assert lens.tolist() == [4, 3, 2]


def test_shard_rejects_a_rank_outside_the_world():
    with pytest.raises(ValueError):
        shard(np.arange(3), 3, 3)


class OutOfMemory(Exception):
    pass


@settings(max_examples=100)
@given(lengths=st.lists(st.integers(1, 100), min_size=1, max_size=60), budget=st.integers(1, 4000),
       fits=st.integers(100, 1000))
def test_backing_off_halves_the_budget_until_a_batch_fits_and_never_drops_a_record(lengths, budget, fits):
    sorted_lengths = np.sort(np.array(lengths, dtype=np.int64))[::-1]
    covered, backoffs = [], []

    def run_batch(start, end):  # a device on which at most ``fits`` tokens fit
        if sorted_lengths[start:end].sum() > fits:
            raise OutOfMemory
        covered.extend(range(start, end))

    def cut(start, budget):
        return next_batch_end(sorted_lengths, start, budget, padded=False)

    start, first = 0, budget
    while start < len(sorted_lengths):
        start, _, budget = backing_off(run_batch, cut, start, budget, (OutOfMemory,), lambda: backoffs.append(1))
    assert covered == list(range(len(lengths)))  # every record once, in order
    assert budget == max(1, first >> len(backoffs))  # halved once per back-off, and kept


def test_backing_off_gives_up_on_a_record_that_never_fits():
    def run_batch(start, end):
        raise OutOfMemory

    with pytest.raises(OutOfMemory):
        backing_off(run_batch, lambda start, budget: start + max(1, budget // 10), 0, 100, (OutOfMemory,))
