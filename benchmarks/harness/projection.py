"""The 10-hour answer: fit a per-stage cost model on measured runs and project it onto a full sample.

Every stage costs ``fixed + marginal(g) x work``: work is the stage's own unit (ESM tokens for ``esm2``,
DNABERT tokens for ``dnabert``, frames for ``classify``/``write``, bases for ``preprocess``, chunks with a
frame for ``consensus``) and ``g`` the GPU count. Stages that run inside the per-GPU workers have one
marginal rate per measured GPU count; other GPU counts come from Amdahl's law fitted on those rates
(``marginal(g) = serial + parallel / g``) and are flagged *extrapolated*. Time outside every stage
(process start, model load, teardown) is the ``startup`` piece, a fixed cost by construction.

The functions below work on plain data (RunRecord dicts, composition dicts) and return JSON-ready dicts,
so the suites (``track_projected_hours``), ``scripts/project.py`` and ``scripts/report.py`` share them.
``docs/projection.md`` explains the model and how to read its output.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from benchmarks.harness.scale import GPU_COUNTS, ROLES

SCHEMA = "vnp-projection/1"
RUNRECORD_SCHEMA = "vnp-runrecord/1"
DEFAULT_TARGET_HOURS = 10.0
FULL_SAMPLE_READS = 6_000_000
STARTUP = "startup"
WORK_UNITS = ("reads", "bases", "chunks", "chunks_with_frame", "frames", "dnabert_tokens", "esm_tokens")

# (substring of the lower-cased stage name, work unit, runs once per GPU worker). The first rule that
# matches wins; the names cover vnp's stages (docs/run-record.md) and the fork's pipeline_state.json ones.
_STAGE_RULES = (
    ("esm", "esm_tokens", True),
    ("dnabert", "dnabert_tokens", True),
    ("classif", "frames", True),
    ("consensus", "chunks_with_frame", False),
    ("preprocess", "bases", False),
    ("chunk", "bases", False),
    ("translat", "bases", False),
)


def stage_kind(name: str) -> tuple[str, bool]:
    """The work unit of a stage and whether it runs in the per-GPU workers (so scales with GPUs)."""
    if name == STARTUP:
        return "none", False
    lowered = name.lower()
    for needle, unit, parallel in _STAGE_RULES:
        if needle in lowered:
            return unit, parallel
    return "frames", False


# --------------------------------------------------------------------------------------------------
# Measured runs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One measured, validated pipeline run, reduced to what the cost model needs."""

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
    composition: Mapping[str, float]
    seconds: Mapping[str, float]  # per stage, plus STARTUP
    wall_seconds: float
    started_at: float = 0.0
    source: str = ""

    @property
    def group(self) -> tuple:
        """Runs one cost model may be fitted on: same machine, commit, target, scale, variant and chunk size."""
        return (self.machine, self.commit, self.target, self.scale, self.variant, self.chunk_size or 0)


def composition_of(mapping: Mapping | None) -> dict[str, float]:
    """The work units present (and numeric) in a composition-like mapping."""
    if not isinstance(mapping, Mapping):
        return {}
    return {unit: float(mapping[unit]) for unit in WORK_UNITS if isinstance(mapping.get(unit), (int, float))}


