"""Rotary positions on q and k in one pass: ``rotary_qk_`` (Triton) and ``rotary_qk_reference`` (torch).

fair-esm's rotate-half rotary: each head's halves [x1, x2] become [x1 cos - x2 sin, x2 cos + x1 sin], the angle
of pair j at position p being p * inv_freq[j], positions counted from each sequence's BOS. The eager model
(``esm2.rotate``) casts cos and sin to the activations' dtype and runs a multiply and an addcmul per half of q
and of k, each rounding; here cos and sin stay in float32 (``rotary_tables``, once per batch), the rotation runs
in float32 and each element is rounded once. q's head_dim ** -0.5 rides along (rotation is linear). q and k are
rotated in place: they are fresh GEMM outputs that nothing else reads.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def rotary_tables(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [N, head_dim / 2] in float32 of each token's angles (positions x inverse frequencies)."""
    angles = positions[:, None].to(torch.float32) * inv_freq.to(torch.float32)[None, :]
    return angles.cos(), angles.sin()


@triton.jit
def _rotate_half(x, cos, sin, scale, mask, HALF: tl.constexpr):
    x1 = tl.load(x, mask=mask, other=0.0)
    x2 = tl.load(x + HALF, mask=mask, other=0.0)
    a, b = x1.to(tl.float32), x2.to(tl.float32)
    tl.store(x, ((a * cos - b * sin) * scale).to(x1.dtype), mask=mask)
    tl.store(x + HALF, ((b * cos + a * sin) * scale).to(x1.dtype), mask=mask)


@triton.jit
def _rotary_qk_kernel(q, k, cos, sin, q_scale, tokens, q_token_stride, k_token_stride,
                      HEADS: tl.constexpr, HALF: tl.constexpr,
                      TOKEN_BLOCK: tl.constexpr, HEAD_BLOCK: tl.constexpr, HALF_BLOCK: tl.constexpr):
    # a tile of tokens x heads x pairs: cos and sin are read once per token and serve every head of q and k
    token = tl.program_id(0) * TOKEN_BLOCK + tl.arange(0, TOKEN_BLOCK)
    head = tl.program_id(1) * HEAD_BLOCK + tl.arange(0, HEAD_BLOCK)
    pair = tl.arange(0, HALF_BLOCK)
    row = token.to(tl.int64)
    pair_mask = (token < tokens)[:, None] & (pair < HALF)[None, :]
    at = row[:, None] * HALF + pair[None, :]
    c = tl.load(cos + at, mask=pair_mask, other=0.0)[:, None, :]
    s = tl.load(sin + at, mask=pair_mask, other=0.0)[:, None, :]
    mask = pair_mask[:, None, :] & (head < HEADS)[None, :, None]
    within = head[None, :, None] * (2 * HALF) + pair[None, None, :]  # heads are contiguous within a token
    _rotate_half(q + row[:, None, None] * q_token_stride + within, c, s, q_scale, mask, HALF)
    _rotate_half(k + row[:, None, None] * k_token_stride + within, c, s, 1.0, mask, HALF)


def rotary_qk_(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_scale: float = 1.0):
    """Rotate ``q`` and ``k`` [N, H, D] in place (q also scaled by ``q_scale``); cos, sin: ``rotary_tables``."""
    tokens, heads, head_dim = q.shape
    for x in (q, k):
        if x.shape != q.shape or x.stride(2) != 1 or x.stride(1) != head_dim:
            raise ValueError("rotary_qk_ needs q and k of one shape [N, H, D] with each token's heads contiguous")
    half = head_dim // 2
    head_block = min(8, triton.next_power_of_2(heads))
    half_block = triton.next_power_of_2(half)
    token_block = max(1, min(64, 2048 // (head_block * half_block)))
    grid = (triton.cdiv(tokens, token_block), triton.cdiv(heads, head_block))
    _rotary_qk_kernel[grid](q, k, cos.contiguous(), sin.contiguous(), q_scale, tokens, q.stride(0), k.stride(0),
                            HEADS=heads, HALF=half, TOKEN_BLOCK=token_block, HEAD_BLOCK=head_block,
                            HALF_BLOCK=half_block)
    return q, k


def rotary_qk_reference(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        q_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``rotary_qk_`` computes, in torch: new tensors, the inputs untouched."""
    cos, sin = cos[:, None, :], sin[:, None, :]

    def rotate(x: torch.Tensor, scale: float) -> torch.Tensor:
        x1, x2 = x.to(torch.float32).chunk(2, dim=-1)
        return (torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1) * scale).to(x.dtype)

    return rotate(q, q_scale), rotate(k, 1.0)
