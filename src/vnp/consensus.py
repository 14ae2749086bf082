"""The two user-facing output files, written exactly as the original tool writes them.

`prediction_results.txt`: one row per kept frame, scores as `str(numpy.float32)`.
`prediction_results_highestscore.csv`: one row per chunk with a kept frame, tab-separated despite its name;
`Is_Virus = max(score2) >= max(score1)` over the chunk's frames (group = frame ID minus its 2-character
suffix; maxima as pandas takes them, NaN skipped, so a chunk with a NaN maximum is not virus), sorted by
chunk ID, written as pandas' `to_csv(sep="\\t")` would (the original used pandas).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vnp.atomic import atomic_write
from vnp.errors import InputError, utf8_text

RESULTS_HEADER = ("Sequence_ID", "Prediction", "score1", "score2")
RESULTS_HEADER_LINE = "\t".join(RESULTS_HEADER) + "\n"
CONSENSUS_HEADER = ("Modified_ID", "Is_Virus")
CONSENSUS_NAME = "prediction_results_highestscore.csv"


def format_score(x) -> str:
    """A score as the original writes it: str() of a numpy float32 (shortest round-trip digits)."""
    return str(np.float32(x))


def result_lines(ids, score1, score2) -> Iterator[str]:
    """The rows of `prediction_results.txt` after its header; Prediction is the argmax of (score1, score2),
    a tie going to class 0 ("others")."""
    score1 = np.asarray(score1, dtype=np.float32)
    score2 = np.asarray(score2, dtype=np.float32)
    if not len(ids) == len(score1) == len(score2):
        raise ValueError(f"{len(ids)} IDs but {len(score1)} and {len(score2)} scores")
    labels = np.where(score2 > score1, "virus", "others").tolist()
    return (f"{i}\t{label}\t{a}\t{b}\n"
            for i, label, a, b in zip(ids, labels, map(format_score, score1), map(format_score, score2)))


def write_prediction_results(path, ids, score1, score2) -> None:
    """Per-frame results, header first (`engine/parallel_results.py` writes the same bytes in parallel)."""
    lines = result_lines(ids, score1, score2)
    with atomic_write(path, encoding="utf-8") as handle:
        handle.write(RESULTS_HEADER_LINE)
        handle.writelines(lines)


def consensus(ids, score1, score2) -> list[tuple[str, bool]]:
    """(chunk ID, Is_Virus) per chunk: max(score2) >= max(score1) over its frames; sorted by chunk ID."""
    group_of: dict[str, int] = {}
    groups = np.fromiter((group_of.setdefault(i[:-2], len(group_of)) for i in ids), dtype=np.int64, count=len(ids))
    # The original's rule, NaN included: pandas' max skips NaN and is NaN for a chunk with no number (hence
    # starting from NaN: fmax skips it), and NaN >= x is False, so a chunk without two numbers is not virus.
    best1 = np.full(len(group_of), np.nan)
    best2 = np.full(len(group_of), np.nan)
    np.fmax.at(best1, groups, np.asarray(score1, dtype=np.float64))
    np.fmax.at(best2, groups, np.asarray(score2, dtype=np.float64))
    is_virus = (best2 >= best1).tolist()
    return [(group, is_virus[group_of[group]]) for group in sorted(group_of)]


def write_highestscore(path, rows) -> None:
    """`Modified_ID<TAB>Is_Virus` rows with True/False, quoted where pandas' to_csv would quote."""
    with atomic_write(path, newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(CONSENSUS_HEADER)
        writer.writerows(rows)


def read_prediction_results(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """IDs, score1 and score2 (float64, as read) of a per-frame results file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    ids, score1, score2 = [], [], []
    with path.open(newline="", encoding="utf-8") as handle, utf8_text(path):
        header = handle.readline().rstrip("\r\n").split("\t")
        if header != list(RESULTS_HEADER):
            raise InputError(f"{path}: not a prediction results file (header is not {' '.join(RESULTS_HEADER)})")
        for number, line in enumerate(handle, start=2):
            fields = line.rstrip("\r\n").split("\t")
            try:
                sequence_id, _, first, second = fields
                score1.append(float(first))
                score2.append(float(second))
            except ValueError:
                raise InputError(f"{path}: line {number} is not 'ID<TAB>label<TAB>score1<TAB>score2'") from None
            ids.append(sequence_id)
    return ids, np.array(score1, dtype=np.float64), np.array(score2, dtype=np.float64)


def consensus_file(predictions_path, out_path=None) -> int:
    """`vnp consensus`: the highest-score file from a per-frame results file; returns the number of rows."""
    out_path = Path(out_path) if out_path else Path(predictions_path).parent / CONSENSUS_NAME
    rows = consensus(*read_prediction_results(predictions_path))
    write_highestscore(out_path, rows)
    return len(rows)
