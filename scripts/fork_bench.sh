#!/usr/bin/env bash
# The same asv suites over the Broad fork's own history: asv's repository is a clone of the fork.
#
#   scripts/fork_bench.sh CLONE run [asv run args] [COMMITS]   # e.g. ... run -b end_to_end v2.0^! 3098b10^!
#   scripts/fork_bench.sh CLONE publish                        # its dashboard in html/fork/
#
# CLONE: a clone of broadinstitute/virnucpro-broad (VNP_PEER_FORK names it too). The fork has no installer:
# each commit is "installed" by a .pth file that puts asv's checkout of it on the environment's path, so
# `python -m virnucpro predict` is the commit's own. It reads the same weights kit as the side-by-side suite
# (benchmarks/harness/peer_programs.py) and its packages from .peers/site (scripts/peers.sh). Its results go to
# results-fork/ (asv keeps one repository per results folder), its RunRecords to records/ under its commit ids
# (target "fork"). Flags a commit lacks make their benchmarks n/a (targets.Target.argv). Environment:
# VNP_BENCH_SCALE (default gpu), VNP_BENCH_PYTHON (default .venv/bin/python, or the GPU host's bench venv),
# VNP_BENCH_MACHINE.
set -euo pipefail
cd "$(dirname "$0")/.."
CLONE=${1:?usage: $0 CLONE run|publish [args]}
ACTION=${2:?usage: $0 CLONE run|publish [args]}
shift 2
[ -f "$CLONE/virnucpro/__main__.py" ] || { echo "fork_bench: $CLONE is no clone of the VirNucPro fork" >&2; exit 2; }
PY=${VNP_BENCH_PYTHON:-.venv/bin/python}
command -v "$PY" >/dev/null || { echo "fork_bench: no Python at $PY: run scripts/setup.sh first" >&2; exit 2; }
export VNP_BENCH_SCALE=${VNP_BENCH_SCALE:-gpu} VNP_PEER_FORK=$(realpath "$CLONE")

# asv works in its configuration's directory: a generated configuration (ignored by git) beside this one.
conf=.asv/fork.conf.json
mkdir -p .asv
"$PY" - "$VNP_PEER_FORK" "$conf" <<'PYTHON'
import json, sys
from pathlib import Path
clone, conf = sys.argv[1:]
config = json.loads(Path("asv.conf.json").read_text())
pth = "import sys, sysconfig, pathlib; p = pathlib.Path(sysconfig.get_paths()['purelib'], 'virnucpro-source.pth'); "
config.update(
    project="virnucpro-broad", repo=clone, branches=["main"], benchmark_dir=str(Path("benchmarks").resolve()),
    env_dir=str(Path(".asv/env-fork").resolve()), results_dir=str(Path("results-fork").resolve()),
    html_dir=str(Path("html/fork").resolve()), plugins=[".asv_plugins.sysvenv"],
    matrix={"env_nobuild": {"VNP_BENCH_SCALE": ["ci", "gpu", "full"], "VNP_BENCH_TARGET": ["fork"]}},
    build_command=[],  # nothing to build: the checkout itself goes on the path
    install_command=[f"in-dir={{env_dir}} python -c \"{pth}p.write_text(sys.argv[1] + chr(10))\" {{build_dir}}"],
    uninstall_command=[f"return-code=any python -c \"{pth}p.unlink(missing_ok=True)\""],
)
Path(conf).write_text(json.dumps(config, indent=1))
PYTHON
ln -sfn ../asv_plugins .asv/asv_plugins
ln -sfn ../pyproject.toml .asv/pyproject.toml
asv=("$PY" -m asv --config "$conf")
case "$ACTION" in
  run)
    "$PY" -m benchmarks.harness.host --write
    machine=$("$PY" -m benchmarks.harness.host --name)
    env_name="sysvenv-py$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-VNP_BENCH_SCALE${VNP_BENCH_SCALE}-VNP_BENCH_TARGETfork"
    launch=spawn
    [ "$VNP_BENCH_SCALE" = ci ] && launch=forkserver
    "${asv[@]}" run --machine "$machine" -E "$env_name" --launch-method "$launch" "$@"
    ;;
  publish)
    "${asv[@]}" publish
    "$PY" scripts/dashboard.py localize html/fork
    echo "fork_bench: the fork's dashboard in $(pwd)/html/fork/index.html"
    ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac
