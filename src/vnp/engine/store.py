"""The frame store: every kept frame's ID, nucleotide and protein, on disk, readable by any worker.

Preprocessing streams frames into three byte pools plus offset arrays; workers memory-map them and
read only their own shard. Nothing holds all frames in Python objects, so memory does not grow with
the sample, and a resumed run reuses the store instead of preprocessing again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIELDS = ("ids", "nucleotides", "proteins")


class FrameStoreWriter:
    """Appends frame batches to ``<dir>/<field>.bin`` and records their end offsets."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files = {f: open(self.directory / f"{f}.bin", "wb") for f in FIELDS}
        self._ends: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
        self._written = {f: 0 for f in FIELDS}

    def append(self, **columns: list[str]) -> None:
        for field in FIELDS:
            values = columns[field]
            if not values:
                continue
            data = "".join(values).encode("utf-8")
            lengths = np.fromiter(map(len, values), np.int64, len(values))
            if len(data) != lengths.sum():  # a non-ASCII ID: count bytes, not characters
                lengths = np.fromiter((len(v.encode("utf-8")) for v in values), np.int64, len(values))
            self._files[field].write(data)
            ends = np.cumsum(lengths) + self._written[field]
            self._written[field] = int(ends[-1])
            self._ends[field].append(ends)

    def close(self) -> int:
        """Flush, write the offset arrays, return the number of frames."""
        count = None
        for field in FIELDS:
            self._files[field].close()
            ends = np.concatenate(self._ends[field]) if self._ends[field] else np.zeros(0, np.int64)
            np.save(self.directory / f"{field}.ends.npy", ends)
            count = len(ends) if count is None else count
            if len(ends) != count:
                raise RuntimeError("frame store columns have different lengths")
        return int(count or 0)


class FrameStore:
    """Read side: random access to frames by index, backed by memory maps."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._pools = {}
        self._starts = {}
        self._ends = {}
        for field in FIELDS:
            ends = np.load(self.directory / f"{field}.ends.npy")
            size = int(ends[-1]) if len(ends) else 0
            self._pools[field] = (
                np.memmap(self.directory / f"{field}.bin", dtype=np.uint8, mode="r", shape=(size,))
                if size
                else np.zeros(0, np.uint8)
            )
            self._ends[field] = ends
            self._starts[field] = np.concatenate([[0], ends[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self._ends["ids"])

    def get(self, field: str, indices: np.ndarray) -> list[str]:
        pool, starts, ends = self._pools[field], self._starts[field], self._ends[field]
        return [bytes(pool[starts[i] : ends[i]]).decode("utf-8") for i in indices]

    def column(self, field: str, start: int = 0, stop: int | None = None) -> list[str]:
        """The values of frames [start, stop) of one field, in frame order (for the writers).

        One decode of the pool's slice, then slices: ~12x faster than a decode per frame, which for a full
        sample's 4.76 M IDs cost 10.8 s on the parent's critical path after the GPUs finished.
        """
        stop = len(self) if stop is None else min(stop, len(self))
        if stop <= start:
            return []
        pool, starts, ends = self._pools[field], self._starts[field][start:stop], self._ends[field][start:stop]
        first = int(starts[0])
        text = pool[first : int(ends[-1])].tobytes().decode("utf-8")
        if len(text) != int(ends[-1]) - first:  # a non-ASCII value: byte offsets are not character offsets
            return self.get(field, np.arange(start, stop))
        return [text[a:b] for a, b in zip((starts - first).tolist(), (ends - first).tolist())]
