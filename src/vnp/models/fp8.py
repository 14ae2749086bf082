"""fp8 (e4m3) linears for ESM-2: weights scaled per output channel once, activations per row at each call.

``torch._scaled_mm`` multiplies the fp8 operands and applies both scales in its epilogue (bf16 out). In
eager mode quantising an activation is three extra memory passes, which cost more than the faster GEMM
saves (0.82x bf16 measured on an H200); under ``torch.compile`` (``compiled.py``) Inductor folds the row
maximum, the scaling and the cast into the kernel that produces the activation (LayerNorm, GELU).

fp8 is never trusted blindly: the worker turns it on only after the fidelity check in
``engine/fidelity.py`` passes on the run's own frames, and otherwise swaps the bf16 linears back.
"""

from __future__ import annotations

import torch
from torch import nn

E4M3_MAX = 448.0  # largest finite float8_e4m3fn
# Every linear of an ESM-2 layer, by its short name (VNP_FP8_KEEP lists those to keep in bf16).
LINEARS = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
           "out_proj": "self_attn.out_proj", "fc1": "fc1", "fc2": "fc2"}


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [M, K] -> (fp8 [M, K], float32 scale [M, 1]) with x ~= fp8 * scale, each row's maximum at 448."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn), scale


class Fp8Linear(nn.Module):
    """A frozen ``nn.Linear`` with e4m3 weights; inputs are quantised per row, outputs come in their dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scale = quantize_rows(linear.weight.detach())
        self.register_buffer("weight", weight)  # [out, in]; .t() is the column-major operand _scaled_mm wants
        self.register_buffer("weight_scale", scale.t().contiguous())  # [1, out]
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        quantized, scale = quantize_rows(rows)
        out = torch._scaled_mm(quantized, self.weight.t(), scale_a=scale, scale_b=self.weight_scale,
                               out_dtype=x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], out.shape[-1])


def parse_keep(text: str | None, num_layers: int) -> tuple[set[str], set[int]]:
    """``VNP_FP8_KEEP``: comma-separated linear names (``fc2``) and layer indices (``0``, ``-1``) kept in bf16."""
    names, layers = set(), set()
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.lstrip("-").isdigit():
            layers.add(int(item) % num_layers)
        elif item in LINEARS:
            names.add(item)
        else:
            raise ValueError(f"VNP_FP8_KEEP: {item!r} is neither a layer index nor one of {', '.join(LINEARS)}")
    return names, layers


def to_fp8(model, keep: str | None = None) -> list[tuple[nn.Module, str, nn.Linear]]:
    """Swap the linears of ``model.layers`` for ``Fp8Linear`` in place; returns what ``restore`` needs."""
    names, layers = parse_keep(keep, len(model.layers))
    swapped = []
    for index, layer in enumerate(model.layers):
        if index in layers:
            continue
        for short, path in LINEARS.items():
            if short in names:
                continue
            owner_path, _, attribute = path.rpartition(".")
            owner = layer.get_submodule(owner_path) if owner_path else layer
            linear = getattr(owner, attribute)
            setattr(owner, attribute, Fp8Linear(linear))
            swapped.append((owner, attribute, linear))
    return swapped


def restore(swapped: list[tuple[nn.Module, str, nn.Linear]]) -> None:
    """Put the original linears back (the fidelity check failed)."""
    for owner, attribute, linear in swapped:
        setattr(owner, attribute, linear)
