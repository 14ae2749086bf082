"""One worker per device: embeds its shard with DNABERT-S and ESM-2, classifies, streams scores to disk.

A worker walks its shard part by part (``part_size`` frames each). For each part it embeds the
nucleotides, then the proteins, concatenates the two embeddings, runs the MLP and writes the part's
scores atomically; the file's existence is the part's completion marker, so ``--resume`` redoes only
the parts without one. Batches are cut by a token budget; a batch that runs out of GPU memory halves
the budget and is retried, so no record is ever dropped or duplicated.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vnp.atomic import atomic_write
from vnp.engine.batching import gather_packed, gather_padded, length_sorted_order, next_batch_end, shard, split_parts
from vnp.engine.devices import DTYPES, activation_bytes_per_token, default_token_budget
from vnp.engine.store import FrameStore
from vnp.errors import VnpError

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
    token_budget: dict = field(default_factory=dict)  # {"dnabert": n, "esm2": n}; missing = sized from free memory
    weights: dict = field(default_factory=dict)  # {"esm2": path, "dnabert": dir, "classifier": path}
    trust_pickle: bool = False
    max_memory_fraction: float | None = None
    threads: int | None = None
    seed: int = 0
    parent_pid: int | None = None  # a spawned worker stops when this process is gone (killed parent)


@dataclass
class StageStats:
    seconds: float = 0.0
    items: int = 0
    tokens: int = 0
    padding_tokens: int = 0
    batches: int = 0
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    oom_backoffs: int = 0
    allocator_ooms: int = 0
    allocator_retries: int = 0
    first_batch_seconds: float | None = None
    first_batch_tokens: int = 0
    intervals: list = field(default_factory=list)


class InjectedOOM(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError when VNP_FAULT_OOM asks for one (tests, CPU)."""


