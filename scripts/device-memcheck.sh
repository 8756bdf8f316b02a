#!/usr/bin/env bash
# Every check case under compute-sanitizer (memcheck by default), sharded over parallel processes,
# on the GPU machine (the `device` tool), from the repository root with .device carried:
#   TOOL=memcheck SHARDS=16 TIMEOUT=400 bash scripts/device-memcheck.sh [check arguments, e.g. --filter mask]
# A sanitizer error aborts its kernel and leaves the context unusable, so a shard's later cases then
# fail too: read the first error of each shard. A shard cut off by TIMEOUT reports no count (the
# sanitizer slows each kernel 10–100×; the cases it reached are in its file).
# Writes $OUT/sanitizer.txt (per-shard counts, error summaries and each shard's first error) and
# $OUT/sanitizer.tgz (every shard's whole output).
set -uo pipefail
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
W=$(mktemp -d)
dir=${DEVICE_DIR:-.device}
tool=${TOOL:-memcheck}
n=${SHARDS:-16}
seed=${CHECK_SEED:-$(date +%s)}
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
R=$OUT/sanitizer.txt
echo "compute-sanitizer --tool $tool at $(cat $dir/commit.txt 2>/dev/null): $n shards, seed $seed, check $*" | tee "$R"
pids=()
for i in $(seq 0 $((n - 1))); do
  timeout -s KILL ${TIMEOUT:-400} compute-sanitizer --tool "$tool" --print-limit 20 \
    $dir/flashinfer check --verbose --seed "$seed" --shard "$i/$n" "$@" > "$W/shard-$i.txt" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for i in $(seq 0 $((n - 1))); do
  f=$W/shard-$i.txt
  counts=$(grep -E "^[0-9]+ passed, [0-9]+ failed$" "$f" || echo "cut off after $(grep -cE '^(ok|PASS|FAIL)' "$f") reported cases")
  echo "shard $i: $counts; $(grep -m1 'ERROR SUMMARY' "$f" || echo 'no error summary')" | tee -a "$R"
  if grep -q "^=========  *\(Invalid\|Race\|Uninitialized\|Program hit\)" "$f"; then
    grep -m1 -B1 -A8 "^=========  *\(Invalid\|Race\|Uninitialized\|Program hit\)" "$f" | sed 's/^/    /' >> "$R"
    grep -m3 "^FAIL" "$f" | sed 's/^/    /' >> "$R"
  fi
done
tar czf "$OUT/sanitizer.tgz" -C "$W" .
