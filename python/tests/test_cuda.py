"""The C ABI's CUDA path from PyTorch: single decode / prefill on CUDA tensors against a float64
PyTorch reference (upstream's sweep axes, trimmed). Skipped without torch or a GPU; the GPU
machine runs it (scripts/device-suite.sh has no mode for it yet: `python3 -m pytest
python/tests/test_cuda.py`, or `python3 python/tests/test_cuda.py` without pytest).

Tolerances are the library's (Tolerance.attention): f16 atol = rtol = 1e-3 (1e-2 with a soft cap),
bf16 1e-2."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402

try:
    import torch
    HAVE_CUDA = torch.cuda.is_available()
except Exception:  # noqa: BLE001 - no torch at all
    torch = None
    HAVE_CUDA = False

try:
    import pytest
    pytestmark = pytest.mark.skipif(not HAVE_CUDA, reason="needs torch with CUDA")
except ImportError:
    pytest = None


def reference(q, k, v, kv_layout, causal, sm_scale, logits_soft_cap, window_left):
    """Float64 attention: q [qo, Hq, D], k/v NHD or HND; returns output [qo, Hq, D] and base-2 LSE."""
    if kv_layout == "HND":
        k, v = k.transpose(0, 1), v.transpose(0, 1)
    q, k, v = q.double(), k.double(), v.double()
    qo, hq, d = q.shape
    kv, hkv = k.shape[0], k.shape[1]
    g = hq // hkv
    k = k.repeat_interleave(g, dim=1)
    v = v.repeat_interleave(g, dim=1)
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    s = torch.einsum("qhd,khd->hqk", q, k) * scale
    if logits_soft_cap:
        s = logits_soft_cap * torch.tanh(s / logits_soft_cap)
    qpos = torch.arange(qo, device=q.device)[:, None] + (kv - qo)
    kpos = torch.arange(kv, device=q.device)[None, :]
    keep = torch.ones(qo, kv, dtype=torch.bool, device=q.device)
    if causal:
        keep &= kpos <= qpos
    if window_left is not None and window_left >= 0:
        keep &= kpos >= qpos - window_left
    s = s.masked_fill(~keep[None], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # [h, q]
    p = torch.exp(s - lse[..., None]).nan_to_num(0.0)
    out = torch.einsum("hqk,khd->qhd", p, v)
    return out, (lse / math.log(2)).transpose(0, 1)


def tolerance(dtype, soft_cap):
    if dtype == torch.bfloat16 or soft_cap:
        return 1e-2, 1e-2
    return 1e-3, 1e-3


def close(got, expected, atol, rtol, what):
    got = got.double()
    finite = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(got), finite), f"{what}: non-finite values differ"
    err = (got[finite] - expected[finite]).abs()
    bound = atol + rtol * expected[finite].abs()
    bad = int((err > bound).sum())
    assert bad == 0, f"{what}: {bad} elements out of tolerance (atol {atol}, rtol {rtol}); max |err| {float(err.max()):.3g}"


DECODE_CASES = [
    # kv_len, Hq, Hkv, D, dtype, layout, soft cap, window
    (1, 32, 8, 128, "float16", "NHD", None, -1),
    (17, 4, 4, 64, "bfloat16", "HND", None, -1),
    (4096, 32, 8, 128, "float16", "NHD", None, -1),
    (999, 8, 1, 256, "float16", "HND", 30.0, -1),
    (32768, 32, 8, 128, "bfloat16", "NHD", None, 13),
]


def _decode_case(kv_len, hq, hkv, d, dtype, layout, cap, window, fused):
    dt = getattr(torch, dtype)
    g = torch.Generator(device="cuda").manual_seed(kv_len * 7 + hq)
    q = torch.randn(hq, d, device="cuda", dtype=dt, generator=g)
    shape = (kv_len, hkv, d) if layout == "NHD" else (hkv, kv_len, d)
    if fused:
        # K and V as views into one [.., 2, ..] buffer: strided DLTensors.
        kv = torch.randn((shape[0], 2) + shape[1:], device="cuda", dtype=dt, generator=g)
        k, v = kv[:, 0], kv[:, 1]
    else:
        k = torch.randn(shape, device="cuda", dtype=dt, generator=g)
        v = torch.randn(shape, device="cuda", dtype=dt, generator=g)
    out, lse = fi.single_decode_with_kv_cache(q, k, v, kv_layout=layout, logits_soft_cap=cap, window_left=window,
                                              return_lse=True)
    torch.cuda.synchronize()
    assert out.is_cuda and out.dtype == dt and out.shape == q.shape and lse.shape == (hq,)
    ref, ref_lse = reference(q[None], k, v, layout, False, None, cap, window)
    atol, rtol = tolerance(dt, cap)
    close(out, ref[0], atol, rtol, "output")
    close(lse, ref_lse[0], atol, rtol, "lse")


def test_decode():
    for case in DECODE_CASES:
        for fused in (False, True):
            _decode_case(*case, fused=fused)


PREFILL_CASES = [
    # qo, kv, Hq, Hkv, D, dtype, layout, causal, cap
    (1, 37, 8, 2, 128, "float16", "NHD", True, None),
    (37, 1000, 32, 8, 128, "float16", "HND", True, None),
    (128, 128, 4, 4, 64, "bfloat16", "NHD", False, None),
    (65, 300, 8, 8, 256, "float16", "NHD", True, 30.0),
]


def test_prefill():
    for qo, kv, hq, hkv, d, dtype, layout, causal, cap in PREFILL_CASES:
        dt = getattr(torch, dtype)
        g = torch.Generator(device="cuda").manual_seed(qo * 31 + kv)
        q = torch.randn(qo, hq, d, device="cuda", dtype=dt, generator=g)
        shape = (kv, hkv, d) if layout == "NHD" else (hkv, kv, d)
        k = torch.randn(shape, device="cuda", dtype=dt, generator=g)
        v = torch.randn(shape, device="cuda", dtype=dt, generator=g)
        out, lse = fi.single_prefill_with_kv_cache(q, k, v, causal=causal, kv_layout=layout, logits_soft_cap=cap,
                                                   return_lse=True)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v, layout, causal, None, cap, -1)
        atol, rtol = tolerance(dt, cap)
        close(out, ref, atol, rtol, f"prefill qo={qo} kv={kv} output")
        close(lse, ref_lse, atol, rtol, f"prefill qo={qo} kv={kv} lse")


def test_decode_fp8():
    """FP8 K/V (torch.float8_e4m3fn / float8_e5m2, DLPack codes 10 / 12) with k_scale / v_scale:
    against the float64 reference on the dequantized values (the kernel reads them exactly)."""
    for dtype_name, k_scale, v_scale in (("float8_e4m3fn", 0.37, 2.5), ("float8_e5m2", 2.0, 0.5)):
        f8 = getattr(torch, dtype_name)
        q = torch.randn(32, 128, device="cuda", dtype=torch.float16)
        k = torch.randn(4096, 8, 128, device="cuda").to(f8)
        v = torch.randn(4096, 8, 128, device="cuda").to(f8)
        out, lse = fi.single_decode_with_kv_cache(q, k, v, k_scale=k_scale, v_scale=v_scale, return_lse=True)
        torch.cuda.synchronize()
        ref, ref_lse = reference(q[None], k.double() * k_scale, v.double() * v_scale, "NHD", False, None, None, -1)
        close(out, ref[0], 1e-3, 1e-3, f"{dtype_name} output")
        close(lse, ref_lse[0], 1e-3, 1e-3, f"{dtype_name} lse")


def test_batch_decode_wrapper():
    """BatchDecodeWithPagedKVCacheWrapper on CUDA tensors (plan on the current stream, run 3 layers),
    each request against the float64 reference over its pages."""
    page_size, hq, hkv, d = 16, 32, 8, 128
    lens = [1, 300, 4096, 17, 1000]
    pages_per = [(n + page_size - 1) // page_size for n in lens]
    num_pages = sum(pages_per) + 7
    perm = torch.randperm(num_pages)
    indptr = torch.tensor([0] + list(torch.tensor(pages_per).cumsum(0)), dtype=torch.int32)
    indices = perm[: int(indptr[-1])].to(torch.int32)
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(lens, pages_per)], dtype=torch.int32)
    for use_tc in (False, True):
        w = fi.BatchDecodeWithPagedKVCacheWrapper(torch.empty(1, device="cuda"), use_tensor_cores=use_tc)
        w.plan(indptr, indices, last, hq, hkv, d, page_size)
        for layer in range(3):
            cache = torch.randn(num_pages, 2, page_size, hkv, d, device="cuda", dtype=torch.float16)
            q = torch.randn(len(lens), hq, d, device="cuda", dtype=torch.float16)
            out, lse = w.run(q, cache, return_lse=True)
            torch.cuda.synchronize()
            for b, n in enumerate(lens):
                pages = indices[int(indptr[b]):int(indptr[b + 1])].long().cuda()
                k = cache[pages, 0].reshape(-1, hkv, d)[:n]
                v = cache[pages, 1].reshape(-1, hkv, d)[:n]
                ref, ref_lse = reference(q[b][None], k, v, "NHD", False, None, None, -1)
                close(out[b], ref[0], 1e-3, 1e-3, f"tc={use_tc} layer {layer} request {b}")
                close(lse[b], ref_lse[0], 1e-3, 1e-3, f"tc={use_tc} layer {layer} request {b} lse")


def test_batch_prefill_wrappers():
    """The paged and ragged batch prefill wrappers on CUDA tensors, causal, against the float64
    reference per request."""
    qo_lens, kv_lens, hq, hkv, d, page_size = [17, 1, 128], [300, 17, 1000], 32, 8, 128, 16
    qo_indptr = torch.tensor([0] + list(torch.tensor(qo_lens).cumsum(0)), dtype=torch.int32)
    kv_indptr = torch.tensor([0] + list(torch.tensor(kv_lens).cumsum(0)), dtype=torch.int32)
    q = torch.randn(int(qo_indptr[-1]), hq, d, device="cuda", dtype=torch.float16)
    k = torch.randn(int(kv_indptr[-1]), hkv, d, device="cuda", dtype=torch.float16)
    v = torch.randn_like(k)
    ragged = fi.BatchPrefillWithRaggedKVCacheWrapper(torch.empty(1, device="cuda"))
    ragged.plan(qo_indptr, kv_indptr, hq, hkv, d, causal=True)
    out_r = ragged.run(q, k, v)
    pages_per = [(n + page_size - 1) // page_size for n in kv_lens]
    indptr = torch.tensor([0] + list(torch.tensor(pages_per).cumsum(0)), dtype=torch.int32)
    indices = torch.arange(int(indptr[-1]), dtype=torch.int32)
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(kv_lens, pages_per)], dtype=torch.int32)
    cache = torch.zeros(int(indptr[-1]), 2, page_size, hkv, d, device="cuda", dtype=torch.float16)
    for b, n in enumerate(kv_lens):
        p0 = int(indptr[b])
        flat = cache[p0:p0 + pages_per[b]].transpose(0, 1).reshape(2, -1, hkv, d)
        flat[0, :n] = k[int(kv_indptr[b]):int(kv_indptr[b + 1])]
        flat[1, :n] = v[int(kv_indptr[b]):int(kv_indptr[b + 1])]
        cache[p0:p0 + pages_per[b]] = flat.reshape(2, pages_per[b], page_size, hkv, d).transpose(0, 1)
    paged = fi.BatchPrefillWithPagedKVCacheWrapper(torch.empty(1, device="cuda"))
    paged.plan(qo_indptr, indptr, indices, last, hq, hkv, d, page_size, causal=True)
    out_p = paged.run(q, cache)
    torch.cuda.synchronize()
    for b in range(len(qo_lens)):
        qs, ks = slice(int(qo_indptr[b]), int(qo_indptr[b + 1])), slice(int(kv_indptr[b]), int(kv_indptr[b + 1]))
        ref, _ = reference(q[qs], k[ks], v[ks], "NHD", True, None, None, -1)
        close(out_r[qs], ref, 1e-3, 1e-3, f"ragged request {b}")
        close(out_p[qs], ref, 1e-3, 1e-3, f"paged request {b}")


def test_current_stream_and_errors():
    """Work runs on torch's current stream; mixed devices and bad shapes raise ValueError."""
    q = torch.randn(32, 128, device="cuda", dtype=torch.float16)
    k = torch.randn(2048, 8, 128, device="cuda", dtype=torch.float16)
    v = torch.randn(2048, 8, 128, device="cuda", dtype=torch.float16)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = fi.single_decode_with_kv_cache(q, k, v)
    s.synchronize()
    ref, _ = reference(q[None], k, v, "NHD", False, None, None, -1)
    close(out, ref[0], 1e-3, 1e-3, "side-stream output")
    for bad, match in [((q.cpu(), k, v), "CPU|CUDA"), ((q, k[..., :64], v[..., :64]), "head_dim")]:
        try:
            fi.single_decode_with_kv_cache(*bad)
        except (ValueError, NotImplementedError) as e:
            assert any(m in str(e) for m in match.split("|")), str(e)
        else:
            raise AssertionError(f"accepted {match}")


if __name__ == "__main__":
    if not HAVE_CUDA:
        print("skipped: needs torch with CUDA")
        sys.exit(0)
    failed = 0
    tests = [("test_decode", test_decode), ("test_prefill", test_prefill), ("test_decode_fp8", test_decode_fp8),
             ("test_batch_decode_wrapper", test_batch_decode_wrapper),
             ("test_batch_prefill_wrappers", test_batch_prefill_wrappers),
             ("test_current_stream_and_errors", test_current_stream_and_errors)]
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
