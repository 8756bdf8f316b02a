"""The C ABI's CUDA host path without a GPU: the library on the null driver (scripts/nullcuda.c,
FLASHINFER_CUDA_DRIVER), a 32-layer batch decode step through flashinfer_swift_batch_decode_plan /
_run with CUDA DLTensors over fake device addresses, called as BatchDecodeWithPagedKVCacheWrapper.run's
per-layer fast path calls it (PyDLL, prebuilt references, out given, no LSE). Kernels are JIT-compiled
(real NVRTC) but not run: what this measures is the host work alone.
    FLASHINFER_CUDA_DRIVER=/path/libcuda.so.1 [LD_PRELOAD=/path/libmalloccount.so] python3 host_path_decode.py [steps]
Prints one line `host-path: PATH, batch B, R run() calls, X.XX us per run(), A allocations per run()`
per decode path (use_tensor_cores 0 and 1: the CUDA-core kernel, the batch prefill kernel's
tensor-core path) and batch, then one for the batch prefill wrapper's run() over 8 layers and one
for the cascade wrapper's run() (2 levels) over 8 layers (allocations "n/a" without the malloc counter);
python/tests/test_host_path.py checks it."""
import ctypes
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402
import malloccount  # noqa: E402

DEVICE = types.SimpleNamespace(type="cuda", index=0)
STREAM = 0x7000  # a foreign stream handle, as torch's would be: the null driver accepts any


def fake_cuda(address, shape, bits=16):
    """A DLTensor on CUDA device 0 at a fake address (never dereferenced), compact strides."""
    strides, s = [], 1
    for n in reversed(shape):
        strides.insert(0, s)
        s *= n
    t = fi._Tensor.__new__(fi._Tensor)
    t._set(None, address, tuple(shape), tuple(strides), fi._kDLFloat, bits, DEVICE)
    return t


