"""The C ABI's CUDA path from PyTorch: single decode / prefill on CUDA tensors against a float64
PyTorch reference (upstream's sweep axes, trimmed). Skipped without torch or a GPU; the GPU
machine runs it (scripts/device-suite.sh has no mode for it yet: `python3 -m pytest
python/tests/test_cuda.py`, or `python3 python/tests/test_cuda.py` without pytest).

Tolerances are the library's (Tolerance.attention): f16 atol = rtol = 1e-3 (1e-2 with a soft cap),
bf16 1e-2."""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402

try:
    import torch
    HAVE_CUDA = torch.cuda.is_available()
except Exception:  # noqa: BLE001 - no torch at all
    torch = None
    HAVE_CUDA = False

# The tests below the attention ones (cascade, norms, activations, RoPE, sampling) take their device
# from FLASHINFER_SWIFT_TEST_DEVICE (default "cuda"); "cpu" runs them on CPU torch tensors through
# the CPU reference backend, which checks the tests themselves without a GPU.
DEVICE = os.environ.get("FLASHINFER_SWIFT_TEST_DEVICE", "cuda")
ON_DEVICE = torch is not None and (HAVE_CUDA if DEVICE == "cuda" else DEVICE == "cpu")

try:
    import pytest
    needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs torch with CUDA")
    needs_device = pytest.mark.skipif(not ON_DEVICE, reason=f"needs torch with {DEVICE}")
except ImportError:
    pytest = None

    def needs_cuda(f):
        return f

    needs_device = needs_cuda


def reference(q, k, v, kv_layout, causal, sm_scale, logits_soft_cap, window_left, mask=None):
    """Float64 attention: q [qo, Hq, D], k/v NHD or HND, mask [qo, kv] (True keeps) or None; returns
    output [qo, Hq, D] and base-2 LSE."""
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
    if mask is not None:
        keep &= mask.to(q.device)
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
    got, expected = got.double().cpu(), expected.double().cpu()  # a CUDA result against a CPU reference
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


@needs_cuda
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


@needs_cuda
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


@needs_cuda
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


@needs_cuda
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


def _paged_reference(q, cache, indptr, indices, lens, hkv, d):
    """Float64 decode of each request over its pages: [B, Hq, D] and the LSE [B, Hq]."""
    outs, lses = [], []
    for b, n in enumerate(lens):
        pages = indices[int(indptr[b]):int(indptr[b + 1])].long().to(cache.device)
        k = cache[pages, 0].reshape(-1, hkv, d)[:n]
        v = cache[pages, 1].reshape(-1, hkv, d)[:n]
        o, l = reference(q[b][None], k, v, "NHD", False, None, None, -1)
        outs.append(o[0])
        lses.append(l[0])
    return torch.stack(outs), torch.stack(lses)


@needs_cuda
def test_batch_decode_cuda_graph_capture():
    """Issue 15: run() captured with torch.cuda.graph from a wrapper planned outside the graph (on
    the current stream; the capture runs on torch's side stream) and replayed after new q values
    were copied in: each replay against the float64 reference, on both decode paths."""
    page_size, hq, hkv, d, layers = 16, 32, 8, 128, 4
    lens = [4096, 33, 700]
    pages_per = [(n + page_size - 1) // page_size for n in lens]
    num_pages = sum(pages_per)
    indptr = torch.tensor([0] + list(torch.tensor(pages_per).cumsum(0)), dtype=torch.int32)
    indices = torch.randperm(num_pages).to(torch.int32)
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(lens, pages_per)], dtype=torch.int32)
    for use_tc in (False, True):
        caches = [torch.randn(num_pages, 2, page_size, hkv, d, device="cuda", dtype=torch.float16) for _ in range(layers)]
        q = torch.randn(len(lens), hq, d, device="cuda", dtype=torch.float16)
        outs = [torch.empty_like(q) for _ in range(layers)]
        w = fi.BatchDecodeWithPagedKVCacheWrapper(torch.empty(1, device="cuda"), use_tensor_cores=use_tc)
        w.plan(indptr, indices, last, hq, hkv, d, page_size)
        for layer in range(layers):  # warm-up on the current stream, as torch recommends
            w.run(q, caches[layer], out=outs[layer])
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for layer in range(layers):
                w.run(q, caches[layer], out=outs[layer])
        for replay in range(3):
            q.copy_(torch.randn_like(q))
            for o in outs:
                o.fill_(float("nan"))
            graph.replay()
            torch.cuda.synchronize()
            for layer in range(layers):
                ref, _ = _paged_reference(q, caches[layer], indptr, indices, lens, hkv, d)
                close(outs[layer], ref, 1e-3, 1e-3, f"tc={use_tc} replay {replay} layer {layer}")
        # Plain runs after the capture (the wrapper now lives on the capture stream's successor:
        # the current stream again) still agree.
        out = w.run(q, caches[0])
        torch.cuda.synchronize()
        close(out, _paged_reference(q, caches[0], indptr, indices, lens, hkv, d)[0], 1e-3, 1e-3, f"tc={use_tc} plain after")


