"""The base of every asv suite that reads pipeline runs: one run per configuration, shared by all.

asv calls `setup_cache` once per (commit, environment) for every benchmark that shares it, in a fresh
working directory that all those benchmarks then run in. Every suite inherits this one `setup_cache`,
so they all share that directory, and it holds the memo: the first benchmark that needs a
configuration runs it (`runs.execute`) and stores its metrics, or why it was skipped or failed, and
every later benchmark of any suite reads them. So each configuration runs once per `asv run`, and
`asv run -b <regex>` runs only what the selected benchmarks need (a plain setup_cache would have to run
every configuration up front, since asv does not parameterise it).

Skipped configurations raise NotImplementedError (asv: n/a); failed or unvalidated ones raise
RuntimeError (asv: failed) in every benchmark that reads them, so no number is reported for them.

A core configuration runs `SCALE.repeats` times (2 at the ci scale, where one run says little on a shared
CPU); its tracks then return the runs as samples (`{"samples": [...], "number": 1}`, the form asv 0.6's
runner stores for timing benchmarks), so asv reports their median with a confidence interval, compares
commits by a rank test, and `--append-samples` adds the samples of later rounds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from pathlib import Path

from benchmarks.harness import datasets, metrics, runs
from benchmarks.harness import scale as scales

SCALE = scales.current()


def _longest_run_s() -> float:
    """The limit of the longest run any scale can start. Scale-independent on purpose: asv discovers the
    suite (and stores its timeouts) once, under whichever scale's environment comes first."""
    definitions = datasets.load_definitions()["datasets"]
    return max(scale.run_limit_s(definitions[name]["composition"]["esm_tokens"])
               for scale in scales.SCALES.values() for name in scale.datasets.values())


class PipelineSuite:
    # asv's timeout is an inactivity timeout, and a benchmark is silent while the pipeline it waits
    # for runs: allow the longest run, plus margin. The harness itself kills each run at its own limit.
    timeout = _longest_run_s() + 120

    def setup_cache(self):
        return os.getcwd()

    setup_cache.timeout = 120

    keeps_outputs = False  # True: the last run's two output files stay in `outputs(memo, spec)` (to compare them)

    def run(self, memo_dir: str, spec: runs.RunSpec) -> list[dict]:
        """Metrics of each run of `spec` (one dict per repeat): from the memo, or by running it now."""
        memo = Path(memo_dir) / f"{_memo_key(spec)}.json"
        if memo.exists():
            entry = json.loads(memo.read_text())
        else:
            _warm_up(Path(memo_dir))
            keep = outputs(memo_dir, spec) if self.keeps_outputs else None
            entry = _measure(spec, SCALE.repeats if spec.suite == CORE_SUITE else 1, keep)
            memo.write_text(json.dumps(entry))
        if entry["status"] == "skip":
            raise NotImplementedError(entry["reason"])
        if entry["status"] == "failed":
            raise RuntimeError(entry["reason"])
        return entry["metrics"]


CORE_SUITE = "end_to_end"


def _memo_key(spec: runs.RunSpec) -> str:
    return f"{spec.key}-{hashlib.sha256(repr(spec).encode()).hexdigest()[:12]}"


def outputs(memo_dir: str, spec: runs.RunSpec) -> Path:
    """Where the memo keeps the output files of `spec`'s last run."""
    return Path(memo_dir) / "outputs" / _memo_key(spec)


def spec(suite: str, role: str, gpus: int, variant: str = "all", options: dict | None = None,
         env: dict | None = None, program: str = "") -> runs.RunSpec:
    """A run with the scale's fixed thread count and environment on top of `options` and `env`."""
    pinned = {"threads": SCALE.threads} if SCALE.threads else {}
    return runs.RunSpec.make(suite, role, gpus, variant, {**pinned, **(options or {})}, {**SCALE.env, **(env or {})},
                             program)


def core_run(role: str, gpus: int) -> runs.RunSpec:
    """The pipeline with its defaults (every optimisation on): end_to_end's run, read by other suites too."""
    return spec(CORE_SUITE, role, gpus)


def _warm_up(memo_dir: Path) -> None:
    """The scale's warm-up run, once per commit and `asv run` (the memo directory is theirs), before the first
    measured run: no commit is measured cold (scale.Scale.warmup_dataset)."""
    marker = memo_dir / "warmed-up"
    if SCALE.warmup_dataset and not marker.exists():
        runs.warm_up(SCALE)
        marker.touch()


def _measure(spec: runs.RunSpec, repeats: int, keep_outputs: Path | None = None) -> dict:
    full = datasets.load_definitions()["datasets"].get("full")
    summaries = []
    try:
        for _ in range(repeats):
            summaries.append(metrics.summarise(runs.execute(spec, SCALE, keep_outputs=keep_outputs), full))
    except runs.Skip as reason:
        return {"status": "skip", "reason": str(reason)}
    except runs.RunFailed as reason:
        return {"status": "failed", "reason": str(reason)}
    return {"status": "ok", "metrics": summaries}


def value(summaries: list[dict], metric) -> float | dict:
    """A track_* result from every run's `metric` (a key, or a function of one run's metrics).

    None (a run cannot have it) becomes NaN, which asv shows as n/a. Runs become samples, even one: asv's
    `--append-samples` then adds the runs of later `asv run`s (the gate's rounds) to them.
    """
    numbers = [number(metric(s) if callable(metric) else s[metric]) for s in summaries]
    if all(math.isnan(n) for n in numbers):
        return numbers[0]
    return {"samples": [n for n in numbers if not math.isnan(n)], "number": 1}


def number(figure) -> float:
    """None (the run cannot have it) becomes NaN, which asv shows as n/a."""
    return math.nan if figure is None else float(figure)


def median(summaries: list[dict], metric) -> float | None:
    """One figure from several runs (for metrics that combine configurations, such as scaling)."""
    numbers = [metric(s) if callable(metric) else s[metric] for s in summaries]
    numbers = [n for n in numbers if n is not None]
    return statistics.median(numbers) if numbers else None
