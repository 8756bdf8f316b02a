#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from the repository root, with .device carried:
#   bash scripts/device-suite.sh MODE
# MODE: all (info, every check, every bench), check, bench,
#       batch (decode/append/merge checks, D1–D4, D6, J1, demo),
#       cascade (merge/cascade/batch checks, C1, demo).
# Writes a log and JSON results under $OUT (./device-out when OUT is unset).
set -uo pipefail
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
dir=${DEVICE_DIR:-.device}
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
bin=$dir/flashinfer
mode=${1:-all}
rc=0
run() { echo "== $*"; "$@" || { echo "!! exit $?: $*"; rc=1; }; }
{
case "$mode" in
  all|check|bench) run $bin info ;;
esac
case "$mode" in
  all|check) run $bin check ;;
esac
case "$mode" in
  all|bench)
    run $bin bench copy --json "$OUT/copy.json"
    run $bin bench jit --json "$OUT/jit.json"
    run $bin bench single-decode --json "$OUT/d6.json"
    run $bin bench single-prefill --json "$OUT/p1p2.json"
    run $bin bench batch-decode --json "$OUT/batch-decode.json"
    run $bin bench batch-prefill --json "$OUT/batch-prefill.json"
    run $bin bench cascade --json "$OUT/c1.json" ;;
  batch)
    run $bin check --filter decode
    run $bin check --filter append
    run $bin check --filter merge
    run $bin bench batch-decode --json "$OUT/batch-decode.json"
    run $bin bench single-decode --json "$OUT/d6.json"
    run $bin bench jit --json "$OUT/jit.json"
    run $bin demo ;;
  cascade)
    run $bin check --filter merge
    run $bin check --filter cascade
    run $bin bench cascade --json "$OUT/c1.json"
    run $bin check --filter batch-decode
    run $bin check --filter batch-prefill
    run $bin demo ;;
esac
} 2>&1 | tee "$OUT/log.txt" | grep -v "^ok "
exit $rc
