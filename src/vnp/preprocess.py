"""The sequence stages as one stream: FASTA -> chunks -> six-frame translation -> kept frames.

`iter_frame_batches` feeds the pipeline batch by batch, so memory does not grow with the input;
`preprocess_files` is `vnp preprocess`: it writes the original tool's three intermediate files.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vnp.atomic import atomic_write, fsync_directory
from vnp.chunking import iter_chunks
from vnp.errors import OutputDirError
from vnp.fasta import Composition, read_fasta_batches
from vnp.translate import kept_frames

__all__ = ["Composition", "FrameBatch", "chunk_and_translate", "iter_frame_batches", "output_names", "preprocess_files"]

FASTA_LINE_WIDTH = 60  # Biopython's FASTA writer, which the original's chunk file comes from
BATCH_CHUNKS = 1024  # chunks translated at once by `vnp preprocess`: the arrays stay in the CPU caches


@dataclass
class FrameBatch:
    """Kept frames, columnar, in the original's output order (chunk order, then F1 F2 F3 R1 R2 R3)."""

    ids: list[str] = field(default_factory=list)  # "<chunkID><F|R><1..3>", e.g. "read7_chunk_1R2"
    nucleotides: list[str] = field(default_factory=list)  # strand[offset : offset + 3*len(protein) + 1]
    proteins: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def chunk_and_translate(
    records: Iterable[tuple[str, str]], chunk_size: int, composition: Composition | None = None,
    batch_reads: int = 4096,
) -> Iterator[tuple[list[tuple[str, str]], FrameBatch]]:
    """(chunks, their kept frames) per batch of batch_reads chunks, from (ID, sequence) records.

    The in-memory kernel under `iter_frame_batches` and `preprocess_files`; counts into `composition`.
    A batch may end inside a long record: translation memory stays bounded by the batch, not the record.
    """
    for ids, sequences, frames in _translated_batches(_columns(records), chunk_size, composition, batch_reads):
        yield list(zip(ids, sequences, strict=True)), frames


def _columns(records: Iterable[tuple[str, str]], size: int = 1024) -> Iterator[tuple[list[str], list[str]]]:
    """(IDs, sequences) of ``size`` records at a time, as `read_fasta_batches` gives them."""
    records = iter(records)
    while batch := list(itertools.islice(records, size)):
        yield [record_id for record_id, _ in batch], [sequence for _, sequence in batch]


def _translated_batches(
    record_batches: Iterable[tuple[list[str], list[str]]], chunk_size: int, composition: Composition | None,
    batch_reads: int,
) -> Iterator[tuple[list[str], list[str], FrameBatch]]:
    """(chunk IDs, chunk sequences, their kept frames) per batch of batch_reads chunks, from batches of records."""
    composition = composition if composition is not None else Composition()
    for ids, sequences in _chunk_batches(record_batches, chunk_size, composition, batch_reads):
        yield ids, sequences, _translate(ids, sequences, composition)


def _chunk_batches(record_batches: Iterable[tuple[list[str], list[str]]], chunk_size: int, composition: Composition,
                   batch_reads: int) -> Iterator[tuple[list[str], list[str]]]:
    """(chunk IDs, chunk sequences), batch_reads chunks at a time (the last batch fewer)."""
    ids: list[str] = []
    sequences: list[str] = []
    for record_ids, record_sequences in record_batches:
        lengths = list(map(len, record_sequences))
        composition.reads += len(lengths)
        composition.bases += sum(lengths)
        if lengths and min(lengths) > 0 and max(lengths) <= chunk_size:  # short reads (the common case): one chunk
            ids += [f"{record_id}_chunk_1" for record_id in record_ids]
            sequences += record_sequences
        else:
            for record_id, sequence in zip(record_ids, record_sequences, strict=True):
                for chunk_id, chunk in iter_chunks(record_id, sequence, chunk_size):
                    ids.append(chunk_id)
                    sequences.append(chunk)
                    if len(ids) == batch_reads:  # a long record's chunks are never all held at once
                        yield ids, sequences
                        ids, sequences = [], []
        while len(ids) >= batch_reads:
            yield ids[:batch_reads], sequences[:batch_reads]
            del ids[:batch_reads], sequences[:batch_reads]
    if ids:
        yield ids, sequences


