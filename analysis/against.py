"""Against VirNucPro: vnp beside VirNucPro's own programs, on one card, the same reads and the same weights.

The rows are the runs of the `virnucpro` suite (vnp, the original `prediction.py`, the Broad fork's paths) and
of the fork's own asv history (suite end_to_end, target fork) on one machine and dataset role. For each
program: wall seconds, reads per second, ESM-2 tokens per second inside its ESM-2 stage (the harness's count of
tokens), the hours a whole sample would take on one GPU and on four by the cost model fitted on that run alone
(docs/projection.md: with one run, proportional per stage, ideal scaling over GPUs for the per-GPU stages; the
original uses one GPU whatever the host has), vnp's speed-up over it, and how its outputs agree with the
original's (the agreement files the suite writes beside the records).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from analysis.costmodel import fit_cost_model
from analysis.record import Record

ROLE = "typical"
# (how a run is recognised: target, suite, variant or None for any) -> label, in the table's order
PROGRAMS = (
    (("original", "virnucpro", "original"), "VirNucPro original, `prediction.py` (fp32)"),
    (("fork", "end_to_end", None), "Broad fork `virnucpro predict`, one GPU (its v1 path)"),
    (("fork", "virnucpro", "fork"), "Broad fork `virnucpro predict`, one GPU (its v1 path)"),
    (("fork", "virnucpro", "fork-parallel"), "Broad fork `--parallel`, no flash-attn (its fallback)"),
    (("fork", "virnucpro", "fork-flash"), "Broad fork `--parallel`, FlashAttention (flash_attn_compat)"),
    (("vnp", "virnucpro", "vnp-fp32"), "vnp, fp32"),
    (("vnp", "virnucpro", "vnp"), "vnp, its defaults (bf16)"),
)
ONE_GPU_ONLY = ("original",)
# The fork's README: 1,000,000 reads in 53 min 20 s on one RTX 4090 (v2.0, its own weights). Cited, not measured.
CITED = {"label": "Broad fork v2.0 on one RTX 4090 (its README; cited)", "reads": 1_000_000, "seconds": 3200.0}


def against_section(records: Sequence[Record], machine: str, sample: Mapping[str, float] | None,
                    agreement_root: Path | None) -> dict:
    """The table's rows for `machine`'s newest vnp commit with side-by-side runs; empty with a note if none."""
    ours = [r for r in records if r.machine == machine and r.role == ROLE and r.usable]
    side_by_side = [r for r in ours if r.suite == "virnucpro"]
    if not side_by_side:
        return {"rows": [], "note": f"no side-by-side runs (the virnucpro suite) on {machine}"}
    commit = max(side_by_side, key=lambda r: r.started_at).commit
    chosen = [r for r in side_by_side if r.commit == commit] + [r for r in ours if r.target == "fork"
                                                                and r.suite == "end_to_end"]
    agreements = _agreements(agreement_root, machine, commit)
    vnp = _latest(chosen, ("vnp", "virnucpro", "vnp"))
    rows = []
    for key, label in PROGRAMS:
        for run in sorted((r for r in chosen if _matches(r, key)), key=lambda r: r.started_at):
            rows.append(_row(run, label, key, sample, vnp, agreements.get(key[2] or "")))
    rows = _newest_per_label_and_source(rows)
    return {"machine": machine, "commit": commit, "role": ROLE, "rows": rows, "cited": _cited(sample),
            "note": None}


def _matches(run: Record, key: tuple) -> bool:
    target, suite, variant = key
    return run.target == target and run.suite == suite and (variant is None or run.variant == variant)


def _latest(runs: Sequence[Record], key: tuple) -> Record | None:
    found = [r for r in runs if _matches(r, key)]
    return max(found, key=lambda r: r.started_at) if found else None


def _row(run: Record, label: str, key: tuple, sample: Mapping | None, vnp: Record | None, agreed: Mapping | None):
    comp = run.composition
    esm2 = run.stage_seconds.get("esm2")
    setup = run.harness.get("target_setup") or {}
    model = fit_cost_model([run])
    one_gpu_only = key[0] in ONE_GPU_ONLY
    return {
        "label": label, "program": key[2] or run.target, "target": run.target,
        "source": setup.get("describe") or setup.get("commit") or run.commit,
        "upstream_commit": setup.get("upstream_commit"),
        "wall_seconds": run.wall_seconds,
        "reads_per_second": comp["reads"] / run.wall_seconds,
        "esm_tokens_per_second": comp.get("esm_tokens") / esm2 if esm2 and comp.get("esm_tokens") else None,
        "projected_hours": {
            str(gpus): None if (sample is None or (one_gpu_only and gpus > 1))
            else model.total_seconds(sample, gpus) / 3600.0 for gpus in (1, 4)},
        "vnp_speedup": run.wall_seconds / vnp.wall_seconds if vnp else None,
        "agreement": dict(agreed) if agreed else None,
        "started_at": run.started_at,
    }


def _newest_per_label_and_source(rows: list[dict]) -> list[dict]:
    """One row per program and source commit: the newest run of it."""
    kept: dict[tuple, dict] = {}
    for row in rows:
        kept[(row["label"], row["source"])] = row
    return list(kept.values())


def _agreements(root: Path | None, machine: str, commit: str) -> dict[str, dict]:
    """{program: agreement with the original} from the suite's files for this machine and commit."""
    folder = (root / machine / commit / "agreement") if root else None
    found = {}
    for path in sorted(folder.glob(f"{ROLE}-*.json")) if folder and folder.is_dir() else []:
        document = json.loads(path.read_text())
        found[document["other"]] = document
    return found


def _cited(sample: Mapping | None) -> dict:
    hours = (CITED["seconds"] / CITED["reads"] * sample["reads"] / 3600.0) if sample else None
    return {**CITED, "reads_per_second": CITED["reads"] / CITED["seconds"], "projected_hours_1": hours,
            "how": "its reads per second times the sample's reads (no model: one published figure)"}
