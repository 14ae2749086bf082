"""The 10-hour answer: the cost model fitted per group of runs and projected onto a full sample.

A group is one machine, commit, target, scale, variant and chunk size (``Record.group``). Each group's
runs are fitted (``costmodel``), projected onto the sample, and checked twice: by predicting the
largest role the group ran from the next smaller one, and against measured runs of the sample itself.
The results are JSON-ready dicts the ``project`` and ``report`` entry points share (the suites'
per-run projection is the harness's own: ``benchmarks/harness/metrics.py``). docs/projection.md explains
how to read them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from analysis.costmodel import (
    DEFAULT_TARGET_HOURS,
    GPU_COUNTS,
    CostModel,
    fit_cost_model,
    fit_envelope,
    project,
    project_cohort,
)
from analysis.history import git_commit_date, read_asv_results
from analysis.record import WORK_UNITS, Record, composition_of, load_records, usable_records
from benchmarks.harness.scale import ROLES

SCHEMA = "vnp-projection/1"
FULL_SAMPLE_READS = 6_000_000


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


def check_prediction(
    observations: Iterable[Record], source: str = "typical", target: str = "large", tolerance: float = 0.10
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
            {
                "gpus": gpus,
                "predicted_seconds": predicted,
                "measured_seconds": measured,
                "error": predicted / measured - 1,
                "extrapolated": model.extrapolated(gpus),
            }
        )
    worst = max(abs(row["error"]) for row in result["per_gpus"])
    result.update(available=True, max_abs_error=worst, warning=worst > tolerance, fit_flags=model.flags())
    return result


def same_sample(observation: Record, composition: Mapping[str, float]) -> bool:
    """True when the run processed the projected sample itself (same reads, frames and ESM tokens)."""
    units = ("reads", "frames", "esm_tokens")
    return all(unit in composition and observation.composition.get(unit) == composition[unit] for unit in units)


def sample_runs_check(
    model: CostModel, group: Iterable[Record], sample_runs: Iterable[Record], composition: Mapping[str, float]
) -> list[dict]:
    """Measured runs of the projected sample against this model's projection at their GPU count.

    The runs come from any commit on the group's machine; ``in_fit`` marks a run the model was fitted on
    (its agreement is then partly by construction), ``extrapolated`` a GPU count the group never ran.
    """
    fitted = {id(obs) for obs in group}
    rows = []
    for run in sorted(sample_runs, key=lambda obs: (obs.gpus, obs.started_at)):
        projected = model.total_seconds(composition, run.gpus)
        rows.append(
            {
                "gpus": run.gpus,
                "commit": run.commit,
                "dataset": run.dataset,
                "measured_seconds": run.wall_seconds,
                "projected_seconds": projected,
                "error": projected / run.wall_seconds - 1,
                "in_fit": id(run) in fitted,
                "extrapolated": model.extrapolated(run.gpus),
            }
        )
    return rows


# The scales' dataset roles, small to large, but contigs (chunked apart): the default trust check
# predicts the largest role a group ran from the next smaller one.
READ_ROLES = tuple(role for role in ROLES if role != "contigs")


def default_check(observations: Iterable[Record]) -> tuple[str, str]:
    """(source, target) roles: the group's two largest reads roles; typical -> large when it has fewer."""
    present = [role for role in READ_ROLES if role in {obs.role for obs in observations}]
    return (present[-2], present[-1]) if len(present) >= 2 else ("typical", "large")


