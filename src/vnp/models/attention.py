"""Attention for packed and padded batches, shared by ESM-2 and DNABERT-S.

Both models keep their activations token-major and flat, ``[N, ...]``, so every GEMM, LayerNorm and
activation runs on exactly the tokens that exist. Only attention needs to know where sequences begin
and end; a *layout* tells it:

- ``PackedLayout``: sequences concatenated (``cu_seqlens``), no padding anywhere. Sequences are grouped
  by exact length once per batch; each group is a dense ``[n, H, L, D]`` block that needs no mask.
  When the caller orders sequences by length (the engine does), every group is a contiguous slice of
  the packed tokens and is viewed, not copied.
- ``PaddedLayout``: a ``[B, L]`` batch flattened to ``B*L`` tokens, padding included (the baseline).

Backends: ``math`` (matmul, softmax in float32, the plain reference),
``sdpa`` (``F.scaled_dot_product_attention``; which fused kernel it may pick is the caller's choice:
the engine pins the memory-efficient one, see ``engine/worker.py``) and ``varlen`` (``varlen_attn`` on the
packed tokens; CUDA, fp16/bf16 and no bias only, otherwise it falls back to ``sdpa`` with a warning).
ALiBi (DNABERT) enters as a cached broadcast bias ``(1, H, L, L)`` per length.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

BACKENDS = ("math", "sdpa", "varlen")


# -- ALiBi -------------------------------------------------------------------------------------
def alibi_slopes(num_heads: int) -> tuple[float, ...]:
    """ALiBi head slopes (Press et al.), with MosaicBERT's rule for a head count not a power of 2."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return tuple(power_of_2(num_heads))
    closest = 2 ** math.floor(math.log2(num_heads))
    return tuple(power_of_2(closest) + list(alibi_slopes(2 * closest)[0::2][: num_heads - closest]))


