#!/usr/bin/env bash
# Create .venv with a CPU build of torch and vnp installed editable with its test, benchmark and workflow extras.
# Idempotent: a second run only checks. GPU hosts keep their own CUDA torch (see scripts/gpu_host.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${VNP_TORCH_VERSION:-2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # "torch==X" matches both PyPI's CUDA build and the CPU index's "X+cpu"; pip prefers the local
  # "+cpu" version, so CI never downloads the multi-GB CUDA wheels.
  .venv/bin/pip install --quiet --retries 1 --timeout 30 \
    --extra-index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
fi
.venv/bin/pip install --quiet -e ".[test,workflow]"
# The dashboard's scripts and styles (jQuery, flot, Bootstrap) as npm packages, so html/ opens offline.
.venv/bin/python scripts/dashboard.py fetch || echo "setup: no npm packages for the dashboard (needs npm)" >&2
.venv/bin/python -c "import torch, vnp; print(f'vnp {vnp.__version__}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
