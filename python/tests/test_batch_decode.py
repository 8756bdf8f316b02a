"""BatchDecodeWithPagedKVCacheWrapper through the C ABI on CPU tensors (the CPU reference backend):
each request equals single decode over its gathered pages; the layouts, the cache forms, the LSE,
re-planning, and the errors."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402


def make_cache(rng, num_pages, page_size, hkv, d, layout):
    shape = (num_pages, 2, page_size, hkv, d) if layout == "NHD" else (num_pages, 2, hkv, page_size, d)
    return rng.standard_normal(shape).astype(np.float16)


def gather(cache, pages, last, page_size, layout):
    """K and V of one request, [kv_len, Hkv, D]."""
    ks, vs = [], []
    for i, p in enumerate(pages):
        n = last if i == len(pages) - 1 else page_size
        k, v = cache[p, 0], cache[p, 1]
        if layout == "HND":
            k, v = k.transpose(1, 0, 2), v.transpose(1, 0, 2)
        ks.append(k[:n])
        vs.append(v[:n])
    return np.concatenate(ks), np.concatenate(vs)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("tuple_form", [False, True])
def test_matches_single_decode(layout, tuple_form):
    rng = np.random.default_rng(7 + (layout == "HND") * 3 + tuple_form)
    page_size, hq, hkv, d = 4, 8, 2, 64
    lens = [1, 9, 16, 5]
    pages_per = [(n + page_size - 1) // page_size for n in lens]
    num_pages = sum(pages_per) + 3
    perm = rng.permutation(num_pages)
    indptr = np.concatenate([[0], np.cumsum(pages_per)]).astype(np.int32)
    indices = perm[: indptr[-1]].astype(np.int32)
    last = np.array([n - (p - 1) * page_size for n, p in zip(lens, pages_per)], dtype=np.int32)
    cache = make_cache(rng, num_pages, page_size, hkv, d, layout)
    q = rng.standard_normal((len(lens), hq, d)).astype(np.float16)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None, kv_layout=layout)
    w.plan(indptr, indices, last, hq, hkv, d, page_size, logits_soft_cap=30.0)
    kv = (np.ascontiguousarray(cache[:, 0]), np.ascontiguousarray(cache[:, 1])) if tuple_form else cache
    out, lse = w.run(q, kv, return_lse=True)
    assert out.shape == q.shape and lse.shape == (len(lens), hq)
    for b in range(len(lens)):
        k, v = gather(cache, indices[indptr[b]:indptr[b + 1]], last[b], page_size, layout)
        o, l = fi.single_decode_with_kv_cache(q[b], k, v, logits_soft_cap=30.0, return_lse=True)
        np.testing.assert_allclose(out[b].astype(np.float32), o.astype(np.float32), atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(lse[b], l, atol=1e-3, rtol=1e-3)
    # Re-plan with another batch on the same wrapper.
    w.plan(indptr[:3], indices[: indptr[2]], last[:2], hq, hkv, d, page_size)
    out2 = w.run(q[:2], kv)
    for b in range(2):
        k, v = gather(cache, indices[indptr[b]:indptr[b + 1]], last[b], page_size, layout)
        np.testing.assert_allclose(out2[b].astype(np.float32), fi.single_decode_with_kv_cache(q[b], k, v).astype(np.float32),
                                   atol=1e-3, rtol=1e-3)


def test_errors():
    rng = np.random.default_rng(3)
    cache = make_cache(rng, 4, 4, 2, 64, "NHD")
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    q = rng.standard_normal((2, 8, 64)).astype(np.float16)
    with pytest.raises(RuntimeError, match="before plan"):
        w.run(q, cache)
    with pytest.raises(ValueError, match="indptr"):
        w.plan(np.array([0, 1], np.int32), np.array([0], np.int32), np.array([4, 4], np.int32), 8, 2, 64, 4)
    # A page id past the cache: the plan cannot know the cache's size; run refuses it.
    w.plan(np.array([0, 1, 2], np.int32), np.array([0, 9], np.int32), np.array([4, 4], np.int32), 8, 2, 64, 4)
    with pytest.raises(ValueError, match="kv_indices"):
        w.run(q, cache)
    with pytest.raises(ValueError, match="last_page_len|page_size|kv_last_page_len"):
        w.plan(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.array([4, 7], np.int32), 8, 2, 64, 4)
    with pytest.raises(ValueError, match="head_dim"):
        w.plan(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.array([4, 4], np.int32), 8, 2, 48, 4)
    with pytest.raises(TypeError, match="q_data_type"):
        w.plan(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.array([4, 4], np.int32), 8, 2, 64, 4,
               q_data_type="int8")
    w.plan(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.array([4, 4], np.int32), 8, 2, 64, 4)
    with pytest.raises(ValueError, match="q"):
        w.run(q[:1], cache)
    with pytest.raises(NotImplementedError, match="k_scale"):
        w.run(q, cache, k_scale=0.5)
    with pytest.raises(ValueError, match="kv_layout"):
        fi.BatchDecodeWithPagedKVCacheWrapper(None, kv_layout="NDH")


def test_run_reads_current_contents_through_the_descriptor_cache():
    """run() reuses DLTensor descriptors keyed by (address, shape, strides, dtype): a cache changed in
    place, a different cache of the same shape, q and out reused — every run reads what is there now."""
    rng = np.random.default_rng(11)
    page_size, hq, hkv, d, pages = 4, 8, 2, 64, 3
    indptr, indices, last = np.array([0, pages], np.int32), np.arange(pages, dtype=np.int32), np.array([4], np.int32)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    w.plan(indptr, indices, last, hq, hkv, d, page_size)
    q = rng.standard_normal((1, hq, d)).astype(np.float16)
    out = np.empty_like(q)

    def expected(cache):
        k, v = gather(cache, indices, last[0], page_size, "NHD")
        return fi.single_decode_with_kv_cache(q[0], k, v).astype(np.float32)

    a = make_cache(rng, pages, page_size, hkv, d, "NHD")
    b = make_cache(rng, pages, page_size, hkv, d, "NHD")
    for cache in (a, b, a):
        w.run(q, cache, out=out)
        np.testing.assert_allclose(out[0].astype(np.float32), expected(cache), atol=1e-3, rtol=1e-3)
    a[...] = make_cache(rng, pages, page_size, hkv, d, "NHD")  # same address, new contents
    w.run(q, a, out=out)
    np.testing.assert_allclose(out[0].astype(np.float32), expected(a), atol=1e-3, rtol=1e-3)
    # The same bytes seen with another shape or dtype are a different descriptor.
    with pytest.raises((ValueError, TypeError)):
        w.run(q, a.astype(np.float32), out=out)


def test_cuda_graph_mode_on_the_cpu():
    """use_cuda_graph=True (upstream's CUDA-graph mode): the buffers fix the capacity; on the CPU
    backend the results equal the plain wrapper's; missing or inconsistent buffers and plans beyond
    the capacity are ValueErrors. (The GPU replay is test_cuda.py's.)"""
    rng = np.random.default_rng(21)
    page_size, hq, hkv, d = 4, 8, 2, 64
    lens = [3, 9, 16]
    pages_per = [(n + page_size - 1) // page_size for n in lens]
    num_pages = sum(pages_per)
    indptr = np.concatenate([[0], np.cumsum(pages_per)]).astype(np.int32)
    indices = rng.permutation(num_pages).astype(np.int32)
    last = np.array([n - (p - 1) * page_size for n, p in zip(lens, pages_per)], dtype=np.int32)
    cache = make_cache(rng, num_pages, page_size, hkv, d, "NHD")
    q = rng.standard_normal((len(lens), hq, d)).astype(np.float16)
    bufs = dict(paged_kv_indptr_buffer=np.zeros(len(lens) + 1, np.int32), paged_kv_indices_buffer=np.zeros(16, np.int32),
                paged_kv_last_page_len_buffer=np.zeros(len(lens), np.int32))
    g = fi.BatchDecodeWithPagedKVCacheWrapper(None, use_cuda_graph=True, **bufs)
    g.plan(indptr, indices, last, hq, hkv, d, page_size)
    p = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    p.plan(indptr, indices, last, hq, hkv, d, page_size)
    np.testing.assert_array_equal(g.run(q, cache), p.run(q, cache))
    with pytest.raises(ValueError, match="paged_kv_indptr_buffer"):
        fi.BatchDecodeWithPagedKVCacheWrapper(None, use_cuda_graph=True)
    with pytest.raises(ValueError, match="paged_kv_indptr_buffer"):
        fi.BatchDecodeWithPagedKVCacheWrapper(None, use_cuda_graph=True, **dict(bufs, paged_kv_indptr_buffer=np.zeros(2, np.int32)))
    small = fi.BatchDecodeWithPagedKVCacheWrapper(None, use_cuda_graph=True,
                                                  **dict(bufs, paged_kv_indices_buffer=np.zeros(2, np.int32)))
    with pytest.raises(ValueError):
        small.plan(indptr, indices, last, hq, hkv, d, page_size)  # 8 pages in a capacity of 2
