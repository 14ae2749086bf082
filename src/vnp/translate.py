"""Six-frame translation with the original tool's rules, as array operations over many chunks at once.

Rules (spec section 2): standard code; a codon with any non-ACGT base is skipped (no X); only complete
codons count; the reverse strand complements A/T and C/G only, keeping other letters, then reverses; a
frame is kept iff its translation is non-empty and has no stop anywhere; its nucleotide record is the
strand from the frame offset, 3*len(protein)+1 bases long, clipped at the end. Order: F1 F2 F3 R1 R2 R3.

How: a batch's sequences are joined into one byte string; `bytes.translate` (one C pass each) upper-cases
it, complements it, and codes its bases, and the reverse strands are the complemented string reversed
(so they come in reverse order). Each position gets the number of the codon starting there. A strand's
frame of phase p is every third position from p, so one logical-or reduction per phase over the stop flags
(`np.logical_or.reduceat`) says which of all 6n frames hold a stop. Only the stop-free frames' codons are
gathered and looked up into proteins (skipped codons dropped); Python runs once per kept frame, to cut
the output strings.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SUFFIXES = ("F1", "F2", "F3", "R1", "R2", "R3")
_BASES = b"TCAG"  # base codes 0-3 in this order; 4 = anything else (the codon is skipped)
_AMINO_ACIDS = b"FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"  # NCBI table 1, TCAG order
_SKIP = 4
_LOWER, _UPPER_CASE = bytes(range(ord("a"), ord("z") + 1)), bytes(range(ord("A"), ord("Z") + 1))


def _complemented(table: bytes) -> bytes:
    """``table`` with A<->T and C<->G swapped in its output (the other letters kept)."""
    return table.translate(bytes.maketrans(b"ATCG", b"TAGC"))


_UPPER = bytes.maketrans(_LOWER, _UPPER_CASE)  # bytes.translate tables, 256 entries each
_UPPER_COMPLEMENT = _complemented(_UPPER)
_BASE_CODE = bytes(_BASES.find(byte) if byte in _BASES else _SKIP for byte in range(256))
# Codons are numbered 25a + 5b + c in base 5 (fits a byte); the amino-acid byte of each, 0 = skipped codon.
_AMINO_ACID_OF = np.zeros(125, dtype=np.uint8)
_ACGT_CODONS = (25 * np.arange(4)[:, None, None] + 5 * np.arange(4)[None, :, None] + np.arange(4)).ravel()
_AMINO_ACID_OF[_ACGT_CODONS] = np.frombuffer(_AMINO_ACIDS, dtype=np.uint8)
_STOP_CODONS = np.flatnonzero(_AMINO_ACID_OF == ord("*")).tolist()  # TAA, TAG, TGA: 12, 13, 17 (Python ints:
# an int64 scalar would make numpy compare the uint8 codons as int64, 7x slower)
_OFFSETS = np.array([0, 1, 2, 0, 1, 2])


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
    for source, *frame in zip(frames.source.tolist(), frames.suffixes, frames.nucleotides, frames.proteins,
                              strict=True):
        per_sequence[source].append(tuple(frame))
    return per_sequence


def kept_frames(seqs: list[str]) -> KeptFrames:
    """The fast path: translate all six frames of every sequence (ASCII, any case) and keep the open ones."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    return kept_frames_joined("".join(seqs).encode("ascii"), lengths)


