"""The reading side of a RunRecord: one typed, frozen `Record`, read once from JSON.

A RunRecord (schema `vnp-runrecord/1`, written by `benchmarks/harness/record.py`) is the pipeline's own
`run.json` (schema `vnp-run/1`, the contract in docs/run-record.md) under `run`, what the harness saw
from outside under `harness` and `samples`, and the two joined per stage under `stage_peaks`.
Everything the analysis asks of a record (is it usable, the seconds per stage, the composition, the GPU
of a device) is answered here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping

from benchmarks.harness.record import SCHEMA  # the writer's schema: one definition for both sides

RUN_SCHEMA = "vnp-run/1"  # run.json's, the pipeline's contract (docs/run-record.md); read, never written here
STARTUP = "startup"  # the time outside every stage: process start, model load, teardown
WORK_UNITS = ("reads", "bases", "chunks", "chunks_with_frame", "frames", "dnabert_tokens", "esm_tokens")


def gpu_index(device: object) -> int | None:
    """The GPU of a torch device string: "cuda:3" -> 3, "cuda" -> 0, "cpu" (or nothing) -> None."""
    name = str(device or "")
    if not name.startswith("cuda"):
        return None
    index = name.partition(":")[2]
    return int(index) if index.isdigit() else 0


def composition_of(mapping: object) -> dict[str, float]:
    """The work units present (and numeric) in a composition-like mapping."""
    if not isinstance(mapping, Mapping):
        return {}
    return {unit: float(mapping[unit]) for unit in WORK_UNITS if isinstance(mapping.get(unit), (int, float))}


def _composition(run: Mapping, harness: Mapping) -> dict[str, float]:
    """The work units of a run: what the harness counted by the original rules, not what the pipeline under
    test says (a build that over-reported its work would look faster); the pipeline's figure only for what
    the harness cannot count (DNABERT tokens: it only estimates them)."""
    counted, reported = composition_of(harness.get("expected")), composition_of(run.get("input"))
    if (harness.get("expected") or {}).get("dnabert_tokens_estimated") and "dnabert_tokens" in reported:
        counted["dnabert_tokens"] = reported["dnabert_tokens"]
    return {**reported, **counted}


@dataclass(frozen=True)
class Device:
    """One device's share of one stage (run.json's `stages[].devices[]`)."""

    stage: str
    gpu: int | None
    info: Mapping = field(repr=False)


@dataclass(frozen=True)
class Record:
    """One measured pipeline run, as the analysis reads it."""

    machine: str
    commit: str  # the first 8 hex digits, as in the records' directory names
    target: str
    scale: str
    suite: str
    dataset: str
    role: str  # the dataset's part in the suite (typical, large, ...): the ci scale runs small stand-ins
    chunk_size: int | None  # the model type: runs at 300 and 500 cost differently per read
    gpus: int
    variant: str
    repeat: int
    exit_code: int
    validated: bool | None
    resumed: bool
    wall_seconds: float | None
    started_at: float
    composition: Mapping[str, float]  # the pipeline's count of the input, else the dataset's
    harness: Mapping = field(repr=False)
    run: Mapping = field(repr=False)
    samples: Mapping = field(repr=False)
    stage_peaks: tuple = field(repr=False)
    source: str = ""

    @classmethod
    def from_json(cls, document: Mapping, source: str = "", machine: str = "", commit: str = "") -> Record:
        """A Record from a RunRecord dict; `machine`/`commit` (the directory names) fill in what it lacks.

        ValueError when the document is not a RunRecord at all.
        """
        if not isinstance(document, Mapping) or document.get("schema") != SCHEMA:
            found = document.get("schema") if isinstance(document, Mapping) else type(document).__name__
            raise ValueError(f"schema is {found!r}, not {SCHEMA}")
        harness, run = document.get("harness") or {}, document.get("run") or {}
        wall = harness.get("wall_seconds") or run.get("wall_seconds")
        dataset = str(harness.get("dataset") or "unknown")
        chunk_size = harness.get("model_type") or (run.get("config") or {}).get("chunk_size")
        return cls(
            machine=str(harness.get("machine") or machine or "unknown"),
            commit=str(harness.get("commit") or commit or "unknown")[:8],
            target=str(harness.get("target") or "vnp"),
            scale=str(harness.get("scale") or "unknown"),
            suite=str(harness.get("suite") or "unknown"),
            dataset=dataset,
            role=str(harness.get("role") or dataset),
            chunk_size=int(chunk_size) if chunk_size else None,
            gpus=int(harness.get("gpus") or 1),
            variant=str(harness.get("variant") or "default"),
            repeat=int(harness.get("repeat") or 0),
            exit_code=int(harness.get("exit_code") or 0),
            validated=harness.get("validated"),
            resumed=bool(harness.get("resumed")),
            wall_seconds=float(wall) if wall else None,
            started_at=float(harness.get("started_at") or run.get("started_at") or 0.0),
            composition=_composition(run, harness),
            harness=harness,
            run=run,
            samples=document.get("samples") or {},
            stage_peaks=tuple(p for p in document.get("stage_peaks") or [] if isinstance(p, Mapping)),
            source=source,
        )

    @property
    def problem(self) -> str | None:
        """Why this run cannot teach a cost (None when it can)."""
        if self.exit_code != 0 or self.validated is not True:  # a record that does not say so is not validated
            return "failed or unvalidated run"
        if self.resumed:
            return "resumed run (its time covers only part of the work)"
        if not self.wall_seconds:
            return "no wall seconds"
        if "reads" not in self.composition:
            return "no input composition (run.input or harness.expected)"
        if len(self.stage_seconds) <= 1:
            return "no stage times"
        return None

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def stages(self) -> list[Mapping]:
        return [s for s in self.run.get("stages") or [] if isinstance(s, Mapping) and s.get("name")]

    @cached_property
    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage in pipeline order, plus STARTUP: the wall time outside every stage."""
        seconds = {s["name"]: float(s["seconds"]) for s in self.stages if isinstance(s.get("seconds"), (int, float))}
        if self.wall_seconds is not None:
            seconds[STARTUP] = max(0.0, self.wall_seconds - sum(seconds.values()))
        return seconds

    @cached_property
    def devices(self) -> list[Device]:
        """Every (stage, device) of the run, the "cuda:N" device string parsed."""
        return [
            Device(s["name"], gpu_index(d.get("device")), d)
            for s in self.stages
            for d in s.get("devices") or []
            if isinstance(d, Mapping)
        ]

    @property
    def config(self) -> Mapping:
        return self.run.get("config") or {}

    @property
    def precision_used(self) -> str | None:
        """What ESM-2 ran in: run.json's ``precision_used`` (an fp8 request may have fallen back to bf16), else
        the configured precision (records from before fp8 existed)."""
        used = self.run.get("precision_used") or self.config.get("precision")
        if used == "fp8" and not any(c.get("passed") for c in self.run.get("calibration") or []):
            # fp8 runs only after a passed check; a claim without one is not believed (b0a1480's records: bf16 ran)
            return "unverified fp8 (no passed fidelity check recorded)"
        return used

    @property
    def group(self) -> tuple:
        """Runs one cost model may be fitted on: same machine, commit, target, scale, variant and chunk size."""
        return (self.machine, self.commit, self.target, self.scale, self.variant, self.chunk_size or 0)

    @property
    def config_key(self) -> tuple[str, int]:
        return (self.dataset, self.gpus)


def load_records(root: str | Path) -> tuple[list[Record], list[str]]:
    """Every RunRecord under ``root/<machine>/<commit8>/``, and one line per file left out (and why)."""
    records, skipped = [], []
    for path in sorted(Path(root).glob("*/*/*.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            skipped.append(f"{path}: unreadable ({err})")
            continue
        try:
            records.append(Record.from_json(document, str(path), path.parent.parent.name, path.parent.name))
        except ValueError as err:
            skipped.append(f"{path}: not a RunRecord ({err})")
    return records, skipped


def usable_records(records: list[Record]) -> tuple[list[Record], list[str]]:
    """The records that can teach a cost, and one line per record left out (and why)."""
    usable = [r for r in records if r.usable]
    return usable, [f"{r.source}: {r.problem}" for r in records if not r.usable]
