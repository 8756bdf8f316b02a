#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from the repository root, with .device carried:
#   bash scripts/device-suite.sh MODE
# MODE: all (info, every check, every bench), check (every check, in CHECK_SHARDS=16 parallel
#       processes: the CPU reference is single-threaded; per-case lines go to $OUT/check.txt), bench,
#       batch (decode/append/merge checks, D1–D4, D6, J1, demo),
#       cascade (merge/cascade/batch checks, C1, demo).
# Writes $OUT/log.txt and $OUT/results.tgz (every JSON result; ./device-out when OUT is unset),
# refreshed after each step so that a run cut short still brings back what finished. Two files,
# because the device tool brings back at most 8. Unpack with: tar xzf results.tgz
set -uo pipefail
FINAL_OUT=${OUT:-./device-out}
mkdir -p "$FINAL_OUT"
OUT=$(mktemp -d)  # the JSON files; packed into $FINAL_OUT/results.tgz
dir=${DEVICE_DIR:-.device}
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
bin=$dir/flashinfer
mode=${1:-all}
rc=0
run() {
  echo "== $*"
  local t0=$SECONDS
  "$@" || { echo "!! exit $?: $*"; rc=1; }
  echo "   ($((SECONDS - t0)) s)"
  tar czf "$FINAL_OUT/results.tgz" -C "$OUT" .
}
# Every check case, sharded over CHECK_SHARDS processes (one seed); prints the summed counts.
check_sharded() {
  local n=${CHECK_SHARDS:-16} seed=${CHECK_SEED:-$(date +%s)} pids=() failed=0 passed=0 f
  echo "check: $n shards, seed $seed; per-case lines in check.txt"
  : > "$FINAL_OUT/check.txt"
  for i in $(seq 0 $((n - 1))); do
    $bin check --verbose --seed "$seed" --shard "$i/$n" "$@" >> "$FINAL_OUT/check.txt" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  grep -E "^FAIL|error" "$FINAL_OUT/check.txt"
  passed=$(grep -E "^[0-9]+ passed, [0-9]+ failed$" "$FINAL_OUT/check.txt" | awk '{s += $1} END {print s + 0}')
  failed=$(grep -E "^[0-9]+ passed, [0-9]+ failed$" "$FINAL_OUT/check.txt" | awk '{s += $3} END {print s + 0}')
  local done_shards=$(grep -cE "^[0-9]+ passed, [0-9]+ failed$" "$FINAL_OUT/check.txt")
  echo "check total: $passed passed, $failed failed ($done_shards of $n shards finished)"
  [ "$failed" = 0 ] && [ "$done_shards" = "$n" ]
}
{
case "$mode" in
  all|check|bench) run $bin info ;;
esac
case "$mode" in
  all|check) run check_sharded ;;
esac
case "$mode" in
  all|bench)
    run $bin bench copy --json "$OUT/copy.json"
    run $bin bench jit --json "$OUT/jit.json"
    run $bin bench single-decode --json "$OUT/d6.json"
    run $bin bench single-prefill --workload P1 --json "$OUT/p1.json"
    run $bin bench single-prefill --workload P2 --json "$OUT/p2.json"
    run $bin bench batch-decode --json "$OUT/batch-decode.json"
    run $bin bench batch-decode --tensor-cores --json "$OUT/batch-decode-tc.json"
    run $bin bench batch-prefill --workload P3 --json "$OUT/p3.json"
    run $bin bench batch-prefill --workload P3 --ragged --json "$OUT/p3-ragged.json"
    run $bin bench batch-prefill --workload P4 --json "$OUT/p4.json"
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
} 2>&1 | tee "$FINAL_OUT/log.txt" | grep -v "^ok "
exit $rc
