"""The requirement measured, not projected: one validated `vnp predict` of a whole dataset on N GPUs.

    python -m scripts.requirement full --gpus 4          # the 6,000,000-read sample on 4 GPUs
    python -m scripts.requirement subset1m --gpus 1      # the 1,000,000-read subset on one GPU
    python -m scripts.requirement typical --scale ci     # the same machinery on the CPU (tiny models)
    python -m scripts.requirement subset1m --variant compiled   # an opt-in step of the variants suite

Runs through the benchmark harness, like the asv suites: NVML and psutil samplers, a wall-clock limit,
records in = records out checked, and a RunRecord (run.json + samples) written where the harness's
`record.record_path` puts every record, as requirement-<dataset>-<N>gpu-all-r<k>.json (VNP_BENCH_MACHINE
names the machine; the path is printed). An interrupted run is resumed by the next call. Generate the dataset first
(`python -m scripts.make_data generate full`). Exit 0 when the run is validated, 1 when it failed or does not
account for every record, 2 when it cannot run here (too few GPUs, unknown dataset role).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from benchmarks.harness import record, runs
from benchmarks.harness import scale as scales
from benchmarks.variants import VARIANTS

REQUIREMENT_VARIANTS = ("all", "compiled", "fp8")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=scales.ROLES, help="dataset role, mapped to a dataset by the scale")
    parser.add_argument("--gpus", type=int, default=1, help="GPU count: the first N visible GPUs (default 1)")
    parser.add_argument(
        "--scale", default="full", choices=sorted(scales.SCALES), help="dataset and model scale (default full)"
    )
    parser.add_argument(
        "--variant", default="all", choices=REQUIREMENT_VARIANTS,
        help="all: the pipeline's defaults (default); compiled or fp8: the variants suite's opt-in steps",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not os.environ.get("VNP_BENCH_COMMAND") and importlib.util.find_spec("vnp") is None:  # found, not imported
        print(f"requirement: vnp is not installed in {sys.executable}: run scripts/gpu_host.sh setup on a GPU "
              "host (or pip install -e .), or name another command in VNP_BENCH_COMMAND", file=sys.stderr)
        return 2
    label, options = VARIANTS[args.variant]
    spec = runs.RunSpec.make("requirement", args.role, gpus=args.gpus, variant=label, options=options)
    try:
        result = runs.execute(spec, scales.SCALES[args.scale])
    except runs.Skip as reason:
        print(f"requirement: cannot run here: {reason}", file=sys.stderr)
        return 2
    except runs.RunFailed as failure:
        print(f"requirement: {failure}", file=sys.stderr)
        return 1
    h = result["harness"]
    name = record.record_name(spec.suite, h["dataset"], h["gpus"], h["variant"])
    path = record.record_path(h["machine"], h["commit"], name, h["repeat"])
    print(
        f"{h['dataset']} on {args.gpus} {'GPU' if args.gpus == 1 else 'GPUs'}: {h['wall_seconds']:.1f} s, "
        f"{h['records_out']:,} of {h['records_in']:,} frames, validated; RunRecord {path}"
    )
    for stage in result["run"]["stages"]:
        tokens = (
            f", {stage['tokens'] / stage['seconds']:,.0f} tokens/s" if stage.get("tokens") and stage["seconds"] else ""
        )
        print(f"  {stage['name']:<11}{stage['seconds']:9.1f} s{tokens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
