"""Byte-exact agreement with the original tool's own outputs (tests/data/golden, see its README)."""

from pathlib import Path

import numpy as np
import pytest
from Bio import SeqIO

from benchmarks.harness import original
from vnp.consensus import consensus_file, read_prediction_results, write_prediction_results
from vnp.preprocess import output_names, preprocess_files

GOLDEN = Path(__file__).parent / "data" / "golden"

CASES = [  # (input, chunk size) as the golden README says
    ("public/test_fixed_500bp.fa", 500),
    ("public/test_sequences_small.fa", 500),
    ("public/test_with_orfs.fa", 500),
    ("generated/reads.fa", 300),
    ("generated/contigs.fa", 500),
    ("generated/contigs300.fa", 300),
]


def test_every_golden_input_is_covered():
    inputs = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.glob("*/*.fa") if "_chunked" not in p.name
              and "_identified" not in p.name}
    assert inputs == {name for name, _ in CASES}


@pytest.mark.parametrize("name, chunk_size", CASES)
def test_preprocess_matches_the_original_byte_for_byte(tmp_path, name, chunk_size):
    source = GOLDEN / name
    preprocess_files(source, tmp_path, chunk_size)
    for output in output_names(source, chunk_size):
        assert (tmp_path / output).read_bytes() == (source.parent / output).read_bytes(), output


@pytest.mark.parametrize("name, chunk_size", CASES)
def test_the_plain_original_matches_too(name, chunk_size):
    """The oracle of the property tests is itself checked against the real tool's outputs."""
    source = GOLDEN / name
    records = [(r.id, str(r.seq)) for r in SeqIO.parse(source, "fasta")]
    _, frames = original.chunk_and_translate(records, chunk_size)
    _, nucleotide_name, protein_name = output_names(source, chunk_size)
    assert "".join(f">{i}\n{n}\n" for i, n, _ in frames) == (source.parent / nucleotide_name).read_text()
    assert "".join(f">{i}\n{p}\n" for i, _, p in frames) == (source.parent / protein_name).read_text()


@pytest.mark.parametrize("results, highestscore", [
    ("generated/reads_prediction_results.txt", "generated/reads_prediction_results_highestscore.csv"),
    ("public/reference_prediction_results.txt", "public/reference_prediction_results_highestscore.csv"),
])
def test_consensus_matches_the_original_byte_for_byte(tmp_path, results, highestscore):
    consensus_file(GOLDEN / results, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == (GOLDEN / highestscore).read_bytes()


def test_prediction_results_are_written_as_the_original_writes_float32(tmp_path):
    reference = GOLDEN / "public/reference_prediction_results.txt"
    ids, score1, score2 = read_prediction_results(reference)
    write_prediction_results(tmp_path / "p.txt", ids, score1.astype(np.float32), score2.astype(np.float32))
    assert (tmp_path / "p.txt").read_bytes() == reference.read_bytes()


def test_two_line_records_read_by_whole_blocks_match_the_original(tmp_path):
    """The common layout (header line, one sequence line) is read a block at a time, not record by record:
    the golden reads rewritten that way give the original's three files, byte for byte."""
    from unittest import mock

    import vnp.fasta

    source = GOLDEN / "generated/reads.fa"
    two_line = tmp_path / "reads.fa"
    two_line.write_text("".join(f">{r.id}\n{r.seq}\n" for r in SeqIO.parse(source, "fasta")))
    results, two_line_records = [], vnp.fasta._two_line_records

    def recorded(run, keep_case):
        results.append(two_line_records(run, keep_case))
        return results[-1]

    with mock.patch.object(vnp.fasta, "_two_line_records", recorded):
        preprocess_files(two_line, tmp_path / "out", 300)
    assert results and None not in results
    for output in output_names(source, 300):
        assert (tmp_path / "out" / output).read_bytes() == (source.parent / output).read_bytes(), output
