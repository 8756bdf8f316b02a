#!/usr/bin/env bash
# SASS of every kernel in kernelCatalog(), and a comparison of two such dumps: the proof that a
# kernel-source refactor changes no machine code (no GPU needed).
#
#   scripts/sass-diff.sh dump DIR          compile the catalogue with the current tree into DIR:
#                                          <catalogue name>.cubin / .cu (the wrapper) / .sass (the
#                                          disassembly) / .ins (instructions only) / .res (resources)
#   scripts/sass-diff.sh disasm DIR        only redo the disassembly of DIR's cubins
#   scripts/sass-diff.sh diff DIR_A DIR_B  compare two dumps kernel by kernel (by catalogue name, so
#                                          a renamed helper in a wrapper's source still pairs up);
#                                          exits 1 if any kernel's instructions or resources differ
#
# Uses the NVRTC in $FLASHINFER_CUDA_PIP (default .cuda-pip-13.0/, the GPU machine's release,
# installed by .ci/run) and cuobjdump from $CUOBJDUMP, else from pip's nvidia-cuda-cuobjdump
# (installed into .cuda-pip-tools/ on first use). `dump` builds the tests unless SKIP_BUILD=1.
# Compared: every instruction with its encoding and control words (only the addresses are dropped,
# which are the same whenever the instructions are), and `cuobjdump -res-usage` (registers, stack,
# shared and constant memory).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cuobjdump_bin() {
  if [ -n "${CUOBJDUMP:-}" ]; then echo "$CUOBJDUMP"; return; fi
  local c
  for c in "$root"/.cuda-pip-tools/nvidia/cu*/bin/cuobjdump; do [ -x "$c" ] && { echo "$c"; return; }; done
  python3 -m pip install --quiet --disable-pip-version-check --target "$root/.cuda-pip-tools" \
    nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm >&2
  for c in "$root"/.cuda-pip-tools/nvidia/cu*/bin/cuobjdump; do [ -x "$c" ] && { echo "$c"; return; }; done
  echo "sass-diff: cuobjdump not found (set CUOBJDUMP)" >&2; exit 2
}

# Instruction lines without their address, each with its two 64-bit words (the encoding, and the
# control word: stalls, barriers, reuse), plus the "Function : name" headers:
#   "/*0a30*/  FFMA R4, R5, R6, R4 ;  /* 0x.. */" + "/* 0x.. */"  ->  "FFMA R4, R5, R6, R4 ; 0x.. 0x.."
normalize() {
  awk '
    /^[[:space:]]*Function : / { sub(/^[[:space:]]*/, ""); print; next }
    match($0, /^[[:space:]]*\/\*[0-9a-f]+\*\//) {
      line = substr($0, RLENGTH + 1)
      enc = line; sub(/^.*\/\* /, "", enc); sub(/ \*\/[[:space:]]*$/, "", enc)
      sub(/[[:space:]]*\/\*.*$/, "", line); sub(/^[[:space:]]*/, "", line)
      pending = line " " enc; next
    }
    pending != "" && match($0, /^[[:space:]]*\/\* 0x[0-9a-f]+ \*\/[[:space:]]*$/) {
      ctl = $0; gsub(/[[:space:]]|\/\*|\*\//, "", ctl); print pending " " ctl; pending = ""
    }
  ' "$1"
}

case "${1:-}" in
dump | disasm)
  out=${2:?usage: sass-diff.sh dump DIR}
  mkdir -p "$out"; out=$(cd "$out" && pwd)
  obj=$(cuobjdump_bin)
  export PATH="$(dirname "$obj"):$PATH"  # cuobjdump -sass runs nvdisasm
  if [ "$1" = dump ]; then
    rm -f "$out"/*.cubin "$out"/*.cu "$out"/*.sass "$out"/*.ins "$out"/*.res
    pip_dir=${FLASHINFER_CUDA_PIP:-$root/.cuda-pip-13.0}
    [ -d "$pip_dir" ] || { echo "sass-diff: no NVRTC in $pip_dir (run .ci/run once)" >&2; exit 2; }
    [ "${SKIP_BUILD:-0}" = 1 ] || swift build --build-tests
    FLASHINFER_CUBIN_DUMP_DIR="$out" FLASHINFER_CUDA_PIP="$pip_dir" swift test --skip-build --filter NVRTCTests.everyKernelCompiles
  fi
  n=0
  for f in "$out"/*.cubin; do
    b=${f%.cubin}
    "$obj" -sass "$f" > "$b.sass"
    "$obj" -res-usage "$f" | grep -v '^$' > "$b.res"
    normalize "$b.sass" > "$b.ins"
    [ -s "$b.ins" ] || { echo "sass-diff: no instructions in $b.sass" >&2; exit 2; }
    n=$((n + 1))
  done
  echo "sass-diff: $n kernels disassembled in $out"
  ;;
diff)
  a=${2:?usage: sass-diff.sh diff DIR_A DIR_B}; b=${3:?usage: sass-diff.sh diff DIR_A DIR_B}
  same=0; differ=0; resonly=0; missing=0
  for k in $( (cd "$a" && ls -- *.ins; cd "$b" && ls -- *.ins) | sed 's/\.ins$//' | sort -u); do
    [ -f "$a/$k.ins" ] && [ -f "$b/$k.ins" ] || { echo "only in one dump: $k"; missing=$((missing + 1)); continue; }
    if ! cmp -s "$a/$k.ins" "$b/$k.ins"; then
      differ=$((differ + 1))
      echo "DIFFERS: $k ($(wc -l < "$a/$k.ins") vs $(wc -l < "$b/$k.ins") instructions)"
      diff "$a/$k.res" "$b/$k.res" | sed 's/^/    /' || true
      diff "$a/$k.ins" "$b/$k.ins" | head -20 | sed 's/^/    /' || true
    elif ! cmp -s "$a/$k.res" "$b/$k.res"; then
      resonly=$((resonly + 1))
      echo "resources only: $k"
      diff "$a/$k.res" "$b/$k.res" | sed 's/^/    /' || true
    else
      same=$((same + 1))
    fi
  done
  echo "sass-diff: $((same + differ + resonly)) kernels compared: $same identical, $differ differ in instructions, $resonly in resource usage only, $missing in one dump only"
  [ "$differ" = 0 ] && [ "$resonly" = 0 ] && [ "$missing" = 0 ]
  ;;
*)
  sed -n '2,18p' "$0"; exit 2 ;;
esac
