"""The asv suites: called directly (fast, a fake pipeline), and through asv itself at the ci scale."""

import inspect
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from asv_runner.benchmarks.mark import SkipNotImplemented

from benchmarks import commands, end_to_end, kernels, memory, scaling, stages, variants
from benchmarks.harness import host
from benchmarks.harness import scale as scales
from benchmarks.harness import suite as suite_module
from tests.test_harness import FAKE_PIPELINE, calls

REPO = Path(__file__).resolve().parents[1]
SUITES = (end_to_end, stages, variants, memory, scaling, commands, kernels)
CI_ENV = f"sysvenv-py{sys.version_info[0]}.{sys.version_info[1]}-VNP_BENCH_SCALEci"
CI_MACHINE = "ci-test-ci"  # at the ci scale the harness names machines <name>-ci


@pytest.fixture
def memo(tmp_path, monkeypatch):
    """setup_cache's directory (asv runs the benchmarks in it) with a fast fake pipeline as the target."""
    fake = tmp_path / "fake_pipeline.py"
    # The ci scale pins the pipeline's threads: the fake lists --threads too (and the reload switch).
    flags = "[--quiet] [--threads N] [--persistent-models | --no-persistent-models]"
    fake.write_text(FAKE_PIPELINE.format(repo=str(REPO)).replace("[--quiet]", flags))
    for name, value in {"VNP_BENCH_RECORDS": tmp_path / "records", "VNP_BENCH_WORK": tmp_path / "work",
                        "VNP_BENCH_CACHE": tmp_path / "cache", "VNP_BENCH_MACHINE": "testbox",
                        "FAKE_LOG": tmp_path / "calls.jsonl",
                        "VNP_BENCH_COMMAND": f"{shlex.quote(sys.executable)} {shlex.quote(str(fake))}"}.items():
        monkeypatch.setenv(name, str(value))
    (tmp_path / "cache_dir").mkdir()
    monkeypatch.chdir(tmp_path / "cache_dir")
    return end_to_end.EndToEnd().setup_cache()


def benchmark_classes():
    for module in SUITES:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and any(n.startswith(("time_", "track_")) for n in dir(cls)):
                yield cls


def test_every_metric_has_a_unit_and_named_parameters():
    classes = list(benchmark_classes())
    assert len(classes) >= 14
    for cls in classes:
        for name in dir(cls):
            if name.startswith("track_"):
                assert getattr(cls, name).unit != "unit", f"{cls.__name__}.{name}"
        assert len(getattr(cls, "params", ())) == len(getattr(cls, "param_names", ())), cls.__name__


def test_ci_and_gpu_points_of_one_host_never_share_a_machine(monkeypatch):
    monkeypatch.setenv("VNP_BENCH_MACHINE", "box")
    names = {}
    for scale in ("ci", "gpu", "full"):
        monkeypatch.setenv("VNP_BENCH_SCALE", scale)
        names[scale] = host.machine_name()
    assert names == {"ci": "box-ci", "gpu": "box", "full": "box"}  # gpu and full differ by environment
    monkeypatch.setenv("VNP_BENCH_MACHINE", "box-ci")  # e.g. the only machine in ~/.asv-machine.json
    assert host.machine_name() == "box"  # (VNP_BENCH_SCALE is still full)
    # a run outside asv at another scale (scripts.requirement --scale full) is named by its own scale
    monkeypatch.setenv("VNP_BENCH_SCALE", "ci")
    assert host.machine_name(scales.SCALES["full"]) == "box" and host.machine_name(scales.SCALES["ci"]) == "box-ci"


