#!/usr/bin/env bash
# The regression gate, at any scale: is HEAD slower than BASE?
#
#   scripts/gate.sh BASE HEAD [asv run args]              # e.g. scripts/gate.sh main HEAD -b stages
#   VNP_BENCH_SCALE=gpu scripts/gate.sh main HEAD          # on a GPU host (scripts/gpu_host.sh gate does this)
#
# `asv continuous` done in rounds: `asv run` of both commits, in alternating order, samples appended, with
# results and the runs' RunRecords in a throwaway directory, never in results/ or records/; then
# `asv compare`'s table and the verdict of scripts/gate.py (asv's rule, without asv's blind spots).
# Exit 0: nothing regressed; 1: regressed or newly failing benchmarks, each listed with its ratio; 2: it
# could not run (bad arguments, unknown commit, asv saved no results). The scale sets
# the factor, the rounds and which benchmarks are judged (benchmarks/harness/scale.py); VNP_GATE_FACTOR
# overrides the factor.
#
# Environment: VNP_BENCH_SCALE (default ci), VNP_BENCH_PYTHON (default .venv/bin/python), VNP_BENCH_MACHINE,
# VNP_GATE_KEEP=1 (keep the throwaway results directory, to look at the samples).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
base_name=$1 head_name=$2
shift 2
PY=${VNP_BENCH_PYTHON:-.venv/bin/python}
export VNP_BENCH_SCALE=${VNP_BENCH_SCALE:-ci}
fail() { echo "gate: $*" >&2; exit 2; }
command -v "$PY" >/dev/null || fail "no Python at $PY: run scripts/setup.sh first (scripts/gpu_host.sh setup on a GPU host)"

base=$(git rev-parse --verify --quiet "$base_name^{commit}") || fail "unknown commit: $base_name"
head=$(git rev-parse --verify --quiet "$head_name^{commit}") || fail "unknown commit: $head_name"
# The scale's gate settings, and this machine in asv's machine file (named with the scale: box-ci).
settings=$("$PY" - <<'EOF'
from benchmarks.harness import host, scale
s = scale.current()
host.write_asv_machine_file(host.machine_info())
print(host.machine_name(), s.gate_rounds, s.gate_rounds * s.repeats, s.gate_factor,
      "spawn" if s.on_gpu else "forkserver", s.gate_rule, s.gate_judged)
EOF
) || fail "could not read the scale's gate settings with $PY (VNP_BENCH_SCALE=$VNP_BENCH_SCALE; set up by scripts/setup.sh?)"
read -r machine rounds samples factor launch rule judged <<<"$settings"  # the regex last: it may hold spaces
factor=${VNP_GATE_FACTOR:-$factor}
env_name="sysvenv-py$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-VNP_BENCH_SCALE$VNP_BENCH_SCALE"

# A copy of asv.conf.json whose results and html go to a throwaway directory. asv works in its
# configuration's directory and imports the plugin and reads pyproject.toml from there: link them.
work=$(mktemp -d "${TMPDIR:-/tmp}/vnp-gate.XXXXXX")
if [ -n "${VNP_GATE_KEEP:-}" ]; then echo "gate: keeping $work"; else trap 'rm -rf "$work"' EXIT; fi
# The compared commits' RunRecords and work directories are as throwaway as their results (a leftover work
# directory would be resumed by the next gate, and a resumed run reports no times).
export VNP_BENCH_RECORDS=$work/records VNP_BENCH_WORK=$work/work
"$PY" - "$work" <<'EOF' || fail "could not write the gate's asv configuration"
import json, sys
from pathlib import Path
repo, work = Path.cwd(), Path(sys.argv[1])
config = json.loads((repo / "asv.conf.json").read_text())
config.update(repo=str(repo), benchmark_dir=str(repo / "benchmarks"), env_dir=str(repo / ".asv" / "env"),
              results_dir=str(work / "results"), html_dir=str(work / "html"))
(work / "asv.conf.json").write_text(json.dumps(config, indent=1))
for name in ("asv_plugins", "pyproject.toml"):
    (work / name).symlink_to(repo / name)
EOF

echo "gate: $VNP_BENCH_SCALE scale, $base_name ($(git rev-parse --short "$base")) -> $head_name ($(git rev-parse --short "$head")):" \
     "$rounds round(s), factor $factor, rule $rule, judging /$judged/"
asv=("$PY" -m asv --config "$work/asv.conf.json")
for round in $(seq "$rounds"); do
  # `asv continuous` always runs HEAD first. Alternating the order (HEAD BASE, BASE HEAD, ...) spreads load
  # that changes over minutes evenly over both commits; the samples of all rounds add up.
  if [ $((round % 2)) -eq 1 ]; then printf '%s\n' "$head" "$base"; else printf '%s\n' "$base" "$head"; fi >"$work/order"
  echo "gate: round $round of $rounds"
  # asv's exit code is not the verdict: it is 2 as soon as any benchmark fails, and judges nothing.
  "${asv[@]}" run --machine "$machine" -E "$env_name" --launch-method "$launch" --append-samples "$@" \
    "HASHFILE:$work/order"
done
# asv's own table of what changed (it always exits 0), then the verdict.
"${asv[@]}" compare --machine "$machine" -E "$env_name" --factor "$factor" --only-changed --sort ratio "$base" "$head"
"$PY" scripts/gate.py --results "$work/results" --machine "$machine" --env "$env_name" \
  --base "$base" --head "$head" --factor "$factor" --judged "$judged" --samples "$samples" --rule "$rule"
