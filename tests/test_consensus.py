"""Consensus and the two output files, against the plain original rule and pandas' way of writing."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.harness import original
from vnp.consensus import (
    consensus,
    consensus_file,
    format_score,
    read_prediction_results,
    write_highestscore,
    write_prediction_results,
)
from vnp.errors import InputError


@pytest.mark.parametrize("value, text", [(0.8789939, "0.8789939"), (np.float32(0.12100612), "0.12100612"),
                                         (1.0, "1.0"), (1e-05, "1e-05"), (0.0011595711, "0.0011595711")])
def test_format_score_is_str_of_float32(value, text):
    assert format_score(value) == text == str(np.float32(value))


def test_prediction_results_layout_and_argmax_with_ties_to_others(tmp_path):
    path = tmp_path / "prediction_results.txt"
    write_prediction_results(path, ["a_chunk_1F1", "a_chunk_1R2", "b_chunk_2F3"],
                             np.array([0.25, 0.5, 0.9], np.float32), np.array([0.75, 0.5, 0.1], np.float32))
    assert path.read_text() == (
        "Sequence_ID\tPrediction\tscore1\tscore2\n"
        "a_chunk_1F1\tvirus\t0.25\t0.75\n"
        "a_chunk_1R2\tothers\t0.5\t0.5\n"
        "b_chunk_2F3\tothers\t0.9\t0.1\n"
    )


def test_prediction_results_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    score2 = rng.random(50, dtype=np.float32)
    ids = [f"r{i}_chunk_1F1" for i in range(50)]
    write_prediction_results(tmp_path / "p.txt", ids, 1 - score2, score2)
    read_ids, read1, read2 = read_prediction_results(tmp_path / "p.txt")
    assert read_ids == ids
    assert np.array_equal(read2.astype(np.float32), score2) and np.array_equal(read1.astype(np.float32), 1 - score2)


SCORE = st.floats(0, 1) | st.sampled_from([0.0, 0.5, 1.0, float("nan")])
ROWS = st.lists(st.tuples(st.sampled_from(["b_chunk_1", "a_chunk_10", "a_chunk_2", "Z_chunk_1", "a_chunk_1"]),
                          st.sampled_from(["F1", "F2", "R3"]), SCORE, SCORE), max_size=30)


@given(rows=ROWS)
def test_consensus_agrees_with_the_original(rows):
    ids = [group + frame for group, frame, _, _ in rows]
    score1 = np.array([s for *_, s, _ in rows], dtype=np.float64)
    score2 = np.array([s for *_, s in rows], dtype=np.float64)
    assert consensus(ids, score1, score2) == original.consensus(zip(ids, score1.tolist(), score2.tolist()))


def test_nan_maxima_are_not_virus_as_with_pandas_max():
    # pandas' max skips NaN and is NaN for an all-NaN chunk; NaN >= x is False (the original's rule).
    nan = float("nan")
    rows = consensus(["a_chunk_1F1", "b_chunk_1F1", "b_chunk_1F2", "c_chunk_1F1", "d_chunk_1F1", "e_chunk_1R1"],
                     [nan, nan, 0.9, 0.2, nan, 0.6], [nan, 0.3, nan, nan, 0.7, 0.4])
    assert rows == [("a_chunk_1", False), ("b_chunk_1", False), ("c_chunk_1", False), ("d_chunk_1", False),
                    ("e_chunk_1", False)]
    assert consensus(["x_chunk_1F1", "x_chunk_1F2"], [nan, 0.2], [0.8, nan]) == [("x_chunk_1", True)]


def test_consensus_ties_count_as_virus_and_groups_sort_as_strings():
    rows = consensus(["b_chunk_1F1", "a_chunk_10F1", "a_chunk_2R1", "a_chunk_2R2"],
                     [0.5, 0.9, 0.6, 0.3], [0.5, 0.1, 0.4, 0.7])
    assert rows == [("a_chunk_10", False), ("a_chunk_2", True), ("b_chunk_1", True)]


def test_highestscore_is_tab_separated_with_true_false(tmp_path):
    write_highestscore(tmp_path / "h.csv", [("a_chunk_1", True), ("b_chunk_1", False)])
    assert (tmp_path / "h.csv").read_text() == "Modified_ID\tIs_Virus\na_chunk_1\tTrue\nb_chunk_1\tFalse\n"


def test_consensus_file_writes_beside_its_input_by_default(tmp_path):
    write_prediction_results(tmp_path / "prediction_results.txt", ["a_chunk_1F1"], [0.2], [0.8])
    assert consensus_file(tmp_path / "prediction_results.txt") == 1
    assert (tmp_path / "prediction_results_highestscore.csv").read_text() == "Modified_ID\tIs_Virus\na_chunk_1\tTrue\n"


@pytest.mark.parametrize("text, reason", [
    ("id\tlabel\n", "not a prediction results file"),
    ("Sequence_ID\tPrediction\tscore1\tscore2\na\tvirus\t0.1\n", "line 2"),
    ("Sequence_ID\tPrediction\tscore1\tscore2\na\tvirus\t0.1\t0.9\nb\tvirus\tx\t0.9\n", "line 3"),
])
def test_bad_prediction_files_are_refused_with_the_reason(tmp_path, text, reason):
    (tmp_path / "p.txt").write_text(text)
    with pytest.raises(InputError, match=reason):
        consensus_file(tmp_path / "p.txt")
    assert not (tmp_path / "prediction_results_highestscore.csv").exists()


def test_consensus_file_reads_nan_scores_as_the_original_does(tmp_path):
    write_prediction_results(tmp_path / "prediction_results.txt", ["a_chunk_1F1", "b_chunk_1F1"],
                             [float("nan"), 0.2], [float("nan"), 0.8])
    assert consensus_file(tmp_path / "prediction_results.txt") == 2
    assert (tmp_path / "prediction_results_highestscore.csv").read_text() == (
        "Modified_ID\tIs_Virus\na_chunk_1\tFalse\nb_chunk_1\tTrue\n")


def test_missing_prediction_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        consensus_file(tmp_path / "absent.txt")
