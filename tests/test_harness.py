"""The harness: command lines, run records, validation, samplers, resume, limits, and both targets."""

import ast
import dataclasses
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.harness import datasets, host, metrics, record, runs, samplers, targets
from benchmarks.harness import scale as scales

REPO = Path(__file__).resolve().parents[1]
CI = scales.SCALES["ci"]

# A stand-in pipeline honouring the command-line contract: the original's rules for what to write, and
# switches (environment) to misbehave. Fast and torch-free, so the harness's logic is tested in seconds.
FAKE_PIPELINE = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from benchmarks.harness import original
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    if "--help" in sys.argv:
        print("usage: fake INPUT -o OUTDIR [-m {{300,500}}] [--model-size S] [--cpu] [--gpus G] [--quiet] "
              "[--resume] [--variant V] [--precision P] [--packing | --no-packing] [--token-budget N]")
        sys.exit(0)
    args = sys.argv[1:]
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    source, out, chunk = Path(args[0]), Path(args[args.index("-o") + 1]), int(args[args.index("-m") + 1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial").write_text("started")
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    records = [(t.split()[0], s) for t, s in SimpleFastaParser(open(source))]
    chunks, frames = original.chunk_and_translate(records, chunk)
    rows = [frame_id for frame_id, _, _ in frames][int(os.environ.get("FAKE_DROP", "0")):]
    with open(out / "prediction_results.txt", "w") as f:
        f.write("Sequence_ID\\tPrediction\\tscore1\\tscore2\\n")
        f.write("".join(f"{{r}}\\tvirus\\t0.2\\t0.8\\n" for r in rows))
    calls = sorted({{r[:-2] for r in rows}})
    with open(out / "prediction_results_highestscore.csv", "w") as f:
        f.write("Modified_ID\\tIs_Virus\\n" + "".join(f"{{c}}\\tTrue\\n" for c in calls))
    now = time.time()
    state = {{"stages": {{"CHUNKING": {{"status": "completed", "started_at": "2026-01-01T00:00:00",
                                        "completed_at": "2026-01-01T00:00:01.5", "duration_seconds": 1.5}},
                         "PROTEIN_FEATURES": {{"status": "completed", "started_at": "2026-01-01T00:00:02",
                                               "completed_at": "2026-01-01T00:00:05", "duration_seconds": 3.0}}}}}}
    (out / ".checkpoints").mkdir(exist_ok=True)
    (out / ".checkpoints" / "pipeline_state.json").write_text(json.dumps(state))
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
''')


@pytest.fixture
def bench_env(tmp_path, monkeypatch):
    """Records, work directories and the dataset cache in tmp; a fake pipeline as the `cli` target."""
    fake = tmp_path / "fake_pipeline.py"
    fake.write_text(FAKE_PIPELINE.format(repo=str(REPO)))
    monkeypatch.setenv("VNP_BENCH_RECORDS", str(tmp_path / "records"))
    monkeypatch.setenv("VNP_BENCH_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("VNP_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VNP_BENCH_MACHINE", "testbox-ci")
    monkeypatch.setenv("VNP_BENCH_COMMAND", f"{shlex.quote(sys.executable)} {shlex.quote(str(fake))}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.delenv("VNP_BENCH_DATA", raising=False)
    monkeypatch.delenv("VNP_BENCH_KEEP", raising=False)
    return tmp_path


def calls(tmp_path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


# -- command lines ---------------------------------------------------------------------------------

def test_options_become_flags_the_command_lists(bench_env):
    target = targets.current()
    argv = target.argv(Path("in.fa"), Path("out"), {"model_type": 300, "cpu": True, "quiet": True, "resume": False,
                                                    "packing": False, "token_budget": 2048, "precision": None})
    assert argv[-10:] == ["in.fa", "-o", "out", "-m", "300", "--cpu", "--quiet", "--no-packing", "--token-budget",
                          "2048"]
    assert target.argv(Path("i"), Path("o"), {"gpus": [0, 1]})[-2:] == ["--gpus", "0,1"]


def test_a_flag_the_command_lacks_is_unsupported(bench_env):
    with pytest.raises(targets.Unsupported, match="--expandable-segments"):
        targets.current().argv(Path("in.fa"), Path("out"), {"expandable_segments": True})


def test_a_command_that_cannot_start_fails_rather_than_skips(bench_env, monkeypatch):
    monkeypatch.setenv("VNP_BENCH_COMMAND", f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(1)'")
    with pytest.raises(runs.RunFailed, match="--help exited 1"):
        runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)


def test_vnp_target_is_this_pythons_vnp(monkeypatch):
    monkeypatch.delenv("VNP_BENCH_COMMAND", raising=False)
    target = targets.current()
    assert target.name == "vnp" and target.command == [sys.executable, "-m", "vnp", "predict"]


def test_pipeline_state_stages_fold_into_run_record_names():
    state = {"stages": {
        "CHUNKING": {"started_at": "2026-01-01T00:00:00", "completed_at": "2026-01-01T00:00:02",
                     "duration_seconds": 2.0},
        "TRANSLATION": {"started_at": "2026-01-01T00:00:02", "completed_at": "2026-01-01T00:00:05",
                        "duration_seconds": 3.0},
        "PROTEIN_FEATURES": {"started_at": "2026-01-01T00:00:05", "completed_at": "2026-01-01T00:01:05",
                             "duration_seconds": None},
        "CONSENSUS": {"status": "not_started", "started_at": None, "completed_at": None, "duration_seconds": None},
    }}
    stages = {s["name"]: s for s in targets.stages_from_pipeline_state(state)}
    assert stages["preprocess"]["seconds"] == 5.0 and stages["preprocess"]["sources"] == ["CHUNKING", "TRANSLATION"]
    assert stages["preprocess"]["start"] == 1767225600.0  # 2026-01-01T00:00:00 UTC
    assert stages["esm2"]["seconds"] == 60.0  # from the timestamps when the duration is missing
    assert stages["consensus"]["seconds"] == 0.0 and stages["consensus"]["start"] is None


# -- validation and records ------------------------------------------------------------------------

EXPECTED = {"reads": 10, "frames": 8, "chunks_with_frame": 6}


def test_validation_passes_only_when_every_record_is_accounted_for():
    run = {"input": {"reads": 10, "frames": 8, "chunks_with_frame": 6}, "output": {"frames": 8, "consensus_rows": 6},
           "exit": {"status": "ok"}}
    assert record.validate(EXPECTED, run, 8, 6, 0) == []
    assert record.validate(EXPECTED, None, 8, 6, 0) == []  # a command without run.json: its files decide
    assert record.validate(EXPECTED, run, 7, 6, 0) == ["prediction_results.txt rows: 7, expected 8"]
    assert "highest-score rows: missing" in record.validate(EXPECTED, run, 8, None, 0)
    assert "exit code 3" in record.validate(EXPECTED, run, 8, 6, 3)
    short = dict(run, output={"frames": 5, "consensus_rows": 6})
    assert record.validate(EXPECTED, short, 8, 6, 0) == ["run.json output.frames: 5, expected 8"]
    nothing = record.validate({"reads": 3, "frames": 0, "chunks_with_frame": 0}, None, 0, 0, 0)
    assert any("measure nothing" in p for p in nothing)


def test_data_lines_counts_rows_after_the_header(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("header\na\nb\n")
    assert record.data_lines(path) == 2
    path.write_text("header\na\nb")
    assert record.data_lines(path) == 2
    assert record.data_lines(tmp_path / "missing") is None


def test_stage_peaks_join_samples_to_stage_intervals_per_gpu():
    run = {"stages": [
        {"name": "preprocess", "start": 0.0, "end": 1.0, "devices": []},
        {"name": "esm2", "start": 1.0, "end": 4.0, "devices": [
            {"device": "cuda:0", "intervals": [[1.0, 2.0]], "peak_allocated_bytes": 50, "peak_reserved_bytes": 60},
            {"device": "cuda:1", "intervals": [[3.0, 4.0]], "peak_allocated_bytes": 70, "peak_reserved_bytes": 80}]},
    ]}
    samples = {"nvml": {"t": [0.5, 1.5, 1.5, 3.5, 3.5], "gpu": [0, 0, 1, 0, 1],
                        "mem_used_bytes": [999, 100, 5, 300, 200], "util_percent": [0] * 5, "power_w": [0] * 5},
               "host": {"t": [0.5, 1.5, 3.5], "rss_bytes": [10, 20, 30], "cpu_percent": [0, 0, 0]}}
    peaks = {(p["stage"], p["gpu"]): p for p in record.stage_peaks(run, samples)}
    assert peaks[("esm2", 0)]["nvml_peak_bytes"] == 100  # only gpu 0's samples inside [1, 2]
    assert peaks[("esm2", 1)]["nvml_peak_bytes"] == 200
    assert peaks[("esm2", 1)]["torch_peak_reserved_bytes"] == 80
    assert peaks[("esm2", 0)]["host_peak_rss_bytes"] == 30  # host: the whole stage span
    assert peaks[("preprocess", None)] == {"stage": "preprocess", "gpu": None, "nvml_peak_bytes": None,
                                           "torch_peak_allocated_bytes": None, "torch_peak_reserved_bytes": None,
                                           "host_peak_rss_bytes": 10}


def test_next_repeat_never_overwrites(tmp_path):
    assert record.next_repeat(tmp_path, "x") == 0
    (tmp_path / "x-r0.json").write_text("{}")
    (tmp_path / "x-r1.json").write_text("{}")
    assert record.next_repeat(tmp_path, "x") == 2


def test_leak_per_batch_recovers_a_known_growth():
    """1 MB/s of GPU growth at 10 batches/s is 100 kB per batch; flat host memory is 0 per batch."""
    t = [100.0 + i / 10 for i in range(200)]
    rec = {"run": {"stages": [{"name": "esm2", "start": 100.0, "end": 120.0, "devices": [{"batches": 200}]}]},
           "samples": {"nvml": {"t": t, "gpu": [0] * 200, "mem_used_bytes": [1e9 + 1e6 * (x - 100) for x in t]},
                       "host": {"t": t, "rss_bytes": [5e8] * 200}}}
    gpu, host_bytes = metrics.leak_per_batch(rec)
    assert gpu == pytest.approx(1e5, rel=1e-6) and host_bytes == pytest.approx(0, abs=1e-3)


# -- samplers and host -----------------------------------------------------------------------------

def test_sampler_follows_the_whole_process_tree(tmp_path):
    """RSS of a child's child is seen; without a GPU the NVML columns stay empty (and nothing fails)."""
    grandchild = "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.5)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}])"
    process = subprocess.Popen([sys.executable, "-c", child])
    sampler = samplers.Sampler(0.05).start(process.pid)
    process.wait()
    samples = sampler.stop()
    assert max(samples["host"]["rss_bytes"]) > 300 * 2**20
    assert len(samples["host"]["t"]) == len(samples["host"]["cpu_percent"]) > 10
    assert len({len(column) for column in samples["nvml"].values()}) == 1
    if host.gpu_count() == 0:
        assert samples["nvml"]["t"] == []
    assert 0 < sampler.cpu_seconds < 1.5


def test_a_gpu_process_is_the_pipelines_if_it_descends_from_it_even_before_the_tree_saw_it():
    """NVML may list a fresh worker before the sampler's next look at the process tree: not another program."""
    import psutil

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        sampler = samplers.Sampler(0.05)
        sampler._pid, sampler._root = os.getpid(), psutil.Process(os.getpid())
        assert sampler._in_tree(child.pid) and sampler._in_tree(os.getpid())
        assert not sampler._in_tree(1)  # init: no descendant of the pipeline
    finally:
        child.kill()
        child.wait()


class FakeNvml:
    def nvmlDeviceGetCount(self):
        return 4

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return uuid

    def nvmlDeviceGetIndex(self, handle):
        return {"GPU-aaa": 3}[handle]


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert host.visible_nvml_indices(FakeNvml()) == [0, 1, 2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert host.visible_nvml_indices(FakeNvml()) == [2, 0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaa,7")
    assert host.visible_nvml_indices(FakeNvml()) == [3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert host.visible_nvml_indices(FakeNvml()) == []


def test_machine_file_keeps_other_machines(tmp_path, monkeypatch):
    path = tmp_path / "asv-machine.json"
    path.write_text(json.dumps({"other": {"machine": "other"}, "version": 1}))
    monkeypatch.setenv("VNP_BENCH_MACHINE", "h200x2")
    monkeypatch.setenv("VNP_BENCH_SCALE", "gpu")  # (at the ci scale the name would be h200x2-ci)
    host.write_asv_machine_file(host.machine_info(), path)
    machines = json.loads(path.read_text())
    assert set(machines) == {"other", "h200x2", "version"}
    assert {"gpu", "num_gpu", "cuda_driver", "num_cpu", "ram"} <= set(machines["h200x2"])


# -- runs ------------------------------------------------------------------------------------------

def test_a_run_is_recorded_and_validated(bench_env):
    rec = runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)
    harness = rec["harness"]
    expected = datasets.load_definitions()["datasets"]["tiny"]["composition"]
    assert harness["validated"] and harness["problems"] == []
    assert harness["records_in"] == harness["records_out"] == expected["frames"]
    assert harness["target"] == "cli" and harness["dataset"] == "tiny" and harness["scale"] == "ci"
    assert [s["name"] for s in rec["run"]["stages"]] == ["preprocess", "esm2"]  # from pipeline_state.json
    assert "--cpu" in harness["argv"] and "--model-size" in harness["argv"] and not harness["resumed"]
    path = bench_env / "records" / "testbox-ci" / harness["commit"][:8] / "end_to_end-tiny-1gpu-all-r0.json"
    assert record.load(path)["schema"] == "vnp-runrecord/1"
    assert not (bench_env / "work" / "testbox-ci" / harness["commit"][:8] / "end_to_end-tiny-1gpu-all-r0").exists()
    again = runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)
    assert again["harness"]["repeat"] == 1


def test_a_run_that_loses_a_record_fails_but_is_recorded(bench_env, monkeypatch):
    monkeypatch.setenv("FAKE_DROP", "1")
    with pytest.raises(runs.RunFailed, match="rows"):
        runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)
    [path] = (bench_env / "records" / "testbox-ci").glob("*/end_to_end-tiny-1gpu-all-r0.json")
    assert record.load(path)["harness"]["validated"] is False


def test_a_failing_command_fails_the_run(bench_env, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT", "3")
    with pytest.raises(runs.RunFailed, match="exit code 3"):
        runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)


def test_a_run_over_its_limit_is_killed(bench_env, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "30")
    hasty = dataclasses.replace(CI, fixed_limit_s=1.0, esm_tokens_per_s_floor=1e12)
    started = time.time()
    with pytest.raises(runs.RunFailed, match="limit"):
        runs.execute(runs.RunSpec.make("end_to_end", "typical"), hasty)
    assert time.time() - started < 20


def test_the_warm_up_runs_the_command_once_and_records_nothing(bench_env):
    from dataclasses import replace

    runs.warm_up(replace(CI, warmup_dataset="tiny"))
    (argv,) = calls(bench_env)
    assert argv[argv.index("-m") + 1] == "300" and "--cpu" in argv
    assert not (bench_env / "records").exists() and not (bench_env / "work" / "warmup").exists()


def test_an_interrupted_run_is_resumed(bench_env):
    """A run killed from outside left its directory and no record: the next attempt continues it."""
    commit = runs.commit_id()[:8]
    leftover = bench_env / "work" / "testbox-ci" / commit / "end_to_end-tiny-1gpu-all-r0" / "out"
    leftover.mkdir(parents=True)
    (leftover / "partial").write_text("a part of the work")
    rec = runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)
    assert rec["harness"]["resumed"] is True and "--resume" in calls(bench_env)[-1]
    assert metrics.summarise(rec)["wall_seconds"] is None  # its clock saw only part of the work
    fresh = runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)
    assert fresh["harness"]["resumed"] is False and "--resume" not in calls(bench_env)[-1]


def test_asv_timed_runs_never_resume(bench_env):
    leftover = bench_env / "work" / "testbox-ci" / runs.commit_id()[:8] / "end_to_end-tiny-1gpu-all-r0" / "out"
    leftover.mkdir(parents=True)
    rec = runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI, resume=False)
    assert rec["harness"]["resumed"] is False and "--resume" not in calls(bench_env)[-1]


def test_what_the_host_or_scale_lacks_is_skipped(bench_env, monkeypatch):
    with pytest.raises(runs.Skip, match="one CPU device"):
        runs.execute(runs.RunSpec.make("end_to_end", "typical", gpus=2), CI)
    with pytest.raises(runs.Skip, match="no full dataset"):
        runs.execute(runs.RunSpec.make("end_to_end", "full"), CI)
    with pytest.raises(runs.Skip, match="has no --expandable-segments"):
        runs.execute(runs.RunSpec.make("memory", "typical", options={"expandable_segments": True}), CI)
    monkeypatch.setattr(host, "gpu_count", lambda: 0)
    with pytest.raises(runs.Skip, match="needs 1 GPUs, this host has 0"):
        runs.execute(runs.RunSpec.make("end_to_end", "typical"), scales.SCALES["gpu"])
    assert not (bench_env / "calls.jsonl").exists()  # nothing was started


def test_scale_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VNP_BENCH_SCALE", "gpu")
    assert scales.current().model_size == "full"
    monkeypatch.setenv("VNP_BENCH_SCALE", "huge")
    with pytest.raises(ValueError, match="ci, gpu, full"):
        scales.current()


@pytest.mark.slow
@pytest.mark.parametrize("via", ["vnp", "cli"])
def test_the_real_pipeline_through_both_targets(bench_env, monkeypatch, via):
    """vnp predict at the ci scale: as the installed package, and as the `cli` target's command."""
    pytest.importorskip("vnp.predict")
    if via == "vnp":
        monkeypatch.delenv("VNP_BENCH_COMMAND")
    else:
        monkeypatch.setenv("VNP_BENCH_COMMAND", f"{shlex.quote(sys.executable)} -m vnp predict")
    rec = runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)
    harness, run = rec["harness"], rec["run"]
    assert harness["target"] == via and harness["validated"]
    assert run["schema"] == "vnp-run/1" and run["input"]["frames"] == run["output"]["frames"] == harness["records_in"]
    assert {"preprocess", "esm2", "dnabert"} <= {s["name"] for s in run["stages"]}
    assert max(rec["samples"]["host"]["rss_bytes"]) > 50 * 2**20  # torch is in there
    assert harness["sampler_cpu_seconds"] is not None
    summary = metrics.summarise(rec, datasets.load_definitions()["datasets"]["full"])
    assert summary["wall_seconds"] > 0 and summary["seconds_per_million_esm_tokens"] > 0
    assert summary["projected_full_sample_hours"] > 0  # tiny models, so no real answer, but the arithmetic runs
    assert summary["peak_gpu_bytes_nvml"] is None or host.gpu_count() > 0


@pytest.mark.slow
def test_validation_catches_a_pipeline_that_consistently_drops_a_frame_kind(bench_env, monkeypatch, tmp_path):
    """A copy of vnp that never keeps R3 frames: its outputs and its run.json agree with each other, so only
    counts the harness makes itself (not the pipeline's) can catch it. Both this process and the pipeline
    see the copy first on their path, as asv's environment would hold the commit under test."""
    pytest.importorskip("vnp.predict")
    mutant = tmp_path / "mutant"
    shutil.copytree(REPO / "src" / "vnp", mutant / "vnp", ignore=shutil.ignore_patterns("__pycache__"))
    translate = mutant / "vnp" / "translate.py"
    kept = "np.nonzero((slots > 0) & ~has_stop)"
    assert kept in translate.read_text()
    translate.write_text(translate.read_text().replace(kept, kept[:-1] + " & (np.arange(6) != 5))"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mutant), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(mutant))
    for name in [name for name in sys.modules if name == "vnp" or name.startswith("vnp.")]:
        monkeypatch.delitem(sys.modules, name)
    sample = tmp_path / "sample.fa"
    datasets.generate("sample", {"kind": "reads", "reads": 150, "seed": 77, "model_type": 300},
                      datasets.load_definitions(), sample)
    monkeypatch.setenv("VNP_BENCH_DATA", str(sample))
    monkeypatch.delenv("VNP_BENCH_COMMAND")
    with pytest.raises(runs.RunFailed, match=r"run.json input.frames: \d+, expected"):
        runs.execute(runs.RunSpec.make("end_to_end", "typical"), CI)


# -- python -m scripts.requirement ---------------------------------------------------------------------

def _requirement_script():
    return importlib.import_module("scripts.requirement")


def test_requirement_script_records_a_validated_run_and_says_where(bench_env, capsys):
    script = _requirement_script()
    assert script.main(["typical", "--scale", "ci"]) == 0
    out = capsys.readouterr().out
    path = Path(out.split("RunRecord ")[1].split()[0])
    assert path.parent.parent.parent == bench_env / "records" and path.name == "requirement-tiny-1gpu-all-r0.json"
    assert record.load(path)["harness"]["validated"] and "validated" in out
    # a variant's options reach the command line: the fake fork-style CLI has no --compile, so it cannot run
    assert script.main(["typical", "--scale", "ci", "--variant", "compiled"]) == 2
    assert "cli has no --compile" in capsys.readouterr().err


def test_requirement_script_exit_codes(bench_env, capsys, monkeypatch):
    script = _requirement_script()
    assert script.main(["full", "--scale", "ci"]) == 2  # the ci scale has no full sample
    assert script.main(["typical", "--scale", "ci", "--gpus", "2"]) == 2
    monkeypatch.setenv("FAKE_DROP", "1")
    assert script.main(["typical", "--scale", "ci"]) == 1
    said = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[vnp-bench]")]
    assert len(said) == 3 and all(line.startswith("requirement: ") for line in said)
    assert "cannot run here" in said[0] and "rows: 224, expected 225" in said[2]


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports: import statements (at any depth) and importlib.import_module("...") calls."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
    return names


def test_nothing_under_benchmarks_imports_the_pipeline_or_the_analysis(tmp_path):
    """asv installs old commits of vnp but runs today's suites, and validation must not trust vnp's counts; the
    analysis reads the records the harness writes, so the harness (which writes them) must not need it."""
    planted = tmp_path / "m.py"  # what the check must see: imports inside functions, and by name
    planted.write_text("def f():\n    from analysis.projection import x\n    importlib.import_module('vnp.cli')\n")
    assert sorted(imported_modules(planted)) == ["analysis.projection", "vnp.cli"]
    imports = [f"{path.relative_to(REPO)}: {name}" for path in sorted((REPO / "benchmarks").rglob("*.py"))
               for name in imported_modules(path) if name.split(".")[0] in ("vnp", "analysis")]
    assert imports == []


def test_a_run_projects_a_whole_sample_only_at_the_samples_chunk_size():
    """The projection the suites track, the harness's own: the analysis's cost model fitted on that one run; a
    contigs run (chunked at 500) projects nothing onto the sample of reads (chunked at 300)."""
    from synthetic_runs import composition, synthetic_record

    from analysis.costmodel import fit_cost_model
    from analysis.record import Record

    rec = synthetic_record("typical", 1000, gpus=2)
    rec["harness"].update(model_type=300, expected=composition(1000))
    full = {"model_type": 300, "composition": composition(6_000_000)}
    by_analysis = fit_cost_model([Record.from_json(rec)]).total_seconds(full["composition"], 2) / 3600
    assert metrics.projected_hours(rec, full) == pytest.approx(by_analysis, rel=1e-9)
    assert metrics.summarise(rec, full)["projected_full_sample_hours"] == pytest.approx(by_analysis, rel=1e-9)
    contigs = {**rec, "harness": {**rec["harness"], "model_type": 500, "role": "contigs"}}
    assert metrics.summarise(contigs, full)["projected_full_sample_hours"] is None
    assert metrics.projected_hours(contigs, {**full, "model_type": 500}) == pytest.approx(by_analysis, rel=1e-9)
    assert metrics.projected_hours(rec, None) is None


def test_records_carry_no_path_of_the_machine_that_made_them(tmp_path):
    home = str(Path.home())
    made = {"run": {"config": {"input": str(record.REPO / "data" / "cache" / "typical.fa"),
                               "outdir": f"{home}/work/out"}, "argv": [str(record.REPO)]}, "n": [1, 2.5, None]}
    path = tmp_path / "r.json"
    record.write(made, path)
    text = path.read_text()
    assert str(record.REPO) not in text and home not in text
    assert json.loads(text) == {"run": {"config": {"input": "data/cache/typical.fa", "outdir": "~/work/out"},
                                        "argv": ["."]}, "n": [1, 2.5, None]}


def test_validation_counts_distinct_ids_not_only_lines(tmp_path):
    """A frame written twice in place of another has the right number of lines, not the right IDs."""
    results = tmp_path / "prediction_results.txt"
    rows = [f"r{i}_chunk_1F1\tvirus\t0.1\t0.9\n" for i in range(8)]
    results.write_text("Sequence_ID\tPrediction\tscore1\tscore2\n" + "".join(rows))
    assert record.distinct_ids(results) == 8
    results.write_text("Sequence_ID\tPrediction\tscore1\tscore2\n" + "".join(rows[:7] + rows[:1]))
    assert record.data_lines(results) == 8 and record.distinct_ids(results) == 7
    problems = record.validate(EXPECTED, None, 8, 6, 0, results_ids=record.distinct_ids(results), consensus_ids=6)
    assert problems == ["prediction_results.txt distinct IDs: 7, expected 8"]
