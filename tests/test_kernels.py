"""Each fused kernel against its eager reference and against the models' own code, on small shapes.

On a machine without a GPU the kernels run in Triton's interpreter (numpy on the CPU); with a GPU, compiled
on it. The interpreter rounds float32 to bf16 toward zero where GPUs (and torch) round to nearest, so bf16
results may differ from the reference's by one unit in the last place: bf16 comparisons allow that, float32
ones only float32 rounding. Without Triton every test here is skipped, for that one reason.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vnp.models.attention import PackedLayout, alibi_slopes, attention
from vnp.models.esm2 import RotaryEmbedding, rotate

BF16_ULP = 2**-7  # relative size of one bf16 unit in the last place
# a sequence longer than one attention block (64), one of exactly one block, single tokens, a repeated length
LENGTHS = (70, 64, 52, 52, 1, 40, 3, 129)


@pytest.fixture
def device(monkeypatch):
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")  # read when the kernels are first imported (and at each call)
    pytest.importorskip("triton", reason="Triton is not installed: the fused kernels cannot be tested")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def close(got: torch.Tensor, expected: torch.Tensor, ulps: float = 1) -> None:
    """Equal to rounding: in bf16 within ``ulps`` units of each value, or of the tensor's typical size where a
    rounding upstream moved a value that cancels to near zero."""
    if got.dtype == torch.bfloat16:
        scale = float(expected.float().pow(2).mean().sqrt())
        torch.testing.assert_close(got, expected, rtol=ulps * BF16_ULP, atol=ulps * BF16_ULP * scale)
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def cu_seqlens(lengths, device):
    return F.pad(torch.tensor(lengths).cumsum(0), (1, 0)).to(device=device, dtype=torch.int32)


DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])


# -- rotary --------------------------------------------------------------------------------------------------
@DTYPES
def test_rotary_rotates_q_and_k_in_place_as_its_reference(device, dtype):
    from vnp.kernels.rotary import rotary_qk_, rotary_qk_reference, rotary_tables

    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(300, 5, 16, generator=generator).to(device, dtype) for _ in range(2))
    positions = torch.randint(0, 170, (300,), generator=generator).to(device)
    cos, sin = rotary_tables(positions, RotaryEmbedding(16, device=device).inv_freq)
    expected_q, expected_k = rotary_qk_reference(q, k, cos, sin, q_scale=0.25)
    got_q, got_k = rotary_qk_(q, k, cos, sin, q_scale=0.25)
    assert got_q is q and got_k is k
    close(q, expected_q)
    close(k, expected_k)


@DTYPES
def test_rotary_matches_the_models_eager_rotation(device, dtype):
    """The eager model rounds cos and sin to the activations' dtype first: equal in float32, near in bf16."""
    from vnp.kernels.rotary import rotary_qk_, rotary_tables

    layout = PackedLayout(cu_seqlens(LENGTHS, "cpu"), max(LENGTHS), device)  # BOS-relative positions
    rotary = RotaryEmbedding(64, device=device)
    generator = torch.Generator().manual_seed(1)
    q, k = (torch.randn(layout.num_tokens, 4, 64, generator=generator).to(device, dtype) for _ in range(2))
    cos, sin = rotary.cos_sin(layout.positions, dtype)
    expected_q, expected_k = rotate(q, cos * 0.125, sin * 0.125), rotate(k, cos, sin)
    rotary_qk_(q, k, *rotary_tables(layout.positions, rotary.inv_freq), q_scale=0.125)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0.02, "atol": 0.02}
    torch.testing.assert_close(q, expected_q, **tolerance)
    torch.testing.assert_close(k, expected_k, **tolerance)


def test_rotary_refuses_heads_that_are_not_contiguous(device):
    from vnp.kernels.rotary import rotary_qk_, rotary_tables

    q = torch.randn(8, 16, 4, device=device).transpose(1, 2)  # [8, 4, 16] with heads strided
    with pytest.raises(ValueError, match="contiguous"):
        rotary_qk_(q, q, *rotary_tables(torch.arange(8, device=device), torch.ones(8, device=device)))


