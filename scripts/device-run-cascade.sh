#!/usr/bin/env bash
# One device call: merge fix, cascade checks and C1, batch regressions, demo. Logs/JSON under $OUT.
set -uo pipefail
OUT=${OUT:-./device-out}; mkdir -p "$OUT"
dir=${DEVICE_DIR:-.device}; bin=$dir/flashinfer
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=/tmp/flashinfer-cache
rc=0
run() { echo "== $*"; "$@" || { echo "!! exit $?: $*"; rc=1; }; }
{
run $bin check --filter merge --seed 21
run $bin check --filter cascade --seed 22
run $bin bench cascade --json "$OUT/c1.json"
run $bin check --filter batch-decode --seed 23
run $bin check --filter batch-prefill --seed 24
run $bin demo
} 2>&1 | tee "$OUT/log.txt" | grep -v "^ok "
exit $rc
