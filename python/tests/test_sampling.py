"""Sampling through the C ABI on CPU arrays (the CPU reference backend): renorm / mask / softmax
against NumPy float64 references; the samplers' draws inside their supports, their frequencies,
fixed-seed reproducibility, return_valid, indices, generators; errors."""
import ctypes
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashinfer_swift as fi  # noqa: E402


def probs_rows(rng, batch, vocab, scale=1.0):
    logits = rng.standard_normal((batch, vocab)) * scale
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def as_rows(x, batch):
    return np.broadcast_to(np.asarray(x, dtype=np.float64).reshape(-1), (batch,)) if np.ndim(x) else np.full(batch, float(x))


def top_k_keep(p, k):
    """Tokens with fewer than k strictly larger probabilities (ties at the k-th kept), p > 0."""
    p = p.astype(np.float64)
    return np.array([(p > p[j]).sum() < k for j in range(p.shape[0])]) & (p > 0)


def top_p_keep(p, top_p):
    """Tokens whose strictly larger probabilities have mass < top_p, p > 0."""
    p = p.astype(np.float64)
    return np.array([p[p > p[j]].sum() < top_p for j in range(p.shape[0])]) & (p > 0)


def renorm(p, keep):
    q = np.where(keep, p.astype(np.float64), 0.0)
    return q / q.sum()


# ---- renorm / mask / softmax ----

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_top_k_renorm_probs(dtype):
    rng = np.random.default_rng(1)
    probs = probs_rows(rng, 7, 111).astype(dtype)
    for k in (1, 10, 111, np.array([1, 2, 3, 50, 100, 111, 5], np.int32)):
        out = fi.top_k_renorm_probs(probs, k)
        assert out.shape == probs.shape and out.dtype == probs.dtype
        ks = as_rows(k, 7)
        ref = np.stack([renorm(probs[b], top_k_keep(probs[b], ks[b])) for b in range(7)])
        np.testing.assert_allclose(out.astype(np.float64), ref, atol=1e-3 if dtype == np.float16 else 1e-6, rtol=1e-3)


def test_top_p_renorm_probs():
    rng = np.random.default_rng(2)
    probs = probs_rows(rng, 6, 200, scale=2.0)
    for p in (0.1, 0.5, 0.9, 1.0, np.array([0.1, 0.2, 0.5, 0.7, 0.9, 1.0], np.float32)):
        out = fi.top_p_renorm_probs(probs, p)
        ps = as_rows(p, 6)
        ref = np.stack([renorm(probs[b], top_p_keep(probs[b], ps[b])) for b in range(6)])
        np.testing.assert_allclose(out.astype(np.float64), ref, atol=1e-6, rtol=1e-5)


def test_top_k_mask_logits():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 64)).astype(np.float32)
    for k in (1, 8, 64, [1, 2, 3, 4, 5]):
        out = fi.top_k_mask_logits(logits, np.array(k, np.int32) if isinstance(k, list) else k)
        ks = as_rows(k, 5)
        for b in range(5):
            keep = top_k_keep(logits[b] - logits[b].min() + 1, ks[b])  # order only
            np.testing.assert_array_equal(out[b][keep], logits[b][keep])
            assert np.all(np.isneginf(out[b][~keep]))


def softmax_ref(x, t):
    z = x.astype(np.float64) / t
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("temperature", [None, 1.0, 0.5, 0.1, "rows"])
def test_softmax(temperature):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((4, 300)) * 3).astype(np.float32)
    logits[1, ::7] = -np.inf
    t = np.array([1.0, 0.5, 0.1, 2.0], np.float32) if temperature == "rows" else temperature
    out = fi.softmax(logits, t) if temperature is not None else fi.softmax(logits)
    ts = (as_rows(t, 4) if t is not None else np.ones(4))[:, None]
    np.testing.assert_allclose(out.astype(np.float64), softmax_ref(logits, ts), atol=1e-5, rtol=0)
    assert np.all(out[1, ::7] == 0)


# ---- samplers ----

