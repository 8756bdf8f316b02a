"""MultiLevelCascadeAttentionWrapper through the C ABI on CPU arrays (the CPU reference backend): a
two-level cascade (a shared prefix for the whole batch, then each request's own pages) equals plain
batch prefill / decode over each request's concatenated pages; three levels; re-planning; errors."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402

HQ, HKV, D, PAGE = 4, 2, 64, 4


def cumsum0(xs):
    return np.concatenate([[0], np.cumsum(xs)]).astype(np.int32)


def pages_for(n):
    return (n + PAGE - 1) // PAGE


def last_len(n):
    return n - (pages_for(n) - 1) * PAGE


def setup(rng, shared_len, unique_lens, qo_lens, layout="NHD"):
    """A pool holding the shared prefix's pages (shared_len a multiple of PAGE) and each request's
    own pages, shuffled; the cascade's two levels and the flat per-request page table."""
    shared_pages = shared_len // PAGE
    unique_pages = [pages_for(n) for n in unique_lens]
    num_pages = shared_pages + sum(unique_pages) + 2
    perm = rng.permutation(num_pages).astype(np.int32)
    shared = perm[:shared_pages]
    own, at = [], shared_pages
    for p in unique_pages:
        own.append(perm[at:at + p])
        at += p
    shape = (num_pages, 2, PAGE, HKV, D) if layout == "NHD" else (num_pages, 2, HKV, PAGE, D)
    cache = rng.standard_normal(shape).astype(np.float16)
    qo_indptr = cumsum0(qo_lens)
    q = rng.standard_normal((int(qo_indptr[-1]), HQ, D)).astype(np.float16)
    b = len(unique_lens)
    levels = dict(
        qo_indptr_arr=[np.array([0, qo_indptr[-1]], np.int32), qo_indptr],
        paged_kv_indptr_arr=[np.array([0, shared_pages], np.int32), cumsum0(unique_pages)],
        paged_kv_indices_arr=[shared, np.concatenate(own).astype(np.int32)],
        paged_kv_last_page_len=[np.array([PAGE], np.int32), np.array([last_len(n) for n in unique_lens], np.int32)],
    )
    flat = dict(indptr=cumsum0([shared_pages + p for p in unique_pages]),
                indices=np.concatenate([np.concatenate([shared, o]) for o in own]).astype(np.int32),
                last=np.array([last_len(n) for n in unique_lens], np.int32))
    assert b == len(qo_lens)
    return cache, q, levels, flat


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("causal", [False, True])
def test_two_levels_equal_batch_prefill(layout, causal):
    rng = np.random.default_rng(11 + 2 * causal + (layout == "HND"))
    unique_lens, qo_lens = [5, 9, 3], [2, 7, 3]
    cache, q, levels, flat = setup(rng, 8, unique_lens, qo_lens, layout)
    w = fi.MultiLevelCascadeAttentionWrapper(2, None, kv_layout=layout)
    w.plan(levels["qo_indptr_arr"], levels["paged_kv_indptr_arr"], levels["paged_kv_indices_arr"],
           levels["paged_kv_last_page_len"], HQ, HKV, D, PAGE, causal=causal, logits_soft_cap=30.0)
    out = w.run(q, cache)
    assert out.shape == q.shape and out.dtype == q.dtype
    ref_w = fi.BatchPrefillWithPagedKVCacheWrapper(None, kv_layout=layout)
    ref_w.plan(levels["qo_indptr_arr"][1], flat["indptr"], flat["indices"], flat["last"], HQ, HKV, D, PAGE, causal=causal,
               logits_soft_cap=30.0)
    ref = ref_w.run(q, cache)
    np.testing.assert_allclose(out.astype(np.float32), ref.astype(np.float32), atol=1e-3, rtol=1e-3)
    # The (k, v) tuple form of the cache gives the same.
    out2 = w.forward(q, (np.ascontiguousarray(cache[:, 0]), np.ascontiguousarray(cache[:, 1])))
    np.testing.assert_array_equal(out2, out)


