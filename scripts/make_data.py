"""Generate, verify and describe the benchmark datasets defined in data/datasets.json.

  python -m scripts.make_data generate [NAME ...]   make (or check) the cached FASTA files; default: all
  python -m scripts.make_data verify [NAME ...]     same, and fail unless every file matches its sha256
  python -m scripts.make_data describe [NAME ...] [--write]
                                          count each file's composition (original rules); --write records
                                          sha256, size and composition in data/datasets.json
  python -m scripts.make_data calibrate [--reads N]  the reads generator against the real-data targets
  python -m scripts.make_data path NAME   print the cached file's path (generating it if needed)

Files go to $VNP_BENCH_CACHE or data/cache/ (ignored by git). DNABERT tokens need DNABERT-S's tokenizer,
which only the pipeline has: `describe` keeps a file's recorded count while its sha256 is unchanged and
otherwise records the harness's estimate, flagged `dnabert_tokens_estimated`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import datasets

RATIOS = ("chunks_with_frame_per_read", "frames_per_read", "esm_tokens_per_frame")


def ratios(composition: dict) -> dict:
    reads, frames = composition["reads"], composition["frames"]
    return {
        "chunks_with_frame_per_read": composition["chunks_with_frame"] / reads,
        "frames_per_read": frames / reads,
        "esm_tokens_per_frame": composition["esm_tokens"] / frames if frames else 0.0,
    }


def _names(requested: list[str], definitions: dict) -> list[str]:
    unknown = [n for n in requested if n not in definitions["datasets"]]
    if unknown:
        raise SystemExit(
            f"make_data: unknown dataset(s) {', '.join(unknown)}; known: {', '.join(definitions['datasets'])}"
        )
    return requested or list(definitions["datasets"])


def cmd_generate(args, definitions: dict) -> int:
    for name in _names(args.names, definitions):
        if (
            args.command == "verify"
            and definitions["datasets"][name]["kind"] != "file"
            and not definitions["datasets"][name].get("sha256")
        ):
            raise datasets.DatasetError(f"dataset {name} has no recorded sha256: run describe --write")
        started = time.perf_counter()
        dataset = datasets.get(name, definitions)
        size = dataset.path.stat().st_size
        print(f"{name:14s} {size / 1e6:10.1f} MB  {time.perf_counter() - started:6.1f} s  {dataset.path}")
    return 0


def cmd_describe(args, definitions: dict) -> int:
    for name in _names(args.names, definitions):
        entry = definitions["datasets"][name]
        if entry["kind"] == "file":
            print(f"{name:14s} user file {entry['path']}: nothing to record")
            continue
        path = datasets.cache_dir() / f"{name}-g{datasets.GENERATOR_VERSION}.fa"
        started = time.perf_counter()
        sha256 = datasets.generate(name, entry, definitions, path)
        generated = time.perf_counter() - started
        composition = datasets.count_composition(path, entry["model_type"])
        counted = time.perf_counter() - started - generated
        recorded = entry.get("composition") or {}
        if entry.get("sha256") == sha256 and "dnabert_tokens" in recorded:  # the same file: keep the real count
            composition.update(
                dnabert_tokens=recorded["dnabert_tokens"],
                dnabert_tokens_estimated=recorded.get("dnabert_tokens_estimated", False),
            )
        entry.update(sha256=sha256, bytes=path.stat().st_size, composition=composition)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in ratios(composition).items())
        print(f"{name:14s} generated in {generated:5.1f} s, counted in {counted:5.1f} s: {shown}")
    if args.write:
        definitions["generator_version"] = datasets.GENERATOR_VERSION
        datasets.DEFINITIONS.write_text(json.dumps(definitions, indent=1) + "\n")
        print(f"wrote {datasets.DEFINITIONS}")
    return 0


def cmd_calibrate(args, definitions: dict) -> int:
    entry = {"kind": "reads", "reads": args.reads, "seed": args.seed, "model_type": 300}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calibration.fa"
        datasets.generate("calibration", entry, definitions, path)
        measured = ratios(datasets.count_composition(path, 300))
    target = definitions["calibration"]
    for key in RATIOS:
        print(
            f"{key:28s} measured {measured[key]:8.3f}   target {target[key]:8.3f}   "
            f"({100 * (measured[key] / target[key] - 1):+.1f}%)"
        )
    return 0


def cmd_path(args, definitions: dict) -> int:
    print(datasets.get(args.name, definitions).path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("generate", "verify"):
        commands.add_parser(name).add_argument("names", nargs="*")
    describe = commands.add_parser("describe")
    describe.add_argument("names", nargs="*")
    describe.add_argument("--write", action="store_true", help="record sha256 and composition in datasets.json")
    calibrate = commands.add_parser("calibrate")
    calibrate.add_argument("--reads", type=int, default=100_000)
    calibrate.add_argument("--seed", type=int, default=12345)
    commands.add_parser("path").add_argument("name")
    args = parser.parse_args(argv)
    definitions = datasets.load_definitions()
    handler = {
        "generate": cmd_generate,
        "verify": cmd_generate,
        "describe": cmd_describe,
        "calibrate": cmd_calibrate,
        "path": cmd_path,
    }[args.command]
    try:
        return handler(args, definitions)
    except datasets.DatasetError as error:
        print(f"make_data: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
