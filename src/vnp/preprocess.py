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

import numpy as np

from vnp.atomic import atomic_write, fsync_directory
from vnp.chunking import iter_chunks
from vnp.errors import OutputDirError
from vnp.fasta import Composition, read_fasta
from vnp.translate import kept_frames

__all__ = ["Composition", "FrameBatch", "chunk_and_translate", "iter_frame_batches", "output_names", "preprocess_files"]

FASTA_LINE_WIDTH = 60  # Biopython's FASTA writer, which the original's chunk file comes from


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
    composition = composition if composition is not None else Composition()
    chunks = _chunks(records, chunk_size, composition)
    while batch := list(itertools.islice(chunks, batch_reads)):
        yield batch, _translate(batch, composition)


def _chunks(records: Iterable[tuple[str, str]], chunk_size: int, composition: Composition):
    for record_id, sequence in records:
        composition.reads += 1
        composition.bases += len(sequence)
        if 0 < len(sequence) <= chunk_size:  # short reads: the common case, without the general machinery
            yield f"{record_id}_chunk_1", sequence
        else:
            yield from iter_chunks(record_id, sequence, chunk_size)


def iter_frame_batches(
    path, chunk_size: int, composition: Composition | None = None, batch_reads: int = 4096
) -> Iterator[FrameBatch]:
    """Stream the kept frames of a FASTA file, a batch per ~batch_reads reads (or chunks of long records).

    Updates `composition` in place if given. Raises `InputError` on bad input (see `vnp.fasta.read_fasta`).
    """
    for _, frames in chunk_and_translate(read_fasta(path, keep_case=True), chunk_size, composition, batch_reads):
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
        records = read_fasta(path, keep_case=True)  # the chunk file keeps the letters as written
        for chunks, frames in chunk_and_translate(records, chunk_size, composition):
            chunked.write(_wrapped_records(chunks))
            nucleotide.write("".join(f">{i}\n{s}\n" for i, s in zip(frames.ids, frames.nucleotides)))
            protein.write("".join(f">{i}\n{s}\n" for i, s in zip(frames.ids, frames.proteins)))


def _translate(chunks: list[tuple[str, str]], composition: Composition) -> FrameBatch:
    frames = kept_frames([seq for _, seq in chunks])
    ids = [chunks[source][0] + suffix for source, suffix in zip(frames.source.tolist(), frames.suffixes)]
    composition.chunks += len(chunks)
    composition.chunks_with_frame += np.unique(frames.source).size
    composition.frames += len(ids)
    return FrameBatch(ids, frames.nucleotides, frames.proteins)


def _wrapped_records(records: list[tuple[str, str]]) -> str:
    """FASTA text of (ID, sequence) records, FASTA_LINE_WIDTH letters a line, as Biopython writes it."""
    width = FASTA_LINE_WIDTH
    return "".join([f">{record_id}\n{seq}\n" if len(seq) <= width else
                    f">{record_id}\n" + "\n".join(_line_cutter(-(-len(seq) // width))(seq)) + "\n"
                    for record_id, seq in records])


@functools.lru_cache(maxsize=None)
def _line_cutter(lines: int) -> operator.itemgetter:
    """Cuts a sequence of more than one line into its lines in one C call (2.5x faster than a loop)."""
    return operator.itemgetter(*(slice(k * FASTA_LINE_WIDTH, (k + 1) * FASTA_LINE_WIDTH) for k in range(lines)))
