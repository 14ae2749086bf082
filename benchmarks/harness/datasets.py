"""Benchmark datasets: definitions in data/datasets.json, a seeded generator, a sha256-checked cache.

Synthetic reads are calibrated to cost what real short reads cost (see `calibration` in datasets.json):
~150-nt reads, a share of them carrying a planted open reading frame, so that about 60% of reads have a
stop-free frame, about 0.8 frames are kept per read and a kept frame averages ~51 ESM tokens, like the
real 1M-read subset the VirNucPro fork published timings for. Generation is vectorised with numpy and
done in fixed blocks of reads, each seeded from (seed, block), so the output is byte-identical on every
host (the sha256 in datasets.json proves it) and memory stays flat for millions of reads.

`VNP_BENCH_DATA=path.fa` replaces every dataset with a user's own sample; its composition (what a run
must produce) is counted once by the harness's own original rules (`counting.py`) and cached by the
file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.harness import counting

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = REPO / "data" / "datasets.json"
GENERATOR_VERSION = 1
BLOCK_READS = 50_000  # reads per independently seeded block: the unit of memory and of determinism
CONTIG_LINE_WIDTH = 80
# Of the cached counts of user files: 4 = tabs in sequence lines dropped, as the original's parser does (3: CR line
# ends read as the original; 2: not; 1: vnp's)
COMPOSITION_VERSION = 4

# Bases are coded A=0, C=1, G=2, T=3; a codon is 16*first + 4*second + third.
LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)
STOP_CODONS = (48, 50, 56)  # TAA, TAG, TGA
SENSE_CODONS = np.array([c for c in range(64) if c not in STOP_CODONS], dtype=np.uint8)


class DatasetError(Exception):
    """A dataset cannot be made, found or trusted; the message says why in one line."""


@dataclass(frozen=True)
class Dataset:
    """A FASTA file ready to benchmark, with what it should produce (records in = records out)."""

    name: str
    path: Path
    model_type: int  # the VirNucPro model, i.e. the chunk size
    composition: dict


def cache_dir() -> Path:
    return Path(os.environ.get("VNP_BENCH_CACHE") or REPO / "data" / "cache")


def load_definitions(path: Path = DEFINITIONS) -> dict:
    return json.loads(Path(path).read_text())


def get(name: str, definitions: dict | None = None) -> Dataset:
    """The dataset `name`, generated into the cache on first use and checked against its sha256.

    With VNP_BENCH_DATA set, the user's file stands in for every dataset.
    """
    user_file = os.environ.get("VNP_BENCH_DATA")
    if user_file:
        return user_dataset(Path(user_file), int(os.environ.get("VNP_BENCH_MODEL_TYPE", "300")))
    definitions = definitions or load_definitions()
    entry = definitions["datasets"].get(name)
    if entry is None:
        raise DatasetError(f"no dataset {name!r} in {DEFINITIONS}; known: {', '.join(definitions['datasets'])}")
    if entry["kind"] == "file":
        return user_dataset(Path(entry["path"]).expanduser(), entry["model_type"], name=name)
    path = ensure_file(name, entry, definitions)
    return Dataset(name, path, entry["model_type"], entry["composition"])


def ensure_file(name: str, entry: dict, definitions: dict) -> Path:
    """Path of the cached FASTA; generate it if missing, and refuse it if its bytes are not the recorded ones."""
    path = cache_dir() / f"{name}-g{GENERATOR_VERSION}.fa"
    stamp = path.with_suffix(".fa.verified")
    expected = entry.get("sha256")
    if path.exists() and stamp.exists() and stamp.read_text() == _stamp_text(path, expected):
        return path
    if not path.exists():
        generate(name, entry, definitions, path)
    actual = sha256_file(path)
    if expected and actual != expected:
        path.unlink()
        raise DatasetError(
            f"dataset {name}: generated file has sha256 {actual[:12]}..., datasets.json says {expected[:12]}... "
            f"(numpy {np.__version__}; regenerate the definitions with python -m scripts.make_data describe if the "
            "generator changed on purpose)")
    stamp.write_text(_stamp_text(path, expected or actual))
    return path


def _stamp_text(path: Path, sha256: str | None) -> str:
    stat = path.stat()
    return f"{sha256} {stat.st_size} {stat.st_mtime_ns}"


def user_dataset(path: Path, model_type: int, name: str | None = None) -> Dataset:
    """A user's FASTA; its composition is counted once (original rules) and cached by content hash."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (VNP_BENCH_DATA or a 'file' dataset)")
    digest = sha256_file(path)
    cached = cache_dir() / "compositions" / f"{digest}-m{model_type}-v{COMPOSITION_VERSION}.json"
    if cached.exists():
        composition = json.loads(cached.read_text())
    else:
        try:
            composition = count_composition(path, model_type)
        except ValueError as error:  # a file the original cannot read: nothing to validate a run against
            raise DatasetError(str(error)) from error
        _write_atomic(cached, json.dumps(composition, indent=1).encode())
    return Dataset(name or f"user-{path.stem}", path.resolve(), model_type, composition)


# --- generation -------------------------------------------------------------------------------------


