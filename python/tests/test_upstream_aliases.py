"""Upstream's other names for the wrappers' work, on CPU tensors: run_return_lse, run(out=, lse=,
window_left=), the deprecated begin_forward / forward / forward_return_lse / end_forward (whose
options replace the plan's, as upstream's do), reset_workspace_buffer,
CUDAGraphBatchDecodeWithPagedKVCacheWrapper, single_prefill_with_kv_cache_return_lse, and the
deprecated shared-prefix wrappers against a float64 reference."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402

TOL = dict(atol=2e-3, rtol=2e-3)


def attention(q, k, v, causal=False, sm_scale=None):
    """float64 reference: q [n, Hq, D], k / v [m, Hkv, D] (NHD); causal aligned bottom-right.
    Returns (out [n, Hq, D], base-2 LSE [n, Hq])."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    n, hq, d = q.shape
    m, hkv = k.shape[0], k.shape[1]
    g = hq // hkv
    scale = sm_scale if sm_scale is not None else d ** -0.5
    kk, vv = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("nhd,mhd->hnm", q, kk) * scale
    if causal:
        allowed = np.arange(m)[None, :] <= (np.arange(n)[:, None] + m - n)
        s = np.where(allowed[None], s, -np.inf)
    mx = s.max(-1, keepdims=True)
    p = np.exp(s - mx)
    den = p.sum(-1, keepdims=True)
    out = np.einsum("hnm,mhd->nhd", p / den, vv)
    lse = (np.log(den[..., 0]) + mx[..., 0]) / np.log(2)
    return out, lse.T


