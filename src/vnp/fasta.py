"""Stream and validate FASTA input: plain or gzip, multi-line records, LF/CRLF/CR line ends, lowercase,
descriptions; a file, or a pipe or FIFO read once.

The file is read in large blocks and split at line-initial '>' with bytes operations. A block's records
in the common layout (a header line, then one sequence line) are split, checked and decoded together by a
few C-level calls over the whole block; any other layout, or a problem, is read record by record, which
also names the problem. Time is linear in the input, and memory is a few blocks plus about twice the
largest record. Every problem the original tool would have passed on silently (or crashed on) becomes an
`InputError` naming the file, the record and the reason.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vnp.chunking import chunk_count
from vnp.errors import InputError

BLOCK_BYTES = 1 << 20
CHECK_EVERY = 1024  # records per duplicate-ID check: amortises the numpy calls
# Formats told by their first bytes; only gzip is read, the others are named in the refusal.
COMPRESSION_MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd",
                     "zip": b"PK\x03\x04"}
IUPAC_NUCLEOTIDES = b"ACGTURYSWKMBDHVNacgturyswkmbdhvn"
IUPAC_LINES = IUPAC_NUCLEOTIDES + b"\n"
BLANK = b" \t\n\r\x0b\x0c"  # what bytes.split() cuts at: dropped from sequence lines
ID_CUTS = b" \t\r\x0b\x0c\x1c\x1d\x1e\x1f"  # the ASCII characters but LF that str.split() cuts IDs at


@dataclass
class Composition:
    """What the input is made of, counted during the streaming pass (the run record's `input`)."""

    reads: int = 0
    bases: int = 0
    chunks: int = 0
    chunks_with_frame: int = 0
    frames: int = 0


def read_fasta(path, keep_case: bool = False) -> Iterator[tuple[str, str]]:
    """Stream (record_id, sequence): ID = first word of the header, sequence joined and upper-cased.

    `keep_case=True` keeps the letters as written (the original's chunk file does). Raises `InputError` on
    a missing, empty or non-FASTA file, a record without ID or sequence, a character that is not an IUPAC
    nucleotide code, or a duplicate ID. Records before a malformed one have already been yielded; IDs are
    checked CHECK_EVERY records at a time, so a duplicate is reported a little after its second copy is
    read (always before the iteration ends). `validate_fasta` checks a whole file before anything is written.
    """
    for ids, sequences in read_fasta_batches(path, keep_case):
        yield from zip(ids, sequences, strict=True)


def read_fasta_batches(path, keep_case: bool = False) -> Iterator[tuple[list[str], list[str]]]:
    """`read_fasta` a block at a time: (IDs, sequences) of the records each block of the file completes."""
    seen = _SeenIds(path)
    pending: list[str] = []
    try:
        for ids, sequences in _parse_batches(path, keep_case=keep_case):
            pending += ids
            while len(pending) >= CHECK_EVERY:
                checked, pending = pending[:CHECK_EVERY], pending[CHECK_EVERY:]
                seen.add(checked)
            yield ids, sequences
    except InputError:
        seen.add(pending)  # a duplicate earlier in the file is the first problem, so it wins
        raise
    seen.add(pending)


def read_fasta_span(path, span: tuple[int, int]) -> Iterator[tuple[str, str]]:
    """(record_id, sequence as written) of the records in one ``record_spans`` span of a plain file.

    Checked like ``read_fasta`` except for duplicate IDs, which need the whole file (the caller's job);
    record numbers in its errors count from the span's first record.
    """
    return _parse(path, span)


def validate_fasta(path, chunk_size: int | None = None) -> Composition:
    """One full streaming pass that raises on the first problem; counts reads, bases (and chunks if C given)."""
    composition = Composition()
    for _, sequence in read_fasta(path, keep_case=True):
        composition.reads += 1
        composition.bases += len(sequence)
        if chunk_size:
            composition.chunks += chunk_count(len(sequence), chunk_size)
    return composition


def check_input(path, regular_file: bool = False) -> Path:
    """``path`` if it can be read as FASTA, else an InputError saying what it is.

    ``regular_file=True`` (``vnp predict``) also refuses pipes, FIFOs, devices and standard input: a run
    reads its input more than once (parallel preprocessing, the resume check). ``vnp preprocess`` streams.
    """
    path = Path(path)
    if str(path) == "-" and not path.exists():
        where = "give a FASTA file" if regular_file else "give a FASTA file, or /dev/stdin"
        raise InputError(f"-: reading standard input as '-' is not supported: {where}")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory, not a FASTA file")
    if regular_file and not stat.S_ISREG(mode):
        kind = ("a pipe or FIFO (standard input?)" if stat.S_ISFIFO(mode) else
                "a character device (a terminal?)" if stat.S_ISCHR(mode) else "not a regular file")
        raise InputError(f"{path}: is {kind}: predict reads its input more than once, give a FASTA file")
    return path


@contextlib.contextmanager
def _open_bytes(path) -> Iterator[io.BufferedIOBase]:
    """Open plain or gzip input (told apart by magic bytes, not by name) as a binary stream.

    The magic bytes are read once and replayed, never by reopening: a pipe or FIFO can be read only once.
    """
    path = check_input(path)
    try:
        stream = path.open("rb")
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from None
    with stream:
        try:
            magic = stream.read(max(map(len, COMPRESSION_MAGIC.values())))
            if stream.seekable():
                stream.seek(0)
            else:
                stream = io.BufferedReader(_Replayed(magic, stream), BLOCK_BYTES)
        except OSError as err:
            raise InputError(f"{path}: cannot be read ({err.strerror or err})") from None
        compression = next((name for name, prefix in COMPRESSION_MAGIC.items() if magic.startswith(prefix)), None)
        if compression not in (None, "gzip"):
            raise InputError(f"{path}: is {compression}-compressed; vnp reads plain or gzip FASTA "
                             "(decompress it first)")
        yield gzip.GzipFile(fileobj=stream, mode="rb") if compression else stream


class _Replayed(io.RawIOBase):
    """A stream whose first bytes were already read (to tell its format), served again before the rest."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.head:
            return self.rest.readinto(buffer)
        count = min(len(buffer), len(self.head))
        buffer[:count], self.head = self.head[:count], self.head[count:]
        return count


def _rereadable(path) -> bool:
    """Whether the input can be read a second time (a regular file, not a pipe or FIFO)."""
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False


def _blocks(path, span: tuple[int, int] | None = None) -> Iterator[bytes]:
    """The file's bytes in blocks; with ``span`` only bytes [start, end) of a plain (not gzip) file."""
    with _open_bytes(path) as stream:
        if span is not None:
            start, end = span
            stream.seek(start)
            while start < end:
                block = stream.read(min(BLOCK_BYTES, end - start))
                if not block:
                    return
                start += len(block)
                yield block
            return
        try:
            yield from iter(lambda: stream.read(BLOCK_BYTES), b"")
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise InputError(f"{path}: not a valid gzip file ({err})") from None


def record_spans(path, pieces: int) -> list[tuple[int, int]] | None:
    """Split a plain FASTA file into about ``pieces`` byte spans that each begin with a record's '>'.

    Spans start right after a newline followed by '>', exactly where ``_record_runs`` splits records,
    so parsing the spans one after the other sees the same records as parsing the file. The first span
    starts at 0 (and keeps the check for a leading '>'). None for gzip input or a pipe, which cannot be split.
    """
    with _open_bytes(path) as stream:
        if isinstance(stream, gzip.GzipFile) or not stream.seekable():
            return None
        size = stream.seek(0, 2)
        starts = [0]
        for cut in range(1, pieces):
            stream.seek(max(size * cut // pieces, starts[-1] + 1))
            found, scanned = -1, b""
            while found < 0:
                block = stream.read(BLOCK_BYTES)
                if not block:
                    break
                scanned = scanned[-1:] + block
                found = scanned.find(b"\n>")
                offset = stream.tell() - len(scanned)
            if found < 0:
                break
            starts.append(offset + found + 1)
        return [(a, b) for a, b in zip(starts, starts[1:] + [size], strict=True) if b > a]


def _record_runs(path, span: tuple[int, int] | None = None) -> Iterator[bytes | list[bytes]]:
    """The records' text after their '>' (header line, line end, sequence lines), in file order: bytes
    holding one or more whole records (cut them at line-initial '>'), or the list of pieces of one record
    that was read in several blocks.

    A record starts at a '>' opening a line; a line ends at LF, CRLF or a lone CR (old Mac files), as in
    the original's text-mode reading. Every byte is looked at a bounded number of times, whatever the
    record sizes: a block without a record start is only appended (never re-joined), so a long record or a
    stray '>' inside a line costs linear time, and a record is held once, in its pieces.
    """
    blocks = _blocks(path, span)
    head = b""
    for block in blocks:  # skip leading blank space, then insist on '>'
        head = (head + block).lstrip()
        if head:
            break
    if not head:
        raise InputError(f"{path}: empty file, no FASTA records")
    if not head.startswith(b">"):
        raise InputError(f"{path}: not FASTA (the first non-blank line does not start with '>')")
    pieces: list[bytes] = []  # the record being read, possibly spread over several blocks
    line_ended = False  # the text so far ends with a line end: a '>' opening the next block starts a record
    for block in itertools.chain([head[1:]], blocks):
        first = 0 if line_ended and block.startswith(b">") else _first_record_start(block)
        line_ended = block.endswith((b"\n", b"\r"))
        if first < 0:
            pieces.append(block)
            continue
        pieces.append(block[: max(first - 1, 0)])  # the record being read ends at the line end before '>'
        yield pieces[0] if len(pieces) == 1 else pieces
        last = max(block.rfind(b"\n>"), block.rfind(b"\r>") if b"\r" in block else -1) + 1
        if last > first:
            yield block[first + 1 : last - 1]  # the block's whole records
        pieces = [block[max(first, last) + 1 :]]
    yield pieces[0] if len(pieces) == 1 else pieces


def _first_record_start(block: bytes) -> int:
    """Index of the first '>' that opens a line after the block's first byte, or -1."""
    line_ends = (b"\n>", b"\r>") if b"\r" in block else (b"\n>",)
    starts = [index + 1 for index in map(block.find, line_ends) if index >= 0]
    return min(starts, default=-1)


def _split_records(text: bytes) -> list[bytes]:
    """``text`` cut at every line-initial '>' (which is dropped)."""
    texts = text.split(b"\n>")
    if b"\r>" in text:  # a lone CR ends a line too (CRLF ends at the LF, so "\r>" is always a lone CR)
        texts = [part for text in texts for part in text.split(b"\r>")]
    return texts


def _header_and_sequence(pieces: list[bytes]) -> tuple[bytes, bytes]:
    """The header line and the sequence (all ASCII blank space dropped) of a record read in several pieces,
    replacing each piece by its cleaned text in turn, so a long record is held about twice at most."""
    for index, piece in enumerate(pieces):
        ends = [end for end in (piece.find(b"\n"), piece.find(b"\r")) if end >= 0]
        if ends:
            pieces[: index + 1] = [b"".join(pieces[:index]) + piece[: min(ends)], piece[min(ends):]]
            break
    else:
        return b"".join(pieces), b""
    header = pieces.pop(0)
    for index, piece in enumerate(pieces):
        pieces[index] = piece.translate(None, BLANK)
    sequence = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    pieces.clear()
    return header, sequence


def _parse(path, span: tuple[int, int] | None = None) -> Iterator[tuple[str, str]]:
    """(ID, sequence as written) for every record (of ``span`` if given), checked; no duplicate detection."""
    for ids, sequences in _parse_batches(path, span):
        yield from zip(ids, sequences, strict=True)


def _parse_batches(path, span: tuple[int, int] | None = None,
                   keep_case: bool = True) -> Iterator[tuple[list[str], list[str]]]:
    """``_parse`` a run of records at a time, as (IDs, sequences); upper-cased unless ``keep_case``.

    On a problem, the records before it are yielded first, then the `InputError` naming it is raised.
    """
    count = 0  # records before the run
    for run in _record_runs(path, span):
        batch = _two_line_records(run, keep_case) if isinstance(run, bytes) else None
        if batch is None:
            ids, sequences = [], []
            try:
                texts = _split_records(run) if isinstance(run, bytes) else [run]
                for number, text in enumerate(texts, start=count + 1):
                    record_id, sequence = _record(path, number, text)
                    ids.append(record_id)
                    sequences.append((sequence if keep_case else sequence.upper()).decode("ascii"))
            except InputError:
                if ids:
                    yield ids, sequences
                raise
            batch = ids, sequences
        count += len(batch[0])
        yield batch


def _two_line_records(run: bytes, keep_case: bool) -> tuple[list[str], list[str]] | None:
    """(IDs, sequences) of a run of records that each have a header line with only an ASCII ID and one
    sequence line, found and checked by a few calls over the whole run; None for any other run (the
    caller reads those record by record, which also names any problem)."""
    lines = run.split(b"\n")  # a CR (CRLF, or a lone CR ending a line) fails the checks below
    if not lines[-1]:  # the file's last line end
        lines.pop()
    count = len(lines) // 2
    if not count or len(lines) != 2 * count:
        return None
    sequence_lines = lines[1::2]
    sequences = b"\n".join(sequence_lines)
    if b"" in sequence_lines or sequences.translate(None, IUPAC_LINES):
        return None  # an empty sequence, or a character to refuse (or a '>': a header in a sequence's place)
    headers = b"\n".join(lines[0::2])  # the first without its '>'
    # With no '>' opening a sequence line, count - 1 of them opening lines 2, 4, ... means the lines pair up.
    if headers.count(b"\n>") != count - 1 or not headers.isascii() or headers.translate(None, ID_CUTS) != headers:
        return None  # a description, or blank space in the header: its ID is cut record by record
    ids = headers.decode("ascii").split("\n>")
    if "" in ids:
        return None  # a header without ID
    return ids, (sequences if keep_case else sequences.upper()).decode("ascii").split("\n")


def _record(path, number: int, text: bytes | list[bytes]) -> tuple[str, bytes]:
    """(ID, sequence as written) of one record's text, or the `InputError` that says what is wrong with it."""
    if isinstance(text, list):
        header, sequence = _header_and_sequence(text)
    else:  # the common case, inline: a record read in one block
        header, _, body = text.partition(b"\n")
        if b"\r" in header:  # the header ends at CRLF or a lone CR
            header, _, rest = header.partition(b"\r")
            body = rest + body
        sequence = b"".join(body.split())  # drops line ends and blank space, as the original
    # The ID is the first word as Python's str.split() cuts it (NBSP, U+2028, \x1c-\x1f ... included),
    # as the original (Biopython on text) does; bytes.split() would cut at ASCII blank space only.
    try:
        words = header.decode().split(None, 1)
    except UnicodeDecodeError:  # only the ID must be text (the original would read no such file at all)
        words = header.decode("utf-8", errors="surrogateescape").split(None, 1)
        if not _is_utf8(words[0]):
            raise InputError(f"{path}: record #{number} has an ID that is not UTF-8 text") from None
    if not words:
        raise InputError(f"{path}: record #{number} has no ID (empty header line)")
    record_id = words[0]
    if not sequence:
        raise InputError(f"{path}: record '{record_id}' (#{number}) has an empty sequence")
    if sequence.translate(None, IUPAC_NUCLEOTIDES):
        _refuse_character(path, record_id, number, sequence)
    return record_id, sequence


def _is_utf8(text: str) -> bool:
    """False if ``text`` holds bytes that were not UTF-8 (decoded with surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_character(path, record_id: str, number: int, sequence: bytes):
    text = sequence.decode("utf-8", errors="replace")
    position, char = next((i, c) for i, c in enumerate(text, start=1) if c.encode() not in IUPAC_NUCLEOTIDES)
    raise InputError(
        f"{path}: record '{record_id}' (#{number}) has {char!r} at position {position}, "
        "which is not an IUPAC nucleotide code"
    )


class _SeenIds:
    """Duplicate-ID detection in 8 bytes per record: sorted numpy blocks of 64-bit ID hashes.

    Blocks merge like a binary counter (log-many blocks, each hash re-sorted log-many times). A hash seen
    before is confirmed by re-reading the file before calling the ID a duplicate, so a hash collision
    never becomes a false error and no ID string is kept.
    """

    def __init__(self, path):
        self.path = path
        self.rereadable = _rereadable(path)
        self.count = 0
        self.blocks: list[np.ndarray] = []
        self.failed = False

    def add(self, ids: list[str]) -> None:
        """Record the next IDs of the file; raise InputError if one was seen before (then add nothing more:
        the IDs after the reported one must not replace it with a later duplicate)."""
        if self.failed or not ids:
            return
        try:
            self._add(ids)
        except InputError:
            self.failed = True
            raise

    def _add(self, ids: list[str]) -> None:
        first_number = self.count + 1
        if len(set(ids)) < len(ids):  # a repeat within the batch: name the first
            batch: dict[str, int] = {}
            for number, record_id in enumerate(ids, start=first_number):
                if record_id in batch:
                    self._duplicate(record_id, batch[record_id], number)
                batch[record_id] = number
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        sorted_hashes = np.sort(hashes)  # sorted keys make the binary searches cheap
        if self._contains(sorted_hashes).any():  # in file order, each confirmed by re-reading
            for index in np.flatnonzero(self._contains(hashes)):
                earlier = self._find_earlier(ids[index], hashes[index])
                if earlier is not None:
                    self._duplicate(ids[index], earlier, first_number + index)
        self._insert(sorted_hashes)
        self.count += len(ids)

    def _contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(hashes.shape, dtype=bool)
        for block in self.blocks:
            where = np.minimum(np.searchsorted(block, hashes), block.size - 1)
            found |= block[where] == hashes
        return found

    def _insert(self, sorted_hashes: np.ndarray) -> None:
        self.blocks.append(sorted_hashes)
        while len(self.blocks) > 1 and self.blocks[-2].size <= 2 * self.blocks[-1].size:
            merged = np.concatenate([self.blocks.pop(), self.blocks.pop()])
            merged.sort(kind="stable")  # in place; timsort merges the two sorted runs in linear time
            self.blocks.append(merged)

    def _find_earlier(self, record_id: str, record_hash) -> int | None:
        """Number of an earlier record with exactly this ID, by re-reading the records already counted."""
        if not self.rereadable:  # ~never (a 64-bit hash collision), but a pipe cannot be read twice
            raise InputError(f"{self.path}: record '{record_id}' may repeat an earlier ID and a pipe cannot be "
                             "read again to make sure: give the input as a file")
        for number, (earlier_id, _) in enumerate(itertools.islice(_parse(self.path), self.count), start=1):
            if hash(earlier_id) == record_hash and earlier_id == record_id:
                return number
        return None

    def _duplicate(self, record_id: str, earlier: int, later: int):
        raise InputError(f"{self.path}: duplicate record ID '{record_id}' (records #{earlier} and #{later})")
