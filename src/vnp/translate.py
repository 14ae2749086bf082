"""Six-frame translation with the original tool's rules, as array operations over many chunks at once.

Rules (spec section 2): standard code; a codon with any non-ACGT base is skipped (no X); only complete
codons count; the reverse strand complements A/T and C/G only, keeping other letters, then reverses; a
frame is kept iff its translation is non-empty and has no stop anywhere; its nucleotide record is the
strand from the frame offset, 3*len(protein)+1 bases long, clipped at the end. Order: F1 F2 F3 R1 R2 R3.

How: a batch's sequences go into one byte buffer, forward strands then reverse complements (upper-cased
and complemented by 256-entry tables). One table lookup gives the amino acid of the codon starting at
every position (0 for a skipped or incomplete codon); a frame is every third position of its sequence,
so running sums per phase count its residues and stops in O(1) each. Only the kept frames' codons are
gathered into proteins; Python runs once per kept frame, to cut the output strings.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SUFFIXES = ("F1", "F2", "F3", "R1", "R2", "R3")
_BASES = b"TCAG"
_AMINO_ACIDS = b"FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"  # NCBI table 1, TCAG order
_STOP = ord("*")
_SKIP = 4  # base code of anything but ACGT

_UPPER = np.arange(256, dtype=np.uint8)
_UPPER[ord("a") : ord("z") + 1] -= 32
_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in (b"AT", b"TA", b"CG", b"GC"):
    _COMPLEMENT[_a] = _b
_BASE_CODE = np.full(256, _SKIP, dtype=np.uint8)
_BASE_CODE[list(_BASES)] = np.arange(4)
# Codons are numbered 25a + 5b + c in base 5 (fits a byte); the amino-acid byte of each, 0 = skipped codon.
_AMINO_ACID_OF = np.zeros(125, dtype=np.uint8)
_ACGT_CODONS = (25 * np.arange(4)[:, None, None] + 5 * np.arange(4)[None, :, None] + np.arange(4)).ravel()
_AMINO_ACID_OF[_ACGT_CODONS] = np.frombuffer(_AMINO_ACIDS, dtype=np.uint8)

class KeptFrames(NamedTuple):
    """Kept frames of a batch, columnar, in output order (input order, then F1..R3)."""

    source: np.ndarray  # index into the input list of the sequence each frame comes from
    suffixes: list[str]  # "F1" .. "R3"
    nucleotides: list[str]
    proteins: list[str]


def six_frames(seq: str) -> list[tuple[str, str, str]]:
    """Kept frames of one sequence as (suffix, nucleotide, protein)."""
    return six_frames_batch([seq])[0]


def six_frames_batch(seqs: list[str]) -> list[list[tuple[str, str, str]]]:
    """Kept frames of many sequences at once: one list of (suffix, nucleotide, protein) per sequence."""
    frames = kept_frames(seqs)
    per_sequence: list[list[tuple[str, str, str]]] = [[] for _ in seqs]
    for source, *frame in zip(frames.source.tolist(), frames.suffixes, frames.nucleotides, frames.proteins):
        per_sequence[source].append(tuple(frame))
    return per_sequence


def kept_frames(seqs: list[str]) -> KeptFrames:
    """The fast path: translate all six frames of every sequence (ASCII, any case) and keep the open ones."""
    if not seqs:
        return KeptFrames(np.zeros(0, dtype=np.int64), [], [], [])
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    forward = _UPPER[np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)]
    # Both strands in one buffer: the sequences as given, then their reverse complements in reverse order.
    strands = np.concatenate([forward, _COMPLEMENT[forward][::-1]])
    forward_starts = np.cumsum(lengths) - lengths
    reverse_starts = strands.size - forward_starts - lengths
    amino_acid_at = _amino_acid_at(strands, np.concatenate([forward_starts, reverse_starts]) + np.tile(lengths, 2))

    # Every (sequence, frame) as a run of codon slots in `strands`: first position and number of slots.
    offsets = np.array([0, 1, 2, 0, 1, 2])
    firsts = np.repeat(np.stack([forward_starts, reverse_starts], axis=1), 3, axis=1) + offsets
    slots = np.maximum(lengths[:, None] - offsets, 0) // 3
    residues = _count_every_third(amino_acid_at != 0, firsts, slots)
    stops = _count_every_third(amino_acid_at == _STOP, firsts, slots)
    sources, frame_numbers = np.nonzero((residues > 0) & (stops == 0))  # input order, then F1..R3
    firsts, slots, residues = (a[sources, frame_numbers] for a in (firsts, slots, residues))

    # Proteins: the kept frames' codon slots gathered in one go; skipped codons (zeros) dropped.
    slot_starts = np.cumsum(slots) - slots
    positions = np.repeat(firsts - 3 * slot_starts, slots) + 3 * np.arange(slots.sum())
    amino_acids = amino_acid_at[positions]
    protein_text = amino_acids[amino_acids != 0].tobytes().decode("ascii")
    protein_ends = np.cumsum(residues)
    proteins = [protein_text[b:e] for b, e in zip((protein_ends - residues).tolist(), protein_ends.tolist())]

    # Nucleotide records: strand[offset : offset + 3*len(protein) + 1], clipped at the sequence end.
    strand_text = strands.tobytes().decode("ascii")
    ends = firsts + np.minimum(3 * residues + 1, lengths[sources] - offsets[frame_numbers])
    nucleotides = [strand_text[b:e] for b, e in zip(firsts.tolist(), ends.tolist())]
    return KeptFrames(sources, [SUFFIXES[f] for f in frame_numbers.tolist()], nucleotides, proteins)


def _amino_acid_at(strands: np.ndarray, sequence_ends: np.ndarray) -> np.ndarray:
    """Amino-acid byte of the codon starting at each position; 0 if skipped or not complete in its sequence."""
    base = _BASE_CODE[strands]
    amino_acid_at = np.zeros(strands.size, dtype=np.uint8)
    amino_acid_at[:-2] = _AMINO_ACID_OF[base[:-2] * 25 + base[1:-1] * 5 + base[2:]]
    for short_by in (1, 2):  # the last two positions of a sequence start codons that run past its end
        amino_acid_at[sequence_ends[sequence_ends >= short_by] - short_by] = 0
    return amino_acid_at


def _count_every_third(flags: np.ndarray, firsts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sum(flags[first + 3*k] for k in range(count)) for every (first, count), from running sums per phase."""
    rows = -(-flags.size // 3)
    running = np.zeros((3, rows + 1), dtype=np.int32)  # running[p, r] = flags[p] + flags[p + 3] + ... (r terms)
    for phase in range(3):  # one contiguous running sum per phase: ~2.5x faster than a strided one over all
        column = flags[phase::3]
        np.cumsum(column, dtype=np.int32, out=running[phase, 1 : 1 + column.size])
    rows_of_firsts, phases = np.divmod(firsts, 3)
    return running[phases, rows_of_firsts + counts] - running[phases, rows_of_firsts]
