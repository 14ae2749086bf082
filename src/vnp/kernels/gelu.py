"""fc1 and its GELU in one GEMM: the activation in cuBLASLt's epilogue (``torch._addmm_activation``).

A kernel of our own cannot beat the eager pair here: the GEMM already adds the bias in its epilogue, so a
separate bias + GELU kernel reads and writes fc1's output exactly as often as ``F.gelu`` does. Only the GEMM's
epilogue saves that pass. On CUDA, ``_addmm_activation(..., use_gelu=True)`` uses cuBLASLt's GELU_BIAS
epilogue, which is the tanh approximation: PyTorch's own fallback for it (aten/src/ATen/native/cuda/Blas.cpp)
applies ``gelu(approximate="tanh")`` to match, while its CPU version applies the exact (erf) GELU. So
``approximate="tanh"`` takes the epilogue on CUDA and is the plain tanh GELU elsewhere, and
``approximate="none"`` (fair-esm's erf) is always the eager pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

APPROXIMATIONS = ("tanh", "none")


def linear_gelu(x: torch.Tensor, linear: nn.Module, approximate: str) -> torch.Tensor:
    """``gelu(linear(x), approximate)`` for [N, K] ``x``; in one GEMM where the epilogue computes the same."""
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"GELU approximation {approximate!r}: choose one of {', '.join(APPROXIMATIONS)}")
    if approximate == "tanh" and x.is_cuda and type(linear) is nn.Linear and linear.bias is not None:
        return torch._addmm_activation(linear.bias, x, linear.weight.t(), use_gelu=True)
    return F.gelu(linear(x), approximate=approximate)
