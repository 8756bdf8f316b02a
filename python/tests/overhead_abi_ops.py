"""The C ABI calls of the per-layer ops alone (norm, RoPE with device int64 positions, the append with device
indices) on the null driver with fake CUDA DLTensors: host µs and heap allocations per call (allocations
under scripts/malloccount.c via LD_PRELOAD). Not a GPU measurement.
    FLASHINFER_CUDA_DRIVER=/path/libcuda.so.1 [LD_PRELOAD=/path/libmalloccount.so] python3 overhead_abi_ops.py"""
import os, sys, ctypes
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import host_path_indices as hp
import malloccount
import flashinfer_swift as fi
lib = fi._library()
count = malloccount.counter()
st = ctypes.c_void_p(0x7000)
base = 1 << 40
x, w, o = hp.fake(base, (64, 8192)), hp.fake(base + (1 << 32), (8192,)), hp.fake(base + (2 << 32), (64, 8192))
q, k = hp.fake(base + (3 << 32), (64, 32, 128)), hp.fake(base + (4 << 32), (64, 8, 128))
pos = hp.fake(base + (5 << 32), (64,), code=0, bits=64)
opts = fi._rope_options(None, False, 1, 1e4)
kc, vc = hp.fake(base + (6 << 32), (64, 16, 8, 128)), hp.fake(base + (7 << 32), (64, 16, 8, 128))
ak, av = hp.fake(base + (8 << 32), (64, 8, 128)), hp.fake(base + (9 << 32), (64, 8, 128))
bi, ps = hp.fake(base + (10 << 32), (64,), code=0, bits=32), hp.fake(base + (11 << 32), (64,), code=0, bits=32)
ix, ip, lp = hp.fake(base + (12 << 32), (64,), code=0, bits=32), hp.fake(base + (13 << 32), (65,), code=0, bits=32), hp.fake(base + (14 << 32), (64,), code=0, bits=32)
cases = [
 ("norm", lambda: lib.flashinfer_swift_norm(0, x.ref(), None, w.ref(), None, o.ref(), 1e-6, st)),
 ("rope_tensors", lambda: lib.flashinfer_swift_rope_tensors(q.ref(), k.ref(), None, None, None, None, pos.ref(), ctypes.byref(opts), st)),
 ("append_tensors", lambda: lib.flashinfer_swift_append_paged_kv_cache_tensors(ak.ref(), av.ref(), bi.ref(), ps.ref(), kc.ref(), vc.ref(), ix.ref(), ip.ref(), lp.ref(), 0, 0.0, 0.0, st)),
]
for name, f in cases:
    for _ in range(20): assert f() == 0, lib.flashinfer_swift_last_error()
    per_call, allocs = malloccount.time_calls(f, 3000, count, warmup=0)
    print(f"ABI {name}: {per_call*1e6:.2f} us, {allocs if allocs is not None else float('nan'):.1f} allocations per call")
