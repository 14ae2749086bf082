"""Attention on packed tokens: ``packed_attention`` (Triton) and ``packed_attention_reference`` (torch).

Each program takes one block of one sequence's queries for one head and walks that sequence's keys only,
with an online softmax in float32 (flash attention's recurrence): no padded [B, H, L, D] grid, no scatter or
gather, no key mask and no bias tensor. ALiBi (DNABERT-S) is computed in the kernel, ``-slope_h * |i - j|``
in float32. q, k and v are read through their token strides, so the three views of one fused q/k/v GEMM
output need no copy. Products of q and k, and of the probabilities (rounded to v's dtype, as the eager
kernels do) and v, accumulate in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vnp.kernels import interpreted

BLOCK = 64  # queries per program, and keys per step: one step covers a typical 51-token ESM-2 frame


@triton.jit
def _dot(a, b, UPCAST: tl.constexpr):
    if UPCAST:  # float32 inputs, or Triton's interpreter (whose bf16 products are wrong): exact float32 products
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def _packed_attention_kernel(q, k, v, out, cu_seqlens, slopes, scale,
                             q_stride, k_stride, v_stride, out_stride,
                             HEAD_DIM: tl.constexpr, DIM_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
                             ALIBI: tl.constexpr, UPCAST: tl.constexpr):
    sequence, head = tl.program_id(0), tl.program_id(1)
    first = tl.program_id(2) * BLOCK
    start = tl.load(cu_seqlens + sequence)
    length = tl.load(cu_seqlens + sequence + 1) - start
    if first >= length:  # the grid is sized for the longest sequence
        return
    rows = first + tl.arange(0, BLOCK)
    dims = tl.arange(0, DIM_BLOCK)
    dim_ok = dims < HEAD_DIM
    column = head * HEAD_DIM + dims
    row_token = (start + rows).to(tl.int64)
    row_mask = (rows < length)[:, None] & dim_ok[None, :]
    queries = tl.load(q + row_token[:, None] * q_stride + column[None, :], mask=row_mask, other=0.0)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, DIM_BLOCK], tl.float32)
    key_start = 0
    while key_start < length:  # (a while, not range(): Triton's interpreter cannot loop to a loaded bound)
        cols = key_start + tl.arange(0, BLOCK)
        col_ok = cols < length
        key_token = (start + cols).to(tl.int64)
        key_mask = col_ok[:, None] & dim_ok[None, :]
        keys = tl.load(k + key_token[:, None] * k_stride + column[None, :], mask=key_mask, other=0.0)
        values = tl.load(v + key_token[:, None] * v_stride + column[None, :], mask=key_mask, other=0.0)
        scores = _dot(queries, tl.trans(keys), UPCAST) * scale
        if ALIBI:
            distance = tl.abs(rows[:, None] - cols[None, :]).to(tl.float32)
            scores -= tl.load(slopes + head) * distance
        scores = tl.where(col_ok[None, :], scores, float("-inf"))
        new_best = tl.maximum(best, tl.max(scores, axis=1))
        p = tl.exp(scores - new_best[:, None])
        correction = tl.exp(best - new_best)
        total = total * correction + tl.sum(p, axis=1)
        acc = acc * correction[:, None] + _dot(p.to(values.dtype), values, UPCAST)
        best = new_best
        key_start += BLOCK
    acc = acc / total[:, None]
    tl.store(out + row_token[:, None] * out_stride + column[None, :], acc.to(out.dtype.element_ty), mask=row_mask)


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                     scale: float, slopes: torch.Tensor | None = None) -> torch.Tensor:
    """Attention within each sequence of token-major ``q, k, v`` [N, H, D] (any token stride); returns [N, H, D].

    ``cu_seqlens``: int32 offsets (B + 1) on q's device; ``slopes``: float32 [H] for ALiBi, or None.
    """
    tokens, heads, head_dim = q.shape
    for x in (q, k, v):
        if x.shape != q.shape or x.stride(2) != 1 or x.stride(1) != head_dim:
            raise ValueError("packed_attention needs q, k, v of one shape [N, H, D], each token's heads contiguous")
    out = torch.empty((tokens, heads, head_dim), dtype=q.dtype, device=q.device)
    grid = (cu_seqlens.numel() - 1, heads, triton.cdiv(max_seqlen, BLOCK))
    _packed_attention_kernel[grid](
        q, k, v, out, cu_seqlens, q if slopes is None else slopes, scale,
        q.stride(0), k.stride(0), v.stride(0), out.stride(0),
        HEAD_DIM=head_dim, DIM_BLOCK=max(16, triton.next_power_of_2(head_dim)), BLOCK=BLOCK,
        ALIBI=slopes is not None, UPCAST=interpreted() or q.dtype == torch.float32)
    return out


def packed_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                               scale: float, slopes: torch.Tensor | None = None) -> torch.Tensor:
    """What ``packed_attention`` computes, one sequence at a time in torch."""
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (x[start:end].transpose(0, 1).to(torch.float32) for x in (q, k, v))  # [H, L, D]
        scores = qs @ ks.transpose(1, 2) * scale
        if slopes is not None:
            position = torch.arange(end - start, device=q.device)
            distance = (position[:, None] - position[None, :]).abs().to(torch.float32)
            scores = scores - slopes.to(torch.float32)[:, None, None] * distance
        probabilities = scores.softmax(dim=-1).to(v.dtype).to(torch.float32)
        out[start:end] = (probabilities @ vs).transpose(0, 1).to(q.dtype)
    return out
