"""Build and write OUTDIR/run.json (schema ``vnp-run/1``, documented in docs/run-record.md)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

from vnp import __version__
from vnp.atomic import atomic_write
from vnp.engine.worker import STAGES as GPU_STAGES

SCHEMA = "vnp-run/1"
STAGE_ORDER = ("preprocess", *GPU_STAGES, "write", "consensus")  # the order of run.json's stages


def _commit() -> str | None:
    """The git commit vnp was installed from, when it was installed from a checkout."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class RunRecord:
    """The record of one run, filled step by step through its methods, written as run.json."""

    def __init__(self, argv: list[str] | tuple[str, ...]):
        self.started_at = time.time()
        self._data: dict = {
            "schema": SCHEMA,
            "tool": {"name": "vnp", "version": __version__, "commit": _commit()},
            "argv": list(argv),
            "host": None,
            "config": None,
            "synthetic_weights": None,
            "input": None,
            "output": None,
            "stages": [],
            "workers": [],
            "model_load_seconds": None,
            "precision_requested": None,
            "precision_used": None,
            "calibration": None,
            "compile_seconds": None,
            "kernels_used": None,
            "resumed": {"parts_done_before": 0},
        }

    # -- what the run was asked to do, and where ------------------------------------------------
    def set_config(self, config: dict) -> None:
        self._data["config"] = config
        self._data["precision_requested"] = config["precision"]

    @property
    def config(self) -> dict:
        return self._data["config"]

    def set_host(self, host: dict) -> None:
        self._data["host"] = host

    def set_resumed(self, parts_done_before: int) -> None:
        self._data["resumed"] = {"parts_done_before": parts_done_before}

    # -- what it read and wrote -----------------------------------------------------------------
    def set_input(self, composition: dict) -> None:
        self._data["input"] = dict(composition)

    @property
    def has_input(self) -> bool:
        """True once preprocessing finished: from then on the work is worth keeping for --resume."""
        return self._data["input"] is not None

    def set_dnabert_tokens(self, tokens: int) -> None:
        self._data["input"]["dnabert_tokens"] = tokens

    def set_output(self, frames: int, consensus_rows: int) -> None:
        self._data["output"] = {"frames": frames, "consensus_rows": consensus_rows}

    @property
    def synthetic_weights(self) -> bool | None:
        return self._data["synthetic_weights"]

    # -- stages ---------------------------------------------------------------------------------
    @property
    def stages(self) -> list[dict]:
        return list(self._data["stages"])

    @contextlib.contextmanager
    def stage(self, name: str, **fields):
        """Time a stage of the parent process; the block may fill ``entry`` (items, tokens...)."""
        entry = {"name": name, "start": time.time(), "end": None, "seconds": None, "items": None,
                 "tokens": None, "devices": [], **fields}
        yield entry
        entry["end"] = time.time()
        entry["seconds"] = entry["end"] - entry["start"]
        self._data["stages"].append(entry)

    def add_worker_stages(self, summaries: list[dict]) -> None:
        """Fold the workers' per-device statistics into one entry per GPU stage, and their settings."""
        self._data["workers"] = [{k: v for k, v in s.items() if k != "stages"} for s in summaries]
        for name in GPU_STAGES:
            self._data["stages"].append(_gpu_stage(name, summaries))
        loads = [sum(s["model_load_seconds"].values()) for s in summaries]
        self._data["model_load_seconds"] = max(loads, default=0.0)
        synthetic = [v for s in summaries for v in (s["synthetic_weights"] or {}).values()]
        if synthetic:
            self._data["synthetic_weights"] = any(synthetic)
        if summaries:  # the budget the workers settled on (sized from free memory unless --token-budget)
            self._data["config"]["token_budget"] = summaries[0]["token_budget"]
        self._fold_precision_and_compile(summaries)

    def _fold_precision_and_compile(self, summaries: list[dict]) -> None:
        """What ran: fp8 may have fallen back to bf16 (per worker: each checks its own frames)."""
        used = sorted({s["precision_used"] for s in summaries})
        self._data["precision_used"] = used[0] if len(used) == 1 else "mixed" if used else None
        calibrations = [{"device": s["device"], **s["calibration"]} for s in summaries if s["calibration"]]
        self._data["calibration"] = calibrations or None
        compiled = [sum(sum(stage["first_call_seconds"].values()) for stage in s["compile"].values())
                    for s in summaries if s["compile"]]
        self._data["compile_seconds"] = max(compiled) if compiled else None
        kernels = sorted({entry["used"] for s in summaries for entry in (s.get("kernels") or {}).values()})
        self._data["kernels_used"] = kernels[0] if len(kernels) == 1 else "mixed" if kernels else None

    # -- the end --------------------------------------------------------------------------------
    def finish(self, exit_code: int, error: str | None) -> None:
        ended = time.time()
        order = {name: number for number, name in enumerate(STAGE_ORDER)}
        self._data["stages"].sort(key=lambda s: order.get(s["name"], len(order)))
        self._data.update({
            "started_at": self.started_at,
            "ended_at": ended,
            "wall_seconds": ended - self.started_at,
            "exit": {"status": "ok" if exit_code == 0 else "failed", "code": exit_code, "error": error},
        })

    def to_dict(self) -> dict:
        return self._data

    def write(self, path: Path) -> None:
        with atomic_write(path) as handle:
            json.dump(self._data, handle, indent=1)
            handle.write("\n")


def _gpu_stage(name: str, summaries: list[dict]) -> dict:
    """One GPU stage over all devices: the slowest device's busy seconds, every device's intervals."""
    devices = []
    for summary in summaries:
        stats = dict(summary["stages"][name])
        stats.pop("first_batch_tokens", None)
        devices.append({"device": summary["device"], **stats})
    intervals = [i for d in devices for i in d["intervals"]]
    return {
        "name": name,
        "start": min((i[0] for i in intervals), default=None),
        "end": max((i[1] for i in intervals), default=None),
        "seconds": max((d["seconds"] for d in devices), default=0.0),
        "items": sum(d["items"] for d in devices),
        "tokens": sum(d["tokens"] for d in devices) if name != "classify" else None,
        "devices": devices,
    }
