"""Norms, gated activations and RoPE through the C ABI on CPU arrays (the CPU reference backend),
against float64 NumPy references; in-place forms, out=, strided inputs and errors."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402

TOL = dict(atol=1e-3, rtol=1e-3)  # upstream's (f16 outputs of a float64 computation)


def f64(x):
    return np.asarray(x, dtype=np.float64)


def close(got, ref, **tol):
    np.testing.assert_allclose(f64(got), ref, **(tol or TOL))


# ---- norms ----

def rms_ref(x, w, eps, gemma=False):
    x = f64(x)
    inv = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x * inv * (1.0 + f64(w) if gemma else f64(w))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(1, 111), (19, 512), (3, 5, 64)])
def test_rmsnorm(dtype, shape):
    rng = np.random.default_rng(shape[-1])
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(shape[-1]).astype(dtype)
    out = fi.rmsnorm(x, w, eps=1e-5)
    assert out.shape == x.shape and out.dtype == x.dtype
    close(out, rms_ref(x, w, 1e-5), atol=2e-3, rtol=2e-3)
    close(fi.gemma_rmsnorm(x, w), rms_ref(x, w, 1e-6, gemma=True), atol=2e-3, rtol=2e-3)
    buf = np.zeros_like(x)
    assert fi.rmsnorm(x, w, out=buf) is buf
    close(buf, rms_ref(x, w, 1e-6), atol=2e-3, rtol=2e-3)


def test_rmsnorm_strided_rows():
    rng = np.random.default_rng(5)
    big = rng.standard_normal((8, 256)).astype(np.float16)
    x = big[:, :128]  # rows of 128 with a row stride of 256
    w = rng.standard_normal(128).astype(np.float16)
    close(fi.rmsnorm(x, w), rms_ref(x, w, 1e-6), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("gemma", [False, True])
def test_fused_add_rmsnorm_in_place(gemma):
    rng = np.random.default_rng(7 + gemma)
    x = rng.standard_normal((9, 384)).astype(np.float16)
    r = rng.standard_normal((9, 384)).astype(np.float16)
    w = rng.standard_normal(384).astype(np.float16)
    s = f64(x) + f64(r)
    fn = fi.gemma_fused_add_rmsnorm if gemma else fi.fused_add_rmsnorm
    assert fn(x, r, w, 1e-6) is None
    close(r, s)
    close(x, rms_ref(s, w, 1e-6, gemma), atol=2e-3, rtol=2e-3)


def test_layernorm():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((7, 300)).astype(np.float16)
    g = rng.standard_normal(300).astype(np.float32)
    b = rng.standard_normal(300).astype(np.float32)
    out = fi.layernorm(x, g, b, eps=1e-5)
    xd = f64(x)
    mean = xd.mean(-1, keepdims=True)
    var = ((xd - mean) ** 2).mean(-1, keepdims=True)
    close(out, (xd - mean) / np.sqrt(var + 1e-5) * f64(g) + f64(b), atol=1e-2, rtol=1e-2)


def test_norm_errors():
    x = np.ones((4, 64), np.float16)
    with pytest.raises(ValueError, match="weight"):
        fi.rmsnorm(x, np.ones(32, np.float16))
    with pytest.raises(ValueError, match="eps"):
        fi.rmsnorm(x, np.ones(64, np.float16), eps=-1.0)
    with pytest.raises(ValueError, match="residual"):
        fi.fused_add_rmsnorm(x, np.ones((4, 32), np.float16), np.ones(64, np.float16))
    with pytest.raises(ValueError, match="out"):
        fi.rmsnorm(x, np.ones(64, np.float16), out=np.ones((4, 32), np.float16))
    with pytest.raises(TypeError, match="dtype"):
        fi.rmsnorm(x.astype(np.int32), np.ones(64, np.float16))


# ---- activations ----

def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("name,act", [("silu_and_mul", silu), ("gelu_and_mul", gelu), ("gelu_tanh_and_mul", gelu_tanh)])
@pytest.mark.parametrize("shape", [(1, 256), (5, 3, 1024)])
def test_activation(name, act, shape):
    rng = np.random.default_rng(shape[-1] + len(name))
    x = (rng.standard_normal(shape) * 2).astype(np.float16)
    d = shape[-1] // 2
    xd = f64(x)
    ref = act(xd[..., :d]) * xd[..., d:]
    out = getattr(fi, name)(x)
    assert out.shape == shape[:-1] + (d,) and out.dtype == x.dtype
    close(out, ref)
    buf = np.zeros(shape[:-1] + (d,), np.float16)
    assert getattr(fi, name)(x, out=buf) is buf
    close(buf, ref)


def test_activation_errors():
    with pytest.raises(ValueError, match="even"):
        fi.silu_and_mul(np.ones((2, 7), np.float16))
    with pytest.raises(ValueError, match="out"):
        fi.silu_and_mul(np.ones((2, 8), np.float16), out=np.ones((2, 8), np.float16))


# ---- RoPE ----

def rope_freqs(rotary_dim, theta, scale, llama31=None):
    f = theta ** (-2.0 * np.arange(rotary_dim // 2) / rotary_dim)
    if llama31 is None:
        return f / scale
    low, high, old = llama31
    a = old / (2 * math.pi * (high - low))
    b = -1.0 / (high / low - 1.0)
    s = np.clip(f * a + b, 0.0, 1.0)
    return (1 - s) * f / scale + s * f


def rope_ref(x, pos, rotary_dim, interleave, freqs=None, cos=None, sin=None):
    """x [nnz, H, D] float64 rotated: row t at pos[t] (or by the given cos / sin [nnz, rd/2])."""
    x = f64(x).copy()
    half = rotary_dim // 2
    if cos is None:
        ang = np.asarray(pos, np.float64)[:, None] * freqs[None, :]
        cos, sin = np.cos(ang), np.sin(ang)
    c, s = cos[:, None, :], sin[:, None, :]
    if interleave:
        a, b = x[..., 0:rotary_dim:2].copy(), x[..., 1:rotary_dim:2].copy()
        x[..., 0:rotary_dim:2] = a * c - b * s
        x[..., 1:rotary_dim:2] = b * c + a * s
    else:
        a, b = x[..., :half].copy(), x[..., half:rotary_dim].copy()
        x[..., :half] = a * c - b * s
        x[..., half:rotary_dim] = b * c + a * s
    return x


def rope_inputs(rng, nnz, hq=4, hk=2, d=64):
    return (rng.standard_normal((nnz, hq, d)).astype(np.float16), rng.standard_normal((nnz, hk, d)).astype(np.float16))


@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("rotary_dim", [None, 32])
def test_apply_rope(interleave, rotary_dim):
    rng = np.random.default_rng(3 + interleave + (rotary_dim or 0))
    indptr = np.array([0, 3, 4, 9], np.int32)
    offsets = np.array([0, 15, 99], np.int32)
    q, k = rope_inputs(rng, 9)
    pos = np.concatenate([offsets[b] + np.arange(indptr[b + 1] - indptr[b]) for b in range(3)])
    rd = rotary_dim or 64
    fr = rope_freqs(rd, 1e4, 1.0)
    qr, kr = fi.apply_rope(q, k, indptr, offsets, rotary_dim=rotary_dim, interleave=interleave)
    close(qr, rope_ref(q, pos, rd, interleave, fr))
    close(kr, rope_ref(k, pos, rd, interleave, fr))
    # pos_ids form, rope_scale / rope_theta, and the in-place forms.
    fr2 = rope_freqs(rd, 5e5, 2.0)
    qp, kp = fi.apply_rope_pos_ids(q, k, pos, rotary_dim=rotary_dim, interleave=interleave, rope_scale=2, rope_theta=5e5)
    close(qp, rope_ref(q, pos, rd, interleave, fr2))
    close(kp, rope_ref(k, pos, rd, interleave, fr2))
    q2, k2 = q.copy(), k.copy()
    assert fi.apply_rope_inplace(q2, k2, indptr, offsets, rotary_dim=rotary_dim, interleave=interleave) is None
    np.testing.assert_array_equal(q2, qr)
    np.testing.assert_array_equal(k2, kr)
    q3, k3 = q.copy(), k.copy()
    fi.apply_rope_pos_ids_inplace(q3, k3, pos.astype(np.int64), rotary_dim=rotary_dim, interleave=interleave, rope_scale=2,
                                  rope_theta=5e5)
    np.testing.assert_array_equal(q3, qp)
    np.testing.assert_array_equal(k3, kp)


def test_apply_llama31_rope():
    rng = np.random.default_rng(13)
    q, k = rope_inputs(rng, 6, d=128)
    indptr, offsets = np.array([0, 2, 6], np.int32), np.array([7, 9000], np.int32)
    pos = np.array([7, 8, 9000, 9001, 9002, 9003])
    fr = rope_freqs(128, 5e5, 8.0, (1.0, 4.0, 8192.0))
    qr, kr = fi.apply_llama31_rope(q, k, indptr, offsets)
    close(qr, rope_ref(q, pos, 128, False, fr))
    close(kr, rope_ref(k, pos, 128, False, fr))
    qp, kp = fi.apply_llama31_rope_pos_ids(q, k, pos, rope_scale=4, low_freq_factor=2, high_freq_factor=8)
    fr2 = rope_freqs(128, 5e5, 4.0, (2.0, 8.0, 8192.0))
    close(qp, rope_ref(q, pos, 128, False, fr2))
    q2, k2 = q.copy(), k.copy()
    fi.apply_llama31_rope_inplace(q2, k2, indptr, offsets)
    np.testing.assert_array_equal(q2, qr)
    q3, k3 = q.copy(), k.copy()
    fi.apply_llama31_rope_pos_ids_inplace(q3, k3, pos)
    np.testing.assert_array_equal(k3, kr)


@pytest.mark.parametrize("is_neox", [True, False])
def test_apply_rope_with_cos_sin_cache(is_neox):
    rng = np.random.default_rng(17 + is_neox)
    nnz, hq, hk, head, rd, max_pos = 5, 4, 2, 64, 32, 100
    fr = rope_freqs(rd, 1e4, 1.0)
    ang = np.arange(max_pos)[:, None] * fr[None, :]
    cache = np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
    pos = np.array([0, 1, 50, 99, 3], np.int32)
    query = rng.standard_normal((nnz, hq * head)).astype(np.float16)
    key = rng.standard_normal((nnz, hk * head)).astype(np.float16)
    qr, kr = fi.apply_rope_with_cos_sin_cache(pos, query, key, head, cache, is_neox=is_neox)
    assert qr.shape == query.shape and kr.shape == key.shape
    c, s = f64(cache[pos, :rd // 2]), f64(cache[pos, rd // 2:])
    close(qr.reshape(nnz, hq, head), rope_ref(query.reshape(nnz, hq, head), pos, rd, not is_neox, cos=c, sin=s))
    close(kr.reshape(nnz, hk, head), rope_ref(key.reshape(nnz, hk, head), pos, rd, not is_neox, cos=c, sin=s))
    q2, k2 = query.copy(), key.copy()
    assert fi.apply_rope_with_cos_sin_cache_inplace(pos, q2, k2, head, cache, is_neox=is_neox) is None
    np.testing.assert_array_equal(q2, qr)
    np.testing.assert_array_equal(k2, kr)


def test_rope_errors():
    rng = np.random.default_rng(19)
    q, k = rope_inputs(rng, 4)
    with pytest.raises(ValueError, match="rotary_dim"):
        fi.apply_rope_pos_ids(q, k, np.arange(4), rotary_dim=65)
    with pytest.raises(ValueError, match="pos_ids"):
        fi.apply_rope_pos_ids(q, k, np.arange(3))
    with pytest.raises(ValueError, match="indptr"):
        fi.apply_rope(q, k, np.array([0, 2, 3], np.int32), np.array([0, 0], np.int32))
    with pytest.raises(ValueError, match="rope_theta"):
        fi.apply_rope_pos_ids(q, k, np.arange(4), rope_theta=-1)
    with pytest.raises(ValueError, match="high_freq_factor"):
        fi.apply_llama31_rope_pos_ids(q, k, np.arange(4), low_freq_factor=4, high_freq_factor=2)
    cache = np.ones((10, 32), np.float32)
    with pytest.raises(ValueError, match="positions"):
        fi.apply_rope_with_cos_sin_cache(np.array([0, 1, 2, 10]), q.reshape(4, -1), k.reshape(4, -1), 64, cache)
    with pytest.raises(ValueError, match="cos_sin_cache"):
        fi.apply_rope_with_cos_sin_cache(np.arange(4), q.reshape(4, -1), k.reshape(4, -1), 64, cache.astype(np.float16))


def test_rope_position_dtypes():
    """pos_ids / positions as int32 or int64 (NumPy, or torch tensors when torch is present) give
    the same rotation; int64 values that do not fit int32 are refused; floats are a TypeError."""
    rng = np.random.default_rng(23)
    q, k = rope_inputs(rng, 6)
    pos = np.array([0, 5, 1, 70000, 3, 12], np.int64)
    q32, k32 = fi.apply_rope_pos_ids(q, k, pos.astype(np.int32))
    q64, k64 = fi.apply_rope_pos_ids(q, k, pos)
    np.testing.assert_array_equal(q32, q64)
    np.testing.assert_array_equal(k32, k64)
    with pytest.raises(ValueError, match="pos_ids.*int32"):
        fi.apply_rope_pos_ids(q, k, np.array([0, 1, 2, 3, 4, 1 << 40], np.int64))
    with pytest.raises(TypeError, match="pos_ids"):
        fi.apply_rope_pos_ids(q, k, pos.astype(np.float32))
    cache_pos = np.array([0, 9, 3, 1, 2, 4], np.int64)
    cache = np.random.default_rng(1).standard_normal((10, 64)).astype(np.float32)
    a = fi.apply_rope_with_cos_sin_cache(cache_pos, q.reshape(6, -1), k.reshape(6, -1), 64, cache)
    b = fi.apply_rope_with_cos_sin_cache(cache_pos.astype(np.int32), q.reshape(6, -1), k.reshape(6, -1), 64, cache)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    try:
        import torch
    except ImportError:
        return
    tq, tk = fi.apply_rope_pos_ids(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(pos))
    np.testing.assert_array_equal(tq.numpy(), q32)
    indptr, offsets = torch.tensor([0, 2, 6], dtype=torch.int64), torch.tensor([7, 900], dtype=torch.int64)
    rq, rk = fi.apply_rope(torch.from_numpy(q), torch.from_numpy(k), indptr, offsets)
    hq, hk = fi.apply_rope(q, k, np.array([0, 2, 6], np.int32), np.array([7, 900], np.int32))
    np.testing.assert_array_equal(rq.numpy(), hq)
    np.testing.assert_array_equal(rk.numpy(), hk)
