"""The commands the benchmarks drive, through the command line (`vnp predict INPUT -o OUTDIR [options]`, with
exit code 0 or a one-line reason on stderr; docs/architecture.md).

* `vnp`: the pipeline installed in asv's environment for the commit under test (`python -m vnp predict`).
* `cli`: any VirNucPro-compatible command named by `VNP_BENCH_COMMAND` (for example `virnucpro predict`
  or `python -m virnucpro predict`). Its run record is OUTDIR/run.json when it writes one, otherwise a
  vnp-run/1-shaped dict built from the stage times in OUTDIR/.checkpoints/pipeline_state.json.

A run is described by semantic options (`{"precision": "bf16", "packing": False, ...}`); each target turns
them into flags and refuses, with `Unsupported`, a flag its `--help` does not list, so that a benchmark of
an old commit or of another tool is skipped instead of run with a different configuration.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = "prediction_results.txt"
CONSENSUS = "prediction_results_highestscore.csv"
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")

# The fork's checkpoint stages, folded into the run record's stage names.
STATE_STAGES = {
    "CHUNKING": "preprocess", "TRANSLATION": "preprocess", "NUCLEOTIDE_SPLITTING": "preprocess",
    "PROTEIN_SPLITTING": "preprocess", "NUCLEOTIDE_FEATURES": "dnabert", "PROTEIN_FEATURES": "esm2",
    "FEATURE_MERGING": "classify", "PREDICTION": "classify", "CONSENSUS": "consensus",
}


SWITCHES = ("cpu", "resume", "quiet", "expandable_segments")  # flags without a --no- form


class Unsupported(Exception):
    """The target cannot run this configuration (a flag it lacks); the benchmark is skipped."""


class CommandFailed(Exception):
    """The command does not even answer --help: the commit is broken, and its benchmarks fail."""


class Target:
    def __init__(self, name: str, command: list[str]):
        self.name = name
        self.command = command

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {shlex.join(self.command)!r})"

    @functools.cached_property
    def flags(self) -> frozenset[str]:
        """Every option the command's --help mentions."""
        try:
            done = subprocess.run([*self.command, "--help"], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CommandFailed(f"{shlex.join(self.command)} --help failed: {error}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CommandFailed(f"{shlex.join(self.command)} --help exited {done.returncode}: {last}")
        return frozenset(FLAG.findall(done.stdout))

    def argv(self, input_path: Path, outdir: Path, options: dict) -> list[str]:
        """The command line for one run; `Unsupported` if the command lacks a flag the options need."""
        flags = []
        for name, value in options.items():
            flags += self._flag(name, value)
        for flag in flags:
            if flag.startswith("-") and flag not in self.flags:
                raise Unsupported(f"{self.name} has no {flag} (needed for {self._describe(options)})")
        return [*self.command, str(input_path), "-o", str(outdir), *flags]

    def _flag(self, name: str, value) -> list[str]:
        if value is None or (value is False and name in SWITCHES):
            return []
        if name == "cpu":
            return ["--cpu"] if "--cpu" in self.flags or "--device" not in self.flags else ["--device", "cpu"]
        if name == "gpus":
            return ["--gpus", ",".join(str(g) for g in value)]
        if name == "model_type":
            return ["-m", str(value)]
        option = "--" + name.replace("_", "-")
        if value is True:
            return [option]
        if value is False:
            return ["--no-" + option[2:]]
        return [option, str(value)]

    @staticmethod
    def _describe(options: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in options.items())

    def environment(self, options: dict) -> dict:
        """Variables the command needs on top of the harness's own (weights' folders, package paths)."""
        return {}

    def read_run(self, outdir: Path, exit_code: int, started_at: float, ended_at: float) -> dict | None:
        """OUTDIR/run.json (vnp-run/1), or None when the command wrote none."""
        path = outdir / "run.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def output_files(self, outdir: Path) -> tuple[Path | None, Path | None]:
        """(prediction_results.txt, prediction_results_highestscore.csv): in OUTDIR or the fork's *_merged/."""
        found = []
        for name in (RESULTS, CONSENSUS):
            candidates = [outdir / name, *sorted(outdir.glob(f"*_merged/{name}"))]
            found.append(next((p for p in candidates if p.exists()), None))
        return found[0], found[1]


class CliTarget(Target):
    def read_run(self, outdir: Path, exit_code: int, started_at: float, ended_at: float) -> dict | None:
        run = super().read_run(outdir, exit_code, started_at, ended_at)
        if run is not None:
            return run
        state = outdir / ".checkpoints" / "pipeline_state.json"
        stages = stages_from_pipeline_state(json.loads(state.read_text())) if state.exists() else []
        return {
            "schema": "vnp-run/1", "tool": {"name": self.command[0], "version": None, "commit": None},
            "argv": None, "host": None, "config": None, "synthetic_weights": None, "input": None, "output": None,
            "stages": stages, "workers": [], "model_load_seconds": None,
            "started_at": started_at, "ended_at": ended_at, "wall_seconds": ended_at - started_at,
            "resumed": None, "exit": {"status": "ok" if exit_code == 0 else "failed", "code": exit_code, "error": None},
        }


def stages_from_pipeline_state(state: dict) -> list[dict]:
    """vnp-run/1 stages (name, start, end, seconds) from the fork's .checkpoints/pipeline_state.json."""
    merged: dict[str, dict] = {}
    for source, entry in (state.get("stages") or {}).items():
        name = STATE_STAGES.get(source, source.lower())
        stage = merged.setdefault(name, {"name": name, "start": None, "end": None, "seconds": 0.0, "items": None,
                                         "tokens": None, "devices": [], "sources": []})
        stage["sources"].append(source)
        start, end = _utc_seconds(entry.get("started_at")), _utc_seconds(entry.get("completed_at"))
        if start is not None:
            stage["start"] = start if stage["start"] is None else min(stage["start"], start)
        if end is not None:
            stage["end"] = end if stage["end"] is None else max(stage["end"], end)
        seconds = entry.get("duration_seconds")
        if seconds is None and start is not None and end is not None:
            seconds = end - start
        stage["seconds"] += float(seconds or 0.0)
    return list(merged.values())


def _utc_seconds(stamp: str | None) -> float | None:
    """The fork writes datetime.utcnow().isoformat(): naive, but UTC."""
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def current() -> Target:
    """`cli` when VNP_BENCH_COMMAND names a command, else `vnp` from this Python's environment."""
    command = os.environ.get("VNP_BENCH_COMMAND")
    if command:
        return CliTarget("cli", shlex.split(command))
    return Target("vnp", [sys.executable, "-m", "vnp", "predict"])
