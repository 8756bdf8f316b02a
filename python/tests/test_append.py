"""append_paged_kv_cache, get_batch_indices_positions and get_seq_lens through the C ABI on CPU
arrays: a decode step (append one token per request, then batch decode) equals single decode over
the grown sequences; the stacked and tuple cache forms; HND; errors."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402


def test_seq_lens_and_positions():
    kv_indptr = np.array([0, 2, 2, 5], np.int32)
    last = np.array([3, 0, 1], np.int32)
    assert fi.get_seq_lens(kv_indptr, last, 4).tolist() == [7, 0, 9]
    b, p = fi.get_batch_indices_positions(np.array([0, 2, 2, 3], np.int32), np.array([7, 0, 9], np.int32), 3)
    assert b.tolist() == [0, 0, 2] and p.tolist() == [5, 6, 8]
    with pytest.raises(ValueError, match="appends"):
        fi.get_batch_indices_positions(np.array([0, 9], np.int32), np.array([3], np.int32), 9)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("stacked", [True, False])
def test_decode_step(layout, stacked):
    rng = np.random.default_rng(3 + (layout == "HND") + 2 * stacked)
    page_size, hq, hkv, d = 4, 8, 2, 64
    old = [3, 4, 9]                  # tokens already cached
    new = [n + 1 for n in old]       # after appending one token each
    pages_per = [(n + page_size - 1) // page_size for n in new]
    indptr = np.concatenate([[0], np.cumsum(pages_per)]).astype(np.int32)
    num_pages = int(indptr[-1]) + 1
    indices = np.random.default_rng(0).permutation(num_pages)[: indptr[-1]].astype(np.int32)
    last = np.array([n - (p - 1) * page_size for n, p in zip(new, pages_per)], np.int32)
    shape = (num_pages, 2, page_size, hkv, d) if layout == "NHD" else (num_pages, 2, hkv, page_size, d)
    cache = np.zeros(shape, np.float16)
    kv_cache = cache if stacked else (np.zeros(shape[:1] + shape[2:], np.float16), np.zeros(shape[:1] + shape[2:], np.float16))
    # Write every token (the old ones, then the new one) through append, as an engine would.
    seqs_k = [rng.standard_normal((n, hkv, d)).astype(np.float16) for n in new]
    seqs_v = [rng.standard_normal((n, hkv, d)).astype(np.float16) for n in new]
    for step in range(2):
        counts = old if step == 0 else [1] * len(new)
        append_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        lens_now = np.array(old if step == 0 else new, np.int32)
        bi, pos = fi.get_batch_indices_positions(append_indptr, lens_now, int(append_indptr[-1]))
        ak = np.concatenate([s[p - c:p] for s, p, c in zip(seqs_k, lens_now, counts)])
        av = np.concatenate([s[p - c:p] for s, p, c in zip(seqs_v, lens_now, counts)])
        fi.append_paged_kv_cache(ak, av, bi, pos, kv_cache, indices, indptr, last, kv_layout=layout)
    q = rng.standard_normal((len(new), hq, d)).astype(np.float16)
    w = fi.BatchDecodeWithPagedKVCacheWrapper(None, kv_layout=layout)
    w.plan(indptr, indices, last, hq, hkv, d, page_size)
    out = w.run(q, kv_cache)
    for b in range(len(new)):
        ref = fi.single_decode_with_kv_cache(q[b], seqs_k[b], seqs_v[b])
        np.testing.assert_allclose(out[b].astype(np.float32), ref.astype(np.float32), atol=1e-3, rtol=1e-3)


def test_append_errors():
    cache = np.zeros((2, 2, 4, 2, 64), np.float16)
    ak = np.zeros((1, 2, 64), np.float16)
    args = (np.array([0], np.int32), np.array([0], np.int32), cache, np.array([0], np.int32), np.array([0, 1], np.int32),
            np.array([1], np.int32))
    fi.append_paged_kv_cache(ak, ak, *args)
    with pytest.raises(ValueError, match="positions"):
        fi.append_paged_kv_cache(ak, ak, np.array([0], np.int32), np.array([5], np.int32), *args[2:])
    with pytest.raises(ValueError, match="head_dim|append_key"):
        fi.append_paged_kv_cache(np.zeros((1, 2, 32), np.float16), np.zeros((1, 2, 32), np.float16), *args)
    with pytest.raises(ValueError, match="kv_layout"):
        fi.append_paged_kv_cache(ak, ak, *args, kv_layout="NDH")


def _torch():
    return pytest.importorskip("torch")


def test_seq_lens_and_positions_torch_ops_match_the_host():
    """Torch tensors take the torch-ops path (on a CUDA device: stream order, no copy to the host);
    on CPU tensors it must agree with the NumPy path, request by request."""
    torch = _torch()
    rng = np.random.default_rng(29)
    for trial in range(20):
        batch = int(rng.integers(1, 12))
        page = int(rng.choice([1, 4, 16]))
        seq = rng.integers(0, 80, batch).astype(np.int32)
        pages = (seq + page - 1) // page
        indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
        last = np.where(pages > 0, seq - (pages - 1) * page, 0).astype(np.int32)
        want = fi.get_seq_lens(indptr, last, page)
        got = fi.get_seq_lens(torch.from_numpy(indptr), torch.from_numpy(last), page)
        assert got.dtype == torch.int32 and got.tolist() == want.tolist() == seq.tolist(), trial
        counts = np.minimum(rng.integers(0, 5, batch), seq).astype(np.int32)
        ap = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        nnz = int(ap[-1])
        bw, pw = fi.get_batch_indices_positions(ap, seq, nnz)
        bg, pg = fi.get_batch_indices_positions(torch.from_numpy(ap), torch.from_numpy(seq), nnz)
        assert bg.dtype == pg.dtype == torch.int32
        assert bg.tolist() == bw.tolist() and pg.tolist() == pw.tolist(), trial


def test_append_index_dtypes_and_a_longer_kv_indices():
    """int64 torch index tensors are converted to int32; kv_indices may be longer than
    kv_indptr[-1] (a preallocated buffer): only its first kv_indptr[-1] entries are the table."""
    torch = _torch()
    rng = np.random.default_rng(31)
    page, hkv, d = 4, 2, 64
    seq = [5, 9]
    indptr = np.array([0, 2, 5], np.int32)
    indices = np.array([4, 0, 1, 3, 2], np.int32)
    last = np.array([1, 1], np.int32)
    ap = np.array([0, 2, 5], np.int32)
    bi, pos = fi.get_batch_indices_positions(ap, np.array(seq, np.int32), 5)
    ak = rng.standard_normal((5, hkv, d)).astype(np.float16)
    av = rng.standard_normal((5, hkv, d)).astype(np.float16)
    ref = np.zeros((5, 2, page, hkv, d), np.float16)
    fi.append_paged_kv_cache(ak, av, bi, pos, ref, indices, indptr, last)
    assert np.abs(ref).sum() > 0
    got = torch.zeros(5, 2, page, hkv, d, dtype=torch.float16)
    longer = np.concatenate([indices, [77, -1]]).astype(np.int64)
    fi.append_paged_kv_cache(torch.from_numpy(ak), torch.from_numpy(av), torch.from_numpy(bi.astype(np.int64)),
                             torch.from_numpy(pos.astype(np.int64)), got, torch.from_numpy(longer),
                             torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(last))
    np.testing.assert_array_equal(got.numpy(), ref)
    with pytest.raises(ValueError, match="kv_indices"):
        fi.append_paged_kv_cache(ak, av, bi, pos, ref, indices[:4], indptr, last)
    with pytest.raises(TypeError, match="positions"):
        fi.append_paged_kv_cache(ak, av, bi, pos.astype(np.float32), ref, indices, indptr, last)


def test_append_of_no_tokens_is_a_no_op():
    """nnz = 0 (NumPy gives an empty array zero strides): nothing is written, no error."""
    cache = np.random.default_rng(37).standard_normal((2, 2, 4, 2, 64)).astype(np.float16)
    before = cache.copy()
    ak = np.zeros((0, 2, 64), np.float16)
    fi.append_paged_kv_cache(ak, ak, np.zeros(0, np.int32), np.zeros(0, np.int32), cache, np.array([0], np.int32),
                             np.array([0, 1], np.int32), np.array([1], np.int32))
    np.testing.assert_array_equal(cache, before)
