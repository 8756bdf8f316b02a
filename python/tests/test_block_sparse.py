"""BlockSparseAttentionWrapper (upstream's flashinfer.sparse API) on the CPU reference, against a
float64 dense attention under the mask the BSR pattern (and in-block mask) defines."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402


def dense_mask(indptr, indices, M, N, R, C, mask=None):
    """[M, N]: query q sees key k iff block (q // R, k // C) is stored and, with a mask, its bit is set."""
    keep = np.zeros((M, N), bool)
    for i in range(len(indptr) - 1):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            rows = slice(i * R, min((i + 1) * R, M))
            block = np.ones((min((i + 1) * R, M) - i * R, C), bool) if mask is None else mask[p][: min((i + 1) * R, M) - i * R]
            keep[rows, j * C:(j + 1) * C] = block
    return keep


def reference(q, k, v, keep, sm_scale):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    M, hq, d = q.shape
    g = hq // k.shape[1]
    out = np.zeros((M, hq, d))
    lse = np.full((M, hq), -np.inf)
    for h in range(hq):
        s = np.where(keep, q[:, h] @ k[:, h // g].T * sm_scale, -np.inf)
        m = s.max(axis=1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        p = np.exp(s - m)
        den = p.sum(axis=1, keepdims=True)
        out[:, h] = np.where(den > 0, (p @ v[:, h // g]) / np.where(den > 0, den, 1), 0)
        lse[:, h] = np.where(den[:, 0] > 0, (np.log(np.where(den[:, 0] > 0, den[:, 0], 1)) + m[:, 0]) / math.log(2), -np.inf)
    return out, lse


def pattern(rng, mb, nb, density):
    rows = [np.sort(rng.choice(nb, size=max(1, int(density * nb)), replace=False)) for _ in range(mb)]
    rows[1] = rows[1][:0]  # a block row that stores nothing: its queries see nothing
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int32)
    return indptr, np.concatenate(rows).astype(np.int32)


@pytest.mark.parametrize("M,R,with_mask", [(64, 16, False), (60, 16, False), (64, 16, True), (48, 8, True)])
def test_block_sparse_matches_dense(M, R, with_mask):
    rng = np.random.default_rng(M + R + int(with_mask))
    N, C, hq, hkv, d = 96, 16, 4, 2, 64
    indptr, indices = pattern(rng, (M + R - 1) // R, N // C, 0.5)
    mask = rng.random((len(indices), R, C)) < 0.6 if with_mask else None
    q = rng.standard_normal((M, hq, d)).astype(np.float16)
    k = rng.standard_normal((N, hkv, d)).astype(np.float16)
    v = rng.standard_normal((N, hkv, d)).astype(np.float16)
    w = fi.BlockSparseAttentionWrapper(None)
    w.plan(indptr, indices, M, N, R, C, hq, hkv, d, mask=mask, sm_scale=0.15)
    out, lse = w.run(q, k, v, return_lse=True)
    keep = dense_mask(indptr, indices, M, N, R, C, mask)
    ref_out, ref_lse = reference(q, k, v, keep, 0.15)
    assert out.shape == q.shape and lse.shape == (M, hq)
    np.testing.assert_allclose(out.astype(np.float64), ref_out, atol=1e-3, rtol=1e-3)
    seen = keep.any(axis=1)
    np.testing.assert_allclose(lse[seen], ref_lse[seen], atol=1e-3, rtol=1e-3)
    assert np.all(out[~seen] == 0)
    if with_mask:  # packed_mask (upstream's per-block-row packed bits) gives the same result
        flat = [mask[indptr[i]:indptr[i + 1]].transpose(1, 0, 2).reshape(-1) for i in range(len(indptr) - 1)]
        packed = np.concatenate([np.packbits(f, bitorder="little") for f in flat]).astype(np.uint8)
        w.plan(indptr, indices, M, N, R, C, hq, hkv, d, packed_mask=packed, sm_scale=0.15)
        np.testing.assert_array_equal(w.run(q, k, v), out)


def test_strided_k_v_are_viewed_not_copied():
    rng = np.random.default_rng(3)
    M, N, R, C, hq, hkv, d = 32, 64, 16, 16, 2, 2, 64
    indptr, indices = pattern(rng, 2, 4, 0.5)
    kv = rng.standard_normal((N, 2, hkv, d)).astype(np.float16)
    k, v = kv[:, 0], kv[:, 1]  # strided halves of one tensor
    q = rng.standard_normal((M, hq, d)).astype(np.float16)
    w = fi.BlockSparseAttentionWrapper(None)
    w.plan(indptr, indices, M, N, R, C, hq, hkv, d)
    out = w.run(q, k, v)
    ref_out, _ = reference(q, k, v, dense_mask(indptr, indices, M, N, R, C), 1 / math.sqrt(d))
    np.testing.assert_allclose(out.astype(np.float64), ref_out, atol=1e-3, rtol=1e-3)


def test_errors():
    w = fi.BlockSparseAttentionWrapper(None)
    ip, ix = np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32)
    with pytest.raises(RuntimeError, match="before plan"):
        w.run(np.zeros((32, 2, 64), np.float16), np.zeros((32, 2, 64), np.float16), np.zeros((32, 2, 64), np.float16))
    with pytest.raises(ValueError, match="multiple of C"):
        w.plan(ip, ix, 32, 30, 16, 16, 2, 2, 64)
    with pytest.raises(ValueError, match="indptr"):
        w.plan(np.array([0, 1], np.int32), ix, 32, 32, 16, 16, 2, 2, 64)
    with pytest.raises(ValueError, match="indices"):
        w.plan(ip, np.array([0, 2], np.int32), 32, 32, 16, 16, 2, 2, 64)
    with pytest.raises(ValueError, match="twice"):
        w.plan(np.array([0, 2, 2], np.int32), np.array([1, 1], np.int32), 32, 32, 16, 16, 2, 2, 64)
    with pytest.raises(ValueError, match="mask"):
        w.plan(ip, ix, 32, 32, 16, 16, 2, 2, 64, mask=np.ones((2, 16, 8), bool))
    with pytest.raises(NotImplementedError, match="causal"):
        w.plan(ip, ix, 32, 32, 16, 16, 2, 2, 64, causal=True)
    with pytest.raises(NotImplementedError, match="pos_encoding_mode"):
        w.plan(ip, ix, 32, 32, 16, 16, 2, 2, 64, pos_encoding_mode="ROPE_LLAMA")
    w.plan(ip, ix, 32, 32, 16, 16, 2, 2, 64)
    with pytest.raises(ValueError, match="k: shape"):
        w.run(np.zeros((32, 2, 64), np.float16), np.zeros((16, 2, 64), np.float16), np.zeros((32, 2, 64), np.float16))
