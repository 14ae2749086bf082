"""`vnp preprocess` and `vnp consensus` through a real subprocess: outputs, one-line errors, exit codes."""

import bz2
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vnp.cli")

GOLDEN = Path(__file__).parent / "data" / "golden"


def vnp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vnp", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_preprocess_writes_the_three_files_of_the_original(tmp_path):
    source = GOLDEN / "generated/reads.fa"
    gzipped = tmp_path / "reads.fa.gz"
    gzipped.write_bytes(gzip.compress(source.read_bytes()))
    done = vnp("preprocess", gzipped, "-o", tmp_path / "out", "-m", "300")
    assert done.returncode == 0, done.stderr
    for name in ("reads_chunked300.fa", "reads_identified_nucleotide.fa", "reads_identified_protein.faa"):
        assert (tmp_path / "out" / name).read_bytes() == (source.parent / name).read_bytes()


@pytest.mark.parametrize("gzipped", [False, True])
def test_preprocess_reads_a_pipe_once_and_whole(tmp_path, gzipped):
    # `cat reads.fa | vnp preprocess /dev/stdin`: the format is told from the stream, never by reopening it
    source = GOLDEN / "generated/reads.fa"
    data = gzip.compress(source.read_bytes()) if gzipped else source.read_bytes()
    done = subprocess.run([sys.executable, "-m", "vnp", "preprocess", "/dev/stdin", "-o", tmp_path, "-m", "300"],
                          input=data, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("chunked300.fa", "identified_nucleotide.fa", "identified_protein.faa"):
        assert (tmp_path / f"stdin_{name}").read_bytes() == (source.parent / f"reads_{name}").read_bytes()


def test_preprocess_imports_only_what_it_uses(tmp_path):
    # A whole `vnp preprocess` of 100,000 reads takes ~0.5 s: the model side's imports (weight fetching:
    # http, ssl, email; torch) or numpy.ma (np.unique imports it) would add a fifth.
    code = ("import sys; from vnp import cli; "
            f"code = cli.main(['preprocess', {str(GOLDEN / 'generated/reads.fa')!r}, '-o', {str(tmp_path)!r}]); "
            "print(code, [m for m in ('torch', 'vnp.fetch', 'http.client', 'ssl', 'numpy.ma') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["0", "[]"], done.stdout + done.stderr


def test_preprocess_refuses_a_dash_and_names_standard_input(tmp_path):
    done = vnp("preprocess", "-", "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "/dev/stdin" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("what, words", [("directory", "is a directory"), ("dash", "standard input"),
                                         ("fifo", "is a pipe or FIFO")])
def test_predict_says_what_its_input_is(tmp_path, what, words):
    source = {"directory": tmp_path, "dash": "-", "fifo": tmp_path / "fifo"}[what]
    if what == "fifo":
        os.mkfifo(source)
    done = vnp("predict", source, "-o", tmp_path / "out", "--model-size", "tiny", "--cpu")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_consensus_writes_beside_its_input_or_where_told(tmp_path):
    results = tmp_path / "prediction_results.txt"
    results.write_bytes((GOLDEN / "generated/reads_prediction_results.txt").read_bytes())
    expected = (GOLDEN / "generated/reads_prediction_results_highestscore.csv").read_bytes()

    assert vnp("consensus", results).returncode == 0
    assert (tmp_path / "prediction_results_highestscore.csv").read_bytes() == expected
    assert vnp("consensus", results, "-o", tmp_path / "calls.tsv").returncode == 0
    assert (tmp_path / "calls.tsv").read_bytes() == expected


BAD_INPUTS = {  # name: (file content or None for a missing file, words the message must have)
    "missing": (None, ["no such file"]),
    "empty": (b"", ["empty file"]),
    "not_fasta": (b"just some text\n", ["not FASTA"]),
    "empty_sequence": (b">r1\nACGT\n>r2 empty\n>r3\nAC\n", ["'r2'", "empty sequence"]),
    "duplicate": (b">r1\nACGT\n>r2\nAC\n>r1\nGG\n", ["'r1'", "duplicate", "#1 and #3"]),
    "not_iupac": (b">r1\nACGT\n>r2\nACXGT\n", ["'r2'", "'X'", "position 3", "IUPAC"]),
    "bad_gzip": (gzip.compress(b">r1\n" + b"ACGT" * 5000)[:60], ["gzip"]),
    "bzip2": (bz2.compress(b">r1\nACGT\n"), ["bzip2-compressed"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_one_line_nonzero_exit_nothing_left(tmp_path, case):
    content, words = BAD_INPUTS[case]
    source = tmp_path / "in.fa"
    if content is not None:
        source.write_bytes(content)
    done = vnp("preprocess", source, "-o", tmp_path / "out", "-m", "500")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and all(word in lines[0] for word in words), done.stderr
    assert not (tmp_path / "out").exists()


def test_bad_prediction_file_one_line_nonzero_exit_nothing_left(tmp_path):
    (tmp_path / "prediction_results.txt").write_text("Sequence_ID\tPrediction\tscore1\tscore2\na\tvirus\tx\t1\n")
    done = vnp("consensus", tmp_path / "prediction_results.txt")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "line 2" in done.stderr
    assert not (tmp_path / "prediction_results_highestscore.csv").exists()


@pytest.mark.parametrize("command, name, content", [
    ("consensus", "prediction_results.txt",
     b"Sequence_ID\tPrediction\tscore1\tscore2\nr\xff_chunk_1F1\tvirus\t0.1\t0.9\n"),
    ("embed", "proteins.faa", b">a\nMK\xffV\n"),
])
def test_non_utf8_input_is_one_line_exit_2_nothing_written(tmp_path, command, name, content):
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / "out.file"
    extra = ("esm2",) if command == "embed" else ()
    tail = ("--model-size", "tiny", "--cpu") if command == "embed" else ()
    done = vnp(command, *extra, source, "-o", out, *tail)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"vnp: error: {source}: not UTF-8 text (a binary or otherwise "
                                                "encoded file?)"]
    assert not out.exists()
