"""The command-line options `project` and `report` share, turned into an `analysis.projection.Query`."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis import projection as P
from analysis.costmodel import DEFAULT_TARGET_HOURS, GPU_COUNTS
from analysis.record import composition_of, load_records
from benchmarks.harness import counting, record

ROOT = Path(__file__).resolve().parent.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the records are, which runs to use, and what sample to project."""
    parser.add_argument("--records", type=Path, help="RunRecords folder (default: the harness's records root)")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="asv results (commit dates)")
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET_HOURS, help="target hours (default 10)")
    parser.add_argument("--gpus", default=",".join(map(str, GPU_COUNTS)), help="GPU counts (default 1,2,4,8)")
    parser.add_argument("--variant", default="all", help="the pipeline variant to project (default all)")
    parser.add_argument("--machine", help="only this machine")
    parser.add_argument("--commit", help="only this commit (a prefix is enough)")
    parser.add_argument("--scale", help="only this scale (ci, gpu, full)")
    sample = parser.add_mutually_exclusive_group()
    sample.add_argument("--composition", type=Path, help="JSON with the sample's reads, frames, tokens, ...")
    sample.add_argument("--sample", type=Path, help="a FASTA to count (original rules, no model) instead")
    sample.add_argument("--dataset", default="full", help="dataset definition to project (default full)")
    parser.add_argument("--datasets-file", type=Path, default=ROOT / "data" / "datasets.json")
    parser.add_argument(
        "--chunk-size",
        type=int,
        help="the sample's chunk size (model type): only runs at it "
        "are used (default: the dataset's model_type; for --sample the runs' chunk size)",
    )
    parser.add_argument(
        "--check",
        help="trust check FROM:TO dataset roles (default: each group's two largest "
        "reads datasets, e.g. typical:large or subset1m:full)",
    )
    cohort = parser.add_argument_group("a cohort of samples (projected)")
    cohort.add_argument("--samples", type=int, default=24, help="samples in the cohort (default 24)")
    cohort.add_argument("--gpus-per-node", type=int, default=4, help="GPUs per node (default 4)")
    cohort.add_argument("--nodes", type=int, default=4, help="nodes, at most (default 4)")


def query(args: argparse.Namespace) -> P.Query:
    """The projection the options ask for; ValueError (one line) for options that cannot be met."""
    records = args.records or record.records_root()
    if args.check and ":" not in args.check:
        raise ValueError(f"--check takes FROM:TO dataset roles, like typical:large, not {args.check!r}")
    if min(args.samples, args.gpus_per_node, args.nodes) < 1:
        raise ValueError("--samples, --gpus-per-node and --nodes must be at least 1")
    chunk_size = args.chunk_size
    if args.composition:
        composition, source = P.read_composition_file(args.composition), str(args.composition)
    elif args.sample:
        if not args.sample.is_file():
            raise ValueError(f"{args.sample}: no such file")
        # a counted FASTA is chunked like the runs it is projected from, unless asked otherwise
        chunk_size = chunk_size or (P.runs_chunk_size(load_records(records)[0]) if Path(records).is_dir() else 500)
        composition = composition_of(counting.count_file(args.sample, chunk_size))
        source = f"scan of {args.sample} at chunk size {chunk_size} (DNABERT tokens estimated from bases)"
    else:
        composition, source, defined = P.dataset_composition(args.datasets_file, args.dataset)
        chunk_size = chunk_size or defined
    return P.Query(
        records=Path(records),
        results=args.results,
        target_hours=args.target,
        gpu_counts=tuple(int(g) for g in args.gpus.split(",")),
        variant=args.variant,
        machine=args.machine,
        commit=args.commit,
        scale=args.scale,
        composition=composition,
        source=source,
        chunk_size=chunk_size,
        check=tuple(args.check.split(":", 1)) if args.check else None,
        cohort=(args.samples, args.gpus_per_node, args.nodes),
    )
