#!/usr/bin/env python3
"""Fits the constants of `DecodePathModel` (Sources/FlashInfer/Planner/DecodePathModel.swift) to a
`bench decode-paths` JSON, and reports how the fitted model's choice compares with the measured
faster path and with the old fixed rule (group >= 4 -> tensor cores).

    python3 scripts/fit-decode-path-model.py bench/results/2026-12-04-decode-paths-H200-7eec33e.json
    python3 scripts/fit-decode-path-model.py FILE.json --check     # evaluate the Swift constants only

The model here mirrors the Swift one term for term (the unit tests check the Swift side against
the same rows). Only numpy/scipy are needed (scipy.optimize.least_squares on log-time residuals).

The rows are per-call medians (CUDA events around one `run()`), so every time includes the host's
~12 us of `run()`; the fitted fixed costs carry it. Queued times (`--queued` rows from the new bench,
field `*_queued_us`) are used instead when present and `--queued` is given.

The planners are reproduced as they were when the data was taken (commit 7eec33e):
CUDA cores `BatchDecodePlan.make` without the wave-aware split (`wave_aware=False`), tensor cores
`BatchPrefillPlan.make` with a 64-row tile.
"""
import argparse
import json
import math
import sys

import numpy as np
from scipy.optimize import least_squares

# ---------------------------------------------------------------------------------------------
# Planners (mirrors of the Swift planners)


