"""ESM-2 (fair-esm ``esm.model.esm2.ESM2``) for inference on packed sequences.

The same computation as fair-esm, token for token: pre-LN layers, q scaled by head_dim ** -0.5, rotary
positions counted from each sequence's BOS (angles in float32), attention softmax in float32, the
token-dropout scale 0.88, the final ``emb_layer_norm_after``. Parameter names are fair-esm's (after its
``encoder.`` prefix), so a fair-esm state dict loads as is; the LM and contact heads are left out
(inference needs neither).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vnp.models.encoder import PackedEncoder

# fair-esm's token dropout at inference: embeddings * (1 - 0.15 * 0.8) / (1 - share of <mask> tokens).
# esm_encode never emits <mask>, so the share is 0 and the factor a constant.
TOKEN_DROPOUT_SCALE = 1 - 0.15 * 0.8
PAD_ID = 1


@dataclass(frozen=True)
class ESM2Config:
    name: str
    num_layers: int
    embed_dim: int
    num_heads: int
    vocab_size: int = 33
    layer_norm_eps: float = 1e-5

    @property
    def ffn_dim(self) -> int:
        return 4 * self.embed_dim

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


ESM2_CONFIGS = {c.name: c for c in (
    ESM2Config("tiny", num_layers=2, embed_dim=64, num_heads=4),
    ESM2Config("t6_8M", num_layers=6, embed_dim=320, num_heads=20),
    ESM2Config("t12_35M", num_layers=12, embed_dim=480, num_heads=20),
    ESM2Config("t30_150M", num_layers=30, embed_dim=640, num_heads=20),
    ESM2Config("t33_650M", num_layers=33, embed_dim=1280, num_heads=20),
    ESM2Config("t36_3B", num_layers=36, embed_dim=2560, num_heads=40),
)}


class RotaryEmbedding(nn.Module):
    """Rotate-half (non-interleaved) rotary embedding; the angles are always computed in float32."""

    def __init__(self, head_dim: int, device=None):
        super().__init__()
        # Loaded from the checkpoint when present: the published values carry fp16 rounding.
        self.register_buffer("inv_freq", torch.empty(head_dim // 2, dtype=torch.float32, device=device))
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        dim = 2 * self.inv_freq.numel()
        exponent = torch.arange(0, dim, 2, dtype=torch.float32, device=self.inv_freq.device) / dim
        self.inv_freq.copy_(1.0 / (10000**exponent))

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype):
        """cos and sin [N, 1, D/2] of each token's angles: computed in float32 (positions above 256 are not
        exact in bf16), then cast to the activations' dtype so the rotation runs in fast same-dtype kernels."""
        angles = positions[:, None].to(torch.float32) * self.inv_freq.to(torch.float32)[None, :]
        return angles.cos().to(dtype)[:, None, :], angles.sin().to(dtype)[:, None, :]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin] (fair-esm's x cos + rotate_half(x) sin), in place
    into one new tensor: rotary is memory-bound, so no temporaries."""
    x1, x2 = x.chunk(2, dim=-1)
    if torch.compiler.is_compiling():  # Inductor fuses the plain expression (and cannot trace out= into views)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    out = torch.empty_like(x)
    out1, out2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=out1).addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=out2).addcmul_(x1, sin)
    return out


class SelfAttention(nn.Module):
    def __init__(self, config: ESM2Config, **factory):
        super().__init__()
        dim = config.embed_dim
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(dim, dim, **factory)
        self.k_proj = nn.Linear(dim, dim, **factory)
        self.v_proj = nn.Linear(dim, dim, **factory)
        self.out_proj = nn.Linear(dim, dim, **factory)
        self.rot_emb = RotaryEmbedding(self.head_dim, device=factory.get("device"))

    def qkv(self, x: torch.Tensor, positions: torch.Tensor):
        """q (scaled), k and v [N, H, D] of normalised ``x``, with rotary positions applied."""
        shape = (x.shape[0], self.num_heads, self.head_dim)
        cos, sin = self.rot_emb.cos_sin(positions, x.dtype)
        # fair-esm scales q by head_dim ** -0.5 before rotary; rotary is linear, so the scale rides on cos/sin
        q = rotate(self.q_proj(x).view(shape), cos * self.scaling, sin * self.scaling)
        k = rotate(self.k_proj(x).view(shape), cos, sin)
        return q, k, self.v_proj(x).view(shape)


class TransformerLayer(nn.Module):
    """Pre-LN: x + attn(LN(x)), then x + fc2(gelu(fc1(LN(x)))).

    Split around attention (``qkv``, then ``finish``) so the encoder can compile the two halves with static
    shapes while attention, which depends on the batch's sequence lengths, stays eager (``compiled.py``).
    """

    attention_scale = 1.0  # q is scaled with the rotary angles
    slopes = None  # no ALiBi

    def __init__(self, config: ESM2Config, **factory):
        super().__init__()
        dim, eps = config.embed_dim, config.layer_norm_eps
        self.self_attn = SelfAttention(config, **factory)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps, **factory)
        self.fc1 = nn.Linear(dim, config.ffn_dim, **factory)
        self.fc2 = nn.Linear(config.ffn_dim, dim, **factory)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps, **factory)

    def qkv(self, x: torch.Tensor, positions: torch.Tensor):
        return self.self_attn.qkv(self.self_attn_layer_norm(x), positions)

    def finish(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The rest of the layer, from the attention's output [N, H, D]."""
        x = x + self.self_attn.out_proj(context.reshape(x.shape))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class ESM2(PackedEncoder):
    """ESM-2 encoder. ``attention`` picks the backend: "math", "sdpa" (default) or "varlen". Its last-layer
    states are fair-esm's ``representations[num_layers]``; embeddings are the mean over residues only."""

    pad_id = PAD_ID
    pool_skips_ends = True

    def __init__(self, config: ESM2Config, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.config = config
        self.attention = "sdpa"
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID, **factory)
        self.layers = nn.ModuleList(TransformerLayer(config, **factory) for _ in range(config.num_layers))
        self.emb_layer_norm_after = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps, **factory)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(tokens) * TOKEN_DROPOUT_SCALE

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb_layer_norm_after(x)