def project_group(
    observations: Iterable[Record],
    composition: Mapping[str, float],
    gpu_counts: Iterable[int] = GPU_COUNTS,
    target_hours: float = DEFAULT_TARGET_HOURS,
    check: tuple[str, str] | None = None,
    sample_runs: Iterable[Record] = (),
    cohort: tuple[int, int, int] | None = None,
) -> dict:
    """Fit one group's runs and project them: the per-group entry of the projection document.

    ``check``: the trust check's (source, target) roles; None picks ``default_check``. ``cohort``:
    (samples, GPUs per node, nodes) to project a cohort of such samples too (``project_cohort``).
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
        "cohort": project_cohort(envelope, composition, *cohort) if cohort else None,
    }


def group_observations(observations: Iterable[Record]) -> dict[tuple, list[Record]]:
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for obs in observations:
        groups[obs.group].append(obs)
    return dict(groups)


def project_results(
    observations: Iterable[Record],
    composition: Mapping[str, float] | None = None,
    source: str = "",
    gpu_counts: Iterable[int] = GPU_COUNTS,
    target_hours: float = DEFAULT_TARGET_HOURS,
    variant: str = "all",
    check: tuple[str, str] | None = None,
    chunk_size: int | None = None,
    sample_pool: Iterable[Record] | None = None,
    cohort: tuple[int, int, int] | None = None,
) -> list[dict]:
    """Project every group (machine, commit, target, scale) of one variant at the sample's chunk size onto it.

    Only runs at ``chunk_size`` (the sample's model type) are used: reads chunked at 300 and contigs at
    500 cost differently per token, so a run's rates hold only at its own chunk size. Without one, the
    chunk size most of the variant's runs used (``runs_chunk_size``).

    ``composition`` is the sample's (units it lacks are estimated from each group's runs); without one,
    a sample of FULL_SAMPLE_READS reads with the measured runs' per-read ratios. Each entry is
    ``project_group``'s dict plus ``composition``: the completed composition, its source and the
    estimated units. Runs of the sample itself (any commit, same machine) are set against each
    group's projection in ``measured_sample``; they are looked for in ``sample_pool`` (default: the
    observations), so a caller projecting a subset of groups can still find them elsewhere.
    """
    gpu_counts = tuple(gpu_counts)
    observations = list(observations)
    chunk_size = chunk_size or runs_chunk_size((obs for obs in observations if obs.variant == variant), None)

    def usable(pool):
        return [obs for obs in pool if obs.variant == variant and obs.chunk_size == chunk_size]

    pool = usable(observations if sample_pool is None else sample_pool)
    results = []
    for _, group in sorted(group_observations(usable(observations)).items()):
        wanted = dict(composition) if composition else {"reads": float(FULL_SAMPLE_READS)}
        origin = (
            source
            if composition
            else f"{FULL_SAMPLE_READS:,} reads at the measured runs' per-read ratios"
            + (f"; {source}" if source else "")
        )
        filled, estimated = complete_composition(wanted, [obs.composition for obs in group])
        first = group[0]
        sample_runs = [
            obs
            for obs in pool
            if (obs.machine, obs.target, obs.chunk_size) == (first.machine, first.target, first.chunk_size)
            and same_sample(obs, filled)
        ]
        entry = project_group(group, filled, gpu_counts, target_hours, check, sample_runs, cohort)
        entry["composition"] = {"composition": filled, "source": origin, "estimated": estimated}
        results.append(entry)
    return results


@dataclass(frozen=True)
class Query:
    """What to project: where the records are, which of them, onto what sample, against what target."""

    records: Path
    results: Path | None = None  # asv's results, for the commits' dates
    target_hours: float = DEFAULT_TARGET_HOURS
    gpu_counts: tuple[int, ...] = GPU_COUNTS
    variant: str = "all"
    machine: str | None = None
    commit: str | None = None
    scale: str | None = None
    composition: Mapping[str, float] | None = None
    source: str = ""
    chunk_size: int | None = None
    check: tuple[str, str] | None = None
    cohort: tuple[int, int, int] | None = None  # samples, GPUs per node, nodes

    def selects(self, record: Record) -> bool:
        return (
            (not self.machine or record.machine == self.machine)
            and (not self.commit or record.commit.startswith(self.commit[:8]))
            and (not self.scale or record.scale == self.scale)
        )


def projection_document(query: Query) -> dict:
    """Read the records, project every selected group, and return the ``vnp-projection/1`` document.

    ValueError (one line) when there is nothing to project.
    """
    if not Path(query.records).is_dir():
        raise ValueError(f"{query.records}: no records directory")
    records, skipped = load_records(query.records)
    every_run, left_out = usable_records(records)
    skipped += left_out
    selected = [r for r in every_run if query.selects(r)]
    if not any(r.variant == query.variant for r in selected):
        found = sorted({r.variant for r in selected})
        raise ValueError(
            f"no usable runs of variant '{query.variant}' under {query.records}"
            + (f" (variants found: {', '.join(found)})" if found else "")
        )
    runs = [r for r in selected if r.variant == query.variant]
    chunk_size = query.chunk_size or runs_chunk_size(runs, None)
    # runs of the sample itself count as evidence whatever the filters (another scale or commit)
    groups = project_results(
        selected,
        query.composition,
        query.source,
        query.gpu_counts,
        query.target_hours,
        query.variant,
        query.check,
        chunk_size,
        sample_pool=every_run,
        cohort=query.cohort,
    )
    elsewhere = other_chunk_sizes(runs, chunk_size)
    if not groups:
        sizes = ", ".join(sorted({str(size) for *_, size in elsewhere}))
        why = f" (runs at chunk size {sizes} only: a run's costs per token hold at its own chunk size)" if sizes else ""
        raise ValueError(f"no usable runs of variant '{query.variant}' at chunk size {chunk_size}{why}")
    skipped += [
        f"{machine}/{commit} ({scale} scale, {', '.join(roles)}): {count} run(s) at chunk size {size}, "
        f"not projected onto a sample chunked at {chunk_size}"
        for (machine, commit, scale, size), (count, roles) in sorted(elsewhere.items(), key=str)
    ]
    dates = read_asv_results(query.results) if query.results else {}
    for group in groups:
        # what asv tracked for these roles on this commit was measured at another chunk size: not comparable
        group["roles_at_other_chunk_sizes"] = sorted(
            {r.role for r in every_run if (r.machine, r.commit) == (group["machine"], group["commit"])}
            - {r.role for r in every_run if (r.machine, r.commit, r.chunk_size) ==
               (group["machine"], group["commit"], group["chunk_size"])}
        )
        # which datasets the projection was fitted on: a commit measured on `typical` alone projects worse
        group["fitted_roles"] = sorted({r.role for r in every_run if (r.machine, r.commit, r.chunk_size, r.variant) ==
                                        (group["machine"], group["commit"], group["chunk_size"], query.variant)})
        # the commit's date (ms): asv's, else git's (a commit measured only outside asv, e.g. the "before" of an
        # A/B run made later); the time of its first run only for a commit this history does not hold
        asv_date = (dates.get(group["machine"], {}).get(group["commit"]) or {}).get("date")
        group["date"] = asv_date or git_commit_date(group["commit"]) or int(group["started_at"] * 1000)
    groups.sort(key=lambda g: (g["machine"], g["chunk_size"] or 0, g["date"], g["started_at"]))
    return {
        "schema": SCHEMA,
        "records": _shown(query.records),
        "target_hours": query.target_hours,
        "gpu_counts": list(query.gpu_counts),
        "variant": query.variant,
        "chunk_size": chunk_size,
        "groups": groups,
        "skipped": skipped,
    }


def _shown(path: Path) -> str:
    """A path as the document shows it: relative to the working directory when inside it (no machine path)."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def series_key(group: Mapping) -> tuple:
    """Groups that form one history: the same machine, target, scale and chunk size, commit after commit."""
    return (group["machine"], group["target"], group["scale"], group["chunk_size"])


def other_chunk_sizes(records: Iterable[Record], chunk_size: int | None) -> dict[tuple, tuple[int, list[str]]]:
    """Runs at another chunk size than ``chunk_size``: {(machine, commit, scale, chunk size): (runs, roles)}."""
    found: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if r.chunk_size != chunk_size:
            found[(r.machine, r.commit, r.scale, r.chunk_size)].append(r)
    return {key: (len(rs), sorted({r.role for r in rs})) for key, rs in found.items()}


def runs_chunk_size(records: Iterable[Record], default: int | None = 500) -> int | None:
    """The chunk size most runs that say one used; ``default`` when none says (500: VirNucPro's)."""
    sizes = Counter(r.chunk_size for r in records if r.chunk_size)
    return sizes.most_common(1)[0][0] if sizes else default


def dataset_composition(datasets_file: str | Path, dataset: str) -> tuple[dict[str, float] | None, str, int | None]:
    """A dataset definition's composition, where it came from, and its chunk size (None: not defined)."""
    found = read_datasets(datasets_file).get(dataset)
    if found:
        return found["composition"], f"data/datasets.json: {dataset}", found["chunk_size"]
    return None, f"no '{dataset}' dataset definition", None