def test_two_levels_equal_batch_decode():
    rng = np.random.default_rng(21)
    unique_lens = [1, 6, 4, 12]
    cache, q, levels, flat = setup(rng, 12, unique_lens, [1] * len(unique_lens))
    w = fi.MultiLevelCascadeAttentionWrapper(2, None)
    w.begin_forward(levels["qo_indptr_arr"], levels["paged_kv_indptr_arr"], levels["paged_kv_indices_arr"],
                    levels["paged_kv_last_page_len"], HQ, HKV, D, PAGE, sm_scale=0.2)
    out = w.run(q, cache)
    d = fi.BatchDecodeWithPagedKVCacheWrapper(None)
    d.plan(flat["indptr"], flat["indices"], flat["last"], HQ, HKV, D, PAGE, sm_scale=0.2)
    ref = d.run(q, cache)
    np.testing.assert_allclose(out.astype(np.float32), ref.astype(np.float32), atol=1e-3, rtol=1e-3)
    # Re-plan the same wrapper for the first two requests only.
    lv = {k: list(v) for k, v in levels.items()}
    n2 = int(levels["paged_kv_indptr_arr"][1][2])
    lv["qo_indptr_arr"] = [np.array([0, 2], np.int32), np.array([0, 1, 2], np.int32)]
    lv["paged_kv_indptr_arr"][1] = levels["paged_kv_indptr_arr"][1][:3]
    lv["paged_kv_indices_arr"][1] = levels["paged_kv_indices_arr"][1][:n2]
    lv["paged_kv_last_page_len"][1] = levels["paged_kv_last_page_len"][1][:2]
    w.plan(lv["qo_indptr_arr"], lv["paged_kv_indptr_arr"], lv["paged_kv_indices_arr"], lv["paged_kv_last_page_len"],
           HQ, HKV, D, PAGE, sm_scale=0.2)
    np.testing.assert_array_equal(w.run(q[:2], cache), out[:2])


def test_three_levels():
    """Level 0: one prefix for all; level 1: a second prefix for each half of the batch; level 2:
    each request's own pages. Equals batch prefill over prefix + half prefix + own pages."""
    rng = np.random.default_rng(31)
    num_pages = 40
    cache = rng.standard_normal((num_pages, 2, PAGE, HKV, D)).astype(np.float16)
    perm = rng.permutation(num_pages).astype(np.int32)
    p0, p1a, p1b = perm[0:2], perm[2:4], perm[4:5]
    own = [perm[5:6], perm[6:8], perm[8:11], perm[11:12]]
    own_last = np.array([3, 4, 1, 2], np.int32)
    qo_lens = [1, 3, 2, 1]
    qo = cumsum0(qo_lens)
    q = rng.standard_normal((int(qo[-1]), HQ, D)).astype(np.float16)
    levels = ([np.array([0, qo[-1]], np.int32), np.array([0, qo[2], qo[4]], np.int32), qo],
              [np.array([0, 2], np.int32), np.array([0, 2, 3], np.int32), cumsum0([len(o) for o in own])],
              [p0, np.concatenate([p1a, p1b]), np.concatenate(own)],
              [np.array([PAGE], np.int32), np.array([PAGE, PAGE], np.int32), own_last])
    w = fi.MultiLevelCascadeAttentionWrapper(3, None)
    w.plan(*levels, HQ, HKV, D, PAGE, causal=True)
    out = w.run(q, cache)
    mids = [p1a, p1a, p1b, p1b]
    flat = [np.concatenate([p0, m, o]) for m, o in zip(mids, own)]
    ref_w = fi.BatchPrefillWithPagedKVCacheWrapper(None)
    ref_w.plan(qo, cumsum0([len(f) for f in flat]), np.concatenate(flat), own_last, HQ, HKV, D, PAGE, causal=True)
    np.testing.assert_allclose(out.astype(np.float32), ref_w.run(q, cache).astype(np.float32), atol=1e-3, rtol=1e-3)


def test_errors():
    rng = np.random.default_rng(41)
    cache, q, levels, _ = setup(rng, 8, [5, 9], [2, 3])
    args = [levels["qo_indptr_arr"], levels["paged_kv_indptr_arr"], levels["paged_kv_indices_arr"],
            levels["paged_kv_last_page_len"]]
    w = fi.MultiLevelCascadeAttentionWrapper(2, None)
    with pytest.raises(RuntimeError, match="before plan"):
        w.run(q, cache)
    with pytest.raises(ValueError, match="num_levels"):
        fi.MultiLevelCascadeAttentionWrapper(0, None)
    with pytest.raises(ValueError, match="kv_layout"):
        fi.MultiLevelCascadeAttentionWrapper(2, None, kv_layout="XYZ")
    with pytest.raises(ValueError, match="num_levels = 2"):
        w.plan(args[0][:1], args[1][:1], args[2][:1], args[3][:1], HQ, HKV, D, PAGE)
    # The library's messages: a level that does not cover every query, a bad last-page length, a
    # head dim the kernels lack, a bad pos_encoding_mode / dtype.
    bad = [a.copy() for a in args[0]]
    bad[1] = np.array([0, 2, 4], np.int32)
    with pytest.raises(ValueError, match="every level must cover every query"):
        w.plan(bad, *args[1:], HQ, HKV, D, PAGE)
    bad_last = [a.copy() for a in args[3]]
    bad_last[1][0] = PAGE + 3
    with pytest.raises(ValueError, match="level 1"):
        w.plan(args[0], args[1], args[2], bad_last, HQ, HKV, D, PAGE)
    with pytest.raises(ValueError, match="head_dim"):
        w.plan(*args, HQ, HKV, 48, PAGE)
    with pytest.raises(ValueError, match="num_qo_heads"):
        w.plan(*args, 3, HKV, D, PAGE)
    with pytest.raises(ValueError, match="pos_encoding_mode"):
        w.plan(*args, HQ, HKV, D, PAGE, pos_encoding_mode="XYZ")
    with pytest.raises(TypeError, match="q_data_type"):
        w.plan(*args, HQ, HKV, D, PAGE, q_data_type="int8")
    w.plan(*args, HQ, HKV, D, PAGE)
    with pytest.raises(ValueError, match="q"):
        w.run(q[:3], cache)  # fewer rows than planned
    with pytest.raises(ValueError, match="qo_indptr_buf_arr"):
        fi.MultiLevelCascadeAttentionWrapper(2, None, use_cuda_graph=True)


