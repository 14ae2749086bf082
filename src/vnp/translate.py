"""Six-frame translation with the original tool's rules, as array operations over many chunks at once.

Rules (spec section 2): standard code; a codon with any non-ACGT base is skipped (no X); only complete
codons count; the reverse strand complements A/T and C/G only, keeping other letters, then reverses; a
frame is kept iff its translation is non-empty and has no stop anywhere; its nucleotide record is the
strand from the frame offset, 3*len(protein)+1 bases long, clipped at the end. Order: F1 F2 F3 R1 R2 R3.

How: the chunks of a batch go into one byte buffer, upper-cased and complemented by 256-entry tables and
viewed as a padded [chunks, width] matrix per strand; each frame is a reshape to [chunks, codons, 3], and
one table lookup turns codon indices into amino-acid bytes (0 for a skipped codon). Python only runs per
kept frame, to cut the output strings.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SUFFIXES = ("F1", "F2", "F3", "R1", "R2", "R3")
_BASES = b"TCAG"
_AMINO_ACIDS = b"FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"  # NCBI table 1, TCAG order
_STOP = ord("*")
_SKIP = 64  # base code of anything but ACGT: pushes the codon index past the 64 real codons

_UPPER = np.arange(256, dtype=np.uint8)
_UPPER[ord("a") : ord("z") + 1] -= 32
_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in (b"AT", b"TA", b"CG", b"GC"):
    _COMPLEMENT[_a] = _b
_BASE_CODE = np.full(256, _SKIP, dtype=np.uint16)
_BASE_CODE[list(_BASES)] = np.arange(4)
# Amino-acid byte for every index 16a+4b+c that base codes can make; 0 marks a skipped codon.
_AMINO_ACID_OF = np.zeros(21 * _SKIP + 1, dtype=np.uint8)
_AMINO_ACID_OF[:64] = np.frombuffer(_AMINO_ACIDS, dtype=np.uint8)


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
    starts = np.cumsum(lengths) - lengths
    forward = _UPPER[np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)]
    reverse = _COMPLEMENT[forward][::-1]  # every sequence reverse-complemented, in reverse order
    reverse_starts = forward.size - starts - lengths
    width = max(int(lengths.max()), 3)

    amino_acids, keep = [], []
    for buffer, first in ((forward, starts), (reverse, reverse_starts)):
        strand = _rows(buffer, first, lengths, width)
        for offset in range(3):
            codons = (width - offset) // 3
            bases = _BASE_CODE[strand[:, offset : offset + 3 * codons]].reshape(len(seqs), codons, 3)
            frame = _AMINO_ACID_OF[bases[:, :, 0] * 16 + bases[:, :, 1] * 4 + bases[:, :, 2]]
            amino_acids.append(frame)
            keep.append((frame != 0).any(axis=1) & ~(frame == _STOP).any(axis=1))

    keep = np.stack(keep, axis=1)  # [sequences, 6]
    sources, frame_numbers = np.nonzero(keep)  # row-major: input order, then F1..R3
    proteins_by_frame = [_strip_skipped(amino_acids[f][keep[:, f]]) for f in range(6)]
    next_protein = [iter(proteins) for proteins in proteins_by_frame]
    strand_text = (forward.tobytes().decode("ascii"), reverse.tobytes().decode("ascii"))

    suffixes, nucleotides, proteins = [], [], []
    for source, f in zip(sources.tolist(), frame_numbers.tolist()):
        protein = next(next_protein[f])
        is_reverse, offset = divmod(f, 3)
        first = int(reverse_starts[source] if is_reverse else starts[source])
        end = first + min(offset + 3 * len(protein) + 1, int(lengths[source]))
        suffixes.append(SUFFIXES[f])
        nucleotides.append(strand_text[is_reverse][first + offset : end])
        proteins.append(protein)
    return KeptFrames(sources, suffixes, nucleotides, proteins)


def _rows(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """[len(starts), width] matrix of buffer[start : start+length], zero-padded (zero reads as a skip)."""
    padded = np.concatenate([buffer, np.zeros(width, dtype=np.uint8)])
    matrix = sliding_window_view(padded, width)[starts]
    matrix[np.arange(width) >= lengths[:, None]] = 0
    return matrix


def _strip_skipped(amino_acids: np.ndarray) -> list[str]:
    """Each row's amino acids with the skipped codons (zeros) removed, as strings."""
    present = amino_acids != 0
    text = amino_acids[present].tobytes().decode("ascii")
    ends = np.cumsum(present.sum(axis=1)).tolist()
    return [text[start:end] for start, end in zip([0, *ends[:-1]], ends)]
