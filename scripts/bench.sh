#!/usr/bin/env bash
# The benchmark in one command: set up, run the whole asv suite on HEAD, publish the dashboard.
#
#   scripts/bench.sh                        # ci scale: tiny models on the CPU, a few minutes
#   VNP_BENCH_SCALE=gpu scripts/bench.sh    # full-size models on this host's GPUs (see scripts/gpu_host.md)
#   scripts/bench.sh -b end_to_end          # extra arguments go to `asv run` (here: one suite only)
#   VNP_BENCH_COMMITS=main~3..main scripts/bench.sh   # other commits than HEAD (an asv range)
#
# Environment: VNP_BENCH_SCALE (ci|gpu|full, default ci), VNP_BENCH_MACHINE (default: the short host
# name), VNP_BENCH_PYTHON (default .venv/bin/python, made by scripts/setup.sh), VNP_BENCH_DATA (a FASTA
# of your own instead of the synthetic datasets). asv benchmarks the *committed* HEAD; asv's results go to
# results/, the RunRecords to records/, the dashboard to html/ (offline: its scripts and styles in html/vendor/).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${VNP_BENCH_SCALE:-ci}
PY=${VNP_BENCH_PYTHON:-.venv/bin/python}
if [ "$PY" = .venv/bin/python ] && [ ! -x "$PY" ]; then
  bash scripts/setup.sh
fi
export VNP_BENCH_MACHINE=${VNP_BENCH_MACHINE:-$(hostname -s)} VNP_BENCH_SCALE=$SCALE

# asv machine file with the GPU model and count (asv machine --yes would not record them). The name asv
# files results under carries the scale where it is not a GPU one (host-ci), so scales never share a line.
"$PY" -m benchmarks.harness.host --write
MACHINE=$("$PY" -m benchmarks.harness.host --name)
# One asv environment per scale (asv.conf.json's matrix), so the scales' results never mix.
ENV_NAME="sysvenv-py$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-VNP_BENCH_SCALE$SCALE"
# GPU scales start every benchmark in a fresh interpreter (spawn: CUDA and fork do not mix). The ci scale
# never touches CUDA, so it forks from a pre-imported suite: the same benchmarks in a fraction of the time.
LAUNCH=spawn
[ "$SCALE" = ci ] && LAUNCH=forkserver

status=0
"$PY" -m asv run --machine "$MACHINE" -E "$ENV_NAME" --launch-method "$LAUNCH" "$@" "${VNP_BENCH_COMMITS:-HEAD^!}" || status=$?
"$PY" -m asv publish
# asv's page loads jQuery, flot and Bootstrap from CDNs: serve them from html/ (npm packages fetched at setup).
"$PY" scripts/dashboard.py localize html || status=1
echo
echo "vnp-bench: dashboard in $(pwd)/html/index.html; serve it with: $PY -m asv preview   (http://127.0.0.1:8080)"
echo "vnp-bench: RunRecords in $(pwd)/records/$MACHINE/"
[ "$status" -eq 0 ] || echo "vnp-bench: asv run exited $status: a benchmark failed (see the output above)" >&2
exit "$status"
