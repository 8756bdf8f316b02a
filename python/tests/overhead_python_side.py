"""The Python side of run()'s host cost alone: BatchDecodeWithPagedKVCacheWrapper.run() over 32
layers' caches with the ABI's run function stubbed out (no library work, no GPU), on torch tensors
when torch imports (CPU tensors suffice: the descriptors are what cost), else NumPy arrays.
    python3 python/tests/overhead_python_side.py
Measured 2026-12-04 on the 2-core dev machine, torch 2.13 CPU: 41.0 µs per run() before the
descriptor cache (4 DLTensors built per call, torch views for the cache halves), 6.8 µs after."""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import numpy as np
import flashinfer_swift as fi

try:
    import torch
    make = lambda *shape: torch.randn(*shape, dtype=torch.float16)
    kind = f"torch {torch.__version__} CPU tensors"
except ImportError:
    make = lambda *shape: np.random.randn(*shape).astype(np.float16)
    kind = "NumPy arrays"

lib = fi._library()


class _Stub:
    """The library, with the decode run replaced by a no-op."""
    flashinfer_swift_batch_decode_run = staticmethod(lambda *a: 0)

    def __getattr__(self, name):
        return getattr(lib, name)


B, hq, hkv, d, ps, pages, layers = 1, 32, 8, 128, 16, 4, 32
caches = [make(pages, 2, ps, hkv, d) for _ in range(layers)]
q = make(B, hq, d)
out = q * 0
w = fi.BatchDecodeWithPagedKVCacheWrapper(None, "NHD")
w.plan(np.array([0, pages], np.int32), np.arange(pages, dtype=np.int32), np.array([ps], np.int32), hq, hkv, d, ps)
fi._lib = _Stub()
try:
    for c in caches:
        w.run(q, c, out=out)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        for c in caches:
            w.run(q, c, out=out)
    t = time.perf_counter() - t0
finally:
    fi._lib = lib
print(f"python side of run() ({kind}, ABI stubbed, {layers} caches): {1e6 * t / (n * layers):.1f} us per call")
