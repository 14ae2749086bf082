"""VirNucPro's own programs, run from clones the user names: where they are, what they need, their weights.

Their code is never copied here: the user points the harness at clones (CI at clones of the published
repositories), and everything they need to run offline is supplied from outside, never by editing them.

| variable | what |
|---|---|
| `VNP_PEER_ORIGINAL` | a clone of the original VirNucPro (GitHub Li-Jing-1997/VirNucPro): `prediction.py` |
| `VNP_PEER_FORK` | a clone of the Broad fork (GitHub broadinstitute/virnucpro-broad), at the commit to measure |
| `VNP_PEER_SITE` | the packages both need on top of the host's, put first on their path (`scripts/peers.sh site`) |
| `VNP_PEER_DNABERT_CODE` | DNABERT-S's model code, for the weights kit (`weights_kit.py`) |

Unset, each defaults to what `scripts/peers.sh setup` makes in the repository's `.peers/` (original, fork,
site, dnabert-s-code), where it exists. A missing one makes the benchmarks that need it n/a, with one line
saying which variable to set.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

from benchmarks.harness import datasets, weights_kit
from benchmarks.harness import scale as scales

CLONES = {  # program -> (variable, a file every clone of it has)
    "original": ("VNP_PEER_ORIGINAL", "prediction.py"),
    "fork": ("VNP_PEER_FORK", "virnucpro/__main__.py"),
}
KIT_SEED = 0
DEFAULTS = Path(__file__).resolve().parents[2] / ".peers"  # scripts/peers.sh setup


def _given(variable: str, default: str) -> str | None:
    """The variable's value, else the default folder under .peers/ if it exists."""
    return os.environ.get(variable) or (str(DEFAULTS / default) if (DEFAULTS / default).exists() else None)


class Missing(Exception):
    """A program, its packages or its weights are not here; the message says what to set, in one line."""


def clone(program: str) -> Path:
    variable, marker = CLONES[program]
    path = _given(variable, program)
    if not path:
        raise Missing(f"no clone of VirNucPro's {program}: set {variable}, or run scripts/peers.sh setup")
    if not (Path(path) / marker).is_file():
        raise Missing(f"{variable}={path} is no clone of VirNucPro's {program} (no {marker})")
    return Path(path).resolve()


def site() -> Path | None:
    """The peers' own packages (older transformers, fair-esm, ...), or None: the host's alone."""
    path = _given("VNP_PEER_SITE", "site")
    if path and not Path(path).is_dir():
        raise Missing(f"VNP_PEER_SITE={path} is not a folder")
    return Path(path).resolve() if path else None


def python_path(*first: Path | None) -> str:
    """PYTHONPATH with these folders first, then the harness's own (if any)."""
    parts = [str(p) for p in first if p] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(parts)


def kit(scale: scales.Scale) -> weights_kit.Kit:
    """The scale's weights kit (full-size on a GPU, small on the CPU), written on first use into the cache."""
    size = "full" if scale.on_gpu else "small"
    root = datasets.cache_dir() / "peers" / f"kit-{size}-s{KIT_SEED}"
    with contextlib.suppress(weights_kit.KitError):
        return weights_kit.Kit.open(root)
    try:
        return weights_kit.write(root, size, KIT_SEED, _given("VNP_PEER_DNABERT_CODE", "dnabert-s-code"))
    except weights_kit.KitError as error:
        raise Missing(str(error)) from None


def describe(path: Path) -> dict:
    """The clone's commit, and the upstream commit its message names (the peers' bundles rewrote ids)."""
    def git(*args: str) -> str | None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                return done.stdout.strip()
        return None

    message = git("log", "-1", "--format=%B") or ""
    upstream = re.search(r"upstream-commit: ([0-9a-f]{7,40})", message)
    return {"clone": str(path), "commit": git("rev-parse", "HEAD"), "describe": git("describe", "--tags", "--always"),
            "upstream_commit": upstream.group(1) if upstream else None}


def packages(folder: Path | None) -> dict[str, str]:
    """{name: version} of what a site folder holds (its *.dist-info), to write in the run's record."""
    found = {}
    for info in sorted(folder.glob("*.dist-info")) if folder else []:
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        found[name.lower()] = version
    return found
