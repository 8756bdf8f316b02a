"""Where the Python side of BatchDecodeWithPagedKVCacheWrapper.run() spends its time, piece by piece,
on the tensors the caller has (CUDA torch tensors on the GPU machine, else CPU torch tensors): the
descriptor-cache keys, the cache halves, the current-stream query, the ctypes call into the library
(a real call with a NULL handle, which fails at once: the argument conversion is what it costs),
and run() whole with the library's run stubbed. µs per call, median of 7 rounds of timeit.
    python3 python/tests/overhead_breakdown.py
Issue 15: the GPU machine measured ~21 µs of Python per run() (33.4 µs in all against Swift's 12)
where the dev machine's CPU tensors gave 7.6: this says which piece grows."""
import ctypes, os, statistics, sys, timeit
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi
import malloccount
import torch

dev = "cuda" if torch.cuda.is_available() else "cpu"
q = torch.randn(1, 32, 128, dtype=torch.float16, device=dev)
cache = torch.randn(256, 2, 16, 8, 128, dtype=torch.float16, device=dev)
out = torch.empty_like(q)
lib = fi._library()
k, v = fi._split_cache(cache)
tq, tk, tv, to = (fi._Tensor.cached(x, n) for x, n in ((q, "q"), (k, "k"), (v, "v"), (out, "out")))
hot = fi._hot(lib.flashinfer_swift_batch_decode_run)
hot_version = fi._hot(lib.flashinfer_swift_version)
rq, rk, rv, ro = tq._ref, tk._ref, tv._ref, to._ref


def us(stmt, n=20000):
    t = timeit.Timer(stmt, globals=globals())
    return statistics.median(t.timeit(n) / n * 1e6 for _ in range(7))


rows = [
    ("q.data_ptr()", "q.data_ptr()"),
    ("q.shape", "q.shape"),
    ("q.stride()", "q.stride()"),
    ("q.device", "q.device"),
    ("cache key of q (ptr, shape, stride, dtype, device)", "(q.data_ptr(), q.shape, q.stride(), q.dtype, q.device)"),
    ("_is_torch(q)", "fi._is_torch(q)"),
    ("_Tensor.cached(q)", "fi._Tensor.cached(q, 'q')"),
    ("_fast_ref(q) (run()'s CUDA path)", "fi._fast_ref(q, 'q')"),
    ("_split_cache(cache) (halves, cached)", "fi._split_cache(cache)"),
    ("current stream (raw accessor)", "fi._raw_stream(q.device)" if dev == "cuda" else "0"),
    ("torch.cuda.current_stream().cuda_stream", "torch.cuda.current_stream(q.device).cuda_stream" if dev == "cuda" else "0"),
    ("ctypes call, 7 arguments (NULL handle: fails at once)",
     "lib.flashinfer_swift_batch_decode_run(None, tq.ref(), tk.ref(), tv.ref(), to.ref(), None, None)"),
    ("the same, PyDLL (GIL held), references prebuilt", "hot(None, rq, rk, rv, ro, None, None)"),
    ("flashinfer_swift_version() through PyDLL (bare ctypes cost)", "hot_version()"),
]
print(f"python side of run() on {dev} tensors, torch {torch.__version__}")
for label, stmt in rows:
    print(f"  {label:58s} {us(stmt):7.2f} µs")

w = fi.BatchDecodeWithPagedKVCacheWrapper(torch.empty(1, device=dev), "NHD")
w.plan(torch.tensor([0, 256], dtype=torch.int32), torch.arange(256, dtype=torch.int32), torch.tensor([16], dtype=torch.int32),
       32, 8, 128, 16)


class _Stub:
    flashinfer_swift_batch_decode_run = staticmethod(lambda *a: 0)

    def __getattr__(self, name):
        return getattr(lib, name)


real = fi._lib
fi._lib = _Stub()
try:
    print(f"  {'run(q, cache, out=out), the library stubbed':58s} {us('w.run(q, cache, out=out)'):7.2f} µs")
finally:
    fi._lib = real
if dev == "cuda":
    w.run(q, cache, out=out)
    torch.cuda.synchronize()
    print(f"  {'run(q, cache, out=out), real (host time, GPU queued)':58s} {us('w.run(q, cache, out=out)', 2000):7.2f} µs")
    torch.cuda.synchronize()
    # The ABI call alone (no Python wrapper): ctypes + the library + the driver's launch(es), on the
    # current (legacy default) stream and on a side stream.
    hs = fi._raw_stream(q.device)
    print(f"  {'ABI run alone (PyDLL, real handle, references prebuilt)':58s} {us('hot(w._handle, rq, rk, rv, ro, None, hs)', 2000):7.2f} µs")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        hs = fi._raw_stream(q.device)
        hot(w._handle, rq, rk, rv, ro, None, hs)
        print(f"  {'the same on a side stream':58s} {us('hot(w._handle, rq, rk, rv, ro, None, hs)', 2000):7.2f} µs")
        torch.cuda.synchronize()
        print(f"  {'run(q, cache, out=out) on the side stream':58s} {us('w.run(q, cache, out=out)', 2000):7.2f} µs")
        torch.cuda.synchronize()
    w.run(q, cache, out=out)
    torch.cuda.synchronize()
    count = malloccount.counter()  # under LD_PRELOAD=scripts/malloccount.c's library: heap allocations per run()
    if count is not None:
        n = 2000
        c0 = count()
        for _ in range(n):
            w.run(q, cache, out=out)
        c1 = count()
        torch.cuda.synchronize()
        print(f"  {'heap allocations (malloc & co.) per run()':58s} {(c1 - c0) / n:7.2f}")
