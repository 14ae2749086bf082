"""What the samplers cost the run they measure: the same run with samplers on and off, alternating,
and the samplers' own CPU time (recorded in every RunRecord as harness.sampler_cpu_seconds).

    python -m benchmarks.harness.overhead [--dataset typical] [--pairs 3] [--gpus 1]

Uses the scale of VNP_BENCH_SCALE (default ci: tiny models on the CPU). Prints one JSON object; the
runs' RunRecords go where every record goes (suite "overhead").
"""

from __future__ import annotations

import argparse
import json
import statistics

from benchmarks.harness import runs
from benchmarks.harness import scale as scales


def measure(role: str = "typical", pairs: int = 3, gpus: int = 1) -> dict:
    """Wall seconds with and without samplers (order alternated to cancel drift), compared by median and
    by minimum (the run least disturbed by anything else on the host), and the samplers' CPU share."""
    walls = {True: [], False: []}
    cpu_shares = []
    for pair in range(pairs):
        for sampling in ((True, False) if pair % 2 == 0 else (False, True)):
            label = "sampler_on" if sampling else "sampler_off"
            rec = runs.execute(runs.RunSpec.make("overhead", role, gpus, label), sampling=sampling)
            harness = rec["harness"]
            walls[sampling].append(harness["wall_seconds"])
            if sampling:
                cpu_shares.append(harness["sampler_cpu_seconds"] / harness["wall_seconds"])
    on, off = statistics.median(walls[True]), statistics.median(walls[False])
    return {
        "scale": scales.current().name, "dataset_role": role, "gpus": gpus, "pairs": pairs,
        "wall_seconds_on": walls[True], "wall_seconds_off": walls[False],
        "median_on": on, "median_off": off, "wall_overhead_median": on / off - 1.0,
        "wall_overhead_min": min(walls[True]) / min(walls[False]) - 1.0,
        "sampler_cpu_share": statistics.median(cpu_shares),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="typical", help="dataset role (default typical)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--gpus", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.dataset, args.pairs, args.gpus), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
