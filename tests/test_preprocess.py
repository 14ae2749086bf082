"""The streaming preprocess: frames and counts as the original makes them, files all or nothing."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.harness import original
from vnp.errors import InputError, OutputDirError
from vnp.preprocess import Composition, chunk_and_translate, iter_frame_batches, output_names, preprocess_files


def random_fasta(path, seed, count, chunk_size):
    """Reads and contigs with lengths around multiples of the chunk size, lowercase runs and IUPAC codes."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        length = int(rng.choice([rng.integers(1, 200), chunk_size * rng.integers(1, 4) + rng.integers(-2, 3)]))
        seq = "".join(rng.choice(list("ACGTACGTACGTacgtNRY"), size=length))
        if i % 3 == 0:  # a stop-free stretch, so that long frames are kept too
            seq = ("GCA" * length)[:length]
        records.append((f"rec{i}", seq))
    path.write_text("".join(f">{rid} desc\n{seq}\n" for rid, seq in records))
    return records


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunk_size=st.sampled_from([300, 500]),
       batch_reads=st.sampled_from([1, 5, 4096]))
def test_frames_and_counts_agree_with_the_original(tmp_path_factory, seed, chunk_size, batch_reads):
    path = tmp_path_factory.mktemp("pp") / "in.fa"
    records = random_fasta(path, seed, 30, chunk_size)
    chunks, frames = original.chunk_and_translate(records, chunk_size)

    composition = Composition()
    batches = list(iter_frame_batches(path, chunk_size, composition, batch_reads=batch_reads))
    got = [frame for b in batches for frame in zip(b.ids, b.nucleotides, b.proteins)]
    assert got == frames
    assert composition == Composition(
        reads=len(records), bases=sum(len(s) for _, s in records), chunks=len(chunks),
        chunks_with_frame=len({frame_id[:-2] for frame_id, _, _ in frames}), frames=len(frames))


def test_in_memory_kernel_gives_chunks_as_written_and_their_frames():
    records = [("a", "atgAAACCC" * 40), ("b", "CCCN")]
    batches = list(chunk_and_translate(records, 300, batch_reads=1))
    chunks, frames = original.chunk_and_translate(records, 300)
    assert [chunk for batch_chunks, _ in batches for chunk in batch_chunks] == chunks
    assert [f for _, b in batches for f in zip(b.ids, b.nucleotides, b.proteins)] == frames


def test_batches_follow_batch_reads(tmp_path):
    path = tmp_path / "in.fa"
    path.write_text("".join(f">r{i}\nATGAAA\n" for i in range(10)))  # 5 open frames each (F2 is TGA)
    assert [len(batch) for batch in iter_frame_batches(path, 300, batch_reads=4)] == [20, 20, 10]


def test_a_long_record_is_translated_in_batches_memory_bounded_by_the_record(tmp_path):
    # One 4 Mbp record: batches end inside it, so translation holds a batch, not 8,000 chunks at once.
    length = 4_000_000
    rng = np.random.default_rng(0)
    path = tmp_path / "contig.fa"
    path.write_bytes(b">contig\n" + np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, length)].tobytes() + b"\n")
    composition = Composition()
    tracemalloc.start()
    try:
        batches = sum(1 for _ in iter_frame_batches(path, 500, composition, batch_reads=256))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * length
    assert composition.chunks == 8000 and batches == 32


@pytest.mark.parametrize(
    "name, expected",
    [("reads.fa", "reads"), ("reads.fa.gz", "reads"), ("reads.fasta", "reads"), ("my.family.fa", "my"),
     ("reads.txt", "reads.txt")],
)
def test_output_names_cut_the_input_name_at_its_first_fa(name, expected):
    assert output_names(f"/some/dir/{name}", 300) == (
        f"{expected}_chunked300.fa", f"{expected}_identified_nucleotide.fa", f"{expected}_identified_protein.faa")


def test_chunk_file_is_wrapped_at_60_and_keeps_case(tmp_path):
    (tmp_path / "x.fa").write_text(">r1 desc\n" + "acgt" * 40 + "\n")
    preprocess_files(tmp_path / "x.fa", tmp_path / "out", 500)
    text = (tmp_path / "out" / "x_chunked500.fa").read_text()
    assert text == ">r1_chunk_1\n" + ("acgt" * 15 + "\n") * 2 + "acgt" * 10 + "\n"


BAD_INPUTS = {
    "empty sequence": ">ok\nATGAAA\n>r2\n>r3\nAC\n",
    "IUPAC": ">ok\nATGAAA\n>r2\nAC*GT\n",
    "duplicate": ">r2\nATGAAA\n>r2\nACGT\n",
    "not FASTA": "hello\n",
    "empty file": "",
}


@pytest.mark.parametrize("reason", BAD_INPUTS)
def test_bad_input_leaves_no_output_directory(tmp_path, reason):
    (tmp_path / "x.fa").write_text(BAD_INPUTS[reason])
    with pytest.raises(InputError, match=reason):
        preprocess_files(tmp_path / "x.fa", tmp_path / "out" / "deeper", 300)
    assert not (tmp_path / "out").exists()


def test_bad_input_leaves_an_existing_directory_as_it_was(tmp_path):
    (tmp_path / "x.fa").write_text(">a\nATG\n" * 2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="duplicate"):
        preprocess_files(tmp_path / "x.fa", tmp_path / "out", 300)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]


def test_output_directory_that_is_a_file(tmp_path):
    (tmp_path / "x.fa").write_text(">a\nATG\n")
    (tmp_path / "out").write_text("")
    with pytest.raises(OutputDirError, match="out"):
        preprocess_files(tmp_path / "x.fa", tmp_path / "out", 300)


def test_a_failed_write_leaves_the_earlier_three_files_as_they_were(tmp_path, monkeypatch, capsys):
    """All or nothing: a full disk while the second file is synced leaves neither a mix nor a traceback."""
    import errno

    from conftest import GOLDEN

    from vnp import atomic, cli

    source, out = tmp_path / "reads.fa", tmp_path / "out"
    source.write_bytes((GOLDEN / "public" / "test_with_orfs.fa").read_bytes())
    assert cli.main(["preprocess", str(source), "-o", str(out), "-m", "500"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    source.write_bytes((GOLDEN / "public" / "test_fixed_500bp.fa").read_bytes())  # new files, same names
    real_fsync, calls = atomic.os.fsync, []

    def fsync_fills_the_disk(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", "out/second")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync_fills_the_disk)
    assert cli.main(["preprocess", str(source), "-o", str(out), "-m", "500"]) == 5
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