@needs_cuda
def test_batch_decode_use_cuda_graph_replans():
    """use_cuda_graph=True (upstream's CUDA-graph mode): one capture of run(), then plan() again with
    other lengths and page tables (same batch, within the buffers' capacity) between replays; every
    replay follows the latest plan (float64 reference)."""
    page_size, hq, hkv, d, batch, max_pages = 16, 32, 8, 128, 4, 1024
    cache = torch.randn(max_pages, 2, page_size, hkv, d, device="cuda", dtype=torch.float16)
    q = torch.randn(batch, hq, d, device="cuda", dtype=torch.float16)
    out = torch.empty_like(q)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(
        torch.empty(1, device="cuda"), use_cuda_graph=True,
        paged_kv_indptr_buffer=torch.zeros(batch + 1, dtype=torch.int32, device="cuda"),
        paged_kv_indices_buffer=torch.zeros(max_pages, dtype=torch.int32, device="cuda"),
        paged_kv_last_page_len_buffer=torch.zeros(batch, dtype=torch.int32, device="cuda"))

    def plan(lens, seed):
        pages_per = [(n + page_size - 1) // page_size for n in lens]
        indptr = torch.tensor([0] + list(torch.tensor(pages_per).cumsum(0)), dtype=torch.int32)
        indices = torch.randperm(max_pages, generator=torch.Generator().manual_seed(seed))[: int(indptr[-1])].to(torch.int32)
        last = torch.tensor([n - (p - 1) * page_size for n, p in zip(lens, pages_per)], dtype=torch.int32)
        w.plan(indptr, indices, last, hq, hkv, d, page_size)
        return indptr, indices

    indptr, indices = plan([100, 1, 4096, 17], 1)
    w.run(q, cache, out=out)  # warm-up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        w.run(q, cache, out=out)
    for step, lens in enumerate([[100, 1, 4096, 17], [5000, 33, 7, 2048], [1, 1, 1, 1], [9000, 4000, 16, 300]]):
        indptr, indices = plan(lens, 10 + step)
        q.copy_(torch.randn_like(q))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        ref, _ = _paged_reference(q, cache, indptr, indices, lens, hkv, d)
        close(out, ref, 1e-3, 1e-3, f"replay {step} lens {lens}")


@needs_cuda
def test_decode_step_32_layers_with_append():
    """Issue 15's PyTorch decode step: each of 32 layers appends one token per request to its own
    paged cache (append_paged_kv_cache, with the page table grown for it), the wrapper is planned once
    for the step and run per layer; every layer's output against a float64 reference over the
    cache contents (the appended K/V included)."""
    page_size, hq, hkv, d, layers = 16, 32, 8, 128, 32
    old_lens = [15, 16, 1000, 1]  # 15 → 16 fills a page; 16 → 17 opens one
    lens = [n + 1 for n in old_lens]
    pages_per = [(n + page_size - 1) // page_size for n in lens]
    num_pages = sum(pages_per) + 3
    indptr = torch.tensor([0] + list(torch.tensor(pages_per).cumsum(0)), dtype=torch.int32)
    indices = torch.randperm(num_pages)[: int(indptr[-1])].to(torch.int32)
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(lens, pages_per)], dtype=torch.int32)
    g = torch.Generator(device="cuda").manual_seed(15)
    caches = [torch.randn(num_pages, 2, page_size, hkv, d, device="cuda", dtype=torch.float16, generator=g)
              for _ in range(layers)]
    new_k = torch.randn(layers, len(lens), hkv, d, device="cuda", dtype=torch.float16, generator=g)
    new_v = torch.randn(layers, len(lens), hkv, d, device="cuda", dtype=torch.float16, generator=g)
    append_indptr = torch.arange(len(lens) + 1, dtype=torch.int32)
    seq_lens = fi.get_seq_lens(indptr, last, page_size)
    batch_indices, positions = fi.get_batch_indices_positions(append_indptr, seq_lens, len(lens))
    w = fi.BatchDecodeWithPagedKVCacheWrapper(torch.empty(1, device="cuda"))
    w.plan(indptr, indices, last, hq, hkv, d, page_size)
    qs = torch.randn(layers, len(lens), hq, d, device="cuda", dtype=torch.float16, generator=g)
    outs = []
    for layer in range(layers):
        fi.append_paged_kv_cache(new_k[layer], new_v[layer], batch_indices.cuda(), positions.cuda(), caches[layer],
                                 indices.cuda(), indptr.cuda(), last.cuda())
        outs.append(w.run(qs[layer], caches[layer]))
    torch.cuda.synchronize()
    for layer in range(layers):
        # The appended token must sit where the page table says (position len - 1), exactly.
        for b, n in enumerate(lens):
            page = int(indices[int(indptr[b]) + (n - 1) // page_size])
            slot = (n - 1) % page_size
            assert torch.equal(caches[layer][page, 0, slot], new_k[layer, b]), f"layer {layer} request {b}: appended k"
            assert torch.equal(caches[layer][page, 1, slot], new_v[layer, b]), f"layer {layer} request {b}: appended v"
        ref, _ = _paged_reference(qs[layer], caches[layer], indptr, indices, lens, hkv, d)
        close(outs[layer], ref, 1e-3, 1e-3, f"layer {layer}")


@needs_cuda
def test_decode_step_cuda_graph_with_device_indices():
    """A decode step captured whole with torch.cuda.graph: per layer, RoPE on q and the new k from
    the vLLM-form cos/sin cache at int64 positions on the GPU, append_paged_kv_cache with CUDA index
    tensors, and the decode wrapper's run(). The index tensors are read by the kernels where they are
    (no copy to the host, which a capture would refuse); the page indices come from get_seq_lens /
    get_batch_indices_positions computed with torch ops on the GPU. Each replay (new q, k, v, and
    new RoPE positions written into the captured tensor) equals the same step run eagerly, bit for
    bit, caches included; the first layer's output also against the float64 reference."""
    page_size, hq, hkv, d, layers, max_pos = 16, 8, 2, 128, 4, 4096
    lens = [33, 17, 100]  # after the append
    batch = len(lens)
    pages_per = [(n + page_size - 1) // page_size for n in lens]
    num_pages = sum(pages_per) + 5
    indptr = torch.tensor([0] + list(torch.tensor(pages_per).cumsum(0)), dtype=torch.int32, device="cuda")
    indices = torch.randperm(num_pages, generator=torch.Generator().manual_seed(3))[: int(indptr[-1])].to(torch.int32).cuda()
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(lens, pages_per)], dtype=torch.int32, device="cuda")
    seq_lens = fi.get_seq_lens(indptr, last, page_size)
    assert seq_lens.is_cuda and seq_lens.tolist() == lens
    batch_indices, positions = fi.get_batch_indices_positions(torch.arange(batch + 1, dtype=torch.int32, device="cuda"), seq_lens, batch)
    assert batch_indices.is_cuda and positions.tolist() == [n - 1 for n in lens] and batch_indices.tolist() == list(range(batch))
    rope_pos = positions.to(torch.int64)
    ang = torch.arange(max_pos, dtype=torch.float64)[:, None] * _freqs(d, 1e4, 1.0)[None, :]
    cos_sin = torch.cat([ang.cos(), ang.sin()], dim=1).float().cuda()
    g = torch.Generator(device="cuda").manual_seed(21)
    caches = [torch.randn(num_pages, 2, page_size, hkv, d, device="cuda", dtype=torch.float16, generator=g) for _ in range(layers)]
    q = torch.empty(layers, batch, hq, d, device="cuda", dtype=torch.float16)
    k_new, v_new = (torch.empty(layers, batch, hkv, d, device="cuda", dtype=torch.float16) for _ in range(2))
    outs = torch.empty(layers, batch, hq, d, device="cuda", dtype=torch.float16)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(torch.empty(1, device="cuda"))
    w.plan(indptr, indices, last, hq, hkv, d, page_size)

    def step(q, k_new, v_new, caches, outs, pos):
        for layer in range(layers):
            fi.apply_rope_with_cos_sin_cache_inplace(pos, q[layer].view(batch, hq * d), k_new[layer].view(batch, hkv * d), d,
                                                     cos_sin, is_neox=True)
            fi.append_paged_kv_cache(k_new[layer], v_new[layer], batch_indices, positions, caches[layer], indices, indptr, last)
            w.run(q[layer], caches[layer], out=outs[layer])

    def fill():
        for t in (q, k_new, v_new):
            t.copy_(torch.randn(t.shape, device="cuda", dtype=torch.float16, generator=g))

    fill()
    step(q.clone(), k_new.clone(), v_new.clone(), [c.clone() for c in caches], outs.clone(), rope_pos)  # JIT, warm-up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(q, k_new, v_new, caches, outs, rope_pos)
    for replay in range(3):
        fill()
        if replay == 2:
            rope_pos.copy_(torch.tensor([7, 4000, 1], dtype=torch.int64))
        inputs = (q.clone(), k_new.clone(), v_new.clone(), [c.clone() for c in caches])
        outs.fill_(float("nan"))
        graph.replay()
        e_out = torch.full_like(outs, float("nan"))
        step(*inputs, e_out, rope_pos.clone())
        torch.cuda.synchronize()
        assert torch.equal(outs, e_out), f"replay {replay}: captured step output != eager"
        for layer in range(layers):
            assert torch.equal(caches[layer], inputs[3][layer]), f"replay {replay} layer {layer}: cache != eager"
        # Layer 0 against float64: RoPE'd q (the captured q holds it now) over the cache as appended.
        ref, _ = _paged_reference(q[0], caches[0], indptr.cpu(), indices.cpu(), lens, hkv, d)
        close(outs[0], ref, 1e-3, 1e-3, f"replay {replay} layer 0")
        # Both q buffers were rotated in place (the graph's and the eager step's): the same rotation.
        assert torch.equal(q, inputs[0]) and torch.equal(k_new, inputs[1]), f"replay {replay}: rotated q / k differ from eager"


@needs_cuda
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


def _ragged_to_paged(k, v, kv_indptr, kv_lens, page_size, num_pages, gen):
    """The ragged K/V rows written into a shuffled paged cache: (cache, indptr, indices, last)."""
    hkv, d = k.shape[1], k.shape[2]
    pages_per = [(n + page_size - 1) // page_size for n in kv_lens]
    indptr = _cumsum0(pages_per)
    indices = torch.randperm(num_pages, generator=gen)[: int(indptr[-1])].to(torch.int32)
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(kv_lens, pages_per)], dtype=torch.int32)
    cache = torch.randn(num_pages, 2, page_size, hkv, d, generator=gen).to("cuda", torch.float16)
    for b, n in enumerate(kv_lens):
        rows = torch.arange(n)
        pages = indices[int(indptr[b]) + rows // page_size].long().to("cuda")
        slots = (rows % page_size).to("cuda")
        cache[pages, 0, slots] = k[int(kv_indptr[b]):int(kv_indptr[b + 1])]
        cache[pages, 1, slots] = v[int(kv_indptr[b]):int(kv_indptr[b + 1])]
    return cache, indptr, indices, last


@needs_cuda
def test_batch_prefill_use_cuda_graph_replans():
    """use_cuda_graph=True for BatchPrefillWith{Paged,Ragged}KVCacheWrapper (upstream's mode): one
    capture of run() after the first plan, then plan() again with other batch sizes, lengths and
    page tables within the capacity (and at most the first plan's query rows) between replays;
    every replay follows the latest plan (float64 reference per request, causal)."""
    hq, hkv, d, page_size, max_batch, num_pages = 32, 8, 128, 16, 4, 512
    steps = [([100, 1, 37, 200], [500, 300, 37, 2000]), ([5, 64, 1, 268], [5, 1000, 4000, 300]),
             ([338], [3000]), ([1, 1], [1, 7])]
    max_rows = sum(steps[0][0])
    max_kv = max(sum(kv) for _, kv in steps)
    gen = _cpu_gen(77)
    k = torch.randn(max_kv, hkv, d, generator=gen).to("cuda", torch.float16)
    v = torch.randn(max_kv, hkv, d, generator=gen).to("cuda", torch.float16)
    q = torch.empty(max_rows, hq, d, device="cuda", dtype=torch.float16)
    out = torch.empty_like(q)
    i32 = dict(dtype=torch.int32, device="cuda")
    ragged = fi.BatchPrefillWithRaggedKVCacheWrapper(
        torch.empty(1, device="cuda"), use_cuda_graph=True, qo_indptr_buf=torch.zeros(max_batch + 1, **i32),
        kv_indptr_buf=torch.zeros(max_batch + 1, **i32))
    paged = fi.BatchPrefillWithPagedKVCacheWrapper(
        torch.empty(1, device="cuda"), use_cuda_graph=True, qo_indptr_buf=torch.zeros(max_batch + 1, **i32),
        paged_kv_indptr_buf=torch.zeros(max_batch + 1, **i32), paged_kv_indices_buf=torch.zeros(num_pages, **i32),
        paged_kv_last_page_len_buf=torch.zeros(max_batch, **i32))
    cache = torch.empty(num_pages, 2, page_size, hkv, d, device="cuda", dtype=torch.float16)
    for name in ("ragged", "paged"):
        graph = None
        for step, (qo_lens, kv_lens) in enumerate(steps):
            qo_indptr, kv_indptr = _cumsum0(qo_lens), _cumsum0(kv_lens)
            if name == "ragged":
                ragged.plan(qo_indptr, kv_indptr, hq, hkv, d, causal=True)
                run = lambda: ragged.run(q, k, v)  # noqa: E731
            else:
                c, indptr, indices, last = _ragged_to_paged(k, v, kv_indptr, kv_lens, page_size, num_pages, gen)
                cache.copy_(c)
                paged.plan(qo_indptr, indptr, indices, last, hq, hkv, d, page_size, causal=True)
                run = lambda: paged.run(q, cache)  # noqa: E731
            q.copy_(torch.randn(max_rows, hq, d, generator=gen).to("cuda", torch.float16))
            out.fill_(float("nan"))
            if graph is None:
                run()  # warm-up (loads the kernel) outside the capture
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out.copy_(run())
            graph.replay()
            torch.cuda.synchronize()
            for b in range(len(qo_lens)):
                qs, ks = slice(int(qo_indptr[b]), int(qo_indptr[b + 1])), slice(int(kv_indptr[b]), int(kv_indptr[b + 1]))
                ref, _ = reference(q[qs], k[ks], v[ks], "NHD", True, None, None, -1)
                close(out[qs], ref, 1e-3, 1e-3, f"{name} replay {step} request {b}")
        try:
            (ragged.plan(_cumsum0([max_rows + 1]), _cumsum0([max_rows + 1]), hq, hkv, d) if name == "ragged" else
             paged.plan(_cumsum0([max_rows + 1]), _cumsum0([40]), torch.arange(40, dtype=torch.int32),
                        torch.tensor([16], dtype=torch.int32), hq, hkv, d, page_size))
            raise AssertionError(f"{name}: a plan beyond the first plan's query rows was accepted")
        except ValueError as e:
            assert "query rows" in str(e), str(e)


def _cascade_pages(perm, shared_pages, unique_lens, page_size):
    """A two-level cascade's pages from a permutation of the pool: the shared prefix's (the first
    shared_pages), then each request's own; with the requests' page counts and last-page lengths."""
    unique_pages = [(n + page_size - 1) // page_size for n in unique_lens]
    shared = perm[:shared_pages]
    own, at = [], shared_pages
    for p in unique_pages:
        own.append(perm[at:at + p])
        at += p
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(unique_lens, unique_pages)], dtype=torch.int32)
    return shared, own, unique_pages, last