# -- attention -----------------------------------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("alibi", [False, True])
def test_packed_attention_matches_its_reference(device, dtype, alibi):
    from vnp.kernels.attention import packed_attention, packed_attention_reference

    generator = torch.Generator().manual_seed(2)
    cu = cu_seqlens(LENGTHS, device)
    # q, k, v as views of one fused [N, 3, H, D] GEMM output, as DNABERT-S's Wqkv gives them
    q, k, v = torch.randn(int(cu[-1]), 3, 4, 16, generator=generator).to(device, dtype).unbind(dim=1)
    slopes = torch.tensor(alibi_slopes(4), device=device) if alibi else None
    got = packed_attention(q, k, v, cu, max(LENGTHS), scale=0.3, slopes=slopes)
    close(got, packed_attention_reference(q, k, v, cu, scale=0.3, slopes=slopes), ulps=2)


@DTYPES
@pytest.mark.parametrize("alibi", [False, True])
def test_packed_attention_matches_the_models_attention(device, dtype, alibi):
    """Against vnp's eager attention, which takes the padded path above 8 lengths (here 12) and rounds ALiBi
    to the activations' dtype: equal in float32, near in bf16."""
    from vnp.kernels.attention import packed_attention

    lengths = list(range(3, 60, 5))
    generator = torch.Generator().manual_seed(3)
    layout = PackedLayout(cu_seqlens(lengths, "cpu"), max(lengths), device)
    q, k, v = (torch.randn(layout.num_tokens, 12, 16, generator=generator).to(device, dtype) for _ in range(3))
    slopes = alibi_slopes(12) if alibi else None
    expected = attention(q, k, v, layout, "math", scale=0.25, slopes=slopes)
    got = packed_attention(q, k, v, layout.cu_seqlens, layout.max_seqlen, scale=0.25,
                           slopes=torch.tensor(slopes, device=device) if alibi else None)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0.05, "atol": 0.05}
    torch.testing.assert_close(got, expected, **tolerance)


# -- add + LayerNorm -----------------------------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("keep_sum", [True, False])
def test_add_layer_norm_matches_the_eager_add_then_norm(device, dtype, keep_sum):
    from vnp.kernels.layer_norm import add_layer_norm, add_layer_norm_reference

    generator = torch.Generator().manual_seed(4)
    x, residual = (torch.randn(70, 96, generator=generator).to(device, dtype) * 3 for _ in range(2))
    norm = nn.LayerNorm(96, eps=1e-5, device=device, dtype=dtype)
    with torch.no_grad():
        for parameter in (norm.weight, norm.bias):
            parameter.copy_(torch.randn(96, generator=generator))
    before, eager_x = x.clone(), x.clone()
    with torch.inference_mode():
        expected = add_layer_norm_reference(eager_x, residual, norm, keep_sum)
        got = add_layer_norm(x, residual, norm, keep_sum)
    close(x, eager_x if keep_sum else before)
    close(got, expected, ulps=2)


# -- GEGLU ---------------------------------------------------------------------------------------------------
@DTYPES
def test_geglu_matches_its_reference_and_the_models_expression(device, dtype):
    from vnp.kernels.geglu import geglu, geglu_reference

    gated = (torch.randn(50, 2 * 200, generator=torch.Generator().manual_seed(5)) * 2).to(device, dtype)
    got = geglu(gated)
    close(got, geglu_reference(gated))
    eager = F.gelu(gated[:, :200]) * gated[:, 200:]  # models/dnabert.py, rounding after each step
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0.02, "atol": 0.02}
    torch.testing.assert_close(got, eager, **tolerance)


# -- GELU in the GEMM ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_linear_gelu_is_gelu_of_the_linear(approximate):
    from vnp.kernels.gelu import linear_gelu

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    generator = torch.Generator().manual_seed(6)
    linear = nn.Linear(64, 256, device=device, dtype=dtype)
    x = torch.randn(40, 64, generator=generator).to(device, dtype)
    with torch.inference_mode():
        got = linear_gelu(x, linear, approximate)
        expected = F.gelu(linear(x), approximate=approximate)
        other = F.gelu(linear(x), approximate="none" if approximate == "tanh" else "tanh")
    close(got, expected, ulps=2)
    assert not torch.equal(got, other)
    with pytest.raises(ValueError, match="approximation"):
        linear_gelu(x, linear, "erf")