def observation_from_record(record: Mapping, source: str = "") -> Observation:
    """Reduce a RunRecord to an Observation; ValueError (with the reason) if it cannot teach a cost."""
    if record.get("schema") != RUNRECORD_SCHEMA:
        raise ValueError(f"schema is {record.get('schema')!r}, not {RUNRECORD_SCHEMA}")
    harness = record.get("harness") or {}
    run = record.get("run") or {}
    if harness.get("exit_code", 0) != 0 or harness.get("validated") is False:
        raise ValueError("failed or unvalidated run")
    if harness.get("resumed"):
        raise ValueError("resumed run (its time covers only part of the work)")
    wall = harness.get("wall_seconds") or run.get("wall_seconds")
    if not wall:
        raise ValueError("no wall seconds")
    # the pipeline's own count, else the dataset's (the harness's `expected`; a `cli` run reports none)
    composition = composition_of(run.get("input")) or composition_of(harness.get("expected"))
    if "reads" not in composition:
        raise ValueError("no input composition (run.input or harness.expected)")
    seconds = {
        stage["name"]: float(stage["seconds"])
        for stage in run.get("stages") or []
        if isinstance(stage, Mapping) and stage.get("name") and isinstance(stage.get("seconds"), (int, float))
    }
    if not seconds:
        raise ValueError("no stage times")
    seconds[STARTUP] = max(0.0, float(wall) - sum(seconds.values()))
    dataset = str(harness.get("dataset") or "unknown")
    chunk_size = harness.get("model_type") or (run.get("config") or {}).get("chunk_size")
    return Observation(
        machine=str(harness.get("machine") or "unknown"),
        commit=str(harness.get("commit") or "unknown")[:8],
        target=str(harness.get("target") or "vnp"),
        scale=str(harness.get("scale") or "unknown"),
        suite=str(harness.get("suite") or "unknown"),
        dataset=dataset,
        role=str(harness.get("role") or dataset),
        chunk_size=int(chunk_size) if chunk_size else None,
        gpus=int(harness.get("gpus") or 1),
        variant=str(harness.get("variant") or "default"),
        repeat=int(harness.get("repeat") or 0),
        composition=composition,
        seconds=seconds,
        wall_seconds=float(wall),
        started_at=float(harness.get("started_at") or run.get("started_at") or 0.0),
        source=source,
    )


