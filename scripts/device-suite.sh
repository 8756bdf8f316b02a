#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from the repository root, with .device carried:
#   bash scripts/device-suite.sh MODE
# MODE: all (info, every check, every bench), ab (bench, base binary against new: see below), check (every check, in CHECK_SHARDS=16 parallel
#       processes: the CPU reference is single-threaded; per-case lines go to $OUT/check.txt), bench,
#       batch (decode/append/merge checks, D1–D4, D6, J1, demo),
#       cascade (merge/cascade/batch checks, C1, demo),
#       stress (the full check under contention, STRESS_ROUNDS rounds, default 5; `all` runs 2: see
#       stress_round below).
# Environment: DEVICE_DIR (default .device: the binary under test), NOISE_BIN (the binary that makes
# the noise, default the one under test: an old binary without --noise gets the new one's noise),
# CHECK_ARGS (extra arguments for `check` in MODE check/all, e.g. "--exclude hopper"), STRESS_ROUNDS (5), STRESS_SECONDS (stop starting rounds after this many seconds, default 480),
# STRESS_CHECK_ARGS (extra arguments for each shard, e.g. "--threads 2"), API_LOOPS (6).
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
# One stress round: at once, CHECK_SHARDS `check --shard i/N` processes (every case once), API_LOOPS
# processes re-running the public-API cases (`--filter api`, new seeds) until the shards finish, and
# one noise process (NOISE_BIN check --noise: pageable uploads, 256 MiB device copies and readbacks
# on its own stream, plus axpby cases on 2 threads). Prints one line per round with the counts.
stress_round() {
  local r=$1 n=${CHECK_SHARDS:-16} seed=$((${CHECK_SEED:-$(date +%s)} + 1000 * $1)) pids=() loops=() f=$FINAL_OUT/stress-r$1
  mkdir -p "$f"
  ${NOISE_BIN:-$bin} check --filter axpby --noise --threads 2 --rounds 1000000 --seed "$seed" > "$f/noise.txt" 2>&1 &
  local noise=$!
  for i in $(seq 1 ${API_LOOPS:-6}); do
    ( k=0; while [ ! -f "$f/stop" ]; do $bin check --filter " api" --seed $((seed + 7919 * i + k)) >> "$f/api-$i.txt" 2>&1; k=$((k + 1)); done ) &
    loops+=($!)
  done
  for i in $(seq 0 $((n - 1))); do
    $bin check --seed "$seed" --shard "$i/$n" ${STRESS_CHECK_ARGS:-} > "$f/shard-$i.txt" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  touch "$f/stop"
  for p in "${loops[@]}"; do wait "$p"; done
  kill "$noise" 2>/dev/null
  wait "$noise" 2>/dev/null
  local sp=$(cat "$f"/shard-*.txt | grep -E "^[0-9]+ passed, [0-9]+ failed$" | awk '{s += $1} END {print s + 0}')
  local sf=$(cat "$f"/shard-*.txt | grep -E "^[0-9]+ passed, [0-9]+ failed$" | awk '{s += $3} END {print s + 0}')
  local sd=$(cat "$f"/shard-*.txt | grep -cE "^[0-9]+ passed, [0-9]+ failed$")
  local ap=$(cat "$f"/api-*.txt | grep -E "^[0-9]+ passed, [0-9]+ failed$" | awk '{s += $1} END {print s + 0}')
  local af=$(cat "$f"/api-*.txt | grep -E "^[0-9]+ passed, [0-9]+ failed$" | awk '{s += $3} END {print s + 0}')
  echo "stress round $r ($(cat $dir/commit.txt 2>/dev/null), seed $seed): check $sp passed, $sf failed ($sd of $n shards finished); api loops $ap passed, $af failed; $(grep -h "^noise:" "$f/noise.txt" || echo "noise: (killed)")"
  cat "$f"/shard-*.txt "$f"/api-*.txt | grep -E "^FAIL|error:" | sort | uniq -c | head -20
  STRESS_FAILED=$((STRESS_FAILED + sf + af))
  [ "$sd" = "$n" ] || STRESS_FAILED=$((STRESS_FAILED + 1))
  tar czf "$FINAL_OUT/stress-logs.tgz" -C "$FINAL_OUT" $(cd "$FINAL_OUT" && ls -d stress-r*) 2>/dev/null
}
stress() {
  STRESS_FAILED=0
  local t0=$SECONDS last=0 r
  for r in $(seq 1 ${STRESS_ROUNDS:-5}); do
    if [ $r -gt 1 ] && [ $((SECONDS - t0 + last)) -gt ${STRESS_SECONDS:-480} ]; then
      echo "stress: stopping after $((r - 1)) rounds (time budget ${STRESS_SECONDS:-480} s)"; break
    fi
    local t1=$SECONDS
    stress_round $r
    last=$((SECONDS - t1))
    echo "   (round $r: $last s)"
  done
  rm -rf "$FINAL_OUT"/stress-r*
  echo "stress total failures: $STRESS_FAILED"
  [ "$STRESS_FAILED" = 0 ]
}
# Every benchmark workload (D1–D4 both decode paths, D6, P1–P4, C1, copy, jit) with binary $1,
# JSON files into $2.
bench_set() {
  local b=$1 o=$2
  mkdir -p "$o"
  run $b bench copy --json "$o/copy.json"
  run $b bench jit --json "$o/jit.json"
  run $b bench single-decode --json "$o/d6.json"
  run $b bench single-prefill --workload P1 --json "$o/p1.json"
  run $b bench single-prefill --workload P2 --json "$o/p2.json"
  run $b bench batch-decode --json "$o/batch-decode.json"
  run $b bench batch-decode --tensor-cores --json "$o/batch-decode-tc.json"
  run $b bench batch-prefill --workload P3 --json "$o/p3.json"
  run $b bench batch-prefill --workload P3 --ragged --json "$o/p3-ragged.json"
  run $b bench batch-prefill --workload P4 --json "$o/p4.json"
  run $b bench cascade --json "$o/c1.json"
}
{
case "$mode" in
  all|check|bench|ab) run $bin info ;;
esac
case "$mode" in
  all|check) run check_sharded ${CHECK_ARGS:-} ;;
esac
case "$mode" in
  stress) run stress ;;
  all) STRESS_ROUNDS=${STRESS_ROUNDS:-2} run stress ;;  # 2 rounds keep `all` inside a 10-minute call
esac
case "$mode" in
  all|bench) bench_set "$bin" "$OUT" ;;
  ab)
    # Back-to-back comparison: the base binary (BASE_DIR, default .device-base) and the one under
    # test take turns, AB_ROUNDS times (default 2); each timing's best median is compared.
    base=${BASE_DIR:-.device-base}
    echo "ab: base $(cat $base/commit.txt 2>/dev/null) vs new $(cat $dir/commit.txt 2>/dev/null)"
    for r in $(seq 1 ${AB_ROUNDS:-2}); do
      FLASHINFER_COMMIT=$(cat $base/commit.txt 2>/dev/null || echo unknown) bench_set "$base/flashinfer" "$OUT/base/r$r"
      bench_set "$bin" "$OUT/new/r$r"
    done
    run python3 scripts/bench-compare.py "$OUT/base" "$OUT/new" --limit ${AB_LIMIT:-3} --json "$OUT/compare.json" ;;
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
