"""Issue 15's overhead figure: host µs per BatchDecodeWithPagedKVCacheWrapper.run() from Python in a
32-layer loop (plan once, run per layer over each layer's own paged cache, out= preallocated and
not), against the GPU time of the same step. Run on the GPU machine from the repository root:
    FLASHINFER_SWIFT_LIB=$PWD/.device/libflashinfer_swift.so python3 python/tests/overhead_batch_decode.py
Compare with `flashinfer bench decode-step` (the same step from Swift: host µs per run and GPU µs).
`--side-stream` runs everything on a new torch stream instead of the current (legacy default) one."""
import contextlib, sys, time
sys.path.insert(0, "python")
import torch
import flashinfer_swift as fi

side = "--side-stream" in sys.argv
ctx = torch.cuda.stream(torch.cuda.Stream()) if side else contextlib.nullcontext()
ctx.__enter__()

layers, hq, hkv, d, ps = 32, 32, 8, 128, 16
for batch, kv_len in [(1, 4096), (64, 4096)]:
    pages_per = (kv_len + ps - 1) // ps
    num_pages = batch * pages_per
    caches = [torch.randn(num_pages, 2, ps, hkv, d, device="cuda", dtype=torch.float16) for _ in range(layers)]
    q = torch.randn(batch, hq, d, device="cuda", dtype=torch.float16)
    out = torch.empty_like(q)
    indptr = torch.arange(0, batch + 1, dtype=torch.int32) * pages_per
    indices = torch.arange(num_pages, dtype=torch.int32)
    last = torch.full((batch,), kv_len - (pages_per - 1) * ps, dtype=torch.int32)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(torch.empty(1 << 20, dtype=torch.uint8, device="cuda"), "NHD")
    w.plan(indptr, indices, last, hq, hkv, d, ps)
    for c in caches[:4]:
        w.run(q, c, out=out)
    torch.cuda.synchronize()
    for name, kwargs in [("out= given", {"out": out}), ("out allocated", {})]:
        steps = 20
        host = []
        t0 = time.perf_counter()
        for _ in range(steps):
            h0 = time.perf_counter()
            for c in caches:
                w.run(q, c, **kwargs)
            host.append(time.perf_counter() - h0)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        host.sort()
        print(f"python batch decode B={batch} kv={kv_len} 32/8 D128, {layers} layers, {name}{' (side stream)' if side else ''}: "
              f"host {1e6 * host[len(host) // 2] / layers:.1f} us per run() (median step), "
              f"wall incl. GPU {1e6 * (t1 - t0) / (steps * layers):.1f} us per layer")
    del caches
    torch.cuda.empty_cache()
