"""Preprocessing in parallel: byte spans at record starts, span stores concatenated, serial on any doubt."""

import gzip

import numpy as np
import pytest

from vnp import predict
from vnp.engine import parallel_store
from vnp.engine.store import FIELDS
from vnp.errors import InputError
from vnp.fasta import read_fasta, read_fasta_span, record_spans
from vnp.runrecord import RunRecord


def write_reads(path, count=600, seed=0, newline="\n", extra=""):
    """Reads of 80-700 nt (some chunked several times), wrapped at 60, mixed case, with descriptions."""
    rng = np.random.default_rng(seed)
    lines = ["\n"]  # a leading blank line, which only the first span may have
    for i in range(count):
        size = int(rng.integers(80, 700))
        sequence = "".join(rng.choice(list("ACGTacgtN"), size=size, p=[.24] * 4 + [.01] * 4 + [.0]))
        lines.append(f">read{i} sample=x\n" + "".join(sequence[j:j + 60] + "\n" for j in range(0, len(sequence), 60)))
    path.write_text(("".join(lines) + extra).replace("\n", newline))
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_spans_start_at_records_and_parse_to_the_same_records(tmp_path, newline):
    path = write_reads(tmp_path / "reads.fa", newline=newline)
    spans = record_spans(path, 7)
    data = path.read_bytes()
    assert spans[0][0] == 0 and spans[-1][1] == len(data) and len(spans) == 7
    assert all(a[1] == b[0] and data[b[0]:b[0] + 1] == b">" for a, b in zip(spans, spans[1:]))
    from_spans = [record for span in spans for record in read_fasta_span(path, span)]
    assert from_spans == list(read_fasta(path, keep_case=True))


def test_a_file_smaller_than_its_pieces_gives_fewer_spans(tmp_path):
    path = write_reads(tmp_path / "two.fa", count=2)
    spans = record_spans(path, 50)
    assert 1 <= len(spans) <= 2 and spans[-1][1] == path.stat().st_size
    gz = tmp_path / "two.fa.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert record_spans(gz, 4) is None


def build_both(tmp_path, path, chunk_size=300, processes=3):
    serial = predict._serial_store(path, chunk_size, tmp_path / "serial")
    parallel = parallel_store.build(path, chunk_size, tmp_path / "parallel", processes)
    return serial, parallel


def test_parallel_store_is_byte_identical_to_the_serial_one(tmp_path):
    path = write_reads(tmp_path / "reads.fa")
    (serial_comp, serial_lengths), (comp, lengths) = build_both(tmp_path, path)
    assert vars(comp) == vars(serial_comp) and comp.frames > 0
    assert np.array_equal(lengths, serial_lengths)
    for field in FIELDS:
        parallel, serial = tmp_path / "parallel", tmp_path / "serial"
        assert (parallel / f"{field}.bin").read_bytes() == (serial / f"{field}.bin").read_bytes()
        assert np.array_equal(np.load(parallel / f"{field}.ends.npy"), np.load(serial / f"{field}.ends.npy"))
    assert sorted(p.name for p in parallel.iterdir()) == sorted(p.name for p in serial.iterdir())


@pytest.mark.parametrize("extra, reason", [
    (">read3 again\nACGTACGT\n", "share an ID"),  # a duplicate of a record in the first span
    (">bad\nACGTXACGT\n", "problem"),
    (">empty\n", "problem"),
])
def test_doubtful_input_goes_back_to_the_serial_pass(tmp_path, extra, reason):
    path = write_reads(tmp_path / "reads.fa", extra=extra)
    with pytest.raises(parallel_store.NeedsSerialPass, match=reason):
        parallel_store.build(path, 300, tmp_path / "store", 3)


def test_gzip_and_empty_files_go_to_the_serial_pass(tmp_path):
    gz = tmp_path / "reads.fa.gz"
    gz.write_bytes(gzip.compress(write_reads(tmp_path / "reads.fa", count=20).read_bytes()))
    empty = tmp_path / "empty.fa"
    empty.write_bytes(b"")
    for path, reason in ((gz, "gzip"), (empty, "empty")):
        with pytest.raises(parallel_store.NeedsSerialPass, match=reason):
            parallel_store.build(path, 300, tmp_path / "store", 2)


def test_predict_builds_in_parallel_and_reports_problems_exactly_as_the_serial_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel_store, "MIN_BYTES", 0)
    path = write_reads(tmp_path / "reads.fa")
    runs = {}
    for processes in (1, 3):
        record = RunRecord([])
        built = predict._build_store(path, 300, tmp_path / f"work{processes}", record, processes)
        runs[processes] = (built, record.stages[0])
    assert runs[3][0] == runs[1][0]
    assert runs[3][1]["processes"] == 3 and runs[1][1]["processes"] == 1
    assert np.array_equal(np.load(tmp_path / "work3" / "order.npy"), np.load(tmp_path / "work1" / "order.npy"))

    bad = write_reads(tmp_path / "dup.fa", extra=">read3\nACGTACGT\n")
    messages = []
    for processes in (1, 3):
        with pytest.raises(InputError) as raised:
            predict._build_store(bad, 300, tmp_path / f"bad{processes}", RunRecord([]), processes)
        messages.append(str(raised.value))
    assert messages[0] == messages[1] and "duplicate record ID 'read3' (records #4 and #601)" in messages[0]


def test_parallel_results_are_the_serial_bytes(tmp_path):
    from vnp.consensus import write_prediction_results
    from vnp.engine import parallel_results
    from vnp.engine.store import FrameStore, FrameStoreWriter

    rng = np.random.default_rng(1)
    writer = FrameStoreWriter(tmp_path / "store")
    ids = [f"read{i}_chunk_1{'FR'[i % 2]}{i % 3 + 1}" for i in range(5000)]
    ids[4321] = "säule_chunk_1F1"  # non-ASCII: that block decodes frame by frame
    writer.append(ids=ids, nucleotides=["ACG"] * 5000, proteins=["M"] * 5000)
    writer.close()
    scores = rng.random((5000, 2), dtype=np.float32)
    scores[7] = scores[7, ::-1] = 0.5  # a tie: "others"
    ids = FrameStore(tmp_path / "store").column("ids")
    write_prediction_results(tmp_path / "serial.txt", ids, scores[:, 0], scores[:, 1])
    parallel_results.write(tmp_path / "parallel.txt", tmp_path / "store", scores, 3, tmp_path / "parts")
    assert (tmp_path / "parallel.txt").read_bytes() == (tmp_path / "serial.txt").read_bytes()
    assert not (tmp_path / "parts").exists()
    assert FrameStore(tmp_path / "store").column("ids", 4990, 6000) == ids[4990:]
    # measured on 2 cores: a loss at 0.8 M rows, a gain at 4.8 M; many processes pay sooner
    assert not parallel_results.pays(793_833, 2) and parallel_results.pays(4_764_971, 2)
    assert parallel_results.pays(793_833, 32) and not parallel_results.pays(10**7, 1)


def test_bench_parallel_script_compares_one_process_with_several(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_parallel.py"
    spec = importlib.util.spec_from_file_location("bench_parallel", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = write_reads(tmp_path / "reads.fa", count=300)
    assert module.main([str(path), "--processes", "2", "--json", str(tmp_path / "out.json")]) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["identical"] and set(report["store"]) == set(report["results"]) == {"1", "2"}
    assert report["frames"] > 0 and report["ids_column_s"] >= 0
