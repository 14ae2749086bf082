"""A residual add and the LayerNorm after it in one pass: ``add_layer_norm`` (Triton) and its torch reference.

Between two GEMMs the eager models add the residual (one pass over both tensors, writing the sum) and then
normalise the sum (reading it again, writing the result). Here each row is read once: the sum is rounded to the
activations' dtype exactly as the eager add rounds it, its mean and variance are taken in float32, and the
normalised row is written. ESM-2 (pre-LN) keeps the sum as its residual stream (``keep_sum``: written over
``x`` in place); DNABERT-S (post-LN) needs only the normalised row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn


@triton.jit
def _add_layer_norm_kernel(x, residual, weight, bias, out, rows, cols, eps,
                           ROW_BLOCK: tl.constexpr, COL_BLOCK: tl.constexpr, KEEP_SUM: tl.constexpr):
    row = tl.program_id(0) * ROW_BLOCK + tl.arange(0, ROW_BLOCK)
    col = tl.arange(0, COL_BLOCK)
    col_ok = col < cols
    mask = (row < rows)[:, None] & col_ok[None, :]
    at = row.to(tl.int64)[:, None] * cols + col[None, :]
    a = tl.load(x + at, mask=mask, other=0.0)
    summed = (a.to(tl.float32) + tl.load(residual + at, mask=mask, other=0.0).to(tl.float32)).to(a.dtype)
    if KEEP_SUM:
        tl.store(x + at, summed, mask=mask)
    s = summed.to(tl.float32)
    mean = tl.sum(s, axis=1) / cols
    centred = tl.where(mask, s - mean[:, None], 0.0)
    inverse_std = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / cols + eps)
    w = tl.load(weight + col, mask=col_ok, other=0.0).to(tl.float32)
    b = tl.load(bias + col, mask=col_ok, other=0.0).to(tl.float32)
    y = centred * inverse_std[:, None] * w[None, :] + b[None, :]
    tl.store(out + at, y.to(a.dtype), mask=mask)


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, norm: nn.LayerNorm, keep_sum: bool) -> torch.Tensor:
    """``norm(x + residual)`` for [N, E] tensors; with ``keep_sum`` also ``x += residual`` (rounded) in place."""
    if not (x.is_contiguous() and residual.is_contiguous() and x.shape == residual.shape and x.dim() == 2):
        raise ValueError("add_layer_norm needs two contiguous [N, E] tensors of one shape")
    rows, cols = x.shape
    out = torch.empty_like(x)
    col_block = triton.next_power_of_2(cols)
    row_block = max(1, min(64, 4096 // col_block))
    _add_layer_norm_kernel[(triton.cdiv(rows, row_block),)](
        x, residual, norm.weight, norm.bias, out, rows, cols, norm.eps,
        ROW_BLOCK=row_block, COL_BLOCK=col_block, KEEP_SUM=keep_sum, num_warps=8 if col_block >= 2048 else 4)
    return out


def add_layer_norm_reference(x: torch.Tensor, residual: torch.Tensor, norm: nn.LayerNorm,
                             keep_sum: bool) -> torch.Tensor:
    """What ``add_layer_norm`` computes, in torch (the eager models' own two steps)."""
    summed = x + residual
    if keep_sum:
        x.copy_(summed)
    return norm(summed)
