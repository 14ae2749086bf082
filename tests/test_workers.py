"""The workers: run identity of part files, death with the parent, non-finite scores, per-stage memory, embed."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import torch
from safetensors.torch import save_file
from test_predict import ORFS, cache_dir, predict  # noqa: F401 (cache_dir is a fixture)

from vnp.engine import parts
from vnp.engine.worker import Worker, WorkerConfig
from vnp.errors import NonFiniteScoresError, VnpError
from vnp.models.classifier import MLPClassifier
from vnp.models.weights import load_esm2

PROTEINS = ["MKTAYIAKQR", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "MA", "MKV" * 40]


# -- A. a killed run's parts never count in the next run -----------------------------------------------
def test_a_part_of_another_run_in_a_resumed_work_directory_is_redone(tmp_path, cache_dir):  # noqa: F811
    reference = tmp_path / "reference"
    predict(ORFS, reference, "--records-per-part", "1", cache_dir=cache_dir)
    out = tmp_path / "out"
    # Four frames, one per part, one record per batch: the injected out-of-memory error at batch 3 (part 1's
    # first) cannot back off, so the run fails with part 0 done and its work directory kept for --resume.
    failed = predict(ORFS, out, "--records-per-part", "1", "--token-budget", "1", cache_dir=cache_dir,
                     env={"VNP_FAULT_OOM": "3"}, check=False)
    assert failed.returncode != 0 and "does not fit" in failed.stderr
    done = sorted((out / ".vnp-work" / "scores").glob("*.npz"))
    assert [p.name for p in done] == ["rank0_part00000.npz"]
    with np.load(done[0]) as data:  # what a worker of a killed earlier run would leave: other scores, other run
        rows, scores = data["rows"], data["scores"]
    np.savez(done[0], run_id=np.str_("an-earlier-run"), rows=rows, scores=scores[:, ::-1], dnabert_tokens=1)

    resumed = predict(ORFS, out, "--records-per-part", "1", "--resume", cache_dir=cache_dir)
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv"):
        assert (out / name).read_text() == (reference / name).read_text()
    assert "rank0_part00000.npz was written by another run" in resumed.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["resumed"]["parts_done_before"] == 0
    assert record["workers"][0]["parts_stale"] == 1 and record["workers"][0]["parts_skipped"] == 0
    assert record["input"]["dnabert_tokens"] == json.loads((reference / "run.json").read_text())["input"][
        "dnabert_tokens"]


def write_parts(workdir, run_id, blocks, scores):
    for number, rows in enumerate(blocks):
        parts.write_part(parts.part_path(workdir, 0, number), run_id, np.array(rows), scores[rows], len(rows))


def test_gathering_counts_only_this_runs_parts(tmp_path, capsys):
    scores = np.arange(12, dtype=np.float32).reshape(6, 2)
    run_id = parts.open_run(tmp_path, resume=False)
    write_parts(tmp_path, run_id, [[0, 1, 2], [3, 4, 5]], scores)
    foreign = parts.part_path(tmp_path, 1, 0)  # an earlier run with two workers: would double frames 0..2
    parts.write_part(foreign, "an-earlier-run", np.array([0, 1, 2]), -scores[:3], 3)
    gathered, tokens = parts.gather_scores(tmp_path, 6, run_id)
    assert (gathered == scores).all() and tokens == 6
    assert not foreign.exists() and "rank1_part00000.npz was written by another run" in capsys.readouterr().err


def test_gathering_refuses_when_another_runs_part_replaced_one_of_ours(tmp_path):
    scores = np.ones((6, 2), dtype=np.float32)
    run_id = parts.open_run(tmp_path, resume=False)
    write_parts(tmp_path, run_id, [[0, 1, 2]], scores)
    parts.write_part(parts.part_path(tmp_path, 0, 1), "an-earlier-run", np.array([3, 4, 5]), scores[3:], 3)
    with pytest.raises(VnpError, match="came from another run .* 3 frames have no score: use --resume"):
        parts.gather_scores(tmp_path, 6, run_id)


def test_the_run_id_survives_resume_only(tmp_path):
    first = parts.open_run(tmp_path, resume=False)
    assert parts.open_run(tmp_path, resume=True) == first
    assert parts.open_run(tmp_path, resume=False) != first


def test_spawned_workers_die_with_their_killed_parent(tmp_path, cache_dir):  # noqa: F811
    out = tmp_path / "orphans"
    # Each worker sleeps a minute after each part: only the parent-death signal can end it within seconds.
    parent = predict(ORFS, out, "--records-per-part", "1", "--cpu-workers", "2", cache_dir=cache_dir,
                     env={"VNP_FAULT_SLOW_PART": "60"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((out / ".vnp-work" / "scores").glob("*.npz")):
            time.sleep(0.05)
        workers = [p for p in psutil.Process(parent.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []
    finally:
        for process in workers:
            if process.is_running():
                process.kill()
        parent.kill()
        parent.wait()


# -- B. non-finite scores: refused, nothing written ---------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_classifier_that_gives_nan_is_refused(tmp_path, cache_dir, workers):  # noqa: F811
    state = MLPClassifier(160).state_dict()  # tiny models: 96 DNABERT-S + 64 ESM-2 features
    state["hidden_layer.weight"][0, 0] = float("nan")
    classifier = tmp_path / "nan.safetensors"
    save_file(state, classifier)
    out = tmp_path / "out"
    result = predict(ORFS, out, "--classifier", classifier, "--cpu-workers", workers, "--records-per-part", "1",
                     cache_dir=cache_dir, check=False)
    assert result.returncode == NonFiniteScoresError.exit_code == 6
    assert len(result.stderr.strip().splitlines()) == 1 and "non-finite scores" in result.stderr
    assert not (out / "prediction_results.txt").exists()
    assert not (out / "prediction_results_highestscore.csv").exists()


# -- C. per-stage GPU memory, with a stand-in for torch's caching allocator ------------------------------------
class FakeCachingAllocator:
    """Allocated and reserved bytes as torch.cuda reports them: freed blocks stay reserved until empty_cache."""

    def __init__(self, held: int):
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = held

    def use(self, size: int) -> None:  # a stage allocates ``size`` more bytes, then frees them
        self.allocated += size
        self.reserved = max(self.reserved, self.allocated)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        self.allocated -= size

    def patch(self, monkeypatch) -> None:
        for name, value in {
            "synchronize": lambda device=None: None,
            "empty_cache": lambda: setattr(self, "reserved", self.allocated),
            "reset_peak_memory_stats": lambda device=None: self.__dict__.update(
                peak_allocated=self.allocated, peak_reserved=self.reserved),
            "memory_allocated": lambda device=None: self.allocated,
            "max_memory_allocated": lambda device=None: self.peak_allocated,
            "max_memory_reserved": lambda device=None: self.peak_reserved,
            "memory_stats": lambda device=None: {"num_ooms": 0, "num_alloc_retries": 0},
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)


def test_each_stage_reports_its_own_peak_allocated_and_reserved_bytes(monkeypatch):
    worker = Worker(WorkerConfig(workdir="", device="cpu", rank=0, world=1))
    worker.is_cuda = True  # the bookkeeping only: no tensor goes anywhere
    allocator = FakeCachingAllocator(held=100)  # model weights
    allocator.patch(monkeypatch)
    for part in range(2):
        for stage, size in (("dnabert", 50), ("esm2", 400), ("classify", 10)):
            begin = worker._stage_begin()
            allocator.use(size + part)
            worker._stage_end(stage, begin)
    peaks = {name: (s.peak_allocated_bytes, s.peak_reserved_bytes) for name, s in worker.stages.items()}
    assert peaks == {"dnabert": (151, 151), "esm2": (501, 501), "classify": (111, 111)}
    assert {s.start_allocated_bytes for s in worker.stages.values()} == {100}  # the weights, held throughout


# -- D. embed returns its tokens; fault injection is a parameter ----------------------------------------------
def esm_worker(**config):
    worker = Worker(WorkerConfig(workdir="", device="cpu", rank=0, world=1, **config))
    worker.attach("esm2", load_esm2(None, "tiny", torch.device("cpu"), torch.float32).model)
    return worker


def test_embed_returns_embeddings_and_their_tokens():
    embeddings, tokens = esm_worker().embed("esm2", PROTEINS)
    assert embeddings.shape == (4, 64) and tokens == sum(len(p) + 2 for p in PROTEINS)


def test_injected_out_of_memory_errors_halve_the_budget_and_keep_every_record():
    clean, _ = esm_worker(token_budget={"esm2": 512}).embed("esm2", PROTEINS)
    worker = esm_worker(token_budget={"esm2": 512}, fault_oom_batches=(1, 2))
    embeddings, tokens = worker.embed("esm2", PROTEINS)
    assert worker.stages["esm2"].oom_backoffs == 2 and worker.budget["esm2"] == 128
    assert worker.stages["esm2"].items == 4 and tokens == sum(len(p) + 2 for p in PROTEINS)
    torch.testing.assert_close(embeddings, clean, rtol=1e-5, atol=1e-6)


def test_resume_refuses_weights_that_changed_under_the_same_path(tmp_path, cache_dir):  # noqa: F811
    """A killed run resumed with other weights at the same path would mix two models' scores, exit 0."""
    classifier = tmp_path / "classifier.safetensors"
    save_file(MLPClassifier(160).state_dict(), classifier)
    out = tmp_path / "out"
    failed = predict(ORFS, out, "--classifier", classifier, "--records-per-part", "1", "--token-budget", "1",
                     cache_dir=cache_dir, env={"VNP_FAULT_OOM": "3"}, check=False)
    assert failed.returncode != 0 and list((out / ".vnp-work" / "scores").glob("*.npz"))
    torch.manual_seed(1)
    save_file(MLPClassifier(160).state_dict(), classifier)  # other weights, same name and size
    resumed = predict(ORFS, out, "--classifier", classifier, "--records-per-part", "1", "--resume",
                      cache_dir=cache_dir, check=False)
    assert resumed.returncode == 4 and "another input or configuration" in resumed.stderr
    assert not (out / "prediction_results.txt").exists()


