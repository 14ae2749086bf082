"""The parent's serial steps of `vnp predict`, one process against several, side by side on one FASTA.

Times, on the same input and the same machine: building the frame store in one pass and with N
processes (the stores compared byte for byte), reading every frame ID one decode per frame and as one
column, and writing `prediction_results.txt` (random scores) in one process and in N (the files compared).

    python -m scripts.bench_parallel "$(python -m scripts.make_data path full)" --processes 16,32
    python -m scripts.bench_parallel reads.fa --processes 2 --json out.json

A pipeline micro-benchmark, not part of the harness: it calls vnp's internals in this process (the
installed vnp), on a FASTA made by the one read generator (`scripts.make_data`, data/datasets.json).
Exit status 1 when a parallel result differs from the serial one.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vnp import predict
from vnp.consensus import write_prediction_results
from vnp.engine import parallel_results, parallel_store
from vnp.engine.store import FrameStore


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def same_tree(a: Path, b: Path) -> bool:
    names = sorted(os.listdir(a))
    return names == sorted(os.listdir(b)) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fasta", type=Path, help="a plain FASTA file of reads")
    parser.add_argument("--processes", default="16,32", help="process counts to compare with one (default 16,32)")
    parser.add_argument("--chunk-size", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="vnp-bench-parallel-"))
    report = {"host": platform.node(), "cpus": os.cpu_count(), "input": str(args.fasta),
              "input_bytes": args.fasta.stat().st_size, "store": {}, "results": {}}
    try:
        serial = work / "store1"
        (composition, _), seconds = timed(predict._serial_store, args.fasta, args.chunk_size, serial)
        report["frames"] = composition.frames
        report["store"]["1"] = seconds
        print(f"store, 1 process: {seconds:.2f} s, {composition.frames:,} frames", flush=True)
        identical = True
        for n in counts:
            _, seconds = timed(parallel_store.build, args.fasta, args.chunk_size, work / f"store{n}", n)
            same = same_tree(serial, work / f"store{n}")
            identical &= same
            report["store"][str(n)] = seconds
            print(f"store, {n} processes: {seconds:.2f} s, identical {same}", flush=True)

        store = FrameStore(serial)
        by_frame, report["ids_per_frame_s"] = timed(store.get, "ids", np.arange(len(store)))
        ids, report["ids_column_s"] = timed(store.column, "ids")
        identical &= by_frame == ids
        print(f"IDs: a decode per frame {report['ids_per_frame_s']:.2f} s, "
              f"one column {report['ids_column_s']:.2f} s", flush=True)

        scores = np.random.default_rng(0).random((len(ids), 2), dtype=np.float32)
        _, report["results"]["1"] = timed(write_prediction_results, work / "results1.txt", ids,
                                          scores[:, 0], scores[:, 1])
        print(f"results, 1 process: {report['results']['1']:.2f} s", flush=True)
        for n in counts:
            _, seconds = timed(parallel_results.write, work / f"results{n}.txt", serial, scores, n, work / "parts")
            same = filecmp.cmp(work / "results1.txt", work / f"results{n}.txt", shallow=False)
            identical &= same
            report["results"][str(n)] = seconds
            print(f"results, {n} processes: {seconds:.2f} s, identical {same}", flush=True)
        report["identical"] = identical
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
