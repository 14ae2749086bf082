"""`vnp predict`: FASTA in, per-frame scores and per-chunk calls out, with a run record.

preprocess (stream reads -> chunks -> kept frames into the frame store) -> workers (DNABERT-S,
ESM-2, MLP per part, one per device) -> write prediction_results.txt -> consensus.
Everything, the new outputs included, lives in OUTDIR/.vnp-work until the run succeeds; then the outputs
move into OUTDIR together (vnp.outdir). So a killed run can --resume, and a failed one leaves no
half-written result and no earlier result damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from vnp import outdir as out
from vnp.atomic import atomic_write
from vnp.engine import parallel_results, parallel_store, parts
from vnp.engine.batching import length_sorted_order
from vnp.engine.devices import host_info
from vnp.engine.runner import WorkerPool
from vnp.engine.store import FrameStore, FrameStoreWriter
from vnp.engine.worker import WorkerConfig, fault_hooks
from vnp.errors import InputError, OutputDirError, Terminated, exit_code, one_line
from vnp.fasta import check_input
from vnp.models.tokenizers import ESM_MAX_RESIDUES
from vnp.options import PredictOptions
from vnp.runrecord import RunRecord

# What must not change between a run and its --resume (with the input's path, size and mtime).
RESUME_KEYS = ("chunk_size", "model_size", "precision", "attention", "packing", "weights", "weights_files",
               "records_per_part", "devices")


def run(options: PredictOptions) -> int:
    check_input(options.input, regular_file=True)  # a regular file: predict reads it more than once
    record = RunRecord(options.argv)
    config = options.record_config()
    record.set_config(config)
    with _terminate_raises(), out.claim(options.outdir, options.input, config, force=options.force,
                                        resume=options.resume) as held:
        try:
            _run_claimed(options, held, record)
        except BaseException as failure:
            _after_failure(failure, held, record)
            raise
    return 0


@contextlib.contextmanager
def _terminate_raises():
    """SIGTERM raises Terminated in this (the main) thread, as SIGINT raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM stops the clean-up too
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _after_failure(failure: BaseException, held: out.Claim, record: RunRecord) -> None:
    """Before any frame reached a worker: leave nothing behind. After: keep the work, and say what happened."""
    if not record.has_input:
        held.abandon()
        return
    shutil.rmtree(held.staged, ignore_errors=True)  # half-written new outputs are worth nothing
    record.finish(exit_code(failure), one_line(failure))
    # Beside earlier results, the failed attempt's record stays with its work: run.json describes the results.
    target = held.workdir / out.RECORD if held.has_results() else held.outdir / out.RECORD
    with contextlib.suppress(OSError):  # a full disk may refuse this too; the error line still says why
        record.write(target)


def _run_claimed(options: PredictOptions, held: out.Claim, record: RunRecord) -> None:
    input_path = options.input.resolve()
    record.set_host(host_info(list(options.gpus)))
    _check_resumable(options, held, record.config)
    if options.expandable_segments:  # read by each worker's allocator at CUDA start
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    frames, run_id = _embed(options, input_path, held.workdir, record)
    _report_embedding(options, record)
    _write_outputs(options, input_path, held, record, frames, run_id)
    record.finish(0, None)
    record.write(held.staged / out.RECORD)
    out.publish(held, record.config)
    shutil.rmtree(held.workdir, ignore_errors=True)
    _say(options, f"wrote {out.RESULTS} ({frames:,} frames) and {out.CONSENSUS} "
                  f"({record.to_dict()['output']['consensus_rows']:,} chunks) to {held.outdir} "
                  f"in {time.time() - record.started_at:.1f} s")