def items_of(pages, c):
    """Work items of chunk size c: each request's pages in chunks (at least one item)."""
    return sum(max((n + c - 1) // c, 1) for n in pages)


def smallest_chunk(lo, hi, fits):
    """The smallest chunk in [lo, hi] with fits(chunk) (fits is monotone), hi if none smaller."""
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def chunk_items(pages, chunk):
    """Each work item's pages for chunk size `chunk`."""
    per_item = []
    for n in pages:
        k = max((n + chunk - 1) // chunk, 1)
        for c in range(k):
            per_item.append(max(min(chunk, n - c * chunk), 0))
    return per_item


def decode_plan(pages, heads, max_grid, page_size, wave_aware):
    """BatchDecodePlan.make: chunk pages and the CTAs' pages (one entry per work item)."""
    batch = len(pages)
    max_pages = max(max(pages), 1)
    min_chunk = max(128 // page_size, 1)

    if batch * heads >= max_grid:
        chunk = max_pages
        if wave_aware:
            chunk = wave_chunk(pages, heads, max_grid, min_chunk, max_pages, page_size)
    else:
        chunk = smallest_chunk(min(min_chunk, max_pages), max_pages, lambda c: items_of(pages, c) * heads <= max_grid)
    return chunk, chunk_items(pages, chunk)


# The wave-aware split (BatchDecodePlan.waveAwareChunkPages): among chunk sizes ceil(maxPages / k),
# k = 1, 2, ..., the one with the least
#   ceil(CTAs / slots) * (longest chunk's tokens + WAVE_OVERHEAD_TOKENS) + [split] SPLIT_OVERHEAD_TOKENS
# (synchronised waves: each wave lasts as long as its longest CTA), only for grids of at most
# MAX_WAVES_FOR_SPLIT waves unsplit (later waves drift apart and hide the tail).
WAVE_OVERHEAD_TOKENS = 128
SPLIT_OVERHEAD_TOKENS = 256
MAX_WAVES_FOR_SPLIT = 4


def wave_cost(pages, heads, slots, chunk, page_size):
    n = items_of(pages, chunk) * heads
    longest = min(chunk, max(max(pages), 1)) * page_size
    split = chunk < max(max(pages), 1)
    return math.ceil(n / slots) * (longest + WAVE_OVERHEAD_TOKENS) + (SPLIT_OVERHEAD_TOKENS if split else 0), n


def wave_chunk(pages, heads, slots, min_chunk, max_pages, page_size=16):
    best_cost, n0 = wave_cost(pages, heads, slots, max_pages, page_size)
    if n0 > MAX_WAVES_FOR_SPLIT * slots:
        return max_pages
    best = max_pages
    k = 2
    while True:
        c = (max_pages + k - 1) // k
        if c < min_chunk:
            break
        cost, n = wave_cost(pages, heads, slots, c, page_size)
        if n > 4 * MAX_WAVES_FOR_SPLIT * slots:
            break
        if cost < best_cost:
            best, best_cost = c, cost
        k += 1
    return best


def prefill_plan(pages, heads, sms, page_size):
    """BatchPrefillPlan.make for decode (one query per request, one q tile)."""
    max_pages = max(max(pages), 1)
    max_batch_if_split = max(2 * sms // heads, 1)

    chunk = smallest_chunk(min(max(128 // page_size, 1), max_pages), max_pages,
                           lambda c: items_of(pages, c) <= max_batch_if_split)
    return chunk, chunk_items(pages, chunk)


# ---------------------------------------------------------------------------------------------
# The model

NAMES = [
    "readBandwidthFactor",  # read bandwidth / copy ceiling
    "cudaCoreFixedUs",      # per call, CUDA-core path (includes host run() in per-call data)
    "tensorCoreFixedUs",    # per call, tensor-core path
    "cudaCoreKeyNs0",       # a lone CTA's ns per key (D 128, 16-bit): l0 + l1 * g
    "cudaCoreKeyNs1",
    "cudaCoreSMKeyNs0",     # an SM's ns per key with every slot busy: a0 + a1 * g
    "cudaCoreSMKeyNs1",
    "tensorCoreKeyNs",      # a lone tensor-core CTA's ns per key
    "cudaCoreMergeUs",      # split: merge launch + one round (16 chunks)
    "cudaCoreMergeRoundUs",  # per further round of 16 chunks
    "tensorCoreMergeUs",    # split: merge launch
    "tensorCoreMergeChunkUs",  # per chunk of the longest request (serial fold)
    "tailDecay",            # tail exposure after each further full wave
    "waveFixedUs",          # per wave (CTA prologue/epilogue on the critical path)
]

# Priors (initial guesses) and bounds.
X0 = [1.04, 13, 14, 18, 3, 11, 1.3, 25, 2, 0.5, 2, 0.2, 0.3, 0.5]
LO = [0.9, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]
HI = [1.07, 40, 40, 200, 50, 100, 20, 200, 20, 10, 20, 5, 1, 10]


def stream_time(cta_bytes, cta_keys_max, slots, sms, per_sm, bw, key_ns_cta, key_ns_sm, tail_decay, wave_fixed):
    """Time (us) for a grid of CTAs (bytes each) on `slots` resident slots.

    - with n CTAs resident (evenly spread), the grid streams at
      X(n) = min(bw, n * r_cta, min(n, sms) * r_sm), r_cta = key_bytes / key_ns_cta, r_sm likewise;
    - the whole grid at full occupancy: S / X(min(N, slots));
    - a partial last wave of k CTAs (N > slots) runs at X(k) instead of sharing X(slots); its extra
      time is exposed fully after one full wave and by tail_decay per further full wave (later
      waves drift apart and overlap the tail);
    - the longest CTA bounds it from below: bytes_max / r_cta;
    - plus wave_fixed per wave (ceil(N / slots)).
    cta_bytes: list (or array) of bytes per CTA. Rates are in bytes per us.
    """
    n = len(cta_bytes)
    if n == 0:
        return 0.0
    total = float(sum(cta_bytes))
    mean = total / n
    r_cta = key_ns_cta  # bytes/us per CTA (caller converts)
    r_sm = key_ns_sm

    def X(m):
        return min(bw, m * r_cta, min(m, sms) * r_sm)

    full = min(n, slots)
    t = total / X(full)
    waves = n // slots
    k = n - waves * slots
    if waves >= 1 and k > 0:
        extra = mean * k / X(k) - mean * k / X(slots)
        t += max(extra, 0.0) * tail_decay ** (waves - 1)
    t = max(t, max(cta_bytes) / r_cta)
    return t + wave_fixed * math.ceil(n / slots)


def kv_key_bytes(head_dim, kv_bytes):
    return 2 * head_dim * kv_bytes


def cuda_core_ctas_per_sm(group):
    # Measured occupancy (maxActiveBlocksPerSM) of the 16-bit D 128 paged decode kernels on
    # Hopper: 3 per SM (shared memory, 64 KiB pipeline) for CTA groups 1-4, 2 for 8 (registers).
    return 2 if cta_group(group) >= 8 else 3


def cta_group(group):
    c = 1
    while c < min(group, 8):
        c *= 2
    return c


def predict(p, row, sms, copy_tbps, wave_aware=False):
    (bwf, fix_cc, fix_tc, l0, l1, a0, a1, tk, m_cc, m_cc_r, m_tc, m_tc_c, tail, wfix) = p
    b, kv, g = row["batch"], row["kv_len"], row["group"]
    heads = row.get("num_kv_heads", 8)
    d = row.get("head_dim", 128)
    ps = row.get("page_size", 16)
    kvb = row.get("kv_bytes", 2)
    bw = bwf * copy_tbps * 1e6  # bytes per us
    pages = [(kv + ps - 1) // ps] * b
    tokens_of = lambda pg_list, chunk_items: None
    kb = kv_key_bytes(d, kvb)
    dscale = d / 128.0

    # CUDA cores
    cg = cta_group(g)
    head_groups = (g + cg - 1) // cg
    per_sm = cuda_core_ctas_per_sm(g)
    gdy = heads * head_groups
    chunk, items = decode_plan(pages, gdy, per_sm * sms, ps, wave_aware)
    cta_bytes = [min(it * ps, kv) * kb for it in items for _ in range(gdy)]
    r_cta = kb / ((l0 + l1 * cg) * dscale) * 1e3  # bytes per us
    r_sm = kb / ((a0 + a1 * cg) * dscale) * 1e3
    t_cc = fix_cc + stream_time(cta_bytes, None, per_sm * sms, sms, per_sm, bw, r_cta, r_sm, tail, wfix)
    chunks = max(len(items) // b, 1) if b else 1
    max_chunks = math.ceil(max(pages) / chunk)
    if max_chunks > 1:
        partial = len(items) * heads * g * d * 4 * 2
        t_cc += m_cc + m_cc_r * (math.ceil(max_chunks / 16) - 1) + partial / bw

    # Tensor cores (64-row tile, 2 CTAs per SM)
    chunk_t, items_t = prefill_plan(pages, heads, sms, ps)
    cta_bytes_t = [min(it * ps, kv) * kb for it in items_t for _ in range(heads)]
    r_tc = kb / (tk * dscale) * 1e3
    t_tc = fix_tc + stream_time(cta_bytes_t, None, 2 * sms, sms, 2, bw, r_tc, 1e30, tail, wfix)
    max_chunks_t = math.ceil(max(pages) / chunk_t)
    if max_chunks_t > 1:
        partial = len(items_t) * heads * g * d * 4 * 2
        t_tc += m_tc + m_tc_c * max_chunks_t + partial / bw
    return t_cc, t_tc


def evaluate(p, rows, sms, copy, label, verbose=False):
    worst_model, worst_rule = 0.0, 0.0
    wrong = []
    for r in rows:
        cc, tc = r["cc"], r["tc"]
        pcc, ptc = predict(p, r, sms, copy)
        best = min(cc, tc)
        pick_model = ptc < pcc
        pick_rule = r["group"] >= 4
        loss_m = (tc if pick_model else cc) / best - 1
        loss_r = (tc if pick_rule else cc) / best - 1
        worst_model = max(worst_model, loss_m)
        worst_rule = max(worst_rule, loss_r)
        differ = max(cc, tc) / best - 1 > 0.05
        if differ and pick_model != (tc < cc):
            wrong.append(r)
        if verbose:
            print(f"B={r['batch']:4d} kv={r['kv_len']:6d} g={r['group']:2d}  CC {cc:8.1f} (model {pcc:8.1f}, {100*(pcc/cc-1):+5.1f}%)"
                  f"  TC {tc:8.1f} (model {ptc:8.1f}, {100*(ptc/tc-1):+5.1f}%)  model picks {'TC' if pick_model else 'CC'}"
                  f"{'' if loss_m < 1e-9 else f' (+{100*loss_m:.1f}%)'}{'  WRONG' if differ and pick_model != (tc < cc) else ''}")
    print(f"{label}: worst loss of the old rule {100*worst_rule:.1f} %, of the model {100*worst_model:.1f} %; "
          f"rows > 5 % apart picked wrong: {len(wrong)}")
    return worst_model, wrong


def residuals(p, rows, sms, copy):
    out = []
    for r in rows:
        pcc, ptc = predict(p, r, sms, copy)
        out.append(math.log(pcc / r["cc"]))
        out.append(math.log(ptc / r["tc"]))
        # Decision hinge: push the predicted difference to the measured side for rows > 5 % apart.
        m = math.log(r["tc"] / r["cc"])
        if abs(m) > math.log(1.05):
            pm = math.log(ptc / pcc)
            out.append(3.0 * max(0.0, -pm * math.copysign(1, m) + 0.02))
    return out


# Other measurements the model is checked against (not fitted): (label, device, copy TB/s, batch,
# kv_len, group, kv heads, measured CUDA cores us, measured tensor cores us).
# H100 at b0abb43 (bench/NOTES.md 2026-11-28 second session; CUDA-core TB/s 2.340 / 2.860 / 2.913 /
# 3.05 for D1-D4, tensor cores from the *-tensor-cores-H100-b0abb43.json) -- the CUDA-core kernel
# has since lost ~1-2 % of instructions (c09dbf1), so these CUDA-core times are upper bounds.
# H200 D1-D4 at 688b5b6 (WORKLOADS.md: 299 / 319 us tensor cores), decode-step B=1 (NOTES 2026-12-04).
OTHER = [
    ("D1 H100", 3.006, 64, 4096, 4, 8, 1.0737e9 / 2.340e6, 361.8),
    ("D2 H100", 3.006, 256, 1024, 4, 8, 1.0737e9 / 2.860e6, 373.3),
    ("D3 H100", 3.006, 16, 32768, 4, 8, 2.1475e9 / 2.913e6, 694.6),
    ("D4 H100", 3.006, 64, 4096, 1, 32, 1405.98, 1415.7),
    ("decode-step B=1 H200", 4.257, 1, 4096, 4, 8, 13.1, 27.8),
]


def check_other(p, sms):
    for label, copy, b, kv, g, heads, cc, tc in OTHER:
        r = dict(batch=b, kv_len=kv, group=g, num_kv_heads=heads)
        pcc, ptc = predict(p, r, sms, copy)
        pw, _ = predict(p, r, sms, copy, wave_aware=True)
        print(f"{label:22s} CC {cc:7.1f} (model {pcc:7.1f}, {100*(pcc/cc-1):+5.1f}%; wave-aware split {pw:7.1f})"
              f"  TC {tc:7.1f} (model {ptc:7.1f}, {100*(ptc/tc-1):+5.1f}%)  faster {'TC' if tc < cc else 'CC'},"
              f" model picks {'TC' if ptc < min(pcc, pw) else 'CC'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--queued", action="store_true")
    ap.add_argument("--check", action="store_true", help="only evaluate the constants given with --params")
    ap.add_argument("--params", help="comma-separated constants in NAMES order")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    data = json.load(open(a.json))
    copy = data["copy_tbps"]
    rows = []
    for r in data["results"]:
        cc = r.get("cuda_cores_queued_us") if a.queued else None
        tc = r.get("tensor_cores_queued_us") if a.queued else None
        rows.append(dict(r, cc=cc or r["cuda_cores_us"], tc=tc or r["tensor_cores_us"],
                         head_dim=data.get("head_dim", 128), page_size=data.get("page_size", 16)))
    if a.params:
        p = [float(x) for x in a.params.split(",")]
    else:
        p = X0
    if not a.check:
        fit = least_squares(lambda x: residuals(x, rows, a.sms, copy), X0, bounds=(LO, HI), diff_step=1e-3)
        p = list(fit.x)
    for n, v in zip(NAMES, p):
        print(f"  {n:24s} {v:10.4f}")
    print("params:", ",".join(f"{v:.4g}" for v in p))
    evaluate(p, rows, a.sms, copy, "fit", verbose=a.v)
    check_other(p, a.sms)
    print("wave-aware split, H200 grid (model, CUDA cores): rows where it changes the plan")
    for r in rows:
        old, _ = predict(p, r, a.sms, copy)
        new, tc = predict(p, r, a.sms, copy, wave_aware=True)
        if abs(new - old) > 1e-9:
            print(f"  B={r['batch']:4d} kv={r['kv_len']:6d} g={r['group']:2d}: {old:8.1f} -> {new:8.1f} us (measured {r['cc']:8.1f}; TC {r['tc']:8.1f})")


if __name__ == "__main__":
    main()
