"""The C ABI's CUDA host path for index tensors in device memory, without a GPU: the library on the
null driver (scripts/nullcuda.c, FLASHINFER_CUDA_DRIVER) with CUDA DLTensors over fake device
addresses, through flashinfer_swift_rope_tensors, flashinfer_swift_rope_cos_sin_cache_tensors and
flashinfer_swift_append_paged_kv_cache_tensors — the entries the Python package calls for
apply_rope*, apply_rope_with_cos_sin_cache* and append_paged_kv_cache. Kernels are JIT-compiled
(real NVRTC) but not run. What this checks, per case: the driver calls the call made (kernel
launches, host-to-device and device-to-host copies, synchronizations: a CUDA index tensor must be
handed to the kernel with no copy and no wait, which is what makes the call capturable in a CUDA
graph) and the kernel's parameter struct as launched (the null driver keeps its bytes): the index
tensors' addresses, the int64 flag, the frequencies, the bounds the kernel checks.
    FLASHINFER_CUDA_DRIVER=/path/libcuda.so.1 python3 host_path_indices.py
Prints `ok NAME` per case and `host-path-indices: N cases passed`; exits non-zero on the first
failure. python/tests/test_host_path.py runs it."""
import ctypes
import math
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402

STREAM = 0x7000
U64, I64, I32, F32 = ctypes.c_uint64, ctypes.c_int64, ctypes.c_int32, ctypes.c_float


class RopeParams(ctypes.Structure):  # flashinfer/params.h FIRopeParams
    _fields_ = [(n, U64) for n in ("q", "k", "q_out", "k_out", "positions", "indptr", "offsets", "cos_sin_cache")] + [
        (n, I64) for n in ("q_stride_n", "q_stride_h", "k_stride_n", "k_stride_h", "qo_stride_n", "qo_stride_h", "ko_stride_n",
                           "ko_stride_h", "cache_stride")] + [
        (n, I32) for n in ("nnz", "num_qo_heads", "num_kv_heads", "rotary_dim", "units", "rot_units", "heads_per_thread",
                           "positions_i64", "batch_size", "cache_rows")] + [("freqs", F32 * 256)]


class AppendParams(ctypes.Structure):  # flashinfer/params.h FIAppendPagedKVParams
    _fields_ = [(n, U64) for n in ("append_k", "append_v", "k_cache", "v_cache", "batch_indices", "positions", "kv_indices",
                                   "kv_indptr")] + [
        (n, I64) for n in ("ak_stride_n", "ak_stride_h", "av_stride_n", "av_stride_h", "kc_stride_page", "kc_stride_token",
                           "kc_stride_head", "vc_stride_page", "vc_stride_token", "vc_stride_head")] + [
        (n, I32) for n in ("nnz", "num_heads", "page_size", "vecs_per_head")] + [("k_scale", F32), ("v_scale", F32)] + [
        (n, I32) for n in ("batch_size", "num_indices", "num_pages", "pad")]


class MergeParams(ctypes.Structure):  # flashinfer/params.h FIMergeParams
    _fields_ = [(n, U64) for n in ("va", "sa", "vb", "sb", "v_out", "s_out", "mask")] + [("n", I64)] + [
        (n, I32) for n in ("num_heads", "head_dim", "num_states", "pad")]


def fake(address, shape, code=fi._kDLFloat, bits=16, device_id=0, cuda=True):
    """A DLTensor at a fake device address (never dereferenced), compact strides."""
    strides, s = [], 1
    for n in reversed(shape):
        strides.insert(0, s)
        s *= n
    t = fi._Tensor.__new__(fi._Tensor)
    dev = types.SimpleNamespace(type="cuda" if cuda else "cpu", index=device_id)
    t._set(None, address, tuple(shape), tuple(strides), code, bits, dev)
    return t


def host_index(a):
    """A CPU DLTensor over a NumPy int array."""
    return fi._index_tensor(a, "index")