@functools.lru_cache(maxsize=256)
def alibi_bias(slopes: tuple[float, ...], length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The symmetric bias ``-slope_h * |i - j|`` as ``(1, H, L, L)``; built in float32 like the original."""
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode too
        position = torch.arange(length, device=device)
        distance = (position[None, :] - position[:, None]).abs()
        slope = torch.tensor(slopes, dtype=torch.float32, device=device)
        return (slope[:, None, None] * -distance).unsqueeze(0).to(dtype)


# -- layouts -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LengthGroup:
    """Sequences of one exact length: which rows of the batch, and which packed tokens (row-major)."""

    length: int
    count: int
    seqs: slice | torch.Tensor
    tokens: slice | torch.Tensor


class PackedLayout:
    """Sequences concatenated along the token axis, bounded by ``cu_seqlens`` (B+1 offsets).

    The length grouping is planned on the host: pass ``cu_seqlens`` on the CPU to spare a device sync.
    """

    def __init__(self, cu_seqlens: torch.Tensor, max_seqlen: int, device: torch.device):
        cu = cu_seqlens.detach().to("cpu", torch.int64).numpy()
        lengths = np.diff(cu)
        if len(lengths) == 0 or cu[0] != 0 or (lengths <= 0).any():
            raise ValueError("cu_seqlens must start at 0 and increase strictly")
        if int(max_seqlen) < int(lengths.max()):
            raise ValueError(f"max_seqlen {max_seqlen} is below the longest sequence ({lengths.max()})")
        self.num_seqs = len(lengths)
        self.num_tokens = int(cu[-1])
        self.max_seqlen = int(lengths.max())
        self.cu_seqlens = cu_seqlens.to(device=device, dtype=torch.int32)
        # position within its own sequence: rotary restarts at every BOS (built on the device, no copy)
        offsets = self.cu_seqlens.to(torch.int64)
        self.positions = torch.arange(self.num_tokens, device=device) - torch.repeat_interleave(
            offsets[:-1], offsets.diff(), output_size=self.num_tokens)
        self.groups = [self._group(int(length), lengths, cu[:-1], device) for length in np.unique(lengths)]
        self._padding = None
        self._padded_masks: dict = {}

    @staticmethod
    def _group(length: int, lengths: np.ndarray, starts: np.ndarray, device) -> LengthGroup:
        seqs = np.flatnonzero(lengths == length)
        count = len(seqs)
        if seqs[-1] - seqs[0] == count - 1:  # consecutive sequences: a contiguous run of tokens, a view
            first = int(starts[seqs[0]])
            return LengthGroup(length, count, slice(int(seqs[0]), int(seqs[-1]) + 1),
                               slice(first, first + count * length))
        tokens = (starts[seqs][:, None] + np.arange(length)).reshape(-1)
        return LengthGroup(length, count, _to_device(seqs, device), _to_device(tokens, device))

    def padding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each packed token sits in a [B, max_seqlen] grid (flat index), and the grid's valid keys.

        Built once per batch and shared by every layer (see ``_attention_padded``).
        """
        if self._padding is None:
            lengths = self.cu_seqlens.diff().to(torch.int64)
            row = torch.repeat_interleave(torch.arange(self.num_seqs, device=lengths.device), lengths,
                                          output_size=self.num_tokens)
            destination = row * self.max_seqlen + self.positions
            column = torch.arange(self.max_seqlen, device=lengths.device)
            self._padding = destination, column[None, :] < lengths[:, None]
        return self._padding

    def mean(self, x: torch.Tensor, skip_ends: bool) -> torch.Tensor:
        """Float32 mean of each sequence's rows of ``x`` [N, E]; ``skip_ends`` drops the first and last token."""
        out = x.new_empty((self.num_seqs, x.shape[-1]), dtype=torch.float32)
        for group in self.groups:
            rows = x[group.tokens].view(group.count, group.length, -1)
            if skip_ends:
                rows = rows[:, 1:-1]
            out[group.seqs] = rows.mean(dim=1, dtype=torch.float32)
        return out


class PaddedLayout:
    """A padded ``[B, L]`` batch flattened to ``B*L`` tokens; ``lengths`` [B] counts the real ones."""

    def __init__(self, lengths: torch.Tensor, width: int, device: torch.device):
        self.batch, self.width = len(lengths), int(width)
        column = torch.arange(self.width, device=device)
        self.lengths = lengths.to(device=device, dtype=torch.int64)
        self.valid = column[None, :] < self.lengths[:, None]  # [B, L], True on real tokens
        self.positions = column.repeat(self.batch)

    def mean(self, x: torch.Tensor, skip_ends: bool) -> torch.Tensor:
        """Float32 masked mean per row, over real tokens (without the first and last if ``skip_ends``)."""
        keep = self.valid
        if skip_ends:
            column = torch.arange(self.width, device=keep.device)
            keep = keep & (column[None, :] >= 1) & (column[None, :] < self.lengths[:, None] - 1)
        weights = keep.to(torch.float32).unsqueeze(-1)
        rows = x.view(self.batch, self.width, -1).to(torch.float32)
        return (rows * weights).sum(dim=1) / weights.sum(dim=1)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    if device.type == "cuda":  # pinned, so the copy does not wait for the work queued before it
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


# -- kernels -----------------------------------------------------------------------------------
def _math(q, k, v, scale: float, bias=None, key_valid=None):
    """Plain attention on [.., H, L, D]: scores in the model dtype, softmax in float32 (as fair-esm)."""
    scores = torch.matmul(q, k.transpose(-1, -2)).to(torch.float32) * scale
    if bias is not None:
        scores = scores + bias.to(torch.float32)
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    return torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)