@needs_cuda
def test_cascade_use_cuda_graph_replans():
    """use_cuda_graph=True for MultiLevelCascadeAttentionWrapper: a two-level cascade (a shared
    prefix, then each request's own pages) captured once and replayed after re-plans with other
    prefix lengths, batch sizes and page tables; each replay against the float64 reference."""
    page_size, hq, hkv, d, max_batch, num_pages = 16, 32, 8, 128, 6, 600
    steps = [(1024, [1, 300, 17, 1000, 5, 64]), (2048, [40, 17]), (16, [1, 1, 1, 2000, 3, 9]), (4096, [129])]
    gen = _cpu_gen(91)
    cache = torch.randn(num_pages, 2, page_size, hkv, d, generator=gen).to("cuda", torch.float16)
    q = torch.empty(max_batch, hq, d, device="cuda", dtype=torch.float16)
    out = torch.empty_like(q)
    i32 = dict(dtype=torch.int32, device="cuda")
    w = fi.MultiLevelCascadeAttentionWrapper(
        2, torch.empty(1, device="cuda"), use_cuda_graph=True,
        qo_indptr_buf_arr=[torch.zeros(2, **i32), torch.zeros(max_batch + 1, **i32)],
        paged_kv_indptr_buf_arr=[torch.zeros(2, **i32), torch.zeros(max_batch + 1, **i32)],
        paged_kv_indices_buf_arr=[torch.zeros(256, **i32), torch.zeros(num_pages, **i32)],
        paged_kv_last_page_len_buf_arr=[torch.zeros(1, **i32), torch.zeros(max_batch, **i32)])
    graph = None
    for step, (shared_len, unique_lens) in enumerate(steps):
        b = len(unique_lens)
        shared_pages = shared_len // page_size
        perm = torch.randperm(num_pages, generator=gen).to(torch.int32)
        shared, own, unique_pages, last = _cascade_pages(perm, shared_pages, unique_lens, page_size)
        w.plan([torch.tensor([0, b], dtype=torch.int32), _cumsum0([1] * b)],
               [torch.tensor([0, shared_pages], dtype=torch.int32), _cumsum0(unique_pages)],
               [shared, torch.cat(own)], [torch.tensor([page_size], dtype=torch.int32), last], hq, hkv, d, page_size)
        # q keeps the first plan's rows (max_batch); this plan's requests are its first b rows.
        q.copy_(torch.randn(max_batch, hq, d, generator=gen).to("cuda", torch.float16))
        out.fill_(float("nan"))
        if graph is None:
            w.run(q, cache)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out.copy_(w.run(q, cache))
        graph.replay()
        torch.cuda.synchronize()
        for r, n in enumerate(unique_lens):
            pages = torch.cat([shared, own[r]]).long().to("cuda")
            k = cache[pages, 0].reshape(-1, hkv, d)[:shared_len + n]
            v = cache[pages, 1].reshape(-1, hkv, d)[:shared_len + n]
            ref, _ = reference(q[r:r + 1], k, v, "NHD", False, None, None, -1)
            close(out[r:r + 1], ref, 1e-3, 1e-3, f"cascade replay {step} (shared {shared_len}, B={b}) request {r}")


@needs_cuda
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


# ---- cascade, norms, activations, RoPE, sampling (on DEVICE) ----

def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _cpu_gen(seed):
    return torch.Generator().manual_seed(seed)


def _cumsum0(xs):
    return torch.tensor([0] + [int(v) for v in torch.tensor(xs).cumsum(0)], dtype=torch.int32)