def load_records(results_dir: str | Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    """All RunRecords under ``results/records/<machine>/<commit8>/``, and one line per unreadable file."""
    records, skipped = [], []
    for path in sorted(Path(results_dir, "records").glob("*/*/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            skipped.append(f"{path}: unreadable ({err})")
            continue
        if not isinstance(record, dict) or record.get("schema") != RUNRECORD_SCHEMA:
            skipped.append(f"{path}: not a {RUNRECORD_SCHEMA} record")
            continue
        # The directory names are the harness's own key; fill them in where the record lacks them.
        harness = record.setdefault("harness", {})
        harness.setdefault("machine", path.parent.parent.name)
        harness.setdefault("commit", path.parent.name)
        records.append((path, record))
    return records, skipped


def observations_from_records(records: Iterable[tuple[Path | str, Mapping]]) -> tuple[list[Observation], list[str]]:
    """The usable observations among ``records``, and one line per record left out (and why)."""
    observations, skipped = [], []
    for path, record in records:
        try:
            observations.append(observation_from_record(record, str(path)))
        except ValueError as err:
            skipped.append(f"{path}: {err}")
    return observations, skipped


def read_datasets(path: str | Path) -> dict[str, dict]:
    """``data/datasets.json`` as {name: {"composition", "chunk_size"}}; an absent or malformed file gives {}.

    A definition without a composition yet still gives its ``reads`` (the rest is estimated later).
    """
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    entries = document.get("datasets") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        return {}
    compositions = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            continue
        composition = composition_of(entry.get("composition"))
        if "reads" not in composition and isinstance(entry.get("reads"), (int, float)):
            composition["reads"] = float(entry["reads"])
        if composition:
            chunk_size = entry.get("model_type") or entry.get("chunk_size")
            compositions[name] = {"composition": composition, "chunk_size": int(chunk_size) if chunk_size else None}
    return compositions


def read_composition_file(path: str | Path) -> dict[str, float]:
    """A composition from a JSON file: a bare composition, ``{"composition": {...}}``, or a run.json."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read composition file {path}: {err}") from err
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a JSON object")
    for candidate in (document, document.get("composition"), document.get("input")):
        composition = composition_of(candidate)
        if "reads" in composition:
            return composition
    raise ValueError(f"{path}: no composition with a 'reads' count")


def complete_composition(
    composition: Mapping[str, float], references: Iterable[Mapping[str, float]]
) -> tuple[dict[str, float], list[str]]:
    """Fill the work units a composition lacks from the measured runs' per-read ratios.

    Returns the completed composition and the names of the units that were estimated this way.
    """
    completed = dict(composition)
    if not completed.get("reads"):
        raise ValueError("a composition needs a positive 'reads' count")
    references = [ref for ref in references if ref.get("reads")]
    estimated = []
    for unit in WORK_UNITS:
        if unit in completed:
            continue
        pairs = [(ref[unit], ref["reads"]) for ref in references if unit in ref]
        if pairs:
            completed[unit] = completed["reads"] * sum(u for u, _ in pairs) / sum(r for _, r in pairs)
            estimated.append(unit)
    return completed, estimated


# --------------------------------------------------------------------------------------------------
# The cost model
# --------------------------------------------------------------------------------------------------


def _nonnegative_lstsq(columns: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Least squares with every coefficient >= 0: drop the most negative column and refit until none is.

    Returns the coefficients (dropped ones are 0) and the indices of the dropped columns.
    """
    # Columns scaled to unit norm: token counts (~1e8) sit beside a column of ones.
    norms = [float(np.linalg.norm(column)) or 1.0 for column in columns]
    active = list(range(len(columns)))
    coef = np.zeros(len(columns))
    dropped = []
    while active:
        matrix = np.column_stack([columns[i] / norms[i] for i in active])
        solution = np.linalg.lstsq(matrix, y, rcond=None)[0] / np.array([norms[i] for i in active])
        if solution.min() >= 0:
            coef[active] = solution
            break
        worst = active[int(np.argmin(solution))]
        active.remove(worst)
        dropped.append(worst)
    return coef, dropped


@dataclass
class StageFit:
    """``seconds = fixed + work x marginal(gpus)`` for one stage."""

    stage: str
    unit: str
    parallel: bool
    fixed: float = 0.0
    marginal: dict[int, float] = field(default_factory=dict)  # measured GPU count -> seconds per unit
    serial: float = 0.0  # Amdahl, for GPU counts not measured: marginal(g) = serial + parallel_part / g
    parallel_part: float = 0.0
    flags: list[str] = field(default_factory=list)

    def marginal_at(self, gpus: int) -> float:
        if gpus in self.marginal:
            return self.marginal[gpus]
        return self.serial + self.parallel_part / gpus

    def extrapolated(self, gpus: int) -> bool:
        """True when the rate at ``gpus`` comes from the Amdahl model, not from a run at that count."""
        return self.parallel and bool(self.marginal) and gpus not in self.marginal

    def seconds(self, work: float, gpus: int) -> float:
        return self.fixed + work * self.marginal_at(gpus)

    def as_dict(self) -> dict:
        total = self.serial + self.parallel_part
        return {
            "unit": self.unit,
            "parallel": self.parallel,
            "fixed_seconds": self.fixed,
            "marginal_seconds_per_unit": {str(g): rate for g, rate in sorted(self.marginal.items())},
            "amdahl": {
                "serial_seconds_per_unit": self.serial,
                "parallel_seconds_per_unit": self.parallel_part,
                "parallel_fraction": self.parallel_part / total if total > 0 else None,
            },
            "flags": list(self.flags),
        }


def fit_stage(stage: str, points: Iterable[tuple[float, int, float]]) -> StageFit:
    """Fit one stage on (work, gpus, seconds) points by least squares, coefficients kept >= 0.

    Stages in the per-GPU workers get a marginal rate per GPU count measured with work; the fixed part is
    shared. If the points cannot separate fixed from marginal (one workload size), the fit falls back to
    proportional (fixed = 0) and says so. A stage never measured with work is fixed cost only.
    """
    unit, parallel = stage_kind(stage)
    fit = StageFit(stage, unit, parallel)
    points = list(points)
    if not points:
        fit.flags.append("never measured")
        return fit
    work, gpus, seconds = (np.array(values, dtype=float) for values in zip(*points))
    gpu_counts = sorted({int(g) for w, g in zip(work, gpus) if w > 0}) if parallel else []
    if parallel:
        marginal_columns = [work * (gpus == g) for g in gpu_counts]
    else:
        marginal_columns = [work] if (work > 0).any() else []
    if not marginal_columns:
        fit.fixed = float(seconds.mean())
        if unit != "none":
            fit.flags.append("no work measured: fixed cost only")
        return fit
    columns = [np.ones_like(work)] + marginal_columns
    if np.linalg.matrix_rank(np.column_stack([c / np.linalg.norm(c) for c in columns])) < len(columns):
        fit.flags.append("fixed part unidentified (one workload size per GPU count): proportional model")
        coef, dropped = _nonnegative_lstsq(marginal_columns, seconds)
        coef, dropped = np.concatenate([[0.0], coef]), [i + 1 for i in dropped]
    else:
        coef, dropped = _nonnegative_lstsq(columns, seconds)
        if 0 in dropped:
            fit.flags.append("fitted fixed part was negative: set to 0")
    if any(i > 0 for i in dropped):
        fit.flags.append("a fitted marginal rate was negative: set to 0")
    fit.fixed = float(coef[0])
    if parallel:
        fit.marginal = {g: float(rate) for g, rate in zip(gpu_counts, coef[1:])}
        _fit_amdahl(fit)
    else:
        fit.serial = float(coef[1])
    return fit


def _fit_amdahl(fit: StageFit) -> None:
    """Amdahl's law on the measured marginal rates: rate(g) = serial + parallel / g, both >= 0."""
    counts = sorted(fit.marginal)
    rates = np.array([fit.marginal[g] for g in counts])
    if len(counts) == 1:
        fit.serial, fit.parallel_part = 0.0, float(rates[0] * counts[0])
        fit.flags.append(f"one GPU count measured ({counts[0]}): ideal scaling assumed for the others")
        return
    inverse = 1.0 / np.array(counts, dtype=float)
    (fit.serial, fit.parallel_part), _ = _nonnegative_lstsq([np.ones_like(inverse), inverse], rates)
    fit.serial, fit.parallel_part = float(fit.serial), float(fit.parallel_part)


@dataclass
class CostModel:
    """Per-stage fits of one group of runs (one machine, commit, target, scale and variant)."""

    stages: dict[str, StageFit]
    measured_gpus: tuple[int, ...]
    datasets: tuple[str, ...]
    runs: int

    def stage_seconds(self, composition: Mapping[str, float], gpus: int) -> dict[str, float]:
        return {
            name: fit.seconds(composition.get(fit.unit, 0.0) if fit.unit != "none" else 0.0, gpus)
            for name, fit in self.stages.items()
        }

    def total_seconds(self, composition: Mapping[str, float], gpus: int) -> float:
        return sum(self.stage_seconds(composition, gpus).values())

    def extrapolated(self, gpus: int) -> bool:
        return any(fit.extrapolated(gpus) for fit in self.stages.values())

    def flags(self) -> list[str]:
        """Each distinct caveat once, with the stages it applies to."""
        stages_by_flag: dict[str, list[str]] = defaultdict(list)
        for name, fit in self.stages.items():
            for flag in fit.flags:
                stages_by_flag[flag].append(name)
        return [f"{flag} ({', '.join(names)})" for flag, names in stages_by_flag.items()]

    def as_dict(self) -> dict:
        return {
            "runs": self.runs,
            "datasets": list(self.datasets),
            "measured_gpus": list(self.measured_gpus),
            "stages": {name: fit.as_dict() for name, fit in self.stages.items()},
            "flags": self.flags(),
        }


def _stage_names(observations: Iterable[Observation]) -> list[str]:
    names: dict[str, None] = {}
    for obs in observations:
        names.update(dict.fromkeys(obs.seconds))
    names.pop(STARTUP, None)
    return [*names, STARTUP]


def _points(observations: list[Observation], stage: str, reduce=None) -> list[tuple[float, int, float]]:
    """(work, gpus, seconds) of one stage; with ``reduce`` (min or max), one point per (dataset, gpus)."""
    unit, _ = stage_kind(stage)
    points = [
        (0.0 if unit == "none" else obs.composition[unit], obs.gpus, obs.seconds[stage])
        for obs in observations
        if stage in obs.seconds and (unit == "none" or unit in obs.composition)
    ]
    if reduce is None:
        return points
    by_config = defaultdict(list)
    for work, gpus, seconds in points:
        by_config[(work, gpus)].append(seconds)
    return [(work, gpus, reduce(seconds)) for (work, gpus), seconds in by_config.items()]


def fit_cost_model(observations: Iterable[Observation], reduce=None) -> CostModel:
    """Fit every stage on all observations (all datasets, GPU counts and repeats).

    ``reduce=min`` or ``max`` fits on each configuration's fastest or slowest repeat instead: the two
    ends of the interval that the repeats' spread gives.
    """
    observations = list(observations)
    if not observations:
        raise ValueError("no runs to fit a cost model on")
    stages = {name: fit_stage(name, _points(observations, name, reduce)) for name in _stage_names(observations)}
    return CostModel(
        stages=stages,
        measured_gpus=tuple(sorted({obs.gpus for obs in observations})),
        datasets=tuple(sorted({obs.dataset for obs in observations})),
        runs=len(observations),
    )


class Envelope(NamedTuple):
    """The point fit (all repeats) and the fits on the fastest and slowest repeat of each configuration."""

    point: CostModel
    low: CostModel
    high: CostModel


def fit_envelope(observations: Iterable[Observation]) -> Envelope:
    observations = list(observations)
    return Envelope(
        fit_cost_model(observations), fit_cost_model(observations, min), fit_cost_model(observations, max)
    )


# --------------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------------


def max_reads_within(model: CostModel, composition: Mapping[str, float], gpus: int, seconds: float) -> float | None:
    """The largest sample (reads, same composition per read) whose projected time fits in ``seconds``.

    The model is linear in work, so this solves fixed + reads x (seconds per read) = budget. None when a
    read costs nothing (no limit); 0 when the fixed costs alone exceed the budget.
    """
    per_read = {unit: value / composition["reads"] for unit, value in composition.items()}
    fixed = sum(fit.fixed for fit in model.stages.values())
    marginal = sum(
        fit.marginal_at(gpus) * per_read.get(fit.unit, 0.0) for fit in model.stages.values() if fit.unit != "none"
    )
    if marginal <= 0:
        return None
    return max(0.0, (seconds - fixed) / marginal)


def project(
    envelope: Envelope,
    composition: Mapping[str, float],
    gpu_counts: Iterable[int] = GPU_COUNTS,
    target_hours: float = DEFAULT_TARGET_HOURS,
) -> dict:
    """Projected hours per stage and in total for each GPU count, with interval, pass/fail and limits."""
    target_seconds = target_hours * 3600.0
    rows = []
    for gpus in gpu_counts:
        point = envelope.point.stage_seconds(composition, gpus)
        low = envelope.low.stage_seconds(composition, gpus)
        high = envelope.high.stage_seconds(composition, gpus)
        stages = {
            name: {
                "hours": point[name] / 3600.0,
                "low_hours": min(point[name], low.get(name, point[name]), high.get(name, point[name])) / 3600.0,
                "high_hours": max(point[name], low.get(name, point[name]), high.get(name, point[name])) / 3600.0,
                "extrapolated": envelope.point.stages[name].extrapolated(gpus),
            }
            for name in point
        }
        total = sum(point.values()) / 3600.0
        max_reads = max_reads_within(envelope.point, composition, gpus, target_seconds)
        rows.append(
            {
                "gpus": gpus,
                "extrapolated": envelope.point.extrapolated(gpus),
                "stages": stages,
                "total_hours": total,
                "low_hours": sum(s["low_hours"] for s in stages.values()),
                "high_hours": sum(s["high_hours"] for s in stages.values()),
                "meets_target": total <= target_hours,
                "meets_target_at_high": sum(s["high_hours"] for s in stages.values()) <= target_hours,
                "max_reads_within_target": None if max_reads is None else int(max_reads),
            }
        )
    base = next((row["total_hours"] for row in rows if row["gpus"] == 1), None)
    for row in rows:
        ok = base is not None and row["total_hours"] > 0
        row["speedup"] = base / row["total_hours"] if ok else None
        row["scaling_efficiency"] = base / (row["gpus"] * row["total_hours"]) if ok else None
    fewest = next((row for row in rows if row["meets_target"]), None)
    return {
        "target_hours": target_hours,
        "rows": rows,
        "fewest_gpus_meeting_target": fewest["gpus"] if fewest else None,
        "fewest_gpus_extrapolated": fewest["extrapolated"] if fewest else None,
    }


def check_prediction(
    observations: Iterable[Observation], source: str = "typical", target: str = "large", tolerance: float = 0.10
) -> dict:
    """Trust check: fit on the ``source`` role's runs alone, predict the ``target`` runs, report the error.

    Compared at every GPU count the target ran, ``extrapolated`` where the source did not run it;
    ``warning`` is set when any |error| exceeds ``tolerance``.
    """
    observations = list(observations)
    fit_on = [obs for obs in observations if obs.role == source]
    checked = [obs for obs in observations if obs.role == target]
    result = {"from": source, "to": target, "tolerance": tolerance, "available": False, "per_gpus": []}
    if not fit_on or not checked:
        missing = source if not fit_on else target
        result["reason"] = f"no '{missing}' runs"
        return result
    model = fit_cost_model(fit_on)
    # GPU counts the source never ran are predicted too (Amdahl, flagged): that tests the extrapolation
    for gpus in sorted({obs.gpus for obs in checked}):
        runs = [obs for obs in checked if obs.gpus == gpus]
        composition = runs[0].composition
        predicted = model.total_seconds(composition, gpus)
        measured = float(np.mean([obs.wall_seconds for obs in runs]))
        result["per_gpus"].append(
            {"gpus": gpus, "predicted_seconds": predicted, "measured_seconds": measured,
             "error": predicted / measured - 1, "extrapolated": model.extrapolated(gpus)}
        )
    worst = max(abs(row["error"]) for row in result["per_gpus"])
    result.update(available=True, max_abs_error=worst, warning=worst > tolerance, fit_flags=model.flags())
    return result


def same_sample(observation: Observation, composition: Mapping[str, float]) -> bool:
    """True when the run processed the projected sample itself (same reads, frames and ESM tokens)."""
    units = ("reads", "frames", "esm_tokens")
    return all(unit in composition and observation.composition.get(unit) == composition[unit] for unit in units)


def sample_runs_check(model: CostModel, group: Iterable[Observation], sample_runs: Iterable[Observation],
                      composition: Mapping[str, float]) -> list[dict]:
    """Measured runs of the projected sample against this model's projection at their GPU count.

    The runs come from any commit on the group's machine; ``in_fit`` marks a run the model was fitted on
    (its agreement is then partly by construction), ``extrapolated`` a GPU count the group never ran.
    """
    fitted = {id(obs) for obs in group}
    rows = []
    for run in sorted(sample_runs, key=lambda obs: (obs.gpus, obs.started_at)):
        projected = model.total_seconds(composition, run.gpus)
        rows.append({"gpus": run.gpus, "commit": run.commit, "dataset": run.dataset, "measured_seconds": run.wall_seconds,
                     "projected_seconds": projected, "error": projected / run.wall_seconds - 1,
                     "in_fit": id(run) in fitted, "extrapolated": model.extrapolated(run.gpus)})
    return rows


# The scales' dataset roles, small to large, but contigs (chunked apart): the default trust check
# predicts the largest role a group ran from the next smaller one.
READ_ROLES = tuple(role for role in ROLES if role != "contigs")


def default_check(observations: Iterable[Observation]) -> tuple[str, str]:
    """(source, target) roles: the group's two largest reads roles; typical -> large when it has fewer."""
    present = [role for role in READ_ROLES if role in {obs.role for obs in observations}]
    return (present[-2], present[-1]) if len(present) >= 2 else ("typical", "large")


def project_group(
    observations: Iterable[Observation],
    composition: Mapping[str, float],
    gpu_counts: Iterable[int] = GPU_COUNTS,
    target_hours: float = DEFAULT_TARGET_HOURS,
    check: tuple[str, str] | None = None,
    sample_runs: Iterable[Observation] = (),
) -> dict:
    """Fit one group's runs and project them: the per-group entry of ``scripts/project.py``'s JSON.

    ``check``: the trust check's (source, target) roles; None picks ``default_check``.
    """
    observations = list(observations)
    check = check or default_check(observations)
    envelope = fit_envelope(observations)
    first = observations[0]
    return {
        "machine": first.machine,
        "commit": first.commit,
        "target": first.target,
        "scale": first.scale,
        "variant": first.variant,
        "chunk_size": first.chunk_size,
        "started_at": min(obs.started_at for obs in observations),
        "fit": envelope.point.as_dict(),
        "projection": project(envelope, composition, gpu_counts, target_hours),
        "check": check_prediction(observations, *check),
        "measured_sample": sample_runs_check(envelope.point, observations, sample_runs, composition),
    }


def group_observations(observations: Iterable[Observation]) -> dict[tuple, list[Observation]]:
    groups: dict[tuple, list[Observation]] = defaultdict(list)
    for obs in observations:
        groups[obs.group].append(obs)
    return dict(groups)


def projected_hours(records: Iterable[Mapping], composition: Mapping[str, float], gpus: int) -> float:
    """Point projection, in hours, of ``composition`` on ``gpus`` GPUs from RunRecord dicts of one group.

    For the suites' ``track_projected_hours``. Records that cannot teach a cost are ignored; NaN when
    none can (asv shows NaN as n/a).
    """
    observations, _ = observations_from_records((str(i), r) for i, r in enumerate(records))
    if not observations:
        return math.nan
    composition, _ = complete_composition(composition, [obs.composition for obs in observations])
    return fit_cost_model(observations).total_seconds(composition, gpus) / 3600.0


def project_results(
    observations: Iterable[Observation],
    composition: Mapping[str, float] | None = None,
    source: str = "",
    gpu_counts: Iterable[int] = GPU_COUNTS,
    target_hours: float = DEFAULT_TARGET_HOURS,
    variant: str = "all",
    check: tuple[str, str] | None = None,
    chunk_size: int | None = None,
    sample_pool: Iterable[Observation] | None = None,
) -> list[dict]:
    """Project every group (machine, commit, target, scale, chunk size) of one variant onto a sample.

    With ``chunk_size`` only runs at that chunk size (model type) are used: reads chunked at 300 and
    contigs at 500 cost differently per read.

    ``composition`` is the sample's (units it lacks are estimated from each group's runs); without one,
    a sample of FULL_SAMPLE_READS reads with the measured runs' per-read ratios. Each entry is
    ``project_group``'s dict plus ``composition``: the completed composition, its source and the
    estimated units. Runs of the sample itself (any commit, same machine) are set against each
    group's projection in ``measured_sample``; they are looked for in ``sample_pool`` (default: the
    observations), so a caller projecting a subset of groups can still find them elsewhere.
    """
    gpu_counts = tuple(gpu_counts)
    def usable(pool):
        return [obs for obs in pool if obs.variant == variant and (not chunk_size or obs.chunk_size in (chunk_size, None))]

    observations = list(observations)
    pool = usable(observations if sample_pool is None else sample_pool)
    results = []
    for _, group in sorted(group_observations(usable(observations)).items()):
        wanted = dict(composition) if composition else {"reads": float(FULL_SAMPLE_READS)}
        origin = source if composition else f"{FULL_SAMPLE_READS:,} reads at the measured runs' per-read ratios" + (
            f"; {source}" if source else ""
        )
        filled, estimated = complete_composition(wanted, [obs.composition for obs in group])
        first = group[0]
        sample_runs = [obs for obs in pool if (obs.machine, obs.target, obs.chunk_size) == (first.machine, first.target, first.chunk_size)
                       and same_sample(obs, filled)]
        entry = project_group(group, filled, gpu_counts, target_hours, check, sample_runs)
        entry["composition"] = {"composition": filled, "source": origin, "estimated": estimated}
        results.append(entry)
    return results


def sample_composition(
    composition_file: str | Path | None = None,
    sample: str | Path | None = None,
    chunk_size: int | None = None,
    datasets_file: str | Path | None = None,
    dataset: str = "full",
) -> tuple[dict[str, float] | None, str, int | None]:
    """The sample to project, where it came from, and its chunk size (None: any).

    From a composition file, a scan of a FASTA (at ``chunk_size``, default 500 as VirNucPro's), or a
    dataset definition (its ``model_type``). The composition is None (with the reason as source) when
    none of them gives one; ``project_results`` then falls back to FULL_SAMPLE_READS reads.
    """
    if composition_file:
        return read_composition_file(composition_file), str(composition_file), chunk_size
    if sample:
        from benchmarks.harness.datasets import count_composition  # the pipeline's own preprocessing

        chunk_size = chunk_size or 500
        counts = count_composition(Path(sample), chunk_size)
        estimated = " (DNABERT tokens estimated from bases)" if counts.get("dnabert_tokens_estimated") else ""
        return composition_of(counts), f"scan of {sample} at chunk size {chunk_size}{estimated}", chunk_size
    found = read_datasets(datasets_file).get(dataset) if datasets_file else None
    if found:
        return found["composition"], f"{datasets_file}: {dataset}", chunk_size or found["chunk_size"]
    return None, f"no '{dataset}' dataset definition", chunk_size
