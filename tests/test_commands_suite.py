"""The in-process command suite: vnp run through its command line in this process, never imported."""

import filecmp
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import commands
from benchmarks.harness import original
from benchmarks.harness.inprocess import CommandFailed, require, run_vnp

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
PREPROCESS_CASES = [("generated/reads", 300), ("generated/contigs", 500), ("generated/contigs300", 300),
                    ("public/test_with_orfs", 500), ("public/test_fixed_500bp", 500),
                    ("public/test_sequences_small", 500)]


def test_runs_a_real_command(tmp_path):
    stderr = run_vnp("preprocess", str(GOLDEN / "generated" / "reads.fa"), "-o", str(tmp_path), "-m", "300")
    assert "3000 reads" in stderr
    assert (tmp_path / "reads_identified_protein.faa").stat().st_size > 0


def test_a_failing_command_is_an_error_with_its_reason(tmp_path):
    with pytest.raises(CommandFailed, match=r"exit 2: .*no-such\.fa"):
        run_vnp("preprocess", str(tmp_path / "no-such.fa"), "-o", str(tmp_path / "out"))


@pytest.mark.parametrize("argv", [["no-such-command", "x"], ["consensus", "x.txt", "--no-such-flag"]])
def test_what_this_commit_lacks_is_not_implemented(argv):
    with pytest.raises(NotImplementedError):
        run_vnp(*argv)


def test_require_checks_the_command_and_its_options():
    require("embed", "--model-size", "--cpu", "-o")
    with pytest.raises(NotImplementedError, match="no 'no-such-command' command"):
        require("no-such-command")
    with pytest.raises(NotImplementedError, match="no --threads"):
        require("consensus", "-o", "--threads")  # a prefix of an option is not the option
    with pytest.raises(NotImplementedError, match="no --model"):
        require("embed", "--model")


OLD_MAIN = """\
import argparse
parser = argparse.ArgumentParser(prog="vnp")
commands = parser.add_subparsers(dest="command", required=True)
preprocess = commands.add_parser("preprocess")
preprocess.add_argument("input")
preprocess.add_argument("-o", "--output", required=True)
parser.parse_args()
"""


@pytest.mark.parametrize("main, calls, reason", [
    (OLD_MAIN, "require('embed', '--cpu')", "no 'embed' command"),
    (OLD_MAIN, "require('preprocess', '-o', '-m')", "vnp preprocess has no -m"),
    (OLD_MAIN, "run_vnp('preprocess', 'in.fa', '-o', 'out', '-m', '300')", "does not accept"),
    (None, "require('preprocess')", "no runnable vnp"),
])
def test_an_old_commit_without_the_command_or_option_is_not_implemented(tmp_path, main, calls, reason):
    """A stand-in for an old installed vnp: argparse refusals (exit 2) and a package with no __main__."""
    (tmp_path / "vnp").mkdir()
    (tmp_path / "vnp" / "__init__.py").write_text("")
    if main:
        (tmp_path / "vnp" / "__main__.py").write_text(main)
    code = textwrap.dedent(f"""
        from benchmarks.harness.inprocess import require, run_vnp
        try:
            {calls}
        except NotImplementedError as error:
            print(error)
        """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert reason in done.stdout


@pytest.mark.parametrize("name, chunk_size", PREPROCESS_CASES)
def test_original_preprocess_files_is_byte_identical_to_vnp_preprocess(tmp_path, name, chunk_size):
    source = GOLDEN / f"{name}.fa"
    run_vnp("preprocess", str(source), "-o", str(tmp_path / "vnp"), "-m", str(chunk_size))
    original.preprocess_files(source, tmp_path / "original", chunk_size)
    written = sorted(p.name for p in (tmp_path / "vnp").iterdir())
    assert len(written) == 3 and written == sorted(p.name for p in (tmp_path / "original").iterdir())
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "vnp", tmp_path / "original", written, shallow=False)
    assert mismatch == errors == []


def test_original_consensus_file_is_byte_identical_to_vnp_consensus(tmp_path):
    source = GOLDEN / "generated" / "reads_prediction_results.txt"
    run_vnp("consensus", str(source), "-o", str(tmp_path / "vnp.csv"))
    original.consensus_file(source, tmp_path / "original.csv")
    assert (tmp_path / "original.csv").read_bytes() == (tmp_path / "vnp.csv").read_bytes()


@pytest.fixture(scope="module")
def inputs_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VNP_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("cls, method", [(commands.Preprocess, "time_preprocess"),
                                         (commands.Preprocess, "peakmem_preprocess"),
                                         (commands.Consensus, "time_consensus"),
                                         (commands.Consensus, "peakmem_consensus"),
                                         (commands.Embed, "time_embed")])
def test_every_benchmark_runs_once_at_the_ci_scale_and_cleans_up(inputs_cache, cls, method):
    assert not commands.SCALE.on_gpu
    inputs = cls().setup_cache()
    for param in cls.params[0]:
        benchmark = cls()
        benchmark.setup(inputs, param)
        getattr(benchmark, method)(inputs, param)
        assert any(benchmark.outputs.iterdir())
        benchmark.teardown(inputs, param)
        assert not benchmark.outputs.exists()


def test_the_made_up_predictions_are_the_original_rules_frames(inputs_cache):
    nucleotides, proteins = commands.frames_of(commands.READS)
    frame_ids = [line[1:].rstrip("\n") for line in nucleotides.open() if line.startswith(">")]
    assert frame_ids == [line[1:].rstrip("\n") for line in proteins.open() if line.startswith(">")]
    rows = [line.split("\t") for line in commands.predictions_file(commands.READS).read_text().splitlines()]
    assert rows[0] == ["Sequence_ID", "Prediction", "score1", "score2"]
    assert [row[0] for row in rows[1:]] == frame_ids and len(frame_ids) > commands.READS / 2


def test_a_command_that_writes_wrong_output_fails_its_benchmark(monkeypatch):
    """What a sample wrote is checked against the original rules after the clock stops: a build that wrote
    less would otherwise read as faster."""
    suite = commands.Consensus()
    predictions = suite.setup_cache()
    suite.setup(predictions, "vnp")
    suite.time_consensus(predictions, "vnp")
    suite.out.write_text(suite.out.read_text().splitlines(keepends=True)[0])  # the header alone
    with pytest.raises(RuntimeError, match="differs from the original rules"):
        suite.teardown(predictions, "vnp")
    assert not suite.outputs.exists()
