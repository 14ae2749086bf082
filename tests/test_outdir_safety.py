"""`vnp` under hostile use: never lose data, never leave half-written results, one line per failure.

The cases and the exit codes are listed in docs/reliability.md. Failures the operating system causes (a full
disk, a read-only directory, files that cannot be deleted) are simulated inside the test process by making
the system calls fail as the kernel would; everything else runs the real command.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GOLDEN

from vnp import cli

ORFS = GOLDEN / "public" / "test_with_orfs.fa"  # a few reads: a run takes seconds
SMALL = GOLDEN / "public" / "test_sequences_small.fa"  # another input
READS = GOLDEN / "generated" / "reads.fa"  # 3976 frames at -m 300: parts to interrupt
OUTPUTS = ["prediction_results.txt", "prediction_results_highestscore.csv", "run.json"]
TINY = ("--model-size", "tiny", "--cpu", "--quiet", "--threads", "1")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vnp-cache")  # the stand-in tokenizer is trained once


@pytest.fixture(autouse=True)
def _cache(cache_dir, monkeypatch):
    monkeypatch.setenv("VNP_CACHE_DIR", str(cache_dir))


def vnp(*args, cwd=None, env=None, **popen):
    """The real command in a subprocess."""
    command = [sys.executable, "-m", "vnp", *map(str, args)]
    environment = {**os.environ, **(env or {})}
    if environment.get("PYTHONPATH"):  # absolute, so that another working directory imports the same vnp
        environment["PYTHONPATH"] = os.pathsep.join(map(os.path.abspath, environment["PYTHONPATH"].split(os.pathsep)))
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=environment, **popen)
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def predict(fasta, outdir, *extra, **kwargs):
    return vnp("predict", fasta, "-o", outdir, *TINY, *extra, **kwargs)


def in_process(capsys, *args) -> tuple[int, list[str]]:
    """`vnp ARGS` in this process (so system calls can be made to fail): exit code and stderr lines."""
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err.splitlines()


def one_error_line(stderr: str | list[str]) -> str:
    lines = stderr.splitlines() if isinstance(stderr, str) else stderr
    lines = [line for line in lines if "random weights" not in line]  # the one warning a tiny run prints
    assert len(lines) == 1 and "Traceback" not in "".join(lines), lines
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    """OUTDIR of a finished run, to copy: the results a careless --force or --resume must not lose."""
    out = tmp_path_factory.mktemp("finished") / "out"
    done = predict(ORFS, out, "-m", "500", env={"VNP_CACHE_DIR": str(cache_dir)})
    assert done.returncode == 0, done.stderr
    return out


def copy_of(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


def fail_system_call(monkeypatch, name: str, code: int, under: Path | None = None):
    """Make ``os.<name>`` fail with ``code`` (for paths under ``under``, or always), as the kernel would."""
    real = getattr(os, name)

    def failing(path, *args, **kwargs):
        if under is None or str(under) in os.fsdecode(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, name, failing)


# -- 1. --force never deletes what vnp did not write ------------------------------------------------
def test_an_empty_output_name_is_refused(tmp_path):
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "precious.txt").write_text("mine")
    result = predict(ORFS, "", "--force", cwd=cwd)
    assert result.returncode == 4 and "-o is empty" in one_error_line(result.stderr)
    assert sorted(p.name for p in cwd.iterdir()) == ["precious.txt"]


def test_force_refuses_an_outdir_that_holds_the_input(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    shutil.copy(ORFS, data / "r.fa")
    result = predict(data / "r.fa", data, "--force")
    assert result.returncode == 4 and "lies inside the output directory" in one_error_line(result.stderr)
    assert sorted(p.name for p in data.iterdir()) == ["r.fa"]
    assert (data / "r.fa").read_bytes() == ORFS.read_bytes()


def test_force_replaces_only_vnps_own_files(tmp_path):
    out = tmp_path / "out"
    assert predict(ORFS, out, "--keep-intermediate").returncode == 0
    intermediates = ["test_with_orfs_chunked500.fa", "test_with_orfs_identified_nucleotide.fa",
                     "test_with_orfs_identified_protein.faa"]
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS + intermediates)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    result = predict(ORFS, out, "--force")
    assert result.returncode == 4 and "notes.txt" in one_error_line(result.stderr)
    assert snapshot(out) == before
    (out / "notes.txt").unlink()
    assert predict(ORFS, out, "--force").returncode == 0  # the earlier run's intermediates are vnp's: replaced
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)


def test_files_named_like_intermediates_are_not_vnps_unless_its_record_says_so(tmp_path):
    """A chunked file made by the user (or the original tool) in OUTDIR is never deleted by --resume/--force."""
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "test_with_orfs_chunked500.fa"
    mine.write_text(">mine\nACGT\n")
    for mode in ("--resume", "--force"):
        result = predict(ORFS, out, mode)
        assert result.returncode == 4 and "test_with_orfs_chunked500.fa" in one_error_line(result.stderr)
        assert sorted(p.name for p in out.iterdir()) == [mine.name] and mine.read_text() == ">mine\nACGT\n"


# -- 2. options, input and weights are checked before OUTDIR is touched; old results survive a failure ----
@pytest.mark.parametrize("extra, code, words", [
    (("--gpus", "abc"), 1, "--gpus"),
    (("--threads", "-1"), 1, "--threads"),
    (("--classifier", "missing.safetensors"), 3, "missing.safetensors"),
    (("--dnabert-dir", "no-such-folder"), 3, "no-such-folder"),
])
def test_a_bad_option_under_force_keeps_the_earlier_results(finished, tmp_path, extra, code, words):
    out = copy_of(finished, tmp_path)
    before = snapshot(out)
    result = predict(ORFS, out, "--force", *extra)
    assert result.returncode == code and words in one_error_line(result.stderr)
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == OUTPUTS


def test_bad_input_under_force_keeps_the_earlier_results(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>a\nACGT\n")
    before = snapshot(out)
    result = predict(bad, out, "--force")
    assert result.returncode == 2 and "duplicate" in one_error_line(result.stderr)
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == OUTPUTS


# -- 3. --resume of a finished run with another input or model is refused ----------------------------
@pytest.mark.parametrize("fasta, extra", [(SMALL, ("-m", "500")), (ORFS, ("-m", "300"))])
def test_resume_of_a_finished_run_with_another_input_or_model_is_refused(finished, tmp_path, fasta, extra):
    out = copy_of(finished, tmp_path)
    before = snapshot(out)
    result = predict(fasta, out, "--resume", *extra)
    assert result.returncode == 4 and "another input or configuration" in one_error_line(result.stderr)
    assert snapshot(out) == before


# -- 7. full disk, read-only places, undeletable files, a damaged work directory -------------------
def _disk_fills_at_consensus(monkeypatch):
    import vnp.consensus

    def write_half_then_fail(path, rows):
        with open(path, "w") as handle:
            handle.write("Modified_ID\tIs_Virus\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(vnp.consensus, "write_highestscore", write_half_then_fail)


def test_a_full_disk_leaves_no_partial_results_and_resume_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _disk_fills_at_consensus(patch)
        code, err = in_process(capsys, "predict", ORFS, "-o", out, *TINY)
    assert code == 5 and "No space left on device" in one_error_line(err)
    assert not (out / "prediction_results.txt").exists() and not (out / "prediction_results_highestscore.csv").exists()
    assert json.loads((out / "run.json").read_text())["exit"]["code"] == 5
    code, err = in_process(capsys, "predict", ORFS, "-o", out, *TINY, "--resume")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS


def test_a_full_disk_under_force_keeps_the_earlier_results(finished, tmp_path, monkeypatch, capsys):
    out = copy_of(finished, tmp_path)
    before = snapshot(out)
    with monkeypatch.context() as patch:
        _disk_fills_at_consensus(patch)
        code, err = in_process(capsys, "predict", ORFS, "-o", out, *TINY, "--force", "--records-per-part", "5")
    assert code == 5 and "No space left on device" in one_error_line(err)
    assert snapshot(out) == before  # the earlier results, with their own run.json
    failed = json.loads((out / ".vnp-work" / "run.json").read_text())  # the failed try's record, with its work
    assert failed["exit"]["code"] == 5


def test_a_read_only_outdir_is_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    fail_system_call(monkeypatch, "open", errno.EROFS, under=out)
    code, err = in_process(capsys, "predict", ORFS, "-o", out, *TINY)
    assert code == 4 and "Read-only file system" in one_error_line(err)
    assert list(out.iterdir()) == []


@pytest.fixture
def classifier_file(tmp_path):
    import torch

    from vnp.models.classifier import MLPClassifier

    path = tmp_path / "300_model.pth"
    torch.save(MLPClassifier(16).state_dict(), path)
    return path


@pytest.mark.parametrize("command", ["consensus", "embed", "convert-weights"])
def test_a_read_only_output_place_is_one_line(tmp_path, monkeypatch, capsys, classifier_file, command):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    results = tmp_path / "prediction_results.txt"
    results.write_text("Sequence_ID\tPrediction\tscore1\tscore2\nr_chunk_1F1\tvirus\t0.2\t0.8\n")
    proteins = tmp_path / "p.faa"
    proteins.write_text(">p1\nMKV\n>p2\nMLLA\n")
    argv = {"consensus": ("consensus", results, "-o", read_only / "calls.csv"),
            "embed": ("embed", "esm2", proteins, "-o", read_only / "e.safetensors", "--model-size", "tiny", "--cpu"),
            "convert-weights": ("convert-weights", classifier_file, read_only / "c.safetensors", "--trust")}[command]
    fail_system_call(monkeypatch, "open", errno.EROFS, under=read_only)
    code, err = in_process(capsys, *argv)
    assert code == 5
    assert one_error_line(err).startswith(f"vnp: error: {read_only}/") and err[-1].endswith("Read-only file system")
    assert list(read_only.iterdir()) == []


def test_only_the_systems_errors_become_one_line_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import vnp.consensus

    def failing(error):
        def consensus_file(*args):
            raise error
        return consensus_file

    monkeypatch.setattr(vnp.consensus, "consensus_file", failing(OSError(errno.EIO, "Input/output error", "x.txt")))
    assert in_process(capsys, "consensus", "x.txt") == (5, ["vnp: error: x.txt: Input/output error"])
    monkeypatch.setattr(vnp.consensus, "consensus_file", failing(OSError("not from the system")))  # no errno: a bug
    with pytest.raises(OSError, match="not from the system"):
        cli.main(["consensus", "x.txt"])


def test_an_undeletable_work_dir_under_force_is_one_line(finished, tmp_path, monkeypatch, capsys):
    out = copy_of(finished, tmp_path)
    (out / ".vnp-work" / "frames").mkdir(parents=True)  # an interrupted run's work
    (out / ".vnp-work" / "frames" / "ids.bin").write_bytes(b"x")
    before = snapshot(out)
    for name in ("unlink", "rmdir", "remove"):
        fail_system_call(monkeypatch, name, errno.EPERM)
    code, err = in_process(capsys, "predict", ORFS, "-o", out, *TINY, "--force")
    assert code == 4 and "--force cannot remove" in one_error_line(err)
    monkeypatch.undo()
    (out / ".vnp.lock").unlink()  # nothing could be deleted, the lock file neither (harmless: the lock is a flock)
    assert snapshot(out) == before


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, cache_dir):
    """OUTDIR of a run that failed after all its parts were scored (the disk filled at the consensus)."""
    out = tmp_path_factory.mktemp("interrupted") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VNP_CACHE_DIR", str(cache_dir))
        _disk_fills_at_consensus(patch)
        try:
            cli.main(["predict", str(ORFS), "-o", str(out), *TINY, "--records-per-part", "5"])
        except OSError:
            pass  # how a full disk ended before it became one line
    assert list((out / ".vnp-work" / "scores").glob("*.npz"))
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["truncated manifest", "missing frames", "truncated part"])
def test_a_damaged_work_dir_on_resume_is_one_line(interrupted, tmp_path, capsys, damage):
    out = copy_of(interrupted, tmp_path)
    work = out / ".vnp-work"
    if damage == "truncated manifest":
        _truncate(work / "manifest.json")
    elif damage == "missing frames":
        (work / "frames" / "proteins.bin").unlink()
    else:
        _truncate(sorted((work / "scores").glob("*.npz"))[-1])
    code, err = in_process(capsys, "predict", ORFS, "-o", out, *TINY, "--records-per-part", "5", "--resume")
    assert code == 4 and "is damaged" in one_error_line(err) and "--force" in err[-1]
    assert not (out / "prediction_results.txt").exists() and work.is_dir()  # refused, not cleared


def test_atomic_write_syncs_the_data_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    from vnp.atomic import atomic_write

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", None)), real_replace(a, b))[1])
    with atomic_write(tmp_path / "f.txt") as handle:
        handle.write("data")
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]
    assert (tmp_path / "f.txt").read_text() == "data"


# -- 8. missing weights are found before any work --------------------------------------------------
@pytest.mark.parametrize("option", ["--esm-weights", "--classifier"])
def test_missing_weights_are_found_before_any_work(tmp_path, option):
    out = tmp_path / "out"
    result = predict(ORFS, out, option, tmp_path / "nope.pt")
    assert result.returncode == 3 and f"{option} {tmp_path / 'nope.pt'}: no such file" in one_error_line(result.stderr)
    assert not out.exists()


# -- 10. SIGTERM is recorded like SIGINT ---------------------------------------------------------------
def test_sigterm_leaves_a_run_record_that_says_so(tmp_path):
    out = tmp_path / "out"
    process = predict(READS, out, "-m", "300", "--records-per-part", "400", env={"VNP_FAULT_SLOW_PART": "0.5"},
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    scores = out / ".vnp-work" / "scores"
    deadline = time.time() + 120
    while time.time() < deadline and not list(scores.glob("*.npz")):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and stderr.splitlines()[-1] == "vnp: terminated"
    record = json.loads((out / "run.json").read_text())
    assert record["exit"] == {"status": "failed", "code": 143, "error": "terminated"}
    assert not (out / "prediction_results.txt").exists()


# -- 14. the options travel as one frozen object ---------------------------------------------------------
def test_predict_options_are_checked_once_and_frozen(tmp_path):
    import dataclasses

    from vnp.options import PredictOptions

    argv = ["predict", str(ORFS), "-o", str(tmp_path / "o"), "--cpu", "--variant", "baseline", "--attention", "sdpa"]
    options = PredictOptions.from_args(cli.build_parser().parse_args(argv), argv)
    assert (options.precision, options.attention, options.packing, options.devices) == ("fp32", "sdpa", False, ("cpu",))
    assert options.argv == ("vnp", *argv) and options.outdir.is_absolute()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.force = True


def test_a_lock_taken_on_a_lock_file_that_was_replaced_meanwhile_is_not_held(tmp_path, monkeypatch):
    """Run A ends (unlinks its lock file) and run C creates a new one between our open and our flock: our lock
    on the old inode guards nothing, so we must not go on as if we held OUTDIR."""
    from vnp import outdir as out

    directory = tmp_path / "out"
    directory.mkdir()
    real_flock = out.fcntl.flock

    def flock_after_a_swap(fd, operation):
        (directory / out.LOCKFILE).unlink()
        (directory / out.LOCKFILE).touch()  # the next run's lock file
        return real_flock(fd, operation)

    monkeypatch.setattr(out.fcntl, "flock", flock_after_a_swap)
    with pytest.raises(out.OutputDirError, match="another vnp run"):
        with out.claim(directory, ORFS, {}, force=False, resume=False):
            pass
