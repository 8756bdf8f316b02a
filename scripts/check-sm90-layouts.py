#!/usr/bin/env python3
"""CPU check of the Hopper prefill kernel's shared-memory contract (attention/prefill_sm90.cuh).

Models, element by element:
  * where TMA (CU_TENSOR_MAP_SWIZZLE_128B, box (64, rows, 1), 16-bit elements) puts element
    (row r, column c) of a box: byte r*128 + 2c of the box, then the 128B swizzle on the absolute
    shared address, bits [4:6] ^= bits [7:9] (Swizzle<3,4,3>);
  * where wgmma reads element (mn, k) of an operand through a descriptor (start, LBO, SBO, 128B
    swizzle), from the PTX ISA's canonical layouts (units: elements, T = 8 16-bit elements):
        K-major : ((8,m),(T,2k)) : ((8T,SBO),(1,T))
        MN-major: ((T,8,m),(8,k)) : ((1,T,LBO),(8T,SBO))
    then the same swizzle on the absolute address;
and checks that every operand element the kernel's descriptors name is the element it means:
  S = Q·Kᵀ : A = Q rows of the consumer warpgroup (K-major), B = K tile (K-major), k-steps of 16 over D;
  O += P·V : B = V tile (MN-major, N = head dim), k-steps of 16 keys.
Run: python3 scripts/check-sm90-layouts.py  (prints OK or the first mismatch).
"""

def swz(addr):  # Swizzle<3,4,3> on a byte address
    return addr ^ (((addr >> 7) & 7) << 4)

def tma_addr(base, row, col):  # element (row, col) of a box of 64-element rows, base 1024-aligned
    return swz(base + row * 128 + col * 2)

def desc_kmajor(start, sbo, mn, k):  # element (mn, k), k < 16 (one wgmma k-step), 16-bit
    T = 8
    off = (mn % 8) * 8 * T + (mn // 8) * (sbo // 2) + (k % T) * 1 + (k // T) * T  # elements
    return swz(start + 2 * off)

def desc_mnmajor(start, lbo, sbo, mn, k):  # element (mn, k), k < 16
    T = 8
    off = (mn % T) + ((mn // T) % 8) * T + (mn // 64) * (lbo // 2) + (k % 8) * 8 * T + (k // 8) * (sbo // 2)
    return swz(start + 2 * off)

def check(D, CTA_Q=128, CTA_KV=128, STAGES=2, base=0x400 * 37):
    assert base % 1024 == 0
    CH = D // 64
    q_s = base
    k_s = q_s + CTA_Q * D * 2
    v_s = k_s + STAGES * CTA_KV * D * 2
    QCH, KCH = CTA_Q * 128, CTA_KV * 128
    # TMA placement: chunk c of a tile holds columns 64c..64c+63 of every row.
    q_at = lambda r, d: tma_addr(q_s + (d // 64) * QCH, r, d % 64)
    k_at = lambda s, j, d: tma_addr(k_s + s * CTA_KV * D * 2 + (d // 64) * KCH, j, d % 64)
    v_at = lambda s, j, d: tma_addr(v_s + s * CTA_KV * D * 2 + (d // 64) * KCH, j, d % 64)
    for cwg in range(2):
        q_wg = q_s + 64 * cwg * 128
        for s in range(STAGES):
            k_tile = k_s + s * CTA_KV * D * 2
            v_tile = v_s + s * CTA_KV * D * 2
            for kk in range(D // 16):  # S = Q·Kᵀ
                off = (kk & 3) * 32
                a0 = q_wg + (kk >> 2) * QCH + off
                b0 = k_tile + (kk >> 2) * KCH + off
                for m in range(64):
                    for k in range(16):
                        got, want = desc_kmajor(a0, 1024, m, k), q_at(64 * cwg + m, 16 * kk + k)
                        if got != want: return f"Q D{D} wg{cwg} kk{kk} ({m},{k}): {got:#x} != {want:#x}"
                for n in range(CTA_KV):
                    for k in range(16):
                        got, want = desc_kmajor(b0, 1024, n, k), k_at(s, n, 16 * kk + k)
                        if got != want: return f"K D{D} s{s} kk{kk} ({n},{k}): {got:#x} != {want:#x}"
            for kk in range(CTA_KV // 16):  # O += P·V
                b0 = v_tile + kk * 16 * 128
                for n in range(D):
                    for k in range(16):
                        got, want = desc_mnmajor(b0, KCH, 1024, n, k), v_at(s, 16 * kk + k, n)
                        if got != want: return f"V D{D} s{s} kk{kk} ({n},{k}): {got:#x} != {want:#x}"
    # The descriptor fields hold what the kernel encodes: 14-bit address >> 4, LBO/SBO >> 4.
    assert (v_s + STAGES * CTA_KV * D * 2) < (1 << 18) and KCH >> 4 < (1 << 14)
    return None

def check_batch(D, CTA_Q=128, CTA_KV=128, base=0x400 * 37):
    """The batch kernel (attention/prefill_sm90_batch.cuh) fills the same tiles with other boxes:
    Q as one rank-4 box (64, G, 1, 128/G) per column block — box element (tok, g, col) at byte
    (tok·G + g)·128 + 2·col, i.e. packed row tok·G + g — and a paged K/V tile as 128/PS boxes
    (64, PS, 1, 1), page i at row i·PS. Whether TMA swizzles on the absolute shared address or
    relative to each box's start, the image must be the single kernel's (whose descriptors `check`
    verified): true when every box starts on a 1024-byte atom, i.e. PS ≥ 8 (and PS | 128)."""
    QCH, KCH = CTA_Q * 128, CTA_KV * 128
    for G in (1, 2, 4, 8, 16, 32, 64, 128):
        for c in range(D // 64):
            blk = base + c * QCH
            for tok in range(CTA_Q // G):
                for g in range(G):
                    for col in range(0, 64, 8):
                        byte = (tok * G + g) * 128 + 2 * col
                        for rel in (False, True):
                            got = (blk + swz(byte)) if rel else swz(blk + byte)
                            if got != tma_addr(blk, tok * G + g, col): return f"Q D{D} G{G} ({tok},{g},{col})"
    bad_ps = []
    for PS in (1, 2, 4, 8, 16, 32, 64, 128):
        ok = True
        for c in range(D // 64):
            blk = base + c * KCH
            for i in range(CTA_KV // PS):
                box = blk + i * PS * 128
                for j in range(PS):
                    for col in range(0, 64, 8):
                        want = tma_addr(blk, i * PS + j, col)
                        for got in (swz(box + j * 128 + 2 * col), box + swz(j * 128 + 2 * col)):
                            ok = ok and got == want
        if not ok: bad_ps.append(PS)
    if bad_ps != [1, 2, 4]: return f"paged boxes: the layouts differ (under one of the two swizzle models) for page sizes {bad_ps}, expected [1, 2, 4]"
    return None

if __name__ == "__main__":
    bad = [e for e in (check(64), check(128), check_batch(64), check_batch(128)) if e]
    print("\n".join(bad) if bad else "OK: Q, K (K-major) and V (MN-major) descriptors address exactly the TMA-swizzled elements, D 64 and 128; "
          "the batch kernel's packed-Q boxes (G 1..128) and page boxes (page 8..128) give the same image (page 1, 2, 4 would not)")
    raise SystemExit(1 if bad else 0)