def graph_bufs(batches, pages):
    """Upstream's CUDA-graph buffers for a cascade: one per level, their lengths the capacities."""
    return dict(qo_indptr_buf_arr=[np.zeros(b + 1, np.int32) for b in batches],
                paged_kv_indptr_buf_arr=[np.zeros(b + 1, np.int32) for b in batches],
                paged_kv_indices_buf_arr=[np.zeros(p, np.int32) for p in pages],
                paged_kv_last_page_len_buf_arr=[np.zeros(b, np.int32) for b in batches])


def test_cuda_graph_mode_on_the_cpu():
    """use_cuda_graph=True: the buffers fix each level's capacity and the first plan the query rows;
    on the CPU backend the results equal the plain wrapper's, re-plans within the capacity work,
    and plans beyond it (requests, pages, query rows) are ValueErrors that leave the wrapper usable.
    (The GPU capture and replay is test_cuda.py's.)"""
    rng = np.random.default_rng(31)
    cache, q, levels, flat = setup(rng, 8, [5, 9, 3], [2, 7, 3])
    args = [levels[k] for k in ("qo_indptr_arr", "paged_kv_indptr_arr", "paged_kv_indices_arr", "paged_kv_last_page_len")]
    g = fi.MultiLevelCascadeAttentionWrapper(2, None, use_cuda_graph=True, **graph_bufs([1, 4], [4, 12]))
    g.plan(*args, HQ, HKV, D, PAGE, causal=True)
    p = fi.MultiLevelCascadeAttentionWrapper(2, None)
    p.plan(*args, HQ, HKV, D, PAGE, causal=True)
    np.testing.assert_array_equal(g.run(q, cache), p.run(q, cache))
    # Fewer requests and rows: the first two requests only.
    n2 = int(args[1][1][2])
    two = [[np.array([0, 9], np.int32), args[0][1][:3]], [args[1][0], args[1][1][:3]], [args[2][0], args[2][1][:n2]],
           [args[3][0], args[3][1][:2]]]
    g.plan(*two, HQ, HKV, D, PAGE, causal=True)
    p.plan(*two, HQ, HKV, D, PAGE, causal=True)
    np.testing.assert_array_equal(g.run(q[:9], cache), p.run(q[:9], cache))
    small = graph_bufs([1, 2], [4, 12])
    with pytest.raises(ValueError, match="batch size"):
        fi.MultiLevelCascadeAttentionWrapper(2, None, use_cuda_graph=True, **small).plan(*args, HQ, HKV, D, PAGE)
    with pytest.raises(ValueError, match="pages"):
        fi.MultiLevelCascadeAttentionWrapper(2, None, use_cuda_graph=True, **graph_bufs([1, 4], [4, 5])).plan(*args, HQ, HKV, D, PAGE)
    g2 = fi.MultiLevelCascadeAttentionWrapper(2, None, use_cuda_graph=True, **graph_bufs([1, 4], [4, 12]))
    g2.plan(*two, HQ, HKV, D, PAGE)  # the first plan fixes 9 query rows
    with pytest.raises(ValueError, match="query rows"):
        g2.plan(*args, HQ, HKV, D, PAGE)  # 12 rows
    g2.plan(*two, HQ, HKV, D, PAGE)
    p.plan(*two, HQ, HKV, D, PAGE)
    np.testing.assert_array_equal(g2.run(q[:9], cache), p.run(q[:9], cache))
    with pytest.raises(ValueError, match="paged_kv_indptr_buf_arr\\[1\\]"):
        fi.MultiLevelCascadeAttentionWrapper(2, None, use_cuda_graph=True,
                                             **dict(graph_bufs([1, 4], [4, 12]),
                                                    paged_kv_indptr_buf_arr=[np.zeros(2, np.int32), np.zeros(3, np.int32)]))
