"""The compiled encoders (static token buckets) against the eager reference, on tiny models on the CPU."""

import json
import shutil

import numpy as np
import pytest
import torch
from test_predict import ORFS, cache_dir, predict  # noqa: F401 (cache_dir is a fixture)

from vnp.errors import VnpError
from vnp.models.compiled import compile_encoder
from vnp.models.dnabert import DNABERT, DNABERT_CONFIGS
from vnp.models.esm2 import ESM2, ESM2_CONFIGS

# Inductor's CPU backend compiles C++: without a compiler the compiled path cannot run here (the error it
# then gives is tested below without one).
needs_compiler = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="no C++ compiler")
LENGTHS = [52, 52, 51, 40, 33, 12, 3]  # several length groups, and a token count no bucket equals


def packed_batch(lengths, vocab, seed=0):
    generator = torch.Generator().manual_seed(seed)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    return torch.randint(4, vocab, (int(cu[-1]),), generator=generator), cu, max(lengths)


@pytest.fixture(autouse=True)
def inductor_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


@needs_compiler
@pytest.mark.parametrize("model_class, config, vocab", [(ESM2, ESM2_CONFIGS["tiny"], 30),
                                                        (DNABERT, DNABERT_CONFIGS["tiny"], 4000)])
def test_the_compiled_encoder_equals_the_eager_one(model_class, config, vocab):
    torch.manual_seed(0)
    model = model_class(config).eval()
    for parameter in model.parameters():  # larger than the init's, so a wrong op shows
        torch.nn.init.normal_(parameter, std=0.2)
    small = packed_batch(LENGTHS, vocab)
    large = packed_batch(list(range(3, 60, 5)), vocab, seed=1)  # 12 lengths: attention's padded path
    eager = [model.embed_packed(*batch) for batch in (small, large)]
    runner = compile_encoder(model, token_budget=1024)  # buckets of 128 tokens
    compiled = [model.embed_packed(*batch) for batch in (small, large, small)]
    for got, want in zip(compiled, [*eager, eager[0]]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # one compile per bucket (243 tokens -> 256, 366 -> 384), not per layer or per batch
    assert sorted(runner.first_call_seconds) == [256, 384]


@needs_compiler
def test_a_compiled_run_gives_the_eager_runs_calls_and_records_its_compile_time(tmp_path, cache_dir):  # noqa: F811
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    predict(ORFS, eager, cache_dir=cache_dir)
    predict(ORFS, compiled, "--compile", cache_dir=cache_dir)
    name = "prediction_results_highestscore.csv"
    assert (compiled / name).read_text() == (eager / name).read_text()
    record = json.loads((compiled / "run.json").read_text())
    assert record["config"]["compile"] is True and record["compile_seconds"] > 0
    assert set(record["workers"][0]["compile"]) == {"dnabert", "esm2"}
    assert json.loads((eager / "run.json").read_text())["compile_seconds"] is None


def test_compile_without_packing_is_refused(tmp_path, cache_dir):  # noqa: F811
    result = predict(ORFS, tmp_path / "out", "--compile", "--no-packing", cache_dir=cache_dir, check=False)
    assert result.returncode == 1 and "--compile needs packed batches" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_compiler_failure_is_one_line_naming_compile(monkeypatch):
    model = ESM2(ESM2_CONFIGS["tiny"]).eval()
    runner = compile_encoder(model, token_budget=1024)

    def broken(*args):
        raise RuntimeError("InductorError: CalledProcessError: gcc not found\nlong traceback")

    monkeypatch.setattr(runner, "qkv", broken)
    with pytest.raises(VnpError, match=r"^--compile: torch.compile failed \(RuntimeError: InductorError: "
                                       r"CalledProcessError: gcc not found\); run without --compile$"):
        model.embed_packed(*packed_batch(LENGTHS, 30))


@needs_compiler
def test_embed_with_compile_gives_the_eager_embeddings(tmp_path, cache_dir):  # noqa: F811
    from safetensors.numpy import load_file
    from test_predict import vnp

    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">p{i}\n{'MKTAYIAKQRGAVLIMFWPS'[: 5 + i]}\n" for i in range(12)))
    outs = [tmp_path / "eager.safetensors", tmp_path / "compiled.safetensors"]
    for out, extra in zip(outs, ([], ["--compile"])):
        vnp("embed", "esm2", fasta, "-o", out, "--model-size", "tiny", "--cpu", *extra, cache_dir=cache_dir)
    eager, compiled = (load_file(out)["embeddings"] for out in outs)
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)