def measure(label, fn, handle, q, out, caches, count, steps):
    """Runs fn (an ABI run entry) over every layer's (K, V) `steps` times after 3 warm-up steps
    (the first compiles the kernel and fills the descriptor caches); prints the host-path line."""
    run = fi._hot(fn)
    refs = [(k._ref, v._ref) for k, v in caches]

    def step():
        for rk, rv in refs:
            status = run(handle, q._ref, rk, rv, out._ref, None, STREAM)
            if status:
                fi._check(status)

    per_step, allocs = malloccount.time_calls(step, steps, count, warmup=3)
    per = f"{allocs / len(caches):.2f}" if allocs is not None else "n/a"
    print(f"host-path: {label}, {steps * len(caches)} run() calls, {per_step / len(caches) * 1e6:.2f} us per run(), {per} allocations per run()")


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    lib = fi._library()
    count = malloccount.counter()
    layers, hq, hkv, d, page, kv_len = 32, 32, 8, 128, 16, 4096
    for tensor_cores, batch in ((0, 1), (0, 64), (1, 1), (1, 64)):
        pages_per = kv_len // page
        indptr = (np.arange(batch + 1) * pages_per).astype(np.int32)
        indices = np.arange(batch * pages_per, dtype=np.int32)
        last = np.full(batch, page, np.int32)
        handle = ctypes.c_void_p()
        fi._check(lib.flashinfer_swift_batch_decode_create(tensor_cores, ctypes.byref(handle)))
        opts = fi._options(False, "NONE", "NHD", -1, None, None, None, None)
        i32p = ctypes.POINTER(ctypes.c_int32)
        f16 = fi._data_type("float16", "q_data_type")
        fi._check(lib.flashinfer_swift_batch_decode_plan(
            handle, indptr.ctypes.data_as(i32p), indices.ctypes.data_as(i32p), last.ctypes.data_as(i32p), batch, hq, hkv, d,
            page, f16, f16, ctypes.byref(opts), fi._DLDevice(fi._kDLCUDA, 0), ctypes.c_void_p(STREAM)))
        base = 1 << 40
        pages = batch * pages_per
        q = fake_cuda(base, (batch, hq, d))
        out = fake_cuda(base + (1 << 30), (batch, hq, d))
        caches = [(fake_cuda(base + (2 + 2 * l) * (1 << 32), (pages, page, hkv, d)),
                   fake_cuda(base + (3 + 2 * l) * (1 << 32), (pages, page, hkv, d))) for l in range(layers)]
        path = "tensor cores" if tensor_cores else "CUDA cores"
        measure(f"{path}, batch {batch}", lib.flashinfer_swift_batch_decode_run, handle, q, out, caches, count, steps)
        lib.flashinfer_swift_batch_decode_destroy(handle)
    # The batch prefill wrapper's run() (paged, causal; on this H200-shaped device the Hopper tier:
    # TMA descriptors in its launch arguments).
    batch, qo_len, kv_len, layers = 8, 128, 1024, 8
    pages_per = kv_len // page
    qo = (np.arange(batch + 1) * qo_len).astype(np.int32)
    kvp = (np.arange(batch + 1) * pages_per).astype(np.int32)
    indices = np.arange(batch * pages_per, dtype=np.int32)
    last = np.full(batch, page, np.int32)
    handle = ctypes.c_void_p()
    fi._check(lib.flashinfer_swift_batch_prefill_create(ctypes.byref(handle)))
    opts = fi._options(True, "NONE", "NHD", -1, None, None, None, None)
    i32p = ctypes.POINTER(ctypes.c_int32)
    f16 = fi._data_type("float16", "q_data_type")
    fi._check(lib.flashinfer_swift_batch_prefill_plan(
        handle, qo.ctypes.data_as(i32p), kvp.ctypes.data_as(i32p), indices.ctypes.data_as(i32p), last.ctypes.data_as(i32p),
        batch, hq, hkv, d, page, f16, f16, ctypes.byref(opts), None, None, fi._DLDevice(fi._kDLCUDA, 0),
        ctypes.c_void_p(STREAM)))
    base, pages = 1 << 41, batch * pages_per
    q = fake_cuda(base, (batch * qo_len, hq, d))
    out = fake_cuda(base + (1 << 32), (batch * qo_len, hq, d))
    caches = [(fake_cuda(base + (2 + 2 * l) * (1 << 33), (pages, page, hkv, d)),
               fake_cuda(base + (3 + 2 * l) * (1 << 33), (pages, page, hkv, d))) for l in range(layers)]
    measure(f"batch prefill (paged, causal), batch {batch}", lib.flashinfer_swift_batch_prefill_run, handle, q, out, caches,
            count, steps)
    lib.flashinfer_swift_batch_prefill_destroy(handle)
    # The cascade wrapper's run(): two levels, a 2,048-token prefix shared by the whole batch and
    # each request's own 512 tokens, one query token per request (a decode step with a shared prompt).
    batch, shared, own, layers = 16, 2048, 512, 8
    qo = [np.array([0, batch], np.int32), np.arange(batch + 1, dtype=np.int32)]
    ip = [np.array([0, shared // page], np.int32), (np.arange(batch + 1) * (own // page)).astype(np.int32)]
    ix = [np.arange(shared // page, dtype=np.int32), shared // page + np.arange(batch * own // page, dtype=np.int32)]
    lp = [np.full(1, page, np.int32), np.full(batch, page, np.int32)]
    handle = ctypes.c_void_p()
    fi._check(lib.flashinfer_swift_cascade_create(ctypes.byref(handle)))
    opts = fi._options(False, "NONE", "NHD", -1, None, None, None, None)

    def ptrs(arrs):
        return (i32p * 2)(*[a.ctypes.data_as(i32p) for a in arrs])

    sizes = np.array([1, batch], np.int32)
    fi._check(lib.flashinfer_swift_cascade_plan(
        handle, 2, ptrs(qo), ptrs(ip), ptrs(ix), ptrs(lp), sizes.ctypes.data_as(i32p), hq, hkv, d, page, f16, f16,
        ctypes.byref(opts), fi._DLDevice(fi._kDLCUDA, 0), ctypes.c_void_p(STREAM)))
    base, pages = 1 << 42, (shared + batch * own) // page
    q = fake_cuda(base, (batch, hq, d))
    out = fake_cuda(base + (1 << 32), (batch, hq, d))
    caches = [(fake_cuda(base + (2 + 2 * l) * (1 << 33), (pages, page, hkv, d)),
               fake_cuda(base + (3 + 2 * l) * (1 << 33), (pages, page, hkv, d))) for l in range(layers)]
    measure(f"cascade (2 levels, shared prefix {shared}), batch {batch}", lib.flashinfer_swift_cascade_run, handle, q, out,
            caches, count, steps)
    lib.flashinfer_swift_cascade_destroy(handle)


if __name__ == "__main__":
    main()
