"""Build and write OUTDIR/run.json (schema ``vnp-run/1``, documented in docs/run-record.md)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

from vnp import __version__
from vnp.atomic import atomic_write

SCHEMA = "vnp-run/1"
GPU_STAGES = ("dnabert", "esm2", "classify")


def _commit() -> str | None:
    """The git commit vnp was installed from, when it was installed from a checkout."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class RunRecord:
    def __init__(self, argv: list[str]):
        self.started_at = time.time()
        self.data: dict = {
            "schema": SCHEMA,
            "tool": {"name": "vnp", "version": __version__, "commit": _commit()},
            "argv": ["vnp", *argv],
            "host": None,
            "config": None,
            "synthetic_weights": None,
            "input": None,
            "output": None,
            "stages": [],
            "workers": [],
            "model_load_seconds": None,
            "resumed": {"parts_done_before": 0},
        }

    @contextlib.contextmanager
    def stage(self, name: str, **fields):
        """Time a stage of the parent process; the block may fill ``entry`` (items, tokens...)."""
        entry = {"name": name, "start": time.time(), "end": None, "seconds": None, "items": None,
                 "tokens": None, "devices": [], **fields}
        yield entry
        entry["end"] = time.time()
        entry["seconds"] = entry["end"] - entry["start"]
        self.data["stages"].append(entry)

    def add_worker_stages(self, summaries: list[dict]) -> None:
        """Fold the workers' per-device stage statistics into one entry per GPU stage."""
        self.data["workers"] = [{k: v for k, v in s.items() if k != "stages"} for s in summaries]
        for name in GPU_STAGES:
            devices = []
            for summary in summaries:
                stats = dict(summary["stages"][name])
                stats.pop("first_batch_tokens", None)
                devices.append({"device": summary["device"], **stats})
            intervals = [i for d in devices for i in d["intervals"]]
            self.data["stages"].append({
                "name": name,
                "start": min((i[0] for i in intervals), default=None),
                "end": max((i[1] for i in intervals), default=None),
                "seconds": max((d["seconds"] for d in devices), default=0.0),
                "items": sum(d["items"] for d in devices),
                "tokens": sum(d["tokens"] for d in devices) if name != "classify" else None,
                "devices": devices,
            })
        loads = [sum(s["model_load_seconds"].values()) for s in summaries]
        self.data["model_load_seconds"] = max(loads, default=0.0)
        synthetic = [v for s in summaries for v in (s["synthetic_weights"] or {}).values()]
        if synthetic:
            self.data["synthetic_weights"] = any(synthetic)

    def finish(self, outdir: Path, exit_code: int, error: str | None) -> None:
        ended = time.time()
        order = {"preprocess": 0, "dnabert": 1, "esm2": 2, "classify": 3, "write": 4, "consensus": 5}
        self.data["stages"].sort(key=lambda s: order.get(s["name"], 99))
        self.data.update({
            "started_at": self.started_at,
            "ended_at": ended,
            "wall_seconds": ended - self.started_at,
            "exit": {"status": "ok" if exit_code == 0 else "failed", "code": exit_code, "error": error},
        })
        outdir.mkdir(parents=True, exist_ok=True)
        with atomic_write(outdir / "run.json") as handle:
            json.dump(self.data, handle, indent=1)
            handle.write("\n")
