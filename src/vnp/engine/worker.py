"""One worker per device: embeds its shard with DNABERT-S and ESM-2, classifies, streams scores to disk.

A worker walks its shard part by part (``part_size`` frames each). For each part it embeds the
nucleotides, then the proteins, concatenates the two embeddings, runs the MLP and writes the part's
scores atomically, stamped with the run's id (``parts.py``); a part file of this run marks the part
done, so ``--resume`` redoes only the others. Batches are cut by a token budget; a batch that runs out
of GPU memory halves the budget and is retried, so no record is ever dropped or duplicated.

While the device works on one part, a second thread reads and tokenises the next (``PartInputs``): the
GPU stages no longer wait for the CPU between parts (the tokenizer releases the GIL while it encodes).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vnp.engine import parts as part_files
from vnp.engine.batching import (
    backing_off,
    gather_packed,
    gather_padded,
    length_sorted_order,
    next_batch_end,
    shard,
    split_parts,
)
from vnp.engine.devices import DTYPES, activation_bytes_per_token, default_token_budget
from vnp.engine.store import FrameStore
from vnp.errors import NonFiniteScoresError, VnpError

MODEL_CONFIGS = {"tiny": ("tiny", "tiny"), "full": ("t36_3B", "dnabert-s")}
STAGES = ("dnabert", "esm2", "classify")


@dataclass
class WorkerConfig:
    """Everything a worker needs; plain data so it pickles into a spawned process."""

    workdir: str
    device: str
    rank: int
    world: int
    model_size: str = "full"
    precision: str = "fp32"
    attention: str = "sdpa"
    packing: bool = True
    persistent_models: bool = True
    compile: bool = False  # static-shape compiled layers for packed batches (models/compiled.py)
    kernels: str = "eager"  # "fused": packed batches through the fused kernels where they run (models/fused.py)
    fp8_bars: dict | None = None  # fidelity.Bars fields for --precision fp8 (tests force a failure with them)
    token_budget: dict = field(default_factory=dict)  # {"dnabert": n, "esm2": n}; missing = sized from free memory
    weights: dict = field(default_factory=dict)  # {"esm2": path, "dnabert": dir, "classifier": path}
    trust_pickle: bool = False
    max_memory_fraction: float | None = None
    threads: int | None = None
    seed: int = 0
    parent_pid: int | None = None  # a spawned worker stops when this process is gone (killed parent)
    # Fault injection for tests and the memory benchmark, set by the caller (never read from the environment here):
    fault_oom_batches: tuple = ()  # these batch numbers (1-based, over the worker's life) raise InjectedOOM
    slow_part_seconds: float = 0.0  # sleep after each part: widens the window in which a test can kill a run


def fault_hooks(environ) -> dict:
    """The WorkerConfig fault fields from ``VNP_FAULT_OOM=1,2,5`` and ``VNP_FAULT_SLOW_PART=SECONDS``."""
    batches = tuple(int(v) for v in environ.get("VNP_FAULT_OOM", "").split(",") if v.strip())
    return {"fault_oom_batches": batches, "slow_part_seconds": float(environ.get("VNP_FAULT_SLOW_PART") or 0)}


@dataclass
class StageStats:
    seconds: float = 0.0
    items: int = 0
    tokens: int = 0
    padding_tokens: int = 0
    batches: int = 0
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    start_allocated_bytes: int = 0  # the most already allocated when the stage began (weights, inputs)
    oom_backoffs: int = 0
    allocator_ooms: int = 0
    allocator_retries: int = 0
    first_batch_seconds: float | None = None
    first_batch_tokens: int = 0
    tokenize_seconds: float = 0.0  # CPU time tokenising the inputs, outside ``seconds`` (next part: another thread)
    intervals: list = field(default_factory=list)


@dataclass
class PartInputs:
    """One part's rows and their tokens, ``stage -> (flat tokens, lengths)``, ready for the device."""

    rows: np.ndarray
    tokens: dict
    tokenize_seconds: dict


