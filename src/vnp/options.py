"""The options of one `vnp predict` run: read once from the command line, checked, then frozen.

Every check that needs no work happens here (numbers, devices, precision, weight paths, -o), before
OUTDIR is touched, so a bad option never costs a result already in OUTDIR. The pipeline then reads
`PredictOptions`, never argparse's Namespace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vnp.engine.devices import resolve_devices, resolve_precision
from vnp.errors import OutputDirError, VnpError, WeightsError

# The command line's choices, defined once for every subcommand that offers them.
MODEL_TYPES = (300, 500)  # the VirNucPro models, which are also the chunk sizes in bases
MODEL_SIZES = ("tiny", "full")
ATTENTIONS = ("math", "sdpa", "varlen")
MAX_PARALLEL_PROCESSES = 32  # (--threads, default all cores) preprocessing and writing in parallel

# --variant: shorthands for the benchmark's two poles; explicit flags still win.
VARIANTS = {
    "baseline": {"precision": "fp32", "attention": "math", "packing": False, "persistent_models": False,
                 "one_gpu": True},
    "all": {"precision": "auto", "attention": "sdpa", "packing": True, "persistent_models": True,
            "one_gpu": False},
}
DEFAULTS = {"precision": "auto", "attention": "sdpa", "packing": True, "persistent_models": True}


@dataclass(frozen=True)
class Weights:
    """Weight locations (absolute); None: seeded random weights of the exact architecture."""

    esm2: str | None = None
    dnabert: str | None = None
    classifier: str | None = None

    def as_dict(self) -> dict:
        return {"esm2": self.esm2, "dnabert": self.dnabert, "classifier": self.classifier}

    def files(self) -> dict:
        """Name, size and mtime of every weights file: what ``--resume`` checks, since the same path may hold
        other weights by then (a copied-over file, a relative path run from elsewhere)."""
        found = {}
        for name, path in self.as_dict().items():
            if path is None:
                continue
            root = Path(path)
            members = sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else [root]
            found[name] = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in members]
        return found

    def check(self) -> None:
        """Every path given exists: found now, not after preprocessing (a corrupt file is found at load)."""
        for option, path, exists in (("--esm-weights", self.esm2, os.path.exists),
                                     ("--dnabert-dir", self.dnabert, os.path.isdir),
                                     ("--classifier", self.classifier, os.path.isfile)):
            if path is not None and not exists(path):
                kind = "folder" if option == "--dnabert-dir" else "file"
                raise WeightsError(f"{option} {path}: no such {kind}")


@dataclass(frozen=True)
class PredictOptions:
    input: Path  # as given: predict says what is wrong with it
    outdir: Path  # absolute
    argv: tuple[str, ...] = ()
    chunk_size: int = 500
    model_size: str = "full"
    devices: tuple[str, ...] = ("cpu",)
    gpus: tuple[dict, ...] = ()
    precision: str = "fp32"
    attention: str = "sdpa"
    packing: bool = True
    persistent_models: bool = True
    compile: bool = False
    kernels: str = "eager"
    token_budget: int | None = None
    records_per_part: int = 10000
    expandable_segments: bool = False
    max_memory_fraction: float | None = None
    threads: int | None = None
    variant: str | None = None
    resume: bool = False
    force: bool = False
    keep_intermediate: bool = False
    quiet: bool = False
    weights: Weights = field(default_factory=Weights)
    trust_pickle: bool = False
    parallel_from: int | None = None  # test hook: run the parallel steps from this input size (0: always)

    @property
    def processes(self) -> int:
        """Processes for preprocessing and writing."""
        return min(MAX_PARALLEL_PROCESSES, self.threads or os.cpu_count() or 1)

    def record_config(self) -> dict:
        """The resolved configuration as run.json's ``config`` holds it (docs/run-record.md)."""
        return {
            "input": str(self.input.resolve()), "outdir": str(self.outdir), "chunk_size": self.chunk_size,
            "model_size": self.model_size, "devices": list(self.devices), "precision": self.precision,
            "attention": self.attention, "packing": self.packing, "persistent_models": self.persistent_models,
            "compile": self.compile, "kernels": self.kernels, "token_budget": None,
            "records_per_part": self.records_per_part, "expandable_segments": self.expandable_segments,
            "max_memory_fraction": self.max_memory_fraction,
            "threads": self.threads or os.cpu_count(), "variant": self.variant, "resume": self.resume,
            "keep_intermediate": self.keep_intermediate,
            "weights": self.weights.as_dict(), "weights_files": self.weights.files(),
        }

    @classmethod
    def from_args(cls, args, argv: list[str]) -> PredictOptions:
        """Check and resolve `vnp predict`'s parsed command line (defaults, --variant, devices)."""
        if not args.output:
            raise OutputDirError("-o is empty: name the output directory (an empty name would be the current one)")
        if args.resume and args.force:
            raise VnpError("--resume continues the run in OUTDIR and --force replaces it: choose one")
        _check_numbers(args)
        given = (args.esm_weights, args.dnabert_dir, args.classifier)
        weights = Weights(*(str(Path(path).resolve()) if path else None for path in given))
        weights.check()
        switches = _switches(args)
        if args.compile and not switches["packing"]:
            raise VnpError("--compile needs packed batches: drop --no-packing (or --variant baseline)")
        if args.kernels == "fused" and not switches["packing"]:
            raise VnpError("--kernels fused needs packed batches: drop --no-packing (or --variant baseline)")
        if args.kernels == "fused" and args.compile:
            raise VnpError("--kernels fused and --compile are two ways to fuse the same work: choose one")
        devices, gpus = _devices(args)
        return cls(
            input=Path(args.input), outdir=Path(args.output).resolve(), argv=("vnp", *argv),
            chunk_size=args.model_type, model_size=args.model_size, devices=tuple(devices), gpus=tuple(gpus),
            precision=resolve_precision(switches["precision"], gpus), attention=switches["attention"],
            packing=switches["packing"], persistent_models=switches["persistent_models"], compile=args.compile,
            kernels=args.kernels,
            token_budget=args.token_budget, records_per_part=args.records_per_part,
            expandable_segments=args.expandable_segments, max_memory_fraction=args.max_memory_fraction,
            threads=args.threads, variant=args.variant, resume=args.resume, force=args.force,
            keep_intermediate=args.keep_intermediate, quiet=args.quiet, weights=weights,
            trust_pickle=args.trust_pickle, parallel_from=args.parallel_from,
        )


