#!/usr/bin/env bash
# The one command to run on a GPU machine (A40 in production; any H100/H200 at hand):
#   bash gocram/bench/gpu_check.sh            (from the repository root, venv active or .venv present)
# It writes everything under results/gpu/ and must finish in under 8 minutes: each step has its
# own time limit, and a step that fails or runs out of time is logged and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${GPU_CHECK_OUT:-results/gpu}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
unset TRITON_INTERPRET  # the kernels must compile for the GPU here, not run in the interpreter
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device visible to torch; nothing to check (run it on a GPU machine)" >&2
  exit 3
fi

step() {  # step NAME SECONDS CMD...: run one step under its limit, record how it ended
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$LOG"
  echo "$name,$rc,$((SECONDS - t0))" >> "$OUT/steps.csv"
}

echo "step,exit,seconds" > "$OUT/steps.csv"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv \
  > "$OUT/nvidia-smi.csv" 2>&1 || true
step peak 45 "$PY" -m gocram.measure.peak --out "$OUT/peak.json"
step matrix 290 "$PY" -m gocram lab --matrix gpu-small --results "$OUT" --runs runs/gpu-check
step kernel-tests 75 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_kernels.py \
  tests/test_kernels_guards.py tests/test_kernels_training.py --junitxml "$OUT/kernel-tests.xml"
step kernel-bench 60 "$PY" -m gocram.bench.kernels --widths 768,1024,3072 --out "$OUT/kernels.csv"
echo "gpu_check: done; results are in $OUT/ (table: $OUT/gpu-small/*/table.md, log: $LOG)"