def _write_outputs(options: PredictOptions, input_path: Path, held: out.Claim, record: RunRecord,
                   frames: int, run_id: str) -> None:
    """The results, the consensus and the --keep-intermediate files, into the work directory's outputs."""
    from vnp.consensus import consensus, write_highestscore, write_prediction_results

    workdir, staged = held.workdir, held.staged
    shutil.rmtree(staged, ignore_errors=True)  # a killed try's outputs must not be published with these
    staged.mkdir()
    scores, dnabert_tokens = parts.gather_scores(workdir, frames, run_id)
    record.set_dnabert_tokens(dnabert_tokens)
    ids = FrameStore(workdir / "frames").column("ids")
    with record.stage("write", processes=1) as entry:
        minimum = _threshold(options.parallel_from, parallel_results.MIN_ROWS)
        if parallel_results.pays(len(ids), options.processes, minimum):
            parallel_results.write(staged / out.RESULTS, workdir / "frames", scores, options.processes,
                                   workdir / "results-parts")
            entry["processes"] = options.processes
        else:
            write_prediction_results(staged / out.RESULTS, ids, scores[:, 0], scores[:, 1])
        entry["items"] = len(ids)
    with record.stage("consensus") as entry:
        rows = consensus(ids, scores[:, 0], scores[:, 1])
        write_highestscore(staged / out.CONSENSUS, rows)
        entry["items"] = len(rows)
    record.set_output(len(ids), len(rows))
    if options.keep_intermediate:
        from vnp.preprocess import preprocess_files

        preprocess_files(input_path, staged, options.chunk_size)


def _say(options: PredictOptions, message: str) -> None:
    """What happened, a line per step, unless --quiet."""
    if not options.quiet:
        print(f"vnp: {message}", file=sys.stderr, flush=True)


def _check_resumable(options: PredictOptions, held: out.Claim, config: dict) -> None:
    """--resume of a finished run (no frame store left) is refused as an unfinished one would be."""
    if not options.resume or (held.workdir / out.MANIFEST).exists():
        return  # nothing to resume from, or the frame store's manifest decides (_preprocess)
    if held.previous_unreadable:
        raise OutputDirError(f"{held.outdir / out.RECORD} is not readable, so the run in {held.outdir} is "
                             "unknown: use --force to start over")
    previous = held.previous
    if previous is not None and any(previous.get(key) != config[key] for key in ("input", *RESUME_KEYS)):
        raise OutputDirError(out.ANOTHER_RUN.format(held.outdir))


def _worker_configs(options: PredictOptions, workdir: Path) -> list[WorkerConfig]:
    budget = {stage: options.token_budget for stage in ("dnabert", "esm2")} if options.token_budget else {}
    return [
        WorkerConfig(workdir=str(workdir), device=device, rank=rank, world=len(options.devices),
                     model_size=options.model_size, precision=options.precision, attention=options.attention,
                     packing=options.packing, persistent_models=options.persistent_models,
                     compile=options.compile, kernels=options.kernels, token_budget=budget,
                     weights=options.weights.as_dict(), trust_pickle=options.trust_pickle,
                     max_memory_fraction=options.max_memory_fraction, threads=options.threads,
                     **fault_hooks(os.environ))  # hidden test hooks: VNP_FAULT_OOM, VNP_FAULT_SLOW_PART
        for rank, device in enumerate(options.devices)
    ]


