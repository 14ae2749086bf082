#!/usr/bin/env python
"""Speed and memory of vnp's chunk + six-frame translate against the original algorithm in plain Python.

In one run: both sides chunk and translate the same generated reads in memory (outputs compared, then
timed), vnp's streaming path reads the same reads from a FASTA file, and vnp's peak RSS is measured on
a small and a large FASTA file in fresh subprocesses. Requirements: speed-up >= 10x, RSS ratio <= 1.2.

    .venv/bin/python scripts/bench_preprocess.py                # 100,000 reads; RSS on 100,000 vs 1,000,000
    .venv/bin/python scripts/bench_preprocess.py --json out.json
Exit status 1 when a requirement is not met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness's plain original lives in the working tree

from benchmarks.harness import original  # noqa: E402
from vnp.preprocess import Composition, chunk_and_translate, iter_frame_batches  # noqa: E402

MIN_SPEEDUP = 10.0
MAX_RSS_RATIO = 1.2
IUPAC_CODES = np.frombuffer(b"NRYSWKMBDHV", dtype=np.uint8)


def generate_reads(count: int, seed: int, first: int = 0) -> list[tuple[str, str]]:
    """~150-nt reads (sd 20, 50..300): ACGT, ~0.5% IUPAC codes, every 10th read lowercase from a random point."""
    rng = np.random.default_rng([seed, first])
    lengths = np.clip(rng.normal(150, 20, count).round().astype(np.int64), 50, 300)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, lengths.sum())]
    ambiguous = rng.random(bases.size) < 0.005
    bases[ambiguous] = rng.choice(IUPAC_CODES, ambiguous.sum())
    text = bases.tobytes().decode("ascii")
    ends = np.cumsum(lengths).tolist()
    reads = []
    for i, (start, end) in enumerate(zip([0, *ends[:-1]], ends)):
        seq = text[start:end]
        if i % 10 == 0:
            cut = int(rng.integers(0, len(seq)))
            seq = seq[:cut] + seq[cut:].lower()
        reads.append((f"read{first + i}", seq))
    return reads


def write_fasta(path: Path, count: int, seed: int, block: int = 100_000) -> None:
    """The same reads as generate_reads(count, seed) would make block by block, streamed to a file."""
    with path.open("w") as handle:
        for first in range(0, count, block):
            reads = generate_reads(min(block, count - first), seed, first)
            handle.write("".join(f">{rid} generated\n{seq}\n" for rid, seq in reads))


def vnp_chunk_translate(reads, chunk_size: int) -> list[tuple[str, str, str]]:
    """vnp's fast path in memory: the kernel the streaming pipeline runs, batches and all."""
    return [frame for _, batch in chunk_and_translate(reads, chunk_size)
            for frame in zip(batch.ids, batch.nucleotides, batch.proteins)]


def timed(function, *args, repeats: int = 1):
    """Best wall time of `repeats` calls (the least disturbed by other load), and the result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        seconds.append(time.perf_counter() - start)
    return min(seconds), result


def stream_file(path: Path, chunk_size: int) -> Composition:
    composition = Composition()
    for _ in iter_frame_batches(path, chunk_size, composition):
        pass
    return composition


def peak_rss_of_streaming(path: Path | None, chunk_size: int) -> int:
    """Peak RSS (bytes) of a fresh interpreter streaming `path` (None: only importing vnp)."""
    child = [sys.executable, __file__, "--child-stream", str(path or ""), "--chunk-size", str(chunk_size)]
    done = subprocess.run(child, capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def child_stream(path: str, chunk_size: int) -> None:
    if path:
        stream_file(Path(path), chunk_size)
    print(peak_rss_bytes())


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=100_000, help="reads for the timing comparison")
    parser.add_argument("--rss-reads", type=int, nargs=2, default=(100_000, 1_000_000), metavar=("SMALL", "LARGE"))
    parser.add_argument("--chunk-size", type=int, choices=(300, 500), default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="timings are the best of this many runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    parser.add_argument("--child-stream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_stream is not None:
        child_stream(args.child_stream, args.chunk_size)
        return 0

    reads = generate_reads(args.reads, args.seed)
    vnp_seconds, vnp_frames = timed(vnp_chunk_translate, reads, args.chunk_size, repeats=args.repeats)
    original_seconds, (_, original_frames) = timed(
        original.chunk_and_translate, reads, args.chunk_size, repeats=args.repeats)
    if vnp_frames != original_frames:
        raise SystemExit("vnp and the original disagree on the generated reads: not benchmarking a wrong answer")

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for count in {args.reads, *args.rss_reads}:
            paths[count] = Path(tmp) / f"reads{count}.fa"
            write_fasta(paths[count], count, args.seed)
        stream_seconds, composition = timed(stream_file, paths[args.reads], args.chunk_size, repeats=args.repeats)
        rss_import = peak_rss_of_streaming(None, args.chunk_size)
        rss_small, rss_large = (peak_rss_of_streaming(paths[n], args.chunk_size) for n in args.rss_reads)

    speedup = original_seconds / vnp_seconds
    rss_ratio = rss_large / rss_small
    results = {
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                 "load_average": os.getloadavg(), "python": platform.python_version(), "numpy": np.__version__},
        "chunk_size": args.chunk_size, "reads": args.reads, "frames": len(vnp_frames), "repeats": args.repeats,
        "seconds": {"vnp": vnp_seconds, "original": original_seconds, "vnp_streaming_from_file": stream_seconds},
        "speedup": speedup,
        "composition": vars(composition),
        "peak_rss_bytes": {"import_only": rss_import, str(args.rss_reads[0]): rss_small, str(args.rss_reads[1]): rss_large},
        "rss_ratio": rss_ratio,
        "requirements": {"speedup_min": MIN_SPEEDUP, "rss_ratio_max": MAX_RSS_RATIO},
        "ok": speedup >= MIN_SPEEDUP and rss_ratio <= MAX_RSS_RATIO,
    }
    small, large = args.rss_reads
    print(f"chunk + translate, {args.reads:,} reads (C={args.chunk_size}, {len(vnp_frames):,} kept frames):")
    print(f"  original (plain Python) {original_seconds:8.2f} s")
    print(f"  vnp (numpy)             {vnp_seconds:8.2f} s   speed-up {speedup:.1f}x (need >= {MIN_SPEEDUP:g}x)")
    print(f"  vnp streaming from FASTA{stream_seconds:8.2f} s   (read + validate + chunk + translate)")
    print(f"peak RSS streaming: {small:,} reads {rss_small / 2**20:.1f} MiB, {large:,} reads {rss_large / 2**20:.1f} MiB"
          f" -> ratio {rss_ratio:.3f} (need <= {MAX_RSS_RATIO}); import only {rss_import / 2**20:.1f} MiB")
    print("OK" if results["ok"] else "FAILED")
    if args.json:
        text = json.dumps(results, indent=2)
        print(text) if args.json == "-" else Path(args.json).write_text(text + "\n")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