def paged(rng, lens, page_size, hkv, d):
    """A [pages, 2, page_size, Hkv, D] cache holding requests of `lens` keys in shuffled pages,
    with its indptr / indices / last_page_len and each request's K / V."""
    per = [(n + page_size - 1) // page_size for n in lens]
    num_pages = sum(per) + 2
    cache = rng.standard_normal((num_pages, 2, page_size, hkv, d)).astype(np.float16)
    indptr = np.concatenate([[0], np.cumsum(per)]).astype(np.int32)
    indices = rng.permutation(num_pages)[: indptr[-1]].astype(np.int32)
    last = np.array([n - (p - 1) * page_size for n, p in zip(lens, per)], dtype=np.int32)
    kvs = []
    for b, n in enumerate(lens):
        pages = indices[indptr[b]:indptr[b + 1]]
        kvs.append(tuple(np.concatenate([cache[p, h] for p in pages])[:n] for h in (0, 1)))
    return cache, indptr, indices, last, kvs


def test_decode_forward_options_replace_the_plans():
    """Upstream's forward() stores its options (defaults included) over the plan's: planned with
    RoPE, forward(q, cache) runs without it; forward(..., pos_encoding_mode="ROPE_LLAMA") with it."""
    rng = np.random.default_rng(90)
    page_size, hq, hkv, d = 4, 8, 2, 64
    cache, indptr, indices, last, _ = paged(rng, [7, 12, 3], page_size, hkv, d)
    q = rng.standard_normal((3, hq, d)).astype(np.float16)
    plain = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    plain.plan(indptr, indices, last, hq, hkv, d, page_size)
    rope = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    rope.plan(indptr, indices, last, hq, hkv, d, page_size, pos_encoding_mode="ROPE_LLAMA")
    want_plain, want_plain_lse = plain.run(q, cache, return_lse=True)
    want_rope = rope.run(q, cache)
    assert not np.allclose(want_plain.astype(np.float32), want_rope.astype(np.float32), **TOL)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    w.begin_forward(indptr, indices, last, hq, hkv, d, page_size, pos_encoding_mode="ROPE_LLAMA")
    np.testing.assert_array_equal(w.forward(q, cache, pos_encoding_mode="ROPE_LLAMA"), want_rope)
    np.testing.assert_array_equal(w.forward(q, cache), want_plain)  # the default, NONE, replaced the plan's
    out, lse = w.forward_return_lse(q, cache)
    np.testing.assert_array_equal(out, want_plain)
    np.testing.assert_array_equal(lse, want_plain_lse)
    out, lse = w.run_return_lse(q, cache)
    np.testing.assert_array_equal(lse, want_plain_lse)
    # sm_scale through forward equals a plan with it.
    scaled = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    scaled.plan(indptr, indices, last, hq, hkv, d, page_size, sm_scale=0.05)
    np.testing.assert_array_equal(w.forward(q, cache, sm_scale=0.05), scaled.run(q, cache))
    w.end_forward()


def test_decode_run_window_left_out_and_errors():
    rng = np.random.default_rng(91)
    page_size, hq, hkv, d = 4, 4, 4, 64
    cache, indptr, indices, last, kvs = paged(rng, [13, 6], page_size, hkv, d)
    q = rng.standard_normal((2, hq, d)).astype(np.float16)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    with pytest.raises(RuntimeError, match="before plan"):
        w.forward(q, cache)
    w.plan(indptr, indices, last, hq, hkv, d, page_size)
    out = np.full_like(q, np.nan)
    got = w.run(q, cache, out=out, window_left=3, enable_pdl=False)
    assert got is out
    for b, (k, v) in enumerate(kvs):
        keep = min(4, k.shape[0])  # window_left 3: the last key and the 3 before it
        ref, _ = attention(q[b][None], k[-keep:], v[-keep:])
        np.testing.assert_allclose(out[b].astype(np.float64), ref[0], **TOL)
    # The window stays until replaced (as upstream's stored option).
    np.testing.assert_array_equal(w.run(q, cache), out)
    full = w.run(q, cache, window_left=-1)
    ref, _ = attention(q[0][None], *kvs[0])
    np.testing.assert_allclose(full[0].astype(np.float64), ref[0], **TOL)
    w.reset_workspace_buffer(None, None)


def test_reset_workspace_buffer_keeps_the_device():
    torch = pytest.importorskip("torch")
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    with pytest.raises(ValueError, match="workspace"):
        w.reset_workspace_buffer(torch.empty(1), None)  # a CPU torch tensor names a device; the wrapper is the host's
    t = fi.BatchDecodeWithPagedKVCacheWrapper(torch.empty(1))
    t.reset_workspace_buffer(torch.empty(2), torch.empty(2))


def test_prefill_wrappers_run_return_lse_out_and_forward():
    rng = np.random.default_rng(92)
    page_size, hq, hkv, d = 4, 8, 4, 64
    lens, qo_lens = [9, 5, 16], [3, 5, 1]
    cache, indptr, indices, last, kvs = paged(rng, lens, page_size, hkv, d)
    qo = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int32)
    q = rng.standard_normal((qo[-1], hq, d)).astype(np.float16)
    w = fi.BatchPrefillWithPagedKVCacheWrapper(None)
    w.begin_forward(qo, indptr, indices, last, hq, hkv, d, page_size)
    out, lse = w.forward_return_lse(q, cache, causal=True)
    out2, lse2 = np.full_like(q, np.nan), np.full((qo[-1], hq), np.nan, np.float32)
    r = w.run(q, cache, out=out2, lse=lse2, return_lse=True)
    assert r[0] is out2 and r[1] is lse2
    np.testing.assert_array_equal(out2, out)
    for b, (k, v) in enumerate(kvs):
        ref, ref_lse = attention(q[qo[b]:qo[b + 1]], k, v, causal=True)
        np.testing.assert_allclose(out[qo[b]:qo[b + 1]].astype(np.float64), ref, **TOL)
        np.testing.assert_allclose(lse[qo[b]:qo[b + 1]], ref_lse, **TOL)
    nc = w.forward(q, cache)  # causal=False, the default, replaces the plan's causal
    ref, _ = attention(q[qo[0]:qo[1]], *kvs[0])
    np.testing.assert_allclose(nc[qo[0]:qo[1]].astype(np.float64), ref, **TOL)
    o3, l3 = w.run_return_lse(q, cache)
    np.testing.assert_array_equal(o3, nc)
    # Ragged: the same requests' K / V rows.
    kv_indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    k_all = np.concatenate([k for k, _ in kvs]); v_all = np.concatenate([v for _, v in kvs])
    rw = fi.BatchPrefillWithRaggedKVCacheWrapper(None)
    rw.begin_forward(qo, kv_indptr, hq, hkv, d)
    ro, rl = rw.forward_return_lse(q, k_all, v_all, causal=True)
    np.testing.assert_allclose(ro.astype(np.float32), out.astype(np.float32), **TOL)
    np.testing.assert_array_equal(rw.run_return_lse(q, k_all, v_all)[0], rw.forward(q, k_all, v_all, causal=True))
    rw.end_forward()


