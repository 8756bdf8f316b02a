#!/usr/bin/env bash
# Everything waiting for the GPU (issues 13 and 15), in as few device calls as the 600 s limit
# allows, from the repository root, with .device (binary, library, commit.txt), .whl (the wheel)
# and optionally .device-ln (a second binary, e.g. a kernel branch to compare) carried:
#   bash scripts/device-pending.sh [STEPS]      STEPS: default "python check bench ln"
# Steps:
#   python  the Python package on CUDA tensors: python/tests/test_cuda.py, the overhead study, the
#           allocation counts and perf (scripts/device-python-overhead.sh) -> python.txt;
#   pycheck python and check in one step for a call that must do both in less time: every check case
#           in the background while pytest runs (its results, not its timings, matter), then on the
#           quiet machine the overhead study's short form (cores 0 and 8, 3 unpinned processes, the
#           Swift decode step on core 0; no breakdown, no perf) -> python.txt, check/;
#           e.g. DEADLINE=560 bash scripts/device-pending.sh pycheck bench ln (about 260 s on an H100);
#   check   every check case (scripts/device-suite.sh check: 16 shards; the chi-square lines carry
#           their draws, statistic, dof and p-value) -> check/;
#   bench   bench norm and bench activation (with the floor row) at 256, 1024 and 4096 rows,
#           bench sampling (S1), bench api (host µs: append and RoPE with host vs device indices)
#           -> *.json, bench.txt;
#   memcheck every check case under compute-sanitizer memcheck (scripts/device-memcheck.sh, 16 shards,
#           each cut to what is left) -> sanitizer.txt, sanitizer.tgz; not in the default steps;
#   ln      with .device-ln/flashinfer: its `check --filter norm` and `bench norm` at the same rows,
#           between two runs of the main binary's, for an A/B on the same card, then its bench norm
#           at 256 rows with FLASHINFER_NORM_GRID=128 and 64 -> ln-*.
# The device tool brings back at most 8 files, so everything is written to a work folder and packed
# into $OUT/results.tgz after every step (a run cut short still brings back what finished);
# $OUT/summary.txt has the step lines and the counts. Each step's timeout is cut to what is left of
# DEADLINE seconds (default 570) so the whole fits the tool's 600 s limit; a step that would get
# less than 20 s is skipped (named in the summary: run it in the next call).
set -uo pipefail
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
W=$(mktemp -d)
dir=${DEVICE_DIR:-.device}
steps=${*:-python check bench ln}
deadline=${DEADLINE:-570}
export FLASHINFER_COMMIT=$(cat $dir/commit.txt 2>/dev/null || echo unknown)
export FLASHINFER_CACHE_DIR=${FLASHINFER_CACHE_DIR:-/tmp/flashinfer-cache}
S=$OUT/summary.txt
say() { echo "$*" | tee -a "$S"; }
pack() { tar czf "$OUT/results.tgz" -C "$W" . ; }
# left CAP: the timeout for a step that may take CAP seconds, cut to the deadline; 0 = skip.
left() { local l=$((deadline - SECONDS)); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 20 ] && l=0; echo $l; }
want() { case " $steps " in *" $1 "*) return 0;; esac; return 1; }
say "== device-pending at $FLASHINFER_COMMIT, steps: $steps"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>&1 | tee -a "$S" > "$W/gpu.txt"
if want python; then
  t=$(left 330)
  say "== [$SECONDS s] python (test_cuda.py, overhead, allocations, perf), timeout $t"
  if [ "$t" -gt 0 ]; then
    OUT=$W timeout -s KILL $t bash scripts/device-python-overhead.sh > "$W/python.txt" 2>&1
    cp "$W/python.txt" "$OUT/python.txt"
    grep -E " passed| failed|error" "$W/python.txt" | head -5 | tee -a "$S"
  else say "skipped: python"; fi
  pack
fi
if want pycheck; then
  t=$(left 330)
  say "== [$SECONDS s] pycheck: check (background) while pytest runs, timeout $t; then the overhead's short form"
  if [ "$t" -gt 0 ]; then
    ( CHECK_ARGS="" OUT=$W/check timeout -s KILL $t bash scripts/device-suite.sh check > "$W/check-log.txt" 2>&1 ) &
    checkpid=$!
    OUT=$W PARTS=pytest timeout -s KILL $t bash scripts/device-python-overhead.sh > "$W/python.txt" 2>&1
    grep -E " passed| failed|FAILED|rror" "$W/python.txt" | head -8 | tee -a "$S"
    wait $checkpid
    grep -E "^check total|^FAIL" "$W/check-log.txt" | head -20 | tee -a "$S"
    t=$(left 100)
    if [ "$t" -gt 0 ]; then
      OUT=$W PARTS="overhead swift" CORES="0 8" UNPINNED_RUNS=3 SWIFT_CORES=0 timeout -s KILL $t \
        bash scripts/device-python-overhead.sh >> "$W/python.txt" 2>&1
      grep -E "B=1|unpinned" "$W/python.txt" | head -6 | tee -a "$S"
    else say "skipped: the overhead's short form"; fi
    cp "$W/python.txt" "$OUT/python.txt"
  else say "skipped: pycheck"; fi
  pack
