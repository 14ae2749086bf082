"""`vnp weights fetch`: the published weights in one folder, checked and listed; and finding them there again.

The folder (``--dest``; default ``$VNP_CACHE_DIR``, else ``$XDG_CACHE_HOME/vnp``, else ``~/.cache/vnp``) holds
``hub/`` (huggingface_hub's cache: ESM-2 3B and DNABERT-S, each at one commit), ``virnucpro/`` (VirNucPro's
pickled classifiers as published, and their safetensors conversion) and ``manifest.json`` (for each part:
what, where from, revision, path, and every file's size and sha256, and when). Paths in the manifest are
relative, so the folder can be copied to another host. ``vnp predict --weights DIR`` reads the manifest.

Every file is checked against what its publisher lists, where it lists something: the hub's size and LFS
sha256 (or git blob id for small files), and for the classifiers the git blob id of VirNucPro's repository.
A file that does not match is deleted, never recorded. A cut download of a classifier is kept as ``.part``
and resumed (HTTP Range) by the next fetch; huggingface_hub resumes its own transfers within a run.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vnp.atomic import atomic_write
from vnp.errors import WeightsError

MANIFEST = "manifest.json"
SCHEMA = "vnp-weights/1"
TIMEOUT_S = 30
CHUNK_BYTES = 1 << 20
CLASSIFIER_URL_VARIABLE = "VNP_CLASSIFIER_BASE_URL"  # a mirror of VirNucPro's files (same bytes, same checks)


class FetchError(WeightsError):
    """A part could not be downloaded, or did not match what its publisher lists (exit code 3, a weights error)."""


@dataclass(frozen=True)
class HubModel:
    """A model repository on the Hugging Face hub: its weights (safetensors preferred) and the named files."""

    name: str
    what: str
    repo: str
    revision: str  # a commit, or a branch resolved to its commit when fetched (the manifest records which)
    files: tuple[str, ...]  # needed besides the weights
    optional: tuple[str, ...] = ()  # fetched when the repository has them


@dataclass(frozen=True)
class PublishedFile:
    """One of VirNucPro's pickled classifiers, as committed to its GitHub repository."""

    name: str
    what: str
    filename: str
    git_blob: str  # the file's git blob id in the repository's tree at VIRNUCPRO_COMMIT


# Unpinned until confirmed on a machine with internet (docs/weights.md): "main" is resolved at fetch time.
HUB_MODELS = (
    HubModel("esm2", "ESM-2 3B (36 layers x 2560)", "facebook/esm2_t36_3B_UR50D", "main", ("config.json",)),
    HubModel("dnabert", "DNABERT-S (model and tokenizer)", "zhihan1996/DNABERT-S", "main",
             ("config.json", "tokenizer.json"), ("tokenizer_config.json", "special_tokens_map.json")),
)
VIRNUCPRO_REPO = "Li-Jing-1997/VirNucPro"
VIRNUCPRO_COMMIT = "0f93f2755a7ea1acd3ff1bcf182892f960ef3326"  # the pickles are unchanged since the first commit
CLASSIFIERS = (
    PublishedFile("classifier-300", "VirNucPro classifier, 300 bp chunks", "300_model.pth",
                  "a0b5b85e7c1e44f00cde146d091beb82b2c8e855"),
    PublishedFile("classifier-500", "VirNucPro classifier, 500 bp chunks", "500_model.pth",
                  "fc35d5ef9f1f4564eea7036f34f4f8ec6000d33d"),
)
PARTS = tuple(part.name for part in (*HUB_MODELS, *CLASSIFIERS))
TRUST_MEANING = ("VirNucPro's classifiers are pickled Python objects, and unpickling runs any code stored in "
                 "them; --trust converts them once to safetensors after their bytes matched the publisher's "
                 "git hash, so it trusts the VirNucPro repository, not the network")

_WEIGHT_LAYOUTS = (  # (single file, shard pattern): safetensors first, as they need no unpickling
    ("model.safetensors", r"model-\d+-of-\d+\.safetensors"),
    ("pytorch_model.bin", r"pytorch_model-\d+-of-\d+\.bin"),
)


