#!/usr/bin/env bash
# What scripts/device-pending.sh does, packed into one device call for a session whose device time
# is short (a machine start plus one call): from the repository root, with .device, .whl and
# optionally .device-ln carried:
#   DEADLINE=560 bash scripts/device-compact.sh
# 1. at once: every check case (16 shards, in the background: the CPU reference is the long part)
#    and the whole pytest suite (test_cuda.py on the GPU; its results, not its timings, matter);
# 2. on the quiet machine: host µs per decode run() in a 32-layer loop (cores 0 and 8, 3 unpinned
#    processes) and the Swift decode step, core 0;
# 3. bench sampling (S1), norm and activation (256 / 1024 / 4096 rows), api;
# 4. with .device-ln: bench norm A / B / A at the same rows (no check of B: run it before merging).
# Each later step is cut to what is left of DEADLINE and skipped below 20 s (named in summary.txt).
# Results: $OUT/summary.txt, $OUT/python.txt and $OUT/results.tgz (everything, packed after each step).
set -uo pipefail
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
W=$(mktemp -d)
dir=.device
deadline=${DEADLINE:-560}
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
export FLASHINFER_SWIFT_LIB=$PWD/$dir/libflashinfer_swift.so
S=$OUT/summary.txt
say() { echo "$*" | tee -a "$S"; }
pack() { tar czf "$OUT/results.tgz" -C "$W" . ; }
left() { local l=$((deadline - SECONDS)); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 20 ] && l=0; echo $l; }
say "== device-compact at $FLASHINFER_COMMIT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>&1 | tee -a "$S" > "$W/gpu.txt"

say "== [$SECONDS s] check (16 shards, background) and pytest (foreground)"
( CHECK_ARGS="" OUT=$W/check timeout -s KILL 330 bash scripts/device-suite.sh check > "$W/check-log.txt" 2>&1 ) &
checkpid=$!
{
  pip install -q --no-index --no-deps --force-reinstall .whl/*.whl 2>&1 | grep -v WARN | tail -2
  echo "== pytest python/tests (test_cuda.py on the GPU, the rest on CPU tensors and the null driver)"
  timeout 240 python3 -m pytest -q -rf python/tests 2>&1 | tail -15
} > "$W/python.txt" 2>&1
say "pytest done at $SECONDS s:"
grep -E " passed| failed|FAILED|rror" "$W/python.txt" | head -8 | tee -a "$S"
cp "$W/python.txt" "$OUT/python.txt"
wait $checkpid
say "check done at $SECONDS s:"
grep -E "^check total|^FAIL" "$W/check-log.txt" | head -20 | tee -a "$S"
pack

t=$(left 100)
say "== [$SECONDS s] python overhead, timeout $t"
if [ "$t" -gt 0 ]; then
  {
    echo "== host us per run(), 32 layers, out= given (median step)"
    for c in 0 8; do
      echo "core $c:"
      timeout $((t / 6)) taskset -c $c python3 python/tests/overhead_batch_decode.py 2>&1 | grep "out= given" | sed -E 's/.*(B=[0-9]+).*host /  \1 /'
    done
    for r in 1 2 3; do
      timeout $((t / 8)) python3 python/tests/overhead_batch_decode.py 2>&1 | grep "B=1 .*out= given" | sed -E 's/.*host /unpinned: /'
    done
    echo "== Swift: bench decode-step --batch 1, core 0"
    timeout $((t / 4)) taskset -c 0 $dir/flashinfer bench decode-step --batch 1 --json "$W/decode-step-core0.json" 2>&1 | tail -3
  } >> "$W/python.txt" 2>&1
  cp "$W/python.txt" "$OUT/python.txt"
  grep -E "B=1|unpinned" "$W/python.txt" | head -6 | tee -a "$S"
else say "skipped: overhead"; fi
pack

t=$(left 150)
say "== [$SECONDS s] bench sampling / norm / activation / api, timeout $t"
if [ "$t" -gt 0 ]; then
  {
    timeout $((t * 3 / 10)) $dir/flashinfer bench sampling --json "$W/sampling.json"
    timeout $((t * 3 / 10)) $dir/flashinfer bench norm --batch 256,1024,4096 --json "$W/norm.json"
    timeout $((t * 2 / 10)) $dir/flashinfer bench activation --batch 256,1024,4096 --json "$W/activation.json"
    timeout $((t * 2 / 10)) $dir/flashinfer bench api --json "$W/api.json"
  } > "$W/bench.txt" 2>&1
  cp "$W/bench.txt" "$OUT/bench.txt"
else say "skipped: bench"; fi
pack

t=$(left 120)
if [ -x .device-ln/flashinfer ]; then
  say "== [$SECONDS s] .device-ln ($(cat .device-ln/commit.txt 2>/dev/null)) bench norm A/B/A, timeout $t"
  if [ "$t" -gt 0 ]; then
    timeout $((t / 3)) $dir/flashinfer bench norm --batch 256,1024,4096 --json "$W/norm-a1.json" > "$W/ln-bench.txt" 2>&1
    FLASHINFER_COMMIT=$(cat .device-ln/commit.txt 2>/dev/null) timeout $((t / 3)) .device-ln/flashinfer bench norm --batch 256,1024,4096 \
      --json "$W/ln-norm.json" >> "$W/ln-bench.txt" 2>&1
    timeout $((t / 3)) $dir/flashinfer bench norm --batch 256,1024,4096 --json "$W/norm-a2.json" >> "$W/ln-bench.txt" 2>&1
    cp "$W/ln-bench.txt" "$OUT/ln-bench.txt"
  else say "skipped: ln"; fi
fi
say "== [$SECONDS s] done"
pack
