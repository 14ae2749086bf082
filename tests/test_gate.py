"""The regression gate: its verdict on asv's results, and the whole gate on a planted ESM-2 slowdown."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import gate

REPO = Path(__file__).resolve().parents[1]
JUDGE_ALL = ".*"


def samples(*values):
    """asv's (stats, samples) for a result with these samples (the stats as asv_runner computes them)."""
    from asv_runner.statistics import compute_stats

    _, stats = compute_stats(list(values), 1)
    return stats, list(values)


def test_a_clear_slowdown_with_samples_is_a_regression():
    base = {"s.T.track(1)": (1.0, samples(1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99))}
    head = {"s.T.track(1)": (1.3, samples(1.3, 1.31, 1.29, 1.32, 1.28, 1.3, 1.31, 1.29))}
    regressed, failing, _ = gate.verdict(base, head, 1.2, JUDGE_ALL, samples=8)
    assert [(name, round(ratio, 2)) for name, _, _, ratio in regressed] == [("s.T.track(1)", 1.3)] and failing == []


def test_a_big_ratio_that_the_samples_do_not_support_is_no_regression():
    base = {"s.T.track(1)": (1.0, samples(0.5, 2.0, 0.6, 1.0, 1.9, 0.7, 1.1, 0.9))}
    head = {"s.T.track(1)": (1.3, samples(0.6, 2.1, 1.3, 0.5, 1.8, 1.4, 1.2, 1.3))}
    assert gate.verdict(base, head, 1.2, JUDGE_ALL, samples=8) == ([], [], [])


def test_only_judged_benchmarks_regress_but_any_may_newly_fail():
    base = {"s.Wall.track(1)": (1.0, (None, None)), "s.Cpu.track(1)": (1.0, (None, None)),
            "s.Other.track(1)": (5.0, (None, None)), "s.Skipped.track(1)": (math.nan, (None, None))}
    head = {"s.Wall.track(1)": (3.0, (None, None)), "s.Cpu.track(1)": (1.5, (None, None)),
            "s.Other.track(1)": (None, (None, None)), "s.Skipped.track(1)": (None, (None, None))}
    regressed, failing, _ = gate.verdict(base, head, 1.2, r"\.Cpu\.")
    assert [r[0] for r in regressed] == ["s.Cpu.track(1)"]
    assert [f[0] for f in failing] == ["s.Other.track(1)"]  # n/a before is not "newly" failing


def test_a_value_lost_at_head_is_newly_failing_not_a_pass():
    """A HEAD whose runs are skipped (n/a) or missing must not pass: the number is gone."""
    base = {"s.T.track(1)": (1.0, (None, None)), "s.T.track(2)": (2.0, (None, None))}
    head = {"s.T.track(1)": (math.nan, (None, None))}
    _, failing, _ = gate.verdict(base, head, 1.2, JUDGE_ALL)
    assert [f[0] for f in failing] == ["s.T.track(1)", "s.T.track(2)"]


def test_a_judged_benchmark_short_of_samples_fails():
    """asv drops a benchmark's earlier samples when a round fails: 2 left of 8 cannot judge a slowdown."""
    base = {"s.T.track(1)": (1.0, samples(*[1.0 + i / 100 for i in range(8)]))}
    head = {"s.T.track(1)": (3.0, samples(3.0, 3.1))}
    regressed, failing, _ = gate.verdict(base, head, 1.2, JUDGE_ALL, samples=8)
    assert regressed == [] and [f[0] for f in failing] == ["s.T.track(1)"] and "samples" in failing[0][3]


def test_growth_from_zero_is_listed_not_judged():
    base, head = {"s.Leak.track(1)": (0.0, (None, None))}, {"s.Leak.track(1)": (1.0, (None, None))}
    assert gate.verdict(base, head, 1.1, JUDGE_ALL) == ([], [], [("s.Leak.track(1)", 0.0, 1.0, None)])


def test_no_results_means_the_gate_could_not_run(tmp_path):
    assert gate.main(["--results", str(tmp_path), "--machine", "m", "--env", "e", "--base", "a" * 40,
                      "--head", "b" * 40, "--factor", "1.2"]) == 2