def test_cuda_graph_decode_wrapper_name_and_return_lse_alias():
    rng = np.random.default_rng(93)
    page_size, hq, hkv, d = 4, 8, 2, 64
    cache, indptr, indices, last, kvs = paged(rng, [5, 11], page_size, hkv, d)
    w = fi.CUDAGraphBatchDecodeWithPagedKVCacheWrapper(None, np.zeros(3, np.int32), np.zeros(8, np.int32),
                                                          np.zeros(2, np.int32))
    assert isinstance(w, fi.BatchDecodeWithPagedKVCacheWrapper)
    w.plan(indptr, indices, last, hq, hkv, d, page_size)
    q = rng.standard_normal((2, hq, d)).astype(np.float16)
    out = w.run(q, cache)
    for b, (k, v) in enumerate(kvs):
        ref, _ = attention(q[b][None], k, v)
        np.testing.assert_allclose(out[b].astype(np.float64), ref[0], **TOL)
    with pytest.raises(ValueError):
        fi.CUDAGraphBatchDecodeWithPagedKVCacheWrapper(None, np.zeros(4, np.int32), np.zeros(8, np.int32), np.zeros(2, np.int32))
    k, v = kvs[1]
    qq = rng.standard_normal((4, hq, d)).astype(np.float16)
    o, l = fi.single_prefill_with_kv_cache_return_lse(qq, k, v, causal=True)
    ref, ref_lse = attention(qq, k, v, causal=True)
    np.testing.assert_allclose(o.astype(np.float64), ref, **TOL)
    np.testing.assert_allclose(l, ref_lse, **TOL)


def test_shared_prefix_decode_wrapper():
    """Upstream's deprecated shared-prefix decode: every request attends the shared prefix, then its
    own pages; equal to attention over their concatenation."""
    rng = np.random.default_rng(94)
    page_size, hq, hkv, d, prefix = 4, 8, 2, 64, 21
    lens = [3, 10, 0, 7]
    cache, indptr, indices, last, kvs = paged(rng, [max(n, 1) for n in lens], page_size, hkv, d)
    # Request 2 has no unique keys: its page list is empty.
    per = np.diff(indptr).copy(); per[2] = 0
    indptr = np.concatenate([[0], np.cumsum(per)]).astype(np.int32)
    indices = np.concatenate([indices[:indptr[2]], indices[indptr[2] + 1:]]).astype(np.int32)
    last[2] = 0
    ks = rng.standard_normal((prefix, hkv, d)).astype(np.float16)
    vs = rng.standard_normal((prefix, hkv, d)).astype(np.float16)
    q = rng.standard_normal((len(lens), hq, d)).astype(np.float16)
    w = fi.BatchDecodeWithSharedPrefixPagedKVCacheWrapper(None, "NHD")
    with pytest.raises(RuntimeError):
        w.forward(q, ks, vs, cache)
    w.begin_forward(indptr, indices, last, hq, hkv, d, page_size)
    out = w.forward(q, ks, vs, cache)
    assert out.shape == q.shape
    for b, n in enumerate(lens):
        k, v = kvs[b]
        k, v = (np.concatenate([ks, k[:n]]), np.concatenate([vs, v[:n]]))
        ref, _ = attention(q[b][None], k, v)
        np.testing.assert_allclose(out[b].astype(np.float64), ref[0], **TOL)
    w.end_forward()


@pytest.mark.parametrize("causal", [False, True])
def test_shared_prefix_prefill_wrapper(causal):
    rng = np.random.default_rng(95 + causal)
    page_size, hq, hkv, d, prefix = 4, 4, 2, 64, 13
    lens, qo_lens = [6, 9], [4, 2]
    cache, indptr, indices, last, kvs = paged(rng, lens, page_size, hkv, d)
    qo = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int32)
    ks = rng.standard_normal((prefix, hkv, d)).astype(np.float16)
    vs = rng.standard_normal((prefix, hkv, d)).astype(np.float16)
    q = rng.standard_normal((qo[-1], hq, d)).astype(np.float16)
    w = fi.BatchPrefillWithSharedPrefixPagedKVCacheWrapper(None, "NHD")
    w.begin_forward(qo, indptr, indices, last, hq, hkv, d, page_size)
    out = w.forward(q, ks, vs, cache, causal=causal, sm_scale=0.1)
    for b, (k, v) in enumerate(kvs):
        # The prefix is seen whole; causal applies inside the request's own keys (bottom-right).
        qb = q[qo[b]:qo[b + 1]].astype(np.float64)
        n, m = qb.shape[0], k.shape[0]
        kk = np.concatenate([ks, k]).astype(np.float64); vv = np.concatenate([vs, v]).astype(np.float64)
        g = hq // hkv
        s = np.einsum("nhd,mhd->hnm", qb, np.repeat(kk, g, 1)) * 0.1
        if causal:
            own = np.arange(m)[None, :] <= (np.arange(n)[:, None] + m - n)
            allowed = np.concatenate([np.ones((n, prefix), bool), own], axis=1)
            s = np.where(allowed[None], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
        ref = np.einsum("hnm,mhd->nhd", p, np.repeat(vv, g, 1))
        np.testing.assert_allclose(out[qo[b]:qo[b + 1]].astype(np.float64), ref, **TOL)