def generate(name: str, entry: dict, definitions: dict, path: Path) -> str:
    """Write dataset `name` to `path` (atomically) and return its sha256."""
    params = {**definitions["generators"][entry["kind"]], **entry.get("generator", {})}
    writers = {"reads": _write_reads, "contigs": _write_contigs}
    if entry["kind"] not in writers:
        raise DatasetError(f"dataset {name}: unknown kind {entry['kind']!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for chunk in writers[entry["kind"]](name, entry, params):
                digest.update(chunk)
                out.write(chunk)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache should be readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _write_reads(name: str, entry: dict, params: dict):
    """FASTA bytes of entry['reads'] reads, block after block."""
    total = entry["reads"]
    for block, first in enumerate(range(0, total, BLOCK_READS)):
        count = min(BLOCK_READS, total - first)
        rng = np.random.default_rng([GENERATOR_VERSION, entry["seed"], block])
        bases, lengths = reads_block(rng, count, params)
        text = LETTERS[bases].tobytes()
        width = bases.shape[1]
        yield b"".join(
            b">%s_%d\n%s\n" % (name.encode(), first + i + 1, text[i * width : i * width + n])
            for i, n in enumerate(lengths.tolist())
        )


def reads_block(rng: np.random.Generator, count: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """`count` reads as base codes (count x read_length, valid up to each length) and their lengths.

    Every read starts uniformly random; a `planted_fraction` of them carry an open frame (sense codons
    only) on a random strand and offset, which is what makes real reads yield more kept frames than
    random sequence does.
    """
    length = params["read_length"]
    lengths = np.full(count, length, dtype=np.int64)
    trimmed = rng.random(count) < params["trimmed_fraction"]
    lengths[trimmed] = rng.integers(params["trimmed_min"], length, int(trimmed.sum()))
    bases = random_bases(rng, (count, length), params["gc_content"])
    planted = np.flatnonzero(rng.random(count) < params["planted_fraction"])
    if planted.size:
        offsets = rng.integers(0, 3, planted.size)
        codons = rng.choice(SENSE_CODONS, (planted.size, length // 3 + 1), p=_planted_codon_odds(params))
        orf = np.stack([codons >> 4, (codons >> 2) & 3, codons & 3], axis=-1).reshape(planted.size, -1)
        columns = np.arange(length)
        source = columns[None, :] - offsets[:, None]  # the open frame starts at the offset
        strand = np.where(source >= 0, np.take_along_axis(orf, np.maximum(source, 0), axis=1), bases[planted])
        # Half of the frames sit on the reverse strand: the read is then the strand's reverse complement.
        mirrored = np.clip(lengths[planted, None] - 1 - columns[None, :], 0, length - 1)
        reverse_complement = 3 - np.take_along_axis(strand, mirrored, axis=1)
        on_reverse = rng.random(planted.size) < 0.5
        bases[planted] = np.where(on_reverse[:, None], reverse_complement, strand)
    return bases, lengths


def _planted_codon_odds(params: dict) -> np.ndarray:
    """Codon usage of planted frames: AT-rich codons favoured by exp(orf_at_bias * A/T bases per codon).

    Real genes hide stop codons in their other five frames (stops are A/T-rich, and so is much of the
    codon usage of viruses and bacteria), so a real read with one open frame seldom has a second one;
    uniform sense codons would give planted reads too many extra open frames.
    """
    at_bases = sum(np.isin((SENSE_CODONS >> shift) & 3, (0, 3)).astype(int) for shift in (4, 2, 0))  # A=0, T=3
    odds = np.exp(params["orf_at_bias"] * at_bases)
    return odds / odds.sum()


def random_bases(rng: np.random.Generator, shape, gc_content: float) -> np.ndarray:
    """Base codes with the given GC share (A and T, C and G equally likely)."""
    at, gc = (1 - gc_content) / 2, gc_content / 2
    edges = np.cumsum([at, gc, gc])  # A | C | G | T
    return np.searchsorted(edges, rng.random(shape), side="right").astype(np.uint8)


def _write_contigs(name: str, entry: dict, params: dict):
    """FASTA bytes of entry['contigs'] gene-dense contigs (genes on both strands, short gaps), 80 columns."""
    rng = np.random.default_rng([GENERATOR_VERSION, entry["seed"]])
    low, high = np.log(params["min_length"]), np.log(params["max_length"])
    for index in range(entry["contigs"]):
        length = int(np.exp(rng.uniform(low, high)))
        text = LETTERS[_contig(rng, length, params)].tobytes()
        lines = b"\n".join(text[i : i + CONTIG_LINE_WIDTH] for i in range(0, len(text), CONTIG_LINE_WIDTH))
        yield b">%s_%d len=%d\n%s\n" % (name.encode(), index + 1, length, lines)


def _contig(rng: np.random.Generator, length: int, params: dict) -> np.ndarray:
    parts, total = [], 0
    while total < length:
        gap = rng.integers(0, 4, int(rng.integers(params["gap_min"], params["gap_max"] + 1)), dtype=np.uint8)
        codons = SENSE_CODONS[rng.integers(0, SENSE_CODONS.size, int(rng.integers(params["gene_min_codons"],
                                                                                    params["gene_max_codons"] + 1)))]
        gene = np.stack([codons >> 4, (codons >> 2) & 3, codons & 3], axis=-1).ravel()
        if rng.random() < 0.5:
            gene = 3 - gene[::-1]
        parts += [gap, gene]
        total += gap.size + gene.size
    return np.concatenate(parts)[:length]


# --- composition ------------------------------------------------------------------------------------


def count_composition(path: Path, chunk_size: int, workers: int | None = None) -> dict:
    """Reads, bases, chunks, chunks with a kept frame, frames, ESM and (estimated) DNABERT tokens of a FASTA.

    Counted by the harness's own statement of the original rules (`counting`, held equal to `original.py`
    by the tests), never by the pipeline under test: these are the counts a run is validated against.
    """
    return counting.count_file(Path(path), chunk_size, workers)


# --- files ------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
