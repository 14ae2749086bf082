"""Encoders whose glue runs in fused kernels (``vnp predict --kernels fused``); the eager models stay the reference.

ESM-2, per layer: the q, k and v GEMMs; rotary on q and k in one kernel; attention on the packed tokens; out_proj;
its residual add fused with the LayerNorm that follows; fc1 with GELU in its epilogue; fc2; its residual add fused
with the next layer's first LayerNorm (after the last layer, with ``emb_layer_norm_after``). DNABERT-S (post-LN),
per layer: the q/k/v GEMM; attention with ALiBi on the packed tokens; add + LayerNorm; the gated GELU in one kernel;
add + LayerNorm. The GEMMs are the models' own modules, so fp8 linears (``fp8.py``) run here unchanged.

``fuse(model)`` turns this on only after a small batch through both encoders agrees: a kernel that does not
compile on this host, or computes wrong, leaves the model eager, and the caller says why in one line.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from vnp.kernels import unavailable
from vnp.models.attention import PackedLayout, _varlen, _varlen_unusable

# Attention on the packed tokens. Torch's own kernels where one fits: "varlen" (torch.nn.attention.varlen, flash;
# public, no bias), "efficient" (the memory-efficient kernel's varlen form) and "flash" (flash's, which takes ALiBi
# slopes): the last two are private aten ops, measured as alternatives. "triton": ours, ALiBi computed in the kernel.
# Where torch's cannot run (the CPU, fp32) ours does. VNP_FUSED_ATTENTION_ESM2 / _DNABERT override (measurements).
ATTENTION = {"esm2": "varlen", "dnabert": "triton"}
ATTENTIONS = ("varlen", "efficient", "flash", "triton")
# fc1's GELU: "tanh" rides in the GEMM's epilogue on CUDA (kernels/gelu.py); "none" is fair-esm's erf, one
# elementwise pass more. VNP_FUSED_GELU overrides.
ESM_GELU = "tanh"
CHECK_LENGTHS = (70, 52, 52, 40, 3)  # longer than one attention block, a repeated length, a short one
CHECK_MIN_COSINE = 0.999  # a wrong kernel lands far below; bf16 rounding moved the tiny models' cosine by ~2e-5


def attention_backend(model: str, alibi: bool) -> str:
    """The attention kernel for ``model`` (``ATTENTION``, or its VNP_FUSED_ATTENTION_* override)."""
    variable = f"VNP_FUSED_ATTENTION_{model.upper()}"
    backend = os.environ.get(variable) or ATTENTION[model]
    if backend not in ATTENTIONS:
        raise ValueError(f"{variable}={backend!r}: choose one of {', '.join(ATTENTIONS)}")
    if alibi and backend in ("varlen", "efficient"):
        raise ValueError(f"{variable}={backend}: that kernel cannot add ALiBi")
    return backend


def packed_attention(backend: str, q, k, v, layout: PackedLayout, scale: float, slopes=None) -> torch.Tensor:
    """Attention within each sequence of the packed [N, H, D] ``q, k, v`` by ``backend`` (``ATTENTIONS``)."""
    cu, longest = layout.cu_seqlens, layout.max_seqlen
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        if backend == "varlen" and _varlen_unusable(q) is None:
            return _varlen(q, k, v, layout, scale=scale)
        if backend == "efficient":  # batch of one, its sequences bounded by cu_seqlens
            return torch.ops.aten._efficient_attention_forward(
                q[None], k[None], v[None], None, cu, cu, longest, longest, 0.0, 0, scale=scale)[0][0]
        if backend == "flash":
            return torch.ops.aten._flash_attention_forward(
                q, k, v, cu, cu, longest, longest, 0.0, False, False, scale=scale, alibi_slopes=slopes)[0]
    from vnp.kernels.attention import packed_attention as triton_attention

    return triton_attention(q, k, v, cu, longest, scale, slopes)


class FusedESM2:
    def __init__(self, model):
        self.model = model
        self.attention = attention_backend("esm2", alibi=False)
        self.gelu = os.environ.get("VNP_FUSED_GELU") or ESM_GELU
        # every layer has its own inverse frequencies (loaded from the checkpoint); equal ones share a table
        self.frequencies, self.frequency_of = [], []
        for layer in model.layers:
            inv_freq = layer.self_attn.rot_emb.inv_freq
            same = [i for i, seen in enumerate(self.frequencies) if torch.equal(seen, inv_freq)]
            if not same:
                self.frequencies.append(inv_freq)
            self.frequency_of.append(same[0] if same else len(self.frequencies) - 1)

    def encode(self, tokens: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        from vnp.kernels.gelu import linear_gelu
        from vnp.kernels.layer_norm import add_layer_norm
        from vnp.kernels.rotary import rotary_qk_, rotary_tables

        model, layers = self.model, self.model.layers
        tables = [rotary_tables(layout.positions, inv_freq) for inv_freq in self.frequencies]
        x = model.embed(tokens)  # the residual stream, updated in place by add_layer_norm
        h = layers[0].self_attn_layer_norm(x)
        for index, layer in enumerate(layers):
            attn = layer.self_attn
            shape = (layout.num_tokens, attn.num_heads, attn.head_dim)
            q, k, v = (projection(h).view(shape) for projection in (attn.q_proj, attn.k_proj, attn.v_proj))
            rotary_qk_(q, k, *tables[self.frequency_of[index]], q_scale=attn.scaling)
            context = packed_attention(self.attention, q, k, v, layout, scale=1.0)  # q carries its scale
            h = add_layer_norm(x, attn.out_proj(context.reshape(x.shape)), layer.final_layer_norm, keep_sum=True)
            after = layers[index + 1].self_attn_layer_norm if index + 1 < len(layers) else model.emb_layer_norm_after
            h = add_layer_norm(x, layer.fc2(linear_gelu(h, layer.fc1, self.gelu)), after, keep_sum=True)
        return h


class FusedDNABERT:
    def __init__(self, model):
        self.model = model
        self.attention = attention_backend("dnabert", alibi=True)
        device = model.word_embeddings.weight.device
        self.slopes = [torch.tensor(layer.slopes, dtype=torch.float32, device=device) for layer in model.layers]

    def encode(self, tokens: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        from vnp.kernels.geglu import geglu
        from vnp.kernels.layer_norm import add_layer_norm

        x = self.model.embed(tokens)
        for layer, slopes in zip(self.model.layers, self.slopes):
            qkv = layer.Wqkv(x).view(layout.num_tokens, 3, layer.num_heads, layer.head_dim)
            context = packed_attention(self.attention, *qkv.unbind(dim=1), layout, layer.attention_scale, slopes)
            x = add_layer_norm(layer.attn_out(context.view(x.shape)), x, layer.attn_norm, keep_sum=False)
            x = add_layer_norm(layer.wo(geglu(layer.gated_layers(x))), x, layer.mlp_norm, keep_sum=False)
        return x


def fuse(model) -> str | None:
    """Run ``model``'s packed batches through the fused kernels (``model.fused``); None when it does, else why not."""
    from vnp.models.dnabert import DNABERT

    model.fused = None
    device = next(model.parameters()).device
    reason = unavailable(device)
    if reason is not None:
        return reason
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor(CHECK_LENGTHS)
    tokens = torch.randint(4, model.config.vocab_size, (int(lengths.sum()),), generator=generator).to(device)
    cu_seqlens = F.pad(lengths.cumsum(0), (1, 0))
    try:
        fused = FusedDNABERT(model) if isinstance(model, DNABERT) else FusedESM2(model)
        eager = model.embed_packed(tokens, cu_seqlens, max(CHECK_LENGTHS))
        model.fused = fused
        candidate = model.embed_packed(tokens, cu_seqlens, max(CHECK_LENGTHS))
    except Exception as error:  # no C compiler for Triton's launcher, a kernel this GPU cannot run, ...
        model.fused = None
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return f"a test batch failed in the fused kernels ({type(error).__name__}: {first})"
    cosine = float(F.cosine_similarity(eager.double(), candidate.double(), dim=1).min())
    if not cosine >= CHECK_MIN_COSINE:  # NaN fails too
        model.fused = None
        return f"the fused kernels disagree with the eager encoder on a test batch (pooled cosine {cosine:.5f})"
    return None
