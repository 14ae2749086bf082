"""Kernels at fixed shapes, in this process: chunk + six-frame translation (vnp's against the plain
original), token-budget packing, and one ESM-2 and one DNABERT-S forward pass. The shapes never change
with the commit, so the numbers compare across history; they depend on the scale (tiny models on the CPU
for `ci`, the full models in bf16 on the first GPU otherwise)."""

import numpy as np

from benchmarks.harness import datasets, original
from benchmarks.harness.suite import SCALE

READS = 5000  # ~150-nt reads, as the read datasets are made
TOKEN_BUDGET = 16384
FORWARD_SHAPES = {"esm2": (256, 52), "dnabert": (256, 33)} if SCALE.on_gpu else {"esm2": (64, 52), "dnabert": (64, 33)}
_MODELS = {}  # asv-runner repeats setup between timed calls: build each model once per process


def generated_reads(count: int, seed: int = 11) -> list[tuple[str, str]]:
    params = datasets.load_definitions()["generators"]["reads"]
    bases, lengths = datasets.reads_block(np.random.default_rng(seed), count, params)
    text = datasets.LETTERS[bases]
    return [(f"k{i}", text[i, :n].tobytes().decode()) for i, n in enumerate(lengths.tolist())]


class ChunkTranslate:
    """5,000 reads chunked (300 bp) and translated in six frames, kept frames collected."""

    params = (["vnp", "original"],)
    param_names = ("implementation",)
    version = "1"

    def setup(self, implementation):
        self.reads = generated_reads(READS)
        if implementation == "vnp":
            try:
                from vnp.preprocess import chunk_and_translate
            except ImportError:
                raise NotImplementedError("this commit has no vnp.preprocess.chunk_and_translate") from None
            self.kernel = lambda: [frames for _, frames in chunk_and_translate(self.reads, 300)]
        else:
            self.kernel = lambda: original.chunk_and_translate(self.reads, 300)

    def time_chunk_translate(self, implementation):
        self.kernel()


class Packing:
    """Length-sort 16,000 frames' ESM tokens and pack them into 16,384-token batches."""

    version = "1"

    def setup(self):
        try:
            from vnp.engine import batching
        except ImportError:
            raise NotImplementedError("this commit has no vnp.engine.batching") from None
        rng = np.random.default_rng(12)
        self.batching = batching
        self.lengths = rng.choice([35, 45, 51, 52], size=16000, p=[0.02, 0.03, 0.63, 0.32]).astype(np.int64)
        self.flat = rng.integers(4, 24, int(self.lengths.sum()))
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])

    def time_pack(self):
        order = self.batching.length_sorted_order(self.lengths)
        for start, end in self.batching.token_batches(self.lengths[order], TOKEN_BUDGET, padded=False):
            self.batching.gather_packed(self.flat, self.starts, self.lengths, order[start:end])


class Forward:
    """One packed forward pass (embeddings) at a fixed batch shape, seeded random weights."""

    params = (["esm2", "dnabert"],)
    param_names = ("model",)
    version = "1"
    timeout = 900  # building the 3B model on the GPU

    def setup(self, model):
        try:
            import torch

            from vnp.models.weights import load_dnabert, load_esm2
        except ImportError:
            raise NotImplementedError("this commit has no vnp.models.weights") from None
        if SCALE.on_gpu and not torch.cuda.is_available():
            raise NotImplementedError("no CUDA device")
        self.torch = torch
        self.device = "cuda:0" if SCALE.on_gpu else "cpu"
        if model not in _MODELS:
            dtype = torch.bfloat16 if SCALE.on_gpu else torch.float32
            size = "full" if SCALE.model_size == "full" else "tiny"
            if model == "esm2":
                loaded = load_esm2(None, {"full": "t36_3B", "tiny": "tiny"}[size], self.device, dtype)
            else:
                loaded, _ = load_dnabert(None, {"full": "dnabert-s", "tiny": "tiny"}[size], self.device, dtype)
            loaded.model.attention = "sdpa"
            _MODELS[model] = loaded.model.eval()
        self.model = _MODELS[model]
        sequences, length = FORWARD_SHAPES[model]
        first, last, low, high = (0, 2, 4, 24) if model == "esm2" else (1, 2, 5, 4096)  # BOS/CLS, EOS/SEP, ids
        tokens = np.random.default_rng(13).integers(low, high, (sequences, length))
        tokens[:, 0], tokens[:, -1] = first, last
        self.tokens = torch.from_numpy(tokens.reshape(-1)).to(self.device)
        self.cu_seqlens = torch.arange(0, sequences * length + 1, length, dtype=torch.int32)  # stays on the host
        self.length = length

    def time_forward(self, model):
        self.model.embed_packed(self.tokens, self.cu_seqlens, self.length)
        if self.device != "cpu":
            self.torch.cuda.synchronize()