def kept_frames_joined(joined: bytes, lengths: np.ndarray) -> KeptFrames:
    """`kept_frames` of the sequences joined into one ASCII byte string, given their lengths."""
    if not lengths.size:
        return KeptFrames(np.zeros(0, dtype=np.int64), [], [], [])
    # Both strands in one string: the sequences as given, then their reverse complements in reverse order.
    strands = joined.translate(_UPPER) + joined.translate(_UPPER_COMPLEMENT)[::-1]
    codons = _codon_numbers(strands)
    forward_starts = np.cumsum(lengths) - lengths
    reverse_starts = len(strands) - forward_starts - lengths
    # Every (sequence, frame) as a run of codon slots: first position and number of slots.
    firsts = np.repeat(np.stack([forward_starts, reverse_starts], axis=1), 3, axis=1) + _OFFSETS
    slots = np.maximum(lengths[:, None] - _OFFSETS, 0) // 3
    # The strands in position order: forward strands, then reverse strands backwards.
    in_order = _has_stop(codons, np.concatenate([forward_starts, reverse_starts[::-1]]),
                         np.concatenate([lengths, lengths[::-1]]))
    has_stop = np.concatenate([in_order[: lengths.size], in_order[lengths.size :][::-1]], axis=1)
    sources, frame_numbers = np.nonzero((slots > 0) & ~has_stop)  # open frames: input order, then F1..R3
    if not sources.size:
        return KeptFrames(sources, [], [], [])
    firsts, slots = firsts[sources, frame_numbers], slots[sources, frame_numbers]

    # Proteins: the open frames' codon slots gathered in one go; skipped codons (zeros) dropped.
    slot_starts = np.cumsum(slots) - slots
    positions = np.repeat(firsts - 3 * slot_starts, slots) + 3 * np.arange(slots.sum())
    amino_acids = _AMINO_ACID_OF[codons[positions]]
    translated = amino_acids != 0
    residues = np.add.reduceat(translated, slot_starts, dtype=np.int64)
    kept = residues > 0  # a frame of skipped codons only has an empty protein: not kept
    if not kept.all():
        sources, frame_numbers, firsts, residues = sources[kept], frame_numbers[kept], firsts[kept], residues[kept]
    protein_text = amino_acids[translated].tobytes().decode("ascii")
    protein_ends = np.cumsum(residues)
    proteins = _cut(protein_text, protein_ends - residues, protein_ends)

    # Nucleotide records: strand[offset : offset + 3*len(protein) + 1], clipped at the sequence end.
    strand_text = strands.decode("ascii")
    ends = firsts + np.minimum(3 * residues + 1, lengths[sources] - _OFFSETS[frame_numbers])
    nucleotides = _cut(strand_text, firsts, ends)
    return KeptFrames(sources, list(map(SUFFIXES.__getitem__, frame_numbers.tolist())), nucleotides, proteins)


def _cut(text: str, begins: np.ndarray, ends: np.ndarray) -> list[str]:
    """[text[b:e] for b, e in zip(begins, ends)], looped in C (map) rather than in Python: 2x faster."""
    return list(map(text.__getitem__, map(slice, begins.tolist(), ends.tolist())))


def _codon_numbers(strands: bytes) -> np.ndarray:
    """Number (25a + 5b + c) of the codon starting at every position but the last two; 5 padding zeros."""
    bases = np.frombuffer(strands.translate(_BASE_CODE), dtype=np.uint8)
    codons = np.zeros(bases.size + 3, dtype=np.uint8)  # padding: every reduceat index below stays in range
    numbered = codons[: max(bases.size - 2, 0)]
    np.add(bases[:-2] * 5, bases[1:-1], out=numbered)
    numbered *= 5
    numbered += bases[2:]
    return codons


def _has_stop(codons: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whether frame F1..F3 (columns) of each strand (rows: ``starts``, ``lengths``) has a stop codon.

    A strand has one frame of each phase (first codon's position mod 3), and the frames of one phase,
    taken in position order, are runs of every third codon that do not overlap: one logical-or reduction
    from each run's start to its end finds them all.
    """
    stops = (codons == _STOP_CODONS[0]) | (codons == _STOP_CODONS[1]) | (codons == _STOP_CODONS[2])
    has_stop = np.zeros((starts.size, 3), dtype=bool)
    flat_rows = 3 * np.arange(starts.size)
    for phase in range(3):
        offsets = (phase - starts) % 3
        first_rows = (starts + offsets) // 3  # the run's first row in stops[phase::3]
        slots = np.maximum(lengths - offsets, 0) // 3
        bounds = np.stack([first_rows, first_rows + slots], axis=1).ravel()
        has_stop.ravel()[flat_rows + offsets] = np.logical_or.reduceat(stops[phase::3], bounds)[::2]
    return has_stop
