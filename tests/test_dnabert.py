"""DNABERT-S against a plain padded reference written from the spec, and packed vs padded vs single."""

import math

import numpy as np
import pytest
import torch

from vnp.models.attention import alibi_bias, alibi_slopes
from vnp.models.dnabert import DNABERT, DNABERT_CONFIGS

CONFIG = DNABERT_CONFIGS["tiny"]
# the 12 published DNABERT-2 ALiBi slopes (MosaicBERT's rule for a non power of 2)
PUBLISHED_SLOPES = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
                    0.7071, 0.3536, 0.1768, 0.0884]
LENGTHS = (12, 3, 64, 12, 107, 90)  # 12 twice, not adjacent: one group gathered, not sliced


def test_alibi_slopes_are_the_published_ones():
    assert alibi_slopes(12) == pytest.approx(PUBLISHED_SLOPES, abs=1e-4)
    assert alibi_slopes(8) == pytest.approx([2.0**-i for i in range(1, 9)])


def test_alibi_bias_is_minus_slope_times_distance():
    bias = alibi_bias(alibi_slopes(12), 5, torch.float32, torch.device("cpu"))
    assert bias.shape == (1, 12, 5, 5)
    assert bias[0, 8, 1, 4].item() == pytest.approx(-3 * PUBLISHED_SLOPES[8], abs=1e-3)
    torch.testing.assert_close(bias, bias.transpose(-1, -2))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = DNABERT(CONFIG).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1 + (1.0 if parameter.ndim == 1 else 0.0))
    return model


def random_ids(seed: int, lengths=LENGTHS) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.concatenate([[1], rng.integers(5, CONFIG.vocab_size, n - 2), [2]]) for n in lengths]


def packed(seqs):
    lengths = np.array([len(s) for s in seqs])
    cu = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    return torch.from_numpy(np.concatenate(seqs)), cu, int(lengths.max())


def padded(seqs):
    lengths = np.array([len(s) for s in seqs])
    matrix = np.full((len(seqs), lengths.max()), 3, dtype=np.int64)
    for row, seq in enumerate(seqs):
        matrix[row, :len(seq)] = seq
    return torch.from_numpy(matrix), torch.from_numpy(lengths)


def reference_embeddings(model, ids, lengths):
    """The DNABERT-2 PyTorch path as the spec states it, padded, with the additive -10000 key mask."""
    p = {k: v.double() for k, v in model.state_dict().items()}
    cfg = model.config
    heads, d, inner = cfg.num_attention_heads, cfg.head_dim, cfg.intermediate_size

    def norm(x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"],
                                              cfg.layer_norm_eps)

    batch, width = ids.shape
    valid = torch.arange(width)[None, :] < lengths[:, None]
    distance = (torch.arange(width)[None, :] - torch.arange(width)[:, None]).abs()
    slopes = torch.tensor(PUBLISHED_SLOPES if heads == 12 else alibi_slopes(heads), dtype=torch.float64)
    bias = -slopes[:, None, None] * distance + (1.0 - valid[:, None, None, :].double()) * -10000.0

    x = norm(p["word_embeddings.weight"][ids] + p["token_type_embeddings.weight"][0], "embed_norm")
    for n in range(cfg.num_hidden_layers):
        w = f"layers.{n}."
        qkv = x @ p[w + "Wqkv.weight"].T + p[w + "Wqkv.bias"]
        q, k, v = (qkv[..., i * heads * d:(i + 1) * heads * d].view(batch, width, heads, d).transpose(1, 2)
                   for i in range(3))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        context = (probs @ v).transpose(1, 2).reshape(batch, width, heads * d)
        x = norm(context @ p[w + "attn_out.weight"].T + p[w + "attn_out.bias"] + x, w + "attn_norm")
        gated = x @ p[w + "gated_layers.weight"].T
        mixed = torch.nn.functional.gelu(gated[..., :inner]) * gated[..., inner:]
        x = norm(mixed @ p[w + "wo.weight"].T + p[w + "wo.bias"] + x, w + "mlp_norm")
    weights = valid.double().unsqueeze(-1)
    return ((x * weights).sum(1) / weights.sum(1)).float()  # mean over all tokens, [CLS]/[SEP] included


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_matches_the_padded_reference(model, backend):
    model.attention = backend
    seqs = random_ids(1)
    expected = reference_embeddings(model, *padded(seqs))
    torch.testing.assert_close(model.embed_packed(*packed(seqs)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["math", "sdpa", "varlen"])
def test_packed_padded_and_single_agree(model, backend):
    model.attention = backend  # "varlen" cannot carry ALiBi: it runs as "sdpa", silently
    seqs = random_ids(2)
    got = model.embed_packed(*packed(seqs))
    assert got.dtype == torch.float32 and got.shape == (len(seqs), CONFIG.hidden_size)
    torch.testing.assert_close(got, model.embed_padded(*padded(seqs)), atol=1e-5, rtol=1e-5)
    single = torch.cat([model.embed_packed(*packed([s])) for s in seqs])
    torch.testing.assert_close(got, single, atol=1e-5, rtol=1e-5)


def test_forward_returns_last_hidden_states_per_token(model):
    model.attention = "sdpa"
    seqs = random_ids(3)
    ids, cu, longest = packed(seqs)
    with torch.no_grad():
        hidden = model(ids, cu, longest)
    assert hidden.shape == (len(ids), CONFIG.hidden_size)
    torch.testing.assert_close(hidden[cu[1]:cu[2]].mean(0), model.embed_packed(ids, cu, longest)[1])


def test_full_configuration_has_the_published_size():
    full = DNABERT(DNABERT_CONFIGS["dnabert-s"], device="meta")
    # DNABERT-S: 116.48M parameters without the pooler
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(116.48e6, rel=0.002)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda_stays_close(model, dtype):
    seqs = random_ids(4)
    model.attention = "sdpa"
    expected = model.embed_packed(*packed(seqs))
    half = DNABERT(CONFIG, device="cuda", dtype=dtype).eval()
    half.load_state_dict(model.state_dict())
    ids, cu, longest = packed(seqs)
    got = half.embed_packed(ids.cuda(), cu, longest).cpu()
    assert torch.nn.functional.cosine_similarity(got, expected, dim=1).min() > 0.99
