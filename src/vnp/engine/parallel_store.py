"""Build the frame store with several processes: one serial pass costs ~10 s per million reads.

On a 4-GPU run of a whole sample (6 M reads) the serial pass was 58 s of 798 s, with every GPU idle.
A plain FASTA file is cut into byte spans at record starts (``fasta.record_spans``); spawned processes
parse, chunk and translate one span each into a store of their own, and the parent concatenates them
in file order, so the result is byte-identical to the serial store.

Only valid input takes this path. Any problem a span reports, or two records whose IDs share a
(deterministic, 64-bit) hash, sends the caller back to the serial pass, which names the exact problem
and record, as always.
"""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vnp.engine.lifetime import helper_pool
from vnp.engine.store import FIELDS, FrameStoreWriter
from vnp.errors import InputError
from vnp.fasta import Composition, read_fasta_span, record_spans
from vnp.preprocess import chunk_and_translate

# Spawning the processes costs ~0.35 s: a 16 MB file (~100k reads) breaks even on a 2-core VM (0.40-0.54 s
# serial, 0.49 s on 2 processes); a 33 MB one gains there (0.85-1.09 -> 0.79-0.81 s), and on the 64-core
# GPU host the whole 988 MB sample went from 57.5 s to 4.7 s (32 processes).
MIN_BYTES = 16 << 20
SPANS_PER_PROCESS = 2  # a little slack for spans that translate slower than others


class NeedsSerialPass(Exception):
    """The input has (or may have) a problem; the serial pass will say exactly which."""


def build(path: Path, chunk_size: int, directory: Path, processes: int) -> tuple[Composition, np.ndarray]:
    """Fill ``directory`` like ``FrameStoreWriter`` would; return the composition and each frame's
    protein length. Raises NeedsSerialPass (leaving ``directory`` to the caller) when it cannot vouch."""
    spans = record_spans(path, processes * SPANS_PER_PROCESS)
    if not spans:
        raise NeedsSerialPass("gzip input or a pipe" if spans is None else "empty file")
    pieces = [directory / f"span{index:04d}" for index in range(len(spans))]
    try:
        with helper_pool(processes) as pool:
            results = list(pool.map(_build_span, [str(path)] * len(spans), spans, [chunk_size] * len(spans),
                                    map(str, pieces)))
    except BrokenProcessPool as error:  # a process killed (out of memory?): one pass still works
        raise NeedsSerialPass(f"a preprocessing process died ({error})") from None
    if any(result is None for result in results):
        raise NeedsSerialPass("a span has a problem")
    hashes = np.concatenate([result["id_hashes"] for result in results])
    hashes.sort()
    if (hashes[1:] == hashes[:-1]).any():
        raise NeedsSerialPass("two records may share an ID")
    _concatenate(pieces, directory)
    composition = Composition()
    for result in results:
        for name, value in result["composition"].items():
            setattr(composition, name, getattr(composition, name) + value)
    return composition, np.concatenate([result["protein_lengths"] for result in results])


def _build_span(path: str, span: tuple[int, int], chunk_size: int, directory: str) -> dict | None:
    """One span into its own store; None if the span has a problem (the serial pass will name it)."""
    composition = Composition()
    writer = FrameStoreWriter(Path(directory))
    record_ids: list[str] = []
    lengths = []

    def records():
        for record_id, sequence in read_fasta_span(path, span):
            record_ids.append(record_id)
            yield record_id, sequence

    try:
        for _, batch in chunk_and_translate(records(), chunk_size, composition):
            writer.append(ids=batch.ids, nucleotides=batch.nucleotides, proteins=batch.proteins)
            lengths.append(np.fromiter(map(len, batch.proteins), np.int64, len(batch.proteins)))
    except InputError:
        return None
    finally:
        writer.close()
    digests = b"".join(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest() for i in record_ids)
    return {"composition": asdict(composition), "id_hashes": np.frombuffer(digests, dtype=np.int64),
            "protein_lengths": np.concatenate(lengths) if lengths else np.zeros(0, np.int64)}


def _concatenate(pieces: list[Path], directory: Path) -> None:
    """The spans' stores, in order, as one store (pools appended, offsets shifted); the pieces removed."""
    for field in FIELDS:
        ends, written = [], 0
        with open(directory / f"{field}.bin", "wb") as out:
            for piece in pieces:
                with open(piece / f"{field}.bin", "rb") as part:
                    shutil.copyfileobj(part, out, 16 << 20)
                piece_ends = np.load(piece / f"{field}.ends.npy")
                ends.append(piece_ends + written)
                written += int(piece_ends[-1]) if len(piece_ends) else 0
        np.save(directory / f"{field}.ends.npy", np.concatenate(ends))
    for piece in pieces:
        shutil.rmtree(piece)
