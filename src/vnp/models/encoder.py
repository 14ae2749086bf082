"""What ESM-2 and DNABERT-S share: packed or padded tokens in, float32 mean embeddings out."""

from __future__ import annotations

import torch
from torch import nn

from vnp.models.attention import PackedLayout, PaddedLayout, attention


class PackedEncoder(nn.Module):
    """A transformer encoder over token-major activations.

    Subclasses define ``embed(tokens)``, ``final(x)`` and ``layers``, whose members split at attention:
    ``qkv(x, positions) -> q, k, v`` and ``finish(x, context) -> x``, with ``attention_scale`` and
    ``slopes`` (ALiBi or None). ``pool_skips_ends``: the mean leaves out each sequence's first and last token
    (ESM-2: BOS and EOS) or keeps every token (DNABERT-S: [CLS] and [SEP] included, as VirNucPro pools).
    ``compiled``: set by ``compiled.compile_encoder``; packed batches then run its static-shape kernels.
    ``fused``: set by ``fused.fuse``; packed batches then run its fused kernels.
    """

    pool_skips_ends: bool
    attention: str = "sdpa"  # "math" | "sdpa" | "varlen", per run
    compiled = None
    fused = None

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def final(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode(self, tokens: torch.Tensor, layout) -> torch.Tensor:
        if self.compiled is not None and isinstance(layout, PackedLayout):
            return self.compiled.encode(tokens, layout)
        if self.fused is not None and isinstance(layout, PackedLayout):
            return self.fused.encode(tokens, layout)
        x = self.embed(tokens)
        for layer in self.layers:
            q, k, v = layer.qkv(x, layout.positions)
            context = attention(q, k, v, layout, self.attention, scale=layer.attention_scale, slopes=layer.slopes)
            x = layer.finish(x, context)
        return self.final(x)

    def forward(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """Packed tokens [T] -> last-layer states [T, E]."""
        return self._encode(tokens, PackedLayout(cu_seqlens, max_seqlen, tokens.device))

    @torch.inference_mode()
    def embed_packed(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """Float32 [B, E]: each sequence's mean state. Pass ``cu_seqlens`` on the CPU: no device sync."""
        layout = PackedLayout(cu_seqlens, max_seqlen, tokens.device)
        return layout.mean(self._encode(tokens, layout), skip_ends=self.pool_skips_ends)

    @torch.inference_mode()
    def embed_padded(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The same embeddings from a padded [B, L] batch; every GEMM also runs on the padding."""
        layout = PaddedLayout(lengths, tokens.shape[1], tokens.device)
        return layout.mean(self._encode(tokens.reshape(-1), layout), skip_ends=self.pool_skips_ends)