def iter_frame_batches(
    path, chunk_size: int, composition: Composition | None = None, batch_reads: int = 4096
) -> Iterator[FrameBatch]:
    """Stream the kept frames of a FASTA file, a batch per ~batch_reads reads (or chunks of long records).

    Updates `composition` in place if given. Raises `InputError` on bad input (see `vnp.fasta.read_fasta`).
    """
    batches = read_fasta_batches(path, keep_case=True)
    for _, _, frames in _translated_batches(batches, chunk_size, composition, batch_reads):
        yield frames


def output_names(path, chunk_size: int) -> tuple[str, str, str]:
    """The original's file names: chunked, nucleotide, protein; <base> = input name cut at its first '.fa'."""
    base = Path(path).name.split(".fa")[0]
    return f"{base}_chunked{chunk_size}.fa", f"{base}_identified_nucleotide.fa", f"{base}_identified_protein.faa"


def preprocess_files(path, outdir, chunk_size: int) -> Composition:
    """`vnp preprocess`: write the chunked, nucleotide and protein files into `outdir`, all or nothing.

    The three are written and synced in a staging folder inside `outdir` and renamed into place only when
    all three are whole: a failure (a full disk, bad input) leaves earlier files as they were, never a mix.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputDirError(f"output path {outdir} exists and is not a directory")
    created = [d for d in (outdir, *outdir.parents) if not d.exists()]  # deepest first
    composition = Composition()
    names = output_names(path, chunk_size)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".vnp-preprocess.", dir=outdir))
        try:
            _write_outputs(path, chunk_size, [staging / name for name in names], composition)
            for name in names:
                os.replace(staging / name, outdir / name)
            fsync_directory(outdir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for directory in created:
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only succeeds if nothing else was put there meanwhile
        raise  # an OSError becomes one line naming the file and the system's reason (exit 5)
    return composition


def _write_outputs(path, chunk_size: int, targets: list[Path], composition: Composition) -> None:
    with contextlib.ExitStack() as files:
        chunked, nucleotide, protein = (files.enter_context(atomic_write(target, encoding="utf-8"))
                                        for target in targets)
        records = read_fasta_batches(path, keep_case=True)  # the chunk file keeps the letters as written
        for ids, sequences, frames in _translated_batches(records, chunk_size, composition, BATCH_CHUNKS):
            chunked.write(_wrapped_records(ids, sequences))
            nucleotide.write(_fasta_text(frames.ids, frames.nucleotides))
            protein.write(_fasta_text(frames.ids, frames.proteins))


def _translate(chunk_ids: list[str], sequences: list[str], composition: Composition) -> FrameBatch:
    frames = kept_frames(sequences)
    ids = list(map(operator.add, map(chunk_ids.__getitem__, frames.source.tolist()), frames.suffixes))
    composition.chunks += len(chunk_ids)
    composition.chunks_with_frame += len(set(frames.source.tolist()))
    composition.frames += len(ids)
    return FrameBatch(ids, frames.nucleotides, frames.proteins)


def _fasta_text(ids: list[str], sequences: list[str]) -> str:
    """">ID\nSEQUENCE\n" for every record, joined; the pieces are interleaved in C (zip, chain), not formatted
    one record at a time in Python."""
    lines = zip(itertools.repeat(">"), ids, itertools.repeat("\n"), sequences, itertools.repeat("\n"), strict=False)
    return "".join(itertools.chain.from_iterable(lines))


def _wrapped_records(ids: list[str], sequences: list[str]) -> str:
    """FASTA text of records, FASTA_LINE_WIDTH letters a line, as Biopython writes it."""
    width = FASTA_LINE_WIDTH
    return "".join([f">{record_id}\n{seq}\n" if len(seq) <= width else
                    f">{record_id}\n" + "\n".join(_line_cutter(-(-len(seq) // width))(seq)) + "\n"
                    for record_id, seq in zip(ids, sequences, strict=True)])


@functools.lru_cache(maxsize=None)
def _line_cutter(lines: int) -> operator.itemgetter:
    """Cuts a sequence of more than one line into its lines in one C call (2.5x faster than a loop)."""
    return operator.itemgetter(*(slice(k * FASTA_LINE_WIDTH, (k + 1) * FASTA_LINE_WIDTH) for k in range(lines)))
