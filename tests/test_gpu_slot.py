"""workflow/scripts/gpu_slot.py: concurrent jobs on one host get different GPUs, a job that waits gets one as soon
as another ends, a killed job included, and the GPUs a scheduler chose are kept as they are."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GPU_SLOT = Path(__file__).resolve().parent.parent / "workflow" / "scripts" / "gpu_slot.py"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]  # a job that holds its GPUs until killed


def start(tmp_path: Path, name: str, *options: str, command=SLEEPER, env=None) -> subprocess.Popen:
    """A gpu_slot.py job recording its CUDA_VISIBLE_DEVICES in tmp_path/NAME; locks in tmp_path (TMPDIR)."""
    environment = {**os.environ, "TMPDIR": str(tmp_path), **(env or {})}
    return subprocess.Popen([sys.executable, str(GPU_SLOT), *options, "--record", str(tmp_path / name), "--",
                             *command], env=environment, stderr=subprocess.PIPE, text=True)


def recorded(tmp_path: Path, name: str, timeout: float = 30) -> str:
    """The GPUs job NAME got, once it has them."""
    deadline = time.monotonic() + timeout
    while not (tmp_path / name).exists():
        assert time.monotonic() < deadline, f"job {name} got no GPU in {timeout} s"
        time.sleep(0.05)
    return (tmp_path / name).read_text().strip()


@pytest.fixture
def jobs():
    started = []
    yield started
    for job in started:
        job.kill()
        job.wait()
        job.stderr.close()


def test_four_jobs_get_four_gpus_and_a_killed_jobs_gpu_goes_to_the_next(tmp_path, jobs):
    jobs += [start(tmp_path, f"job{i}", "--pool", "0,1,2,3", "--take", "1") for i in range(4)]
    gpus = [recorded(tmp_path, f"job{i}") for i in range(4)]
    assert sorted(gpus) == ["0", "1", "2", "3"]

    jobs.append(start(tmp_path, "waiting", "--pool", "0,1,2,3", "--take", "1"))
    time.sleep(2.5)  # more than gpu_slot's wait between looks
    assert jobs[4].poll() is None and not (tmp_path / "waiting").exists()  # all four GPUs are taken: it waits

    jobs[2].send_signal(signal.SIGKILL)  # dies without a word: its lock goes with its last file descriptor
    jobs[2].wait()
    assert recorded(tmp_path, "waiting") == gpus[2]


def test_two_gpu_jobs_get_disjoint_pairs(tmp_path, jobs):
    jobs += [start(tmp_path, f"job{i}", "--pool", "4,5,6,7", "--take", "2") for i in range(2)]
    pairs = [set(recorded(tmp_path, f"job{i}").split(",")) for i in range(2)]
    assert all(len(pair) == 2 for pair in pairs) and pairs[0] | pairs[1] == {"4", "5", "6", "7"}


def test_without_a_pool_the_schedulers_gpus_are_kept_and_take_0_hides_them(tmp_path):
    show = [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]
    for take, expected in (("1", "3"), ("0", "")):
        job = start(tmp_path, f"take{take}", "--take", take, command=show, env={"CUDA_VISIBLE_DEVICES": "3"})
        job.communicate(timeout=30)
        assert job.returncode == 0 and recorded(tmp_path, f"take{take}") == expected


@pytest.mark.parametrize("options, reason", [
    (["--pool", "0", "--take", "2"], "the pool has 1"),
    (["--pool", "", "--take", "1"], "--resources gpu=N"),
    (["--pool", "0,0", "--take", "1"], "lists a GPU twice"),
    (["--pool", "0,a/b", "--take", "1"], "not 'a/b'"),
    (["--pool", "0", "--take", "-1"], "0 or more"),
])
def test_bad_options_are_refused_in_one_line(tmp_path, options, reason):
    result = subprocess.run([sys.executable, str(GPU_SLOT), *options, "--", "true"], capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=30)
    assert result.returncode != 0 and reason in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_command_that_cannot_run_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(GPU_SLOT), "--take", "0", "--", "no-such-command-here"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and result.stderr.strip() == \
        "gpu_slot: cannot run no-such-command-here: No such file or directory"
