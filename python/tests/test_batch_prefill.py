"""BatchPrefillWithPagedKVCacheWrapper / BatchPrefillWithRaggedKVCacheWrapper through the C ABI on
CPU arrays (the CPU reference backend): each request equals single prefill over its keys; a custom
mask equal to the causal mask gives the causal result; masks in both forms; errors."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402

QO, KV = [3, 1, 7], [9, 4, 7]
HQ, HKV, D = 4, 2, 64


def setup(rng):
    qo_indptr = np.concatenate([[0], np.cumsum(QO)]).astype(np.int32)
    kv_indptr = np.concatenate([[0], np.cumsum(KV)]).astype(np.int32)
    q = rng.standard_normal((qo_indptr[-1], HQ, D)).astype(np.float16)
    k = rng.standard_normal((kv_indptr[-1], HKV, D)).astype(np.float16)
    v = rng.standard_normal((kv_indptr[-1], HKV, D)).astype(np.float16)
    return qo_indptr, kv_indptr, q, k, v


def per_request(qo_indptr, kv_indptr, q, k, v, causal):
    outs = []
    for b in range(len(QO)):
        outs.append(fi.single_prefill_with_kv_cache(q[qo_indptr[b]:qo_indptr[b + 1]], k[kv_indptr[b]:kv_indptr[b + 1]],
                                                    v[kv_indptr[b]:kv_indptr[b + 1]], causal=causal))
    return np.concatenate(outs)


def causal_masks():
    bits = []
    for qo, kv in zip(QO, KV):
        i = np.arange(qo)[:, None] + (kv - qo)
        j = np.arange(kv)[None, :]
        bits.append((j <= i).reshape(-1))
    return np.concatenate(bits)


@pytest.mark.parametrize("causal", [False, True])
def test_ragged(causal):
    rng = np.random.default_rng(1 + causal)
    qo_indptr, kv_indptr, q, k, v = setup(rng)
    w = fi.BatchPrefillWithRaggedKVCacheWrapper(None)
    w.plan(qo_indptr, kv_indptr, HQ, HKV, D, causal=causal)
    out, lse = w.run(q, k, v, return_lse=True)
    assert lse.shape == (qo_indptr[-1], HQ)
    ref = per_request(qo_indptr, kv_indptr, q, k, v, causal)
    np.testing.assert_allclose(out.astype(np.float32), ref.astype(np.float32), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("form", ["bools", "packed"])
def test_paged_with_causal_mask(form):
    rng = np.random.default_rng(5)
    qo_indptr, kv_indptr, q, k, v = setup(rng)
    page_size = 4
    pages_per = [(n + page_size - 1) // page_size for n in KV]
    indptr = np.concatenate([[0], np.cumsum(pages_per)]).astype(np.int32)
    num_pages = int(indptr[-1]) + 2
    perm = rng.permutation(num_pages)
    indices = perm[: indptr[-1]].astype(np.int32)
    last = np.array([n - (p - 1) * page_size for n, p in zip(KV, pages_per)], dtype=np.int32)
    cache = np.zeros((num_pages, 2, page_size, HKV, D), np.float16)
    for b in range(len(KV)):
        for t in range(KV[b]):
            page = indices[indptr[b] + t // page_size]
            cache[page, 0, t % page_size] = k[kv_indptr[b] + t]
            cache[page, 1, t % page_size] = v[kv_indptr[b] + t]
    bits = causal_masks()
    if form == "bools":
        mask_args = dict(custom_mask=bits)
    else:
        offs = np.concatenate([[0], np.cumsum([a * c for a, c in zip(QO, KV)])])
        packed = np.concatenate([np.packbits(bits[offs[i]:offs[i + 1]], bitorder="little") for i in range(len(QO))])
        mask_args = dict(packed_custom_mask=packed)
    w = fi.BatchPrefillWithPagedKVCacheWrapper(None)
    w.plan(qo_indptr, indptr, indices, last, HQ, HKV, D, page_size, **mask_args)
    out = w.run(q, cache)
    ref = per_request(qo_indptr, kv_indptr, q, k, v, True)
    np.testing.assert_allclose(out.astype(np.float32), ref.astype(np.float32), atol=1e-3, rtol=1e-3)
    # Without a mask and not causal: the plain result (the wrapper re-plans).
    w.plan(qo_indptr, indptr, indices, last, HQ, HKV, D, page_size)
    np.testing.assert_allclose(w.run(q, (np.ascontiguousarray(cache[:, 0]), np.ascontiguousarray(cache[:, 1]))).astype(np.float32),
                               per_request(qo_indptr, kv_indptr, q, k, v, False).astype(np.float32), atol=1e-3, rtol=1e-3)


def test_errors():
    rng = np.random.default_rng(9)
    qo_indptr, kv_indptr, q, k, v = setup(rng)
    w = fi.BatchPrefillWithRaggedKVCacheWrapper(None)
    with pytest.raises(RuntimeError, match="before plan"):
        w.run(q, k, v)
    with pytest.raises(ValueError, match="kv_indptr"):
        w.plan(qo_indptr, kv_indptr[:-1], HQ, HKV, D)
    with pytest.raises(ValueError, match="custom_mask"):
        w.plan(qo_indptr, kv_indptr, HQ, HKV, D, custom_mask=np.ones(5, bool))
    with pytest.raises(ValueError, match="causal|qo_len"):
        w.plan(np.array([0, 9], np.int32), np.array([0, 3], np.int32), HQ, HKV, D, causal=True)
    w.plan(qo_indptr, kv_indptr, HQ, HKV, D)
    with pytest.raises(ValueError):
        w.run(q[:-1], k, v)


def test_cuda_graph_mode_on_the_cpu():
    """use_cuda_graph=True (upstream's): the buffers fix the requests and pages, the first plan the
    query rows; on the CPU backend results equal the plain wrapper's, re-plans within the capacity
    work, and plans beyond it are ValueErrors; missing buffers are ValueErrors, a custom mask
    buffer NotImplementedError. (The GPU capture and replay is test_cuda.py's.)"""
    rng = np.random.default_rng(41)
    qo_indptr, kv_indptr, q, k, v = setup(rng)
    b = len(QO)
    g = fi.BatchPrefillWithRaggedKVCacheWrapper(None, use_cuda_graph=True, qo_indptr_buf=np.zeros(b + 1, np.int32),
                                                kv_indptr_buf=np.zeros(b + 1, np.int32))
    p = fi.BatchPrefillWithRaggedKVCacheWrapper(None)
    for w in (g, p):
        w.plan(qo_indptr, kv_indptr, HQ, HKV, D, causal=True)
    np.testing.assert_array_equal(g.run(q, k, v), p.run(q, k, v))
    # Two requests (fewer rows), then more rows than the first plan's: refused.
    for w in (g, p):
        w.plan(qo_indptr[:3], kv_indptr[:3], HQ, HKV, D)
    n = int(qo_indptr[2])
    np.testing.assert_array_equal(g.run(q[:n], k[:kv_indptr[2]], v[:kv_indptr[2]]),
                                  p.run(q[:n], k[:kv_indptr[2]], v[:kv_indptr[2]]))
    with pytest.raises(ValueError, match="query rows"):
        g.plan(np.array([0, 12], np.int32), np.array([0, 20], np.int32), HQ, HKV, D)
    with pytest.raises(ValueError, match="batch size"):
        g.plan(np.arange(b + 2, dtype=np.int32), np.arange(b + 2, dtype=np.int32), HQ, HKV, D)
    with pytest.raises(ValueError, match="qo_indptr_buf"):
        fi.BatchPrefillWithRaggedKVCacheWrapper(None, use_cuda_graph=True)
    with pytest.raises(ValueError, match="kv_indptr_buf"):
        fi.BatchPrefillWithRaggedKVCacheWrapper(None, use_cuda_graph=True, qo_indptr_buf=np.zeros(b + 1, np.int32),
                                                kv_indptr_buf=np.zeros(b, np.int32))
    with pytest.raises(NotImplementedError, match="custom mask"):
        fi.BatchPrefillWithRaggedKVCacheWrapper(None, use_cuda_graph=True, qo_indptr_buf=np.zeros(b + 1, np.int32),
                                                kv_indptr_buf=np.zeros(b + 1, np.int32), custom_mask_buf=np.zeros(8, np.uint8))
    # Paged: the same requests over a page table; pages beyond the indices buffer are refused.
    page_size = 4
    pages_per = [(n + page_size - 1) // page_size for n in KV]
    indptr = np.concatenate([[0], np.cumsum(pages_per)]).astype(np.int32)
    indices = rng.permutation(int(indptr[-1])).astype(np.int32)
    last = np.array([n - (p_ - 1) * page_size for n, p_ in zip(KV, pages_per)], dtype=np.int32)
    cache = rng.standard_normal((int(indptr[-1]), 2, page_size, HKV, D)).astype(np.float16)

    def paged(pages):
        return fi.BatchPrefillWithPagedKVCacheWrapper(
            None, use_cuda_graph=True, qo_indptr_buf=np.zeros(b + 1, np.int32), paged_kv_indptr_buf=np.zeros(b + 1, np.int32),
            paged_kv_indices_buf=np.zeros(pages, np.int32), paged_kv_last_page_len_buf=np.zeros(b, np.int32))

    gp, pp = paged(int(indptr[-1])), fi.BatchPrefillWithPagedKVCacheWrapper(None)
    for w in (gp, pp):
        w.plan(qo_indptr, indptr, indices, last, HQ, HKV, D, page_size, causal=True)
    np.testing.assert_array_equal(gp.run(q, cache), pp.run(q, cache))
    with pytest.raises(ValueError, match="pages"):
        paged(int(indptr[-1]) - 1).plan(qo_indptr, indptr, indices, last, HQ, HKV, D, page_size)
    with pytest.raises(ValueError, match="paged_kv_last_page_len_buf"):
        fi.BatchPrefillWithPagedKVCacheWrapper(
            None, use_cuda_graph=True, qo_indptr_buf=np.zeros(b + 1, np.int32), paged_kv_indptr_buf=np.zeros(b + 1, np.int32),
            paged_kv_indices_buf=np.zeros(9, np.int32), paged_kv_last_page_len_buf=np.zeros(b + 1, np.int32))


def test_packbits_and_segment_packbits():
    """Upstream's flashinfer.packbits / segment_packbits: numpy.packbits per segment, byte offsets."""
    rng = np.random.default_rng(12)
    x = rng.random(37) < 0.5
    for order in ("big", "little"):
        np.testing.assert_array_equal(fi.packbits(x, order), np.packbits(x, bitorder=order))
        indptr = np.array([0, 5, 5, 21, 37], np.int32)
        packed, new = fi.segment_packbits(x, indptr, order)
        np.testing.assert_array_equal(new, [0, 1, 1, 3, 5])
        for i in range(4):
            np.testing.assert_array_equal(packed[new[i]:new[i + 1]], np.packbits(x[indptr[i]:indptr[i + 1]], bitorder=order))
    with pytest.raises(ValueError, match="bitorder"):
        fi.packbits(x, "middle")
    with pytest.raises(ValueError, match="indptr"):
        fi.segment_packbits(x, np.array([0, 40], np.int32))
