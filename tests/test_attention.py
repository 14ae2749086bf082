"""The padded attention path (many distinct lengths) against the per-length path, on the CPU."""

import pytest
import torch

from vnp.models import attention as attn


@pytest.mark.parametrize("backend", ["math", "sdpa"])
@pytest.mark.parametrize("slopes", [None, attn.alibi_slopes(4)])
def test_padded_path_matches_the_per_length_path(monkeypatch, backend, slopes):
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([23, 23, 21, 19, 17, 16, 14, 12, 9, 7, 5, 3, 2, 1])  # more groups than the threshold
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).to(torch.int32)
    q, k, v = (torch.randn(int(lengths.sum()), 4, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    layout = attn.PackedLayout(cu, int(lengths.max()), torch.device("cpu"))
    assert len(layout.groups) > attn.MAX_LENGTH_GROUPS
    padded = attn.attention(q, k, v, layout, backend, scale=0.3, slopes=slopes)
    monkeypatch.setattr(attn, "MAX_LENGTH_GROUPS", 10**6)
    grouped = attn.attention(q, k, v, attn.PackedLayout(cu, int(lengths.max()), torch.device("cpu")), backend,
                             scale=0.3, slopes=slopes)
    # the math kernel takes its softmax in float32 (as fair-esm does), hence float32-level tolerances
    torch.testing.assert_close(padded, grouped, rtol=1e-5, atol=1e-6)
