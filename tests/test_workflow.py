"""workflow/Snakefile on the CPU with the tiny models: a cohort runs once, finished samples are skipped, a removed
sample is redone alone, a failed sample is retried, concurrent GPU jobs get different GPUs, and the summary checks
records in = records out itself."""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GOLDEN

ROOT = Path(__file__).resolve().parent.parent
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SUMMARY_SCRIPT = ROOT / "workflow" / "scripts" / "cohort_summary.py"
# Three small inputs of different make-up: open frames on every read, none at all, and 500-bp reads.
COHORT = {"orfs": GOLDEN / "public" / "test_with_orfs.fa", "no_frames": GOLDEN / "public" / "test_sequences_small.fa",
          "fixed": GOLDEN / "public" / "test_fixed_500bp.fa"}

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="Snakemake 9 needs Python >= 3.11")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vnp-cache")  # the stand-in tokenizer is trained once


def write_sheet(workdir: Path, samples: dict) -> None:
    workdir.mkdir(exist_ok=True)
    lines = ["sample\tfasta", *(f"{name}\t{fasta}" for name, fasta in samples.items())]
    (workdir / "samples.tsv").write_text("\n".join(lines) + "\n")


def snakemake(workdir: Path, *options: str, cache_dir: Path, config=(), check=True, cores=2):
    """One Snakemake run of the workflow in WORKDIR on the CPU with the tiny models, one thread per job."""
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", str(cores),
               *options, "--config", "sheet=samples.tsv", "outdir=out", "model_size=tiny", "gpus_per_job=0",
               "threads_per_job=1", *config]
    # TMPDIR: the GPU slots' locks are the test's own; the host's CUDA_VISIBLE_DEVICES must not become the pool.
    environment = {**os.environ, "VNP_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1", "TMPDIR": str(workdir)}
    environment.pop("CUDA_VISIBLE_DEVICES", None)
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def read_summary(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def mtimes(workdir: Path) -> dict:
    files = [workdir / "out" / "cohort_summary.tsv", *(workdir / "out" / name / "run.json" for name in COHORT)]
    return {f.relative_to(workdir).as_posix(): f.stat().st_mtime_ns for f in files}


@pytest.mark.slow
def test_a_cohort_runs_once_and_a_removed_sample_is_redone_alone(tmp_path, cache_dir):
    write_sheet(tmp_path, COHORT)
    snakemake(tmp_path, cache_dir=cache_dir)
    out = tmp_path / "out"
    rows = read_summary(out / "cohort_summary.tsv")
    assert [row["sample"] for row in rows] == list(COHORT)
    for row in rows:
        fasta, sample_dir = COHORT[row["sample"]], out / row["sample"]
        assert int(row["reads"]) == fasta.read_text().count(">")
        assert int(row["frames"]) == len(data_lines(sample_dir / "prediction_results.txt"))
        calls = data_lines(sample_dir / "prediction_results_highestscore.csv")
        assert int(row["chunks_called_viral"]) == sum(line.endswith("\tTrue") for line in calls)
        assert float(row["wall_seconds"]) == pytest.approx(json.loads((sample_dir / "run.json").read_text())
                                                            ["wall_seconds"], abs=0.05)
        assert row["gpus"] == "0" and row["gpu_ids"] == "" and row["validated"] == "true"
    assert int(rows[0]["frames"]) > 0 and int(rows[1]["frames"]) == 0  # both make-ups are really covered

    before = mtimes(tmp_path)
    again = snakemake(tmp_path, cache_dir=cache_dir)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert mtimes(tmp_path) == before

    for path in (out / "fixed").iterdir():
        path.unlink()
    (out / "fixed").rmdir()
    snakemake(tmp_path, cache_dir=cache_dir)
    after = mtimes(tmp_path)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {"out/cohort_summary.tsv", "out/fixed/run.json"}
    assert [row["validated"] for row in read_summary(out / "cohort_summary.tsv")] == ["true"] * 3

    faster = snakemake(tmp_path, "--dry-run", cache_dir=cache_dir, config=("threads_per_job=2",))
    assert "Nothing to be done" in faster.stdout + faster.stderr  # speed settings keep finished samples
    other_calls = snakemake(tmp_path, "--dry-run", cache_dir=cache_dir, config=("extra=-m 300",))
    assert re.search(r"^predict\s+3$", other_calls.stdout, re.MULTILINE)  # options that change calls redo all


# Stands in for vnp: while FAILURES holds a positive count, it leaves what a killed run leaves (a partial
# results file, a failed run record, the work directory kept for --resume) and fails; then it runs vnp itself.
FLAKY_VNP = """
import os, pathlib, sys
calls = pathlib.Path(sys.argv[0]).with_name("CALLS")
calls.write_text(calls.read_text() + "call\\n" if calls.exists() else "call\\n")
failures = pathlib.Path(sys.argv[0]).with_name("FAILURES")
left = int(failures.read_text())
if left > 0:
    failures.write_text(str(left - 1))
    outdir = pathlib.Path(sys.argv[sys.argv.index("-o") + 1])
    (outdir / ".vnp-work").mkdir(parents=True, exist_ok=True)
    (outdir / "prediction_results.txt").write_text("Sequence_ID\\tPrediction\\tscore1\\tscore2\\n")
    (outdir / "run.json").write_text('{"exit": {"status": "failed", "code": 1, "error": "killed"}}')
    sys.exit("vnp: killed")
os.execv(sys.executable, [sys.executable, "-m", "vnp", *sys.argv[1:]])
"""


@pytest.mark.slow
def test_a_failed_sample_is_retried_and_a_rerun_after_a_failure_starts_over(tmp_path, cache_dir):
    wrapper = tmp_path / "flaky_vnp.py"
    wrapper.write_text(FLAKY_VNP)
    write_sheet(tmp_path, {"orfs": COHORT["orfs"]})
    config = (f"vnp={sys.executable} {wrapper}",)
    sample_dir = tmp_path / "out" / "orfs"

    (tmp_path / "FAILURES").write_text("1")
    failed = snakemake(tmp_path, cache_dir=cache_dir, config=(*config, "retries=0"), check=False)
    assert failed.returncode != 0
    assert not (sample_dir / "run.json").exists() and not (sample_dir / "prediction_results.txt").exists()
    assert (sample_dir / ".vnp-work").is_dir()  # what vnp keeps for a manual --resume is still there...
    snakemake(tmp_path, cache_dir=cache_dir, config=config)  # ...and does not block the re-run
    assert [row["validated"] for row in read_summary(tmp_path / "out" / "cohort_summary.tsv")] == ["true"]

    (tmp_path / "FAILURES").write_text("1")
    (tmp_path / "CALLS").unlink()
    snakemake(tmp_path, "--forcerun", "predict", cache_dir=cache_dir, config=(*config, "retries=1"))
    assert (tmp_path / "CALLS").read_text().count("call") == 2  # failed once, retried once, in one invocation
    assert [row["validated"] for row in read_summary(tmp_path / "out" / "cohort_summary.tsv")] == ["true"]


# Stands in for vnp killed with its Snakemake (a lost node): its work directory and one output written, then it
# hangs until killed.
HANGING_VNP = """
import pathlib, sys, time
outdir = pathlib.Path(sys.argv[sys.argv.index("-o") + 1])
(outdir / ".vnp-work").mkdir()
(outdir / "prediction_results.txt").write_text("Sequence_ID\\tPrediction\\tscore1\\tscore2\\n")
time.sleep(600)
"""


@pytest.mark.slow
def test_outputs_of_a_killed_run_are_not_trusted(tmp_path, cache_dir):
    wrapper = tmp_path / "hanging_vnp.py"
    wrapper.write_text(HANGING_VNP)
    write_sheet(tmp_path, {"orfs": COHORT["orfs"]})
    partial = tmp_path / "out" / "orfs" / "prediction_results.txt"
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(tmp_path), "--cores", "1",
               "--config", "sheet=samples.tsv", "outdir=out", "gpus_per_job=0", f"vnp={sys.executable} {wrapper}"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not partial.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # Snakemake and its job at once, as when a node is lost
        run.wait()
    assert partial.exists()
    refused = snakemake(tmp_path, "--dry-run", cache_dir=cache_dir, check=False)
    assert refused.returncode != 0 and "incomplete" in refused.stdout + refused.stderr
    snakemake(tmp_path, "--unlock", cache_dir=cache_dir)  # the killed Snakemake's lock on the directory
    snakemake(tmp_path, "--rerun-incomplete", cache_dir=cache_dir)
    assert [row["validated"] for row in read_summary(tmp_path / "out" / "cohort_summary.tsv")] == ["true"]


# Stands in for vnp on one GPU: checks in under the GPU it was given, waits until four samples run at once, each on
# a GPU of its own (a shared GPU would check in once), then runs vnp on the CPU.
GPU_VNP = """
import os, pathlib, sys, time
running = pathlib.Path(sys.argv[0]).with_name("running")
running.mkdir(exist_ok=True)
(running / os.environ["CUDA_VISIBLE_DEVICES"]).touch()
deadline = time.monotonic() + 60
while len(list(running.iterdir())) < 4:
    if time.monotonic() > deadline:
        sys.exit(f"only GPUs {sorted(p.name for p in running.iterdir())} were in use at once")
    time.sleep(0.1)
args = sys.argv[1:]
at = args.index("--gpus")
args[at:at + 2] = ["--cpu"]
os.execv(sys.executable, [sys.executable, "-m", "vnp", *args])
"""


@pytest.mark.slow
def test_four_samples_run_at_once_on_four_different_gpus(tmp_path, cache_dir):
    wrapper = tmp_path / "gpu_vnp.py"
    wrapper.write_text(GPU_VNP)
    names = ["s1", "s2", "s3", "s4"]
    write_sheet(tmp_path, {name: COHORT["orfs"] for name in names})
    snakemake(tmp_path, "--resources", "gpu=4", cache_dir=cache_dir, cores=4,
              config=("gpus_per_job=1", f"vnp={sys.executable} {wrapper}"))
    rows = read_summary(tmp_path / "out" / "cohort_summary.tsv")
    assert [row["sample"] for row in rows] == names
    assert sorted(row["gpu_ids"] for row in rows) == ["0", "1", "2", "3"]
    assert {row["host"] for row in rows} == {socket.gethostname()}
    assert [row["validated"] for row in rows] == ["true"] * 4


def test_gpu_jobs_declare_their_gpus_and_threads(tmp_path, cache_dir):
    write_sheet(tmp_path, {"orfs": COHORT["orfs"]})
    plan = snakemake(tmp_path, "--dry-run", "--printshellcmds", cache_dir=cache_dir, cores=8,
                     config=("gpus_per_job=2", "threads_per_job=4", "model_size=full", "extra=-m 300")).stdout
    assert "gpu=2" in plan
    assert "--threads 4 --gpus 0,1 --model-size full -m 300" in plan and "--cpu" not in plan
    assert "gpu_slot.py --take 2 --pool '' --record" in plan  # no --resources gpu=N: gpu_slot refuses, saying so
    with_pool = snakemake(tmp_path, "--dry-run", "--printshellcmds", "--resources", "gpu=4", cache_dir=cache_dir,
                          config=("gpus_per_job=2",)).stdout
    assert "gpu_slot.py --take 2 --pool 0,1,2,3 --record out/logs/orfs.gpus --" in with_pool


@pytest.mark.parametrize("sheet, reason", [
    ("name\tpath\na\tx.fa\n", "needs a header"),
    ("sample\tfasta\na\tx.fa\na\ty.fa\n", "listed twice"),
    ("sample\tfasta\na/b\tx.fa\n", "must be letters"),
    ("sample\tfasta\na\n", "has no fasta"),
    (None, "not found"),
])
def test_a_bad_sample_sheet_is_refused_with_its_reason(tmp_path, cache_dir, sheet, reason):
    if sheet is not None:
        (tmp_path / "samples.tsv").write_text(sheet)
    result = snakemake(tmp_path, "--dry-run", cache_dir=cache_dir, check=False)
    assert result.returncode != 0 and reason in result.stdout + result.stderr


def write_sample(sample_dir: Path, *, frames_in: int, status: str = "ok") -> None:
    sample_dir.mkdir(parents=True)
    (sample_dir / "prediction_results.txt").write_text(
        "Sequence_ID\tPrediction\tscore1\tscore2\nr1_chunk_1R1\tvirus\t0.1\t0.9\nr1_chunk_1F2\tothers\t0.8\t0.2\n")
    (sample_dir / "prediction_results_highestscore.csv").write_text('Modified_ID\tIs_Virus\n"r1,_chunk_1"\tTrue\n')
    record = {"input": {"reads": 1, "frames": frames_in, "chunks_with_frame": 1}, "wall_seconds": 12.34,
              "config": {"devices": ["cuda:0", "cuda:1"]}, "host": {"hostname": "node7"}, "exit": {"status": status}}
    (sample_dir / "run.json").write_text(json.dumps(record))
    (sample_dir.parent / "logs").mkdir(exist_ok=True)
    (sample_dir.parent / "logs" / f"{sample_dir.name}.gpus").write_text("2,3\n")  # gpu_slot.py's record


def test_the_summary_validates_records_in_against_records_out_itself(tmp_path):
    write_sample(tmp_path / "agrees", frames_in=2)
    write_sample(tmp_path / "lost_a_frame", frames_in=3)
    write_sample(tmp_path / "failed", frames_in=2, status="failed")
    summary = tmp_path / "cohort_summary.tsv"
    subprocess.run([sys.executable, str(SUMMARY_SCRIPT), "-o", str(summary), "--gpu-records", str(tmp_path / "logs"),
                    *(str(tmp_path / name) for name in ("agrees", "lost_a_frame", "failed"))], check=True)
    rows = read_summary(summary)
    assert rows[0] == {"sample": "agrees", "reads": "1", "frames": "2", "chunks_called_viral": "1",
                       "wall_seconds": "12.3", "gpus": "2", "host": "node7", "gpu_ids": "2,3", "validated": "true"}
    assert [row["validated"] for row in rows] == ["true", "false", "false"]
