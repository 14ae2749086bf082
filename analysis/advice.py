"""The report's advice: token budgets per card size, the stage that bottlenecks the projection, and, inside the
models, the work between the GEMMs to fuse next."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from analysis.fmt import GIB, fmt_hours, fmt_percent, fmt_ratio, gpus_label
from analysis.record import Record
from analysis.sections import gpu_peaks, gpu_stage_window, nvml_samples

CARD_SIZES_GB = (24, 40, 48, 80, 141)
CARD_HEADROOM = 0.90  # keep 10% of a card free for fragmentation and the allocator's slack
BUDGET_QUANTUM = 1024  # recommended token budgets are multiples of this
LOW_UTILISATION_PERCENT = 70.0


def _token_budget(record: Record, stage: str) -> int | None:
    budget = (record.run.get("config") or {}).get("token_budget")
    if isinstance(budget, Mapping):
        budget = budget.get(stage)
    return int(budget) if isinstance(budget, (int, float)) and budget > 0 else None


def _static_bytes(record: Record, gpu) -> float | None:
    """NVML memory on ``gpu`` just before the first GPU stage: CUDA context plus resident models."""
    samples, window = nvml_samples(record), gpu_stage_window(record)
    if samples is None or window is None:
        return None
    mask = (samples.get("gpu", np.zeros_like(samples["t"])) == gpu) & (samples["t"] <= window[0])
    return float(samples["mem_used_bytes"][mask][-1]) if mask.any() else None


def token_budget_section(records: Sequence[Record], cards_gb: Sequence[float] = CARD_SIZES_GB) -> dict:
    """Token budgets per card size from the measured memory per token of the embedding stages.

    Memory = static + per_token x budget. With two or more budgets measured both are fitted; with one,
    static is the card's memory just before the first batch (NVML); without samples static is taken as 0,
    which charges everything to the tokens and so recommends conservatively.
    """
    stages = {}
    for stage in ("esm2", "dnabert"):
        points, statics = [], []
        for record in records:
            budget = _token_budget(record, stage)
            for peak in gpu_peaks(record):
                used = peak.get("nvml_peak_bytes") or peak.get("torch_peak_reserved_bytes") or 0
                if peak.get("stage") == stage and budget and used > 0:
                    points.append((budget, float(used)))
                    static = _static_bytes(record, peak.get("gpu")) if peak.get("nvml_peak_bytes") else None
                    if static is not None:
                        statics.append(static)
        if not points:
            continue
        budgets, used = np.array(points).T
        if len(set(budgets)) >= 2:
            slope, intercept = np.polyfit(budgets, used, 1)
            method = "fitted over the measured token budgets"
        elif statics:
            intercept = float(np.median(statics))
            slope = float(np.mean((used - intercept) / budgets))
            method = "static memory from NVML before the first batch"
        else:
            intercept, slope = 0.0, float(np.mean(used / budgets))
            method = "static memory not separated: conservative (all memory charged to tokens)"
        if slope <= 0:
            continue
        cards = {}
        for gb in cards_gb:
            room = gb * GIB * CARD_HEADROOM - intercept
            cards[str(gb)] = int(room / slope // BUDGET_QUANTUM * BUDGET_QUANTUM) if room > 0 else 0
        stages[stage] = {
            "bytes_per_token": float(slope),
            "static_bytes": float(intercept),
            "measured_budgets": sorted({int(b) for b in budgets}),
            "method": method,
            "budget_by_card_gb": cards,
        }
    note = None if stages else "no GPU memory measured with a token budget (CPU runs): no recommendation"
    precision = next(((r.run.get("config") or {}).get("precision") for r in records), None)
    return {"stages": stages, "precision": precision, "headroom": CARD_HEADROOM, "note": note}


def decision_row(projection: Mapping) -> Mapping | None:
    """The projection row the verdict is about: the fewest GPUs meeting the target, else 4, else the last."""
    rows = projection.get("rows") or []
    if not rows:
        return None
    fewest = projection.get("fewest_gpus_meeting_target")
    for gpus in (fewest, 4):
        for row in rows:
            if row["gpus"] == gpus:
                return row
    return rows[-1]


def bottleneck_section(
    projection: Mapping, fit: Mapping, variants: Mapping, utilisation: Mapping, records: Sequence[Record]
) -> dict:
    """Name the stage that dominates the projected time and what would move it, from the numbers."""
    row = decision_row(projection)
    if row is None or not row["stages"]:
        return {"findings": [], "note": "no projection"}
    target = projection["target_hours"]
    stage, cost = max(row["stages"].items(), key=lambda item: item[1]["hours"])
    hours, total, gpus = cost["hours"], row["total_hours"], row["gpus"]
    findings = [
        f"`{stage}` dominates: {fmt_hours(hours)} h of {fmt_hours(total)} h ({fmt_percent(hours / total)}) "
        f"projected on {gpus_label(gpus)}."
    ]
    stage_fit = (fit.get("stages") or {}).get(stage, {})
    if stage_fit.get("parallel"):
        findings += _more_gpus(projection, stage, stage_fit, gpus)
    serial = sum(
        c["hours"] for name, c in row["stages"].items() if not (fit.get("stages") or {}).get(name, {}).get("parallel")
    )
    findings.append(
        f"Stages that do not scale with GPUs take {fmt_hours(serial)} h: no GPU count brings the total below that."
    )
    findings += _against_target(row, stage, hours, target)
    padding = _padding_share(records, stage)
    if padding:
        findings.append(f"{fmt_percent(padding)} of the tokens `{stage}` computed were padding: packing removes them.")
    busy = [
        r["util_percent_gpu_stages"]
        for r in utilisation.get("rows") or []
        if r.get("util_percent_gpu_stages") is not None
    ]
    if busy and np.mean(busy) < LOW_UTILISATION_PERCENT and stage_fit.get("parallel"):
        findings.append(
            f"GPUs were busy only {np.mean(busy):.0f}% of the GPU-stage time: feeding them (host side) limits it."
        )
    best = _best_variant_for(variants, stage)
    if best:
        findings.append(
            f"Of the measured optimisations, `{best[0]}` cut `{stage}` the most: {fmt_ratio(best[1])} against baseline."
        )
    return {
        "gpus": gpus,
        "stage": stage,
        "hours": hours,
        "share": hours / total if total else None,
        "findings": findings,
        "note": None,
    }


def _more_gpus(projection: Mapping, stage: str, stage_fit: Mapping, gpus: int) -> list[str]:
    """What more GPUs would do to a stage that runs in the per-GPU workers."""
    findings = []
    more = [r for r in projection["rows"] if r["gpus"] > gpus]
    if more:
        last = more[-1]
        findings.append(
            f"More GPUs: on {gpus_label(last['gpus'])} it would take {fmt_hours(last['stages'][stage]['hours'])} h"
            + (" (extrapolated)." if last["stages"][stage]["extrapolated"] else ".")
        )
    fraction = (stage_fit.get("amdahl") or {}).get("parallel_fraction")
    if fraction is not None and fraction < 1:
        findings.append(
            f"Its fitted parallel fraction is {fraction:.3f}: more GPUs can speed it up at most "
            f"{fmt_ratio(1 / (1 - fraction))}."
        )
    return findings


def _against_target(row: Mapping, stage: str, hours: float, target: float) -> list[str]:
    """How far the total is from the target, and what the dominant stage would have to give."""
    total, gpus = row["total_hours"], row["gpus"]
    if total <= target:
        findings = [f"The target is met with {fmt_hours(target - total)} h to spare on {gpus_label(gpus)}."]
        if row["high_hours"] > target:
            findings.append(
                f"Not at the slow end of the interval: the slowest repeats project {fmt_hours(row['high_hours'])} h."
            )
        return findings
    cut = total - target
    if cut < hours:
        return [
            f"To meet {fmt_hours(target)} h on {gpus_label(gpus)}, `{stage}` must become "
            f"{fmt_ratio(hours / (hours - cut))} faster (or the total must lose {fmt_hours(cut)} h)."
        ]
    return [
        f"Even without `{stage}` the total would exceed {fmt_hours(target)} h on {gpus_label(gpus)}: "
        "several stages must get faster."
    ]


def _padding_share(records: Sequence[Record], stage: str) -> float | None:
    padding = tokens = 0.0
    for record in records:
        for s in record.run.get("stages") or []:
            if s.get("name") == stage:
                for device in s.get("devices") or []:
                    padding += device.get("padding_tokens") or 0
                    tokens += device.get("tokens") or 0
    return padding / (padding + tokens) if padding > 0 else None


def _best_variant_for(variants: Mapping, stage: str) -> tuple[str, float] | None:
    rows = {row["variant"]: row for row in variants.get("rows") or []}
    base = (rows.get("baseline") or {}).get("stage_seconds", {}).get(stage)
    if not base:
        return None
    gains = [
        (name, base / row["stage_seconds"][stage])
        for name, row in rows.items()
        if name not in ("baseline", "all") and row["stage_seconds"].get(stage)
        and not str(row.get("precision_used", "")).startswith("unverified")  # not advice from a run that lied
    ]
    return max(gains, key=lambda gain: gain[1]) if gains else None


# -- between the GEMMs: the asv `kernels` suite ---------------------------------------------------------------
KERNEL_SUITE = "kernels."


def _kernel_values(values: Mapping[str, float | None]) -> dict[tuple, float]:
    """The kernels suite's tracked values of one commit: (method, *params) -> value (n/a left out)."""
    found = {}
    for name, value in values.items():
        if not name.startswith(KERNEL_SUITE) or value is None or "(" not in name:
            continue
        method = name.partition("(")[0].rsplit(".", 1)[-1]
        params = tuple(p.strip().strip("'\"") for p in name.partition("(")[2].rstrip(")").split(","))
        found[(method, *params)] = value
    return found