# -- where the weights live --------------------------------------------------------------------
def default_dir() -> Path:
    if os.environ.get("VNP_CACHE_DIR"):
        return Path(os.environ["VNP_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "vnp"


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{folder}: no {MANIFEST}; fetch the weights there with "
                           f"`vnp weights fetch --dest {folder}`") from None
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: not readable JSON: {_first_line(error)}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise WeightsError(f"{path}: not a {SCHEMA} manifest")
    return manifest


def weights_in(folder: str | Path, model_type: int, roles=("esm2", "dnabert", "classifier")) -> dict[str, str]:
    """Paths of the fetched weights a run needs, by role; one error naming every part that is missing."""
    folder = Path(folder).expanduser().resolve()  # the workers get absolute paths
    parts = read_manifest(folder).get("weights", {})
    names = {"esm2": "esm2", "dnabert": "dnabert", "classifier": f"classifier-{model_type}"}
    paths, missing = {}, []
    for role in roles:
        relative = (parts.get(names[role]) or {}).get("path")
        if relative and (folder / relative).exists():
            paths[role] = str(folder / relative)
        else:
            missing.append(names[role])
    if missing:
        trust = " --trust" if any(name.startswith("classifier") for name in missing) else ""
        raise WeightsError(f"{folder}: has no usable {', '.join(missing)}; get it with "
                           f"`vnp weights fetch --dest {folder}{trust}`")
    return paths


_PREDICT_OPTIONS = {"esm2": "esm_weights", "dnabert": "dnabert_dir", "classifier": "classifier"}


def apply_weights_dir(args) -> None:
    """`vnp predict --weights DIR`: the fetched files for every model whose own option is not given. Without
    --weights, a full-size run uses the default folder when it holds a manifest with everything it needs."""
    roles = [role for role, option in _PREDICT_OPTIONS.items() if getattr(args, option) is None]
    folder = args.weights
    if folder is None:
        folder = default_dir()
        if args.model_size != "full" or not roles or not (folder / MANIFEST).is_file():
            return
        try:
            paths = weights_in(folder, args.model_type, roles)
        except WeightsError as error:
            print(f"vnp: note: not using the fetched weights: {error}", file=sys.stderr)
            return
    else:
        paths = weights_in(folder, args.model_type, roles)
    for role, path in paths.items():
        setattr(args, _PREDICT_OPTIONS[role], path)


# -- fetching ----------------------------------------------------------------------------------
def fetch(dest: str | None, only: list[str] | None, trust: bool) -> int:
    """Fetch, check and record every part asked for; one error line naming every part that failed."""
    folder = Path(dest).expanduser().resolve() if dest else default_dir().resolve()
    failed, untrusted = [], []
    for name in dict.fromkeys(only or PARTS):
        print(f"vnp: fetching {name} into {folder}", file=sys.stderr, flush=True)
        try:
            entry = _fetch_part(name, folder, trust)
        except WeightsError as error:  # not found, not matching, or not convertible
            failed.append(f"{name} ({error})")
            continue
        except Exception as error:  # the HTTP libraries' network errors share no base class
            failed.append(f"{name} ({type(error).__name__}: {_first_line(error)})")
            continue
        _record(folder, name, entry)
        if name.startswith("classifier") and entry["path"] is None:
            untrusted.append(name)
    if untrusted:
        print(f"vnp: downloaded but did not convert {', '.join(untrusted)}: {TRUST_MEANING}. To finish: "
              f"vnp weights fetch --dest {folder} --trust", file=sys.stderr)
    if failed:
        raise FetchError("could not fetch " + "; ".join(failed))
    print(f"vnp: weights in {folder} (see {MANIFEST}); use them with `vnp predict --weights {folder}`",
          file=sys.stderr)
    return 0


def _fetch_part(name: str, folder: Path, trust: bool) -> dict:
    for model in HUB_MODELS:
        if model.name == name:
            return _fetch_hub_model(model, folder)
    return _fetch_classifier(next(c for c in CLASSIFIERS if c.name == name), folder, trust)


def _fetch_hub_model(model: HubModel, folder: Path) -> dict:
    from huggingface_hub import HfApi, hf_hub_download

    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")  # read now: mirrors, tests
    info = HfApi(endpoint=endpoint).model_info(model.repo, revision=model.revision, files_metadata=True)
    listed = {sibling.rfilename: sibling for sibling in info.siblings or ()}
    weights = _weight_files(set(listed))
    revision = info.sha or model.revision  # every file from the one commit the listing describes
    absent = [name for name in model.files if name not in listed] + ([] if weights else ["weights"])
    if absent:
        raise FetchError(f"{model.repo} at {revision} has no {', '.join(absent)}")
    files, snapshot = [], None
    for name in (*model.files, *(n for n in model.optional if n in listed), *weights):
        local = Path(hf_hub_download(model.repo, name, revision=revision, cache_dir=folder / "hub",
                                     endpoint=endpoint))
        files.append(_checked(local, f"{model.repo}/{name}", size=listed[name].size,
                              sha256=listed[name].lfs.sha256 if listed[name].lfs else None,
                              git_blob=None if listed[name].lfs else listed[name].blob_id))
        snapshot = local.parent
    return {"what": model.what, "source": f"{endpoint}/{model.repo}", "revision": revision,
            "path": str(snapshot.relative_to(folder)), "files": files}


def _weight_files(listed: set[str]) -> list[str]:
    """The weights of a transformers repository: one file, or an index and its shards."""
    for single, shard in _WEIGHT_LAYOUTS:
        if single in listed:
            return [single]
        shards = sorted(name for name in listed if re.fullmatch(shard, name))
        if shards and f"{single}.index.json" in listed:
            return [f"{single}.index.json", *shards]
    return []


def _fetch_classifier(item: PublishedFile, folder: Path, trust: bool) -> dict:
    base = os.environ.get(CLASSIFIER_URL_VARIABLE) or \
        f"https://raw.githubusercontent.com/{VIRNUCPRO_REPO}/{VIRNUCPRO_COMMIT}"
    url = f"{base.rstrip('/')}/{item.filename}"
    original = folder / "virnucpro" / item.filename
    if not original.is_file():
        _download(url, original)
    checked = _checked(original, url, git_blob=item.git_blob)
    converted = original.with_suffix(".safetensors")
    if trust and not converted.is_file():
        from vnp.models.weights import convert_classifier

        convert_classifier(str(original), str(converted), trust=True)
    return {"what": item.what, "source": url, "revision": VIRNUCPRO_COMMIT, "files": [checked],
            "original": str(original.relative_to(folder)),
            "path": str(converted.relative_to(folder)) if converted.is_file() else None}


def _download(url: str, target: Path) -> None:
    """GET ``url`` into ``target`` through ``target.part``; a partial ``.part`` is resumed with a Range request."""
    from tqdm import tqdm

    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    total = None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            part.parent.mkdir(parents=True, exist_ok=True)
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as out, \
                    tqdm(total=total, initial=have, desc=target.name, unit="B", unit_scale=True, unit_divisor=1024,
                         disable=not sys.stderr.isatty(), leave=False) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:  # urllib's URLError and HTTPError are OSErrors
        if getattr(error, "code", None) == 416:  # the .part is already whole (killed before its rename): restart
            part.unlink(missing_ok=True)
        detail = error.reason if type(error) is urllib.error.URLError else error  # HTTPError: "HTTP Error 404: ..."
        raise FetchError(f"{url}: {_first_line(detail)}{_kept(part)}") from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise FetchError(f"{url}: connection closed after {got:,} of {total:,} bytes{_kept(part)}")
    os.replace(part, target)


def _kept(part: Path) -> str:
    if part.exists() and part.stat().st_size:
        return f"; {part.stat().st_size:,} bytes kept in {part}, the next fetch resumes there"
    return ""


def _checked(path: Path, label: str, *, size=None, sha256=None, git_blob=None) -> dict:
    """The file's size and sha256, checked against what the publisher lists; a mismatch deletes the file."""
    got_size, got_sha256, got_blob = _hashes(path)
    checks = [("size", size, got_size), ("sha256", sha256, got_sha256), ("git blob id", git_blob, got_blob)]
    for what, published, got in checks:
        if published is not None and published != got:
            _discard(path)
            raise FetchError(f"{label}: {what} {got} is not the published {published}; deleted the file, "
                             "fetch again (a mirror or proxy serving other bytes?)")
    return {"name": path.name, "size": got_size, "sha256": got_sha256,
            "checked": [what for what, published, _ in checks if published is not None]}


def _hashes(path: Path) -> tuple[int, str, str]:
    """Size, sha256 and git blob id (sha1 of "blob SIZE\\0" + content) in one pass."""
    size = path.stat().st_size
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sha256.update(chunk)
            blob.update(chunk)
    return size, sha256.hexdigest(), blob.hexdigest()


def _discard(path: Path) -> None:
    """Delete a rejected file; for a hub cache entry, the blob its snapshot link points to as well."""
    if path.is_symlink():
        path.resolve().unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _record(folder: Path, name: str, entry: dict) -> None:
    """Add one fetched part to the manifest (written whole, atomically)."""
    # Only a missing manifest starts a new one: a foreign or unreadable manifest.json is not ours to replace.
    manifest = read_manifest(folder) if (folder / MANIFEST).exists() else {"schema": SCHEMA, "weights": {}}
    entry["fetched_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["weights"][name] = entry
    try:
        with atomic_write(folder / MANIFEST) as handle:
            json.dump(manifest, handle, indent=1)
            handle.write("\n")
    except OSError as error:
        raise WeightsError(f"{folder / MANIFEST}: cannot write: {_first_line(error)}") from None


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- the command -------------------------------------------------------------------------------
FETCH_DESCRIPTION = f"""\
Download the published weights, check them against their publishers' listings, and record them in
DIR/{MANIFEST}: ESM-2 3B (facebook/esm2_t36_3B_UR50D) and DNABERT-S (zhihan1996/DNABERT-S) from the
Hugging Face hub (HF_ENDPOINT for a mirror, HF_TOKEN if needed), and VirNucPro's 300_model.pth and
500_model.pth from its GitHub repository (${CLASSIFIER_URL_VARIABLE} for a mirror). A cut download resumes
on the next run. Then: vnp predict reads.fa -o out --weights DIR"""


def add_weights_command(commands) -> None:
    weights = commands.add_parser("weights", help="fetch the published weights (ESM-2 3B, DNABERT-S, classifiers)")
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch_parser = actions.add_parser("fetch", help="download, check and record the published weights",
                                      description=FETCH_DESCRIPTION)
    fetch_parser.add_argument("--dest", metavar="DIR",
                              help="where (default: $VNP_CACHE_DIR, else $XDG_CACHE_HOME/vnp, else ~/.cache/vnp)")
    fetch_parser.add_argument("--only", action="append", choices=PARTS, metavar="PART",
                              help=f"fetch only this part (repeatable): {', '.join(PARTS)}")
    fetch_parser.add_argument("--trust", action="store_true",
                              help=f"convert the classifiers to safetensors: {TRUST_MEANING}")


def run_weights_command(args) -> int:
    return fetch(args.dest, args.only, args.trust)
