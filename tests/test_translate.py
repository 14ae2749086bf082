"""Six-frame translation: the vectorised path against the plain original, and the rules one by one."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.harness import original
from vnp.translate import kept_frames, kept_frames_joined, six_frames, six_frames_batch

IUPAC = "ACGTURYSWKMBDHVN"
# Mostly ACGT so that frames stay open often enough, with IUPAC codes and lowercase mixed in.
BASE = st.sampled_from("ACGT") | st.sampled_from(IUPAC + IUPAC.lower())
SEQUENCE = st.lists(BASE, max_size=40).map("".join) | st.integers(0, 4).flatmap(
    lambda k: st.lists(st.sampled_from("ACGTacgtN"), min_size=max(0, 100 * k - 2), max_size=100 * k + 2).map("".join))


def expected(seq):
    return [(frame_id[-2:], nucleotide, protein)
            for frame_id, nucleotide, protein in original.identify_frames("x", seq)]


@settings(max_examples=300)
@given(seq=SEQUENCE)
def test_one_sequence_agrees_with_the_original(seq):
    assert six_frames(seq) == expected(seq)


@given(seqs=st.lists(SEQUENCE, max_size=12))
def test_a_batch_agrees_with_the_original(seqs):
    assert six_frames_batch(seqs) == [expected(seq) for seq in seqs]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunk_size=st.sampled_from([300, 500]))
def test_chunks_around_the_chunk_size_agree_with_the_original(seed, chunk_size):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(chunk_size - 2, chunk_size + 3, size=64)
    # Short open frames are rare in random chunks of 300-500, so plant stop-free stretches: repeats of "AAC".
    seqs = ["".join(rng.choice(list("ACGTN"), p=[0.2475, 0.2475, 0.2475, 0.2475, 0.01], size=n)) for n in lengths]
    seqs = [s if i % 2 else ("AAC" * chunk_size)[: len(s)] for i, s in enumerate(seqs)]
    assert six_frames_batch(seqs) == [expected(seq) for seq in seqs]


def test_a_codon_with_an_ambiguous_base_is_skipped_not_x():
    # GCN is not translated: the protein loses a residue, and the nucleotide record shrinks with it.
    suffix, nucleotide, protein = six_frames("ATGGCNAAA")[0]
    assert (suffix, protein, nucleotide) == ("F1", "MK", "ATGGCNA")


def test_any_stop_rejects_the_frame_even_a_terminal_one():
    # F1 = ATG AAA TAA (M K *), F2 = TGA AAT (* N); F3 and the reverse complement TTATTTCAT are open.
    assert [s for s, _, _ in six_frames("ATGAAATAA")] == ["F3", "R1", "R2", "R3"]


def test_nucleotide_is_one_base_longer_than_the_codons_and_clipped_at_the_end():
    assert six_frames("ATGAAACCCG")[0] == ("F1", "ATGAAACCCG", "MKP")  # 9 coding bases + 1
    assert six_frames("ATGAAACCC")[0] == ("F1", "ATGAAACCC", "MKP")  # no base left for the +1


def test_reverse_strand_complements_acgt_only_and_keeps_iupac_codes():
    # TTRCAT -> complement AARGTA (R stays R, not Y) -> reversed ATGRAA: ATG -> M, RAA skipped.
    frames = {s: (n, p) for s, n, p in six_frames("ttrCAT")}
    assert frames["R1"] == ("ATGR", "M")


def test_lowercase_is_translated_as_uppercase_and_written_uppercase():
    assert six_frames("atgaaa") == six_frames("ATGAAA") != []


def test_too_short_or_empty_sequences_have_no_frames():
    assert six_frames_batch(["", "A", "AC", "NNNNNN"]) == [[], [], [], []]
    assert six_frames_batch([]) == []


def test_columnar_output_is_in_sequence_then_frame_order():
    frames = kept_frames(["CCC", "TAATAATAA", "AAA"])
    assert frames.source.tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2]
    assert frames.suffixes == ["F1", "R1", "F2", "F3", "R1", "R2", "R3", "F1", "R1"]
    assert frames.proteins == ["P", "G", "NN", "II", "LLL", "YY", "II", "K", "F"]


@settings(max_examples=200)
@given(seqs=st.lists(st.text("ACGTNacgt", max_size=8), max_size=30))
def test_many_short_neighbours_in_one_joined_string(seqs):
    # Runs of codon slots that are empty or end where the next strand begins: the stop search's edge cases.
    frames = kept_frames_joined("".join(seqs).encode(), np.array([len(s) for s in seqs], dtype=np.int64))
    got = [(seqs[source], suffix, nucleotide, protein)
           for source, suffix, nucleotide, protein in zip(frames.source.tolist(), *frames[1:], strict=True)]
    assert got == [(seq, *frame) for seq in seqs for frame in expected(seq)]