def _embed(options: PredictOptions, input_path: Path, workdir: Path, record: RunRecord) -> tuple[int, str]:
    """Preprocess while the workers load their models, then let them embed and classify.

    Returns the frame count and the run id that stamps this run's part files.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    world = len(options.devices)
    pool = WorkerPool(_worker_configs(options, workdir), quiet=options.quiet)
    try:
        config_hash = _config_hash(record.config, input_path)
        composition = _preprocess(input_path, options.chunk_size, workdir, record, config_hash,
                                  options.processes, options.parallel_from)
        frames = composition["frames"]
        record.set_input(composition)
        stage = record.stages[-1]
        how = "reused from the interrupted run" if stage.get("skipped") else \
            f"{stage['seconds']:.1f} s, {stage['processes']} process{'es' if stage['processes'] > 1 else ''}"
        _say(options, f"{composition['reads']:,} reads -> {frames:,} frames to embed on {world} "
                      f"{'device' if world == 1 else 'devices'} ({how})")
        part_size = max(1, min(options.records_per_part, math.ceil(frames / world))) if frames else 1
        run_id = parts.open_run(workdir, resume=options.resume)  # stamps every part: another run's never counts
        record.set_resumed(parts.done_parts(workdir, run_id))
        summaries = pool.run(part_size, frames, run_id) if frames else []
    finally:
        pool.close()
    record.add_worker_stages(summaries)
    return frames, run_id


def _report_embedding(options: PredictOptions, record: RunRecord) -> None:
    names = {"esm2": "ESM-2", "dnabert": "DNABERT-S"}
    rates = [f"{names[s['name']]} {s['tokens'] / s['seconds']:,.0f} tokens/s" for s in record.stages
             if s["name"] in names and s["tokens"] and s["seconds"]]
    if rates:
        _say(options, "embedded and classified: " + ", ".join(rates))
    if record.synthetic_weights:
        print("vnp: no weights given for some models: using seeded random weights — speed and memory are "
              "real, the labels are not", file=sys.stderr)


def _config_hash(config: dict, input_path: Path) -> str:
    """What must not change between a killed run and its --resume."""
    stat = input_path.stat()
    payload = {k: config[k] for k in RESUME_KEYS} | {"input": str(input_path), "size": stat.st_size,
                                                     "mtime": stat.st_mtime_ns}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _threshold(hook: int | None, default: int) -> int:
    """The size from which a step runs in parallel: ``default``, unless a test hook sets it."""
    return default if hook is None else hook


def _preprocess(input_path: Path, chunk_size: int, workdir: Path, record: RunRecord, config_hash: str,
                processes: int, parallel_from: int | None = None) -> dict:
    """Stream frames into the frame store; reuse a complete store from an earlier try of this run."""
    manifest_path = workdir / out.MANIFEST
    if manifest_path.exists():
        composition = _reusable_store(workdir, config_hash)
        with record.stage("preprocess", skipped=True) as entry:
            entry["items"] = composition["frames"]
        return composition
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        summary = _build_store(input_path, chunk_size, workdir, record, processes, parallel_from)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)  # a half-built store is worth nothing
        raise
    with atomic_write(manifest_path) as handle:
        json.dump({"config_hash": config_hash, "composition": summary}, handle)
    return summary


def _reusable_store(workdir: Path, config_hash: str) -> dict:
    """The composition of the interrupted run's frame store, if it is this run's and whole."""
    try:
        manifest = json.loads((workdir / out.MANIFEST).read_text())
        same, composition = manifest["config_hash"] == config_hash, manifest["composition"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _damaged(workdir, out.MANIFEST, error) from None
    if not same:
        raise OutputDirError(out.ANOTHER_RUN.format(workdir.parent))
    checking = "frames"
    try:  # a missing or short file fails here, not as a traceback inside a worker
        if len(FrameStore(workdir / "frames")) != composition["frames"]:
            raise ValueError("fewer frames than the manifest says")
        checking = "order.npy"
        if len(np.load(workdir / "order.npy")) != composition["frames"]:
            raise ValueError("fewer frames than the manifest says")
        for part in sorted((workdir / "scores").glob("*.npz")):
            checking = f"scores/{part.name}"
            with np.load(part) as data:  # reading the arrays checks the CRC: a truncated part fails here
                if len(data["rows"]) != len(data["scores"]):
                    raise ValueError("rows and scores differ in length")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise _damaged(workdir, checking, error) from None
    return composition


def _damaged(workdir: Path, name: str, error: BaseException) -> OutputDirError:
    return OutputDirError(f"{workdir} is damaged ({name}: {one_line(error)}): the interrupted run cannot be "
                          "resumed; use --force to start over")


def _build_store(input_path: Path, chunk_size: int, workdir: Path, record: RunRecord, processes: int,
                 parallel_from: int | None = None) -> dict:
    """The frame store and the length-sorted order: in parallel for a large plain file, else one pass."""
    store = workdir / "frames"
    with record.stage("preprocess", processes=1) as entry:
        built = None
        if processes > 1 and input_path.stat().st_size >= _threshold(parallel_from, parallel_store.MIN_BYTES):
            try:
                built = parallel_store.build(input_path, chunk_size, store, processes)
                entry["processes"] = processes
            except parallel_store.NeedsSerialPass as reason:
                entry["parallel_fallback"] = str(reason)
                shutil.rmtree(store, ignore_errors=True)
        composition, protein_lengths = built or _serial_store(input_path, chunk_size, store)
        if composition.reads == 0:
            raise InputError(f"{input_path}: no FASTA records")
        tokens = np.minimum(protein_lengths, ESM_MAX_RESIDUES) + 2  # + BOS and EOS
        np.save(workdir / "order.npy", length_sorted_order(tokens))
        summary = {**vars(composition), "esm_tokens": int(tokens.sum())}
        assert summary["frames"] == len(FrameStore(store)), "frame store and composition disagree"
        entry["items"] = summary["frames"]
    return summary


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