class Driver:
    def __init__(self):
        self.lib = ctypes.CDLL(os.environ["FLASHINFER_CUDA_DRIVER"])
        for name in ("nullcuda_launches", "nullcuda_htod_copies", "nullcuda_dtoh_copies", "nullcuda_syncs"):
            getattr(self.lib, name).restype = ctypes.c_long

    def counts(self):
        return (self.lib.nullcuda_launches(), self.lib.nullcuda_htod_copies(), self.lib.nullcuda_dtoh_copies(),
                self.lib.nullcuda_syncs())

    def call(self, params_type, fn):
        """Runs fn (an ABI call, status checked) with the launch's parameters kept: returns the
        (launches, host-to-device copies, device-to-host copies, syncs) it made and the parameters."""
        self.lib.nullcuda_capture_params(ctypes.c_size_t(ctypes.sizeof(params_type)))
        before = self.counts()
        fi._check(fn())
        after = self.counts()
        p = params_type()
        self.lib.nullcuda_last_params(ctypes.byref(p), ctypes.c_size_t(ctypes.sizeof(params_type)))
        self.lib.nullcuda_capture_params(ctypes.c_size_t(0))
        return tuple(a - b for a, b in zip(after, before)), p


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    lib, drv = fi._library(), Driver()
    stream = ctypes.c_void_p(STREAM)
    passed = 0

    def ok(name):
        nonlocal passed
        passed += 1
        print(f"ok {name}")

    # ---- RoPE, the vLLM form: int64 positions on the device, a cos/sin cache ----
    nnz, hq, hk, hs, rd, max_pos = 48, 8, 2, 128, 128, 4096
    base = 1 << 40
    q, k = fake(base, (nnz, hq * hs)), fake(base + (1 << 30), (nnz, hk * hs))
    cache = fake(base + (2 << 30), (max_pos, rd), bits=32)
    pos64 = fake(base + (3 << 30), (nnz,), code=0, bits=64)
    calls, p = drv.call(RopeParams, lambda: lib.flashinfer_swift_rope_cos_sin_cache_tensors(
        pos64.ref(), q.ref(), k.ref(), hs, cache.ref(), 1, stream))
    expect(calls == (1, 0, 0, 0), f"cos/sin cache, device int64 positions: (launches, HtoD, DtoH, syncs) = {calls}, expected (1, 0, 0, 0)")
    expect(p.positions == base + (3 << 30) and p.positions_i64 == 1, f"positions {p.positions:#x} / i64 {p.positions_i64}")
    expect(p.cos_sin_cache == base + (2 << 30) and p.cache_rows == max_pos and p.cache_stride == rd,
           f"cache {p.cos_sin_cache:#x} rows {p.cache_rows} stride {p.cache_stride}")
    expect(p.indptr == 0 and p.q == base and p.q_out == base and p.nnz == nnz and p.rotary_dim == rd, "rope fields")
    ok("rope_cos_sin_cache device int64 positions: one launch, no copy, no sync; positions and cache bounds in the parameters")

    # int32 positions on the device
    pos32 = fake(base + (4 << 30), (nnz,), code=0, bits=32)
    calls, p = drv.call(RopeParams, lambda: lib.flashinfer_swift_rope_cos_sin_cache_tensors(
        pos32.ref(), q.ref(), k.ref(), hs, cache.ref(), 0, stream))
    expect(calls == (1, 0, 0, 0) and p.positions == base + (4 << 30) and p.positions_i64 == 0, f"int32 positions: {calls}")
    ok("rope_cos_sin_cache device int32 positions")

    # host positions with a CUDA query: validated and uploaded (one host-to-device copy), no sync
    hpos = np.arange(nnz, dtype=np.int64) * 3
    hp = host_index(hpos)
    calls, p = drv.call(RopeParams, lambda: lib.flashinfer_swift_rope_cos_sin_cache_tensors(
        hp.ref(), q.ref(), k.ref(), hs, cache.ref(), 1, stream))
    expect(calls == (1, 1, 0, 0) and p.positions not in (0, hpos.ctypes.data) and p.positions_i64 == 0,
           f"host positions: {calls}, positions {p.positions:#x} i64 {p.positions_i64}")
    ok("rope_cos_sin_cache host int64 positions: uploaded as int32 (one copy), no sync")

    # host positions outside the cache are refused before anything is enqueued
    bad = host_index(np.full(nnz, max_pos, np.int64))
    before = drv.counts()
    status = lib.flashinfer_swift_rope_cos_sin_cache_tensors(bad.ref(), q.ref(), k.ref(), hs, cache.ref(), 1, stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "outside the cache" in msg and drv.counts() == before, f"status {status}: {msg}")
    ok("rope_cos_sin_cache host position outside the cache: an error, nothing enqueued")

    # ---- RoPE, frequencies: pos_ids and ragged indptr/offsets on the device ----
    d, rdim, theta = 128, 64, 1e4
    q3, k3 = fake(base + (5 << 30), (nnz, hq, d)), fake(base + (6 << 30), (nnz, hk, d))
    qo3, ko3 = fake(base + (7 << 30), (nnz, hq, d)), fake(base + (8 << 30), (nnz, hk, d))
    opts = fi._rope_options(rdim, False, 1, theta)
    pid = fake(base + (9 << 30), (nnz,), code=0, bits=32)
    calls, p = drv.call(RopeParams, lambda: lib.flashinfer_swift_rope_tensors(
        q3.ref(), k3.ref(), qo3.ref(), ko3.ref(), None, None, pid.ref(), ctypes.byref(opts), stream))
    expect(calls == (1, 0, 0, 0), f"pos_ids on the device: {calls}")
    want = [np.float32(theta ** (-2 * i / rdim)) for i in range(rdim // 2)]
    got = [p.freqs[i] for i in range(rdim // 2)]
    expect(all(math.isclose(a, float(b), rel_tol=1e-7) for a, b in zip(got, want)), f"frequencies {got[:4]} vs {want[:4]}")
    expect(p.positions == base + (9 << 30) and p.q_out == base + (7 << 30) and p.rotary_dim == rdim and p.cos_sin_cache == 0,
           "rope_tensors fields")
    ok("rope pos_ids on the device: one launch, no copy, no sync; frequencies by value in the parameters")

    batch = 5
    ip = fake(base + (10 << 30), (batch + 1,), code=0, bits=32)
    off = fake(base + (11 << 30), (batch,), code=0, bits=32)
    calls, p = drv.call(RopeParams, lambda: lib.flashinfer_swift_rope_tensors(
        q3.ref(), k3.ref(), None, None, ip.ref(), off.ref(), None, ctypes.byref(opts), stream))
    expect(calls == (1, 0, 0, 0), f"ragged on the device: {calls}")
    expect(p.indptr == base + (10 << 30) and p.offsets == base + (11 << 30) and p.batch_size == batch and p.positions == 0
           and p.q_out == p.q, f"ragged fields: indptr {p.indptr:#x} offsets {p.offsets:#x} batch {p.batch_size}")
    ok("rope ragged indptr/offsets on the device, in place: one launch, no copy, no sync")

    # index tensors split between the CPU and the GPU: an error naming them
    hoff = host_index(np.zeros(batch, np.int32))
    status = lib.flashinfer_swift_rope_tensors(q3.ref(), k3.ref(), None, None, ip.ref(), hoff.ref(), None, ctypes.byref(opts), stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "offsets" in msg and "on the CPU" in msg, f"mixed placement: {status} {msg}")
    ok("rope indptr on the GPU with offsets on the CPU: an error")

    # an index tensor on another CUDA device than q
    other = fake(base + (12 << 30), (nnz,), code=0, bits=32, device_id=1)
    status = lib.flashinfer_swift_rope_tensors(q3.ref(), k3.ref(), None, None, None, None, other.ref(), ctypes.byref(opts), stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "pos_ids" in msg and "device 0" in msg, f"other device: {status} {msg}")
    ok("rope pos_ids on another CUDA device: an error")

    # a float index tensor: a dtype error
    fpos = fake(base + (13 << 30), (nnz,), bits=32)
    status = lib.flashinfer_swift_rope_tensors(q3.ref(), k3.ref(), None, None, None, None, fpos.ref(), ctypes.byref(opts), stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "int32 or int64" in msg, f"float pos_ids: {status} {msg}")
    ok("rope float pos_ids: a dtype error")

    # a rotary dim above the kernel's frequency table
    qw, kw = fake(base + (14 << 30), (nnz, 2, 1024)), fake(base + (15 << 30), (nnz, 1, 1024))
    status = lib.flashinfer_swift_rope_tensors(qw.ref(), kw.ref(), None, None, None, None, pid.ref(),
                                               ctypes.byref(fi._rope_options(1024, False, 1, theta)), stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "rotary_dim" in msg and "512" in msg, f"rotary_dim 1024: {status} {msg}")
    ok("rope rotary_dim 1024 on the GPU: an error naming the 512 limit")

    # ---- append_paged_kv_cache with device index tensors ----
    pages, page, hkv, hd, nreq, nnz_a = 64, 16, 8, 128, 4, 4
    kc, vc = fake(base + (16 << 30), (pages, page, hkv, hd)), fake(base + (17 << 30), (pages, page, hkv, hd))
    ak, av = fake(base + (18 << 30), (nnz_a, hkv, hd)), fake(base + (19 << 30), (nnz_a, hkv, hd))
    addr = [base + ((20 + i) << 30) for i in range(5)]
    bi, ps = fake(addr[0], (nnz_a,), code=0, bits=32), fake(addr[1], (nnz_a,), code=0, bits=32)
    ix, ipt = fake(addr[2], (40,), code=0, bits=32), fake(addr[3], (nreq + 1,), code=0, bits=32)
    lp = fake(addr[4], (nreq,), code=0, bits=32)
    calls, p = drv.call(AppendParams, lambda: lib.flashinfer_swift_append_paged_kv_cache_tensors(
        ak.ref(), av.ref(), bi.ref(), ps.ref(), kc.ref(), vc.ref(), ix.ref(), ipt.ref(), lp.ref(), 0, 0.0, 0.0, stream))
    expect(calls == (1, 0, 0, 0), f"append, device indices: {calls}")
    expect((p.batch_indices, p.positions, p.kv_indices, p.kv_indptr) == tuple(addr[:4]), "append index addresses")
    expect((p.nnz, p.batch_size, p.num_indices, p.num_pages, p.page_size) == (nnz_a, nreq, 40, pages, page),
           f"append bounds: nnz {p.nnz} batch {p.batch_size} indices {p.num_indices} pages {p.num_pages} page {p.page_size}")
    ok("append device indices: one launch, no copy, no sync; the kernel's bounds in the parameters")

    # host indices with a device cache: validated, one upload; kv_indices longer than kv_indptr[-1]
    hb, hpp = np.arange(nreq, dtype=np.int32), np.full(nreq, 20, np.int32)
    hix, hip, hlp = np.arange(40, dtype=np.int32), (np.arange(nreq + 1) * 2).astype(np.int32), np.full(nreq, 5, np.int32)
    t = [host_index(a) for a in (hb, hpp, hix, hip, hlp)]
    calls, p = drv.call(AppendParams, lambda: lib.flashinfer_swift_append_paged_kv_cache_tensors(
        ak.ref(), av.ref(), t[0].ref(), t[1].ref(), kc.ref(), vc.ref(), t[2].ref(), t[3].ref(), t[4].ref(), 0, 0.0, 0.0, stream))
    expect(calls == (1, 1, 0, 0), f"append, host indices: {calls}")
    expect((p.batch_size, p.num_indices, p.num_pages) == (nreq, 2 * nreq, pages), f"host append bounds {p.batch_size} {p.num_indices}")
    ok("append host indices (kv_indices longer than kv_indptr[-1]): validated, one upload, no sync")

    # host indices out of range: refused before anything is enqueued
    bad_pos = host_index(np.full(nreq, 21, np.int32))  # 2 pages of 16, last page 5: 21 tokens, positions < 21
    before = drv.counts()
    status = lib.flashinfer_swift_append_paged_kv_cache_tensors(ak.ref(), av.ref(), t[0].ref(), bad_pos.ref(), kc.ref(), vc.ref(),
                                                                t[2].ref(), t[3].ref(), t[4].ref(), 0, 0.0, 0.0, stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "positions" in msg and drv.counts() == before, f"bad host positions: {status} {msg}")
    ok("append host position outside its request: an error, nothing enqueued")

    # mixed placement of the append's index tensors
    status = lib.flashinfer_swift_append_paged_kv_cache_tensors(ak.ref(), av.ref(), bi.ref(), t[1].ref(), kc.ref(), vc.ref(),
                                                                ix.ref(), ipt.ref(), lp.ref(), 0, 0.0, 0.0, stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "positions" in msg and "on the CPU" in msg, f"mixed append: {status} {msg}")
    ok("append with positions on the CPU and the other indices on the GPU: an error")

    # shapes: positions shorter than batch_indices
    short = fake(addr[1], (nnz_a - 1,), code=0, bits=32)
    status = lib.flashinfer_swift_append_paged_kv_cache_tensors(ak.ref(), av.ref(), bi.ref(), short.ref(), kc.ref(), vc.ref(),
                                                                ix.ref(), ipt.ref(), lp.ref(), 0, 0.0, 0.0, stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "positions" in msg, f"short positions: {status} {msg}")
    ok("append positions shorter than batch_indices: an error")

    # ---- merge_state_in_place with a mask on the device ----
    n, h, hd = 37, 4, 64
    mv, ms = fake(base + (26 << 30), (n, h, hd)), fake(base + (27 << 30), (n, h), bits=32)
    mvo, mso = fake(base + (28 << 30), (n, h, hd)), fake(base + (29 << 30), (n, h), bits=32)
    dmask = fake(base + (30 << 30), (n,), code=6, bits=8)  # bool
    calls, p = drv.call(MergeParams, lambda: lib.flashinfer_swift_merge_state_in_place_mask_tensor(
        mv.ref(), ms.ref(), mvo.ref(), mso.ref(), dmask.ref(), stream))
    expect(calls == (1, 0, 0, 0) and p.mask == base + (30 << 30) and p.n == n and p.va == p.v_out == base + (26 << 30),
           f"merge, device mask: {calls}, mask {p.mask:#x}")
    ok("merge_state_in_place device bool mask: one launch, no copy, no sync; the mask's address in the parameters")
    hmask = host_index(np.arange(n) % 2 == 0)
    calls, p = drv.call(MergeParams, lambda: lib.flashinfer_swift_merge_state_in_place_mask_tensor(
        mv.ref(), ms.ref(), mvo.ref(), mso.ref(), hmask.ref(), stream))
    expect(calls == (1, 1, 0, 0) and p.mask not in (0, hmask.t.data), f"merge, host mask: {calls}")
    ok("merge_state_in_place host mask: uploaded (one copy), no sync")
    short = fake(base + (30 << 30), (n - 1,), code=6, bits=8)
    status = lib.flashinfer_swift_merge_state_in_place_mask_tensor(mv.ref(), ms.ref(), mvo.ref(), mso.ref(), short.ref(), stream)
    msg = lib.flashinfer_swift_last_error().decode()
    expect(status != 0 and "mask" in msg, f"short mask: {status} {msg}")
    ok("merge_state_in_place mask of the wrong length: an error")

    print(f"host-path-indices: {passed} cases passed")


if __name__ == "__main__":
    main()