fi
if want check; then
  t=$(left 240)
  say "== [$SECONDS s] check (every case), timeout $t"
  if [ "$t" -gt 0 ]; then
    CHECK_ARGS="" OUT=$W/check timeout -s KILL $t bash scripts/device-suite.sh check > "$W/check-log.txt" 2>&1
    grep -E "^check total|^FAIL" "$W/check-log.txt" | head -20 | tee -a "$S"
  else say "skipped: check"; fi
  pack
fi
if want bench; then
  t=$(left 180)
  say "== [$SECONDS s] bench norm / activation / sampling, timeout $t"
  if [ "$t" -gt 0 ]; then
    {
      timeout $((t / 4)) $dir/flashinfer bench norm --batch 256,1024,4096 --json "$W/norm.json"
      timeout $((t / 4)) $dir/flashinfer bench activation --batch 256,1024,4096 --json "$W/activation.json"
      timeout $((t / 4)) $dir/flashinfer bench sampling --json "$W/sampling.json"
      timeout $((t / 4)) $dir/flashinfer bench api --json "$W/api.json"
    } > "$W/bench.txt" 2>&1
    cp "$W/bench.txt" "$OUT/bench.txt"
  else say "skipped: bench"; fi
  pack
fi
if want memcheck; then
  t=$(left 400)
  say "== [$SECONDS s] memcheck (every case under compute-sanitizer), timeout $t"
  if [ "$t" -gt 0 ]; then
    OUT=$W TIMEOUT=$t bash scripts/device-memcheck.sh > /dev/null 2>&1
    grep -E "^shard" "$W/sanitizer.txt" | grep -v "0 errors" | head -20 | tee -a "$S"
    echo "shards with 0 errors: $(grep -c "ERROR SUMMARY: 0 errors" "$W/sanitizer.txt")" | tee -a "$S"
  else say "skipped: memcheck"; fi
  pack
fi
if want ln && [ -x .device-ln/flashinfer ]; then
  t=$(left 300)
  say "== [$SECONDS s] second binary .device-ln ($(cat .device-ln/commit.txt 2>/dev/null)): check --filter norm, bench norm (A, B, A), timeout $t"
  if [ "$t" -gt 0 ]; then
    # (the norm check has ~200 cases, the largest 1001 × 8192 with a Float64 reference: the longest part)
    timeout $((t * 2 / 5)) .device-ln/flashinfer check --filter ops.norm > "$W/ln-check.txt" 2>&1
    tail -1 "$W/ln-check.txt" | tee -a "$S"
    timeout $((t / 7)) $dir/flashinfer bench norm --batch 256,1024,4096 --json "$W/norm-a1.json" > "$W/ln-bench.txt" 2>&1
    FLASHINFER_COMMIT=$(cat .device-ln/commit.txt 2>/dev/null) timeout $((t / 7)) .device-ln/flashinfer bench norm --batch 256,1024,4096 \
      --json "$W/ln-norm.json" >> "$W/ln-bench.txt" 2>&1
    timeout $((t / 7)) $dir/flashinfer bench norm --batch 256,1024,4096 --json "$W/norm-a2.json" >> "$W/ln-bench.txt" 2>&1
    # A grid cap for a looping norm kernel (norm-rows: FLASHINFER_NORM_GRID; ignored by binaries without it):
    # at 256 rows, 128 and 64 CTAs of 2 and 4 rows each.
    for g in 128 64; do
      FLASHINFER_NORM_GRID=$g FLASHINFER_COMMIT="$(cat .device-ln/commit.txt 2>/dev/null) grid $g" timeout 30 .device-ln/flashinfer bench norm \
        --batch 256 --json "$W/ln-norm-grid$g.json" >> "$W/ln-bench.txt" 2>&1
    done
    cp "$W/ln-bench.txt" "$OUT/ln-bench.txt"
  else say "skipped: ln"; fi
  pack
fi
say "== [$SECONDS s] done"
pack