def test_discovery_touches_neither_torch_nor_cuda():
    """asv imports every module to discover the suite (and forks from it): CUDA must not start there."""
    code = ("import importlib, pkgutil, sys, benchmarks\n"
            "for module in pkgutil.walk_packages(benchmarks.__path__, 'benchmarks.'):\n"
            "    importlib.import_module(module.name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'vnp', 'pynvml')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_one_set_of_runs_per_configuration_feeds_every_track(memo, tmp_path):
    repeats = suite_module.SCALE.repeats
    assert repeats == 2  # the ci scale: two runs of each core configuration, reported as samples
    suite = end_to_end.EndToEnd()
    suite.setup(memo, "typical", 1)
    wall = suite.track_wall_seconds(memo, "typical", 1)
    assert wall["number"] == 1 and len(wall["samples"]) == repeats and min(wall["samples"]) > 0
    assert math.isnan(suite.track_peak_gpu_bytes(memo, "typical", 1))  # a CPU run has no GPU bytes: n/a
    other = stages.StageSeconds()
    other.setup(memo, "typical", 1, "esm2")
    assert other.track_seconds(memo, "typical", 1, "esm2")["samples"] == [3.0] * repeats  # pipeline_state.json
    once_more = scaling.Scaling()
    once_more.setup(memo, "typical", 1)
    assert once_more.track_scaling_inefficiency(memo, "typical", 1) == 0.0
    assert len(calls(tmp_path)) == repeats  # three suites, one set of runs
    assert all(argv[argv.index("--threads") + 1] == "1" for argv in calls(tmp_path))


def test_the_ci_scale_projects_no_real_sample(memo):
    suite = end_to_end.EndToEnd()
    suite.setup(memo, "typical", 1)
    with pytest.raises(SkipNotImplemented, match="project no real sample"):
        suite.track_projected_full_sample_hours(memo, "typical", 1)


def test_persistent_models_report_both_runs_not_their_difference(memo, tmp_path):
    suite = memory.PersistentModels()
    suite.setup(memo)
    kept, reloaded = suite.track_seconds_persistent_models(memo), suite.track_seconds_reloading_models(memo)
    assert min(kept["samples"]) > 0 and reloaded["samples"] != [] and min(reloaded["samples"]) > 0  # two costs
    assert sum("--no-persistent-models" in argv for argv in calls(tmp_path)) == 1
    assert not hasattr(suite, "track_reload_seconds")


def test_time_predict_times_one_more_validated_run(memo, tmp_path):
    timed = end_to_end.EndToEndTime()
    timed.setup(memo, "typical", 1)
    timed.time_predict(memo, "typical", 1)
    assert len(calls(tmp_path)) == 2 + 1  # the core runs, then one more
    assert sorted(p.name for p in (tmp_path / "records").rglob("*.json")) == \
           [f"end_to_end-tiny-1gpu-all-r{r}.json" for r in range(3)]
    assert (timed.number, timed.repeat, timed.rounds, timed.min_run_count) == (1, 1, 1, 1)


def test_combinations_that_cannot_run_here_are_skipped(memo):
    with pytest.raises(NotImplementedError, match="one CPU device"):
        end_to_end.EndToEnd().setup(memo, "typical", 2)
    with pytest.raises(NotImplementedError, match="no subset1m"):
        end_to_end.EndToEnd().setup(memo, "subset1m", 1)
    for variant, reason in (("+bf16", "bf16 needs a GPU"), ("fp8", "fp8 needs a GPU"), ("compiled", "GPU")):
        with pytest.raises(NotImplementedError, match=reason):
            variants.Variants().setup(memo, variant)
    with pytest.raises(NotImplementedError, match="CPU"):
        memory.ExpandableSegments().setup(memo, True)
    with pytest.raises(NotImplementedError):
        stages.StageGpuPeak().setup(memo, "esm2", 0)


def test_a_run_that_fails_validation_fails_every_benchmark_reading_it(memo, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_DROP", "2")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="expected"):
            end_to_end.EndToEnd().setup(memo, "large", 1)
    assert len(calls(tmp_path)) == 1  # the failure is remembered, not retried


def test_variants_have_their_own_runs(memo, tmp_path):
    suite = variants.Variants()
    suite.setup(memo, "+packing")
    assert min(suite.track_seconds(memo, "+packing")["samples"]) > 0
    argv = calls(tmp_path)[-1]
    assert argv[argv.index("--variant") + 1] == "baseline" and "--packing" in argv


# -- through asv -----------------------------------------------------------------------------------

def asv(tmp_path, *args, timeout=900):
    """asv with this repository's configuration, but results, html and the machine file in tmp.

    asv works in the directory of its configuration file, and reads the plugins and pyproject.toml from
    there: both are linked into tmp, every path of the configuration made absolute.
    """
    config = json.loads((REPO / "asv.conf.json").read_text())
    config.update(repo=str(REPO), benchmark_dir=str(REPO / "benchmarks"), env_dir=str(REPO / ".asv" / "env"),
                  results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(config))
    for name in ("asv_plugins", "pyproject.toml"):
        if not (tmp_path / name).exists():
            (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "HOME": str(tmp_path), "VNP_BENCH_MACHINE": CI_MACHINE,
           "VNP_BENCH_RECORDS": str(tmp_path / "records"), "VNP_BENCH_CACHE": str(tmp_path / "cache"),
           "VNP_CACHE_DIR": os.environ.get("VNP_CACHE_DIR", str(Path.home() / ".cache" / "vnp"))}
    env.pop("VNP_BENCH_COMMAND", None)
    env.pop("VNP_BENCH_SCALE", None)
    host.write_asv_machine_file({**host.machine_info(), "machine": CI_MACHINE}, tmp_path / ".asv-machine.json")
    return subprocess.run([sys.executable, "-m", "asv", "--config", str(tmp_path / "asv.conf.json"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_asv_check(tmp_path):
    done = asv(tmp_path, "check", "-E", CI_ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "No problems found" in done.stdout


@pytest.mark.slow
def test_ci_scale_suite_runs_green_and_publishes(tmp_path):
    """The whole suite at the ci scale on HEAD, as scripts/bench.sh runs it, then the dashboard."""
    done = asv(tmp_path, "run", "--machine", CI_MACHINE, "-E", CI_ENV, "--quick", "--launch-method", "forkserver",
               "--show-stderr", "HEAD^!")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    [result_file] = (tmp_path / "results" / CI_MACHINE).glob(f"*-{CI_ENV}.json")
    results = json.loads(result_file.read_text())["results"]
    failed = [name for name, columns in results.items() if any(v is None for v in columns[0])]
    assert failed == []
    assert results["end_to_end.EndToEnd.track_wall_seconds"][0][0] > 0  # typical, 1 "GPU" (the CPU)
    assert results["memory.OomBackoff.track_backoffs"][0][0] >= 1
    records = list((tmp_path / "records" / CI_MACHINE).glob("*/*.json"))  # (not agreement/: no RunRecords)
    assert all(json.loads(p.read_text())["harness"]["validated"] for p in records) and len(records) >= 10
    published = asv(tmp_path, "publish")
    assert published.returncode == 0, published.stderr[-3000:]
    assert "Skipping results" not in published.stdout + published.stderr
    assert (tmp_path / "html" / "index.html").exists() and (tmp_path / "html" / "index.json").exists()
