#!/usr/bin/env bash
# The GPU measurements issues 20 and 21 ask for, most needed first, on one GPU host already set up by
# `scripts/gpu_host.sh setup` (with the git history of the commit to measure): VirNucPro beside vnp, the fork's own
# history, then the regression gate's proof (an empty commit must pass, a commit whose ESM-2 stage sleeps 30% of its
# own time must fail naming ESM-2: each twice). Each step logs to LOGS/<step>.log, the progress to LOGS/steps.log;
# a step that fails does not stop the next. Start it with `setsid nohup` where a command may run only minutes.
#
#   scripts/gpu_proof.sh PEERS LOGS [STEP ...]   # PEERS: as for scripts/peers.sh setup; STEP: only these (names below)
set -u
cd "$(dirname "$0")/.."
PEERS=${1:?usage: $0 PEERS LOGS [STEP ...]}
LOGS=${2:?usage: $0 PEERS LOGS [STEP ...]}
shift 2
mkdir -p "$LOGS"
PY=${VNP_BENCH_PYTHON:-.asv/bench-venv/bin/python}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
case "$gpu" in *H200*) export VNP_BENCH_MACHINE=${VNP_BENCH_MACHINE:-h200x1} ;; *) export VNP_BENCH_MACHINE=${VNP_BENCH_MACHINE:-h100x1} ;; esac
export PYTHONUNBUFFERED=1
log() { echo "$(date -u +%H:%M:%S) $*" >> "$LOGS/steps.log"; }
step() {  # NAME COMMAND...: run it unless STEPs were named and NAME is not one of them
  local name=$1 t0=$SECONDS
  shift
  if [ -n "$WANTED" ] && [[ " $WANTED " != *" $name "* ]]; then return; fi
  log "start $name"
  { echo "\$ $*"; uptime; } > "$LOGS/$name.log"
  "$@" >> "$LOGS/$name.log" 2>&1
  local rc=$?
  uptime >> "$LOGS/$name.log"
  log "end $name rc=$rc $((SECONDS - t0)) s"
}
WANTED="$*"
log "machine $VNP_BENCH_MACHINE ($gpu), commit $(git rev-parse --short HEAD)"

# The gate's two commits on top of HEAD: an empty one, and one whose ESM-2 stage sleeps 30% of its own time.
gate_commits() {
  local who=(-c user.email=gate@vnp-bench -c user.name=gate) work
  git "${who[@]}" branch -f gate-noop "$(git "${who[@]}" commit-tree 'HEAD^{tree}' -p HEAD -m 'empty commit')" || return 1
  work=$(mktemp -d)
  git worktree add -q --detach "$work" HEAD || return 1
  "$PY" -c "import sys; from pathlib import Path; sys.path.insert(0, '.');
from tests.test_gate import plant_esm2_sleep; plant_esm2_sleep(Path(sys.argv[1]), 0.3)" "$work" || return 1
  git -C "$work" "${who[@]}" commit -qam 'planted: the ESM-2 stage sleeps 30% of its own time' || return 1
  git branch -f gate-slow "$(git -C "$work" rev-parse HEAD)" && git worktree remove --force "$work" &&
    git branch -f gate-base HEAD
}

# Issue 20: VirNucPro itself beside vnp: one weights kit, the same card, the typical reads.
step peers env VNP_BENCH_PYTHON=$PY bash scripts/peers.sh setup "$PEERS"
step kit "$PY" -m scripts.peer_weights data/cache/peers/kit-full-s0 --size full --dnabert-code .peers/dnabert-s-code
step side-by-side scripts/gpu_host.sh run gpu -b "^virnucpro\.\w+\.\w+\('(original|vnp|vnp-fp32)', 'typical'\)"
git -C .peers/fork rev-parse 'v2.0^{commit}' 3098b10 > "$LOGS/fork-commits.txt" 2>/dev/null
# (the fork loads ESM-2 3B on the CPU first, about a minute: no warm-up run on a card warm from the steps above)
step fork-history env VNP_BENCH_WARMUP=none VNP_BENCH_PYTHON=$PY PIP_NO_INDEX=1 PIP_FIND_LINKS="$(realpath .whl)" \
  bash scripts/fork_bench.sh .peers/fork run -b "^end_to_end\.EndToEnd\.\w+\('typical', 1\)" "HASHFILE:$LOGS/fork-commits.txt"
step fork-paths scripts/gpu_host.sh run gpu -b "^virnucpro\.\w+\.\w+\('(fork-flash|fork-parallel|fork)', 'typical'\)"

# Issue 21: the gate, each verdict twice; the typical run's figures only (one run per commit and round).
step gate-commits gate_commits
[ -z "$WANTED" ] || [[ " $WANTED " != *" gate-"* ]] || git rev-parse -q --verify gate-slow >/dev/null ||
  { log "no gate commits: run the gate-commits step"; exit 1; }
SEL="^(end_to_end\.EndToEnd\.|stages\.StageSeconds\.)\w+\('typical', 1"
step gate-empty-1 scripts/gpu_host.sh gate gate-base gate-noop -b "$SEL"
step gate-slow-1 scripts/gpu_host.sh gate gate-base gate-slow -b "$SEL"
step gate-empty-2 scripts/gpu_host.sh gate gate-noop gate-base -b "$SEL"
step gate-slow-2 scripts/gpu_host.sh gate gate-base gate-slow -b "$SEL"
log "done"