def test_gate_sh_refuses_an_unknown_commit():
    done = subprocess.run(["bash", "scripts/gate.sh", "no-such-commit-xyz", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "VNP_BENCH_PYTHON": sys.executable})
    assert done.returncode == 2 and "unknown commit: no-such-commit-xyz" in done.stderr


def plant_esm2_sleep(clone: Path, share: float = 0.5) -> None:
    """The ESM-2 stage sleeps `share` of its own time (half here), inside the stage: the regression the gate must
    name. (The GPU demonstration plants 0.3 with the same function: docs/benchmarks.md.)

    Half, not the 30% of the recorded demonstration (docs/measurements/gate-ci-slow-esm2-*.log, 3 of 3):
    in one CI run of this test, on an otherwise idle 2-core machine, the 30% plant measured only 1.2x and
    the gate passed it; a test that fails now and then teaches nothing. Wraps the worker's stage-end hook
    rather than editing a line of the embed loop, so the plant survives changes to that loop."""
    worker = clone / "src" / "vnp" / "engine" / "worker.py"
    text = worker.read_text()
    assert "def _stage_end(self, stage: str, begin: dict)" in text, "the worker's stage hook changed: re-plant"
    worker.write_text(text + (
        "\n\n# planted by tests/test_gate.py\n"
        "_unplanted_stage_end = Worker._stage_end\n\n\n"
        "def _slow_stage_end(self, stage, begin):\n"
        "    if stage == \"esm2\":\n"
        f"        time.sleep({share} * (time.time() - begin[\"t\"]))\n"
        "    return _unplanted_stage_end(self, stage, begin)\n\n\n"
        "Worker._stage_end = _slow_stage_end\n"))


def git(clone: Path, *args) -> str:
    return subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.slow
