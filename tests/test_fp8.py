"""--precision fp8: the fp8 linears, and the fidelity check that decides whether a run may use them."""

import numpy as np
import pytest
import torch
from test_predict import ORFS, cache_dir, predict  # noqa: F401 (cache_dir is a fixture)

from vnp.engine import fidelity, parts
from vnp.engine.devices import resolve_precision
from vnp.engine.store import FrameStoreWriter
from vnp.engine.worker import Worker, WorkerConfig
from vnp.errors import VnpError
from vnp.models.fp8 import Fp8Linear, parse_keep, quantize_rows, to_fp8
from vnp.runrecord import RunRecord

PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "MAVLKEWWQ", "MKV" * 16] * 3
NUCLEOTIDES = ["ATGAAAACCGCGTATATTGCGAAACAGCGC", "ATGTCCACCAACCCCAAGCCG", "ATGGCCGTGCTG", "ATGAAAGTG" * 5] * 3


class Store:
    """What the worker reads from the frame store: sequences by field and row."""

    def get(self, field, rows):
        return [(NUCLEOTIDES if field == "nucleotides" else PROTEINS)[r] for r in rows]


def fp8_worker(monkeypatch, cache_dir, bars=None):  # noqa: F811
    monkeypatch.setenv("VNP_CACHE_DIR", str(cache_dir))
    worker = Worker(WorkerConfig(workdir="", device="cpu", rank=0, world=1, model_size="tiny", precision="fp8",
                                 fp8_bars=bars))
    worker.load_models()
    return worker


def fp8_linears(worker):
    return sum(isinstance(m, Fp8Linear) for m in worker.models["esm2"].modules())


def test_quantized_rows_reconstruct_the_input_within_e4m3_precision():
    x = torch.randn(8, 64) * torch.logspace(-3, 3, 8)[:, None]  # rows of very different magnitudes
    quantized, scale = quantize_rows(x)
    assert quantized.dtype == torch.float8_e4m3fn and scale.shape == (8, 1)
    assert quantized.float().abs().amax(dim=1).eq(448).all()  # every row uses the whole range
    torch.testing.assert_close(quantized.float() * scale, x, rtol=0.07, atol=0)  # 3 mantissa bits


def test_layers_and_linears_can_be_kept_in_bf16():
    assert parse_keep("fc2, 0,-1", 36) == ({"fc2"}, {0, 35})
    with pytest.raises(ValueError, match="fc3"):
        parse_keep("fc3", 36)


def test_an_fp8_run_that_fails_its_fidelity_check_runs_in_bf16_and_says_so(monkeypatch, cache_dir, capsys):  # noqa: F811
    worker = fp8_worker(monkeypatch, cache_dir, bars={"min_cosine": 1.01})  # a bar no frame can reach
    worker._use_fp8(Store(), np.arange(len(PROTEINS)))
    assert worker.precision_used == "bf16" and fp8_linears(worker) == 0
    summary = worker.summary(1, 0)
    assert summary["precision_used"] == "bf16"
    assert summary["calibration"]["passed"] is False and summary["calibration"]["frames"] == len(PROTEINS)
    assert "fp8 failed its fidelity check on 12 frames" in capsys.readouterr().err
    assert worker.stages["esm2"].items == 0  # calibration is not counted as the run's work


def test_an_fp8_run_that_passes_keeps_fp8_also_after_a_model_reload(monkeypatch, cache_dir):  # noqa: F811
    worker = fp8_worker(monkeypatch, cache_dir, bars={"min_cosine": 0.9, "cosine_share": 0.5})
    worker._use_fp8(Store(), np.arange(len(PROTEINS)))
    assert worker.precision_used == "fp8" and worker.calibration.passed
    assert worker.calibration.cosine_min > 0.9 and fp8_linears(worker) == 12  # 6 per layer, 2 layers
    worker.unload_models()
    worker.load_models()  # --no-persistent-models: the verdict holds for the reloaded model
    worker._use_fp8(Store(), np.arange(len(PROTEINS)))
    assert fp8_linears(worker) == 12


def workdir_with_frames(path):
    """A work directory as preprocessing leaves it: the frame store and the length order."""
    writer = FrameStoreWriter(path / "frames")
    writer.append(ids=[f"f{i}" for i in range(len(PROTEINS))], nucleotides=NUCLEOTIDES, proteins=PROTEINS)
    writer.close()
    np.save(path / "order.npy", np.arange(len(PROTEINS)))
    return path


@pytest.mark.parametrize("persistent", [True, False])
@pytest.mark.parametrize("bars, used", [({"min_cosine": 0.9, "cosine_share": 0.5}, "fp8"),
                                        ({"min_cosine": 1.01}, "bf16")])