def _check_numbers(args) -> None:
    for option, value in (("--threads", args.threads), ("--cpu-workers", args.cpu_workers),
                          ("--records-per-part", args.records_per_part), ("--token-budget", args.token_budget)):
        if value is not None and value < 1:
            raise VnpError(f"{option} takes a whole number of 1 or more, not {value}")
    fraction = args.max_memory_fraction
    if fraction is not None and not 0 < fraction <= 1:
        raise VnpError(f"--max-memory-fraction takes a share of the GPU's memory in (0, 1], not {fraction}")


def _switches(args) -> dict:
    """Fill unset switches from --variant, then from the defaults."""
    variant = VARIANTS.get(args.variant, {})
    chosen = {}
    for name, default in DEFAULTS.items():
        value = getattr(args, name)
        chosen[name] = value if value is not None else variant.get(name, default)
    return chosen


def _devices(args) -> tuple[list[str], list[dict]]:
    """The workers' devices: --gpus, else all visible GPUs (one with --no-parallel or --variant baseline)."""
    devices, gpus = resolve_devices(args.gpus, args.cpu)
    if devices == ["cpu"]:
        devices = ["cpu"] * args.cpu_workers
    one_gpu = VARIANTS.get(args.variant, {}).get("one_gpu") or args.parallel is False
    if one_gpu and args.gpus is None:
        devices, gpus = devices[:1], gpus[:1]
    return devices, gpus
