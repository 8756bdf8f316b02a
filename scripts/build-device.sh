#!/usr/bin/env bash
# Builds the static release binary for the GPU machine into .device/ (git-ignored), to `carry`.
#   scripts/build-device.sh            -> .device/flashinfer, .device/commit.txt
#   DEVICE_DIR=.device-x scripts/build-device.sh   -> another git-ignored folder
# On the device machine (from the repository root):
#   .device/flashinfer info
# See README.md "Running on the GPU machine".
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --product flashinfer "$@"
out=${DEVICE_DIR:-.device}
mkdir -p "$out"
cp "$(swift build -c release --show-bin-path "$@")/flashinfer" "$out/flashinfer"
strip "$out/flashinfer" 2>/dev/null || true
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit-dirty"; fi
echo "$commit" > "$out/commit.txt"
size=$(stat -c %s "$out/flashinfer")
echo "built $out/flashinfer ($((size / 1024 / 1024)) MiB, commit $commit)"
