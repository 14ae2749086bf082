"""FASTA reading: the formats the original accepts, read like Biopython reads them, and every bad input refused."""

import bz2
import contextlib
import gzip
import io
import itertools
import lzma
import os
import random
import subprocess
import sys
import threading
import tracemalloc
from unittest import mock

import pytest
from Bio import SeqIO
from hypothesis import given, settings
from hypothesis import strategies as st

import vnp.fasta
from vnp.errors import InputError
from vnp.fasta import Composition, read_fasta, validate_fasta


def write(tmp_path, text, name="in.fa"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_multiline_records_descriptions_lowercase_and_crlf(tmp_path):
    path = write(tmp_path, ">r1 some description\r\nacgT\r\nNNac\r\n\r\n>r2\tx=1\nGG\n")
    assert list(read_fasta(path)) == [("r1", "ACGTNNAC"), ("r2", "GG")]


def test_keep_case_keeps_the_letters_as_written(tmp_path):
    path = write(tmp_path, ">r1\nacgT\nNn\n")
    assert list(read_fasta(path, keep_case=True)) == [("r1", "acgTNn")]


def test_gzip_is_told_by_magic_bytes_not_by_name(tmp_path):
    path = write(tmp_path, gzip.compress(b">r1\nACGT\n>r2\nTT"), name="reads.txt")
    assert list(read_fasta(path)) == [("r1", "ACGT"), ("r2", "TT")]


def test_leading_blank_lines_and_missing_final_newline(tmp_path):
    path = write(tmp_path, "\n\n  \n>r1\nAC\nGT")
    assert list(read_fasta(path)) == [("r1", "ACGT")]


def test_validate_counts_reads_bases_and_chunks(tmp_path):
    path = write(tmp_path, ">a\n" + "A" * 301 + "\n>b\n" + "C" * 300 + "\n")
    assert validate_fasta(path, chunk_size=300) == Composition(reads=2, bases=601, chunks=3)
    assert validate_fasta(path) == Composition(reads=2, bases=601)


FASTA_RECORDS = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z0-9_.|:-]{1,12}", fullmatch=True),
        st.from_regex(r"( [ -~]{0,10})?", fullmatch=True),  # description
        st.lists(st.text("ACGTNRYacgtn", min_size=1, max_size=70), min_size=1, max_size=4),  # lines
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda record: record[0],
)


@settings(max_examples=150, deadline=None)
@given(records=FASTA_RECORDS, block_bytes=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), gzipped=st.booleans())
def test_reads_what_biopython_reads_at_any_block_size(tmp_path_factory, records, block_bytes, newline, gzipped):
    text = "".join(f">{rid}{desc}{newline}" + "".join(line + newline for line in lines) for rid, desc, lines in records)
    path = tmp_path_factory.mktemp("fa") / "x.fa"
    path.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    # newline=None: universal newlines, as the original's SeqIO.parse(filename) reads a file in text mode
    expected = [(r.id, str(r.seq).upper()) for r in SeqIO.parse(io.StringIO(text, newline=None), "fasta")]
    with mock.patch.object(vnp.fasta, "BLOCK_BYTES", block_bytes):
        assert list(read_fasta(path)) == expected


# --- bad input: one InputError naming the file, the record and the reason ---------------------------------

