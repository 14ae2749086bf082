"""A `flash_attn` package over PyTorch's own packed attention, for the Broad fork of VirNucPro.

The fork's FlashAttention path (v2.0: `python -m virnucpro predict --parallel`, its packed ESM-2 forward)
imports `flash_attn` (version 2.6 or later) and calls one function of it:

    flash_attn_varlen_func(q, k, v, cu_seqlens_q=, cu_seqlens_k=, max_seqlen_q=, max_seqlen_k=,
                           dropout_p=0.0, causal=False, softmax_scale=...)

with q, k, v of shape [tokens, heads, head_dim] in fp16 or bf16 and int32 cumulative lengths. flash-attn itself
is a CUDA extension built against one torch, which an offline host cannot build. This package answers that
call with torch's `torch.nn.attention.varlen.varlen_attn` (the same FlashAttention-2 algorithm, vendored in
torch) on CUDA, and with one `scaled_dot_product_attention` per sequence elsewhere (tests on a CPU). It has
no installed metadata, so transformers does not take it for the real package. The harness puts its parent
folder first on the fork's PYTHONPATH for the `fork-flash` runs (benchmarks/harness/targets.py); nothing
else imports it.
"""

import inspect
import math

import torch
import torch.nn.functional as F

__version__ = "2.6.3+vnp.compat"  # the fork warns below 2.6.0


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, **unsupported):
    """flash-attn 2.6's packed attention for what the fork asks: no dropout, no other option."""
    used = {name: value for name, value in unsupported.items() if value not in (None, False, 0, 0.0, (-1, -1))}
    if used or dropout_p or k.shape[1] != q.shape[1] or not torch.equal(cu_seqlens_q, cu_seqlens_k):
        raise NotImplementedError("flash_attn compat: only self-attention without dropout, window, softcap, "
                                  f"ALiBi or grouped heads (asked: {sorted(used) or 'dropout/cross/grouped'})")
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    if q.is_cuda and hasattr(torch.nn.attention, "varlen"):
        return _varlen(q, k, v, cu_seqlens_q, max_seqlen_q, scale, causal)
    return _per_sequence(q, k, v, cu_seqlens_q.tolist(), scale, causal)


def _varlen(q, k, v, cu_seqlens, max_seqlen, scale, causal):
    from torch.nn.attention.varlen import varlen_attn

    parameters = inspect.signature(varlen_attn).parameters
    options = {}
    if "scale" in parameters:
        options["scale"] = scale
    else:  # torch 2.10's has no scale: fold it into q against the default head_dim ** -0.5
        q = q * (scale * math.sqrt(q.shape[-1]))
    if causal:
        if "is_causal" not in parameters:
            raise NotImplementedError("flash_attn compat: this torch's varlen_attn cannot be causal")
        options["is_causal"] = True
    return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, int(max_seqlen), int(max_seqlen), **options)


def _per_sequence(q, k, v, bounds, scale, causal):
    out = torch.empty_like(q)
    for start, end in zip(bounds[:-1], bounds[1:]):
        heads_first = [t[start:end].transpose(0, 1).float() for t in (q, k, v)]  # [heads, length, head_dim]
        attended = F.scaled_dot_product_attention(*heads_first, is_causal=causal, scale=scale)
        out[start:end] = attended.transpose(0, 1).to(q.dtype)
    return out
