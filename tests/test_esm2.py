"""ESM-2 against fair-esm's own module, and packed vs padded vs one-at-a-time for every CPU backend."""

import numpy as np
import pytest
import torch

from vnp.models.esm2 import ESM2, ESM2_CONFIGS
from vnp.models.tokenizers import esm_encode

esm = pytest.importorskip("esm")

CONFIG = ESM2_CONFIGS["tiny"]
RESIDUES = "LAGVSERTIDPKQNFYMHWCX"
# mixed lengths; 7 twice but not adjacent, so one length group is gathered rather than sliced
LENGTHS = (7, 1, 40, 7, 101, 166, 25)


def random_proteins(seed: int, lengths=LENGTHS) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(RESIDUES), n)) for n in lengths]


def packed_inputs(proteins):
    tokens, lengths = esm_encode(proteins)
    cu = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    return torch.from_numpy(tokens), cu, int(lengths.max()), lengths


def padded_inputs(proteins):
    tokens, lengths = esm_encode(proteins)
    matrix = np.full((len(lengths), lengths.max()), 1, dtype=np.int64)
    matrix[np.arange(lengths.max()) < lengths[:, None]] = tokens
    return torch.from_numpy(matrix), torch.from_numpy(lengths.astype(np.int64))


@pytest.fixture(scope="module")
def models():
    """fair-esm's ESM2 with random weights, and ours holding the same state dict."""
    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    theirs = esm.model.esm2.ESM2(CONFIG.num_layers, CONFIG.embed_dim, CONFIG.num_heads, alphabet=alphabet,
                                 token_dropout=True).eval()
    with torch.no_grad():  # perturb everything, so a swapped or ignored tensor shows
        for parameter in theirs.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    ours = ESM2(CONFIG).eval()
    state = {k: v for k, v in theirs.state_dict().items() if not k.startswith(("lm_head", "contact_head"))}
    ours.load_state_dict(state, strict=True)
    return theirs, ours


def test_matches_fair_esm_per_residue_and_pooled(models):
    theirs, ours = models
    proteins = random_proteins(1)
    matrix, _ = padded_inputs(proteins)
    with torch.no_grad():
        reference = theirs(matrix, repr_layers=[CONFIG.num_layers])["representations"][CONFIG.num_layers]
        tokens, cu, longest, lengths = packed_inputs(proteins)
        packed = ours(tokens, cu, longest)
    pooled = ours.embed_packed(tokens, cu, longest)
    for i, n in enumerate(lengths):
        rows = packed[cu[i]:cu[i + 1]]
        torch.testing.assert_close(rows, reference[i, :n], atol=1e-5, rtol=1e-5)
        # VirNucPro's pooling: mean of representations[i, 1 : len(protein) + 1]
        torch.testing.assert_close(pooled[i], reference[i, 1:n - 1].mean(0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_packed_padded_and_single_agree(models, backend):
    _, ours = models
    ours.attention = backend
    proteins = random_proteins(2)
    tokens, cu, longest, _ = packed_inputs(proteins)
    packed = ours.embed_packed(tokens, cu, longest)
    padded = ours.embed_padded(*padded_inputs(proteins))
    single = torch.cat([ours.embed_packed(*packed_inputs([p])[:3]) for p in proteins])
    assert packed.dtype == torch.float32 and packed.shape == (len(proteins), CONFIG.embed_dim)
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed, single, atol=1e-5, rtol=1e-5)


def test_backends_agree(models):
    _, ours = models
    inputs = packed_inputs(random_proteins(3))[:3]
    results = {}
    for backend in ("math", "sdpa"):
        ours.attention = backend
        results[backend] = ours.embed_packed(*inputs)
    torch.testing.assert_close(results["math"], results["sdpa"], atol=1e-5, rtol=1e-5)


def test_varlen_falls_back_with_a_warning_on_cpu(models):
    _, ours = models
    inputs = packed_inputs(random_proteins(4))[:3]
    ours.attention = "sdpa"
    expected = ours.embed_packed(*inputs)
    ours.attention = "varlen"
    with pytest.warns(RuntimeWarning, match="varlen"):
        got = ours.embed_packed(*inputs)
    ours.attention = "sdpa"
    torch.testing.assert_close(got, expected)


def test_unknown_backend_is_refused(models):
    _, ours = models
    ours.attention = "flash"
    try:
        with pytest.raises(ValueError, match="flash"):
            ours.embed_packed(*packed_inputs(random_proteins(5))[:3])
    finally:
        ours.attention = "sdpa"


def test_bf16_keeps_rotary_in_float32_and_stays_close(models):
    _, ours = models
    half = ESM2(CONFIG, dtype=torch.bfloat16).eval()
    half.load_state_dict(ours.state_dict())
    assert half.layers[0].self_attn.rot_emb.inv_freq.dtype == torch.float32
    assert half.embed_tokens.weight.dtype == torch.bfloat16
    inputs = packed_inputs(random_proteins(6))[:3]
    got, expected = half.embed_packed(*inputs), ours.embed_packed(*inputs)
    assert got.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=1)
    assert cosine.min() > 0.99


def test_all_published_configurations_build_on_meta():
    sizes = {name: sum(p.numel() for p in ESM2(cfg, device="meta").parameters())
             for name, cfg in ESM2_CONFIGS.items()}
    # published ESM-2 sizes, encoder-only parameter counts (the LM head is not built)
    assert sizes["t6_8M"] == pytest.approx(7.41e6, rel=0.01)
    assert sizes["t33_650M"] == pytest.approx(649.4e6, rel=0.01)
    assert sizes["t36_3B"] == pytest.approx(2832.4e6, rel=0.01)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_varlen_matches_sdpa_on_cuda(models):
    _, ours = models
    model = ESM2(CONFIG, device="cuda", dtype=torch.bfloat16).eval()
    model.load_state_dict(ours.state_dict())
    tokens, cu, longest, _ = packed_inputs(random_proteins(7))
    inputs = (tokens.cuda(), cu.cuda(), longest)
    model.attention = "sdpa"
    expected = model.embed_packed(*inputs)
    model.attention = "varlen"
    torch.testing.assert_close(model.embed_packed(*inputs), expected, atol=2e-2, rtol=2e-2)
