"""DNABERT-S (the DNABERT-2 / MosaicBERT layout) for inference on packed sequences.

Embeddings (word + token type 0, LayerNorm, no position embeddings), then post-LN layers: fused QKV,
attention with the ALiBi bias ``-slope_h * |i - j|``, LN(dense(attn) + x); gated-GELU MLP
LN(wo(gelu(G[:, :I]) * G[:, I:]) + x) with G = gated_layers(x) (no bias). The pooler is not used:
VirNucPro takes the mean of the last hidden states over all tokens, [CLS] and [SEP] included.
Parameter names are our own; ``weights.py`` maps the original ``bert.encoder.layer.N...`` names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vnp.models.attention import alibi_slopes
from vnp.models.encoder import PackedEncoder

PAD_ID = 3  # [PAD] of the DNABERT-S tokenizer


@dataclass(frozen=True)
class DNABERTConfig:
    name: str
    num_hidden_layers: int = 12
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 4096
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


DNABERT_CONFIGS = {c.name: c for c in (
    # tiny keeps 12 heads so the tests exercise the published (non power of 2) ALiBi slopes
    DNABERTConfig("tiny", num_hidden_layers=2, hidden_size=96, num_attention_heads=12, intermediate_size=192),
    DNABERTConfig("dnabert-s"),
)}


class DNABERTLayer(nn.Module):
    def __init__(self, config: DNABERTConfig, **factory):
        super().__init__()
        hidden, eps = config.hidden_size, config.layer_norm_eps
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.intermediate = config.intermediate_size
        self.slopes = alibi_slopes(config.num_attention_heads)
        self.attention_scale = self.head_dim**-0.5
        self.Wqkv = nn.Linear(hidden, 3 * hidden, **factory)
        self.attn_out = nn.Linear(hidden, hidden, **factory)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps, **factory)
        self.gated_layers = nn.Linear(hidden, 2 * config.intermediate_size, bias=False, **factory)
        self.wo = nn.Linear(config.intermediate_size, hidden, **factory)
        self.mlp_norm = nn.LayerNorm(hidden, eps=eps, **factory)

    def qkv(self, x: torch.Tensor, positions: torch.Tensor):
        """q, k, v [N, H, D] (ALiBi needs no positions: it enters attention as a bias)."""
        return self.Wqkv(x).view(x.shape[0], 3, self.num_heads, self.head_dim).unbind(dim=1)

    def finish(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Post-LN attention output and gated MLP, from the attention's output [N, H, D]."""
        x = self.attn_norm(self.attn_out(context.reshape(x.shape)) + x)
        gated = self.gated_layers(x)
        mixed = F.gelu(gated[:, : self.intermediate]) * gated[:, self.intermediate:]
        return self.mlp_norm(self.wo(mixed) + x)


class DNABERT(PackedEncoder):
    """DNABERT-S encoder. ``attention``: "math" or "sdpa" (default); "varlen" runs as "sdpa" (ALiBi)."""

    pad_id = PAD_ID
    pool_skips_ends = False

    def __init__(self, config: DNABERTConfig, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.config = config
        self.attention = "sdpa"
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, **factory)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size, **factory)
        self.embed_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, **factory)
        self.layers = nn.ModuleList(DNABERTLayer(config, **factory) for _ in range(config.num_hidden_layers))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed_norm(self.word_embeddings(ids) + self.token_type_embeddings.weight[0])

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return x
