#!/usr/bin/env bash
# Everything waiting for the GPU in one device call (issues 13 and 15), from the repository root,
# with .device (binary, library, commit.txt), .whl (the wheel) and optionally .device-ln (a second
# binary, e.g. a kernel branch to compare) carried:
#   bash scripts/device-pending.sh
# 1. the Python package on CUDA tensors: python/tests/test_cuda.py, the overhead study, the
#    allocation counts and perf (scripts/device-python-overhead.sh) -> $OUT/python.txt;
# 2. every check case (scripts/device-suite.sh check: 16 shards; the chi-square lines carry their
#    draws, statistic, dof and p-value) -> $OUT/check/;
# 3. bench norm and bench activation (with the floor row: an empty kernel of the op's grid) at
#    256, 1024 and 4096 rows, and bench sampling (S1) -> $OUT/*.json, $OUT/bench.txt;
# 4. with .device-ln/flashinfer: its `check --filter norm` and `bench norm` at the same rows, right
#    after the main binary's, for an A/B on the same card -> $OUT/ln-*.
# Each step has its own timeout so the whole fits the device tool's 600 s limit; what finished
# comes back even when a later step is cut short.
set -uo pipefail
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
dir=${DEVICE_DIR:-.device}
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
t0=$SECONDS
step() { echo "== [$((SECONDS - t0)) s] $*"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader > "$OUT/gpu.txt" 2>&1
step "python (test_cuda.py, overhead, allocations, perf)"
OUT=$OUT timeout -s KILL 200 bash scripts/device-python-overhead.sh > "$OUT/python.txt" 2>&1
grep -E "passed|failed|error" "$OUT/python.txt" | head -5
step "check (every case)"
CHECK_ARGS="" OUT=$OUT/check timeout -s KILL 240 bash scripts/device-suite.sh check > "$OUT/check-log.txt" 2>&1
tail -3 "$OUT/check-log.txt"
step "bench norm / activation / sampling"
{
  timeout 60 $dir/flashinfer bench norm --batch 256,1024,4096 --json "$OUT/norm.json"
  timeout 60 $dir/flashinfer bench activation --batch 256,1024,4096 --json "$OUT/activation.json"
  timeout 60 $dir/flashinfer bench sampling --json "$OUT/sampling.json"
} > "$OUT/bench.txt" 2>&1
if [ -x .device-ln/flashinfer ]; then
  step "second binary .device-ln ($(cat .device-ln/commit.txt 2>/dev/null)): check --filter norm, bench norm"
  timeout 90 .device-ln/flashinfer check --filter norm > "$OUT/ln-check.txt" 2>&1
  tail -1 "$OUT/ln-check.txt"
  FLASHINFER_COMMIT=$(cat .device-ln/commit.txt 2>/dev/null) timeout 60 .device-ln/flashinfer bench norm --batch 256,1024,4096 \
    --json "$OUT/ln-norm.json" > "$OUT/ln-bench.txt" 2>&1
  timeout 60 $dir/flashinfer bench norm --batch 256,1024,4096 --json "$OUT/norm-again.json" > "$OUT/bench-again.txt" 2>&1
fi
step "done"
