#!/usr/bin/env bash
# One device call for the batch-decode work: checks (decode incl. batch, append, merge), benches
# (D1–D4, D6, J1) and the demo. Logs and JSON under $OUT.
set -uo pipefail
OUT=${OUT:-./device-out}; mkdir -p "$OUT"
dir=${DEVICE_DIR:-.device}; bin=$dir/flashinfer
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=/tmp/flashinfer-cache
rc=0
run() { echo "== $*"; "$@" || { echo "!! exit $?: $*"; rc=1; }; }
{
run $bin check --filter decode --seed 11
run $bin check --filter append --seed 12
run $bin check --filter merge --seed 13
run $bin bench batch-decode --json "$OUT/batch-decode.json"
run $bin bench single-decode --json "$OUT/d6.json"
run $bin bench jit --json "$OUT/jit.json"
run $bin demo
} 2>&1 | tee "$OUT/log.txt" | grep -v "^ok "
exit $rc
