"""The cost model: per-stage ``fixed + marginal(g) x work``, fitted by non-negative least squares.

Work is each stage's own unit (ESM tokens for ``esm2``, DNABERT tokens for ``dnabert``, frames for
``classify``/``write``, bases for ``preprocess``, chunks with a frame for ``consensus``) and ``g`` the GPU
count. Stages that run inside the per-GPU workers have one marginal rate per measured GPU count; other
GPU counts come from Amdahl's law fitted on those rates (``marginal(g) = serial + parallel / g``) and are
flagged *extrapolated*. Time outside every stage (process start, model load, teardown) is the
``startup`` piece, a fixed cost by construction. ``project`` evaluates a fit on one sample and
``project_cohort`` on many samples spread over several nodes. docs/projection.md explains the model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

import numpy as np
from scipy.optimize import nnls

from analysis.record import STARTUP, Record
from benchmarks.harness.scale import GPU_COUNTS
from benchmarks.harness.stagework import stage_work

DEFAULT_TARGET_HOURS = 10.0


def stage_kind(name: str) -> tuple[str, bool]:
    """The work unit of a stage and whether it runs in the per-GPU workers (so scales with GPUs)."""
    if name == STARTUP:
        return "none", False
    return stage_work(name)


# --------------------------------------------------------------------------------------------------
# The cost model
# --------------------------------------------------------------------------------------------------


def _nonnegative_lstsq(columns: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Least squares with every coefficient >= 0 (scipy's exact NNLS).

    Returns the coefficients and the indices of those the constraint held at 0 (an unconstrained fit
    would have made them negative), for the fit's flags.
    """
    # Columns scaled to unit norm: token counts (~1e8) sit beside a column of ones.
    norms = np.array([float(np.linalg.norm(column)) or 1.0 for column in columns])
    matrix = np.column_stack([column / norm for column, norm in zip(columns, norms, strict=True)])
    scaled, _ = nnls(matrix, np.asarray(y, dtype=float))
    free = np.linalg.lstsq(matrix, y, rcond=None)[0]
    clamped = [i for i in range(len(columns)) if scaled[i] == 0 and free[i] < 0]
    return scaled / norms, clamped


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
    work, gpus, seconds = (np.array(values, dtype=float) for values in zip(*points, strict=True))
    gpu_counts = sorted({int(g) for w, g in zip(work, gpus, strict=True) if w > 0}) if parallel else []
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
        fit.marginal = {g: float(rate) for g, rate in zip(gpu_counts, coef[1:], strict=True)}
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


def _stage_names(observations: Iterable[Record]) -> list[str]:
    names: dict[str, None] = {}
    for obs in observations:
        names.update(dict.fromkeys(obs.stage_seconds))
    names.pop(STARTUP, None)
    return [*names, STARTUP]


def _points(observations: list[Record], stage: str, reduce=None) -> list[tuple[float, int, float]]:
    """(work, gpus, seconds) of one stage; with ``reduce`` (min or max), one point per (dataset, gpus)."""
    unit, _ = stage_kind(stage)
    points = [
        (0.0 if unit == "none" else obs.composition[unit], obs.gpus, obs.stage_seconds[stage])
        for obs in observations
        if stage in obs.stage_seconds and (unit == "none" or unit in obs.composition)
    ]
    if reduce is None:
        return points
    by_config = defaultdict(list)
    for work, gpus, seconds in points:
        by_config[(work, gpus)].append(seconds)
    return [(work, gpus, reduce(seconds)) for (work, gpus), seconds in by_config.items()]


def fit_cost_model(observations: Iterable[Record], reduce=None) -> CostModel:
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


def fit_envelope(observations: Iterable[Record]) -> Envelope:
    observations = list(observations)
    return Envelope(fit_cost_model(observations), fit_cost_model(observations, min), fit_cost_model(observations, max))


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


def node_counts(nodes: int) -> list[int]:
    """The node counts a cohort table shows: powers of two below ``nodes``, then ``nodes`` itself."""
    counts = [k for k in (2**i for i in range(nodes.bit_length())) if k < nodes]
    return counts + [nodes]


def project_cohort(
    envelope: Envelope, composition: Mapping[str, float], samples: int, gpus_per_node: int, nodes: int
) -> dict:
    """Hours for ``samples`` samples like ``composition`` on up to ``nodes`` nodes of ``gpus_per_node`` GPUs.

    One ``vnp predict`` per sample and node at a time (the workflow's unit), so a node works through
    ceil(samples / nodes) samples one after another and the cohort takes that many sample times; every
    sample pays the fixed costs (start-up, model load) again.
    """
    if samples < 1 or gpus_per_node < 1 or nodes < 1:
        raise ValueError("a cohort needs at least one sample, one node and one GPU per node")
    per_sample = sorted(model.total_seconds(composition, gpus_per_node) / 3600.0 for model in envelope)
    point = envelope.point.total_seconds(composition, gpus_per_node) / 3600.0
    rows = []
    for count in node_counts(nodes):
        waves = math.ceil(samples / count)
        rows.append(
            {
                "nodes": count,
                "gpus": count * gpus_per_node,
                "samples_per_node": waves,
                "hours": waves * point,
                "low_hours": waves * per_sample[0],
                "high_hours": waves * per_sample[-1],
                "node_hours": samples * point,
            }
        )
    return {
        "projected": True,
        "samples": samples,
        "gpus_per_node": gpus_per_node,
        "nodes": nodes,
        "sample_hours": point,
        "extrapolated": envelope.point.extrapolated(gpus_per_node),
        "rows": rows,
    }
