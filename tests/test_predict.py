"""`vnp predict` end to end on the CPU with the tiny models: outputs, run record, faults, resume, locks."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GOLDEN

ORFS = GOLDEN / "public" / "test_with_orfs.fa"
READS = GOLDEN / "generated" / "reads.fa"  # 3000 reads, 2346 chunks with a kept frame, 3976 frames (C=300)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vnp-cache")  # the stand-in tokenizer is trained once per session


def vnp(*args, cache_dir, env=None, check=True, **popen):
    environment = {**os.environ, "VNP_CACHE_DIR": str(cache_dir), **(env or {})}
    command = [sys.executable, "-m", "vnp", *map(str, args)]
    if popen:
        return subprocess.Popen(command, env=environment, **popen)
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"vnp {' '.join(map(str, args))} failed ({result.returncode}): {result.stderr}")
    return result


def predict(fasta, outdir, *extra, cache_dir, **kwargs):
    # One thread: on a 2-core CI machine, two OpenMP threads fight over the cores for no gain here.
    return vnp("predict", fasta, "-o", outdir, "--model-size", "tiny", "--cpu", "--quiet", "--threads", "1", *extra,
               cache_dir=cache_dir, **kwargs)


def data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def test_predict_writes_results_consensus_and_a_valid_run_record(tmp_path, cache_dir):
    out = tmp_path / "out"
    result = predict(ORFS, out, "-m", "500", cache_dir=cache_dir)
    assert "random weights" in result.stderr
    frames = data_lines(out / "prediction_results.txt")
    proteins = (GOLDEN / "public" / "test_with_orfs_identified_protein.faa").read_text().splitlines()
    expected_ids = [line[1:].strip() for line in proteins if line.startswith(">")]
    assert [row.split("\t")[0] for row in frames] == expected_ids
    for row in frames:
        _, label, s1, s2 = row.split("\t")
        assert label == ("virus" if float(s2) > float(s1) else "others")
        assert abs(float(s1) + float(s2) - 1) < 1e-6
    calls = data_lines(out / "prediction_results_highestscore.csv")
    assert [c.split("\t")[0] for c in calls] == sorted({i[:-2] for i in expected_ids})
    record = json.loads((out / "run.json").read_text())
    assert record["schema"] == "vnp-run/1"
    assert record["exit"] == {"status": "ok", "code": 0, "error": None}
    assert record["synthetic_weights"] is True
    assert record["input"]["frames"] == record["output"]["frames"] == len(frames)
    assert record["input"]["chunks_with_frame"] == record["output"]["consensus_rows"] == len(calls)
    assert [s["name"] for s in record["stages"]] == ["preprocess", "dnabert", "esm2", "classify", "write", "consensus"]
    esm = next(s for s in record["stages"] if s["name"] == "esm2")
    assert esm["tokens"] == record["input"]["esm_tokens"] == sum(len(p) + 2 for p in (
        line for line in (GOLDEN / "public" / "test_with_orfs_identified_protein.faa").read_text().splitlines()
        if not line.startswith(">")))
    assert record["config"]["precision"] == "fp32" and record["config"]["devices"] == ["cpu"]
    assert not (out / ".vnp-work").exists() and not (out / ".vnp.lock").exists()


def test_two_cpu_workers_give_the_same_calls_as_one(tmp_path, cache_dir):
    predict(READS, tmp_path / "one", "-m", "300", cache_dir=cache_dir)
    predict(READS, tmp_path / "two", "-m", "300", "--cpu-workers", "2", "--records-per-part", "700",
            cache_dir=cache_dir)
    one = data_lines(tmp_path / "one" / "prediction_results.txt")
    two = data_lines(tmp_path / "two" / "prediction_results.txt")
    assert len(one) == len(two) == 3976
    assert [r.split("\t")[0] for r in one] == [r.split("\t")[0] for r in two]
    for a, b in zip(one, two):  # batches differ, so allow float32 rounding, nothing more
        assert abs(float(a.split("\t")[3]) - float(b.split("\t")[3])) < 1e-5
    record = json.loads((tmp_path / "two" / "run.json").read_text())
    assert len(record["workers"]) == 2
    assert sum(d["items"] for d in next(s for s in record["stages"] if s["name"] == "esm2")["devices"]) == 3976


def test_injected_out_of_memory_backs_off_without_losing_records(tmp_path, cache_dir):
    predict(READS, tmp_path / "clean", "-m", "300", "--token-budget", "4096", cache_dir=cache_dir)
    predict(READS, tmp_path / "oom", "-m", "300", "--token-budget", "4096", cache_dir=cache_dir,
            env={"VNP_FAULT_OOM": "1,2,5"})
    clean = data_lines(tmp_path / "clean" / "prediction_results.txt")
    oom = data_lines(tmp_path / "oom" / "prediction_results.txt")
    assert [r.split("\t")[0] for r in clean] == [r.split("\t")[0] for r in oom]
    for a, b in zip(clean, oom):
        assert abs(float(a.split("\t")[3]) - float(b.split("\t")[3])) < 1e-5
    record = json.loads((tmp_path / "oom" / "run.json").read_text())
    backoffs = sum(d["oom_backoffs"] for s in record["stages"] for d in s["devices"])
    assert backoffs == 3
    assert record["output"]["frames"] == 3976


def test_killed_run_resumes_to_the_same_output(tmp_path, cache_dir):
    reference = tmp_path / "reference"
    predict(READS, reference, "-m", "300", "--records-per-part", "400", cache_dir=cache_dir)
    out = tmp_path / "killed"
    process = predict(READS, out, "-m", "300", "--records-per-part", "400", cache_dir=cache_dir,
                      env={"VNP_FAULT_SLOW_PART": "0.5"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    scores = out / ".vnp-work" / "scores"
    while time.time() < deadline and len(list(scores.glob("*.npz"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = len(list(scores.glob("*.npz")))
    assert 2 <= finished_before < 10  # killed mid-run: 3976 frames make 10 parts
    assert not (out / "prediction_results.txt").exists()

    refused = predict(READS, out, "-m", "300", "--records-per-part", "400", cache_dir=cache_dir, check=False)
    assert refused.returncode != 0 and "--resume" in refused.stderr

    predict(READS, out, "-m", "300", "--records-per-part", "400", "--resume", cache_dir=cache_dir)
    assert (out / "prediction_results.txt").read_text() == (reference / "prediction_results.txt").read_text()
    assert (out / "prediction_results_highestscore.csv").read_text() == (
        reference / "prediction_results_highestscore.csv").read_text()
    record = json.loads((out / "run.json").read_text())
    assert record["resumed"]["parts_done_before"] == finished_before
    assert sum(w["parts_skipped"] for w in record["workers"]) == finished_before
    assert record["stages"][0]["skipped"] is True


def test_a_second_run_on_a_locked_outdir_is_refused(tmp_path, cache_dir):
    out = tmp_path / "locked"
    out.mkdir()
    with open(out / ".vnp.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = predict(ORFS, out, cache_dir=cache_dir, check=False)
    assert result.returncode != 0
    assert "another vnp run" in result.stderr
    assert result.stderr.count("\n") == 1


def test_non_empty_outdir_needs_force(tmp_path, cache_dir):
    out = tmp_path / "busy"
    predict(ORFS, out, cache_dir=cache_dir)
    result = predict(ORFS, out, cache_dir=cache_dir, check=False)
    assert result.returncode == 4 and "not empty" in result.stderr and "--force" in result.stderr
    predict(ORFS, out, "--force", cache_dir=cache_dir)
    assert sorted(p.name for p in out.iterdir()) == ["prediction_results.txt", "prediction_results_highestscore.csv",
                                                    "run.json"]


@pytest.mark.parametrize("content, reason", [
    (">a\nACGT\n>a\nACGT\n", "duplicate"),
    (">a\nACGTJ\n", "J"),
    ("", "empty"),
    ("no header\n", "FASTA"),
])
def test_bad_input_leaves_nothing_behind(tmp_path, cache_dir, content, reason):
    fasta = tmp_path / "bad.fa"
    fasta.write_text(content)
    out = tmp_path / "out"
    result = predict(fasta, out, cache_dir=cache_dir, check=False)
    assert result.returncode != 0
    assert reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_missing_input_is_one_line(tmp_path, cache_dir):
    result = predict(tmp_path / "nope.fa", tmp_path / "out", cache_dir=cache_dir, check=False)
    assert result.returncode != 0 and "no such file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_keep_intermediate_writes_the_original_files(tmp_path, cache_dir):
    out = tmp_path / "out"
    predict(ORFS, out, "-m", "500", "--keep-intermediate", cache_dir=cache_dir)
    for name in ("test_with_orfs_chunked500.fa", "test_with_orfs_identified_nucleotide.fa",
                 "test_with_orfs_identified_protein.faa"):
        assert (out / name).read_bytes() == (GOLDEN / "public" / name).read_bytes()


def test_an_input_without_open_frames_gives_header_only_outputs(tmp_path, cache_dir):
    out = tmp_path / "out"
    predict(GOLDEN / "public" / "test_sequences_small.fa", out, cache_dir=cache_dir)
    assert (out / "prediction_results.txt").read_text() == "Sequence_ID\tPrediction\tscore1\tscore2\n"
    assert (out / "prediction_results_highestscore.csv").read_text() == "Modified_ID\tIs_Virus\n"
    record = json.loads((out / "run.json").read_text())
    assert record["input"]["reads"] == 11 and record["input"]["frames"] == record["output"]["frames"] == 0


def test_killing_the_parent_stops_its_spawned_workers(tmp_path, cache_dir):
    out = tmp_path / "orphans"
    process = predict(READS, out, "-m", "300", "--records-per-part", "200", "--cpu-workers", "2",
                      cache_dir=cache_dir, env={"VNP_FAULT_SLOW_PART": "0.3"},
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scores = out / ".vnp-work" / "scores"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(scores.glob("*.npz"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(1.5)  # a worker finishing the part it was in
    settled = len(list(scores.glob("*.npz")))
    time.sleep(1.5)
    assert len(list(scores.glob("*.npz"))) == settled < 20  # nobody works for a dead parent
    predict(READS, out, "-m", "300", "--records-per-part", "200", "--cpu-workers", "2", "--resume",
            cache_dir=cache_dir)
    assert len(data_lines(out / "prediction_results.txt")) == 3976


def test_parallel_preprocessing_and_writing_give_the_same_outputs(tmp_path, cache_dir):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    predict(READS, serial, cache_dir=cache_dir)
    said = vnp("predict", READS, "-o", parallel, "--model-size", "tiny", "--cpu", "--threads", "2",
               "--parallel-from", "0", cache_dir=cache_dir).stderr
    # without --quiet, a line per step says what happened
    assert "vnp: 3,000 reads -> 3,976 frames to embed on 1 device (" in said and "2 processes)" in said
    assert "vnp: embedded and classified: DNABERT-S" in said and "ESM-2" in said
    assert ("vnp: wrote prediction_results.txt (3,976 frames) and prediction_results_highestscore.csv "
            f"(2,346 chunks) to {parallel}") in said
    # (two torch threads may round a last bit differently: the writers' bytes are compared in test_parallel_store)
    rows = [[line.split("\t") for line in data_lines(out / "prediction_results.txt")] for out in (serial, parallel)]
    assert [r[:2] for r in rows[0]] == [r[:2] for r in rows[1]] and len(rows[0]) == 3976
    assert max(abs(float(a[3]) - float(b[3])) for a, b in zip(*rows)) < 1e-5
    name = "prediction_results_highestscore.csv"
    assert (parallel / name).read_bytes() == (serial / name).read_bytes()
    stages = {s["name"]: s for s in json.loads((parallel / "run.json").read_text())["stages"]}
    assert stages["preprocess"]["processes"] == 2 and stages["write"]["processes"] == 2
    assert "parallel_fallback" not in stages["preprocess"]

