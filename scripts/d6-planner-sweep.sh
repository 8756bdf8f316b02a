#!/usr/bin/env bash
# Device-side experiment (2026-11-28): single-decode chunk counts across shapes, and the
# batch-decode ALiBi case under many seeds with the new and the previous (pairwise) merge.
set -uo pipefail
B=${B:-.device/flashinfer}
O=${OUT:-./device-out}
mkdir -p "$O"
F="len<=4096 page=16 h=32/8 d=128 f16 NHD alibi"
{
  for s in $(seq 1 12); do $B check --filter "$F" --seed $s > "/tmp/new_$s.txt" 2>&1 & done; wait
  for s in $(seq 1 12); do FLASHINFER_DECODE_MERGE=pairwise $B check --filter "$F" --seed $s > "/tmp/pw_$s.txt" 2>&1 & done; wait
  for s in $(seq 1 12); do FLASHINFER_PDL=0 $B check --filter "$F" --seed $s > "/tmp/nopdl_$s.txt" 2>&1 & done; wait
  for k in new pw nopdl; do echo "$k: $(cat /tmp/${k}_*.txt | grep -c '^1 passed') of 12 passed"; grep -h "^FAIL" /tmp/${k}_*.txt | head -3; done
} > "$O/alibi.txt" 2>&1
{
  $B bench single-decode --timeline --sweep-splits 0,16,33 --json "$O/d6.json"
  $B bench single-decode --split 16 --timeline
  $B bench single-decode --num-kv-heads 32 --sweep-splits 0,4,8 --iterations 100
  $B bench single-decode --num-qo-heads 64 --sweep-splits 0,16,33 --iterations 100
  $B bench single-decode --num-kv-heads 4 --sweep-splits 0,33,66 --iterations 100
  $B bench single-decode --kv-len 8192 --sweep-splits 0,16,33 --iterations 100
  $B bench single-decode --kv-len 131072 --sweep-splits 0,16,33 --iterations 100
  $B bench single-decode --dtype bf16 --layout HND --sweep-splits 0,16 --iterations 100
} > "$O/sweep.txt" 2>&1