def test_the_gate_names_a_planted_esm2_slowdown(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    git(clone, "config", "user.email", "gate@test")
    git(clone, "config", "user.name", "gate test")
    base = git(clone, "rev-parse", "HEAD")
    plant_esm2_sleep(clone)
    git(clone, "commit", "--quiet", "-am", "planted: the ESM-2 stage sleeps half its own time")
    env = {**os.environ, "HOME": str(tmp_path), "VNP_BENCH_PYTHON": sys.executable, "VNP_BENCH_MACHINE": "gatetest",
           "VNP_BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "VNP_CACHE_DIR": os.environ.get("VNP_CACHE_DIR", str(Path.home() / ".cache" / "vnp"))}
    for name in ("VNP_BENCH_SCALE", "VNP_BENCH_COMMAND", "VNP_BENCH_DATA", "VNP_BENCH_RECORDS", "PYTHONPATH"):
        env.pop(name, None)
    # The judged figures of the ESM-2 stage of the larger ci dataset: 16 pipeline runs, a few minutes.
    done = subprocess.run(["bash", "scripts/gate.sh", base, "HEAD", "-b",
                           r"StageSeconds\.track_(seconds_without_cpu_wait|cpu_seconds)\('large', 1, 'esm2'\)"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    verdict = [line for line in done.stdout.splitlines() if line.startswith("gate:")]
    assert done.returncode == 1, "\n".join(verdict) + done.stdout[-3000:] + done.stderr[-3000:]
    assert any("REGRESSED" in line and "track_seconds_without_cpu_wait('large', 1, 'esm2')" in line
               for line in verdict), "\n".join(verdict)
    # the throwaway commit's results and RunRecords went nowhere near the repository's own
    assert not (clone / "results" / "gatetest-ci").exists() and not (clone / "records" / "gatetest-ci").exists()


# -- the figures the ci gate judges ------------------------------------------------------------------

def scheduled_record(waits: list[float]) -> dict:
    """A worker (pid 7) whose ESM-2 stage spans t = 10..12 s; its main thread's cumulative CPU wait `waits`
    at t = 9..13 and 0.25 s of CPU per second."""
    device = {"device": "cpu", "seconds": 2.0, "intervals": [[10.0, 12.0]]}
    stage = {"name": "esm2", "seconds": 2.0, "devices": [device]}
    t = [9.0, 10.0, 11.0, 12.0, 13.0]
    return {"run": {"stages": [stage], "workers": [{"device": "cpu", "pid": 7}]},
            "samples": {"sched": {"t": t, "pid": [7] * 5, "run_s": [0.25 * (x - 9) for x in t], "wait_s": waits}}}


def test_a_stage_less_its_cpu_wait_keeps_what_the_commit_spends():
    from benchmarks.harness import metrics

    without_wait, cpu = metrics.stage_scheduling(scheduled_record([0.0, 0.2, 0.7, 1.2, 1.3]))
    assert without_wait == {"esm2": pytest.approx(2.0 - 1.0)} and cpu == {"esm2": pytest.approx(0.5)}
    idle, _ = metrics.stage_scheduling(scheduled_record([0.0] * 5))  # no wait: the wall time, sleep and all
    assert idle == {"esm2": pytest.approx(2.0)}
    late = scheduled_record([0.0] * 5)
    late["samples"]["sched"]["t"] = [10.5, 11.0, 11.5, 12.0, 13.0]  # worker first seen after the stage began
    assert metrics.stage_scheduling(late) == ({}, {})


def test_memory_that_shrinks_is_no_negative_cost():
    from benchmarks.harness import metrics

    t = [i / 2 for i in range(21)]
    rec = {"harness": {"wall_seconds": 10.0, "expected": {"esm_tokens": 1000}, "gpus": 1},
           "run": {"stages": [{"name": "esm2", "start": 1.0, "end": 10.0, "seconds": 9.0,
                               "devices": [{"device": "cpu", "batches": 10}]}]},
           "samples": {"nvml": {"t": [], "gpu": [], "mem_used_bytes": []},
                       "host": {"t": t, "rss_bytes": [1e9 - 1e6 * x for x in t]}}}
    assert metrics.leak_per_batch(rec)[1] < 0  # RSS fell ...
    assert metrics.summarise(rec)["host_bytes_per_batch"] == 0.0  # ... which is no benefit, and no cost


# -- the GPU scales' gate: warm-up, alternating rounds, each commit's best run -------------------------------

def test_a_cold_first_run_does_not_fail_the_best_rule():
    """HEAD ran first in round 1 and paid the cold start (1.5x); in round 2 it ran warm, as fast as BASE."""
    base = {"e.EndToEnd.track_wall_seconds('typical', 1)": (1.01, samples(1.0, 1.02))}
    head = {"e.EndToEnd.track_wall_seconds('typical', 1)": (1.25, samples(1.5, 1.01))}
    assert gate.verdict(base, head, 1.1, JUDGE_ALL, samples=2, rule="best") == ([], [], [])


def test_a_slowdown_in_every_round_fails_the_best_rule():
    base = {"s.StageSeconds.track_seconds('typical', 1, 'esm2')": (9.0, samples(9.0, 9.1))}
    head = {"s.StageSeconds.track_seconds('typical', 1, 'esm2')": (11.8, samples(11.7, 11.9))}
    regressed, failing, _ = gate.verdict(base, head, 1.1, JUDGE_ALL, samples=2, rule="best")
    assert [(r[0], round(r[3], 2)) for r in regressed] == [("s.StageSeconds.track_seconds('typical', 1, 'esm2')",
                                                            1.3)] and failing == []


def test_the_rank_rule_cannot_judge_two_samples_but_the_best_rule_can():
    """Why the GPU scales use "best": asv's rank test never calls 2 samples against 2 different."""
    base, head = {"s.T.track(1)": (1.0, samples(1.0, 1.05))}, {"s.T.track(1)": (1.55, samples(1.5, 1.6))}
    assert gate.verdict(base, head, 1.1, JUDGE_ALL, samples=2, rule="rank")[0] == []
    assert len(gate.verdict(base, head, 1.1, JUDGE_ALL, samples=2, rule="best")[0]) == 1


def test_the_gpu_gate_judges_only_figures_of_the_run_itself():
    import re

    from benchmarks.harness import scale

    gpu = scale.SCALES["gpu"]
    assert (gpu.gate_rounds, gpu.gate_rule, gpu.warmup_dataset) == (2, "best", "tiny")
    judged = ["end_to_end.EndToEnd.track_wall_seconds('typical', 1)",
              "end_to_end.EndToEnd.track_model_load_seconds('large', 1)",
              "end_to_end.EndToEndTime.time_predict('typical', 1)",
              "stages.StageSeconds.track_seconds('typical', 1, 'esm2')",
              "stages.StageGpuPeak.track_torch_allocated_bytes('typical', 1, 'esm2', 0)"]
    shown = ["end_to_end.EndToEnd.track_peak_gpu_bytes('typical', 1)",  # the whole card's memory
             "stages.StageGpuPeak.track_nvml_bytes('typical', 1, 'esm2', 0)",
             "stages.StageSeconds.track_seconds('typical', 1, 'write')",  # milliseconds
             "end_to_end.EndToEnd.track_projected_full_sample_hours('typical', 1)"]  # derived from the wall
    assert all(re.search(gpu.gate_judged, name) for name in judged)
    assert not any(re.search(gpu.gate_judged, name) for name in shown)


def test_each_commit_is_warmed_up_once_before_its_first_measured_run(tmp_path, monkeypatch):
    from dataclasses import replace

    from benchmarks.harness import runs, suite

    events = []
    monkeypatch.setattr(suite, "SCALE", replace(suite.SCALE, warmup_dataset="tiny"))
    monkeypatch.setattr(runs, "warm_up", lambda scale: events.append("warm-up"))
    monkeypatch.setattr(suite, "_measure", lambda spec, repeats, keep: events.append(spec.role) or
                        {"status": "ok", "metrics": [{"wall_seconds": 1.0}]})
    pipeline = suite.PipelineSuite()
    for memo in (tmp_path / "head", tmp_path / "base"):  # asv's setup_cache directory of each commit
        memo.mkdir()
        for role in ("typical", "large", "typical"):
            pipeline.run(str(memo), suite.core_run(role, 1))
    assert events == ["warm-up", "typical", "large", "warm-up", "typical", "large"]


def test_one_run_is_reported_as_a_sample_so_rounds_add_up():
    from benchmarks.harness import suite

    assert suite.value([{"wall_seconds": 3.0}], "wall_seconds") == {"samples": [3.0], "number": 1}
    assert math.isnan(suite.value([{"wall_seconds": None}], "wall_seconds"))  # n/a stays n/a, not an empty sample


def test_a_card_is_shared_only_when_a_process_outside_the_run_held_memory():
    from benchmarks.harness.runs import card_shared

    alone = {"ours_bytes": [0, 5e9, 5e9], "others_bytes": [0, 0, 0]}
    shared = {"ours_bytes": [0, 5e9, 5e9], "others_bytes": [0, 14e9, 0]}
    foreign_ids = {"ours_bytes": [0, 0, 0], "others_bytes": [5e9, 5e9, 5e9]}  # NVML's pids are not this host's
    assert card_shared(alone) is False and card_shared(shared) is True
    assert card_shared(foreign_ids) is None and card_shared({"mem_used_bytes": [1]}) is None


def test_a_shared_card_leaves_the_whole_card_figures_out():
    from benchmarks.harness import metrics

    def record(shared):
        return {"harness": {"wall_seconds": 10.0, "expected": {"esm_tokens": 1000}, "gpus": 1, "card_shared": shared},
                "run": {"stages": []}, "stage_peaks": [{"stage": "esm2", "gpu": 0, "nvml_peak_bytes": 27e9}],
                "samples": {"nvml": {"t": [1.0], "gpu": [0], "mem_used_bytes": [27e9]},
                            "host": {"t": [], "rss_bytes": []}}}

    assert metrics.summarise(record(False))["peak_gpu_bytes_nvml"] == 27e9
    shared = metrics.summarise(record(True))
    assert shared["peak_gpu_bytes_nvml"] is None and shared["stage_peaks"]["esm2:0"]["nvml_peak_bytes"] is None
