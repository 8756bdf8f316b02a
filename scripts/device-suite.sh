#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from the repository root, with .device carried:
#   bash scripts/device-suite.sh [check|bench|all]
# Writes logs and JSON results under $OUT (or ./device-out when OUT is unset).
set -uo pipefail
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
dir=${DEVICE_DIR:-.device}
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
bin=$dir/flashinfer
what=${1:-all}
rc=0
run() { echo "== $*"; "$@" || { echo "!! exit $?: $*"; rc=1; }; }
{
run $bin info
if [ "$what" = check ] || [ "$what" = all ]; then run $bin check; fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  run $bin bench copy --json "$OUT/copy.json"
  run $bin bench jit --json "$OUT/jit.json"
fi
} 2>&1 | tee "$OUT/log.txt"
exit $rc