def kernel_bottleneck_section(asv: Mapping, machine: str, commit: str) -> dict:
    """Per model and kernels (eager, fused): the profiled time per category, the share of the GEMM-only ceiling
    reached, and the largest category of glue: what to fuse next. From the asv `kernels` suite's tracked values
    of ``commit``, with the ceiling's share for every commit measured on ``machine``."""
    commits = asv.get(machine) or {}
    values = _kernel_values((commits.get(commit[:8]) or {}).get("values") or {})
    configurations = sorted({key[1:3] for key in values if key[0] == "track_shortfall"},
                            key=lambda pair: (pair[0] != "esm2", pair[1]))
    rows = []
    for model, kernels in configurations:
        glue = {key[3]: value for key, value in values.items()
                if key[0] == "track_share" and key[1:3] == (model, kernels)}
        per_token = {key[3]: value for key, value in values.items()
                     if key[0] == "track_ns_per_token" and key[1:3] == (model, kernels)}
        categories = [{"category": name, "ns_per_token": per_token.get(name),
                       "share": 1 - sum(glue.values()) if name == "gemm" and glue else glue.get(name)}
                      for name in per_token]
        candidates = {name: share for name, share in glue.items() if name != "other"}
        rows.append({"model": model, "kernels": kernels, "categories": categories,
                     "fraction_of_gemm_ceiling": 1 - values[("track_shortfall", model, kernels)],
                     "seconds_per_million_tokens": values.get(("track_seconds_per_million_tokens", model, kernels)),
                     "fuse_next": max(candidates, key=candidates.get) if candidates else None})
    history = []
    for short, entry in sorted(commits.items(), key=lambda item: item[1].get("date") or 0):
        fractions = {f"{key[1]} {key[2]}": 1 - value for key, value in _kernel_values(entry["values"]).items()
                     if key[0] == "track_shortfall"}
        if fractions:
            history.append({"commit": short, "date": entry.get("date"), "fraction_of_gemm_ceiling": fractions})
    note = None if rows else f"no `kernels` suite results for commit {commit[:8]} on {machine}"
    return {"machine": machine, "commit": commit[:8], "rows": rows, "history": history, "note": note}
