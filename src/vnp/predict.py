"""`vnp predict`: FASTA in, per-frame scores and per-chunk calls out, with a run record.

preprocess (stream reads -> chunks -> kept frames into the frame store) -> workers (DNABERT-S,
ESM-2, MLP per part, one per device) -> write prediction_results.txt -> consensus.
Everything lives in OUTDIR/.vnp-work until the run succeeds, so a killed run can --resume and a
failed one leaves no half-written result file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from vnp.atomic import atomic_write
from vnp.engine import parallel_results, parallel_store, parts
from vnp.engine.batching import length_sorted_order
from vnp.engine.devices import host_info, resolve_devices, resolve_precision
from vnp.engine.runner import WorkerPool
from vnp.engine.store import FrameStore, FrameStoreWriter
from vnp.engine.worker import WorkerConfig, fault_hooks
from vnp.errors import InputError, OutputDirError, VnpError
from vnp.fasta import check_input
from vnp.runrecord import RunRecord

WORKDIR = ".vnp-work"
LOCKFILE = ".vnp.lock"
RESULTS = "prediction_results.txt"
CONSENSUS = "prediction_results_highestscore.csv"
ESM_MAX_TOKENS = 1024  # 1022 residues + BOS + EOS
MAX_PARALLEL_PROCESSES = 32  # (--threads, default all cores) preprocessing and writing in parallel

# --variant: shorthands for the benchmark's two poles; explicit flags still win.
VARIANTS = {
    "baseline": {"precision": "fp32", "attention": "math", "packing": False, "persistent_models": False, "one_gpu": True},
    "all": {"precision": "auto", "attention": "sdpa", "packing": True, "persistent_models": True, "one_gpu": False},
}
DEFAULTS = {"precision": "auto", "attention": "sdpa", "packing": True, "persistent_models": True}


def resolve_options(args) -> dict:
    """Fill unset switches from --variant, then from the defaults."""
    variant = VARIANTS.get(args.variant, {})
    resolved = {}
    for name, default in DEFAULTS.items():
        value = getattr(args, name)
        resolved[name] = value if value is not None else variant.get(name, default)
    devices, gpus = resolve_devices(args.gpus, args.cpu)
    if devices == ["cpu"]:
        devices = ["cpu"] * max(1, args.cpu_workers)
    if variant.get("one_gpu") and args.gpus is None:
        devices, gpus = devices[:1], gpus[:1]
    if args.parallel is False and args.gpus is None:
        devices, gpus = devices[:1], gpus[:1]
    resolved["devices"], resolved["gpus"] = devices, gpus
    resolved["precision"] = resolve_precision(resolved["precision"], gpus)
    if devices == ["cpu"] and resolved["precision"] != "fp32":
        raise VnpError(f"--precision {resolved['precision']} needs a GPU; on the CPU use fp32")
    return resolved


def _config_hash(config: dict, input_path: Path) -> str:
    """What must not change between a killed run and its --resume."""
    stat = input_path.stat()
    keys = ("chunk_size", "model_size", "precision", "attention", "packing", "weights", "records_per_part", "devices")
    payload = {k: config[k] for k in keys} | {"input": str(input_path), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked_outdir(outdir: Path, *, force: bool, resume: bool):
    """Claim OUTDIR: refuse a non-empty one unless --force/--resume, and a second concurrent run always."""
    created = not outdir.exists()
    if not created and not outdir.is_dir():
        raise OutputDirError(f"output path {outdir} exists and is not a directory")
    leftovers = [p for p in outdir.iterdir() if p.name != LOCKFILE] if not created else []
    outdir.mkdir(parents=True, exist_ok=True)
    lock = open(outdir / LOCKFILE, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise OutputDirError(f"another vnp run is using {outdir} right now") from None
    try:
        if leftovers and not (force or resume):
            raise OutputDirError(f"output directory {outdir} is not empty: use --resume to continue the run "
                                 "in it or --force to overwrite it")
        if force:
            for path in leftovers:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        yield created
    finally:
        with contextlib.suppress(FileNotFoundError):
            (outdir / LOCKFILE).unlink()
        lock.close()


def _preprocess(input_path: Path, chunk_size: int, workdir: Path, record: RunRecord, config_hash: str,
                processes: int) -> dict:
    """Stream frames into the frame store; reuse a complete store from an earlier try of this run."""
    manifest_path = workdir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["config_hash"] == config_hash:
            with record.stage("preprocess", skipped=True) as entry:
                entry["items"] = manifest["composition"]["frames"]
            return manifest["composition"]
        raise OutputDirError(f"{workdir.parent} holds a run with another input or configuration: "
                             "use --force to start over")
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        summary = _build_store(input_path, chunk_size, workdir, record, processes)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)  # a half-built store is worth nothing
        raise
    with atomic_write(manifest_path) as handle:
        json.dump({"config_hash": config_hash, "composition": summary}, handle)
    return summary


def _build_store(input_path: Path, chunk_size: int, workdir: Path, record: RunRecord, processes: int) -> dict:
    """The frame store and the length-sorted order: in parallel for a large plain file, else one pass."""
    store = workdir / "frames"
    with record.stage("preprocess", processes=1) as entry:
        built = None
        if processes > 1 and input_path.stat().st_size >= _parallel_from(parallel_store.MIN_BYTES):
            try:
                built = parallel_store.build(input_path, chunk_size, store, processes)
                entry["processes"] = processes
            except parallel_store.NeedsSerialPass as reason:
                entry["parallel_fallback"] = str(reason)
                shutil.rmtree(store, ignore_errors=True)
        composition, protein_lengths = built or _serial_store(input_path, chunk_size, store)
        if composition.reads == 0:
            raise InputError(f"{input_path}: no FASTA records")
        tokens = np.minimum(protein_lengths + 2, ESM_MAX_TOKENS)
        np.save(workdir / "order.npy", length_sorted_order(tokens))
        summary = {**vars(composition), "esm_tokens": int(tokens.sum())}
        assert summary["frames"] == len(FrameStore(store)), "frame store and composition disagree"
        entry["items"] = summary["frames"]
    return summary


def _parallel_from(size: int) -> int:
    """The input size from which a step runs in parallel; VNP_PARALLEL_FROM=0 (a test hook) forces it."""
    return int(os.environ.get("VNP_PARALLEL_FROM", size))


def _serial_store(input_path: Path, chunk_size: int, store: Path):
    from vnp.preprocess import Composition, iter_frame_batches

    composition = Composition()
    writer = FrameStoreWriter(store)
    lengths = [np.zeros(0, np.int64)]
    for batch in iter_frame_batches(input_path, chunk_size, composition):
        writer.append(ids=batch.ids, nucleotides=batch.nucleotides, proteins=batch.proteins)
        lengths.append(np.fromiter(map(len, batch.proteins), np.int64, len(batch.proteins)))
    writer.close()
    return composition, np.concatenate(lengths)


def run(args) -> int:
    record = RunRecord(sys.argv[1:])
    outdir = Path(args.output).resolve()
    check_input(args.input, regular_file=True)  # a regular file: predict reads it more than once
    with _locked_outdir(outdir, force=args.force, resume=args.resume) as created:
        try:
            _run_locked(args, outdir, record)
        except BaseException as failure:
            if record.data["input"] is None:
                # Failed before any frame reached a worker (bad input, bad option): leave nothing behind.
                if created:
                    shutil.rmtree(outdir, ignore_errors=True)
            else:  # keep the finished parts for --resume, and say what happened
                code = getattr(failure, "exit_code", 130 if isinstance(failure, KeyboardInterrupt) else 1)
                record.finish(outdir, code, str(failure) or type(failure).__name__)
            raise
        record.finish(outdir, 0, None)
    return 0


def _run_locked(args, outdir: Path, record: RunRecord) -> None:
    from vnp.consensus import consensus, write_highestscore, write_prediction_results

    input_path = Path(args.input).resolve()
    options = resolve_options(args)
    if args.expandable_segments:  # read by each worker's allocator at CUDA start
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    workdir = outdir / WORKDIR
    config = {
        "input": str(input_path), "outdir": str(outdir), "chunk_size": args.model_type,
        "model_size": args.model_size, "devices": options["devices"], "precision": options["precision"],
        "attention": options["attention"], "packing": options["packing"],
        "persistent_models": options["persistent_models"], "token_budget": None,
        "records_per_part": args.records_per_part, "expandable_segments": args.expandable_segments,
        "max_memory_fraction": args.max_memory_fraction, "threads": args.threads or os.cpu_count(),
        "variant": args.variant, "resume": args.resume,
        "weights": {"esm2": args.esm_weights, "dnabert": args.dnabert_dir, "classifier": args.classifier},
    }
    record.data["config"] = config

    def say(message: str) -> None:  # what happened, a line per step, unless --quiet
        if not args.quiet:
            print(f"vnp: {message}", file=sys.stderr, flush=True)

    record.data["host"] = host_info(options["gpus"])
    config_hash = _config_hash(config, input_path)
    processes = min(MAX_PARALLEL_PROCESSES, config["threads"])  # for preprocessing and writing
    world = len(options["devices"])
    budget = {k: v for k, v in (("dnabert", args.token_budget), ("esm2", args.token_budget)) if v}
    configs = [
        WorkerConfig(workdir=str(workdir), device=device, rank=rank, world=world, model_size=args.model_size,
                     precision=options["precision"], attention=options["attention"], packing=options["packing"],
                     persistent_models=options["persistent_models"], token_budget=budget,
                     weights=config["weights"], trust_pickle=args.trust_pickle,
                     max_memory_fraction=args.max_memory_fraction, threads=args.threads,
                     **fault_hooks(os.environ))  # hidden test hooks: VNP_FAULT_OOM, VNP_FAULT_SLOW_PART
        for rank, device in enumerate(options["devices"])
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(configs, quiet=args.quiet)  # they load their models while we preprocess
    try:
        composition = _preprocess(input_path, args.model_type, workdir, record, config_hash, processes)
        frames = composition["frames"]
        record.data["input"] = dict(composition)
        stage = record.data["stages"][-1]
        how = "reused from the interrupted run" if stage.get("skipped") else \
            f"{stage['seconds']:.1f} s, {stage['processes']} process{'es' if stage['processes'] > 1 else ''}"
        say(f"{composition['reads']:,} reads -> {frames:,} frames to embed on {world} "
            f"{'device' if world == 1 else 'devices'} ({how})")
        part_size = max(1, min(args.records_per_part, math.ceil(frames / world))) if frames else 1
        run_id = parts.open_run(workdir, resume=args.resume)  # stamps every part: another run's never counts
        record.data["resumed"] = {"parts_done_before": parts.done_parts(workdir, run_id)}
        summaries = pool.run(part_size, frames, run_id) if frames else []
    finally:
        pool.close()
    record.add_worker_stages(summaries)
    if summaries:
        config["token_budget"] = summaries[0]["token_budget"]
        names = {"esm2": "ESM-2", "dnabert": "DNABERT-S"}
        rates = [f"{names[s['name']]} {s['tokens'] / s['seconds']:,.0f} tokens/s" for s in record.data["stages"]
                 if s["name"] in names and s["tokens"] and s["seconds"]]
        say("embedded and classified: " + ", ".join(rates))
    if record.data["synthetic_weights"]:
        print("vnp: no weights given for some models: using seeded random weights — speed and memory are "
              "real, the labels are not", file=sys.stderr)

    store = FrameStore(workdir / "frames")
    scores, dnabert_tokens = parts.gather_scores(workdir, frames, run_id)
    record.data["input"]["dnabert_tokens"] = dnabert_tokens
    ids = store.column("ids")
    with record.stage("write", processes=1) as entry:
        if parallel_results.pays(len(ids), processes, _parallel_from(parallel_results.MIN_ROWS)):
            parallel_results.write(outdir / RESULTS, workdir / "frames", scores, processes, workdir / "results-parts")
            entry["processes"] = processes
        else:
            write_prediction_results(outdir / RESULTS, ids, scores[:, 0], scores[:, 1])
        entry["items"] = len(ids)
    with record.stage("consensus") as entry:
        rows = consensus(ids, scores[:, 0], scores[:, 1])
        write_highestscore(outdir / CONSENSUS, rows)
        entry["items"] = len(rows)
    record.data["output"] = {"frames": len(ids), "consensus_rows": len(rows)}
    say(f"wrote {RESULTS} ({len(ids):,} frames) and {CONSENSUS} ({len(rows):,} chunks) to {outdir} "
        f"in {time.time() - record.started_at:.1f} s")
    if args.keep_intermediate:
        from vnp.preprocess import preprocess_files

        preprocess_files(input_path, outdir, args.model_type)
    shutil.rmtree(workdir)
