"""The workflow's Slurm profile against a real one-node Slurm cluster (tests/slurm_cluster.py), started and stopped
here: one Slurm job per sample, each given a GPU by Slurm (CUDA_VISIBLE_DEVICES), a failed sample retried while
the others finish, and a second call submitting nothing. vnp runs on the CPU with the tiny models: the GPUs are
fake."""

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOLDEN
from slurm_cluster import SlurmCluster, why_not

ROOT = Path(__file__).resolve().parent.parent
SNAKEFILE = ROOT / "workflow" / "Snakefile"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
COHORT = {"orfs": GOLDEN / "public" / "test_with_orfs.fa", "no_frames": GOLDEN / "public" / "test_sequences_small.fa",
          "fixed": GOLDEN / "public" / "test_fixed_500bp.fa"}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.version_info < (3, 11), reason="Snakemake 9 needs Python >= 3.11")]

# Stands in for vnp on a GPU node: fails once for a sample with a FAIL_ONCE_<sample> file beside it, then runs vnp
# on the CPU in place of the GPU it was given.
CPU_VNP = """
import os, pathlib, sys
args = sys.argv[1:]
sample = pathlib.Path(args[args.index("-o") + 1]).name
fail_once = pathlib.Path(sys.argv[0]).with_name(f"FAIL_ONCE_{sample}")
if fail_once.exists():
    fail_once.unlink()
    sys.exit(f"vnp: {sample} fails this once")
at = args.index("--gpus")
args[at:at + 2] = ["--cpu"]
os.execv(sys.executable, [sys.executable, "-m", "vnp", *args])
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_not()
    if reason is None and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        reason = "snakemake-executor-plugin-slurm is not installed (pip install -e '.[workflow]')"
    if reason:
        pytest.skip(f"no Slurm cluster: {reason}")
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()


def snakemake_on_slurm(workdir: Path, cluster: SlurmCluster, wrapper: Path) -> subprocess.CompletedProcess:
    """The profile as shipped, with sizes this node has, and job states read with squeue (no slurmdbd for sacct)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "--profile", str(PROFILE),
               "--set-threads", "predict=1", "--set-resources", "predict:mem_mb=200", "predict:runtime=10",
               "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
               "--config", "sheet=samples.tsv", "outdir=out", "model_size=tiny", "gpus_per_job=1", "retries=1",
               f"vnp={sys.executable} {wrapper}"]
    environment = {**cluster.env, "VNP_CACHE_DIR": str(workdir / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, f"snakemake failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result


def test_a_cohort_on_slurm_one_gpu_job_per_sample_a_failure_retried(tmp_path, cluster):
    wrapper = tmp_path / "cpu_vnp.py"
    wrapper.write_text(CPU_VNP)
    (tmp_path / "FAIL_ONCE_orfs").touch()
    (tmp_path / "samples.tsv").write_text("sample\tfasta\n" + "".join(f"{k}\t{v}\n" for k, v in COHORT.items()))
    snakemake_on_slurm(tmp_path, cluster, wrapper)

    with (tmp_path / "out" / "cohort_summary.tsv").open(newline="") as summary:
        rows = list(csv.DictReader(summary, delimiter="\t"))
    assert [row["sample"] for row in rows] == list(COHORT)
    for row in rows:
        assert row["validated"] == "true" and row["host"] == cluster.node
        assert row["gpu_ids"] in {"0", "1", "2", "3"}  # one GPU each, chosen and exported by Slurm

    # Every job Slurm ran, by sample (the plugin comments each job rule_<rule>_wildcards_<sample>), as sacct has them.
    finished, jobs = cluster.finished_jobs(), cluster.jobs()
    states = {sample: [finished[job_id] for job_id in sorted(jobs, key=int)
                       if jobs[job_id]["Comment"] == f"rule_predict_wildcards_{sample}"] for sample in COHORT}
    assert states == {"orfs": ["FAILED", "COMPLETED"], "no_frames": ["COMPLETED"], "fixed": ["COMPLETED"]}
    assert not (tmp_path / "FAIL_ONCE_orfs").exists()  # the failed job is the planned failure
    assert {job["TresPerJob"] for job in jobs.values()} == {"gres:gpu:1"}  # each asked Slurm for one GPU
    assert sorted(finished) == sorted(jobs)

    again = snakemake_on_slurm(tmp_path, cluster, wrapper)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert cluster.finished_jobs() == finished and not cluster.queued()  # nothing was submitted
