"""`vnp profile`: a packed batch shaped like the pipeline's, its kernels and its GEMM-only ceiling, as JSON."""

import json

import numpy as np
import pytest
from test_predict import cache_dir, vnp  # noqa: F401 (cache_dir is a fixture)

from vnp.errors import VnpError
from vnp.profile import frame_lengths, make_batch


def test_the_batch_holds_frames_of_the_given_lengths_longest_first():
    batch = make_batch(33, 5000, (40, 61), "cpu", seed=3)
    assert 5000 - 61 < batch.num_tokens <= 5000 and batch.max_seqlen == batch.lengths[0]
    assert (np.diff(batch.lengths) <= 0).all() and batch.lengths.min() >= 40 and batch.lengths.max() <= 61
    assert len(np.unique(batch.lengths)) > 8  # the spread that sends eager attention down its padded path
    assert batch.cu_seqlens.tolist() == [0, *np.cumsum(batch.lengths).tolist()]
    assert int(batch.tokens.min()) >= 4 and int(batch.tokens.max()) < 33


def test_frame_lengths_are_read_or_refused():
    assert frame_lengths("51-52") == (51, 52) and frame_lengths("34") == (34, 34)
    for text in ("52-51", "2-5", "a-b"):
        with pytest.raises(VnpError, match="--frame-lengths"):
            frame_lengths(text)


@pytest.mark.parametrize("model", ["esm2", "dnabert"])
def test_profile_writes_kernels_and_the_gemm_only_ceiling(tmp_path, cache_dir, model):  # noqa: F811
    out = tmp_path / "profile.json"
    done = vnp("profile", model, "--model-size", "tiny", "--cpu", "--tokens", "2000", "--repeats", "1",
               "--out", out, cache_dir=cache_dir)
    assert "of its GEMM-only ceiling" in done.stderr
    document = json.loads(out.read_text())
    assert document["schema"] == "vnp-profile/1" and document["model"] == model
    assert document["kernels_used"] == "eager" and 1900 < document["tokens"] <= 2000
    assert document["profile"]["activity"] == "cpu"
    names = {kernel["name"] for kernel in document["profile"]["kernels"]}
    assert "aten::addmm" in names and all(kernel["seconds"] >= 0 for kernel in document["profile"]["kernels"])
    assert document["fraction_of_gemm_ceiling"] == pytest.approx(
        document["tokens_per_second"] / document["gemm_only_tokens_per_second"])


def test_fused_kernels_without_a_gpu_profile_eager_and_say_so(tmp_path, cache_dir):  # noqa: F811
    out = tmp_path / "profile.json"
    done = vnp("profile", "esm2", "--model-size", "tiny", "--cpu", "--tokens", "500", "--repeats", "1",
               "--kernels", "fused", "--out", out, cache_dir=cache_dir, env={"TRITON_INTERPRET": "0"})
    assert "--kernels fused:" in done.stderr and "profiling esm2 eager" in done.stderr
    document = json.loads(out.read_text())
    assert document["kernels"] == "fused" and document["kernels_used"] == "eager" and document["kernels_fallback"]


@pytest.mark.parametrize("model", ["esm2", "dnabert"])
def test_the_profiled_model_has_the_pipelines_synthetic_weights(model):
    import torch

    from vnp.models.weights import load_dnabert, load_esm2
    from vnp.profile import build_model

    built = build_model(model, "tiny", "cpu", torch.float32, seed=3)
    if model == "esm2":
        loaded = load_esm2(None, "tiny", "cpu", torch.float32, seed=3)
    else:
        loaded = load_dnabert(None, "tiny", "cpu", torch.float32, seed=3)[0]
    expected = loaded.model.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in built.state_dict().items())
