"""The peers suite: vnp's ESM-2 against transformers' EsmModel, n/a where transformers is not installed."""

import sys

import pytest

from benchmarks import peers

BENCHMARKS = [(peers.PeerEmbed, method, param) for method in ("time_embed", "track_seconds_per_million_tokens")
              for param in peers.IMPLEMENTATIONS]
BENCHMARKS += [(peers.PeerCompare, method, None)
               for method in ("track_vnp_over_transformers_time", "track_one_minus_min_cosine")]
COMPILED = {(peers.PeerEmbed, method, "vnp-compiled") for method in ("time_embed", "track_seconds_per_million_tokens")}
COMPILED.add((peers.PeerCompareCompiled, "track_compiled_vnp_over_transformers_time", None))
BENCHMARKS += [(peers.PeerCompareCompiled, "track_compiled_vnp_over_transformers_time", None)]


def run_one(cls, method, cache, param):
    """What asv does for one benchmark: setup, the benchmark, teardown (each with the cache, then the param)."""
    args = (cache,) if param is None else (cache, param)
    benchmark = cls()
    benchmark.setup(*args)
    try:
        return getattr(benchmark, method)(*args)
    finally:
        if hasattr(benchmark, "teardown"):
            benchmark.teardown(*args)


@pytest.fixture(scope="module")
def inputs_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VNP_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_without_transformers_every_benchmark_is_not_implemented(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    cache = peers.PeerEmbed().setup_cache()
    assert "transformers is not installed" in cache["skip"]
    for cls, method, param in BENCHMARKS:
        with pytest.raises(NotImplementedError, match="transformers is not installed"):
            run_one(cls, method, cache, param)


def test_a_vnp_without_weights_is_not_implemented(monkeypatch):
    pytest.importorskip("transformers")

    def old_vnp(command, *options):
        raise NotImplementedError(f"this commit's vnp {command} has no --weights")

    monkeypatch.setattr(peers, "require", old_vnp)
    cache = peers.PeerCompare().setup_cache()
    for cls, method, param in BENCHMARKS:
        with pytest.raises(NotImplementedError, match="no --weights"):
            run_one(cls, method, cache, param)


def test_embeddings_that_disagree_fail_the_benchmark():
    cache = {"skip": None, "min_cosine": 0.9998}
    with pytest.raises(AssertionError, match="min cosine 0.999800 < 0.9999"):
        run_one(peers.PeerCompare, "track_one_minus_min_cosine", cache, None)
    cache["min_cosine"] = 0.99995
    assert run_one(peers.PeerCompare, "track_one_minus_min_cosine", cache, None) == pytest.approx(5e-5)


@pytest.fixture(scope="module")
def measured(inputs_cache):
    pytest.importorskip("transformers")
    assert not peers.SCALE.on_gpu
    return peers.PeerEmbed().setup_cache()


def test_the_whole_suite_runs_at_the_ci_scale(measured):
    """Both sides on the same frames and weights: every benchmark runs, vnp and transformers agree."""
    assert measured["skip"] is None and measured["batch_size"] in peers.BATCH_SIZES
    assert set(measured["sweep"]) == set(peers.BATCH_SIZES)
    results = {(cls.__name__, method, param): run_one(cls, method, measured, param)
               for cls, method, param in BENCHMARKS if (cls, method, param) not in COMPILED}
    for cls, method, param in COMPILED:  # compiling is measured on a GPU only
        with pytest.raises(NotImplementedError, match="not measured here"):
            run_one(cls, method, measured, param)
    assert all(value > 0 for key, value in results.items() if key[1].startswith("track_"))
    assert results[("PeerCompare", "track_one_minus_min_cosine", None)] <= 1 - peers.MIN_COSINE


def test_the_peer_pools_residues_only_as_vnp_does(measured, tmp_path):
    """The agreement is not loose: the peer's embeddings match vnp's per frame, and pooling BOS and EOS in
    too (a plausible mistake) is caught by the bar."""
    import torch

    sequences = peers.read_proteins(measured["proteins"])
    ours = peers.vnp_job(measured["proteins"], measured["weights"], tmp_path / "vnp.safetensors")
    tokenizer, model = peers.load_peer(measured["weights"])
    theirs = peers.embed_peer(tokenizer, model, sequences, batch_size=7)  # a size not swept: the order holds
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() >= peers.MIN_COSINE
    with torch.inference_mode():
        batch = tokenizer(sequences[:50], padding=True, return_tensors="pt")
        mask = batch["attention_mask"][..., None]
        with_ends = (model(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)
    assert torch.nn.functional.cosine_similarity(ours[:50], with_ends).min() < peers.MIN_COSINE


def test_a_timed_job_whose_embeddings_disagree_fails_in_teardown(tmp_path):
    """asv's own timed runs are held to the peer's embeddings too, not only setup_cache's runs."""
    import torch
    from safetensors.torch import save_file

    reference = torch.randn(20, 8)
    save_file({"embeddings": reference}, str(tmp_path / "peer.safetensors"))
    cache = {"skip": None, "min_cosine": 0.99999, "seconds": {"vnp": 1.0},
             "reference": str(tmp_path / "peer.safetensors")}
    for written, fails in ((reference * 3, False), (reference[torch.randperm(20)], True)):
        benchmark = peers.PeerEmbed()
        benchmark.setup(cache, "vnp")
        save_file({"embeddings": written.contiguous()}, str(benchmark.outputs / "embeddings.safetensors"))
        if fails:
            with pytest.raises(AssertionError, match="embeddings disagree"):
                benchmark.teardown(cache, "vnp")
        else:
            benchmark.teardown(cache, "vnp")
        assert not benchmark.outputs.exists()
