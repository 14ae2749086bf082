"""What a FASTA file must produce, counted by the original rules: the reference every run is validated against.

`original.py` states the rules plainly (one chunk, one frame, one codon at a time); this module is its
vectorised equal (tests/test_datasets.py holds the two to the same counts), fast enough for a whole
6M-read sample: records are parsed in blocks, every chunk of a block becomes one row of a byte matrix and
each of the six frames is judged for all rows at once. A large file is split at record boundaries and
counted by several processes. It never imports `vnp`: what a run is checked against must not come from
the code under test.

DNABERT tokens need DNABERT-S's tokenizer, which is the pipeline's business: they are estimated from the
kept frames' bases and flagged `dnabert_tokens_estimated` (the projection prefers the run's own count from
run.json; validation never uses them).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from pathlib import Path

import numpy as np

ESM_MAX_TOKENS = 1024  # the ESM-2 cap: 1,022 residues + BOS + EOS
DNABERT_TOKENS_PER_BASE = 0.207  # an estimate: 300 bp -> ~64 tokens incl. [CLS]/[SEP]
BLOCK_BYTES = 16 << 20  # bytes of FASTA parsed at a time: the unit of memory
PARALLEL_BYTES = 64 << 20  # files above this are counted by several processes
COUNTS = ("reads", "bases", "chunks", "chunks_with_frame", "frames", "esm_tokens", "dnabert_tokens")
# What Biopython's "fasta" parser (SeqIO.parse, the original's reader) removes from sequence lines: other
# whitespace (\x0b, \x0c, ...) stays in the sequence, a base that is not ACGT. (SimpleFastaParser keeps a tab
# inside a line, strips any whitespace at a line's end, and skips text before the first header.)
_DROPPED = b" \t\r\n"

# Bases as codes A=0, C=1, G=2, T=3 (either case); anything else 4, and 5 pads a chunk to the matrix width.
# A codon holding a 4 or 5 is not translated, which is the original's "skip codons with non-ACGT" rule.
_CODE = np.full(256, 4, dtype=np.uint8)
for _code, _letters in enumerate(("Aa", "Cc", "Gg", "Tt")):
    _CODE[[ord(letter) for letter in _letters]] = _code
_PAD = 5
_COMPLEMENT = np.array([3, 2, 1, 0, 4, _PAD], dtype=np.uint8)
# Every triplet of codes (36*first + 6*second + third): skipped (holds a 4 or 5), a stop, or a residue.
_SKIPPED, _RESIDUE, _STOP = 0, 1, 2
_CODON_CLASS = np.full(216, _SKIPPED, dtype=np.uint8)
for _first in range(4):
    for _second in range(4):
        for _third in range(4):
            _CODON_CLASS[36 * _first + 6 * _second + _third] = _RESIDUE
for _stop in ((3, 0, 0), (3, 0, 2), (3, 2, 0)):  # TAA, TAG, TGA
    _CODON_CLASS[36 * _stop[0] + 6 * _stop[1] + _stop[2]] = _STOP


def chunk_starts(length: int, chunk_size: int) -> list[int]:
    """`original.chunk_starts`, with the common case (one chunk) short-cut."""
    if length <= chunk_size:
        return [0] if length else []
    num_chunks = math.ceil(length / chunk_size)
    redundant = num_chunks * chunk_size - length
    per_chunk = redundant // num_chunks
    bigger = redundant - per_chunk * (num_chunks - 1)
    shifts = [per_chunk + 1] * bigger + [per_chunk] * (num_chunks - 1 - bigger) + [0]
    starts, shifted = [], 0
    for k in range(num_chunks):
        starts.append(k * chunk_size - shifted)
        shifted += shifts[k]
    return starts


def count_file(path: Path, chunk_size: int, workers: int | None = None) -> dict:
    """Reads, bases, chunks, chunks with a kept frame, kept frames, ESM tokens (and estimated DNABERT tokens).

    `workers`: processes to use (default: one per core for files over PARALLEL_BYTES, else one). ValueError
    when the file has anything before its first header, which the original cannot read either.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if size and handle.read(1) != b">":
            # Biopython's "fasta" parser refuses any line before the first header, a blank one included
            raise ValueError(f"{path}: the first line is not a '>' header (the original's FASTA parser refuses it)")
    if workers is None:
        workers = min(_cores(), max(1, size // PARALLEL_BYTES)) if size > PARALLEL_BYTES else 1
    ranges = split_ranges(path, workers)
    if len(ranges) == 1:
        parts = [count_range(path, *ranges[0], chunk_size)]
    else:
        # fork: the workers need nothing but this module, and spawn would re-run a caller's unguarded main
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(len(ranges)) as pool:
            parts = pool.starmap(count_range, [(path, start, end, chunk_size) for start, end in ranges])
    total = {key: sum(part[key] for part in parts) for key in COUNTS}
    return {**total, "dnabert_tokens_estimated": True}


def split_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Up to `parts` byte ranges of about equal size, each starting at a record ('>' after a newline)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as handle:
        for k in range(1, parts):
            handle.seek(max(k * size // parts, cuts[-1]))
            handle.readline()  # to the end of the line we landed in
            while (line := handle.readline()) and not line.startswith(b">"):
                pass
            position = handle.tell() - len(line)
            if line and position > cuts[-1]:
                cuts.append(position)
    return list(zip(cuts, cuts[1:] + [size], strict=True))


def count_range(path: Path, start: int, end: int, chunk_size: int) -> dict:
    """The counts of the records between two byte offsets (both at record starts, or the file's ends)."""
    total = dict.fromkeys(COUNTS, 0)
    for sequences in _record_blocks(path, start, end):
        for key, value in count_sequences(sequences, chunk_size).items():
            total[key] += value
    return total


def _record_blocks(path: Path, start: int, end: int):
    """Lists of record sequences, BLOCK_BYTES of the file at a time, cut between records."""
    with open(path, "rb") as handle:
        handle.seek(start)
        carry = b""
        while handle.tell() < end or carry:
            block = carry + handle.read(max(0, min(BLOCK_BYTES, end - handle.tell())))
            # Line ends as the original reads them (Python's universal newlines): \r\n and a lone \r are \n. A \r\n
            # split between two blocks becomes an empty line, which adds nothing to a sequence.
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            cut = block.rfind(b"\n>") + 1 if handle.tell() < end else len(block)
            if cut <= 0:  # one record longer than a block: read on
                if handle.tell() >= end:
                    cut = len(block)
                else:
                    carry = block
                    continue
            text, carry = block[:cut], block[cut:]
            yield sequences_of(text)


def sequences_of(text: bytes) -> list[bytes]:
    """The sequences of whole records (text starting at a '>' header) as Biopython's "fasta" parser reads them.

    A record runs from a line starting with '>' to the next one; its sequence is the lines after the
    header, joined, with spaces, tabs and line ends removed.
    """
    if not text:
        return []
    return [record.partition(b"\n")[2].translate(None, _DROPPED) for record in text.split(b"\n>")]


def count_sequences(sequences: list[bytes], chunk_size: int) -> dict:
    """The counts of records' sequences, by the original's chunking and six-frame rules."""
    chunks = [sequence[s : s + chunk_size] for sequence in sequences for s in chunk_starts(len(sequence), chunk_size)]
    counts = dict.fromkeys(COUNTS, 0)
    counts["reads"] = len(sequences)
    counts["bases"] = sum(map(len, sequences))
    counts["chunks"] = len(chunks)
    if not chunks:
        return counts
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
    width = int(lengths.max())
    padded = b"".join(chunk.ljust(width, b"\0") for chunk in chunks)
    forward = _CODE[np.frombuffer(padded, dtype=np.uint8).reshape(len(chunks), width)]
    forward[np.arange(width)[None, :] >= lengths[:, None]] = _PAD
    # The reverse strand, read right to left: each chunk's reverse complement starts after (width - length)
    # pads, so its frame `offset` is this matrix's codon phase (width - length + offset) % 3.
    reverse = _COMPLEMENT[forward[:, ::-1]]
    shift = (width - lengths) % 3
    kept_any = np.zeros(len(chunks), dtype=bool)
    for strand, phase_of_frame in ((forward, np.zeros_like(shift)), (reverse, shift)):
        residues_by_phase, kept_by_phase = _phases(strand)
        for offset in range(3):
            phase = ((phase_of_frame + offset) % 3)[:, None]
            residues = np.take_along_axis(residues_by_phase, phase, axis=1)[:, 0]
            kept = np.take_along_axis(kept_by_phase, phase, axis=1)[:, 0]
            kept_any |= kept
            counts["frames"] += int(kept.sum())
            counts["esm_tokens"] += int(np.minimum(residues[kept] + 2, ESM_MAX_TOKENS).sum())
            bases = np.minimum(3 * residues[kept] + 1, lengths[kept] - offset)
            counts["dnabert_tokens"] += int((np.round(bases * DNABERT_TOKENS_PER_BASE) + 2).sum())
    counts["chunks_with_frame"] = int(kept_any.sum())
    return counts


def _phases(strand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk and codon phase 0..2: translated codons, and whether the frame is kept (some, none a stop)."""
    if strand.shape[1] < 3:
        return np.zeros((len(strand), 3), dtype=np.int64), np.zeros((len(strand), 3), dtype=bool)
    codon = _CODON_CLASS[36 * strand[:, :-2] + 6 * strand[:, 1:-1] + strand[:, 2:]]
    residues = np.stack([(codon[:, p::3] != _SKIPPED).sum(axis=1) for p in range(3)], axis=1)
    stops = np.stack([(codon[:, p::3] == _STOP).any(axis=1) for p in range(3)], axis=1)
    return residues, (residues > 0) & ~stops


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
