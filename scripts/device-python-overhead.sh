#!/usr/bin/env bash
# Issue 15's overhead study, on the GPU machine (the `device` tool), from the repository root, with
# .device (the library, optionally an unstripped copy for perf) and .whl carried:
#   bash scripts/device-python-overhead.sh
# 1. installs the wheel (no network) and runs the pytest suite, python/tests (test_cuda.py against
#    float64 references on the GPU), failures listed (-rf);
# 2. host µs per BatchDecodeWithPagedKVCacheWrapper.run() in a 32-layer loop
#    (python/tests/overhead_batch_decode.py) pinned to cores 0, 8 and 12 and in UNPINNED_RUNS
#    unpinned processes (default 7): the spread is process to process on that machine;
# 3. the Python side piece by piece (python/tests/overhead_breakdown.py), with the heap allocations
#    per run() counted by scripts/malloccount.c (built here with cc) under LD_PRELOAD;
# 4. `perf record` of the 32-layer loop when the machine has perf, on
#    .device/libflashinfer_swift.unstripped.so when present (symbols), else the stripped library;
# 5. the Swift side for comparison: `flashinfer bench decode-step --batch 1` pinned to cores 0 and 8.
# Everything goes to stdout (and $OUT/*.json for decode-step).
# Environment: PARTS (default "pytest overhead breakdown perf swift": which of 1–5 to run), CORES
# (the pinned cores of 2, default "0 8 12"), UNPINNED_RUNS (7), SWIFT_CORES (the cores of 5, "0 8").
set -uo pipefail
dir=${DEVICE_DIR:-.device}
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
export FLASHINFER_SWIFT_LIB=$PWD/$dir/libflashinfer_swift.so
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
parts=" ${PARTS:-pytest overhead breakdown perf swift} "
part() { case "$parts" in *" $1 "*) return 0;; esac; return 1; }
echo "== python overhead study at $FLASHINFER_COMMIT ($parts)"
if part pytest; then
pip install -q --no-index --no-deps --force-reinstall .whl/*.whl 2>&1 | grep -v WARN | tail -2
echo "== pytest python/tests (test_cuda.py on the GPU, the rest on CPU tensors and the null driver)"
timeout ${PYTEST_TIMEOUT:-240} python3 -m pytest -q -rf python/tests 2>&1 | tail -15
fi
if part overhead; then
echo "== host us per run(), 32 layers, out= given (median step)"
for c in ${CORES:-0 8 12}; do
  echo "core $c:"
  timeout 40 taskset -c $c python3 python/tests/overhead_batch_decode.py 2>&1 | grep "out= given" | sed -E 's/.*(B=[0-9]+).*host /  \1 /'
done
for r in $(seq 1 ${UNPINNED_RUNS:-7}); do
  timeout 40 python3 python/tests/overhead_batch_decode.py 2>&1 | grep "B=1 .*out= given" | sed -E 's/.*host /unpinned: /'
done
fi
if part breakdown; then
mc=/tmp/libmalloccount.so
cc -O2 -shared -fPIC -o $mc scripts/malloccount.c 2>/dev/null || mc=$PWD/$dir/tools/libmalloccount.so
for c in 0 8; do
  echo "== breakdown, core $c"
  LD_PRELOAD=$mc timeout 90 taskset -c $c python3 python/tests/overhead_breakdown.py 2>&1 | tail -22
done
fi
if ! part perf; then
  :
elif command -v perf > /dev/null; then
  lib=$PWD/$dir/libflashinfer_swift.unstripped.so
  [ -f "$lib" ] || lib=$FLASHINFER_SWIFT_LIB
  echo "== perf (core 8, $lib)"
  FLASHINFER_SWIFT_LIB=$lib timeout 90 perf record -F 25000 -g -o /tmp/perf.data -- taskset -c 8 python3 python/tests/overhead_batch_decode.py > /dev/null 2>&1
  perf report -i /tmp/perf.data --stdio --no-children --sort dso,symbol 2>/dev/null | grep -E "^ +[0-9]" | head -60
  perf report -i /tmp/perf.data --stdio --no-children --sort dso 2>/dev/null | grep -E "^ +[0-9]" | head -15
else
  echo "== perf: not on this machine"
fi
if part swift; then
echo "== Swift: bench decode-step --batch 1"
for c in ${SWIFT_CORES:-0 8}; do
  timeout 90 taskset -c $c $dir/flashinfer bench decode-step --batch 1 --json "$OUT/decode-step-core$c.json" 2>&1 | tail -3
done
fi
