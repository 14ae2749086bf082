"""RunRecords (schema vnp-runrecord/1): one measured pipeline run, joined with its samples and validated.

A record is the pipeline's own run.json (`run`), what the harness saw from outside (`harness`, `samples`)
and the two joined by timestamp (`stage_peaks`). It is written to
`records/<machine>/<commit[:8]>/<suite>-<dataset>-<gpus>gpu-<variant>-r<repeat>.json` at the top of the
repository (or under $VNP_BENCH_RECORDS), so the projection and report can be rebuilt. Not under asv's
`results/`: `asv publish` would try to read every folder there as an asv machine.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

SCHEMA = "vnp-runrecord/1"
REPO = Path(__file__).resolve().parents[2]


class ValidationError(Exception):
    """The run did not turn every input frame into exactly one output row: its numbers mean nothing."""


def records_root() -> Path:
    """The one place that says where RunRecords live; everything that reads or writes them asks here."""
    return Path(os.environ.get("VNP_BENCH_RECORDS") or REPO / "records")


def record_name(suite: str, dataset: str, gpus: int, variant: str) -> str:
    return f"{suite}-{dataset}-{gpus}gpu-{variant}"


def record_path(machine: str, commit: str, name: str, repeat: int) -> Path:
    """Where a run's RunRecord lives: <records root>/<machine>/<commit, 8 digits>/<name>-r<repeat>.json."""
    return records_root() / machine / commit[:8] / f"{name}-r{repeat}.json"


def next_repeat(directory: Path, name: str) -> int:
    """The first repeat index without a record: earlier measurements are never overwritten."""
    repeat = 0
    while (directory / f"{name}-r{repeat}.json").exists():
        repeat += 1
    return repeat


def data_lines(path: Path | None) -> int | None:
    """Rows of a result file with one header line (None if the file is missing)."""
    if path is None or not path.exists():
        return None
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without its newline
    return max(0, lines - 1)


def distinct_ids(path: Path | None) -> int | None:
    """Distinct first-column values of a result file's data lines (None if the file is missing): a frame
    written twice in place of another, or a blank line, has the right line count but not the right IDs."""
    if path is None or not path.exists():
        return None
    with open(path, "rb") as handle:
        next(handle, None)  # the header
        hashes = np.fromiter((hash(line.split(b"\t", 1)[0].rstrip(b"\r\n")) for line in handle if line.strip()),
                             dtype=np.int64)
    return int(np.unique(hashes).size)


def validate(expected: dict, run: dict | None, results_rows: int | None, consensus_rows: int | None,
             exit_code: int, results_ids: int | None = None, consensus_ids: int | None = None) -> list[str]:
    """Every reason the run cannot be trusted; empty when records in = records out everywhere."""
    problems = []
    if exit_code != 0:
        problems.append(f"exit code {exit_code}")
    if not expected.get("frames"):
        problems.append("the input has no kept frame: the run would measure nothing")
    counts = {
        "prediction_results.txt rows": (results_rows, expected["frames"]),
        "highest-score rows": (consensus_rows, expected["chunks_with_frame"]),
    }
    for what, got, wanted in (("prediction_results.txt distinct IDs", results_ids, expected["frames"]),
                              ("highest-score distinct IDs", consensus_ids, expected["chunks_with_frame"])):
        if got is not None:  # a missing file is already a missing row count
            counts[what] = (got, wanted)
    if run and run.get("input") and run.get("output"):
        counts.update({
            "run.json input.reads": (run["input"].get("reads"), expected["reads"]),
            "run.json input.frames": (run["input"].get("frames"), expected["frames"]),
            "run.json output.frames": (run["output"].get("frames"), expected["frames"]),
            "run.json input.chunks_with_frame": (run["input"].get("chunks_with_frame"), expected["chunks_with_frame"]),
            "run.json output.consensus_rows": (run["output"].get("consensus_rows"), expected["chunks_with_frame"]),
        })
    for what, (got, wanted) in counts.items():
        if got is None:
            problems.append(f"{what}: missing")
        elif got != wanted:
            problems.append(f"{what}: {got}, expected {wanted}")
    if run and (run.get("exit") or {}).get("status") not in (None, "ok"):
        problems.append(f"run.json exit: {run['exit']}")
    return problems


def stage_peaks(run: dict | None, samples: dict) -> list[dict]:
    """Per stage and device: NVML, torch and host peaks, NVML and host joined by the stage's time spans."""
    if not run:
        return []
    nvml = {k: np.asarray(v) for k, v in samples["nvml"].items()}
    host = {k: np.asarray(v) for k, v in samples["host"].items()}
    peaks = []
    for stage in run.get("stages") or []:
        span = [[stage.get("start"), stage.get("end")]]
        devices = stage.get("devices") or [{"device": None}]
        for device in devices:
            gpu = _gpu_index(device.get("device"))
            intervals = device.get("intervals") or span
            peaks.append({
                "stage": stage["name"],
                "gpu": gpu,
                "nvml_peak_bytes": _peak(nvml, "mem_used_bytes", intervals, gpu) if gpu is not None else None,
                "torch_peak_allocated_bytes": device.get("peak_allocated_bytes"),
                "torch_peak_reserved_bytes": device.get("peak_reserved_bytes"),
                "host_peak_rss_bytes": _peak(host, "rss_bytes", span, None),
            })
    return peaks


def _gpu_index(device: str | None) -> int | None:
    if device and device.startswith("cuda"):
        return int(device.partition(":")[2] or 0)
    return None


def _peak(columns: dict, name: str, intervals: list, gpu: int | None) -> int | None:
    t = columns.get("t")
    if t is None or not len(t):
        return None
    chosen = np.zeros(len(t), dtype=bool)
    for start, end in intervals:
        if start is not None and end is not None:
            chosen |= (t >= start) & (t <= end)
    if gpu is not None:
        chosen &= columns["gpu"] == gpu
    return int(columns[name][chosen].max()) if chosen.any() else None


def build(harness: dict, run: dict | None, samples: dict) -> dict:
    return {"schema": SCHEMA, "harness": harness, "run": run, "samples": samples,
            "stage_peaks": stage_peaks(run, samples)}


def portable(value):
    """``value`` with this checkout's and the home folder's paths written relative (``~`` for home): records
    are committed, and a path of the machine that made them means nothing anywhere else."""
    if isinstance(value, str):
        return value.replace(f"{REPO}{os.sep}", "").replace(str(REPO), ".").replace(f"{Path.home()}{os.sep}", "~/")
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item) for item in value]
    return value


def write(record: dict, path: Path) -> None:
    """Atomically: a reader never sees half a record. Paths are made portable first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(portable(record), handle, separators=(",", ":"))
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())