SAMPLERS = [
    ("sampling_from_probs", {}, lambda p: p > 0),
    ("top_k_sampling_from_probs", {"top_k": 10}, lambda p: top_k_keep(p, 10)),
    ("top_p_sampling_from_probs", {"top_p": 0.5}, lambda p: top_p_keep(p, 0.5)),
    ("min_p_sampling_from_probs", {"min_p": 0.2}, lambda p: p >= 0.2 * p.max()),
    ("top_k_top_p_sampling_from_probs", {"top_k": 10, "top_p": 0.5},
     lambda p: top_k_keep(p, 10) & top_p_keep(renorm(p, top_k_keep(p, 10)), 0.5)),
    ("top_k_top_p_sampling_from_probs", {"top_k": 10, "top_p": 0.5, "filter_apply_order": "joint"},
     lambda p: top_k_keep(p, 10) & top_p_keep(p, 0.5)),
]


@pytest.mark.parametrize("name,kwargs,support", SAMPLERS)
def test_samplers_support_and_seed(name, kwargs, support):
    rng = np.random.default_rng(5)
    probs = probs_rows(rng, 64, 300, scale=2.0)
    probs[3, 100:] = 0  # zero-probability tokens are never drawn
    fn = getattr(fi, name)
    s = fn(probs, **kwargs, seed=1234, offset=0)
    assert s.shape == (64,) and s.dtype == np.int32
    for b in range(64):
        assert support(probs[b].astype(np.float64))[s[b]], f"row {b}: token {s[b]} outside the support"
    np.testing.assert_array_equal(fn(probs, **kwargs, seed=1234, offset=0), s)  # reproducible
    assert not np.array_equal(fn(probs, **kwargs, seed=1235), s)
    assert not np.array_equal(fn(probs, **kwargs, seed=1234, offset=4), s)
    s2, valid = fn(probs, **kwargs, seed=1234, return_valid=True)
    np.testing.assert_array_equal(s2, s)
    assert valid.dtype == np.bool_ and valid.all()


def test_frequencies_follow_the_distribution():
    """One row drawn 20000 times (indices repeat it; each output row has its own Philox stream):
    the empirical frequencies match the filtered distribution."""
    rng = np.random.default_rng(6)
    probs = probs_rows(rng, 1, 16, scale=1.0)
    n = 20000
    idx = np.zeros(n, np.int64)
    for name, kwargs, keep in [("sampling_from_probs", {}, probs[0] > 0),
                               ("top_k_sampling_from_probs", {"top_k": 5}, top_k_keep(probs[0], 5)),
                               ("top_p_sampling_from_probs", {"top_p": 0.7}, top_p_keep(probs[0], 0.7))]:
        s = getattr(fi, name)(probs, **kwargs, indices=idx, seed=99)
        freq = np.bincount(s, minlength=16) / n
        expected = renorm(probs[0], keep)
        assert np.all(freq[~keep] == 0)
        cos = freq @ expected / np.linalg.norm(freq) / np.linalg.norm(expected)
        assert cos > 0.99, f"{name}: cosine similarity {cos}"
        assert np.abs(freq - expected).max() < 0.02, f"{name}: {freq} vs {expected}"


def test_invalid_rows_and_indices():
    probs = np.zeros((3, 10), np.float32)
    probs[0, 4] = 1.0
    probs[2, 7] = 1.0
    s, valid = fi.sampling_from_probs(probs, seed=1, return_valid=True)
    np.testing.assert_array_equal(valid, [True, False, True])
    np.testing.assert_array_equal(s, [4, 0, 7])
    s = fi.sampling_from_probs(probs, indices=np.array([2, 2, 0, 2]), seed=1)
    np.testing.assert_array_equal(s, [7, 7, 4, 7])
    with pytest.raises(ValueError, match="NaN"):
        bad = probs.copy()
        bad[1, 1] = np.nan
        fi.sampling_from_probs(bad, check_nan=True)