class InjectedOOM(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError when ``fault_oom_batches`` asks for one (tests, CPU)."""


class Worker:
    def __init__(self, config: WorkerConfig, progress=None):
        import torch

        self.torch = torch
        self.config = config
        self.device = torch.device(config.device)
        self.is_cuda = self.device.type == "cuda"
        self.dtype = getattr(torch, DTYPES[config.precision])
        self.progress = progress or (lambda stage, items: None)
        self.stages = {name: StageStats() for name in STAGES}
        self.model_load_seconds = {"dnabert": 0.0, "esm2": 0.0, "classifier": 0.0}
        self.model_loads = 0
        self.synthetic_weights = None
        self.budget = dict(config.token_budget)
        self.models = None
        self.compiled = {}  # stage -> CompiledEncoder
        # stage -> which kernels ran it, why fused did not, and what the fused kernels' check cost
        self.kernels = {name: {"used": "eager", "fallback": None, "check_seconds": 0.0} for name in ("dnabert", "esm2")}
        # what ESM-2 runs in now: for --precision fp8, bf16 until the fidelity check put fp8 linears in place
        self.precision_used = "bf16" if config.precision == "fp8" else config.precision
        self.calibration = None  # fidelity.Calibration of an fp8 run
        self.calibration_seconds = 0.0
        self.fp8_swapped = []  # what fp8.restore needs to put ESM-2's bf16 linears back
        self._batch_counter = 0
        self.input_wait_seconds = 0.0  # the device loop waiting for the reader thread's next part
        self._started = time.time()
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.is_cuda:
            torch.cuda.set_device(self.device)
            if config.max_memory_fraction:
                torch.cuda.set_per_process_memory_fraction(config.max_memory_fraction, self.device)

    # -- models ---------------------------------------------------------------------------------
    def load_models(self) -> None:
        from vnp.models.tokenizers import load_dnabert_tokenizer
        from vnp.models.weights import load_classifier, load_dnabert, load_esm2

        esm_config, dnabert_config = MODEL_CONFIGS[self.config.model_size]
        weights, seed = self.config.weights, self.config.seed
        t0 = time.time()
        dnabert, tokenizer = load_dnabert(weights.get("dnabert"), dnabert_config, self.device, self.dtype, seed=seed)
        t1 = time.time()
        # A weights file says which ESM-2 it is (any published size, or a narrow one for tests), as with
        # `vnp embed`; --model-size names the shape of random weights.
        esm = load_esm2(weights.get("esm2"), None if weights.get("esm2") else esm_config, self.device, self.dtype,
                        trust_pickle=self.config.trust_pickle, seed=seed)
        t2 = time.time()
        in_features = dnabert.model.config.hidden_size + esm.model.config.embed_dim
        classifier = load_classifier(weights.get("classifier"), in_features, self.device, seed=seed)
        self._sync()
        t3 = time.time()
        for loaded in (dnabert, esm):
            loaded.model.attention = self.config.attention
        self.models = {"dnabert": dnabert.model, "esm2": esm.model, "classifier": classifier.model,
                       "tokenizer": tokenizer or load_dnabert_tokenizer(weights.get("dnabert"))}
        self.synthetic_weights = {"dnabert": dnabert.synthetic, "esm2": esm.synthetic,
                                  "classifier": classifier.synthetic}
        for name, seconds in (("dnabert", t1 - t0), ("esm2", t2 - t1), ("classifier", t3 - t2)):
            self.model_load_seconds[name] += seconds
        self.model_loads += 1
        for name in ("dnabert", "esm2"):
            if name not in self.budget:
                self.budget[name] = self._default_budget(self.models[name].config)
        self._compile("dnabert", "esm2")
        self._fuse("dnabert", "esm2")
        self.fp8_swapped = []  # freshly loaded: bf16 linears, whatever the last models ran in
        if self.config.precision == "fp8":
            self.precision_used = "bf16"

    def _compile(self, *stages: str) -> None:
        """--compile: static-shape compiled layers (packed batches only; options.py refuses --no-packing).
        Inductor's cache goes beside the weights' folder, so the next run on this host reuses the kernels."""
        if not (self.config.compile and self.config.packing):
            return
        from vnp.fetch import default_dir
        from vnp.models.compiled import compile_encoder

        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default_dir() / "inductor"))
        for name in stages:
            self.compiled[name] = compile_encoder(self.models[name], self.budget[name])

    def _fuse(self, *stages: str) -> None:
        """--kernels fused: each model's packed batches through the fused kernels, if they run here and agree
        with the eager encoder on a test batch; otherwise eager, said once in one line."""
        if self.config.kernels != "fused" or not self.config.packing:
            return
        import sys

        from vnp.models.fused import fuse

        fallen = {}
        for name in stages:
            started = time.perf_counter()
            reason = fuse(self.models[name])
            entry = self.kernels[name]
            entry["check_seconds"] += time.perf_counter() - started
            if reason is not None and entry["fallback"] is None:
                fallen.setdefault(reason, []).append(name)
            entry["used"], entry["fallback"] = ("eager", reason) if reason else ("fused", None)
        for reason, names in fallen.items():
            print(f"vnp: {self.config.device}: --kernels fused: {reason}: running {' and '.join(names)} eager",
                  file=sys.stderr, flush=True)

    def _fp8_pending(self) -> bool:
        """fp8 asked for, these models not yet in fp8, and no failed check saying they must stay bf16."""
        return (self.config.precision == "fp8" and not self.fp8_swapped
                and (self.calibration is None or self.calibration.passed))

    def _use_fp8(self, store: FrameStore, rows: np.ndarray) -> None:
        """Check fp8 once on frames of ``rows`` (the shard); models reloaded for later parts follow that verdict."""
        from vnp.models.fp8 import to_fp8

        if self.calibration is None:
            self._calibrate(store, rows)
        else:  # models reloaded (--no-persistent-models): the verdict stands
            self.fp8_swapped = to_fp8(self.models["esm2"], os.environ.get("VNP_FP8_KEEP"))
            self.precision_used = "fp8"

    def _calibrate(self, store: FrameStore, rows: np.ndarray) -> None:
        """--precision fp8: keep ESM-2's fp8 linears only if the run's own frames say it is faithful."""
        import sys

        from vnp.engine import fidelity
        from vnp.models.fp8 import to_fp8

        started = time.time()
        bars = fidelity.Bars(**(self.config.fp8_bars or {}))
        sample = fidelity.calibration_sample(rows)
        esm = self.models["esm2"]
        proteins = self._tokenize("esm2", store.get("proteins", sample))
        nucleotides = self._embed("dnabert", self._tokenize("dnabert", store.get("nucleotides", sample)), record=False)
        compiled, fused = esm.compiled, esm.fused
        esm.compiled = esm.fused = None  # the reference is the eager bf16 model
        reference = self._embed("esm2", proteins, record=False)
        esm.compiled, esm.fused = compiled, fused
        self.fp8_swapped = swapped = to_fp8(esm, os.environ.get("VNP_FP8_KEEP"))  # override: linears kept bf16
        try:
            candidate = self._embed("esm2", proteins, record=False)
            self.calibration = fidelity.compare(
                reference.cpu().numpy(), candidate.cpu().numpy(),
                self._scores(nucleotides, reference), self._scores(nucleotides, candidate), bars)
        except (RuntimeError, NotImplementedError) as error:  # no fp8 GEMM on this device or torch
            self.calibration = fidelity.unusable(str(error).splitlines()[0][:200], bars)
        self.calibration_seconds = time.time() - started
        if self.calibration.passed:
            self.precision_used = "fp8"
            return
        from vnp.models.fp8 import restore

        restore(swapped)
        self.fp8_swapped = []
        self.precision_used = "bf16"
        print(f"vnp: {self.config.device}: fp8 failed its fidelity check {self.calibration.describe()}: "
              "running ESM-2 in bf16", file=sys.stderr, flush=True)

    def attach(self, stage: str, model, tokenizer=None) -> None:
        """Use an already loaded model for ``stage`` (``vnp embed`` needs one model, not three)."""
        model.attention = self.config.attention
        self.models = {**(self.models or {}), stage: model, "tokenizer": tokenizer}
        self.budget.setdefault(stage, self._default_budget(model.config))
        self._compile(stage)
        self._fuse(stage)

    def unload_models(self) -> None:
        self.models = None
        if self.is_cuda:
            self.torch.cuda.empty_cache()

    def _default_budget(self, model_config) -> int:
        hidden = getattr(model_config, "embed_dim", None) or model_config.hidden_size
        ffn = getattr(model_config, "ffn_dim", None) or getattr(model_config, "intermediate_size", 4 * hidden)
        per_token = activation_bytes_per_token(hidden, ffn, self.config.precision)
        if not self.is_cuda:
            return 8192
        free, _total = self.torch.cuda.mem_get_info(self.device)
        return default_token_budget(free, per_token)

    # -- the work -------------------------------------------------------------------------------
    def run(self, part_size: int, run_id: str) -> dict:
        """Embed and classify this worker's shard of the frame store, ``part_size`` frames at a time."""
        workdir = Path(self.config.workdir)
        store = FrameStore(workdir / "frames")
        order = np.load(workdir / "order.npy")
        mine = shard(order, self.config.rank, self.config.world)
        parts = split_parts(mine, part_size)
        todo, skipped, stale = [], 0, 0
        for number, rows in enumerate(parts):
            state = part_files.check_part(part_files.part_path(workdir, self.config.rank, number), run_id)
            if state == "done":
                skipped += 1
                self.progress("skipped", len(rows))
                continue
            stale += state == "stale"
            todo.append((number, rows))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vnp-inputs") as reader:
            upcoming = None
            for position, (number, rows) in enumerate(todo):
                self._check_parent()
                if self.models is None:
                    self.load_models()
                if self._fp8_pending():  # also when a loader thread loaded the models before run()
                    self._use_fp8(store, mine)
                tokenizer = self.models["tokenizer"]
                inputs = self._wait_for(upcoming) if upcoming else self._read_part(store, rows, tokenizer)
                if position + 1 < len(todo):  # the next part is read while the device works on this one
                    upcoming = reader.submit(self._read_part, store, todo[position + 1][1], tokenizer)
                self._run_part(inputs, part_files.part_path(workdir, self.config.rank, number), run_id)
        return self.summary(len(parts), skipped, stale)

    def _run_part(self, inputs: PartInputs, target: Path, run_id: str) -> None:
        for stage in ("dnabert", "esm2"):
            self.stages[stage].tokenize_seconds += inputs.tokenize_seconds[stage]
        dnabert = self._timed_embed("dnabert", inputs.tokens["dnabert"])
        esm = self._timed_embed("esm2", inputs.tokens["esm2"])
        scores = self._classify(dnabert, esm)
        self._check_parent()  # a killed parent's run is over: its work directory may belong to the next run
        part_files.write_part(target, run_id, inputs.rows, scores, int(inputs.tokens["dnabert"][1].sum()))
        if not self.config.persistent_models:
            self.unload_models()
        if self.config.slow_part_seconds:
            time.sleep(self.config.slow_part_seconds)

    def _read_part(self, store: FrameStore, rows: np.ndarray, tokenizer) -> PartInputs:
        tokens, seconds = {}, {}
        for stage, column in (("dnabert", "nucleotides"), ("esm2", "proteins")):
            started = time.perf_counter()
            tokens[stage] = self._tokenize(stage, store.get(column, rows), tokenizer)
            seconds[stage] = time.perf_counter() - started
        return PartInputs(rows, tokens, seconds)

    def _wait_for(self, upcoming) -> PartInputs:
        """The part the reader thread prepared; how long the device loop waited for it is counted."""
        started = time.perf_counter()
        inputs = upcoming.result()
        self.input_wait_seconds += time.perf_counter() - started
        return inputs

    def _check_parent(self) -> None:
        if self.config.parent_pid and os.getppid() != self.config.parent_pid:
            raise SystemExit(1)  # orphaned: the parent was killed; --resume will redo this part

    def _tokenize(self, stage: str, sequences: list[str], tokenizer=None):
        """(flat int64 tokens, lengths) of ``sequences`` for the ``stage`` model."""
        from vnp.models.tokenizers import dnabert_encode, esm_encode

        if stage == "esm2":
            return esm_encode(sequences)
        return dnabert_encode(tokenizer or self.models["tokenizer"], sequences)

    def embed(self, stage: str, sequences: list[str]):
        """Float32 embeddings [n, E] (on the device) of ``sequences`` with the ``stage`` model, and their tokens."""
        started = time.perf_counter()
        tokens = self._tokenize(stage, sequences)
        self.stages[stage].tokenize_seconds += time.perf_counter() - started
        return self._timed_embed(stage, tokens), int(tokens[1].sum())

    def _timed_embed(self, stage: str, tokens: tuple):
        """``_embed`` inside the stage's clock and memory counters."""
        begin = self._stage_begin()
        out = self._embed(stage, tokens)
        self._stage_end(stage, begin)
        return out

    def _embed(self, stage: str, tokens: tuple, record: bool = True):
        """Float32 embeddings [n, E] on the device of ``tokens`` (flat, lengths); ``record=False`` (the fp8
        check) leaves the stage's counters alone."""
        torch = self.torch
        model = self.models[stage]
        flat, lengths = tokens
        lengths = lengths.astype(np.int64)
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        order = length_sorted_order(lengths)
        sorted_lengths = lengths[order]
        padded = not self.config.packing
        out = torch.empty((len(lengths), model_output_dim(model)), dtype=torch.float32, device=self.device)

        def forward(start: int, end: int):
            self._maybe_inject_oom()
            return self._forward(model, flat, starts, lengths, order[start:end], int(sorted_lengths[start]))

        def cut(start: int, budget: int) -> int:
            return next_batch_end(sorted_lengths, start, budget, padded=padded)

        start = 0
        with torch.inference_mode(), sdpa_backends(stage):
            while start < len(order):
                t_batch = time.time()
                end, (emb, computed), self.budget[stage] = self._backing_off(stage, forward, cut, start,
                                                                             int(sorted_lengths[start]))
                out[self._to_device(order[start:end])] = emb.float()
                if record:
                    self._count_batch(stage, int(sorted_lengths[start:end].sum()), end - start, computed, t_batch)
                start = end
        return out

    def _forward(self, model, flat, starts, lengths, rows, longest: int):
        """One batch through ``model``: (embeddings, tokens computed, padding included)."""
        if self.config.packing:
            tokens, cu = gather_packed(flat, starts, lengths, rows)
            # cu_seqlens stays on the host: the model groups by length there, without a device sync
            return model.embed_packed(self._to_device(tokens), self.torch.from_numpy(cu), longest), len(tokens)
        matrix, lens = gather_padded(flat, starts, lengths, rows, getattr(model, "pad_id", 0))
        return model.embed_padded(self._to_device(matrix), self._to_device(lens)), matrix.size

    def _backing_off(self, stage: str, forward, cut, start: int, longest: int):
        """``backing_off`` with this device's out-of-memory errors; a record that does not fit alone is an error."""

        def backed_off() -> None:
            self.stages[stage].oom_backoffs += 1
            if self.is_cuda:
                self.torch.cuda.empty_cache()

        try:
            return backing_off(forward, cut, start, self.budget[stage],
                               (self.torch.cuda.OutOfMemoryError, InjectedOOM), backed_off)
        except (self.torch.cuda.OutOfMemoryError, InjectedOOM):
            raise VnpError(f"{stage}: one record of {longest} tokens does not fit in "
                           f"{self.config.device} memory") from None

    def _count_batch(self, stage: str, real: int, items: int, computed: int, t_batch: float) -> None:
        stats = self.stages[stage]
        stats.batches += 1
        stats.tokens += real
        stats.items += items
        stats.padding_tokens += computed - real
        if stats.first_batch_seconds is None:
            self._sync()
            stats.first_batch_seconds = time.time() - t_batch
            stats.first_batch_tokens = real
        self.progress(stage, items)

    def _scores(self, dnabert, esm) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            return self.models["classifier"].scores(torch.cat([dnabert, esm], dim=1).float()).float().cpu().numpy()

    def _classify(self, dnabert, esm) -> np.ndarray:
        begin = self._stage_begin()
        result = self._scores(dnabert, esm)
        stats = self.stages["classify"]
        stats.items += len(result)
        stats.batches += 1
        self._stage_end("classify", begin)
        bad = int((~np.isfinite(result)).any(axis=1).sum())
        if bad:
            raise NonFiniteScoresError(f"the classifier gave non-finite scores (NaN or inf) for {bad} of {len(result)} "
                                       "frames: check the weights (--classifier, --esm-weights, --dnabert-dir)")
        return result

    # -- bookkeeping ----------------------------------------------------------------------------
    def _to_device(self, array: np.ndarray):
        tensor = self.torch.from_numpy(np.ascontiguousarray(array))
        if self.is_cuda:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _sync(self) -> None:
        if self.is_cuda:
            self.torch.cuda.synchronize(self.device)

    def _memory_counters(self) -> tuple[int, int]:
        stats = self.torch.cuda.memory_stats(self.device)
        return int(stats.get("num_ooms", 0)), int(stats.get("num_alloc_retries", 0))

    def _stage_begin(self) -> dict:
        self._sync()
        begin = {"t": time.time()}
        if self.is_cuda:
            cuda = self.torch.cuda
            # Release what earlier stages cached, then reset the peaks: otherwise a stage's reserved peak is
            # the largest reserve of any stage before it (the caching allocator keeps its blocks).
            cuda.empty_cache()
            cuda.reset_peak_memory_stats(self.device)
            begin["allocated"] = int(cuda.memory_allocated(self.device))
            begin["ooms"], begin["retries"] = self._memory_counters()
        return begin

    def _stage_end(self, stage: str, begin: dict) -> None:
        self._sync()
        now = time.time()
        stats = self.stages[stage]
        stats.seconds += now - begin["t"]
        stats.intervals.append([begin["t"], now])
        if self.is_cuda:
            cuda = self.torch.cuda
            stats.peak_allocated_bytes = max(stats.peak_allocated_bytes, int(cuda.max_memory_allocated(self.device)))
            stats.peak_reserved_bytes = max(stats.peak_reserved_bytes, int(cuda.max_memory_reserved(self.device)))
            stats.start_allocated_bytes = max(stats.start_allocated_bytes, begin["allocated"])
            ooms, retries = self._memory_counters()
            stats.allocator_ooms += ooms - begin["ooms"]
            stats.allocator_retries += retries - begin["retries"]

    def _maybe_inject_oom(self) -> None:
        self._batch_counter += 1
        if self._batch_counter in self.config.fault_oom_batches:
            raise InjectedOOM(f"injected out-of-memory error at batch {self._batch_counter}")

    def summary(self, parts: int, skipped: int, stale: int = 0) -> dict:
        steady = {}
        for name in ("dnabert", "esm2"):
            s = self.stages[name]
            rest = s.seconds - (s.first_batch_seconds or 0.0)
            steady[name] = (s.tokens - s.first_batch_tokens) / rest if rest > 0 and s.batches > 1 else None
        first = [s.first_batch_seconds for s in self.stages.values() if s.first_batch_seconds is not None]
        peak_alloc = max((s.peak_allocated_bytes for s in self.stages.values()), default=0)
        peak_reserved = max((s.peak_reserved_bytes for s in self.stages.values()), default=0)
        return {
            "device": self.config.device,
            "rank": self.config.rank,
            "pid": os.getpid(),
            "model_load_seconds": self.model_load_seconds,
            "model_loads": self.model_loads,
            "synthetic_weights": self.synthetic_weights,
            "token_budget": self.budget,
            "first_batch_seconds": first[0] if first else None,
            "steady_tokens_per_second": steady,
            "parts": parts,
            "parts_skipped": skipped,
            "parts_stale": stale,
            "input_wait_seconds": self.input_wait_seconds,
            "peak_allocated_bytes": peak_alloc,
            "peak_reserved_bytes": peak_reserved,
            "started_at": self._started,
            "ended_at": time.time(),
            "stages": {name: asdict(s) for name, s in self.stages.items()},
            "precision_used": self.precision_used,
            "calibration": None if self.calibration is None else {**self.calibration.as_dict(),
                                                                  "seconds": self.calibration_seconds},
            "compile": {name: c.summary() for name, c in self.compiled.items()} or None,
            "kernels": {name: {**entry, "check_seconds": round(entry["check_seconds"], 3)}
                        for name, entry in self.kernels.items()},
        }


# Which fused SDPA kernels each model may use: the memory-efficient kernel, not cuDNN (torch's default on
# Hopper), for both models -- cuDNN builds a plan for every new shape, and token-budget batches keep making
# new ones (measured on an H200: docs/performance.md). Overridable for measurements:
# VNP_SDPA_ESM2=CUDNN_ATTENTION,FLASH_ATTENTION (names of torch.nn.attention.SDPBackend).
SDPA_BACKENDS = {"esm2": "EFFICIENT_ATTENTION", "dnabert": "EFFICIENT_ATTENTION"}


def sdpa_backends(stage: str):
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = os.environ.get(f"VNP_SDPA_{stage.upper()}") or SDPA_BACKENDS.get(stage)
    if not names:
        return contextlib.nullcontext()
    return sdpa_kernel([getattr(SDPBackend, n.strip()) for n in names.split(",")] + [SDPBackend.MATH])


def model_output_dim(model) -> int:
    config = model.config
    return getattr(config, "embed_dim", None) or config.hidden_size
