"""The projection across commits, with asv's own tracked values read through asv's API."""

from __future__ import annotations

import itertools
import math
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]


def git_commit_date(commit: str, repo: Path = REPO) -> int | None:
    """The commit's committer date (ms) from the local history, as asv dates a commit; None if unknown there."""
    try:
        done = subprocess.run(["git", "-C", str(repo), "show", "-s", "--format=%ct", f"{commit}^{{commit}}"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    stamp = done.stdout.strip()
    return int(stamp) * 1000 if done.returncode == 0 and stamp.isdigit() else None


def read_asv_results(results_dir: str | Path) -> dict[str, dict[str, dict]]:
    """{machine: {commit8: {"commit", "date" (ms), "values": {"name(params)": value}}}} from asv's results.

    Empty when asv is not installed or there are no results; values that failed or were skipped are None.
    """
    try:
        from asv import util
        from asv.results import iter_results_for_machine
    except ImportError:
        return {}
    root = Path(results_dir)
    try:
        benchmarks = util.load_json(root / "benchmarks.json", api_version=2)
    except (OSError, util.UserError):
        benchmarks = {}
    history: dict[str, dict[str, dict]] = {}
    for machine_json in sorted(root.glob("*/machine.json")):
        machine = machine_json.parent.name
        for result in iter_results_for_machine(str(root), machine):
            entry = history.setdefault(machine, {}).setdefault(
                result.commit_hash[:8], {"commit": result.commit_hash, "date": result.date, "values": {}}
            )
            for key in result.get_result_keys(benchmarks):
                params = benchmarks[key].get("params") or []
                values = result.get_result_value(key, params)
                names = [f"{key}({', '.join(combo)})" for combo in itertools.product(*params)] if params else [key]
                for name, value in zip(names, values, strict=False):  # asv gives one value per combination
                    finite = isinstance(value, (int, float)) and math.isfinite(value)
                    entry["values"][name] = float(value) if finite else None
    return history


def history_section(groups: Sequence[Mapping], asv: Mapping[str, Mapping], machine: str, gpus: int = 4) -> dict:
    """The projection per commit on one machine, oldest first, with asv's tracked projection beside it."""
    commits = asv.get(machine, {})
    rows = []
    for group in groups:
        date = (commits.get(group["commit"]) or {}).get("date") or group.get("date")
        by_gpus = {row["gpus"]: row for row in group["projection"]["rows"]}
        tracked = {
            name: value
            for name, value in (commits.get(group["commit"]) or {}).get("values", {}).items()
            if "projected" in name and value is not None
            and not _names_a_role(name, group.get("roles_at_other_chunk_sizes") or ())
        }
        rows.append(
            {
                "commit": group["commit"],
                "date": date,
                "started_at": group.get("started_at"),
                "hours": {str(g): row["total_hours"] for g, row in by_gpus.items()},
                "low_hours": {str(g): row["low_hours"] for g, row in by_gpus.items()},
                "high_hours": {str(g): row["high_hours"] for g, row in by_gpus.items()},
                "fewest_gpus_meeting_target": group["projection"]["fewest_gpus_meeting_target"],
                "fitted_on": group.get("fitted_roles") or [],
                "asv_tracked": tracked,
            }
        )
    rows.sort(key=lambda r: (r["date"] is None, r["date"] or 0, r["started_at"] or 0))
    return {"machine": machine, "gpus": gpus, "rows": rows, "note": None if rows else "no projections"}


def _names_a_role(name: str, roles: Sequence[str]) -> bool:
    """Whether a tracked value's parameters name one of ``roles``: the contigs role's projected hours (its runs
    chunked at 500) are not shown beside a projection of runs chunked at 300."""
    named = {param.strip().strip("'\"") for param in name.partition("(")[2].rstrip(")").split(",")}
    return bool(named & set(roles))
