"""The C ABI and the Python package on CPU tensors (NumPy), against a float64 NumPy reference.

Runs in CI without a GPU: CPU tensors go to the library's CPU reference backend, so this tests the
ABI (DLPack layouts, options, status codes, errors) and upstream's Python conventions.
"""
import ctypes
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import flashinfer_swift as fi  # noqa: E402


def reference(q, k, v, causal=False, sm_scale=None, soft_cap=0.0, window_left=-1, layout="NHD", mask=None):
    """Float64 attention of one request: q [qo, Hq, D], k/v NHD [kv, Hkv, D] or HND; mask [qo, kv]
    (True keeps), with the other masks. Returns (out, lse base 2)."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    if layout == "HND":
        k, v = k.transpose(1, 0, 2), v.transpose(1, 0, 2)
    qo, hq, d = q.shape
    kv, hkv, _ = k.shape
    g = hq // hkv
    scale = sm_scale if sm_scale is not None else 1 / math.sqrt(d)
    out = np.zeros((qo, hq, d))
    lse = np.full((qo, hq), -np.inf)
    for h in range(hq):
        s = q[:, h, :] @ k[:, h // g, :].T * scale
        if soft_cap > 0:
            s = soft_cap * np.tanh(s / soft_cap)
        i = np.arange(qo)[:, None] + kv - qo
        j = np.arange(kv)[None, :]
        keep = np.ones((qo, kv), bool)
        if causal:
            keep &= j <= i
        if window_left >= 0:
            keep &= j >= i - window_left
        if mask is not None:
            keep &= mask
        s = np.where(keep, s, -np.inf)
        m = s.max(axis=1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        p = np.exp(s - m)
        den = p.sum(axis=1, keepdims=True)
        out[:, h, :] = np.where(den > 0, (p @ v[:, h // g, :]) / np.where(den > 0, den, 1), 0)
        lse[:, h] = np.where(den[:, 0] > 0, (np.log(np.where(den[:, 0] > 0, den[:, 0], 1)) + m[:, 0]) / math.log(2), -np.inf)
    return out, lse


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float16)


def test_version():
    assert fi.version().count(".") >= 2


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("hq,hkv", [(8, 8), (8, 2), (4, 1)])
@pytest.mark.parametrize("kv_len", [1, 37, 300])
def test_single_decode(layout, hq, hkv, kv_len):
    rng = np.random.default_rng(hq * 1000 + hkv * 100 + kv_len)
    d = 64
    q = rand(rng, hq, d)
    shape = (kv_len, hkv, d) if layout == "NHD" else (hkv, kv_len, d)
    k, v = rand(rng, *shape), rand(rng, *shape)
    out, lse = fi.single_decode_with_kv_cache(q, k, v, kv_layout=layout, return_lse=True)
    ref_out, ref_lse = reference(q[None], k, v, layout=layout)
    assert out.shape == (hq, d) and out.dtype == np.float16 and lse.shape == (hq,)
    np.testing.assert_allclose(out.astype(np.float64), ref_out[0], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(lse, ref_lse[0], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("qo_len,kv_len", [(1, 1), (7, 7), (5, 41), (33, 64)])
@pytest.mark.parametrize("soft_cap,window_left", [(0.0, -1), (30.0, -1), (0.0, 9)])
def test_single_prefill(causal, qo_len, kv_len, soft_cap, window_left):
    rng = np.random.default_rng(qo_len * 100 + kv_len + int(causal))
    hq, hkv, d = 4, 2, 64
    q = rand(rng, qo_len, hq, d)
    k, v = rand(rng, kv_len, hkv, d), rand(rng, kv_len, hkv, d)
    out, lse = fi.single_prefill_with_kv_cache(q, k, v, causal=causal, logits_soft_cap=soft_cap or None,
                                               window_left=window_left, sm_scale=0.2, return_lse=True)
    ref_out, ref_lse = reference(q, k, v, causal=causal, sm_scale=0.2, soft_cap=soft_cap, window_left=window_left)
    np.testing.assert_allclose(out.astype(np.float64), ref_out, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-3, rtol=1e-3)


def test_strided_inputs_and_no_lse():
    rng = np.random.default_rng(3)
    big = rand(rng, 2, 16, 4, 64)
    q, k, v = big[0, :5], big[1, :, :2], big[1, :, 2:]  # non-contiguous views
    out = fi.single_prefill_with_kv_cache(q, k, v, causal=True)
    ref_out, _ = reference(q, k, v, causal=True)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out.astype(np.float64), ref_out, atol=1e-3, rtol=1e-3)


def test_errors_raise_with_the_library_message():
    rng = np.random.default_rng(4)
    q, k, v = rand(rng, 8, 64), rand(rng, 16, 2, 128), rand(rng, 16, 2, 128)
    with pytest.raises(ValueError, match="head_dim"):
        fi.single_decode_with_kv_cache(q, k, v)
    with pytest.raises(ValueError, match="kv_layout"):
        fi.single_decode_with_kv_cache(q, k[..., :64], v[..., :64], kv_layout="NDH")
    with pytest.raises(ValueError, match="num_kv_heads|divisible"):
        fi.single_decode_with_kv_cache(rand(rng, 5, 64), k[..., :64], v[..., :64])
    with pytest.raises(TypeError, match="dtype"):
        fi.single_decode_with_kv_cache(q.astype(np.float64), k[..., :64], v[..., :64])
    with pytest.raises(ValueError, match="custom_mask"):
        fi.single_prefill_with_kv_cache(q[None], k[..., :64], v[..., :64], custom_mask=np.ones((2, 16), bool))
    with pytest.raises(ValueError, match="packed_custom_mask"):
        fi.single_prefill_with_kv_cache(q[None], k[..., :64], v[..., :64], packed_custom_mask=np.ones(5, np.uint8))


def test_error_state_is_per_call():
    rng = np.random.default_rng(5)
    q, k, v = rand(rng, 4, 64), rand(rng, 3, 4, 64), rand(rng, 3, 4, 64)
    with pytest.raises(ValueError):
        fi.single_decode_with_kv_cache(q, k[..., :32], v)
    fi.single_decode_with_kv_cache(q, k, v)  # a good call after a failed one works
    assert fi._library().flashinfer_swift_last_error() == b""


def test_strided_output_through_the_abi():
    # A C caller may hand the ABI a strided output: the result lands through its strides and the
    # elements between them stay as they were.
    rng = np.random.default_rng(6)
    q, k, v = rand(rng, 8, 64), rand(rng, 20, 2, 64), rand(rng, 20, 2, 64)
    out_all = np.full((8, 2, 64), 7, dtype=np.float16)
    out = out_all[:, 0]  # strides (128, 1) in elements
    tensors = [fi._Tensor(x, n) for x, n in ((q, "q"), (k, "k"), (v, "v"), (out, "out"))]
    opts = fi._options(False, "NONE", "NHD", -1, None, None, None, None)
    fi._check(fi._library().flashinfer_swift_single_decode(*[t.ref() for t in tensors], None, ctypes.byref(opts), None))
    ref_out, _ = reference(q[None], k, v)
    np.testing.assert_allclose(out.astype(np.float64), ref_out[0], atol=1e-3, rtol=1e-3)
    assert np.all(out_all[:, 1] == 7)


def test_k_and_v_scales():
    """k_scale multiplies the softmax scale and v_scale the output (upstream's FP8 calibration
    scales, any K/V dtype): the same as sm_scale · k_scale without scales, times v_scale (exact
    in binary floating point for a power-of-two v_scale); invalid scales are ValueError."""
    rng = np.random.default_rng(11)
    q, k, v = rand(rng, 8, 128), rand(rng, 40, 2, 128), rand(rng, 40, 2, 128)
    out, lse = fi.single_decode_with_kv_cache(q, k, v, k_scale=0.5, v_scale=2.0, return_lse=True)
    ref, ref_lse = fi.single_decode_with_kv_cache(q, k, v, sm_scale=0.5 / np.sqrt(128), return_lse=True)
    assert np.array_equal(out, ref * 2)
    assert np.array_equal(lse, ref_lse)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="k_scale"):
            fi.single_decode_with_kv_cache(q, k, v, k_scale=bad)
    with pytest.raises(NotImplementedError, match="q_scale"):
        fi.single_decode_with_kv_cache(q, k, v, q_scale=2.0)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("soft_cap", [0.0, 20.0])
def test_single_prefill_custom_mask(layout, packed, soft_cap):
    """custom_mask [qo_len, kv_len] (or its little-endian packbits) against the float64 reference with
    the same mask; every query keeps at least one key."""
    rng = np.random.default_rng(31 + int(packed) + 2 * int(soft_cap))
    qo, kv, hq, hkv, d = 7, 19, 4, 2, 64
    q = rand(rng, qo, hq, d)
    k, v = rand(rng, kv, hkv, d), rand(rng, kv, hkv, d)
    mask = rng.random((qo, kv)) < 0.5
    mask[np.arange(qo), rng.integers(0, kv, qo)] = True
    kk, vv = (k.transpose(1, 0, 2).copy(), v.transpose(1, 0, 2).copy()) if layout == "HND" else (k, v)
    arg = {"packed_custom_mask": np.packbits(mask.reshape(-1), bitorder="little")} if packed else {"custom_mask": mask}
    out, lse = fi.single_prefill_with_kv_cache(q, kk, vv, kv_layout=layout, sm_scale=0.2, return_lse=True,
                                               logits_soft_cap=soft_cap or None, **arg)
    ref_out, ref_lse = reference(q, k, v, sm_scale=0.2, soft_cap=soft_cap, mask=mask)
    assert out.shape == q.shape and lse.shape == (qo, hq)
    np.testing.assert_allclose(out.astype(np.float64), ref_out, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-3, rtol=1e-3)
    # The mask matters: all-True equals no mask, and differs from this one.
    full = fi.single_prefill_with_kv_cache(q, kk, vv, kv_layout=layout, sm_scale=0.2,
                                           logits_soft_cap=soft_cap or None, custom_mask=np.ones((qo, kv), bool))
    plain = fi.single_prefill_with_kv_cache(q, kk, vv, kv_layout=layout, sm_scale=0.2, logits_soft_cap=soft_cap or None)
    np.testing.assert_allclose(full.astype(np.float64), plain.astype(np.float64), atol=1e-3, rtol=1e-3)
    assert np.abs(full.astype(np.float64) - out.astype(np.float64)).max() > 1e-2
