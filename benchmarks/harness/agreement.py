"""Do two programs' outputs agree? Read after the clock stops, by the harness's own reading of the files.

Both files are VirNucPro's: `prediction_results.txt` (a header, then `ID<TAB>label<TAB>score1<TAB>score2` per
frame) and `prediction_results_highestscore.csv` (a header, then `chunk<TAB>True|False` per chunk). The
comparison is row by row after matching IDs: the same IDs in the same order, the share of frames whose label is
the same, the largest difference of a score, and the share of chunks with the same call. `save` files it beside
the two runs' RunRecords (in an `agreement/` folder, which the readers of RunRecords pass over), for the report.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import host, record, runs

SCHEMA = "vnp-agreement/1"

RESULTS = "prediction_results.txt"
CONSENSUS = "prediction_results_highestscore.csv"


@dataclass(frozen=True)
class Agreement:
    frames: int  # rows of the reference
    same_ids: bool  # the same set of frame IDs
    same_order: bool  # ... in the same order
    labels: float  # share of frames (of the reference's) with the same label
    max_score_difference: float  # largest |score| difference over matched frames and both scores
    chunks: float  # share of chunks (of the reference's) with the same call
    virus_share: float  # share of the reference's frames called virus: 0 or 1 would make `labels` say little

    def as_dict(self) -> dict:
        return asdict(self)


def read_frames(path: Path) -> tuple[list[str], dict[str, tuple[str, float, float]]]:
    """(IDs in file order, {ID: (label, score1, score2)})."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    return [row[0] for row in rows], {row[0]: (row[1], float(row[2]), float(row[3])) for row in rows}


def read_calls(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        return {row[0]: row[1] for row in list(csv.reader(handle, delimiter="\t"))[1:]}


def compare(reference: Path, other: Path) -> Agreement:
    """`reference` and `other` are folders holding the two output files of one run each."""
    order, ours = read_frames(reference / RESULTS)
    other_order, theirs = read_frames(other / RESULTS)
    matched = [frame for frame in order if frame in theirs]
    same_labels = sum(ours[f][0] == theirs[f][0] for f in matched)
    difference = max((abs(a - b) for f in matched for a, b in zip(ours[f][1:], theirs[f][1:])), default=0.0)
    calls, other_calls = read_calls(reference / CONSENSUS), read_calls(other / CONSENSUS)
    same_calls = sum(other_calls.get(chunk) == call for chunk, call in calls.items())
    return Agreement(
        frames=len(order), same_ids=set(order) == set(other_order), same_order=order == other_order,
        labels=same_labels / len(order) if order else 1.0, max_score_difference=difference,
        chunks=same_calls / len(calls) if calls else 1.0,
        virus_share=sum(ours[f][0] == "virus" for f in order) / len(order) if order else 0.0)


def save(found: Agreement, dataset: str, reference: str, other: str) -> Path:
    """`found` (runs `reference` and `other` of `dataset`, labelled as their records are) next to their records."""
    commit = runs.commit_id()
    path = record.records_root() / host.machine_name() / commit[:8] / "agreement" / f"{dataset}-{other}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"schema": SCHEMA, "dataset": dataset, "reference": reference, "other": other, "commit": commit,
                **found.as_dict()}
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path
