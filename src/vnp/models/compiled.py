"""Encoders compiled with static shapes: each layer's two halves, one set of kernels per token bucket.

``torch.compile`` with symbolic shapes made ESM-2 4% slower than eager on an H200 (docs/performance.md);
with static shapes Inductor writes kernels for the exact sizes (LayerNorm, GELU, rotary, bias and
residual adds fused around cuBLAS's GEMMs). A packed batch of N tokens is padded to the next multiple of
``step`` (an eighth of the token budget), so a worker compiles a handful of shapes per model, not one per
batch. The padding rows are pad tokens at position 0: computed, never attended to, and cut off.

Attention stays eager between the halves (``qkv`` and ``finish``): how it groups a batch depends on the
sequence lengths, which static kernels cannot. The eager encoder (``PackedEncoder._encode``) remains
the reference; the compiled one agrees with it to rounding (tests/test_compiled.py).
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from vnp.errors import VnpError
from vnp.models.attention import PackedLayout, attention

BUCKETS_PER_BUDGET = 8
# Every layer of a model shares one compiled graph per bucket (its parameters are graph inputs); Dynamo's
# default of 8 cached graphs per function would be too few once budgets back off after an out-of-memory error.
RECOMPILE_LIMIT = 64


def _qkv(layer, x, positions):
    return layer.qkv(x, positions)


def _finish(layer, x, context):
    return layer.finish(x, context)


class CompiledEncoder:
    """Runs a ``PackedEncoder``'s packed batches through static-shape compiled layers.

    ``first_call_seconds``: bucket size -> seconds of its first batch (compiling it, or loading it from
    Inductor's cache, plus one run), the price of compiling that ``run.json`` reports.
    """

    def __init__(self, model, token_budget: int, mode: str | None = None):
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
        self.model = model
        self.mode = mode or os.environ.get("VNP_COMPILE_MODE") or None  # measurement override
        self.step = max(16, -(-token_budget // (BUCKETS_PER_BUDGET * 16)) * 16)  # multiples of 16 suit the GEMMs
        self.qkv = torch.compile(_qkv, dynamic=False, mode=self.mode)
        self.finish = torch.compile(_finish, dynamic=False, mode=self.mode)
        self.first_call_seconds: dict[int, float] = {}

    def bucket(self, tokens: int) -> int:
        return -(-tokens // self.step) * self.step

    def encode(self, tokens: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        size = self.bucket(layout.num_tokens)
        if size in self.first_call_seconds:
            return self._encode(tokens, layout, size)
        _synchronize(tokens.device)
        started = time.perf_counter()
        try:
            out = self._encode(tokens, layout, size)
        except torch.cuda.OutOfMemoryError:
            raise  # the worker backs off and retries with smaller batches
        except Exception as error:  # Inductor needs a C compiler and Triton; say what failed, in one line
            reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            raise VnpError(f"--compile: torch.compile failed ({reason[:300]}); run without --compile") from error
        _synchronize(tokens.device)
        self.first_call_seconds[size] = time.perf_counter() - started
        return out

    def _encode(self, tokens: torch.Tensor, layout: PackedLayout, size: int) -> torch.Tensor:
        model, real = self.model, layout.num_tokens
        x = model.embed(F.pad(tokens, (0, size - real), value=model.pad_id))
        positions = F.pad(layout.positions, (0, size - real))
        context = None
        for layer in model.layers:
            q, k, v = self.qkv(layer, x, positions)
            if context is None:  # padding rows stay zero: finite, and cut off at the end
                context = q.new_zeros(q.shape)
            attention(q[:real], k[:real], v[:real], layout, model.attention, scale=layer.attention_scale,
                      slopes=layer.slopes, out=context[:real])
            x = self.finish(layer, x, context)
        return model.final(x[:real])

    def summary(self) -> dict:
        return {"mode": self.mode or "default", "step": self.step,
                "first_call_seconds": {str(k): round(v, 3) for k, v in sorted(self.first_call_seconds.items())}}


def compile_encoder(model, token_budget: int) -> CompiledEncoder:
    """Make ``model``'s packed batches run compiled; returns the compiled runner (also ``model.compiled``)."""
    model.compiled = CompiledEncoder(model, token_budget)
    return model.compiled


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
