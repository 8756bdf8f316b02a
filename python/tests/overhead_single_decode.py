import os, sys, time
sys.path.insert(0, "python")
import torch, flashinfer_swift as fi
q = torch.randn(32, 128, device="cuda", dtype=torch.float16)
k = torch.randn(16, 8, 128, device="cuda", dtype=torch.float16); v = torch.randn_like(k)
for _ in range(20): fi.single_decode_with_kv_cache(q, k, v)
torch.cuda.synchronize()
n = 2000; t0 = time.perf_counter()
for _ in range(n): fi.single_decode_with_kv_cache(q, k, v)
t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
print(f"python single_decode_with_kv_cache (kv 16, 32/8, D128): {1e6*(t1-t0)/n:.1f} us/call host, {1e6*(t2-t0)/n:.1f} us/call incl. GPU")