def test_helper_pool_processes_die_with_a_killed_parent(tmp_path):
    """The preprocessing and writing pools too: a kill -9 of vnp leaves no helper blocked forever."""
    script = ("import time\nfrom vnp.engine.lifetime import helper_pool\n"
              "if __name__ == '__main__':\n"
              "    with helper_pool(2) as pool:\n"
              "        list(pool.map(time.sleep, [60, 60]))\n")
    (tmp_path / "pool.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "pool.py")], cwd=tmp_path)
    try:
        deadline = time.time() + 60
        while len(helpers := psutil.Process(parent.pid).children(recursive=True)) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert len(helpers) >= 2
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(helpers, timeout=15)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        parent.kill()


# -- E. the next part is read and tokenised on a second thread while the device works -----------------------
def reading_worker(tmp_path, cache_dir, monkeypatch):  # noqa: F811
    from test_fp8 import workdir_with_frames

    monkeypatch.setenv("VNP_CACHE_DIR", str(cache_dir))
    workdir = workdir_with_frames(tmp_path)  # 12 frames
    worker = Worker(WorkerConfig(workdir=str(workdir), device="cpu", rank=0, world=1, model_size="tiny"))
    return worker, parts.open_run(workdir, resume=False)


def scores_by_row(workdir):
    found = {}
    for path in sorted((workdir / "scores").glob("*.npz")):
        with np.load(path) as data:
            found.update(zip(data["rows"].tolist(), data["scores"]))
    return np.array([found[row] for row in sorted(found)])


def test_the_next_part_is_read_while_the_device_works_on_this_one(tmp_path, cache_dir, monkeypatch):  # noqa: F811
    import threading

    worker, run_id = reading_worker(tmp_path, cache_dir, monkeypatch)
    read, embed = worker._read_part, worker._timed_embed
    started = [threading.Event() for _ in range(3)]  # parts of 4 frames
    threads, overlapped = {}, []

    def reading(store, rows, tokenizer):
        number = int(rows[0]) // 4
        threads[number] = threading.current_thread().name
        started[number].set()
        return read(store, rows, tokenizer)

    def embedding(stage, tokens):  # part k's ESM-2 waits until part k+1's read has begun: only a reader thread can
        if stage == "esm2":
            number = len(overlapped)
            overlapped.append(number == 2 or started[number + 1].wait(timeout=10))
        return embed(stage, tokens)

    monkeypatch.setattr(worker, "_read_part", reading)
    monkeypatch.setattr(worker, "_timed_embed", embedding)
    summary = worker.run(part_size=4, run_id=run_id)
    assert overlapped == [True, True, True]
    assert threads[0] == threading.current_thread().name and {threads[1], threads[2]} != {threads[0]}
    assert summary["stages"]["dnabert"]["tokenize_seconds"] > 0 and summary["input_wait_seconds"] >= 0
    assert summary["stages"]["esm2"]["items"] == 12

    whole = tmp_path / "whole"  # the same frames in one part, read on the device loop's own thread
    worker, run_id = reading_worker(whole, cache_dir, monkeypatch)
    worker.run(part_size=12, run_id=run_id)
    torch.testing.assert_close(scores_by_row(tmp_path), scores_by_row(whole), rtol=1e-5, atol=1e-6)


def test_an_error_in_the_reader_thread_fails_the_run_after_the_parts_before_it(tmp_path, cache_dir,  # noqa: F811
                                                                                 monkeypatch):
    worker, run_id = reading_worker(tmp_path, cache_dir, monkeypatch)
    read = worker._read_part

    def reading(store, rows, tokenizer):
        if int(rows[0]) == 8:
            raise VnpError("frames.bin: unreadable")
        return read(store, rows, tokenizer)

    monkeypatch.setattr(worker, "_read_part", reading)
    with pytest.raises(VnpError, match="unreadable"):
        worker.run(part_size=4, run_id=run_id)
    done = sorted(p.name for p in (tmp_path / "scores").glob("*.npz"))
    assert done == ["rank0_part00000.npz", "rank0_part00001.npz"]  # --resume redoes only the third
