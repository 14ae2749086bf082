#!/usr/bin/env bash
# Benchmarks on an offline GPU host whose system Python has torch and CUDA (recipe: scripts/gpu_host.md).
#
#   scripts/gpu_host.sh wheelhouse              # where pip and npm work: wheels of what the host lacks, and the
#                                               # dashboard's npm packages, into .whl/ (and .whl/npm/)
#   scripts/gpu_host.sh setup                   # on the host: .asv/bench-venv (system site-packages + wheels)
#   scripts/gpu_host.sh run [gpu|full] [ARGS]   # asv run at that scale (default gpu) on HEAD, then publish
#   scripts/gpu_host.sh gate BASE [HEAD] [ARGS] # scripts/gate.sh at the gpu scale: exit 1 if HEAD is slower
#   scripts/gpu_host.sh publish                 # rebuild html/ from results/
#
# Environment: VNP_WHEELHOUSE (default .whl), VNP_HOST_PYTHON (the host's Python with torch, default
# python3), VNP_HOST_PY_VERSION and VNP_HOST_PLATFORM (for `wheelhouse` on another machine, e.g. 3.12 and
# manylinux2014_x86_64), VNP_BENCH_MACHINE (asv machine name, default the short host name),
# VNP_BENCH_COMMITS (asv range for `run`, default HEAD^!).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${VNP_WHEELHOUSE:-.whl}
VENV=.asv/bench-venv  # under .asv/, which git ignores
HOST_PYTHON=${VNP_HOST_PYTHON:-python3}
# What the harness needs on top of torch/numpy: asv and its runner, the samplers, the datasets and vnp's own
# pure-Python dependencies, and scipy for the projection the suites track; pip adds their dependencies.
# fair-esm: the weights kit takes ESM-2's names and shapes from it (benchmarks/harness/weights_kit.py).
PACKAGES=(asv==0.6.6 asv-runner==0.3.2 pympler build setuptools wheel packaging pyproject_hooks
          psutil nvidia-ml-py biopython tokenizers safetensors tqdm scipy fair-esm==2.0.0)

bench_env() {  # offline pip for asv's per-commit environments, the bench venv's Python for everything
  export PIP_NO_INDEX=1 PIP_FIND_LINKS=$(realpath "$WHEELS")
  export VNP_BENCH_PYTHON=$VENV/bin/python VNP_BENCH_MACHINE=${VNP_BENCH_MACHINE:-$(hostname -s)}
  export VNP_DASHBOARD_VENDOR=$(realpath "$WHEELS")/npm  # the dashboard's npm packages, carried offline
  [ -x "$VNP_BENCH_PYTHON" ] || { echo "gpu_host: run '$0 setup' first" >&2; exit 1; }
}

case "${1:-}" in
  wheelhouse)
    mkdir -p "$WHEELS"
    target=()
    [ -n "${VNP_HOST_PY_VERSION:-}" ] && target+=(--python-version "$VNP_HOST_PY_VERSION")
    [ -n "${VNP_HOST_PLATFORM:-}" ] && target+=(--platform "$VNP_HOST_PLATFORM")
    "$HOST_PYTHON" -m pip download --only-binary=:all: -d "$WHEELS" "${target[@]}" "${PACKAGES[@]}"
    "$HOST_PYTHON" scripts/dashboard.py fetch "$WHEELS/npm"  # the dashboard's scripts and styles, offline
    echo "gpu_host: $(ls "$WHEELS" | wc -l) wheels in $WHEELS; carry them to the GPU host with the repository"
    ;;
  setup)
    "$HOST_PYTHON" -c "import torch; print(f'gpu_host: torch {torch.__version__}, CUDA {torch.version.cuda}')"
    if [ ! -x "$VENV/bin/python" ]; then
      # Without ensurepip (Debian's python3 without python3-venv) the venv uses the system's pip.
      if "$HOST_PYTHON" -c "import ensurepip" 2>/dev/null; then pip_opt=(); else pip_opt=(--without-pip); fi
      "$HOST_PYTHON" -m venv --system-site-packages "${pip_opt[@]}" "$VENV"
      # A host Python that is itself a venv (the H200 image's /opt/torch/.venv) keeps torch in *its*
      # site-packages, which --system-site-packages does not reach: add them to the path explicitly.
      "$HOST_PYTHON" -c "import site, sys; sys.prefix != sys.base_prefix and print(*site.getsitepackages(), sep=chr(10))" \
        > "$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_host_site.pth"
    fi
    "$VENV/bin/python" -m pip install --no-index --find-links "$WHEELS" "${PACKAGES[@]}"
    # The working tree's vnp, editable, for what runs outside asv (scripts.requirement, measure_models): asv's
    # own environments install each commit's vnp and do not see this one (asv_plugins/sysvenv.py).
    "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation --no-index -e .
    "$VENV/bin/python" -c "import asv, asv_runner, torch, psutil, pynvml, Bio, vnp; print('gpu_host: bench venv ready')"
    ;;
  run)
    bench_env
    scale=${2:-gpu}
    shift $(( $# < 2 ? $# : 2 ))
    VNP_BENCH_SCALE=$scale scripts/bench.sh "$@"
    ;;
  gate)
    bench_env
    base=${2:?usage: $0 gate BASE [HEAD] [asv continuous args]}
    head=${3:-HEAD}
    shift $(( $# < 3 ? $# : 3 ))
    VNP_BENCH_SCALE=gpu scripts/gate.sh "$base" "$head" "$@"
    ;;
  publish)
    bench_env
    "$VNP_BENCH_PYTHON" -m asv publish
    "$VNP_BENCH_PYTHON" scripts/dashboard.py localize html
    ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