@needs_device
def test_cascade_wrapper():
    """A two-level cascade (a 1024-token shared prefix, then each request's own pages; decode and
    causal append) against the float64 reference over each request's prefix + own keys."""
    page_size, hq, hkv, d, shared_len = 16, 32, 8, 128, 1024
    shared_pages = shared_len // page_size
    for unique_lens, qo_lens, causal in (([1, 300, 17, 1000], [1, 1, 1, 1], False), ([40, 17, 129], [17, 1, 33], True)):
        g = _cpu_gen(sum(unique_lens))
        num_pages = shared_pages + sum((n + page_size - 1) // page_size for n in unique_lens) + 5
        perm = torch.randperm(num_pages, generator=g).to(torch.int32)
        shared, own, unique_pages, last = _cascade_pages(perm, shared_pages, unique_lens, page_size)
        cache = torch.randn(num_pages, 2, page_size, hkv, d, generator=g).to(DEVICE, torch.float16)
        qo_indptr = _cumsum0(qo_lens)
        total = int(qo_indptr[-1])
        q = torch.randn(total, hq, d, generator=g).to(DEVICE, torch.float16)
        w = fi.MultiLevelCascadeAttentionWrapper(2, torch.empty(1, device=DEVICE))
        w.plan([torch.tensor([0, total], dtype=torch.int32), qo_indptr],
               [torch.tensor([0, shared_pages], dtype=torch.int32), _cumsum0(unique_pages)],
               [shared, torch.cat(own)], [torch.tensor([page_size], dtype=torch.int32), last],
               hq, hkv, d, page_size, causal=causal)
        for layer in range(2):
            if layer:
                cache.normal_()
            out = w.run(q, cache)
            _sync()
            assert out.shape == q.shape and out.dtype == q.dtype and out.device == q.device
            for b, n in enumerate(unique_lens):
                pages = torch.cat([shared, own[b]]).long().to(DEVICE)
                k = cache[pages, 0].reshape(-1, hkv, d)[:shared_len + n]
                v = cache[pages, 1].reshape(-1, hkv, d)[:shared_len + n]
                qs = slice(int(qo_indptr[b]), int(qo_indptr[b + 1]))
                ref, _ = reference(q[qs], k, v, "NHD", causal, None, None, -1)
                close(out[qs], ref, 1e-3, 1e-3, f"cascade causal={causal} layer {layer} request {b}")


def _tol(dtype, loose=False):
    return (1e-3, 1e-3) if dtype == torch.float16 and not loose else (1e-2, 1e-2)


def _rms_ref(x, w, eps, gemma=False):
    x = x.double()
    w = w.double()
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * ((1 + w) if gemma else w)


@needs_device
def test_norms():
    """rmsnorm / gemma_rmsnorm (new and out= outputs), fused_add_rmsnorm / gemma_fused_add_rmsnorm
    (in place), layernorm, against float64; upstream's hidden sizes and a strided row view."""
    for dtype in (torch.float16, torch.bfloat16):
        atol, rtol = _tol(dtype)
        for rows, hidden, stride in ((1, 111, 111), (19, 500, 500), (99, 4096, 4096), (3, 16384, 16384), (33, 4096, 4160)):
            g = _cpu_gen(rows * hidden)
            big = torch.randn(rows, stride, generator=g).to(DEVICE, dtype)
            x = big[:, :hidden]
            w = torch.randn(hidden, generator=g).to(DEVICE, dtype)
            what = f"dtype={dtype} rows={rows} hidden={hidden}"
            out = fi.rmsnorm(x, w, eps=1e-6)
            _sync()
            assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
            close(out, _rms_ref(x, w, 1e-6), atol, rtol, f"rmsnorm {what}")
            buf = torch.empty(rows, hidden, dtype=dtype, device=DEVICE)
            assert fi.gemma_rmsnorm(x, w * 0.2, eps=1e-5, out=buf) is buf
            _sync()
            close(buf, _rms_ref(x, w * 0.2, 1e-5, gemma=True), atol, rtol, f"gemma_rmsnorm {what}")
            for gemma in (False, True):
                r = torch.randn(rows, hidden, generator=g).to(DEVICE, dtype)
                xx = x.clone()
                s = xx.double() + r.double()
                fn = fi.gemma_fused_add_rmsnorm if gemma else fi.fused_add_rmsnorm
                assert fn(xx, r, w, 1e-6) is None
                _sync()
                close(r, s, atol, rtol, f"fused_add gemma={gemma} residual {what}")
                close(xx, _rms_ref(s, w, 1e-6, gemma), atol, rtol, f"fused_add gemma={gemma} output {what}")
            gamma = torch.randn(hidden, generator=g).to(DEVICE)
            beta = torch.randn(hidden, generator=g).to(DEVICE)
            out = fi.layernorm(x.contiguous(), gamma, beta, eps=1e-5)
            _sync()
            xd = x.double()
            ref = torch.nn.functional.layer_norm(xd, (hidden,), gamma.double(), beta.double(), 1e-5)
            close(out, ref, 1e-2, 1e-2, f"layernorm {what}")


@needs_device
def test_activations():
    acts = {"silu_and_mul": lambda t: torch.nn.functional.silu(t),
            "gelu_and_mul": lambda t: torch.nn.functional.gelu(t, approximate="none"),
            "gelu_tanh_and_mul": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}
    for dtype in (torch.float16, torch.bfloat16):
        atol, rtol = _tol(dtype)
        for shape in ((1, 256), (16, 2048), (4, 37, 8192), (7, 222), (3, 32768)):
            g = _cpu_gen(shape[-1])
            x = (torch.randn(shape, generator=g) * 2).to(DEVICE, dtype)
            d = shape[-1] // 2
            for name, act in acts.items():
                ref = act(x[..., :d].double()) * x[..., d:].double()
                out = getattr(fi, name)(x)
                _sync()
                assert out.shape == shape[:-1] + (d,) and out.dtype == dtype
                close(out, ref, atol, rtol, f"{name} dtype={dtype} shape={shape}")
                buf = torch.empty(shape[:-1] + (d,), dtype=dtype, device=DEVICE)
                assert getattr(fi, name)(x, out=buf) is buf
                _sync()
                close(buf, ref, atol, rtol, f"{name} out= dtype={dtype} shape={shape}")


def _freqs(rotary_dim, theta, scale, llama31=None):
    f = theta ** (-2.0 * torch.arange(rotary_dim // 2, dtype=torch.float64) / rotary_dim)
    if llama31 is None:
        return f / scale
    low, high, old = llama31
    a, b = old / (2 * math.pi * (high - low)), -1.0 / (high / low - 1.0)
    s = (f * a + b).clamp(0.0, 1.0)
    return (1 - s) * f / scale + s * f


def _rope_ref(x, pos, rotary_dim, interleave, freqs=None, cos=None, sin=None):
    """x [nnz, H, D] in float64, row t rotated to pos[t] (or by cos / sin [nnz, rotary_dim/2])."""
    x = x.double().clone()
    if cos is None:
        ang = pos.double().cpu()[:, None] * freqs[None, :]
        cos, sin = ang.cos().to(x.device), ang.sin().to(x.device)
    c, s = cos.double()[:, None, :], sin.double()[:, None, :]
    half = rotary_dim // 2
    if interleave:
        a, b = x[..., 0:rotary_dim:2].clone(), x[..., 1:rotary_dim:2].clone()
        x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2] = a * c - b * s, b * c + a * s
    else:
        a, b = x[..., :half].clone(), x[..., half:rotary_dim].clone()
        x[..., :half], x[..., half:rotary_dim] = a * c - b * s, b * c + a * s
    return x


@needs_device
def test_rope():
    """apply_rope / _pos_ids / llama31 (and in place) and apply_rope_with_cos_sin_cache against
    float64; partial rotary dims, interleave; tolerance plus the Float32 angle's error."""
    for dtype in (torch.float16, torch.bfloat16):
        atol, rtol = _tol(dtype)
        for hq, hk, d, rotary_dim, interleave in ((32, 8, 128, None, False), (16, 8, 64, 32, True), (8, 8, 256, 192, False)):
            g = _cpu_gen(d + hq)
            qo = [1, 19, 204, 4]
            indptr = _cumsum0(qo)
            offsets = torch.tensor([0, 15, 99, 9000], dtype=torch.int32)
            nnz = int(indptr[-1])
            pos = torch.cat([offsets[b] + torch.arange(qo[b], dtype=torch.int32) for b in range(len(qo))])
            q = torch.randn(nnz, hq, d, generator=g).to(DEVICE, dtype)
            k = torch.randn(nnz, hk, d, generator=g).to(DEVICE, dtype)
            rd = rotary_dim or d
            tol = atol + 9300 * 2.0 ** -23 * 5
            what = f"dtype={dtype} heads={hq}/{hk} d={d} rotary_dim={rd} interleave={interleave}"
            for llama31 in (None, (1.0, 4.0, 8192.0)):
                if llama31 is None:
                    fr = _freqs(rd, 1e4, 1.0)
                    qr, kr = fi.apply_rope(q, k, indptr.to(DEVICE), offsets.to(DEVICE), rotary_dim=rotary_dim, interleave=interleave)
                else:
                    fr = _freqs(rd, 5e5, 8.0, llama31)
                    qr, kr = fi.apply_llama31_rope(q, k, indptr, offsets, rotary_dim=rotary_dim, interleave=interleave)
                _sync()
                close(qr, _rope_ref(q, pos, rd, interleave, fr), tol, rtol, f"q llama31={bool(llama31)} {what}")
                close(kr, _rope_ref(k, pos, rd, interleave, fr), tol, rtol, f"k llama31={bool(llama31)} {what}")
                q2, k2 = q.clone(), k.clone()
                if llama31 is None:
                    fi.apply_rope_pos_ids_inplace(q2, k2, pos.to(DEVICE), rotary_dim=rotary_dim, interleave=interleave)
                else:
                    fi.apply_llama31_rope_pos_ids_inplace(q2, k2, pos.long(), rotary_dim=rotary_dim, interleave=interleave)
                _sync()
                assert torch.equal(q2, qr) and torch.equal(k2, kr), f"pos_ids in place != apply_rope ({what})"
            # rope_scale / rope_theta, out of place by pos_ids, in place by indptr.
            fr = _freqs(rd, 5e5, 2.0)
            qp, kp = fi.apply_rope_pos_ids(q, k, pos.to(DEVICE), rotary_dim=rotary_dim, interleave=interleave, rope_scale=2,
                                           rope_theta=5e5)
            q3, k3 = q.clone(), k.clone()
            fi.apply_rope_inplace(q3, k3, indptr, offsets, rotary_dim=rotary_dim, interleave=interleave, rope_scale=2,
                                  rope_theta=5e5)
            _sync()
            close(qp, _rope_ref(q, pos, rd, interleave, fr), tol, rtol, f"q scale 2 {what}")
            close(kp, _rope_ref(k, pos, rd, interleave, fr), tol, rtol, f"k scale 2 {what}")
            assert torch.equal(q3, qp) and torch.equal(k3, kp), f"in place != pos_ids ({what})"
            # The cos / sin cache form (vLLM's): [max_position, rd] float32.
            fr = _freqs(rd, 1e4, 1.0)
            ang = torch.arange(10000, dtype=torch.float64)[:, None] * fr[None, :]
            cache = torch.cat([ang.cos(), ang.sin()], dim=1).float().to(DEVICE)
            query, key = q.reshape(nnz, hq * d), k.reshape(nnz, hk * d)
            qc, kc = fi.apply_rope_with_cos_sin_cache(pos.to(DEVICE), query, key, d, cache, is_neox=not interleave)
            _sync()
            cs = cache[pos.long().to(DEVICE)]
            c, s_ = cs[:, :rd // 2], cs[:, rd // 2:]
            close(qc.reshape(nnz, hq, d), _rope_ref(q, pos, rd, interleave, cos=c, sin=s_), atol, rtol, f"cos_sin_cache q {what}")
            close(kc.reshape(nnz, hk, d), _rope_ref(k, pos, rd, interleave, cos=c, sin=s_), atol, rtol, f"cos_sin_cache k {what}")
            q4, k4 = query.clone(), key.clone()
            fi.apply_rope_with_cos_sin_cache_inplace(pos.to(DEVICE), q4, k4, d, cache, is_neox=not interleave)
            _sync()
            assert torch.equal(q4, qc) and torch.equal(k4, kc), f"cos_sin_cache in place ({what})"


def _probs(batch, vocab, seed, scale=1.0):
    g = _cpu_gen(seed)
    return torch.softmax(torch.randn(batch, vocab, generator=g, dtype=torch.float64) * scale, -1).float().to(DEVICE)


def _top_k_keep(p, k):
    """[B, V]: the tokens with fewer than k strictly larger probabilities (k: [B] or a number)."""
    p = p.double()
    k = torch.as_tensor(k).reshape(-1).long().to(p.device).expand(p.shape[0])
    kth = p.sort(-1, descending=True).values.gather(1, (k - 1).clamp(max=p.shape[1] - 1)[:, None])
    return (p >= kth) & (p > 0)


def _top_p_keep(p, top_p):
    """[B, V]: the tokens whose strictly larger probabilities have mass < top_p."""
    p = p.double()
    top_p = torch.as_tensor(top_p, dtype=torch.float64).reshape(-1).to(p.device).expand(p.shape[0])
    s, idx = p.sort(-1, descending=True)
    # The mass strictly above each value: the prefix before its tie group (ties kept or dropped together).
    n_le = torch.searchsorted(s.flip(-1).contiguous(), s.contiguous(), right=True)
    before = (s.cumsum(-1) - s).gather(1, p.shape[1] - n_le)
    keep_sorted = before < top_p[:, None]
    keep = torch.zeros_like(keep_sorted).scatter(1, idx, keep_sorted)
    return keep & (p > 0)


def _renorm(p, keep):
    q = torch.where(keep, p.double(), torch.zeros((), dtype=torch.float64, device=p.device))
    return q / q.sum(-1, keepdim=True)


SAMPLING_VOCAB = 32000 if DEVICE == "cuda" else 1000


@needs_device
def test_sampling_ops():
    """softmax (scalar / per-row temperature, -inf logits), top-k / top-p renorm (f32, f16, bf16)
    and top-k logit masks against float64 (upstream's tolerances)."""
    batch, vocab = 19, SAMPLING_VOCAB
    g = _cpu_gen(1)
    logits = (torch.randn(batch, vocab, generator=g) * 4).to(DEVICE)
    logits[:, ::97] = float("-inf")
    for t in (None, 0.5, torch.linspace(0.1, 2.0, batch).to(DEVICE)):
        out = fi.softmax(logits, t) if t is not None else fi.softmax(logits)
        _sync()
        tt = torch.as_tensor(1.0 if t is None else t, dtype=torch.float64, device=DEVICE).reshape(-1, 1)
        close(out, torch.softmax(logits.double() / tt, -1), 1e-5, 0, f"softmax T={t}")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        probs = _probs(batch, vocab, 2, scale=3.0).to(dtype)
        atol = 1e-3 if dtype == torch.float32 else 1e-2
        for k in (1, 10, 500, torch.randint(1, vocab, (batch,), generator=g, dtype=torch.int32).to(DEVICE)):
            out = fi.top_k_renorm_probs(probs, k)
            _sync()
            assert out.dtype == dtype and out.shape == probs.shape
            close(out, _renorm(probs, _top_k_keep(probs, k)), atol, atol, f"top_k_renorm k={k if isinstance(k, int) else 'rows'} {dtype}")
        # top-p renorm as upstream tests it: float32 (in 16 bits, ties make the boundary fragile).
        for p in (0.1, 0.5, 0.9, torch.rand(batch, generator=g).to(DEVICE)) if dtype == torch.float32 else ():
            out = fi.top_p_renorm_probs(probs, p)
            _sync()
            close(out, _renorm(probs, _top_p_keep(probs, p)), atol, atol, f"top_p_renorm p={p if isinstance(p, float) else 'rows'} {dtype}")
    for k in (1, 10, 500):
        out = fi.top_k_mask_logits(logits, k)
        _sync()
        keep = _top_k_keep(torch.softmax(logits.double(), -1), k)
        assert torch.equal(out[keep], logits[keep]) and bool(torch.isneginf(out[~keep]).all()), f"top_k_mask_logits k={k}"


@needs_device
def test_samplers():
    """Each sampler: int32 samples on the device, inside the filter's support, reproducible for a
    seed / offset and a seeded torch.Generator (whose offset advances as upstream's), different for
    another seed; return_valid; per-row parameters as device tensors."""
    batch, vocab = 99, SAMPLING_VOCAB
    probs = _probs(batch, vocab, 3, scale=2.0)
    probs[5, vocab // 2:] = 0
    probs[5] /= probs[5].sum()
    ks = torch.randint(1, 100, (batch,), dtype=torch.int32, generator=_cpu_gen(4)).to(DEVICE)
    ps = (torch.rand(batch, generator=_cpu_gen(5)) * 0.9 + 0.05).to(DEVICE)
    samplers = [
        ("sampling_from_probs", {}, probs > 0, 1),
        ("top_k_sampling_from_probs", {"top_k": 10}, _top_k_keep(probs, 10), 32),
        ("top_k_sampling_from_probs", {"top_k": ks}, _top_k_keep(probs, ks), 32),
        ("top_p_sampling_from_probs", {"top_p": 0.5}, _top_p_keep(probs, 0.5), 32),
        ("top_p_sampling_from_probs", {"top_p": ps}, _top_p_keep(probs, ps), 32),
        ("min_p_sampling_from_probs", {"min_p": 0.1}, probs >= 0.1 * probs.max(-1, keepdim=True).values, 1),
        ("top_k_top_p_sampling_from_probs", {"top_k": 10, "top_p": 0.5},
         _top_k_keep(probs, 10) & _top_p_keep(_renorm(probs, _top_k_keep(probs, 10)), 0.5), 32),
        ("top_k_top_p_sampling_from_probs", {"top_k": 10, "top_p": 0.5, "filter_apply_order": "joint"},
         _top_k_keep(probs, 10) & _top_p_keep(probs, 0.5), 32),
    ]
    for name, kwargs, support, rounds in samplers:
        fn = getattr(fi, name)
        what = f"{name} {sorted(kwargs)}"
        s = fn(probs, **kwargs, seed=1234, offset=8)
        _sync()
        assert s.dtype == torch.int32 and s.shape == (batch,) and s.device == probs.device, what
        assert bool(((s >= 0) & (s < vocab)).all()), what
        assert bool(support.gather(1, s.long()[:, None]).all()), f"{what}: a token outside the support"
        assert torch.equal(fn(probs, **kwargs, seed=1234, offset=8), s), f"{what}: not reproducible"
        assert not torch.equal(fn(probs, **kwargs, seed=4321, offset=8), s), f"{what}: the seed changed nothing"
        s2, valid = fn(probs, **kwargs, seed=1234, offset=8, return_valid=True)
        _sync()
        assert torch.equal(s2, s) and valid.dtype == torch.bool and bool(valid.all()), what
        g1 = torch.Generator(device=DEVICE).manual_seed(7)
        g2 = torch.Generator(device=DEVICE).manual_seed(7)
        a, b = fn(probs, **kwargs, generator=g1), fn(probs, **kwargs, generator=g2)
        assert torch.equal(a, b), f"{what}: same generator state, different samples"
        if DEVICE == "cuda":
            # Upstream's bookkeeping: the generator's Philox offset advanced by round_up(increment, 4).
            g3 = torch.Generator(device=DEVICE).manual_seed(7)
            before = int(g3.get_state().view(torch.int64)[1])
            fn(probs, **kwargs, generator=g3)
            after = int(g3.get_state().view(torch.int64)[1])
            assert after - before == (batch * rounds + 3) // 4 * 4, f"{what}: offset advanced by {after - before}"


@needs_device
def test_sampling_frequencies():
    """One row drawn many times (indices repeat it, each output its own Philox stream): the
    frequencies follow the filtered distribution (upstream's cosine-similarity test)."""
    n = 200000 if DEVICE == "cuda" else 20000
    probs = _probs(1, 64, 6, scale=1.0)
    idx = torch.zeros(n, dtype=torch.int64, device=DEVICE)
    for name, kwargs, keep in (("sampling_from_probs", {}, probs > 0),
                               ("top_k_sampling_from_probs", {"top_k": 8}, _top_k_keep(probs, 8)),
                               ("top_p_sampling_from_probs", {"top_p": 0.6}, _top_p_keep(probs, 0.6)),
                               ("min_p_sampling_from_probs", {"min_p": 0.3}, probs >= 0.3 * probs.max())):
        s = getattr(fi, name)(probs, **kwargs, indices=idx, seed=99)
        _sync()
        assert s.dtype == torch.int64  # indices' dtype, as upstream
        freq = torch.bincount(s.cpu(), minlength=64).double() / n
        expected = _renorm(probs, keep)[0].cpu()
        assert float(freq[~keep[0].cpu()].sum()) == 0, f"{name}: drew outside the support"
        cos = float(freq @ expected / freq.norm() / expected.norm())
        assert cos > 0.99, f"{name}: cosine similarity {cos}"
        assert float((freq - expected).abs().max()) < (0.005 if DEVICE == "cuda" else 0.02), name

_GENERATOR_SAMPLERS = [
    ("sampling_from_probs", {}, 1),
    ("top_k_sampling_from_probs", {"top_k": 50}, 32),
    ("top_p_sampling_from_probs", {"top_p": 0.9}, 32),
    ("min_p_sampling_from_probs", {"min_p": 0.05}, 1),
    ("top_k_top_p_sampling_from_probs", {"top_k": 50, "top_p": 0.8}, 32),
    ("top_k_top_p_sampling_from_probs", {"top_k": 50, "top_p": 0.8, "filter_apply_order": "joint"}, 32),
]


def _generator_increment(batch, rounds):
    n = batch * rounds if rounds == 1 else max(batch * rounds, 64)
    return (n + 3) // 4 * 4


@needs_device
def test_sampling_generator():
    """fi.SamplingGenerator on DEVICE: a call at state (s, o) draws what seed=s, offset=o draws and
    leaves (s, o + increment); successive calls differ. Upstream's 1-element seed / offset tensors:
    read, not advanced."""
    batch, vocab = 16, SAMPLING_VOCAB
    probs = _probs(batch, vocab, 21, scale=2.0)
    seed, o0 = 2024, 8
    for name, kwargs, rounds in _GENERATOR_SAMPLERS:
        fn, inc = getattr(fi, name), _generator_increment(batch, rounds)
        g = fi.SamplingGenerator(seed, o0, device=DEVICE)
        draws = []
        for call in range(3):
            got = fn(probs, **kwargs, generator=g)
            want = fn(probs, **kwargs, seed=seed, offset=o0 + call * inc)
            _sync()
            assert torch.equal(got, want), f"{name} call {call}"
            draws.append(got)
        assert g.get_state() == (seed, o0 + 3 * inc), name
        assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2]), f"{name}: calls repeat"
    st = torch.tensor([seed], dtype=torch.int64, device=DEVICE)
    off = torch.tensor([o0], dtype=torch.int64, device=DEVICE)
    a = fi.top_p_sampling_from_probs(probs, 0.9, seed=st, offset=off)
    assert torch.equal(a, fi.top_p_sampling_from_probs(probs, 0.9, seed=seed, offset=o0))
    assert int(off.item()) == o0, "upstream's offset tensor was advanced"


@needs_cuda
def test_sampling_generator_cuda_graph():
    """A sampler call with a CUDA SamplingGenerator captured into a torch CUDA graph: replay r draws
    what seed=s, offset=o0 + r * increment draws (fresh numbers per replay); the state advances per
    replay. A by-value seed / offset capture, for contrast, repeats its draws."""
    batch, vocab, replays = 8, 32000, 4
    probs = _probs(batch, vocab, 22, scale=2.0).cuda()
    seed, o0 = 99, 4
    for name, kwargs, rounds in _GENERATOR_SAMPLERS:
        fn, inc = getattr(fi, name), _generator_increment(batch, rounds)
        g = fi.SamplingGenerator(seed, o0, device="cuda")
        fn(probs, **kwargs, generator=g)  # JIT-compiles the kernels outside the capture
        fn(probs, **kwargs, seed=seed, offset=o0)
        g.set_state(seed, o0)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn(probs, **kwargs, generator=g)
        torch.cuda.synchronize()
        assert g.get_state() == (seed, o0), f"{name}: the capture ran the call"
        draws = []
        for r in range(replays):
            graph.replay()
            torch.cuda.synchronize()
            want = fn(probs, **kwargs, seed=seed, offset=o0 + r * inc)
            torch.cuda.synchronize()
            assert torch.equal(out, want), f"{name} replay {r}: {out.tolist()} vs {want.tolist()} at offset {o0 + r * inc}"
            draws.append(out.clone())
        assert g.get_state() == (seed, o0 + replays * inc), f"{name}: state {g.get_state()}"
        for r in range(1, replays):
            assert not torch.equal(draws[r], draws[r - 1]), f"{name}: replays {r - 1} and {r} drew the same tokens"
        fixed = torch.cuda.CUDAGraph()
        with torch.cuda.graph(fixed):
            out2 = fn(probs, **kwargs, seed=seed, offset=o0)
        fixed.replay()
        torch.cuda.synchronize()
        first = out2.clone()
        fixed.replay()
        torch.cuda.synchronize()
        assert torch.equal(out2, first), f"{name}: a by-value capture should repeat its draws"


@needs_cuda
def test_sampling_per_row_cuda_tensors_cuda_graph():
    """Per-row top_k / top_p / min_p / temperature as CUDA tensors are read by the kernel (no copy to
    the host): the same tokens and outputs as the same values given as host arrays, and a captured
    call's replays read the values the tensors hold at each replay. As upstream, unvalidated device
    values: top_k = 0 acts as 1 and top_p = 0 keeps the largest probability (both the argmax here)."""
    batch, vocab, seed = 16, 32000, 7
    probs = _probs(batch, vocab, 23, scale=2.0).cuda()
    g = torch.Generator().manual_seed(5)
    top_k = torch.randint(1, 200, (batch,), generator=g, dtype=torch.int32)
    top_p = 0.3 + 0.7 * torch.rand(batch, generator=g)
    min_p = 0.3 * torch.rand(batch, generator=g)
    calls = [
        ("top_k", lambda k, p, m: fi.top_k_sampling_from_probs(probs, k, seed=seed, offset=4)),
        ("top_p", lambda k, p, m: fi.top_p_sampling_from_probs(probs, p, seed=seed, offset=4)),
        ("min_p", lambda k, p, m: fi.min_p_sampling_from_probs(probs, m, seed=seed, offset=4)),
        ("joint", lambda k, p, m: fi.top_k_top_p_sampling_from_probs(probs, k, p, filter_apply_order="joint", seed=seed, offset=4)),
        ("top_k_first", lambda k, p, m: fi.top_k_top_p_sampling_from_probs(probs, k, p, seed=seed, offset=4)),
        ("top_k_renorm", lambda k, p, m: fi.top_k_renorm_probs(probs, k)),
        ("top_p_renorm", lambda k, p, m: fi.top_p_renorm_probs(probs, p)),
        ("top_k_mask_logits", lambda k, p, m: fi.top_k_mask_logits(probs.log(), k)),
        ("softmax", lambda k, p, m: fi.softmax(probs.log(), temperature=0.5 + p)),
    ]
    for name, call in calls:
        want = call(top_k.numpy(), top_p.numpy(), min_p.numpy())  # host arrays: uploaded by the call
        got = call(top_k.cuda(), top_p.cuda(), min_p.cuda())
        torch.cuda.synchronize()
        assert torch.equal(got, want), f"{name}: CUDA per-row tensors gave other results than host arrays"
    zeros_k, zeros_p = torch.zeros(batch, dtype=torch.int32, device="cuda"), torch.zeros(batch, device="cuda")
    argmax = probs.argmax(dim=1).to(torch.int32)
    assert torch.equal(fi.top_k_sampling_from_probs(probs, zeros_k, seed=seed), argmax), "top_k = 0 on the device should act as 1"
    assert torch.equal(fi.top_p_sampling_from_probs(probs, zeros_p, seed=seed), argmax), "top_p = 0 should keep the top token"
    # Captured with the tensors; each replay reads their current values.
    k_dev, p_dev = top_k.cuda(), top_p.cuda()
    fi.top_k_top_p_sampling_from_probs(probs, k_dev, p_dev, filter_apply_order="joint", seed=seed)  # JIT outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fi.top_k_top_p_sampling_from_probs(probs, k_dev, p_dev, filter_apply_order="joint", seed=seed)
    for r in range(3):
        new_k = torch.randint(1, 50, (batch,), generator=g, dtype=torch.int32)
        new_p = 0.2 + 0.8 * torch.rand(batch, generator=g)
        k_dev.copy_(new_k)
        p_dev.copy_(new_p)
        graph.replay()
        want = fi.top_k_top_p_sampling_from_probs(probs, new_k.numpy(), new_p.numpy(), filter_apply_order="joint", seed=seed)
        torch.cuda.synchronize()
        assert torch.equal(out, want), f"replay {r}: the captured call did not read the tensors' current values"
    with pytest.raises(ValueError, match="top_p"):
        fi.top_p_sampling_from_probs(probs, torch.full((batch - 1,), 0.5, device="cuda"), seed=seed)


@needs_device
def test_prefill_custom_mask():
    """single_prefill_with_kv_cache with custom_mask / packed_custom_mask (run as the ragged batch
    prefill wrapper's one request) against the float64 reference with the same mask."""
    g = _cpu_gen(41)
    for layout, packed in (("NHD", False), ("HND", True)):
        qo, kv, hq, hkv, d = 37, 300, 8, 2, 128
        q = torch.randn(qo, hq, d, generator=g).half().to(DEVICE)
        shape = (kv, hkv, d) if layout == "NHD" else (hkv, kv, d)
        k, v = (torch.randn(shape, generator=g).half().to(DEVICE) for _ in range(2))
        mask = torch.rand(qo, kv, generator=g) < 0.4
        mask[torch.arange(qo), torch.randint(0, kv, (qo,), generator=g)] = True
        bits = np.packbits(mask.numpy().reshape(-1), bitorder="little")  # upstream's packbits (little-endian)
        arg = {"packed_custom_mask": torch.from_numpy(bits).to(DEVICE)} if packed else {"custom_mask": mask.to(DEVICE)}
        out, lse = fi.single_prefill_with_kv_cache(q, k, v, kv_layout=layout, return_lse=True, **arg)
        _sync()
        ref, ref_lse = reference(q, k, v, layout, False, None, None, -1, mask=mask)
        close(out, ref, 1e-3, 1e-3, f"custom mask {layout} output")
        close(lse, ref_lse, 1e-3, 1e-3, f"custom mask {layout} lse")


@needs_device
def test_sampling_from_logits():
    """Gumbel-max sampling from logits: frequencies follow softmax(logits), a -inf logit is never
    drawn, and the top-k/top-p logits sampler is upstream's composition of the ops."""
    n = 200000 if DEVICE == "cuda" else 20000
    g = _cpu_gen(42)
    for dt in (torch.float32, torch.float16):
        logits = (torch.randn(1, 64, generator=g) * 1.5).to(dt)
        logits[0, 5] = float("-inf")
        logits = logits.to(DEVICE)
        idx = torch.zeros(n, dtype=torch.int64, device=DEVICE)
        s = fi.sampling_from_logits(logits, indices=idx, seed=17)
        _sync()
        freq = torch.bincount(s.cpu(), minlength=64).double() / n
        expected = torch.softmax(logits.double().cpu()[0], -1)
        assert float(freq[5]) == 0, f"{dt}: drew a -inf logit"
        assert float((freq - expected).abs().max()) < (0.005 if DEVICE == "cuda" else 0.02), f"{dt}: {freq} vs {expected}"
        assert torch.equal(fi.sampling_from_logits(logits, indices=idx, seed=17), s)
    logits = (torch.randn(16, 1000, generator=g) * 2).to(DEVICE)
    for order in ("top_k_first", "joint"):
        s = fi.top_k_top_p_sampling_from_logits(logits, 20, 0.7, filter_apply_order=order, seed=3)
        if order == "top_k_first":
            want = fi.top_p_sampling_from_probs(fi.softmax(fi.top_k_mask_logits(logits, 20)), 0.7, seed=3)
        else:
            want = fi.top_k_top_p_sampling_from_probs(fi.softmax(logits), 20, 0.7, filter_apply_order="joint", seed=3)
        _sync()
        assert torch.equal(s, want), order
        keep = _top_k_keep(torch.softmax(logits.double(), -1), 20)
        assert bool(keep.gather(1, s.long()[:, None]).all()), f"{order}: a token outside the top 20"


@needs_device
def test_block_sparse_wrapper():
    """BlockSparseAttentionWrapper on DEVICE tensors (the paged batch prefill kernels with the
    pattern's page table and in-block mask) against the float64 dense reference under the mask."""
    g = _cpu_gen(43)
    M, N, R, C, hq, hkv, d = 256, 512, 16, 32, 8, 2, 128
    mb, nb = M // R, N // C
    rows = [torch.randperm(nb, generator=g)[: int(torch.randint(0, nb // 2 + 1, (1,), generator=g))].sort().values for _ in range(mb)]
    indptr = torch.tensor([0] + [len(r) for r in rows]).cumsum(0).int()
    indices = torch.cat(rows).int()
    mask = torch.rand(len(indices), R, C, generator=g) < 0.7
    keep = torch.zeros(M, N, dtype=torch.bool)
    for i in range(mb):
        for p in range(int(indptr[i]), int(indptr[i + 1])):
            j = int(indices[p])
            keep[i * R:(i + 1) * R, j * C:(j + 1) * C] = mask[p]
    q = torch.randn(M, hq, d, generator=g).half().to(DEVICE)
    k, v = (torch.randn(N, hkv, d, generator=g).half().to(DEVICE) for _ in range(2))
    w = fi.BlockSparseAttentionWrapper(torch.empty(1, device=DEVICE))
    w.plan(indptr, indices, M, N, R, C, hq, hkv, d, mask=mask)
    out, lse = w.run(q, k, v, return_lse=True)
    _sync()
    ref, ref_lse = reference(q, k, v, "NHD", False, None, None, -1, mask=keep)
    close(out, ref, 1e-3, 1e-3, "block sparse output")
    close(lse, ref_lse, 1e-3, 1e-3, "block sparse lse")


@needs_device
def test_chain_speculative_sampling():
    """chain_speculative_sampling on DEVICE tensors: with a one-hot target the output is the target's
    tokens up to the first mismatching draft (upstream's test); counts accumulate into torch tensors."""
    g = _cpu_gen(44)
    batch, n, vocab = 16, 5, 128
    draft = torch.softmax(torch.randn(batch, n, vocab, generator=g), -1).to(DEVICE)
    want = torch.randint(0, vocab, (batch, n + 1), generator=g)
    target = torch.zeros(batch, n + 1, vocab)
    target.scatter_(2, want[..., None], 1.0)
    ids = want[:, :n].clone()
    ids[1, 3] = (ids[1, 3] + 1) % vocab
    acc_total = torch.zeros(batch, dtype=torch.int32, device=DEVICE)
    emi_total = torch.zeros(batch, dtype=torch.int32, device=DEVICE)
    out, acc, emi = fi.chain_speculative_sampling(draft, ids.int().to(DEVICE), target.to(DEVICE), acc_total, emi_total, seed=2)
    _sync()
    assert out.device.type == DEVICE and out.shape == (batch, n + 1) and acc is acc_total
    out, acc, emi = out.cpu(), acc.cpu(), emi.cpu()
    for b in range(batch):
        if b == 1:
            assert int(emi[b]) == 3 and int(acc[b]) == n - 1
            assert out[b].tolist() == want[b, :4].tolist() + [-1, -1]
        else:
            assert int(emi[b]) == n and int(acc[b]) == n and out[b].tolist() == want[b].tolist()
    # A SamplingGenerator on DEVICE: the draw at its state, then advanced by B * (n + 1) (rounded to 4).
    soft = torch.softmax(torch.randn(batch, n + 1, vocab, generator=g), -1).to(DEVICE)
    ids = ids.int().to(DEVICE)
    gen = fi.SamplingGenerator(5, 4, device=DEVICE)
    got = fi.chain_speculative_sampling(draft, ids, soft, generator=gen)
    want = fi.chain_speculative_sampling(draft, ids, soft, seed=5, offset=4)
    _sync()
    assert all(torch.equal(a, w) for a, w in zip(got, want))
    assert gen.get_state() == (5, 4 + (batch * (n + 1) + 3) // 4 * 4)


@needs_cuda
def test_chain_speculative_sampling_cuda_graph():
    """chain_speculative_sampling captured into a torch CUDA graph with a CUDA SamplingGenerator:
    the call does not wait for its stream (a capture would fail if it did); replay r gives what
    seed=s, offset=o0 + r * increment gives, and the kernel adds each replay's counts into the
    caller's int32 tensors (upstream's accumulate)."""
    g = _cpu_gen(46)
    batch, n, vocab, replays = 16, 4, 32000, 3
    draft = torch.softmax(torch.randn(batch, n, vocab, generator=g) * 2, -1).cuda()
    target = torch.softmax(torch.randn(batch, n + 1, vocab, generator=g) * 2, -1).cuda()
    ids = torch.multinomial(draft.reshape(-1, vocab).cpu(), 1, generator=g).reshape(batch, n).int().cuda()
    seed, o0, inc = 123, 8, (batch * (n + 1) + 3) // 4 * 4
    gen = fi.SamplingGenerator(seed, o0, device="cuda")
    acc_total = torch.zeros(batch, dtype=torch.int32, device="cuda")
    emi_total = torch.zeros(batch, dtype=torch.int32, device="cuda")
    fi.chain_speculative_sampling(draft, ids, target, generator=gen)  # JIT-compiles outside the capture
    gen.set_state(seed, o0)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, acc, emi = fi.chain_speculative_sampling(draft, ids, target, acc_total, emi_total, generator=gen)
    torch.cuda.synchronize()
    assert acc is acc_total and emi is emi_total
    assert gen.get_state() == (seed, o0) and int(acc_total.sum()) == 0, "the capture ran the call"
    want_acc = torch.zeros(batch, dtype=torch.int32)
    want_emi = torch.zeros(batch, dtype=torch.int32)
    for r in range(replays):
        graph.replay()
        torch.cuda.synchronize()
        w_out, w_acc, w_emi = fi.chain_speculative_sampling(draft, ids, target, seed=seed, offset=o0 + r * inc)
        torch.cuda.synchronize()
        assert torch.equal(out, w_out), f"replay {r}: tokens differ from offset {o0 + r * inc}"
        want_acc += w_acc.cpu()
        want_emi += w_emi.cpu()
        assert torch.equal(acc_total.cpu(), want_acc) and torch.equal(emi_total.cpu(), want_emi), f"replay {r}: counts"
    assert gen.get_state() == (seed, o0 + replays * inc)


@needs_device
def test_shared_prefix_wrappers_and_deprecated_forward():
    """Upstream's deprecated shared-prefix decode wrapper on DEVICE tensors (single prefill over the
    prefix, batch decode over the pages, merge_state_in_place) against float64 attention over the
    concatenation; and the deprecated forward()'s options replacing the plan's (a re-plan)."""
    g = _cpu_gen(47)
    page_size, hq, hkv, d, prefix = 16, 32, 8, 128, 1000
    lens = [37, 1, 200]
    per = [(n + page_size - 1) // page_size for n in lens]
    indptr = torch.tensor([0] + list(np.cumsum(per)), dtype=torch.int32)
    indices = torch.randperm(int(indptr[-1]) + 3, generator=g)[: int(indptr[-1])].int()
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(lens, per)], dtype=torch.int32)
    cache = torch.randn(int(indptr[-1]) + 3, 2, page_size, hkv, d, generator=g).half().to(DEVICE)
    ks, vs = (torch.randn(prefix, hkv, d, generator=g).half().to(DEVICE) for _ in range(2))
    q = torch.randn(len(lens), hq, d, generator=g).half().to(DEVICE)
    ws = torch.empty(1, device=DEVICE)
    w = fi.BatchDecodeWithSharedPrefixPagedKVCacheWrapper(ws, "NHD")
    w.begin_forward(indptr, indices, last, hq, hkv, d, page_size)
    out = w.forward(q, ks, vs, cache)
    _sync()
    assert out.device.type == DEVICE and out.shape == q.shape
    for b, n in enumerate(lens):
        pages = indices[int(indptr[b]):int(indptr[b + 1])].long().to(cache.device)
        k = torch.cat([ks, cache[pages, 0].reshape(-1, hkv, d)[:n]])
        v = torch.cat([vs, cache[pages, 1].reshape(-1, hkv, d)[:n]])
        ref, _ = reference(q[b][None], k, v, "NHD", False, None, None, -1)
        close(out[b], ref[0], 1e-3, 1e-3, f"shared-prefix request {b}")
    dw = fi.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
    dw.begin_forward(indptr, indices, last, hq, hkv, d, page_size, pos_encoding_mode="ROPE_LLAMA")
    plain = dw.forward(q, cache)  # upstream's default pos_encoding_mode, NONE, replaces the plan's
    roped = dw.forward(q, cache, pos_encoding_mode="ROPE_LLAMA")
    _sync()
    ref, _ = _paged_reference(q, cache, indptr, indices, lens, hkv, d)
    close(plain, ref, 1e-3, 1e-3, "forward() without RoPE")
    assert not torch.allclose(roped.float(), plain.float(), atol=1e-2), "forward(pos_encoding_mode=ROPE_LLAMA) ignored"


@needs_device
def test_merge_states():
    """merge_state / merge_state_in_place (masked) / merge_states on DEVICE torch tensors against a
    float64 reference (base-2 LSE; an empty state: -inf)."""
    g = _cpu_gen(45)

    def ref(vs, ss):
        vs, ss = vs.double().cpu(), ss.double().cpu()
        m = ss.max(0).values
        mm = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        w = torch.where(torch.isfinite(ss), torch.exp2(ss - mm), torch.zeros_like(ss))
        d = w.sum(0)
        v = torch.where(d[..., None] > 0, (w[..., None] * vs).sum(0) / d.clamp_min(1e-300)[..., None], torch.zeros(()).double())
        return v, torch.where(d > 0, torch.log2(d.clamp_min(1e-300)) + mm, torch.full_like(d, float("-inf")))

    n, h, d = 129, 8, 128
    va, vb = (torch.randn(n, h, d, generator=g).half().to(DEVICE) for _ in range(2))
    sa, sb = ((torch.randn(n, h, generator=g) * 4).float().to(DEVICE) for _ in range(2))
    sa[3] = float("-inf")
    v, s = fi.merge_state(va, sa, vb, sb)
    _sync()
    assert v.device.type == DEVICE and v.dtype == torch.float16 and s.dtype == torch.float32
    rv, rs = ref(torch.stack([va, vb]), torch.stack([sa, sb]))
    close(v, rv, 2e-3, 2e-3, "merge_state v")
    close(s, rs, 1e-4, 1e-4, "merge_state s")
    mask = torch.rand(n, generator=g) < 0.5
    v2, s2 = va.clone(), sa.clone()
    fi.merge_state_in_place(v2, s2, vb, sb, mask=mask.to(DEVICE))
    _sync()
    keep = mask[:, None, None].to(DEVICE)
    close(v2, torch.where(keep, rv.to(DEVICE), va.double()), 2e-3, 2e-3, "merge_state_in_place v")
    close(s2, torch.where(keep[..., 0], rs.to(DEVICE), sa.double()), 1e-4, 1e-4, "merge_state_in_place s")
    vs = torch.randn(n, 5, h, d, generator=g).half().to(DEVICE)
    ss = (torch.randn(n, 5, h, generator=g) * 4).float().to(DEVICE)
    v3, s3 = fi.merge_states(vs, ss)
    _sync()
    rv3, rs3 = ref(vs.transpose(0, 1), ss.transpose(0, 1))
    close(v3, rv3, 2e-3, 2e-3, "merge_states v")
    close(s3, rs3, 1e-4, 1e-4, "merge_states s")


if __name__ == "__main__":
    if not ON_DEVICE:
        print(f"skipped: needs torch with {DEVICE}")
        sys.exit(0)
    failed = 0
    tests = [("test_decode", test_decode), ("test_prefill", test_prefill), ("test_decode_fp8", test_decode_fp8),
             ("test_batch_decode_wrapper", test_batch_decode_wrapper),
             ("test_batch_prefill_wrappers", test_batch_prefill_wrappers),
             ("test_batch_prefill_use_cuda_graph_replans", test_batch_prefill_use_cuda_graph_replans),
             ("test_cascade_use_cuda_graph_replans", test_cascade_use_cuda_graph_replans),
             ("test_current_stream_and_errors", test_current_stream_and_errors)] if HAVE_CUDA else []
    tests += [("test_cascade_wrapper", test_cascade_wrapper), ("test_norms", test_norms),
              ("test_activations", test_activations), ("test_rope", test_rope), ("test_sampling_ops", test_sampling_ops),
              ("test_samplers", test_samplers), ("test_sampling_frequencies", test_sampling_frequencies),
              ("test_sampling_generator", test_sampling_generator), ("test_prefill_custom_mask", test_prefill_custom_mask),
              ("test_sampling_from_logits", test_sampling_from_logits), ("test_block_sparse_wrapper", test_block_sparse_wrapper),
              ("test_chain_speculative_sampling", test_chain_speculative_sampling), ("test_merge_states", test_merge_states)]
    if HAVE_CUDA:
        tests.append(("test_sampling_generator_cuda_graph", test_sampling_generator_cuda_graph))
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
