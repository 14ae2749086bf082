"""Fused kernels for the glue between the GEMMs (``vnp predict --kernels fused``), one fusion per module.

Each module holds a Triton kernel, the function that launches it and, beside it, its eager reference: the
same arithmetic in plain torch, which the tests hold the kernel to. The models' own eager code
(``models/esm2.py``, ``models/dnabert.py``) stays the pipeline's reference and its fallback.

- ``rotary``: rotary positions on q and k in one pass (angles in float32 from BOS-relative positions).
- ``attention``: attention on the packed tokens, ALiBi computed in the kernel: no padded grid, no bias.
- ``layer_norm``: the residual add and the LayerNorm after it in one pass (float32 statistics).
- ``geglu``: DNABERT-S's gated GELU, both halves of the GEMM's output read once.
- ``gelu``: GELU in fc1's GEMM epilogue (cuBLASLt), no kernel of ours.

The Triton modules import Triton at import time: import them only once ``unavailable()`` says nothing.
"""

from __future__ import annotations

import importlib.util
import os

KERNELS = ("eager", "fused")


def interpreted() -> bool:
    """Triton's interpreter runs kernels on the CPU with numpy (``TRITON_INTERPRET=1``): how the tests run them."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def unavailable(device) -> str | None:
    """Why the fused kernels cannot run on ``device`` (a torch.device), or None when they can."""
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    if device.type != "cuda" and not interpreted():
        return f"the fused kernels need a CUDA device, not {device.type}"
    return None
