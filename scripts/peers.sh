#!/usr/bin/env bash
# VirNucPro's own programs beside vnp (benchmarks/virnucpro.py): clones of the original and of the Broad fork, and
# the packages they need, in .peers/ (ignored by git), where the harness looks when VNP_PEER_* are unset.
#
#   scripts/peers.sh setup SOURCE       # clone both from SOURCE, install their packages (.peers/site)
#   scripts/peers.sh site               # only the packages (from PyPI, or offline from $VNP_WHEELHOUSE if it exists)
#   scripts/peers.sh wheels             # where pip works: their cp312 wheels into .whl/ for an offline GPU host
#
# SOURCE is a folder holding git bundles or clones of both (names starting virnucpro-original and virnucpro-broad)
# and a folder with DNABERT-S's model code (bert_layers.py, bert_padding.py, configuration_bert.py), copied to
# .peers/dnabert-s-code for the weights kit. The fork is checked out at VNP_PEER_FORK_REF (default: its tag
# v2.0). Its packages: scripts/peers-requirements.txt (why those versions: its comments). Environment:
# VNP_BENCH_PYTHON (the Python whose pip installs them, default .venv/bin/python), VNP_WHEELHOUSE (default .whl).
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=.peers
PY=${VNP_BENCH_PYTHON:-.venv/bin/python}
WHEELS=${VNP_WHEELHOUSE:-.whl}
REQUIREMENTS=scripts/peers-requirements.txt
fail() { echo "peers: $*" >&2; exit 2; }

site() {
  local offline=()
  [ -d "$WHEELS" ] && offline=(--no-index --find-links "$WHEELS")
  rm -rf "$PEERS/site.partial"
  # --no-deps with every package pinned: nothing of the host's (torch, numpy) is installed again beside it.
  "$PY" -m pip install --quiet --no-deps --no-compile --target "$PEERS/site.partial" "${offline[@]}" -r "$REQUIREMENTS"
  rm -rf "$PEERS/site" && mv "$PEERS/site.partial" "$PEERS/site"
  echo "peers: $(ls "$PEERS/site" | grep -c dist-info) packages in $PEERS/site"
}

clone() {  # NAME PATTERN REF: a fresh clone of SOURCE's NAME* bundle or clone
  local source
  source=$(find "$SOURCE" -maxdepth 1 -name "$2*" | head -n 1)
  [ -n "$source" ] || fail "no $2* in $SOURCE"
  rm -rf "$PEERS/$1"
  git clone --quiet "$source" "$PEERS/$1"
  [ -z "$3" ] || git -C "$PEERS/$1" -c advice.detachedHead=false checkout --quiet "$3"
  echo "peers: $PEERS/$1 at $(git -C "$PEERS/$1" describe --tags --always)"
}

case "${1:-}" in
  setup)
    SOURCE=${2:?usage: $0 setup SOURCE}
    [ -d "$SOURCE" ] || fail "$SOURCE is not a folder"
    mkdir -p "$PEERS"
    clone original virnucpro-original ""
    clone fork virnucpro-broad "${VNP_PEER_FORK_REF:-v2.0}"
    code=$(dirname "$(find "$SOURCE" -maxdepth 2 -name bert_layers.py | head -n 1)")
    [ "$code" != . ] || fail "no DNABERT-S model code (bert_layers.py) in $SOURCE"
    rm -rf "$PEERS/dnabert-s-code" && cp -r "$code" "$PEERS/dnabert-s-code"
    site
    ;;
  site)
    mkdir -p "$PEERS"
    site
    ;;
  wheels)
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$WHEELS" -r "$REQUIREMENTS"
    ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
