"""Host µs per call of the Python ops on the CUDA path, without a GPU: the library on the null driver
(scripts/nullcuda.c, FLASHINFER_CUDA_DRIVER; kernels JIT-compiled by the real NVRTC, not run) and
CPU torch tensors dressed as CUDA ones (a torch.Tensor subclass whose device, is_cuda and
data_ptr say CUDA device 0 at a fake address; torch's current stream replaced by a fake handle).
What it measures is the host work of a call from Python through the C ABI — the ctypes descriptors,
validation, launch setup — the part a serving engine pays per layer on top of the kernel.
    FLASHINFER_CUDA_DRIVER=/path/libcuda.so.1 python3 overhead_ops.py [calls]
Prints one `op-overhead: NAME, X.X us per call` line per op. Not a GPU measurement."""
import os
import sys
import types

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402
import malloccount  # noqa: E402

_next = [1 << 45]


class FakeCuda(torch.Tensor):
    """A CPU tensor that reports CUDA device 0 and a fake device address (never dereferenced). No
    __torch_function__ dispatch (a subclass's default would add ~50 µs of Python per descriptor,
    which a real CUDA tensor does not pay)."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def of(t):
        f = torch.Tensor._make_subclass(FakeCuda, t)
        f._addr = _next[0]
        _next[0] += 1 << 32
        return f

    @property
    def device(self):
        return torch.device("cuda", 0)

    @property
    def is_cuda(self):
        return True

    def data_ptr(self):
        return self._addr


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    fi._raw_stream_fn = lambda d: 0x7000
    h, hq, hk, d, nnz = 8192, 32, 8, 128, 64
    x, res, w = (FakeCuda.of(torch.zeros(nnz, h, dtype=torch.float16)) for _ in range(3))
    w = FakeCuda.of(torch.zeros(h, dtype=torch.float16))
    o = FakeCuda.of(torch.zeros(nnz, h, dtype=torch.float16))
    gate = FakeCuda.of(torch.zeros(nnz, 2 * h, dtype=torch.float16))
    q = FakeCuda.of(torch.zeros(nnz, hq, d, dtype=torch.float16))
    k = FakeCuda.of(torch.zeros(nnz, hk, d, dtype=torch.float16))
    pos = FakeCuda.of(torch.zeros(nnz, dtype=torch.int64))
    cache = FakeCuda.of(torch.zeros(4096, d, dtype=torch.float32))
    qf, kf = FakeCuda.of(torch.zeros(nnz, hq * d, dtype=torch.float16)), FakeCuda.of(torch.zeros(nnz, hk * d, dtype=torch.float16))
    pages, page = 64, 16
    kv = FakeCuda.of(torch.zeros(pages, 2, page, hk, d, dtype=torch.float16))
    ak, av = FakeCuda.of(torch.zeros(nnz, hk, d, dtype=torch.float16)), FakeCuda.of(torch.zeros(nnz, hk, d, dtype=torch.float16))
    bi, ps = FakeCuda.of(torch.zeros(nnz, dtype=torch.int32)), FakeCuda.of(torch.zeros(nnz, dtype=torch.int32))
    ix = FakeCuda.of(torch.zeros(pages, dtype=torch.int32))
    ip, lp = FakeCuda.of(torch.zeros(nnz + 1, dtype=torch.int32)), FakeCuda.of(torch.zeros(nnz, dtype=torch.int32))
    ops = [
        ("rmsnorm(out=)", lambda: fi.rmsnorm(x, w, out=o)),
        ("fused_add_rmsnorm", lambda: fi.fused_add_rmsnorm(x, res, w)),
        ("silu_and_mul(out=)", lambda: fi.silu_and_mul(gate, out=o)),
        ("apply_rope_pos_ids_inplace (int64 positions)", lambda: fi.apply_rope_pos_ids_inplace(q, k, pos)),
        ("apply_rope_with_cos_sin_cache_inplace", lambda: fi.apply_rope_with_cos_sin_cache_inplace(pos, qf, kf, d, cache)),
        ("append_paged_kv_cache (device indices)", lambda: fi.append_paged_kv_cache(ak, av, bi, ps, kv, ix, ip, lp)),
    ]
    count = malloccount.counter()
    for name, f in ops:
        per_call, allocs = malloccount.time_calls(f, calls, count)
        allocs = f"{allocs:.1f}" if allocs is not None else "n/a"
        print(f"op-overhead: {name}, {per_call * 1e6:.1f} us per call, {allocs} heap allocations per call (Python's included)")


if __name__ == "__main__":
    main()
