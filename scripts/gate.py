#!/usr/bin/env python3
"""The regression gate's verdict (scripts/gate.sh): compare two commits' asv results, exit 1 on a regression.

    python scripts/gate.py --results DIR --machine M --env E --base SHA --head SHA --factor 1.2 [--judged REGEX]
                           [--rule rank|best] [--samples N]

Reads asv's own result files (through asv's reading API, not its printed table) and decides with one of two
rules (``--rule``). `rank`, asv's own (what `asv continuous` does): a benchmark regressed when HEAD's value
(the median of its samples) is more than `factor` times BASE's and, where both have samples, a rank test
says the difference is real; it needs many samples (7 a side before the test can say anything). `best`, for a
few long runs per commit (the GPU scales): HEAD's best sample is more than `factor` times BASE's best, so a
round disturbed by a cold start or by other work on the host cannot make either commit look slower. Unlike
`asv continuous`,
it also judges when some benchmark failed to run (asv then prints no table and exits 2), and it judges
only the benchmarks `--judged` matches: the others are listed, and count only when they newly fail.

A benchmark that had a value at BASE and has none at HEAD (failed, n/a or missing) is newly failing: a
HEAD that stops producing a number must not pass. So is a judged benchmark with fewer samples than the
rounds should have given (``--samples``: asv drops a benchmark's earlier samples when a round fails). A
gate that judged nothing cannot pass (exit 2). A BASE value of 0 (a clamped cost: no leak, no back-off)
has no ratio: its growth is listed, not judged.

Exit codes: 0 nothing regressed, 1 regressed or newly failing benchmarks (listed), 2 no results to compare.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from asv import util
from asv.commands.compare import _is_result_better, unroll_result
from asv.results import Results, get_filename


def read(results_dir: Path, machine: str, env: str, commit: str, benchmarks: dict) -> dict:
    """{'name(params)': (value, (stats, samples))} of one commit; empty if asv saved nothing for it."""
    path = results_dir / get_filename(machine, commit, env)
    if not path.exists():
        return {}
    result = Results.load(str(path), machine)
    values = {}
    for key in result.get_result_keys(benchmarks):  # drops results of other benchmark versions
        params = benchmarks[key]["params"]
        rows = unroll_result(key, params, result.get_result_value(key, params), result.get_result_stats(key, params),
                             result.get_result_samples(key, params))
        for name, value, stats, samples in rows:
            values[name] = (value, (stats, samples))
    return values


def has_value(value) -> bool:
    return value is not None and not math.isnan(value)  # asv: None = failed, NaN = skipped (n/a)


def sample_count(value, stats_and_samples) -> int:
    samples = stats_and_samples[1] if stats_and_samples else None
    return len(samples) if samples else int(has_value(value))


def best(value, stats_and_samples) -> float:
    """The smallest sample (every figure is a cost), or the value where asv kept no samples."""
    samples = stats_and_samples[1] if stats_and_samples else None
    return min(samples) if samples else value


def grew(before, after, before_ss, after_ss, factor: float, rule: str) -> bool:
    """asv's rule (ratio of the values, and a rank test where both sides have samples), or the best samples'."""
    if rule == "best":
        return after > factor * before
    return _is_result_better(before, after, before_ss, after_ss, factor)


def verdict(base: dict, head: dict, factor: float, judged: str, samples: int = 1,
            rule: str = "rank") -> tuple[list, list, list]:
    """(regressed, newly failing, from zero): rows of (name, base value, head value, ratio or reason); with
    rule "best" the values are each commit's best sample."""
    regressed, newly_failing, from_zero = [], [], []
    for name in sorted(set(base) | set(head)):
        (before, before_ss), (after, after_ss) = base.get(name, (math.nan, None)), head.get(name, (math.nan, None))
        if not has_value(before):
            continue
        if not has_value(after):
            newly_failing.append((name, before, None, "no value at HEAD"))
            continue
        if not re.search(judged, name):
            continue
        if min(sample_count(before, before_ss), sample_count(after, after_ss)) < samples:
            newly_failing.append((name, before, after, f"fewer than {samples} samples (a round failed?)"))
            continue
        if rule == "best":
            before, after = best(before, before_ss), best(after, after_ss)
        if before == 0:
            if after > 0:
                from_zero.append((name, before, after, None))
        elif grew(before, after, before_ss, after_ss, factor, rule):
            regressed.append((name, before, after, after / before))
    return regressed, newly_failing, from_zero


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--results", "--machine", "--env", "--base", "--head"):
        parser.add_argument(option, required=True)
    parser.add_argument("--factor", type=float, required=True)
    parser.add_argument("--judged", default=".*", help="regex of the benchmarks whose values are judged")
    parser.add_argument("--samples", type=int, default=1, help="samples each judged benchmark must have")
    parser.add_argument("--rule", choices=("rank", "best"), default="rank",
                        help="rank: asv's rule (median and rank test); best: each commit's best sample")
    args = parser.parse_args(argv)
    results = Path(args.results)
    try:
        benchmarks = util.load_json(str(results / "benchmarks.json"), api_version=2)
    except (OSError, util.UserError) as error:
        print(f"gate: no asv results to compare in {results}: {error}", file=sys.stderr)
        return 2
    base, head = (read(results, args.machine, args.env, c, benchmarks) for c in (args.base, args.head))
    if not base or not head:
        missing = ", ".join(c[:8] for c, r in ((args.base, base), (args.head, head)) if not r)
        print(f"gate: asv saved no results for {missing}: nothing to compare", file=sys.stderr)
        return 2
    regressed, newly_failing, from_zero = verdict(base, head, args.factor, args.judged, args.samples, args.rule)
    judged = sum(1 for name in set(base) & set(head)
                 if re.search(args.judged, name) and has_value(base[name][0]) and has_value(head[name][0]))
    print(f"gate: {args.base[:8]} -> {args.head[:8]}: {len(base)} benchmarks, {judged} judged at factor {args.factor}"
          f" ({'each commit' + chr(39) + 's best sample' if args.rule == 'best' else 'median and rank test'})")
    for name, before, after, ratio in regressed:
        print(f"gate: REGRESSED  {ratio:6.2f}x  {before:.4g} -> {after:.4g}  {name}")
    for name, before, _, reason in newly_failing:
        print(f"gate: NEWLY FAILING  (was {before:.4g}: {reason})  {name}")
    for name, _, after, _ in from_zero:
        print(f"gate: note: from 0 to {after:.4g} (no ratio; not judged)  {name}")
    if not (regressed or newly_failing) and not judged:
        print(f"gate: nothing judged: no benchmark matching /{args.judged}/ has a value at both commits "
              "(select some with -b?)", file=sys.stderr)
        return 2
    if regressed or newly_failing:
        print(f"gate: FAIL: {len(regressed)} regressed, {len(newly_failing)} newly failing")
        return 1
    print("gate: PASS: nothing regressed, nothing newly failing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