def scores_path(workdir: Path, rank: int, part: int) -> Path:
    return Path(workdir) / "scores" / f"rank{rank}_part{part:05d}.npz"


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
        self._batch_counter = 0
        self._fault_batches = {int(v) for v in os.environ.get("VNP_FAULT_OOM", "").split(",") if v.strip()}
        self._slow_parts = float(os.environ.get("VNP_FAULT_SLOW_PART", "0") or 0)
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
        esm = load_esm2(weights.get("esm2"), esm_config, self.device, self.dtype,
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
        self.synthetic_weights = {"dnabert": dnabert.synthetic, "esm2": esm.synthetic, "classifier": classifier.synthetic}
        for name, seconds in (("dnabert", t1 - t0), ("esm2", t2 - t1), ("classifier", t3 - t2)):
            self.model_load_seconds[name] += seconds
        self.model_loads += 1
        for name in ("dnabert", "esm2"):
            if name not in self.budget:
                self.budget[name] = self._default_budget(self.models[name].config)

    def attach(self, stage: str, model, tokenizer=None) -> None:
        """Use an already loaded model for ``stage`` (``vnp embed`` needs one model, not three)."""
        model.attention = self.config.attention
        self.models = {**(self.models or {}), stage: model, "tokenizer": tokenizer}
        self.budget.setdefault(stage, self._default_budget(model.config))

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
    def run(self, part_size: int) -> dict:
        """Embed and classify this worker's shard of the frame store, ``part_size`` frames at a time."""
        workdir = Path(self.config.workdir)
        store = FrameStore(workdir / "frames")
        order = np.load(workdir / "order.npy")
        parts = split_parts(shard(order, self.config.rank, self.config.world), part_size)
        skipped = 0
        for number, rows in enumerate(parts):
            if self.config.parent_pid and os.getppid() != self.config.parent_pid:
                raise SystemExit(1)  # orphaned: the parent was killed; --resume will redo this part
            target = scores_path(workdir, self.config.rank, number)
            if target.exists():
                skipped += 1
                self.progress("skipped", len(rows))
                continue
            if self.models is None:
                self.load_models()
            nucleotides = store.get("nucleotides", rows)
            proteins = store.get("proteins", rows)
            dnabert = self.embed("dnabert", nucleotides)
            esm = self.embed("esm2", proteins)
            scores = self._classify(dnabert, esm)
            with atomic_write(target, "wb") as handle:
                np.savez(handle, rows=rows, scores=scores, dnabert_tokens=self._last_dnabert_tokens)
            if not self.config.persistent_models:
                self.unload_models()
            if self._slow_parts:  # test hook: widen the window in which a test can kill a run
                time.sleep(self._slow_parts)
        return self.summary(len(parts), skipped)

    def _tokenize(self, stage: str, sequences: list[str]):
        from vnp.models.tokenizers import dnabert_encode, esm_encode

        if stage == "esm2":
            return esm_encode(sequences)
        return dnabert_encode(self.models["tokenizer"], sequences)

    def embed(self, stage: str, sequences: list[str]):
        """Float32 embeddings [n, E] (on the device) of ``sequences`` with the ``stage`` model."""
        torch = self.torch
        stats = self.stages[stage]
        model = self.models[stage]
        begin = self._stage_begin()
        flat, lengths = self._tokenize(stage, sequences)
        lengths = lengths.astype(np.int64)
        if stage == "dnabert":
            self._last_dnabert_tokens = int(lengths.sum())
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        order = length_sorted_order(lengths)
        sorted_lengths = lengths[order]
        out = torch.empty((len(sequences), model_output_dim(model)), dtype=torch.float32, device=self.device)
        pad = getattr(model, "pad_id", 0)
        start = 0
        with torch.inference_mode(), sdpa_backends(stage):
            while start < len(order):
                end = next_batch_end(sorted_lengths, start, self.budget[stage], padded=not self.config.packing)
                rows = order[start:end]
                t_batch = time.time()
                try:
                    self._maybe_inject_oom()
                    if self.config.packing:
                        tokens, cu = gather_packed(flat, starts, lengths, rows)
                        # cu_seqlens stays on the host: the model groups by length there, without a device sync
                        emb = model.embed_packed(self._to_device(tokens), self.torch.from_numpy(cu),
                                                 int(sorted_lengths[start]))
                        computed = len(tokens)
                    else:
                        matrix, lens = gather_padded(flat, starts, lengths, rows, pad)
                        emb = model.embed_padded(self._to_device(matrix), self._to_device(lens))
                        computed = matrix.size
                except (torch.cuda.OutOfMemoryError, InjectedOOM):
                    if end - start == 1:
                        raise VnpError(f"{stage}: one record of {sorted_lengths[start]} tokens does not fit in "
                                       f"{self.config.device} memory") from None
                    stats.oom_backoffs += 1
                    self.budget[stage] = max(1, self.budget[stage] // 2)
                    if self.is_cuda:
                        torch.cuda.empty_cache()
                    continue
                out[self._to_device(rows)] = emb.float()
                real = int(sorted_lengths[start:end].sum())
                stats.batches += 1
                stats.tokens += real
                stats.items += end - start
                stats.padding_tokens += computed - real
                if stats.first_batch_seconds is None:
                    self._sync()
                    stats.first_batch_seconds = time.time() - t_batch
                    stats.first_batch_tokens = real
                self.progress(stage, end - start)
                start = end
        self._stage_end(stage, begin)
        return out

    def _classify(self, dnabert, esm) -> np.ndarray:
        torch = self.torch
        begin = self._stage_begin()
        with torch.inference_mode():
            scores = self.models["classifier"].scores(torch.cat([dnabert, esm], dim=1).float())
            result = scores.float().cpu().numpy()
        stats = self.stages["classify"]
        stats.items += len(result)
        stats.batches += 1
        self._stage_end("classify", begin)
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
            self.torch.cuda.reset_peak_memory_stats(self.device)
            begin["ooms"], begin["retries"] = self._memory_counters()
        return begin

    def _stage_end(self, stage: str, begin: dict) -> None:
        self._sync()
        now = time.time()
        stats = self.stages[stage]
        stats.seconds += now - begin["t"]
        stats.intervals.append([begin["t"], now])
        if self.is_cuda:
            torch = self.torch
            stats.peak_allocated_bytes = max(stats.peak_allocated_bytes, int(torch.cuda.max_memory_allocated(self.device)))
            stats.peak_reserved_bytes = max(stats.peak_reserved_bytes, int(torch.cuda.max_memory_reserved(self.device)))
            ooms, retries = self._memory_counters()
            stats.allocator_ooms += ooms - begin["ooms"]
            stats.allocator_retries += retries - begin["retries"]

    def _maybe_inject_oom(self) -> None:
        self._batch_counter += 1
        if self._batch_counter in self._fault_batches:
            raise InjectedOOM(f"injected out-of-memory error at batch {self._batch_counter} (VNP_FAULT_OOM)")

    def summary(self, parts: int, skipped: int) -> dict:
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
            "peak_allocated_bytes": peak_alloc,
            "peak_reserved_bytes": peak_reserved,
            "started_at": self._started,
            "ended_at": time.time(),
            "stages": {name: asdict(s) for name, s in self.stages.items()},
        }


# Which fused SDPA kernels each model may use. Measured on an H200 (torch 2.11, bf16, reads-like
# frames; docs/performance.md): the memory-efficient kernel beat cuDNN, torch's default on Hopper,
# for both models -- cuDNN builds a plan for every new shape, and token-budget batches keep making
# new ones (DNABERT-S 1.03M vs 0.56M tokens/s, ESM-2 3B 94.5k vs 91.0k). Overridable for measurements:
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
