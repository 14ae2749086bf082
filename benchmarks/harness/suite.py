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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from benchmarks.harness import datasets, metrics, runs, scale as scales

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

    def run(self, memo_dir: str, spec: runs.RunSpec) -> dict:
        """Metrics of `spec`'s run: from the memo, or by running it now."""
        memo = Path(memo_dir) / f"{spec.key}-{hashlib.sha256(repr(spec).encode()).hexdigest()[:12]}.json"
        if memo.exists():
            entry = json.loads(memo.read_text())
        else:
            entry = _measure(spec)
            memo.write_text(json.dumps(entry))
        if entry["status"] == "skip":
            raise NotImplementedError(entry["reason"])
        if entry["status"] == "failed":
            raise RuntimeError(entry["reason"])
        return entry["metrics"]


def core_run(role: str, gpus: int) -> runs.RunSpec:
    """The pipeline with its defaults (every optimisation on): end_to_end's run, read by other suites too."""
    return runs.RunSpec.make("end_to_end", role, gpus)


def _measure(spec: runs.RunSpec) -> dict:
    try:
        rec = runs.execute(spec, SCALE)
    except runs.Skip as reason:
        return {"status": "skip", "reason": str(reason)}
    except runs.RunFailed as reason:
        return {"status": "failed", "reason": str(reason)}
    full = datasets.load_definitions()["datasets"].get("full", {}).get("composition")
    return {"status": "ok", "metrics": metrics.summarise(rec, full)}


def value(number) -> float:
    """A metric for a track_* benchmark: None (the run cannot have it) becomes NaN, which asv shows as n/a."""
    return math.nan if number is None else float(number)
