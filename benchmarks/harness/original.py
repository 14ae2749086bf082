"""The original VirNucPro sequence rules, written plainly: the oracle for tests and the slow side of benchmarks.

The rules are the original tool's own, quirks included: chunking with its shift list (`chunk_starts`),
six-frame translation that skips codons with a non-ACGT character and keeps only non-empty, stop-free
frames (`identify_frames`), and the per-chunk consensus (`consensus`); `preprocess_files` and
`consensus_file` apply them to whole files, as `vnp preprocess` and `vnp consensus` do. They are written with per-codon
dictionary lookups and string slicing, as the original does it: deliberately slow and obviously correct.
`counting.py` is their vectorised equal for counting whole files. It must not import `vnp` (the harness
never imports the package under test).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterator

from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord

BASES = "TCAG"
AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
# The standard genetic code (NCBI table 1); TAA, TAG and TGA are "*".
CODON_TABLE = {
    a + b + c: AMINO_ACIDS[16 * i + 4 * j + k]
    for i, a in enumerate(BASES)
    for j, b in enumerate(BASES)
    for k, c in enumerate(BASES)
}
COMPLEMENT = {"A": "T", "T": "A", "C": "G", "G": "C"}


def read_records(path) -> Iterator[tuple[str, str]]:
    """(ID, sequence) of every record, read as the original reads its input: Biopython's "fasta" parser.

    That parser drops spaces and tabs inside sequence lines (not other whitespace) and refuses a file with
    anything before its first '>' header (ValueError).
    """
    for record in SeqIO.parse(path, "fasta"):
        yield record.id, str(record.seq)


def chunk_starts(length: int, chunk_size: int) -> list[int]:
    """Start of every chunk: k*C minus the first k shifts, with the original's shift list (quirk included)."""
    num_chunks = math.ceil(length / chunk_size)
    redundant = num_chunks * chunk_size - length
    per_chunk = redundant // num_chunks
    bigger = redundant - per_chunk * (num_chunks - 1)
    shifts = [per_chunk + 1] * bigger + [per_chunk] * (num_chunks - 1 - bigger) + [0]
    return [k * chunk_size - sum(shifts[:k]) for k in range(num_chunks)]


def split_record(record_id: str, sequence: str, chunk_size: int) -> list[tuple[str, str]]:
    """One record's chunks as (ID, sequence); every chunk is C long, clipped at the sequence end."""
    return [
        (f"{record_id}_chunk_{k + 1}", sequence[start : start + chunk_size])
        for k, start in enumerate(chunk_starts(len(sequence), chunk_size))
    ]


def reverse_complement(sequence: str) -> str:
    """Swap A<->T and C<->G, keep every other character, then reverse."""
    return "".join(COMPLEMENT.get(base, base) for base in reversed(sequence))


def translate(sequence: str) -> str:
    """Translate complete codons; a codon with any non-ACGT character is silently skipped."""
    protein = ""
    for i in range(0, len(sequence) - 2, 3):
        codon = sequence[i : i + 3]
        if codon in CODON_TABLE:
            protein += CODON_TABLE[codon]
    return protein


def identify_frames(chunk_id: str, sequence: str) -> list[tuple[str, str, str]]:
    """Kept frames of one chunk as (ID, nucleotide, protein), in the order F1, F2, F3, R1, R2, R3.

    A frame is kept when its translation is non-empty and has no stop anywhere; its nucleotide record is
    the strand from the frame offset, one base longer than the translated codons, clipped at the end.
    """
    sequence = sequence.upper()
    kept = []
    for strand_name, strand in (("F", sequence), ("R", reverse_complement(sequence))):
        for offset in range(3):
            protein = translate(strand[offset:])
            if protein and "*" not in protein:
                nucleotide = strand[offset : offset + 3 * len(protein) + 1]
                kept.append((f"{chunk_id}{strand_name}{offset + 1}", nucleotide, protein))
    return kept


def chunk_and_translate(records, chunk_size: int) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """All chunks and all kept frames of (ID, sequence) records, in the original's output order."""
    chunks, frames = [], []
    for record_id, sequence in records:
        for chunk_id, chunk in split_record(record_id, sequence, chunk_size):
            chunks.append((chunk_id, chunk))
            frames.extend(identify_frames(chunk_id, chunk))
    return chunks, frames


def preprocess_files(input_path, outdir, chunk_size: int) -> None:
    """The original's preprocessing, as whole files: what `vnp preprocess INPUT -o OUTDIR -m C` writes.

    As the original does it: Biopython reads the input and writes the chunk file record by record, then
    reads the chunk file back to find the kept frames. Names: <base> = input name cut at its first '.fa'.
    """
    base = Path(input_path).name.split(".fa")[0]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    chunked = outdir / f"{base}_chunked{chunk_size}.fa"
    with open(chunked, "w") as out:
        for record_id, sequence in read_records(input_path):
            for chunk_id, chunk in split_record(record_id, sequence, chunk_size):
                SeqIO.write(SeqRecord(Seq(chunk), id=chunk_id, description=""), out, "fasta")
    with (open(outdir / f"{base}_identified_nucleotide.fa", "w") as nucleotides,
          open(outdir / f"{base}_identified_protein.faa", "w") as proteins):
        for record in SeqIO.parse(chunked, "fasta"):
            for frame_id, nucleotide, protein in identify_frames(record.id, str(record.seq)):
                nucleotides.write(f">{frame_id}\n{nucleotide}\n")
                proteins.write(f">{frame_id}\n{protein}\n")


def consensus_file(predictions_path, out_path) -> None:
    """The original's consensus as whole files: what `vnp consensus PREDICTIONS -o OUT` writes."""
    with open(predictions_path, newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows)  # Sequence_ID Prediction score1 score2
        calls = consensus((sequence_id, float(score1), float(score2)) for sequence_id, _, score1, score2 in rows)
    with open(out_path, "w", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(("Modified_ID", "Is_Virus"))
        writer.writerows(calls)


def consensus(rows) -> list[tuple[str, bool]]:
    """Per-chunk call from (Sequence_ID, score1, score2) rows: max(score2) >= max(score1), sorted by chunk.

    The maxima are pandas' (the original's groupby max): NaN is skipped, and a chunk with no other value has
    NaN, which compares False, so such a chunk is not virus.
    """
    best = {}
    for sequence_id, score1, score2 in rows:
        group = sequence_id[:-2]
        earlier1, earlier2 = best.get(group, (math.nan, math.nan))
        best[group] = (_pandas_max(earlier1, score1), _pandas_max(earlier2, score2))
    return [(group, best[group][1] >= best[group][0]) for group in sorted(best)]


def _pandas_max(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)
