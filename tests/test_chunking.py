"""Chunking: the original's overlap rule, its short-last-chunk quirk included, and its IDs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.harness import original
from vnp.chunking import chunk_bounds, chunk_count, chunk_record


@pytest.mark.parametrize(
    "chunk_size, length, expected",
    [  # the original rule (n = ceil(L/C) chunks of C, starts shifted back, clipped at the end), worked examples
        (500, 499, [(0, 499)]),
        (500, 500, [(0, 500)]),
        (500, 501, [(0, 500), (250, 501)]),
        (500, 750, [(0, 500), (374, 750)]),
        (500, 999, [(0, 500), (499, 999)]),
        (500, 1000, [(0, 500), (500, 1000)]),
        (500, 1001, [(0, 500), (333, 833), (666, 1001)]),
        (500, 2300, [(0, 500), (459, 959), (918, 1418), (1377, 1877), (1836, 2300)]),
        (300, 1000, [(0, 300), (249, 549), (498, 798), (747, 1000)]),
        (500, 1499, [(0, 500), (499, 999), (999, 1499)]),  # evenly overlapping full chunks
    ],
)
def test_spec_examples(chunk_size, length, expected):
    assert chunk_bounds(length, chunk_size) == expected


def test_the_quirk_makes_a_short_last_chunk():
    *_, (start, end) = chunk_bounds(2300, 500)
    assert end - start == 464


def lengths_around(chunk_size):
    near = st.sampled_from([1, 2, 3, 4]).flatmap(
        lambda multiple: st.integers(multiple * chunk_size - 3, multiple * chunk_size + 3))
    return near | st.integers(1, 30 * chunk_size)


@given(data=st.data(), chunk_size=st.sampled_from([300, 500]))
def test_bounds_agree_with_the_original(data, chunk_size):
    length = data.draw(lengths_around(chunk_size))
    bounds = chunk_bounds(length, chunk_size)
    assert [start for start, _ in bounds] == original.chunk_starts(length, chunk_size)
    assert len(bounds) == chunk_count(length, chunk_size)
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(0 < end - start <= chunk_size for start, end in bounds)


@given(seq=st.text("ACGTNacgtn", min_size=1, max_size=1300), chunk_size=st.sampled_from([300, 500]))
def test_records_agree_with_the_original(seq, chunk_size):
    assert chunk_record("read_1", seq, chunk_size) == original.split_record("read_1", seq, chunk_size)


def test_ids_count_from_one():
    assert [chunk_id for chunk_id, _ in chunk_record("r", "A" * 601, 300)] == ["r_chunk_1", "r_chunk_2", "r_chunk_3"]


def test_an_empty_record_cannot_be_chunked():
    with pytest.raises(ValueError):
        chunk_bounds(0, 300)
