"""DNABERT-S's gated GELU in one pass: ``geglu`` (Triton) and ``geglu_reference`` (torch).

The gated layer's GEMM writes G = [a | b] per token ([N, 2I]); the MLP needs gelu(a) * b. Eagerly that is a
GELU kernel (reading a, writing it) and a multiply (reading both, writing the product); here a and b are read
once and the product written once, with GELU's exact (erf) form and the product in float32, rounded once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _geglu_kernel(gated, out, elements, width, BLOCK: tl.constexpr):
    at = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = at < elements
    source = (at // width) * (2 * width) + at % width
    a = tl.load(gated + source, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(gated + source + width, mask=mask, other=0.0).to(tl.float32)
    y = 0.5 * a * (1.0 + tl.math.erf(a * 0.7071067811865476)) * b
    tl.store(out + at, y.to(out.dtype.element_ty), mask=mask)


def geglu(gated: torch.Tensor) -> torch.Tensor:
    """gelu(G[:, :I]) * G[:, I:] of a contiguous [N, 2I] tensor, as [N, I]."""
    if not gated.is_contiguous() or gated.dim() != 2 or gated.shape[1] % 2:
        raise ValueError("geglu needs a contiguous [N, 2I] tensor")
    rows, width = gated.shape[0], gated.shape[1] // 2
    out = torch.empty((rows, width), dtype=gated.dtype, device=gated.device)
    _geglu_kernel[(triton.cdiv(rows * width, BLOCK),)](gated, out, rows * width, width, BLOCK=BLOCK)
    return out


def geglu_reference(gated: torch.Tensor) -> torch.Tensor:
    """What ``geglu`` computes, in torch."""
    a, b = gated.to(torch.float32).chunk(2, dim=-1)
    return (torch.nn.functional.gelu(a) * b).to(gated.dtype)
