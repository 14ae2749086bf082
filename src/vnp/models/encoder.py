"""What ESM-2 and DNABERT-S share: packed or padded tokens in, float32 mean embeddings out."""

from __future__ import annotations

import torch
from torch import nn

from vnp.models.attention import PackedLayout, PaddedLayout


class PackedEncoder(nn.Module):
    """A transformer encoder over token-major activations; subclasses define ``_encode(tokens, layout)``.

    ``pool_skips_ends``: the mean leaves out each sequence's first and last token (ESM-2: BOS and EOS)
    or keeps every token (DNABERT-S: [CLS] and [SEP] included, as VirNucPro pools).
    """

    pool_skips_ends: bool
    attention: str = "sdpa"  # "math" | "sdpa" | "varlen", per run

    def _encode(self, tokens: torch.Tensor, layout) -> torch.Tensor:
        raise NotImplementedError

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