def test_a_run_checks_fp8_also_when_its_models_were_loaded_before_it(monkeypatch, cache_dir, tmp_path,  # noqa: F811
                                                                     bars, used, persistent):
    """On one device the models load on a thread during preprocessing, before run(): the check must still
    happen, and run.json must never say fp8 for a model that ran in bf16 (H200, b0a1480a: it did)."""
    monkeypatch.setenv("VNP_CACHE_DIR", str(cache_dir))
    workdir = workdir_with_frames(tmp_path)
    worker = Worker(WorkerConfig(workdir=str(workdir), device="cpu", rank=0, world=1, model_size="tiny",
                                 precision="fp8", fp8_bars=bars, persistent_models=persistent))
    worker.load_models()  # the loader thread's work
    summary = worker.run(part_size=5, run_id=parts.open_run(workdir, resume=False))
    assert summary["calibration"] is not None and summary["precision_used"] == used
    assert summary["calibration"]["frames"] == len(PROTEINS)  # the whole shard, not only the first part
    if persistent:
        assert fp8_linears(worker) == (12 if used == "fp8" else 0)


def test_an_fp8_gemm_that_cannot_run_falls_back_with_its_reason(monkeypatch, cache_dir):  # noqa: F811
    def no_fp8(*args, **kwargs):
        raise RuntimeError("torch._scaled_mm is only supported on CUDA devices with compute capability >= 9.0")

    monkeypatch.setattr(torch, "_scaled_mm", no_fp8)
    worker = fp8_worker(monkeypatch, cache_dir)
    worker._use_fp8(Store(), np.arange(len(PROTEINS)))
    assert worker.precision_used == "bf16" and fp8_linears(worker) == 0
    assert "compute capability" in worker.calibration.error and not worker.calibration.passed


def test_the_check_fails_on_disagreeing_calls_or_embeddings():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(1000, 16))
    scores = rng.random((1000, 2))
    same = fidelity.compare(reference, reference * 2, scores, scores)  # cosine ignores scale
    assert same.passed and same.cosine_min == pytest.approx(1.0)
    flipped = scores.copy()
    flipped[:3] = flipped[:3, ::-1]  # three of 1,000 calls change: 99.7% < 99.8%
    assert not fidelity.compare(reference, reference, scores, flipped).passed
    noisy = reference + rng.normal(scale=0.1, size=reference.shape)  # cosine ~0.995
    assert not fidelity.compare(reference, noisy, scores, scores).passed
    reference[0] = np.nan  # a NaN embedding is a disagreeing frame, not a pass
    assert fidelity.compare(reference, reference, scores, scores).cosine_min == -1.0


def test_run_json_says_what_precision_each_worker_used(monkeypatch, cache_dir):  # noqa: F811
    summaries = []
    for bars in ({"min_cosine": 1.01}, {"min_cosine": 0.9, "cosine_share": 0.5}):
        worker = fp8_worker(monkeypatch, cache_dir, bars=bars)
        worker._use_fp8(Store(), np.arange(len(PROTEINS)))
        summaries.append(worker.summary(1, 0))
    record = RunRecord(["vnp"])
    record.set_config({"precision": "fp8"})
    record.add_worker_stages(summaries)
    data = record.to_dict()
    assert (data["precision_requested"], data["precision_used"]) == ("fp8", "mixed")
    assert [c["passed"] for c in data["calibration"]] == [False, True]
    record.add_worker_stages(summaries[1:])
    assert record.to_dict()["precision_used"] == "fp8"


def test_fp8_needs_a_gpu_of_compute_capability_8_9(tmp_path, cache_dir):  # noqa: F811
    result = predict(ORFS, tmp_path / "out", "--precision", "fp8", cache_dir=cache_dir, check=False)
    assert result.returncode == 1 and "needs a GPU" in result.stderr
    with pytest.raises(VnpError, match="8.9"):
        resolve_precision("fp8", [{"capability": [8, 0]}])
    assert resolve_precision("fp8", [{"capability": [9, 0]}]) == "fp8"


def test_fp8_linears_swap_in_place_and_keep_what_is_asked():
    from vnp.models.esm2 import ESM2, ESM2Config

    model = ESM2(ESM2Config("x", num_layers=3, embed_dim=64, num_heads=4), dtype=torch.bfloat16)
    swapped = to_fp8(model, "fc2,1")
    assert len(swapped) == 2 * 5  # layers 0 and 2, five linears each
    assert isinstance(model.layers[0].fc1, Fp8Linear) and not isinstance(model.layers[0].fc2, Fp8Linear)
    assert not isinstance(model.layers[1].fc1, Fp8Linear)


def test_the_calibration_sample_spreads_over_the_length_sorted_shard():
    shard = np.arange(10_000)[::-1]  # as the worker holds it: longest first
    sample = fidelity.calibration_sample(shard)
    assert len(sample) == fidelity.CALIBRATION_FRAMES and len(set(sample)) == len(sample)
    assert sample[0] == shard[0] and sample[-1] == shard[-1]  # from the longest to the shortest
    small = np.arange(7)
    assert fidelity.calibration_sample(small) is small