def error_of(path, **patches):
    with mock.patch.multiple(vnp.fasta, **patches) if patches else contextlib.nullcontext():
        with pytest.raises(InputError) as caught:
            list(read_fasta(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in error_of(tmp_path / "absent.fa")


def test_directory(tmp_path):
    assert "directory" in error_of(tmp_path)


@pytest.mark.parametrize("text", ["", "\n \n"])
def test_empty_file(tmp_path, text):
    assert "empty file" in error_of(write(tmp_path, text))


def test_empty_gzip_file(tmp_path):
    assert "empty file" in error_of(write(tmp_path, gzip.compress(b"")))


@pytest.mark.parametrize("text", ["ACGT\n>r1\nACGT\n", "@read1\nACGT\n+\nIIII\n", "\x00\x01binary"])
def test_not_fasta(tmp_path, text):
    assert "not FASTA" in error_of(write(tmp_path, text))


def test_broken_gzip(tmp_path):
    data = gzip.compress(b">r1\n" + b"ACGT" * 10000)
    assert "gzip" in error_of(write(tmp_path, data[: len(data) // 2]))


@pytest.mark.parametrize("text", [">r1\nACGT\n>r2\n>r3\nAC\n", ">r1\nACGT\n>r2\n", ">r1\nACGT\n>r2 desc\n\n\n"])
def test_empty_sequence_names_the_record(tmp_path, text):
    message = error_of(write(tmp_path, text))
    assert "'r2'" in message and "empty sequence" in message


def test_header_without_id(tmp_path):
    message = error_of(write(tmp_path, ">r1\nACGT\n>\nACGT\n"))
    assert "#2" in message and "no ID" in message


@pytest.mark.parametrize("char", ["X", "*", "-", "1", "é"])
def test_non_iupac_character_names_record_character_and_position(tmp_path, char):
    message = error_of(write(tmp_path, f">r1\nACGT\n>bad one\nAC\nG{char}T\n"))
    assert "'bad'" in message and "position 4" in message and "IUPAC" in message
    assert repr(char) in message


def test_duplicate_ids_next_to_each_other(tmp_path):
    message = error_of(write(tmp_path, ">a\nAC\n>b x\nAC\n>b y\nGT\n"))
    assert "duplicate record ID 'b'" in message and "#2 and #3" in message


def test_duplicate_ids_far_apart_across_check_batches(tmp_path):
    text = "".join(f">r{i}\nACGT\n" for i in range(50)) + ">r7\nAC\n"
    message = error_of(write(tmp_path, text), CHECK_EVERY=4)
    assert "duplicate record ID 'r7'" in message and "#8 and #51" in message


def test_hash_collisions_are_confirmed_not_reported(tmp_path):
    # Every ID hashes alike: each is looked up again in the file, and none is a duplicate.
    text = "".join(f">r{i}\nACGT\n" for i in range(20))
    with mock.patch.multiple(vnp.fasta, CHECK_EVERY=3, hash=lambda _: 7, create=True):
        assert len(list(read_fasta(write(tmp_path, text)))) == 20
        assert "#3 and #21" in error_of(write(tmp_path, text + ">r2\nAC\n"))


def test_first_problem_wins_a_duplicate_before_a_bad_character(tmp_path):
    message = error_of(write(tmp_path, ">a\nAC\n>a\nAC\n>c\nAXC\n"))
    assert "duplicate" in message


def test_records_before_the_problem_are_streamed(tmp_path):
    records = read_fasta(write(tmp_path, ">a\nAC\n>b\nAXC\n"))
    assert next(records) == ("a", "AC")
    with pytest.raises(InputError, match="'b'"):
        next(records)


def test_duplicate_found_at_a_check_boundary(tmp_path):
    text = "".join(f">r{i}\nACGT\n" for i in range(1, 8)) + ">r2\nAC\n" + "".join(f">s{i}\nA\n" for i in range(9))
    assert "#2 and #8" in error_of(write(tmp_path, text), CHECK_EVERY=4)


def test_the_first_duplicate_wins_when_a_block_holds_several_check_batches(tmp_path):
    # One block brings records 1-6: the batch 1-4 holds the first duplicate ('a'), the rest another ('y').
    text = "".join(f">{record_id}\nAC\n" for record_id in ["a", "b", "a", "c", "y", "y", "z"])
    assert "'a' (records #1 and #3)" in error_of(write(tmp_path, text), CHECK_EVERY=4)


def test_validate_refuses_what_reading_refuses(tmp_path):
    with pytest.raises(InputError, match="duplicate record ID 'a'"):
        validate_fasta(write(tmp_path, ">a\nAC\n>a\nGT\n"))


# --- line ends and IDs as the original reads them (Biopython on a file opened in text mode) -----------------

def biopython(path):
    return [(record.id, str(record.seq).upper()) for record in SeqIO.parse(str(path), "fasta")]


def test_old_mac_cr_line_ends_are_read_as_the_original_reads_them(tmp_path):
    path = write(tmp_path, ">a first\rACGT\rnnAC\r\r>b\rGG\r>c\r\nTT")
    assert list(read_fasta(path)) == biopython(path) == [("a", "ACGTNNAC"), ("b", "GG"), ("c", "TT")]


@pytest.mark.parametrize("blank", ["\xa0", "\u2028", "\x85", "\x1c", "\x1d", "\x1e", "\x1f", "\u3000"])
def test_ids_are_cut_where_str_split_cuts_them(tmp_path, blank):
    path = write(tmp_path, f">a{blank}one\nACGT\n>b{blank}\nAC\n")
    assert list(read_fasta(path)) == biopython(path) == [("a", "ACGT"), ("b", "AC")]
    assert "duplicate record ID 'a'" in error_of(write(tmp_path, f">a{blank}x\nAC\n>a{blank}y\nGT\n"))


@pytest.mark.parametrize("compress, name", [(bz2.compress, "bzip2"), (lzma.compress, "xz")])
def test_other_compressions_are_named(tmp_path, compress, name):
    message = error_of(write(tmp_path, compress(b">r1\nACGT\n")))
    assert f"{name}-compressed" in message and "gzip" in message


# --- pipes and FIFOs: read once, never reopened ---------------------------------------------------------

def feed_fifo(path, data):
    """Write ``data`` into the FIFO ``path`` from a thread (opening blocks until a reader comes)."""
    def write_all():
        with contextlib.suppress(BrokenPipeError), open(path, "wb") as fifo:
            fifo.write(data)
    thread = threading.Thread(target=write_all, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_fifo_is_read_once_whole(tmp_path, gzipped):
    text = "".join(f">r{i} read\n{'ACGT' * 40}\n" for i in range(3000))  # well past every buffer size
    fifo = tmp_path / "in.fa"
    os.mkfifo(fifo)
    feed_fifo(fifo, gzip.compress(text.encode()) if gzipped else text.encode())
    # In a child with a deadline: reopening a FIFO whose writer has gone would wait forever.
    code = f"from vnp.fasta import read_fasta; print(sum(1 for _ in read_fasta({str(fifo)!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "3000", done.stderr


def test_a_hash_collision_in_a_pipe_is_refused_not_guessed(tmp_path):
    fifo = tmp_path / "in.fa"
    os.mkfifo(fifo)
    feed_fifo(fifo, b">a\nAC\n>b\nGT\n")
    code = ("from unittest import mock; import vnp.fasta as f; from vnp.errors import InputError\n"
            "with mock.patch.multiple(f, CHECK_EVERY=1, hash=lambda _: 7, create=True):\n"
            f"    try: list(f.read_fasta({str(fifo)!r}))\n"
            "    except InputError as e: print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "record 'b' may repeat an earlier ID" in done.stdout and "give the input as a file" in done.stdout


def test_check_input_says_what_the_path_is(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is a directory"):
        vnp.fasta.check_input(tmp_path)
    with pytest.raises(InputError, match="standard input"):
        vnp.fasta.check_input("-", regular_file=True)
    with pytest.raises(InputError, match="is a pipe or FIFO"):
        vnp.fasta.check_input(fifo, regular_file=True)
    with pytest.raises(InputError, match="no such file"):
        vnp.fasta.check_input(tmp_path / "absent.fa")
    assert vnp.fasta.check_input(fifo) == fifo  # vnp preprocess streams it
    assert vnp.fasta.check_input(write(tmp_path, ">a\nA\n"), regular_file=True) == tmp_path / "in.fa"


# --- linear time, memory bounded by the largest record ----------------------------------------------------

def test_a_stray_gt_inside_a_line_is_found_in_linear_time(tmp_path):
    # 4 MB in 64-byte blocks: re-joining the record at every block (as before) copies ~130 GB and runs for
    # minutes; one pass finishes in well under a second. The deadline is generous, not a timing.
    path = write(tmp_path, b">a\n" + b"ACGT>ACGTA\n" * 400_000)
    code = ("from unittest import mock; import vnp.fasta as f; from vnp.errors import InputError\n"
            "with mock.patch.object(f, 'BLOCK_BYTES', 64):\n"
            f"    try: list(f.read_fasta({str(path)!r}))\n"
            "    except InputError as e: print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "'>' at position 5" in done.stdout, done.stderr


def test_a_long_record_is_held_about_twice(tmp_path):
    length = 8_000_000
    path = write(tmp_path, b">big\n" + b"\n".join([b"ACGTTGCA" * 10] * (length // 80)) + b"\n")
    tracemalloc.start()
    try:
        (record_id, sequence), = read_fasta(path, keep_case=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(sequence) == length and peak < 3 * length



# --- the whole-block path for two-line records: the same records, and the same first problem -----------------

TWO_LINE_CHANGES = {  # what a record's (header line, sequence line) become
    "none": lambda header, sequence: (header, sequence),
    "description": lambda header, sequence: (header + " some words", sequence),
    "CRLF": lambda header, sequence: (header + "\r", sequence + "\r"),
    "no ID": lambda header, sequence: (">", sequence),
    "blank before ID": lambda header, sequence: ("> " + header[1:], sequence),
    "non-ASCII ID": lambda header, sequence: (header + "é", sequence),
    "unit separator": lambda header, sequence: (header + "\x1fx", sequence),
    "NBSP": lambda header, sequence: (header + "\xa0x", sequence),
    "stop": lambda header, sequence: (header, sequence[:3] + "*" + sequence[3:]),
    "gt": lambda header, sequence: (header, sequence[:3] + ">" + sequence[3:]),
    "blank": lambda header, sequence: (header, sequence[:3] + " " + sequence[3:]),
    "empty": lambda header, sequence: (header, ""),
    "duplicate": lambda header, sequence: (">r0", sequence),
    "three sequence lines": lambda header, sequence: (header, sequence[:2], sequence[2:4], sequence[4:]),
}


def records_or_error(path):
    try:
        return list(read_fasta(path, keep_case=True))
    except InputError as error:
        return str(error)


@pytest.mark.parametrize("change", sorted(TWO_LINE_CHANGES))
def test_two_line_blocks_read_as_record_by_record(tmp_path, change):
    """Whole blocks of two-line records are split and checked at once; whatever they hold, the records read
    and the first problem named are those of the record-by-record reading."""
    rng = random.Random(change)
    for count, block_bytes in itertools.product([1, 2, 40], [5, 64, 1 << 20]):
        for where in sorted({0, count // 2, count - 1}):
            lines = []
            for index in range(count):
                record = f">r{index}", "".join(rng.choice("ACGTacgtN") for _ in range(rng.randint(5, 90)))
                lines += TWO_LINE_CHANGES[change](*record) if index == where else record
            path = write(tmp_path, "\n".join(lines) + "\n")
            with mock.patch.object(vnp.fasta, "BLOCK_BYTES", block_bytes):
                whole_blocks = records_or_error(path)
                with mock.patch.object(vnp.fasta, "_two_line_records", lambda run, keep_case: None):
                    assert whole_blocks == records_or_error(path), (count, where, block_bytes)


def test_two_line_records_are_read_by_whole_blocks(tmp_path):
    ids = [f"r{i}" for i in range(3000)]
    path = write(tmp_path, "".join(f">{record_id}\nACGTN{i % 7 * 'a'}\n" for i, record_id in enumerate(ids)))
    results, two_line_records = [], vnp.fasta._two_line_records

    def recorded(run, keep_case):
        results.append(two_line_records(run, keep_case))
        return results[-1]

    with mock.patch.multiple(vnp.fasta, BLOCK_BYTES=8192, _two_line_records=recorded):
        batches = list(vnp.fasta.read_fasta_batches(path))
    assert [record_id for batch_ids, _ in batches for record_id in batch_ids] == ids
    sequences = [sequence for _, batch_sequences in batches for sequence in batch_sequences]
    assert sequences[:8] == ["ACGTN" + i * "A" for i in range(7)] + ["ACGTN"]
    assert len(results) > 2 and None not in results