def _sdpa(q, k, v, scale: float, bias=None, key_valid=None):
    mask = bias
    if key_valid is not None:
        keys = key_valid[:, None, None, :]
        mask = keys if bias is None else torch.where(keys, bias, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


@functools.cache
def _varlen_function():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@functools.cache
def _varlen_takes_scale() -> bool:
    return "scale" in inspect.signature(_varlen_function()).parameters


def _varlen(q, k, v, layout: PackedLayout, scale: float):
    head_dim = q.shape[-1]
    if _varlen_takes_scale():
        kwargs = {"scale": scale}
    else:  # torch 2.10 has no scale argument: fold ours into q against the default head_dim ** -0.5
        q, kwargs = q * (scale * math.sqrt(head_dim)), {}
    cu, longest = layout.cu_seqlens, layout.max_seqlen
    return _varlen_function()(q, k, v, cu, cu, longest, longest, **kwargs)


def _varlen_unusable(q: torch.Tensor) -> str | None:
    if _varlen_function() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (needs >= 2.10)"
    if q.device.type != "cuda":
        return "varlen_attn needs a CUDA device"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return "varlen_attn needs fp16 or bf16"
    return None


# Above this many distinct lengths in a batch (DNABERT's BPE lengths spread over ~25), one padded
# attention call per layer beats a call per length: fewer launches, and one kernel shape per batch
# instead of one per group (each new shape can cost cuDNN a plan build). GEMMs stay unpadded.
MAX_LENGTH_GROUPS = 8


def _attention_padded(q, k, v, layout: PackedLayout, kernel, scale: float, slopes):
    """Scatter the packed q/k/v into a [B, H, L, D] grid, attend with a key mask (+ ALiBi), gather back."""
    destination, valid = layout.padding()
    batch, width = valid.shape
    heads, head_dim = q.shape[-2:]

    def grid(t):
        padded = t.new_zeros((batch * width, heads, head_dim))
        padded.index_copy_(0, destination, t)
        return padded.view(batch, width, heads, head_dim).transpose(1, 2)

    if not slopes:
        out = kernel(grid(q), grid(k), grid(v), scale, None, valid)
    else:
        key = (slopes, q.dtype)
        if key not in layout._padded_masks:  # ALiBi + key mask: the same for every layer of this batch
            bias = alibi_bias(slopes, width, torch.float32, q.device)
            layout._padded_masks[key] = torch.where(valid[:, None, None, :], bias, float("-inf")).to(q.dtype)
        out = kernel(grid(q), grid(k), grid(v), scale, layout._padded_masks[key])
    return out.transpose(1, 2).reshape(batch * width, heads, head_dim)[destination]


# -- the entry point ---------------------------------------------------------------------------
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: PackedLayout | PaddedLayout,
              backend: str, *, scale: float, slopes: tuple[float, ...] | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention of token-major ``q, k, v`` [N, H, D] within each sequence; returns [N, H, D].

    ``slopes`` adds DNABERT's ALiBi bias. ``varlen`` cannot take a bias, so with ``slopes`` it is ``sdpa``.
    ``out``: write the result there (the compiled encoder's static-shape buffer) and return it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(layout, PaddedLayout):
        return _packed_attention(q, k, v, layout, backend, scale, slopes, out)
    heads, head_dim = q.shape[-2:]
    qb, kb, vb = (t.view(layout.batch, layout.width, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    bias = alibi_bias(slopes, layout.width, q.dtype, q.device) if slopes else None
    context = _kernel(backend)(qb, kb, vb, scale, bias, layout.valid).transpose(1, 2).reshape(q.shape)
    return context if out is None else out.copy_(context)


def _kernel(backend: str):
    return _math if backend == "math" else _sdpa


def _packed_attention(q, k, v, layout: PackedLayout, backend: str, scale: float, slopes, out):
    kernel = _kernel(backend)
    heads, head_dim = q.shape[-2:]
    whole = None  # kernels that return the whole result: copied into ``out`` only when one is given
    if backend == "varlen" and slopes is None:
        reason = _varlen_unusable(q)
        if reason is None:
            whole = _varlen(q, k, v, layout, scale)
        else:
            warnings.warn(f"attention 'varlen' unavailable ({reason}); using 'sdpa'", RuntimeWarning, stacklevel=3)
    if whole is None and len(layout.groups) > MAX_LENGTH_GROUPS:
        whole = _attention_padded(q, k, v, layout, kernel, scale, slopes)
    if whole is not None:
        return whole if out is None else out.copy_(whole)
    out = q.new_empty(q.shape) if out is None else out
    for group in layout.groups:
        qg, kg, vg = (t[group.tokens].view(group.count, group.length, heads, head_dim).transpose(1, 2)
                      for t in (q, k, v))
        bias = alibi_bias(slopes, group.length, q.dtype, q.device) if slopes else None
        out[group.tokens] = kernel(qg, kg, vg, scale, bias).transpose(1, 2).reshape(-1, heads, head_dim)
    return out
