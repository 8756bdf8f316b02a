"""State merges through the C ABI on CPU tensors, against a float64 NumPy reference (base-2 LSE)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import flashinfer_swift as fi  # noqa: E402


def ref_merge(vs, ss):
    """Merges states along axis 0: vs [S, ..., D], ss [S, ...] base 2 (empty: 0 / -inf)."""
    vs, ss = vs.astype(np.float64), ss.astype(np.float64)
    m = ss.max(axis=0)
    mm = np.where(np.isfinite(m), m, 0)
    w = np.where(np.isfinite(ss), np.exp2(ss - mm), 0)
    d = w.sum(axis=0)
    v = np.where(d[..., None] > 0, (w[..., None] * vs).sum(axis=0) / np.where(d > 0, d, 1)[..., None], 0)
    s = np.where(d > 0, np.log2(np.where(d > 0, d, 1)) + mm, -np.inf)
    return v, s


def states(rng, *shape):
    v = rng.standard_normal(shape).astype(np.float16)
    s = (rng.standard_normal(shape[:-1]) * 4).astype(np.float32)
    return v, s


def test_merge_state_and_empty_states():
    rng = np.random.default_rng(1)
    va, sa = states(rng, 37, 4, 64)
    vb, sb = states(rng, 37, 4, 64)
    sa[3], sb[3] = -np.inf, -np.inf  # both empty at position 3: 0 and -inf, never NaN
    sb[5] = -np.inf
    v, s = fi.merge_state(va, sa, vb, sb)
    rv, rs = ref_merge(np.stack([va, vb]), np.stack([sa, sb]))
    np.testing.assert_allclose(v.astype(np.float64), rv, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(s, rs, atol=1e-4, rtol=1e-4)
    assert not np.isnan(v).any() and np.all(v[3] == 0) and np.all(s[3] == -np.inf)


@pytest.mark.parametrize("use_mask", [False, True])
def test_merge_state_in_place(use_mask):
    rng = np.random.default_rng(2)
    v, s = states(rng, 19, 2, 128)
    vo, so = states(rng, 19, 2, 128)
    v0, s0 = v.copy(), s.copy()
    mask = rng.random(19) < 0.5 if use_mask else None
    fi.merge_state_in_place(v, s, vo, so, mask=mask)
    rv, rs = ref_merge(np.stack([v0, vo]), np.stack([s0, so]))
    keep = mask if use_mask else np.ones(19, bool)
    np.testing.assert_allclose(v[keep].astype(np.float64), rv[keep], atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(s[keep], rs[keep], atol=1e-4, rtol=1e-4)
    assert np.array_equal(v[~keep], v0[~keep]) and np.array_equal(s[~keep], s0[~keep])


@pytest.mark.parametrize("num_states", [1, 3, 8])
def test_merge_states(num_states):
    rng = np.random.default_rng(num_states)
    v, s = states(rng, 11, num_states, 4, 64)
    out_v, out_s = fi.merge_states(v, s)
    rv, rs = ref_merge(np.moveaxis(v, 1, 0), np.moveaxis(s, 1, 0))
    np.testing.assert_allclose(out_v.astype(np.float64), rv, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(out_s, rs, atol=1e-4, rtol=1e-4)


def test_merge_errors():
    rng = np.random.default_rng(3)
    va, sa = states(rng, 4, 2, 64)
    with pytest.raises(ValueError, match="s_b|shape|axis"):
        fi.merge_state(va, sa, va, sa[:3])
    with pytest.raises(ValueError, match="mask"):
        fi.merge_state_in_place(va.copy(), sa.copy(), va, sa, mask=np.ones(3, bool))



def test_merge_state_in_place_needs_contiguous_states():
    rng = np.random.default_rng(7)
    v_all, s_all = states(rng, 9, 4, 64)
    vo, so = states(rng, 9, 2, 64)
    with pytest.raises(ValueError, match="contiguous"):
        fi.merge_state_in_place(v_all[:, ::2], s_all[:, ::2], vo, so)