def test_generators():
    rng = np.random.default_rng(7)
    probs = probs_rows(rng, 32, 100)
    a = fi.top_p_sampling_from_probs(probs, 0.9, generator=np.random.default_rng(42))
    b = fi.top_p_sampling_from_probs(probs, 0.9, generator=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(42)
    first, second = fi.sampling_from_probs(probs, generator=g), fi.sampling_from_probs(probs, generator=g)
    assert not np.array_equal(first, second)  # the generator advanced
    np.random.seed(3)
    c = fi.sampling_from_probs(probs)
    np.random.seed(3)
    np.testing.assert_array_equal(fi.sampling_from_probs(probs), c)


def test_per_row_parameters():
    rng = np.random.default_rng(8)
    probs = probs_rows(rng, 4, 50, scale=3.0)
    ks = np.array([1, 2, 5, 50], np.int32)
    s = fi.top_k_sampling_from_probs(probs, ks, seed=5)
    for b in range(4):
        assert top_k_keep(probs[b], ks[b])[s[b]]
    assert s[0] == np.argmax(probs[0])
    ps = np.array([0.01, 0.3, 0.6, 1.0], np.float32)
    s = fi.top_p_sampling_from_probs(probs, ps, seed=5)
    for b in range(4):
        assert top_p_keep(probs[b], ps[b])[s[b]]
    assert s[0] == np.argmax(probs[0])


def _row_tensor_param(values):
    """A flashinfer_swift_row_param whose values come from its `tensor` field (a CPU DLTensor here; the
    Python package fills that field for CUDA tensors), kept alive with its array."""
    t = fi._index_tensor(values, "row") if values.dtype == np.int32 else fi._Tensor(values, "row")
    return fi._RowParam(0.0, None, 0, ctypes.pointer(t.t)), t


def test_row_param_tensor_field_on_cpu():
    """The ABI's row-parameter tensor (what CUDA callers use: the kernel reads it) on CPU probs: its
    values are read and validated as host values are, and a wrong dtype or length is refused."""
    rng = np.random.default_rng(10)
    probs = probs_rows(rng, 4, 50, scale=3.0)
    ks = np.array([1, 3, 7, 50], np.int32)
    lib = fi._library()
    for op, values, host in ((0, ks, ks.astype(np.float64)), (1, np.array([0.2, 0.5, 0.9, 1.0], np.float32), None)):
        param, keep = _row_tensor_param(values)
        out = np.zeros_like(probs)
        fi._check(lib.flashinfer_swift_sampling_op(op, fi._Tensor(probs, "input").ref(), ctypes.byref(param),
                                                   fi._Tensor(out, "out").ref(), None))
        want = fi.top_k_renorm_probs(probs, ks) if op == 0 else fi.top_p_renorm_probs(probs, values)
        np.testing.assert_array_equal(out, want)
    samples = np.zeros(4, np.int32)
    param, keep = _row_tensor_param(ks)
    fi._check(lib.flashinfer_swift_sampling(fi._Tensor(probs, "probs").ref(), 1, 0, ctypes.byref(param), None, None, 5, 0,
                                            fi._index_tensor(samples, "samples").ref(), None, None))
    np.testing.assert_array_equal(samples, fi.top_k_sampling_from_probs(probs, ks, seed=5))
    bad = [(np.array([1.0, 2.0, 3.0, 4.0], np.float32), "int32"), (np.array([1, 2, 3], np.int32), "batch_size"),
           (np.array([0, 2, 3, 4], np.int32), "top_k")]
    for values, message in bad:
        param, keep = _row_tensor_param(values)
        with pytest.raises(ValueError, match=message):
            fi._check(lib.flashinfer_swift_sampling_op(0, fi._Tensor(probs, "input").ref(), ctypes.byref(param),
                                                       fi._Tensor(np.zeros_like(probs), "out").ref(), None))


def test_errors():
    probs = probs_rows(np.random.default_rng(9), 4, 20)
    with pytest.raises(ValueError, match="top_p"):
        fi.top_p_sampling_from_probs(probs, 1.5, seed=0)
    with pytest.raises(ValueError, match="top_k"):
        fi.top_k_sampling_from_probs(probs, 0, seed=0)
    with pytest.raises(ValueError, match="integer"):
        fi.top_k_sampling_from_probs(probs, 2.5, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        fi.top_k_renorm_probs(probs, np.array([1, 2, 3], np.int32))
    with pytest.raises(ValueError, match="min_p"):
        fi.min_p_sampling_from_probs(probs, -0.1, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        fi.softmax(probs, 0.0)
    with pytest.raises(ValueError, match="filter_apply_order"):
        fi.top_k_top_p_sampling_from_probs(probs, 5, 0.5, filter_apply_order="top_p_first", seed=0)
    with pytest.raises(ValueError, match="probs"):
        fi.sampling_from_probs(probs[0], seed=0)
    with pytest.raises(TypeError, match="dtype"):
        fi.sampling_from_probs(probs.astype(np.float64), seed=0)


# ---- generators: the seed / offset read when the call runs ----

def _increment(batch, rounds):
    """A call's offset increment: upstream's (batch * rounds), the rejection samplers' at least 64
    (the rounds a row may take), rounded up to a multiple of 4."""
    n = batch * rounds if rounds == 1 else max(batch * rounds, 64)
    return (n + 3) // 4 * 4


GENERATOR_SAMPLERS = [
    ("sampling_from_probs", {}, 1),
    ("top_k_sampling_from_probs", {"top_k": 10}, 32),
    ("top_p_sampling_from_probs", {"top_p": 0.8}, 32),
    ("min_p_sampling_from_probs", {"min_p": 0.05}, 1),
    ("top_k_top_p_sampling_from_probs", {"top_k": 10, "top_p": 0.8}, 32),
    ("top_k_top_p_sampling_from_probs", {"top_k": 10, "top_p": 0.8, "filter_apply_order": "joint"}, 32),
]


@pytest.mark.parametrize("name,kwargs,rounds", GENERATOR_SAMPLERS)
def test_generator_calls_equal_seed_offset_calls_at_advanced_offsets(name, kwargs, rounds):
    """A SamplingGenerator at (s, o): the call draws what seed=s, offset=o draws and leaves (s, o + increment);
    successive calls differ; the same initial state reproduces the sequence."""
    rng = np.random.default_rng(11)
    batch, vocab = 48, 300
    probs = probs_rows(rng, batch, vocab, scale=1.5)
    fn = getattr(fi, name)
    seed, o0 = (1 << 63) + 12345, 8  # a seed above 2**63: stored as int64, read back unsigned
    inc = _increment(batch, rounds)
    g = fi.SamplingGenerator(seed, o0)
    draws = []
    for call in range(4):
        got = fn(probs, **kwargs, generator=g)
        want = fn(probs, **kwargs, seed=seed, offset=o0 + call * inc)
        np.testing.assert_array_equal(got, want, err_msg=f"call {call}")
        draws.append(got)
    assert g.get_state() == (seed, o0 + 4 * inc)
    for a, b in zip(draws, draws[1:]):
        assert not np.array_equal(a, b), "successive calls drew the same tokens"
    h = fi.SamplingGenerator(seed, o0)
    for d in draws:
        np.testing.assert_array_equal(fn(probs, **kwargs, generator=h), d)
    s, valid = fn(probs, **kwargs, generator=h.set_state(seed, o0), return_valid=True)
    np.testing.assert_array_equal(s, draws[0])
    assert valid.all()


def test_seed_offset_tensors_are_read_not_advanced():
    """Upstream's tensor form (1-element int64 / uint64 arrays): the values read when the call runs,
    never advanced by it; the same draws as the ints."""
    rng = np.random.default_rng(12)
    probs = probs_rows(rng, 20, 100)
    seed, offset = np.array([77], dtype=np.int64), np.array([16], dtype=np.uint64)
    a = fi.top_p_sampling_from_probs(probs, 0.9, seed=seed, offset=offset)
    b = fi.top_p_sampling_from_probs(probs, 0.9, seed=seed, offset=offset)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, fi.top_p_sampling_from_probs(probs, 0.9, seed=77, offset=16))
    assert int(offset[0]) == 16 and int(seed[0]) == 77
    offset[0] = 20  # the caller advances them
    np.testing.assert_array_equal(fi.top_p_sampling_from_probs(probs, 0.9, seed=seed, offset=offset),
                                  fi.top_p_sampling_from_probs(probs, 0.9, seed=77, offset=20))


def test_seed_offset_tensor_errors():
    rng = np.random.default_rng(13)
    probs = probs_rows(rng, 4, 10)
    with pytest.raises(ValueError, match="both be tensors"):
        fi.sampling_from_probs(probs, seed=np.array([1], dtype=np.int64), offset=0)
    with pytest.raises(ValueError, match="length must be 1"):
        fi.sampling_from_probs(probs, seed=np.arange(4, dtype=np.int64), offset=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="int64 or uint64"):
        fi.sampling_from_probs(probs, seed=np.array([1], dtype=np.int32), offset=np.array([0], dtype=np.int32))


def logits_rows(rng, batch, vocab, sigma=1.0, dtype=np.float32):
    return (rng.standard_normal((batch, vocab)) * sigma).astype(dtype)


def softmax64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_sampling_from_logits_follows_softmax(dtype):
    """One row of logits drawn 20000 times (each output row its own Philox stream): the
    frequencies match softmax(logits); a -inf logit is never drawn; reproducible per seed."""
    rng = np.random.default_rng(21)
    logits = logits_rows(rng, 1, 16, 1.5, dtype)
    logits[0, 3] = -np.inf
    n = 20000
    idx = np.zeros(n, np.int64)
    s = fi.sampling_from_logits(logits, indices=idx, seed=7)
    assert s.shape == (n,) and s.dtype == np.int32
    freq = np.bincount(s, minlength=16) / n
    expected = softmax64(logits[0])
    assert freq[3] == 0
    assert np.abs(freq - expected).max() < 0.02, f"{freq} vs {expected}"
    np.testing.assert_array_equal(fi.sampling_from_logits(logits, indices=idx, seed=7), s)
    assert not np.array_equal(fi.sampling_from_logits(logits, indices=idx, seed=8), s)
    s2, valid = fi.sampling_from_logits(logits, seed=7, return_valid=True)
    assert s2.shape == (1,) and valid.all()


def test_sampling_from_logits_generator_advances_by_batch_times_vocab():
    rng = np.random.default_rng(22)
    batch, vocab = 6, 50
    logits = logits_rows(rng, batch, vocab, 2.0)
    seed = 4242
    g = fi.SamplingGenerator(seed, 0)
    first = fi.sampling_from_logits(logits, generator=g)
    np.testing.assert_array_equal(first, fi.sampling_from_logits(logits, seed=seed, offset=0))
    assert g.get_state() == (seed, _increment(batch, vocab))
    second = fi.sampling_from_logits(logits, generator=g)
    np.testing.assert_array_equal(second, fi.sampling_from_logits(logits, seed=seed, offset=_increment(batch, vocab)))


def test_sampling_from_logits_errors():
    with pytest.raises(ValueError, match="logits"):
        fi.sampling_from_logits(np.zeros((2, 3, 4), np.float32), seed=1)


@pytest.mark.parametrize("order", ["top_k_first", "joint"])
def test_top_k_top_p_sampling_from_logits_is_upstreams_composition(order):
    rng = np.random.default_rng(23)
    logits = logits_rows(rng, 32, 300, 2.0)
    s = fi.top_k_top_p_sampling_from_logits(logits, 10, 0.5, filter_apply_order=order, seed=5)
    if order == "top_k_first":
        probs = fi.softmax(fi.top_k_mask_logits(logits, 10))
        want = fi.top_p_sampling_from_probs(probs, 0.5, seed=5)
        keep = [top_p_keep(probs[b].astype(np.float64), 0.5) for b in range(32)]
    else:
        probs = fi.softmax(logits)
        want = fi.top_k_top_p_sampling_from_probs(probs, 10, 0.5, filter_apply_order="joint", seed=5)
        p = [probs[b].astype(np.float64) for b in range(32)]
        keep = [top_k_keep(x, 10) & top_p_keep(x, 0.5) for x in p]
    np.testing.assert_array_equal(s, want)
    for b in range(32):
        assert keep[b][s[b]], f"row {b}: token {s[b]} outside the filtered support"
    with pytest.raises(ValueError, match="filter_apply_order"):
        fi.top_k_top_p_sampling_from_logits(logits, 10, 0.5, filter_apply_order="bogus", seed=5)


def _chain_inputs(rng, batch, n, vocab):
    draft = probs_rows(rng, batch * n, vocab, scale=1.5).reshape(batch, n, vocab)
    target = probs_rows(rng, batch * (n + 1), vocab, scale=1.5).reshape(batch, n + 1, vocab)
    ids = np.stack([[rng.choice(vocab, p=draft[b, i].astype(np.float64) / draft[b, i].astype(np.float64).sum())
                     for i in range(n)] for b in range(batch)]).astype(np.int32)
    return draft, ids, target


@pytest.mark.parametrize("n", [1, 3, 5])
def test_chain_speculative_sampling_structure(n):
    """An accepted prefix, the drawn token, -1 after; emitted + 1 tokens; accepted >= emitted;
    reproducible per seed; maybe_output_* accumulate in place (upstream's +=)."""
    rng = np.random.default_rng(40 + n)
    batch, vocab = 32, 20
    draft, ids, target = _chain_inputs(rng, batch, n, vocab)
    out, acc, emi = fi.chain_speculative_sampling(draft, ids, target, seed=9)
    assert out.shape == (batch, n + 1) and out.dtype == np.int32
    for b in range(batch):
        e = int(emi[b])
        assert 0 <= e <= n and e <= acc[b] <= n
        np.testing.assert_array_equal(out[b, :e], ids[b, :e])
        assert 0 <= out[b, e] < vocab and np.all(out[b, e + 1:] == -1)
    o2, a2, e2 = fi.chain_speculative_sampling(draft, ids, target, seed=9)
    np.testing.assert_array_equal(o2, out)
    np.testing.assert_array_equal(a2, acc)
    total_a, total_e = np.full(batch, 5, np.int32), np.full(batch, 7, np.int32)
    _, ra, re = fi.chain_speculative_sampling(draft, ids, target, total_a, total_e, seed=9)
    assert ra is total_a and re is total_e
    np.testing.assert_array_equal(total_a, acc + 5)
    np.testing.assert_array_equal(total_e, emi + 7)


def test_chain_speculative_sampling_count_forms():
    """maybe_output_* of another dtype or layout are added to after the call (int64, a strided view),
    and read-only or absent ones leave fresh int32 counts; draft_token_ids as int64 or a list."""
    rng = np.random.default_rng(47)
    batch, n, vocab = 5, 2, 12
    draft, ids, target = _chain_inputs(rng, batch, n, vocab)
    out, acc, emi = fi.chain_speculative_sampling(draft, ids, target, seed=3)
    total_a = np.full(batch, 100, np.int64)
    backing = np.full(2 * batch, 9, np.int32)
    total_e = backing[::2]
    o2, ra, re = fi.chain_speculative_sampling(draft, ids.astype(np.int64), target, total_a, total_e, seed=3)
    assert ra is total_a and re is total_e
    np.testing.assert_array_equal(o2, out)
    np.testing.assert_array_equal(total_a, acc + 100)
    np.testing.assert_array_equal(total_e, emi + 9)
    np.testing.assert_array_equal(backing[1::2], 9)
    o3, a3, e3 = fi.chain_speculative_sampling(draft, ids.tolist(), target, seed=3)
    np.testing.assert_array_equal(o3, out)
    assert a3.dtype == np.int32 and e3.dtype == np.int32


def test_chain_speculative_sampling_one_hot_target():
    """A one-hot target: a draft token is accepted iff it is the target's token, and the drawn token
    is the target's (upstream's test): drafts equal to the targets emit every token plus the bonus."""
    rng = np.random.default_rng(44)
    batch, n, vocab = 8, 4, 16
    draft, _, _ = _chain_inputs(rng, batch, n, vocab)
    want = rng.integers(0, vocab, (batch, n + 1)).astype(np.int32)
    target = np.zeros((batch, n + 1, vocab), np.float32)
    target[np.arange(batch)[:, None], np.arange(n + 1)[None, :], want] = 1
    ids = want[:, :n].copy()
    ids[3, 2] = (ids[3, 2] + 1) % vocab  # request 3 is rejected at position 2
    draft[3, 2, ids[3, 2]] = max(draft[3, 2, ids[3, 2]], 0.01)
    out, acc, emi = fi.chain_speculative_sampling(draft, ids, target, seed=1)
    for b in range(batch):
        if b == 3:
            assert emi[b] == 2 and acc[b] == n - 1
            np.testing.assert_array_equal(out[b], np.concatenate([want[b, :3], [-1, -1]]))
        else:
            assert emi[b] == n and acc[b] == n
            np.testing.assert_array_equal(out[b], want[b])


def test_chain_speculative_sampling_errors():
    rng = np.random.default_rng(45)
    draft, ids, target = _chain_inputs(rng, 2, 3, 10)
    with pytest.raises(ValueError, match="draft_token_ids"):
        fi.chain_speculative_sampling(draft, ids[:, :2], target, seed=1)
    with pytest.raises(ValueError, match="draft_token_ids"):
        fi.chain_speculative_sampling(draft, ids.reshape(-1), target, seed=1)
    with pytest.raises(ValueError):
        fi.chain_speculative_sampling(draft, ids, target[:, :3], seed=1)
    with pytest.raises(ValueError):
        fi.chain_speculative_sampling(draft[0], ids, target, seed=1)


def test_chain_speculative_sampling_abi_refuses_bad_outputs():
    """The C ABI entry checks every int32 tensor (dtype, exact shape, compactness) before any work,
    and leaves the caller's counts untouched when it refuses."""
    rng = np.random.default_rng(48)
    batch, n, vocab = 3, 2, 10
    draft, ids, target = _chain_inputs(rng, batch, n, vocab)
    lib = fi._library()

    def call(ids_arr, out, acc, emi):
        ts = [fi._Tensor(draft, "draft_probs"), fi._index_tensor(ids_arr, "ids"), fi._Tensor(target, "target_probs"),
              fi._index_tensor(out, "out"), fi._index_tensor(acc, "acc"), fi._index_tensor(emi, "emi")]
        return fi._check(lib.flashinfer_swift_chain_speculative_sampling(ts[0].ref(), ts[1].ref(), ts[2].ref(), 1, 0,
                                                                         ts[3].ref(), ts[4].ref(), ts[5].ref(), None))

    good = (ids, np.zeros((batch, n + 1), np.int32), np.zeros(batch, np.int32), np.zeros(batch, np.int32))
    call(*good)
    acc = np.full(batch, 7, np.int32)
    cases = [
        ((ids.astype(np.int64),) + good[1:], "draft_token_ids: DLPack dtype"),
        ((ids,) + (np.zeros((batch, n), np.int32),) + good[2:], "output_token_ids: shape"),
        ((ids, good[1], np.zeros(batch + 1, np.int32), good[3]), "output_accepted_token_num: shape"),
        ((ids, good[1], good[2], np.zeros((batch, 2), np.int32)[:, 0]), "output_emitted_draft_token_num: strides"),
        ((ids, np.zeros((batch, n + 1), np.int32), acc, np.zeros(batch, np.uint8)), "output_emitted_draft_token_num: DLPack dtype"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            call(*args)
    np.testing.assert_array_equal(acc, 7)


def test_chain_speculative_sampling_generator_and_seed_tensors():
    """A SamplingGenerator at (s, o) draws what seed=s, offset=o draws and advances by B * (n + 1)
    rounded up to 4; upstream's 1-element seed / offset arrays are read, not advanced."""
    rng = np.random.default_rng(46)
    batch, n, vocab = 6, 3, 30
    draft, ids, target = _chain_inputs(rng, batch, n, vocab)
    g = fi.SamplingGenerator(77, 8)
    got = fi.chain_speculative_sampling(draft, ids, target, generator=g)
    want = fi.chain_speculative_sampling(draft, ids, target, seed=77, offset=8)
    for a, w in zip(got, want):
        np.testing.assert_array_equal(a, w)
    inc = (batch * (n + 1) + 3) // 4 * 4
    assert g.get_state() == (77, 8 + inc)
    got2 = fi.chain_speculative_sampling(draft, ids, target, generator=g)
    want2 = fi.chain_speculative_sampling(draft, ids, target, seed=77, offset=8 + inc)
    np.testing.assert_array_equal(got2[0], want2[0])
    seed_arr, offset_arr = np.array([77], np.int64), np.array([8], np.int64)
    by_tensor = fi.chain_speculative_sampling(draft, ids, target, seed=seed_arr, offset=offset_arr)
    np.testing.assert_array_equal(by_tensor[0], want[0])
    assert offset_arr[0] == 8
