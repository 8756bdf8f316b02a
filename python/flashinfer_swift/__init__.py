"""swift-flashinfer from Python: upstream FlashInfer's names over the library's C ABI (ctypes).

The shared library is `libflashinfer_swift.so` (the SwiftPM product `flashinfer_swift`); it is found
through $FLASHINFER_SWIFT_LIB, else next to this package, else in the repository's .build/release or
.build/debug. Inputs are NumPy arrays or CPU torch tensors (run on the library's CPU reference
backend) or CUDA torch tensors (the GPU kernels on `torch.cuda.current_stream()`, asynchronously,
outputs allocated with torch on the same device); every tensor of a call on one device. What it
offers: attention (single, batch decode / prefill wrappers, the multi-level cascade, state merges),
paged-KV append, norms, gated activations, RoPE and sampling (README.md, "From C and Python").
"""
import ctypes
import functools
import inspect
import sys
import os

import numpy as np

__all__ = ["single_decode_with_kv_cache", "single_prefill_with_kv_cache", "BatchDecodeWithPagedKVCacheWrapper",
           "BatchPrefillWithPagedKVCacheWrapper", "BatchPrefillWithRaggedKVCacheWrapper", "MultiLevelCascadeAttentionWrapper",
           "BlockSparseAttentionWrapper",
           "CUDAGraphBatchDecodeWithPagedKVCacheWrapper", "BatchDecodeWithSharedPrefixPagedKVCacheWrapper",
           "BatchPrefillWithSharedPrefixPagedKVCacheWrapper", "single_prefill_with_kv_cache_return_lse",
           "append_paged_kv_cache", "packbits", "segment_packbits",
           "get_batch_indices_positions", "get_seq_lens",
           "merge_state", "merge_state_in_place", "merge_states",
           "rmsnorm", "fused_add_rmsnorm", "gemma_rmsnorm", "gemma_fused_add_rmsnorm", "layernorm",
           "silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul",
           "apply_rope", "apply_rope_inplace", "apply_rope_pos_ids", "apply_rope_pos_ids_inplace",
           "apply_llama31_rope", "apply_llama31_rope_inplace", "apply_llama31_rope_pos_ids",
           "apply_llama31_rope_pos_ids_inplace", "apply_rope_with_cos_sin_cache", "apply_rope_with_cos_sin_cache_inplace",
           "sampling_from_probs", "top_p_sampling_from_probs", "top_k_sampling_from_probs", "min_p_sampling_from_probs",
           "top_k_top_p_sampling_from_probs", "top_k_renorm_probs", "top_p_renorm_probs", "top_k_mask_logits", "softmax",
           "sampling_from_logits", "top_k_top_p_sampling_from_logits", "chain_speculative_sampling",
           "SamplingGenerator", "version", "FlashInferSwiftError"]


class FlashInferSwiftError(RuntimeError):
    """A failure inside the library (a CUDA or internal error)."""


# ---- DLPack structs (flashinfer_swift.h) ----
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _Options(ctypes.Structure):
    _fields_ = [
        ("causal", ctypes.c_int32),
        ("pos_encoding_mode", ctypes.c_int32),
        ("kv_layout", ctypes.c_int32),
        ("window_left", ctypes.c_int32),
        ("sm_scale", ctypes.c_float),
        ("rope_scale", ctypes.c_float),
        ("rope_theta", ctypes.c_float),
        ("logits_soft_cap", ctypes.c_float),
        ("k_scale", ctypes.c_float),
        ("v_scale", ctypes.c_float),
    ]



class _RopeOptions(ctypes.Structure):
    _fields_ = [
        ("rotary_dim", ctypes.c_int32),
        ("interleave", ctypes.c_int32),
        ("rope_scale", ctypes.c_double),
        ("rope_theta", ctypes.c_double),
        ("llama31", ctypes.c_int32),
        ("low_freq_factor", ctypes.c_double),
        ("high_freq_factor", ctypes.c_double),
        ("old_context_len", ctypes.c_double),
    ]


class _RowParam(ctypes.Structure):
    _fields_ = [("value", ctypes.c_double), ("per_row", ctypes.POINTER(ctypes.c_double)), ("count", ctypes.c_int64),
                ("tensor", ctypes.POINTER(_DLTensor))]

_kDLCPU, _kDLCUDA, _kDLFloat, _kDLBfloat = 1, 2, 2, 4
_kDLFloat8_e4m3fn, _kDLFloat8_e5m2 = 10, 12  # DLPack 1.x codes (flashinfer_swift.h)
_OK, _INVALID, _UNSUPPORTED, _RUNTIME = 0, 1, 2, 3
_POS = {"NONE": 0, "ROPE_LLAMA": 1, "ALIBI": 2}
_LAYOUT = {"NHD": 0, "HND": 1}


def _find_library():
    env = os.environ.get("FLASHINFER_SWIFT_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "libflashinfer_swift.so")]
    root = os.path.dirname(os.path.dirname(here))
    for config in ("release", "debug"):
        candidates.append(os.path.join(root, ".build", config, "libflashinfer_swift.so"))
    for c in candidates:
        if os.path.exists(c):
            return c
    raise OSError("libflashinfer_swift.so not found (build it: swift build -c release --product flashinfer_swift "
                  "-Xswiftc -static-stdlib; or set FLASHINFER_SWIFT_LIB). Looked in: " + ", ".join(candidates))


_lib = None


def _library():
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(_find_library())
        lib.flashinfer_swift_version.restype = ctypes.c_char_p
        lib.flashinfer_swift_last_error.restype = ctypes.c_char_p
        for name in ("flashinfer_swift_single_decode", "flashinfer_swift_single_prefill"):
            f = getattr(lib, name)
            f.restype = ctypes.c_int
            f.argtypes = [ctypes.POINTER(_DLTensor)] * 5 + [ctypes.POINTER(_Options), ctypes.c_void_p]
        lib.flashinfer_swift_merge_state.argtypes = [ctypes.POINTER(_DLTensor)] * 6 + [ctypes.c_void_p]
        lib.flashinfer_swift_merge_state_in_place.argtypes = [ctypes.POINTER(_DLTensor)] * 4 + [ctypes.c_void_p, ctypes.c_void_p]
        lib.flashinfer_swift_merge_states.argtypes = [ctypes.POINTER(_DLTensor)] * 4 + [ctypes.c_void_p]
        lib.flashinfer_swift_merge_state_in_place_mask_tensor.argtypes = [ctypes.POINTER(_DLTensor)] * 5 + [ctypes.c_void_p]
        lib.flashinfer_swift_merge_state_in_place_mask_tensor.restype = ctypes.c_int
        for name in ("flashinfer_swift_merge_state", "flashinfer_swift_merge_state_in_place", "flashinfer_swift_merge_states"):
            getattr(lib, name).restype = ctypes.c_int
        lib.flashinfer_swift_batch_decode_create.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p)]
        lib.flashinfer_swift_batch_decode_create.restype = ctypes.c_int
        lib.flashinfer_swift_batch_decode_create_graph.argtypes = [ctypes.c_int32, ctypes.c_int64, ctypes.POINTER(ctypes.c_void_p)]
        lib.flashinfer_swift_batch_decode_create_graph.restype = ctypes.c_int
        lib.flashinfer_swift_batch_decode_destroy.argtypes = [ctypes.c_void_p]
        lib.flashinfer_swift_batch_decode_destroy.restype = None
        i32p = ctypes.POINTER(ctypes.c_int32)
        lib.flashinfer_swift_batch_decode_plan.argtypes = [ctypes.c_void_p, i32p, i32p, i32p] + [ctypes.c_int32] * 5 + [
            _DLDataType, _DLDataType, ctypes.POINTER(_Options), _DLDevice, ctypes.c_void_p]
        lib.flashinfer_swift_batch_decode_plan.restype = ctypes.c_int
        lib.flashinfer_swift_batch_decode_run.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(_DLTensor)] * 5 + [ctypes.c_void_p]
        lib.flashinfer_swift_batch_decode_run.restype = ctypes.c_int
        lib.flashinfer_swift_batch_prefill_create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.flashinfer_swift_batch_prefill_create.restype = ctypes.c_int
        lib.flashinfer_swift_batch_prefill_create_graph.argtypes = [ctypes.c_int32, ctypes.c_int64, ctypes.c_int64,
                                                                     ctypes.POINTER(ctypes.c_void_p)]
        lib.flashinfer_swift_batch_prefill_create_graph.restype = ctypes.c_int
        lib.flashinfer_swift_batch_prefill_destroy.argtypes = [ctypes.c_void_p]
        lib.flashinfer_swift_batch_prefill_destroy.restype = None
        lib.flashinfer_swift_batch_prefill_plan.argtypes = [ctypes.c_void_p, i32p, i32p, i32p, i32p] + [ctypes.c_int32] * 5 + [
            _DLDataType, _DLDataType, ctypes.POINTER(_Options), ctypes.c_void_p, i32p, _DLDevice, ctypes.c_void_p]
        lib.flashinfer_swift_batch_prefill_plan.restype = ctypes.c_int
        lib.flashinfer_swift_batch_prefill_run.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(_DLTensor)] * 5 + [ctypes.c_void_p]
        lib.flashinfer_swift_batch_prefill_run.restype = ctypes.c_int
        lib.flashinfer_swift_cascade_create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.flashinfer_swift_cascade_create.restype = ctypes.c_int
        lib.flashinfer_swift_cascade_create_graph.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32),
                                                              ctypes.POINTER(ctypes.c_int64), ctypes.c_int64,
                                                              ctypes.POINTER(ctypes.c_void_p)]
        lib.flashinfer_swift_cascade_create_graph.restype = ctypes.c_int
        lib.flashinfer_swift_cascade_destroy.argtypes = [ctypes.c_void_p]
        lib.flashinfer_swift_cascade_destroy.restype = None
        i32pp = ctypes.POINTER(i32p)
        lib.flashinfer_swift_cascade_plan.argtypes = [ctypes.c_void_p, ctypes.c_int32, i32pp, i32pp, i32pp, i32pp, i32p] + [
            ctypes.c_int32] * 4 + [_DLDataType, _DLDataType, ctypes.POINTER(_Options), _DLDevice, ctypes.c_void_p]
        lib.flashinfer_swift_cascade_plan.restype = ctypes.c_int
        lib.flashinfer_swift_cascade_run.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(_DLTensor)] * 5 + [ctypes.c_void_p]
        lib.flashinfer_swift_cascade_run.restype = ctypes.c_int
        dl = ctypes.POINTER(_DLTensor)
        lib.flashinfer_swift_norm.argtypes = [ctypes.c_int32] + [dl] * 5 + [ctypes.c_double, ctypes.c_void_p]
        lib.flashinfer_swift_norm.restype = ctypes.c_int
        lib.flashinfer_swift_activation.argtypes = [ctypes.c_int32, dl, dl, ctypes.c_void_p]
        lib.flashinfer_swift_activation.restype = ctypes.c_int
        lib.flashinfer_swift_rope.argtypes = [dl] * 4 + [i32p, i32p, ctypes.c_int32, i32p, ctypes.c_int32,
                                                          ctypes.POINTER(_RopeOptions), ctypes.c_void_p]
        lib.flashinfer_swift_rope.restype = ctypes.c_int
        lib.flashinfer_swift_rope_cos_sin_cache.argtypes = [i32p, ctypes.c_int32, dl, dl, ctypes.c_int32, dl, ctypes.c_int32,
                                                            ctypes.c_void_p]
        lib.flashinfer_swift_rope_cos_sin_cache.restype = ctypes.c_int
        rp = ctypes.POINTER(_RowParam)
        lib.flashinfer_swift_sampling.argtypes = [dl, ctypes.c_int32, ctypes.c_int32, rp, rp, rp, ctypes.c_uint64, ctypes.c_uint64,
                                                  dl, dl, ctypes.c_void_p]
        lib.flashinfer_swift_sampling.restype = ctypes.c_int
        lib.flashinfer_swift_sampling_seed_tensors.argtypes = [dl, ctypes.c_int32, ctypes.c_int32, rp, rp, rp, dl, dl, ctypes.c_int32,
                                                               dl, dl, ctypes.c_void_p]
        lib.flashinfer_swift_sampling_seed_tensors.restype = ctypes.c_int
        lib.flashinfer_swift_sampling_op.argtypes = [ctypes.c_int32, dl, rp, dl, ctypes.c_void_p]
        lib.flashinfer_swift_sampling_op.restype = ctypes.c_int
        lib.flashinfer_swift_chain_speculative_sampling.argtypes = [dl, dl, dl, ctypes.c_uint64, ctypes.c_uint64, dl, dl, dl,
                                                                    ctypes.c_void_p]
        lib.flashinfer_swift_chain_speculative_sampling.restype = ctypes.c_int
        lib.flashinfer_swift_chain_speculative_sampling_seed_tensors.argtypes = [dl, dl, dl, dl, dl, ctypes.c_int32, dl, dl, dl,
                                                                                 ctypes.c_void_p]
        lib.flashinfer_swift_chain_speculative_sampling_seed_tensors.restype = ctypes.c_int
        lib.flashinfer_swift_append_paged_kv_cache.argtypes = [ctypes.POINTER(_DLTensor)] * 2 + [i32p, i32p, ctypes.c_int32] + [
            ctypes.POINTER(_DLTensor)] * 2 + [i32p, i32p, i32p, ctypes.c_int32, ctypes.c_int32, ctypes.c_float, ctypes.c_float,
                                               ctypes.c_void_p]
        lib.flashinfer_swift_append_paged_kv_cache.restype = ctypes.c_int
        lib.flashinfer_swift_append_paged_kv_cache_tensors.argtypes = [dl] * 9 + [ctypes.c_int32, ctypes.c_float, ctypes.c_float,
                                                                        ctypes.c_void_p]
        lib.flashinfer_swift_append_paged_kv_cache_tensors.restype = ctypes.c_int
        lib.flashinfer_swift_rope_tensors.argtypes = [dl] * 7 + [ctypes.POINTER(_RopeOptions), ctypes.c_void_p]
        lib.flashinfer_swift_rope_tensors.restype = ctypes.c_int
        lib.flashinfer_swift_rope_cos_sin_cache_tensors.argtypes = [dl, dl, dl, ctypes.c_int32, dl, ctypes.c_int32, ctypes.c_void_p]
        lib.flashinfer_swift_rope_cos_sin_cache_tensors.restype = ctypes.c_int
        _lib = lib
    return _lib


def version():
    """The library's version string."""
    return _library().flashinfer_swift_version().decode()


_torch_tensor_type = None  # torch.Tensor once torch is imported (by anyone): an isinstance test then


def _is_torch(x):
    """A torch tensor (or subclass, e.g. a Parameter)? torch is never imported here for the test."""
    global _torch_tensor_type
    t = _torch_tensor_type
    if t is None:
        torch = sys.modules.get("torch")
        if torch is None or not hasattr(torch, "Tensor"):
            return False
        t = _torch_tensor_type = torch.Tensor
    return isinstance(x, t)


_TORCH_DTYPES = None  # torch dtype -> (DLPack code, bits), built on first use (run() is on the hot path)


def _torch_dtype_code(t, name):
    global _TORCH_DTYPES
    if _TORCH_DTYPES is None:
        import torch
        table = {torch.float16: (_kDLFloat, 16), torch.bfloat16: (_kDLBfloat, 16), torch.float32: (_kDLFloat, 32)}
        for attr, code in (("float8_e4m3fn", _kDLFloat8_e4m3fn), ("float8_e5m2", _kDLFloat8_e5m2)):
            if hasattr(torch, attr):
                table[getattr(torch, attr)] = (code, 8)
        _TORCH_DTYPES = table
    code = _TORCH_DTYPES.get(t.dtype)
    if code is None:
        raise TypeError(f"{name}: dtype {t.dtype} is not supported (float16, bfloat16, float32; float8_e4m3fn, float8_e5m2 for K/V)")
    return code


class _Tensor:
    """A DLTensor over a NumPy array or a PyTorch tensor (kept alive with it)."""

    def __init__(self, array, name):
        if isinstance(array, _Tensor):  # already a DLTensor (_split_cache's halves of a torch cache)
            self.array, self.shape, self.strides, self.t = array.array, array.shape, array.strides, array.t
            self._ref = array._ref
            return
        if _is_torch(array):
            code, bits = _torch_dtype_code(array, name)
            self._set(array, array.data_ptr(), tuple(array.shape), array.stride(), code, bits, array.device)
            return
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray (CPU tensor), got {type(array).__name__}")
        if array.dtype == np.float16:
            code, bits = _kDLFloat, 16
        elif array.dtype == np.float32:
            code, bits = _kDLFloat, 32
        else:
            raise TypeError(f"{name}: dtype {array.dtype} is not supported (float16, float32)")
        self.array = array
        n = array.ndim
        self.shape = (ctypes.c_int64 * n)(*array.shape)
        self.strides = (ctypes.c_int64 * n)(*[s // array.itemsize for s in array.strides])
        self.t = _DLTensor(ctypes.c_void_p(array.ctypes.data), _DLDevice(_kDLCPU, 0), n, _DLDataType(code, bits, 1),
                           self.shape, self.strides, 0)
        self._ref = ctypes.byref(self.t)

    def _set(self, owner, data, shape, strides, code, bits, device):
        self.array = owner
        n = len(shape)
        self.shape = (ctypes.c_int64 * n)(*shape)
        self.strides = (ctypes.c_int64 * n)(*strides)
        dl = _DLDevice(_kDLCUDA, device.index or 0) if device.type == "cuda" else _DLDevice(_kDLCPU, 0)
        self.t = _DLTensor(ctypes.c_void_p(data), dl, n, _DLDataType(code, bits, 1), self.shape, self.strides, 0)
        self._ref = ctypes.byref(self.t)  # made once: run() passes it as is

    @classmethod
    def torch_halves(cls, t, name):
        """DLTensors of t[:, 0] and t[:, 1] of a torch tensor, without making the two torch views
        (each costs microseconds on run()'s hot path)."""
        key = ("halves", t.data_ptr(), t.shape, t.stride(), t.dtype)  # the address names the device (UVA)
        pair = _DL_CACHE.get(key)
        if pair is not None:
            return pair
        code, bits = _torch_dtype_code(t, name)
        shape, st = tuple(t.shape), t.stride()
        if len(shape) < 2 or shape[1] != 2:
            raise ValueError(f"{name}: expected [pages, 2, ...] (k and v on axis 1), got shape {list(shape)}")
        sub_shape, sub_st = (shape[0],) + shape[2:], (st[0],) + tuple(st[2:])
        base, step, device = t.data_ptr(), st[1] * t.element_size(), t.device
        halves = []
        for i in (0, 1):
            h = cls.__new__(cls)
            h._set(None, base + i * step, sub_shape, sub_st, code, bits, device)  # cached: holds no array
            halves.append(h)
        pair = (halves[0], halves[1])
        if len(_DL_CACHE) >= 512:
            _DL_CACHE.clear()
        _DL_CACHE[key] = pair
        return pair

    def ref(self):
        return self._ref

    @classmethod
    def cached(cls, array, name):
        """A _Tensor for run()'s hot path, from a small cache keyed by everything its DLTensor holds
        (address, shape, strides, dtype, device): a cached struct is exact for any array with that
        key, so the cache keeps no array alive (a new tensor at a freed one's address and shape gets
        the same, correct, struct). Building a DLTensor costs ~14 µs of ctypes work."""
        if isinstance(array, _Tensor):
            return array
        if _is_torch(array):
            # No device in the key: with unified addressing, an address names its device (and host
            # memory never shares an address with device memory).
            key = (array.data_ptr(), array.shape, array.stride(), array.dtype)
        elif isinstance(array, np.ndarray):
            key = (array.ctypes.data, array.shape, array.strides, array.dtype.str)
        else:
            return cls(array, name)
        t = _DL_CACHE.get(key)
        if t is None:
            t = cls(array, name)
            t.array = None  # the cache must not keep the caller's array alive
            if len(_DL_CACHE) >= 512:
                _DL_CACHE.clear()
            _DL_CACHE[key] = t
        return t


_DL_CACHE = {}


def _slow_ref(array, name):
    return _Tensor.cached(array, name)._ref


def _fast_ref(t, name):
    """The DLTensor reference of one argument on run()'s CUDA path: a torch tensor's descriptor
    looked up with _Tensor.cached's key built inline (no type dispatch: ~0.5 µs less per tensor),
    a _Tensor as is; anything else (or a miss) through _Tensor.cached, which builds or refuses it."""
    if type(t) is _Tensor:
        return t._ref
    try:
        h = _DL_CACHE.get((t.data_ptr(), t.shape, t.stride(), t.dtype))
    except (AttributeError, TypeError):
        h = None
    return h._ref if h is not None else _Tensor.cached(t, name)._ref


def _options(causal, pos_encoding_mode, kv_layout, window_left, sm_scale, rope_scale, rope_theta, logits_soft_cap,
             k_scale=None, v_scale=None):
    if pos_encoding_mode not in _POS:
        raise ValueError(f"pos_encoding_mode {pos_encoding_mode!r} is not one of {sorted(_POS)}")
    if kv_layout not in _LAYOUT:
        raise ValueError(f"kv_layout {kv_layout!r} is not one of {sorted(_LAYOUT)}")
    return _Options(int(bool(causal)), _POS[pos_encoding_mode], _LAYOUT[kv_layout], int(window_left),
                    float(sm_scale) if sm_scale is not None else 0.0, float(rope_scale) if rope_scale is not None else 0.0,
                    float(rope_theta) if rope_theta is not None else 0.0,
                    float(logits_soft_cap) if logits_soft_cap is not None else 0.0,
                    _scale(k_scale, "k_scale"), _scale(v_scale, "v_scale"))


def _scale(x, name):
    """A K/V scale for the C ABI: None is 1; otherwise a positive finite float (0 in the struct means 1)."""
    if x is None:
        return 0.0
    x = float(x)
    if not (x > 0 and x != float("inf")):
        raise ValueError(f"{name}: {x} must be finite and > 0")
    return x



_HOT = {}


def _hot(fn):
    """The same ABI function called through ctypes.PyDLL: the GIL stays held (a CDLL call releases
    and re-takes it, ~0.3 µs), for run() calls on a CUDA stream, which only enqueue work and return.
    (CPU tensors keep the CDLL function: the CPU reference computes inside the call.)"""
    if not isinstance(fn, ctypes._CFuncPtr):
        return fn  # not an ABI function (a test's stub)
    h = _HOT.get(fn.__name__)
    if h is None:
        global _pylib
        if _pylib is None:
            _pylib = ctypes.PyDLL(_find_library())
        h = getattr(_pylib, fn.__name__)
        h.argtypes, h.restype = fn.argtypes, fn.restype
        _HOT[fn.__name__] = h
    return h


_pylib = None

def _check(status):
    """Raises the library's last error for a failed status: ValueError for bad input,
    NotImplementedError for a valid but unsupported one, FlashInferSwiftError otherwise."""
    if status == _OK:
        return
    message = _library().flashinfer_swift_last_error().decode()
    if status == _INVALID:
        raise ValueError(message)
    if status == _UNSUPPORTED:
        raise NotImplementedError(message)
    raise FlashInferSwiftError(message)


def _call(fn, q, k, v, out_shape, lse_shape, options, return_lse):
    stream = None
    if _is_torch(q) and q.is_cuda:
        import torch
        stream = ctypes.c_void_p(_raw_stream(q.device))
    out, lse = _new_outputs(q, out_shape, lse_shape, return_lse)
    tq, tk, tv, to = _Tensor.cached(q, "q"), _Tensor.cached(k, "k"), _Tensor.cached(v, "v"), _Tensor.cached(out, "out")
    tl = _Tensor.cached(lse, "lse") if return_lse else None
    _check(fn(tq.ref(), tk.ref(), tv.ref(), to.ref(), tl.ref() if tl else None, ctypes.byref(options), stream))
    return (out, lse) if return_lse else out


def single_decode_with_kv_cache(q, k, v, kv_layout="NHD", pos_encoding_mode="NONE", use_tensor_cores=False,
                                q_scale=None, k_scale=None, v_scale=None, window_left=-1, logits_soft_cap=None,
                                sm_scale=None, rope_scale=None, rope_theta=None, return_lse=False):
    """Decode attention of one request (upstream's signature): q [num_qo_heads, head_dim]; k, v
    [kv_len, num_kv_heads, head_dim] (NHD) or [num_kv_heads, kv_len, head_dim] (HND). Returns the
    output [num_qo_heads, head_dim] (and the base-2 LSE [num_qo_heads] with return_lse)."""
    if q_scale is not None and q_scale != 1:
        raise NotImplementedError("q_scale: q is never FP8 here (only K/V may be)")
    opts = _options(False, pos_encoding_mode, kv_layout, window_left, sm_scale, rope_scale, rope_theta, logits_soft_cap,
                    k_scale, v_scale)
    return _call(_library().flashinfer_swift_single_decode, q, k, v, q.shape, (q.shape[0],), opts, return_lse)


def single_prefill_with_kv_cache(q, k, v, custom_mask=None, packed_custom_mask=None, causal=False, kv_layout="NHD",
                                 pos_encoding_mode="NONE", use_fp16_qk_reduction=False, sm_scale=None, window_left=-1,
                                 logits_soft_cap=None, rope_scale=None, rope_theta=None, return_lse=False):
    """Prefill / append attention of one request (upstream's signature): q [qo_len, num_qo_heads,
    head_dim]; k, v as for decode. The causal mask is aligned bottom-right. Returns the output
    (and the base-2 LSE [qo_len, num_qo_heads] with return_lse)."""
    if custom_mask is not None or packed_custom_mask is not None:
        return _single_prefill_masked(q, k, v, custom_mask, packed_custom_mask, causal, kv_layout, pos_encoding_mode,
                                      sm_scale, window_left, logits_soft_cap, rope_scale, rope_theta, return_lse)
    opts = _options(causal, pos_encoding_mode, kv_layout, window_left, sm_scale, rope_scale, rope_theta, logits_soft_cap)
    return _call(_library().flashinfer_swift_single_prefill, q, k, v, q.shape, q.shape[:2], opts, return_lse)


single_prefill_with_kv_cache_return_lse = functools.partial(single_prefill_with_kv_cache, return_lse=True)
single_prefill_with_kv_cache_return_lse.__doc__ = "single_prefill_with_kv_cache(..., return_lse=True): (out, lse), as upstream's alias."


def _single_prefill_masked(q, k, v, custom_mask, packed_custom_mask, causal, kv_layout, pos_encoding_mode, sm_scale,
                           window_left, logits_soft_cap, rope_scale, rope_theta, return_lse):
    """single_prefill_with_kv_cache with a custom mask, as the ragged batch prefill wrapper's one
    request (the same kernels and mask semantics): custom_mask [qo_len, kv_len] (True: the query
    sees the key), or packed_custom_mask, its flattened bits packed little-endian (upstream's
    packbits). HND k / v are copied to NHD first (the ragged wrapper's layout)."""
    if kv_layout not in _LAYOUT:
        raise ValueError(f"kv_layout {kv_layout!r} is not one of {sorted(_LAYOUT)}")
    if len(q.shape) != 3 or len(k.shape) != 3 or len(v.shape) != 3:
        raise ValueError(f"q, k, v: 3-D tensors expected, got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if kv_layout == "HND":
        if _is_torch(k):
            k, v = k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()
        else:
            k, v = np.ascontiguousarray(np.swapaxes(k, 0, 1)), np.ascontiguousarray(np.swapaxes(v, 0, 1))
    qo_len, num_qo_heads, head_dim = (int(x) for x in q.shape)
    kv_len, num_kv_heads = int(k.shape[0]), int(k.shape[1])
    if custom_mask is not None and tuple(custom_mask.shape) != (qo_len, kv_len):
        raise ValueError(f"custom_mask: shape {tuple(custom_mask.shape)}, expected [qo_len, kv_len] = [{qo_len}, {kv_len}]")
    w = BatchPrefillWithRaggedKVCacheWrapper(q if _is_torch(q) else None, "NHD")
    w.plan(np.array([0, qo_len], np.int32), np.array([0, kv_len], np.int32), num_qo_heads, num_kv_heads, head_dim,
           custom_mask=custom_mask, packed_custom_mask=packed_custom_mask, causal=causal,
           pos_encoding_mode=pos_encoding_mode, window_left=window_left, logits_soft_cap=logits_soft_cap, sm_scale=sm_scale,
           rope_scale=rope_scale, rope_theta=rope_theta, q_data_type=q.dtype, kv_data_type=k.dtype)
    return w.run(q, k, v, return_lse=return_lse)


_DTYPE_NAMES = {"float16": (_kDLFloat, 16), "half": (_kDLFloat, 16), "bfloat16": (_kDLBfloat, 16),
                "float8_e4m3fn": (_kDLFloat8_e4m3fn, 8), "float8_e5m2": (_kDLFloat8_e5m2, 8)}


def _data_type(x, name):
    """A q / kv data type given as a string, a numpy dtype or a torch dtype."""
    key = str(x).replace("torch.", "")
    if key not in _DTYPE_NAMES:
        raise TypeError(f"{name}: {x} is not supported (float16, bfloat16, float8_e4m3fn, float8_e5m2)")
    code, bits = _DTYPE_NAMES[key]
    return _DLDataType(code, bits, 1)


def _int32_array(x, name):
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    a = np.ascontiguousarray(np.asarray(x), dtype=np.int32)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def _indices(x, name, allow64=False):
    """A 1-D index tensor for the C ABI's `_tensors` entries, and what must stay alive through the
    call: a torch tensor as it is (CUDA ones are read by the kernel where they are: no copy to the
    host, no wait, capturable in a CUDA graph), made compact and, unless int64 is allowed, int32
    (a conversion on the tensor's device, in stream order); anything else as a NumPy int32 array
    (int64 kept where allowed)."""
    if _is_torch(x):
        torch = sys.modules["torch"]
        if x.dim() != 1:
            raise ValueError(f"{name}: expected a 1-D tensor, got shape {tuple(x.shape)}")
        dt = x.dtype
        if dt is not torch.int32 and not (allow64 and dt is torch.int64):
            if dt.is_floating_point or dt is torch.bool:
                raise TypeError(f"{name}: dtype {dt}, expected an integer tensor")
            x = x.to(torch.int32)
            dt = torch.int32
        if not x.is_contiguous():
            x = x.contiguous()
        # A compact 1-D tensor's descriptor is named by its address, length and dtype.
        return _index_by_key(("index1", x.data_ptr(), x.shape[0], dt), x, name), x
    a = np.asarray(x)
    if a.dtype.kind not in "iu" and a.size:
        raise TypeError(f"{name}: dtype {a.dtype}, expected integers")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    t = np.ascontiguousarray(a, dtype=np.int64 if allow64 and a.dtype == np.int64 else np.int32)
    return _index_tensor(t, name), t


def _new_outputs(q, out_shape, lse_shape, return_lse):
    """The output (q's dtype and device) and, with return_lse, the float32 LSE: torch tensors for
    torch inputs, NaN-filled NumPy arrays otherwise."""
    if _is_torch(q):
        import torch
        out = torch.empty(tuple(out_shape), dtype=q.dtype, device=q.device)
        return out, torch.empty(tuple(lse_shape), dtype=torch.float32, device=q.device) if return_lse else None
    out = np.full(out_shape, np.nan, dtype=q.dtype)
    return out, np.full(lse_shape, np.nan, dtype=np.float32) if return_lse else None


def _split_cache(paged_kv_cache):
    """(k, v) of a paged cache given as a (k, v) tuple or a [pages, 2, ...] tensor (a torch tensor
    gives two _Tensor DLTensors over its halves directly)."""
    c = paged_kv_cache
    if type(c) is not tuple and type(c) is not list:
        # run()'s hot path: torch_halves's cache key built inline (a miss takes the full path).
        try:
            pair = _DL_CACHE.get(("halves", c.data_ptr(), c.shape, c.stride(), c.dtype))
        except (AttributeError, TypeError):
            pair = None
        if pair is not None:
            return pair
    if isinstance(paged_kv_cache, (tuple, list)):
        return paged_kv_cache
    if _is_torch(paged_kv_cache):
        return _Tensor.torch_halves(paged_kv_cache, "paged_kv_cache")
    return paged_kv_cache[:, 0], paged_kv_cache[:, 1]


_raw_stream_fn = None


def _raw_stream(device):
    """The CUstream of torch.cuda.current_stream(device) as an int: through torch's raw accessor when
    it has one (no torch.cuda.Stream object built: ~10 µs less per call), else the public API."""
    global _raw_stream_fn
    if _raw_stream_fn is None:
        import torch
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        current = torch.cuda.current_device
        if raw is not None:
            _raw_stream_fn = lambda d: raw(d.index if d.index is not None else current())  # noqa: E731
        else:
            _raw_stream_fn = lambda d: torch.cuda.current_stream(d).cuda_stream  # noqa: E731
    return _raw_stream_fn(device)


def _recorded(plan):
    """plan() remembering how it was called once it succeeds (the arguments as given: binding them to
    names costs tens of µs, so _plan_arguments does that only when asked): upstream's deprecated
    forward() / forward_return_lse() and run(window_left=) replace some of them."""
    @functools.wraps(plan)
    def recorded(self, *args, **kwargs):
        result = plan(self, *args, **kwargs)
        self._plan_call, self._plan_bound = (plan, args, kwargs), None
        return result

    return recorded


class _DeprecatedAPI:
    """Upstream's deprecated wrapper entry points. Upstream's forward(q, ..., pos_encoding_mode=...,
    sm_scale=..., ...) stores its options over the plan's and runs with them (its defaults too: a
    forward() without pos_encoding_mode runs without RoPE whatever plan() said); here the plan's
    options live in the library, so a forward() whose options differ from the last plan's re-plans
    with the plan's other arguments first (host work, as plan()), then runs."""

    @property
    def _plan_arguments(self):
        """The last successful plan()'s arguments by name, defaults filled in (None before one)."""
        call = getattr(self, "_plan_call", None)
        if call is None:
            return None
        if self._plan_bound is None:  # once per plan: run(window_left=) may ask at every call
            plan, args, kwargs = call
            bound = inspect.signature(plan).bind(self, *args, **kwargs)
            bound.apply_defaults()
            self._plan_bound = {k: v for k, v in bound.arguments.items() if k != "self"}
        return self._plan_bound

    def _apply_options(self, **options):
        planned = self._plan_arguments
        if planned is None:
            raise RuntimeError("run before plan")
        if any(planned.get(k) != v for k, v in options.items()):
            self.plan(**{**planned, **options})  # records the new call

    def end_forward(self):
        """Deprecated upstream, and a no-op there: nothing to release."""


class _Wrapper(_DeprecatedAPI):
    """What every wrapper shares: the kv layout, the device of the workspace buffer (CUDA: plan and
    run each on the stream current at their call), and the ABI handle's lifetime. CUDA-graph mode
    (`use_cuda_graph=True`: fixed buffers that survive a re-plan, so a captured run() replays the
    latest plan) is each wrapper's; without it a plain wrapper's run() can still be captured with
    torch.cuda.graph and replayed as long as it is not re-planned."""

    _destroy = None  # the ABI's destroy function name

    def __init__(self, float_workspace_buffer, kv_layout, create):
        """`create(byref(handle))` makes the ABI handle now; None defers it to the first plan
        (`_create`: CUDA-graph mode of the prefill wrappers, whose query-row capacity is the first
        plan's, as upstream's)."""
        if kv_layout not in _LAYOUT:
            raise ValueError(f"kv_layout {kv_layout!r} is not one of {sorted(_LAYOUT)}")
        self._kv_layout = kv_layout
        self._device = float_workspace_buffer.device if _is_torch(float_workspace_buffer) else None
        self._handle = None
        self._planned = None
        if create is not None:
            self._create(create)

    def reset_workspace_buffer(self, float_workspace_buffer, int_workspace_buffer=None):
        """Upstream's: new workspace buffers. The library keeps its own workspace (sized by each
        plan), so only the device is taken from them: it must stay the wrapper's."""
        device = float_workspace_buffer.device if _is_torch(float_workspace_buffer) else None
        if (device is None) != (self._device is None) or (device is not None and device != self._device):
            raise ValueError(f"float_workspace_buffer: on {device or 'the host'}, the wrapper was made on "
                             f"{self._device or 'the host'} (make a new wrapper to change devices)")

    def _create(self, create):
        handle = ctypes.c_void_p()
        _check(create(ctypes.byref(handle)))
        self._handle = handle

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h is not None and h.value and _lib is not None:
            getattr(_lib, self._destroy)(h)

    def _first_plan_check(self, status):
        """_check for a plan; in graph mode a refused first plan also drops the handle it created,
        so the next plan fixes the capacity's rows again."""
        if status != _OK and self._planned is None and getattr(self, "_max_rows", None) is not None:
            getattr(_library(), self._destroy)(self._handle)
            self._handle, self._max_rows = None, None
        _check(status)

    def _plan_device(self):
        """The (DLDevice, stream) a plan names: the CPU, or the workspace's GPU on its current stream."""
        if self._device is not None and self._device.type == "cuda":
            import torch
            return _DLDevice(_kDLCUDA, self._device.index or 0), ctypes.c_void_p(_raw_stream(self._device))
        return _DLDevice(_kDLCPU, 0), None

    def _run_with(self, fn, q, k, v, return_lse, scales, out=None, lse=None):
        """Runs the plan into `out` / `lse` (allocated for the planned rows when None), on the plan's stream."""
        if self._planned is None:
            raise RuntimeError("run before plan")
        if scales != (None, None, None) and any(s is not None and s != 1 for s in scales):
            raise NotImplementedError("q_scale / k_scale / v_scale at run time are not supported through the C ABI yet")
        rows, hq, stream = self._planned
        if stream is not None:
            # Upstream runs on the current stream: under torch.cuda.graph that is the capture
            # stream, not the plan's. The library moves the wrapper there (no re-plan; the first run
            # waits for the plan's uploads; torch.cuda.graph synchronizes before capturing).
            stream = _raw_stream(self._device)  # an int: ctypes passes it as the c_void_p argument
        if out is None:
            out, new_lse = _new_outputs(q, q.shape, (rows, hq), return_lse and lse is None)
            lse = lse if lse is not None else new_lse
        elif return_lse and lse is None:
            lse = _new_outputs(q, q.shape, (rows, hq), True)[1]
        if stream is not None:
            fn = _hot(fn)  # the GIL-holding twin: the call only enqueues work
            ref = _fast_ref
        else:
            ref = _slow_ref
        status = fn(self._handle, ref(q, "q"), ref(k, "k_cache"), ref(v, "v_cache"), ref(out, "out"),
                    ref(lse, "lse") if lse is not None else None, stream)
        if status:
            _check(status)
        return (out, lse) if return_lse else out


class BatchDecodeWithPagedKVCacheWrapper(_Wrapper):
    """Batch decode over a paged KV cache, upstream's wrapper: plan once per step (host work), run
    per layer. NumPy arrays and CPU torch tensors run on the CPU reference; CUDA torch tensors on
    the GPU (plan and run each on the stream current at the call). `paged_kv_cache` is a
    [pages, 2, page_size, H, D] (NHD) / [pages, 2, H, page_size, D] (HND) tensor or a (k, v) tuple."""

    _destroy = "flashinfer_swift_batch_decode_destroy"

    def __init__(self, float_workspace_buffer=None, kv_layout="NHD", use_cuda_graph=False, use_tensor_cores=False,
                 paged_kv_indptr_buffer=None, paged_kv_indices_buffer=None, paged_kv_last_page_len_buffer=None,
                 backend="auto"):
        self._capacity = None
        if use_cuda_graph:
            # Upstream's CUDA-graph mode: the buffers fix the capacity (batch size = len(last_page_len
            # buffer), pages = len(indices buffer)); the library keeps its own fixed device buffers of
            # that size, so a run captured in a graph replays whatever plan() was made last. q and out
            # have that many rows. It runs the CUDA-core kernel (use_tensor_cores is a hint here).
            if paged_kv_indptr_buffer is None or paged_kv_indices_buffer is None or paged_kv_last_page_len_buffer is None:
                raise ValueError("use_cuda_graph=True needs paged_kv_indptr_buffer, paged_kv_indices_buffer and "
                                 "paged_kv_last_page_len_buffer (their lengths fix the capacity)")
            max_batch = len(paged_kv_last_page_len_buffer)
            if len(paged_kv_indptr_buffer) != max_batch + 1:
                raise ValueError(f"paged_kv_indptr_buffer: {len(paged_kv_indptr_buffer)} entries, expected "
                                 f"len(paged_kv_last_page_len_buffer) + 1 = {max_batch + 1}")
            self._capacity = (max_batch, len(paged_kv_indices_buffer))
            create = lambda h: _library().flashinfer_swift_batch_decode_create_graph(  # noqa: E731
                max_batch, self._capacity[1], h)
        else:
            create = lambda h: _library().flashinfer_swift_batch_decode_create(1 if use_tensor_cores else 0, h)  # noqa: E731
        super().__init__(float_workspace_buffer, kv_layout, create)

    @_recorded
    def plan(self, indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size,
             pos_encoding_mode="NONE", window_left=-1, logits_soft_cap=None, q_data_type="float16", kv_data_type=None,
             data_type=None, sm_scale=None, rope_scale=None, rope_theta=None, non_blocking=True):
        if data_type is not None:
            q_data_type = kv_data_type = data_type
        ip, ix, lp = _int32_array(indptr, "indptr"), _int32_array(indices, "indices"), _int32_array(last_page_len, "last_page_len")
        if ip.shape[0] != lp.shape[0] + 1:
            raise ValueError(f"indptr: {ip.shape[0]} entries, expected len(last_page_len) + 1 = {lp.shape[0] + 1}")
        opts = _options(False, pos_encoding_mode, self._kv_layout, window_left, sm_scale, rope_scale, rope_theta,
                        logits_soft_cap)
        device, stream = self._plan_device()
        i32p = ctypes.POINTER(ctypes.c_int32)
        _check(_library().flashinfer_swift_batch_decode_plan(
            self._handle, ip.ctypes.data_as(i32p), ix.ctypes.data_as(i32p), lp.ctypes.data_as(i32p), lp.shape[0],
            int(num_qo_heads), int(num_kv_heads), int(head_dim), int(page_size), _data_type(q_data_type, "q_data_type"),
            _data_type(kv_data_type if kv_data_type is not None else q_data_type, "kv_data_type"), ctypes.byref(opts), device,
            stream))
        # CUDA-graph mode: q, out and lse have the capacity's rows (the kernels' grids are fixed).
        rows = self._capacity[0] if self._capacity is not None and stream is not None else lp.shape[0]
        self._planned = (rows, int(num_qo_heads), stream)

    begin_forward = plan

    def run(self, q, paged_kv_cache, *args, q_scale=None, k_scale=None, v_scale=None, return_lse=False, out=None, lse=None,
            enable_pdl=None, window_left=None):
        """Attention of q [batch, Hq, D] over the planned pages: out (and the base-2 LSE with
        return_lse). window_left, as upstream's run(), replaces the plan's (a different value
        re-plans first); enable_pdl is accepted (the kernels' launches decide PDL themselves)."""
        k, v = _split_cache(paged_kv_cache)
        if window_left is not None:
            self._apply_options(window_left=window_left)
        if (out is not None and self._planned is not None and self._planned[2] is not None and not return_lse
                and lse is None and q_scale is None and k_scale is None and v_scale is None):
            # A decode step's per-layer call (CUDA plan, out given, no LSE): _run_with's work inline.
            status = _hot(_library().flashinfer_swift_batch_decode_run)(
                self._handle, _fast_ref(q, "q"), _fast_ref(k, "k_cache"), _fast_ref(v, "v_cache"), _fast_ref(out, "out"), None,
                _raw_stream(self._device))
            if status:
                _check(status)
            return out
        return self._run_with(_library().flashinfer_swift_batch_decode_run, q, k, v, return_lse, (q_scale, k_scale, v_scale),
                              out, lse)

    run_return_lse = functools.partialmethod(run, return_lse=True)

    def forward(self, q, paged_kv_cache, pos_encoding_mode="NONE", q_scale=None, k_scale=None, v_scale=None, window_left=-1,
                logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None):
        """Deprecated upstream (use run): these options replace the plan's, then run (see _DeprecatedAPI)."""
        self._apply_options(pos_encoding_mode=pos_encoding_mode, window_left=window_left, logits_soft_cap=logits_soft_cap,
                            sm_scale=sm_scale, rope_scale=rope_scale, rope_theta=rope_theta)
        return self.run(q, paged_kv_cache, q_scale=q_scale, k_scale=k_scale, v_scale=v_scale)

    def forward_return_lse(self, q, paged_kv_cache, pos_encoding_mode="NONE", q_scale=None, k_scale=None, v_scale=None,
                           window_left=-1, logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None):
        """Deprecated upstream (use run_return_lse): forward() returning (out, lse)."""
        self._apply_options(pos_encoding_mode=pos_encoding_mode, window_left=window_left, logits_soft_cap=logits_soft_cap,
                            sm_scale=sm_scale, rope_scale=rope_scale, rope_theta=rope_theta)
        return self.run(q, paged_kv_cache, q_scale=q_scale, k_scale=k_scale, v_scale=v_scale, return_lse=True)


class CUDAGraphBatchDecodeWithPagedKVCacheWrapper(BatchDecodeWithPagedKVCacheWrapper):
    """Upstream's CUDA-graph decode wrapper: BatchDecodeWithPagedKVCacheWrapper with
    use_cuda_graph=True over the three buffers (their lengths fix the capacity)."""

    def __init__(self, workspace_buffer, indptr_buffer, indices_buffer, last_page_len_buffer, kv_layout="NHD",
                 use_tensor_cores=False):
        super().__init__(workspace_buffer, kv_layout, use_cuda_graph=True, use_tensor_cores=use_tensor_cores,
                         paged_kv_indptr_buffer=indptr_buffer, paged_kv_indices_buffer=indices_buffer,
                         paged_kv_last_page_len_buffer=last_page_len_buffer)


def _buffer_len(buf, name):
    if buf is None:
        raise ValueError(f"use_cuda_graph=True needs {name} (its length fixes the capacity)")
    return int(buf.shape[0]) if hasattr(buf, "shape") else len(buf)


class _BatchPrefillWrapper(_Wrapper):
    """The shared body of the paged and ragged batch prefill wrappers (one ABI handle).

    CUDA-graph mode (`use_cuda_graph=True`, upstream's): the buffers fix the capacity (requests =
    len(qo_indptr_buf) - 1, pages = len(paged_kv_indices_buf)) and the first plan fixes the query
    rows (qo_indptr[-1]) and the kernel, as upstream's; later plans may have fewer requests and
    rows, other lengths and page tables, and a run() captured with torch.cuda.graph replays the
    latest plan. On the GPU, q and the output keep the first plan's row count. No custom mask."""

    _destroy = "flashinfer_swift_batch_prefill_destroy"

    def __init__(self, float_workspace_buffer, kv_layout, use_cuda_graph, graph_capacity):
        self._graph_capacity = graph_capacity if use_cuda_graph else None  # (max_batch, max_pages)
        self._max_rows = None
        create = None if use_cuda_graph else (lambda h: _library().flashinfer_swift_batch_prefill_create(h))
        super().__init__(float_workspace_buffer, kv_layout, create)

    def _plan(self, qo_indptr, kv_indptr, kv_indices, last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size,
              custom_mask, packed_custom_mask, causal, pos_encoding_mode, sm_scale, window_left, logits_soft_cap,
              rope_scale, rope_theta, q_data_type, kv_data_type, kv_lens):
        qo = _int32_array(qo_indptr, "qo_indptr")
        kvp = _int32_array(kv_indptr, "kv_indptr")
        b = qo.shape[0] - 1
        if kvp.shape[0] != b + 1:
            raise ValueError(f"kv_indptr: {kvp.shape[0]} entries, expected len(qo_indptr) = {b + 1}")
        i32p = ctypes.POINTER(ctypes.c_int32)
        ix = _int32_array(kv_indices, "paged_kv_indices") if kv_indices is not None else None
        lp = _int32_array(last_page_len, "paged_kv_last_page_len") if last_page_len is not None else None
        mask = mask_indptr = None
        if custom_mask is not None or packed_custom_mask is not None:
            qo_lens = np.diff(qo)
            lens = kv_lens(kvp, lp)
            nbits = [int(a) * int(c) for a, c in zip(qo_lens, lens)]
            mask_indptr = np.concatenate([[0], np.cumsum([(n + 7) // 8 for n in nbits])]).astype(np.int32)
            if packed_custom_mask is not None:
                mask = np.ascontiguousarray(_numpy(packed_custom_mask), dtype=np.uint8).reshape(-1)
            else:
                bits = np.asarray(_numpy(custom_mask), dtype=bool).reshape(-1)
                if bits.shape[0] != sum(nbits):
                    raise ValueError(f"custom_mask: {bits.shape[0]} elements, expected sum(qo_len * kv_len) = {sum(nbits)}")
                offs = np.concatenate([[0], np.cumsum(nbits)])
                mask = np.concatenate([np.packbits(bits[offs[i]:offs[i + 1]], bitorder="little") for i in range(b)]
                                      + [np.zeros(0, np.uint8)]).astype(np.uint8)
            if mask.shape[0] != mask_indptr[-1]:
                raise ValueError(f"packed_custom_mask: {mask.shape[0]} bytes, expected {int(mask_indptr[-1])}")
        opts = _options(causal, pos_encoding_mode, self._kv_layout, window_left, sm_scale, rope_scale, rope_theta,
                        logits_soft_cap)
        device, stream = self._plan_device()
        if self._graph_capacity is not None and self._handle is None:
            # Graph mode: the first plan's query rows are the capacity's (upstream's rule).
            max_batch, max_pages = self._graph_capacity
            self._max_rows = max(int(qo[-1]), 1)
            self._create(lambda h: _library().flashinfer_swift_batch_prefill_create_graph(max_batch, max_pages, self._max_rows, h))
        self._keep = (qo, kvp, ix, lp, mask, mask_indptr)
        self._first_plan_check(_library().flashinfer_swift_batch_prefill_plan(
            self._handle, qo.ctypes.data_as(i32p), kvp.ctypes.data_as(i32p),
            ix.ctypes.data_as(i32p) if ix is not None else None, lp.ctypes.data_as(i32p) if lp is not None else None, b,
            int(num_qo_heads), int(num_kv_heads), int(head_dim), int(page_size), _data_type(q_data_type, "q_data_type"),
            _data_type(kv_data_type if kv_data_type is not None else q_data_type, "kv_data_type"), ctypes.byref(opts),
            ctypes.c_void_p(mask.ctypes.data) if mask is not None and mask.shape[0] > 0 else None,
            mask_indptr.ctypes.data_as(i32p) if mask_indptr is not None else None, device, stream))
        # Graph mode on the GPU: q and out have the capacity's rows (the kernels' grids are fixed).
        rows = self._max_rows if self._max_rows is not None and stream is not None else int(qo[-1])
        self._planned = (rows, int(num_qo_heads), stream)

    def _run(self, q, k, v, return_lse, k_scale=None, v_scale=None, out=None, lse=None, window_left=None):
        if window_left is not None:
            self._apply_options(window_left=window_left)
        return self._run_with(_library().flashinfer_swift_batch_prefill_run, q, k, v, return_lse, (k_scale, v_scale), out, lse)


def _numpy(x):
    return x.detach().cpu().numpy() if _is_torch(x) else np.asarray(x)


class BatchPrefillWithPagedKVCacheWrapper(_BatchPrefillWrapper):
    """Batch prefill / append over a paged KV cache (upstream's wrapper): plan, then run per layer.
    CPU arrays run on the CPU reference, CUDA torch tensors on the GPU (the plan's stream).
    use_cuda_graph=True needs qo_indptr_buf, paged_kv_indptr_buf, paged_kv_indices_buf and
    paged_kv_last_page_len_buf (see _BatchPrefillWrapper)."""

    def __init__(self, float_workspace_buffer=None, kv_layout="NHD", use_cuda_graph=False, qo_indptr_buf=None,
                 paged_kv_indptr_buf=None, paged_kv_indices_buf=None, paged_kv_last_page_len_buf=None,
                 custom_mask_buf=None, mask_indptr_buf=None, backend="auto", jit_args=None, jit_kwargs=None):
        cap = None
        if use_cuda_graph:
            max_batch = _buffer_len(qo_indptr_buf, "qo_indptr_buf") - 1
            for name, buf, n in (("paged_kv_indptr_buf", paged_kv_indptr_buf, max_batch + 1),
                                 ("paged_kv_last_page_len_buf", paged_kv_last_page_len_buf, max_batch)):
                if _buffer_len(buf, name) != n:
                    raise ValueError(f"{name}: {_buffer_len(buf, name)} entries, expected {n} (len(qo_indptr_buf) = {max_batch + 1})")
            cap = (max_batch, _buffer_len(paged_kv_indices_buf, "paged_kv_indices_buf"))
            if custom_mask_buf is not None or mask_indptr_buf is not None:
                raise NotImplementedError("a custom mask in CUDA-graph mode (custom_mask_buf) is not supported")
        super().__init__(float_workspace_buffer, kv_layout, use_cuda_graph, cap)

    @_recorded
    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads, num_kv_heads,
             head_dim_qk, page_size, head_dim_vo=None, custom_mask=None, packed_custom_mask=None, causal=False,
             pos_encoding_mode="NONE", use_fp16_qk_reduction=False, sm_scale=None, window_left=-1, logits_soft_cap=None,
             rope_scale=None, rope_theta=None, q_data_type="float16", kv_data_type=None, non_blocking=True):
        if head_dim_vo is not None and head_dim_vo != head_dim_qk:
            raise NotImplementedError("head_dim_vo != head_dim_qk is not supported")

        def kv_lens(kvp, lp):
            return [0 if n == 0 else (n - 1) * int(page_size) + int(l) for n, l in zip(np.diff(kvp), lp)]

        self._plan(qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads, num_kv_heads,
                   head_dim_qk, page_size, custom_mask, packed_custom_mask, causal, pos_encoding_mode, sm_scale, window_left,
                   logits_soft_cap, rope_scale, rope_theta, q_data_type, kv_data_type, kv_lens)

    begin_forward = plan

    def run(self, q, paged_kv_cache, *args, k_scale=None, v_scale=None, out=None, lse=None, return_lse=False,
            enable_pdl=None, window_left=None):
        """Attention of q [qo_indptr[-1], Hq, D] over the planned pages (window_left replaces the
        plan's, re-planning when it differs; enable_pdl accepted)."""
        k, v = _split_cache(paged_kv_cache)
        return self._run(q, k, v, return_lse, k_scale, v_scale, out, lse, window_left)

    run_return_lse = functools.partialmethod(run, return_lse=True)

    def forward(self, q, paged_kv_cache, causal=False, pos_encoding_mode="NONE", use_fp16_qk_reduction=False, k_scale=None,
                v_scale=None, window_left=-1, logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None):
        """Deprecated upstream (use run): these options replace the plan's, then run (see _DeprecatedAPI)."""
        self._apply_options(causal=causal, pos_encoding_mode=pos_encoding_mode, use_fp16_qk_reduction=use_fp16_qk_reduction,
                            window_left=window_left, logits_soft_cap=logits_soft_cap, sm_scale=sm_scale, rope_scale=rope_scale,
                            rope_theta=rope_theta)
        return self.run(q, paged_kv_cache, k_scale=k_scale, v_scale=v_scale)

    def forward_return_lse(self, q, paged_kv_cache, causal=False, pos_encoding_mode="NONE", use_fp16_qk_reduction=False,
                           k_scale=None, v_scale=None, window_left=-1, logits_soft_cap=None, sm_scale=None, rope_scale=None,
                           rope_theta=None):
        """Deprecated upstream (use run_return_lse): forward() returning (out, lse)."""
        self._apply_options(causal=causal, pos_encoding_mode=pos_encoding_mode, use_fp16_qk_reduction=use_fp16_qk_reduction,
                            window_left=window_left, logits_soft_cap=logits_soft_cap, sm_scale=sm_scale, rope_scale=rope_scale,
                            rope_theta=rope_theta)
        return self.run(q, paged_kv_cache, k_scale=k_scale, v_scale=v_scale, return_lse=True)


class BatchPrefillWithRaggedKVCacheWrapper(_BatchPrefillWrapper):
    """Batch prefill over ragged K/V rows (upstream's wrapper): k / v [kv_indptr[-1], Hkv, D] (NHD).
    use_cuda_graph=True needs qo_indptr_buf and kv_indptr_buf (see _BatchPrefillWrapper); k / v
    are the tensors captured, so every plan's kv_indptr[-1] rows must fit them."""

    def __init__(self, float_workspace_buffer=None, kv_layout="NHD", use_cuda_graph=False, qo_indptr_buf=None,
                 kv_indptr_buf=None, custom_mask_buf=None, mask_indptr_buf=None, backend="auto", jit_args=None,
                 jit_kwargs=None):
        cap = None
        if use_cuda_graph:
            max_batch = _buffer_len(qo_indptr_buf, "qo_indptr_buf") - 1
            if _buffer_len(kv_indptr_buf, "kv_indptr_buf") != max_batch + 1:
                raise ValueError(f"kv_indptr_buf: {_buffer_len(kv_indptr_buf, 'kv_indptr_buf')} entries, expected "
                                 f"len(qo_indptr_buf) = {max_batch + 1}")
            cap = (max_batch, 0)
            if custom_mask_buf is not None or mask_indptr_buf is not None:
                raise NotImplementedError("a custom mask in CUDA-graph mode (custom_mask_buf) is not supported")
        super().__init__(float_workspace_buffer, kv_layout, use_cuda_graph, cap)

    @_recorded
    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim_qk, head_dim_vo=None, custom_mask=None,
             packed_custom_mask=None, causal=False, pos_encoding_mode="NONE", use_fp16_qk_reduction=False, window_left=-1,
             logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None, q_data_type="float16",
             kv_data_type=None, non_blocking=True):
        if head_dim_vo is not None and head_dim_vo != head_dim_qk:
            raise NotImplementedError("head_dim_vo != head_dim_qk is not supported")
        self._plan(qo_indptr, kv_indptr, None, None, num_qo_heads, num_kv_heads, head_dim_qk, 0, custom_mask,
                   packed_custom_mask, causal, pos_encoding_mode, sm_scale, window_left, logits_soft_cap, rope_scale,
                   rope_theta, q_data_type, kv_data_type, lambda kvp, lp: [int(x) for x in np.diff(kvp)])

    begin_forward = plan

    def run(self, q, k, v, *args, out=None, lse=None, return_lse=False, enable_pdl=None, window_left=None):
        """Attention of q [qo_indptr[-1], Hq, D] over k / v [kv_indptr[-1], Hkv, D] (window_left
        replaces the plan's, re-planning when it differs; enable_pdl accepted)."""
        return self._run(q, k, v, return_lse, out=out, lse=lse, window_left=window_left)

    run_return_lse = functools.partialmethod(run, return_lse=True)

    def forward(self, q, k, v, causal=False, pos_encoding_mode="NONE", use_fp16_qk_reduction=False, window_left=-1,
                logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None):
        """Deprecated upstream (use run): these options replace the plan's, then run (see _DeprecatedAPI)."""
        self._apply_options(causal=causal, pos_encoding_mode=pos_encoding_mode, use_fp16_qk_reduction=use_fp16_qk_reduction,
                            window_left=window_left, logits_soft_cap=logits_soft_cap, sm_scale=sm_scale, rope_scale=rope_scale,
                            rope_theta=rope_theta)
        return self.run(q, k, v)

    def forward_return_lse(self, q, k, v, causal=False, pos_encoding_mode="NONE", use_fp16_qk_reduction=False, window_left=-1,
                           logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None):
        """Deprecated upstream (use run_return_lse): forward() returning (out, lse)."""
        self._apply_options(causal=causal, pos_encoding_mode=pos_encoding_mode, use_fp16_qk_reduction=use_fp16_qk_reduction,
                            window_left=window_left, logits_soft_cap=logits_soft_cap, sm_scale=sm_scale, rope_scale=rope_scale,
                            rope_theta=rope_theta)
        return self.run(q, k, v, return_lse=True)


class BlockSparseAttentionWrapper(_DeprecatedAPI):
    """Block-sparse (BSR) attention (upstream's flashinfer.sparse.BlockSparseAttentionWrapper): M
    queries attend N keys through an M x N pattern of R x C blocks stored as a BSR matrix (indptr
    [M/R + 1], indices [nnz] block columns), run as upstream runs it: block row i is request i of
    the paged batch prefill wrapper (queries i*R ..< min((i+1)*R, M)), its stored blocks its pages
    of C keys over K / V [N, Hkv, D] viewed as N / C pages (no copy). An in-block mask (mask
    [nnz, R, C] bool, or packed_mask: upstream's per-block-row packed bits) becomes the requests'
    custom masks. As the Swift API (BlockSparseAttention), causal, window_left and position
    encodings are refused: upstream applies them in each block row's gathered key coordinates,
    not at column positions (put them in the pattern or the mask)."""

    def __init__(self, float_workspace_buffer=None, backend="auto"):
        self._inner = BatchPrefillWithPagedKVCacheWrapper(float_workspace_buffer, "NHD")
        self._shape = None

    @_recorded
    def plan(self, indptr, indices, M, N, R, C, num_qo_heads, num_kv_heads, head_dim, mask=None, packed_mask=None,
             causal=False, pos_encoding_mode="NONE", use_fp16_qk_reduction=False, logits_soft_cap=None, sm_scale=None,
             rope_scale=None, rope_theta=None, q_data_type="float16", kv_data_type=None, non_blocking=True):
        why = ("upstream applies it in each block row's gathered key coordinates, not at column positions; put it in the "
               "block pattern or the in-block mask")
        if causal:
            raise NotImplementedError(f"causal with block-sparse attention: {why}")
        if pos_encoding_mode != "NONE":
            raise NotImplementedError(f"pos_encoding_mode {pos_encoding_mode!r} with block-sparse attention: {why}")
        ip = _int32_array(indptr, "indptr")
        ix = _int32_array(indices, "indices")
        M, N, R, C = int(M), int(N), int(R), int(C)
        if M < 0 or N < 0 or R < 1 or C < 1 or N % C != 0:
            raise ValueError(f"M, N, R, C = {M}, {N}, {R}, {C}: M, N >= 0, R, C >= 1 and N a multiple of C")
        mb = (M + R - 1) // R
        if ip.shape[0] != mb + 1 or ip[0] != 0 or np.any(np.diff(ip) < 0) or ip[-1] != ix.shape[0]:
            raise ValueError(f"indptr: {ip.shape[0]} entries, expected ceil(M / R) + 1 = {mb + 1}, from 0, non-decreasing, "
                             f"ending at len(indices) = {ix.shape[0]}")
        if ix.shape[0] and (ix.min() < 0 or ix.max() >= N // C):
            raise ValueError(f"indices: block columns must be in [0, N / C = {N // C})")
        for i in range(mb):
            row = ix[ip[i]:ip[i + 1]]
            if np.unique(row).shape[0] != row.shape[0]:
                raise ValueError(f"indices: block row {i} stores a block column twice")
        qo = np.minimum(np.arange(mb + 1, dtype=np.int64) * R, M).astype(np.int32)
        custom = None
        if mask is not None:
            if M % R != 0:
                raise ValueError(f"mask: needs M = {M} divisible by R = {R}")
            m = np.asarray(_numpy(mask), dtype=bool)
            if m.shape != (ix.shape[0], R, C):
                raise ValueError(f"mask: shape {m.shape}, expected [nnz, R, C] = [{ix.shape[0]}, {R}, {C}]")
            # upstream's convert_bsr_mask_layout: block row i as [R, nnz_i, C], flattened
            custom = np.concatenate([m[ip[i]:ip[i + 1]].transpose(1, 0, 2).reshape(-1) for i in range(mb)]
                                    + [np.zeros(0, bool)])
        self._inner.plan(qo, ip, ix, np.full(mb, C, np.int32), num_qo_heads, num_kv_heads, head_dim, C,
                         custom_mask=custom, packed_custom_mask=packed_mask if mask is None else None, causal=False,
                         use_fp16_qk_reduction=use_fp16_qk_reduction, sm_scale=sm_scale, logits_soft_cap=logits_soft_cap,
                         rope_scale=rope_scale, rope_theta=rope_theta, q_data_type=q_data_type, kv_data_type=kv_data_type)
        self._shape = (M, N, C, int(num_kv_heads), int(head_dim))

    begin_forward = plan

    def _pages(self, x, name):
        """K or V [N, Hkv, D] as N / C pages of C keys [N/C, C, Hkv, D] (a view with x's strides)."""
        M, N, C, hkv, d = self._shape
        if tuple(x.shape) != (N, hkv, d):
            raise ValueError(f"{name}: shape {tuple(x.shape)}, expected [N, num_kv_heads, head_dim] = [{N}, {hkv}, {d}]")
        if _is_torch(x):
            sn, sh, sd = x.stride()
            return x.as_strided((N // C, C, hkv, d), (C * sn, sn, sh, sd), x.storage_offset())
        sn, sh, sd = x.strides
        return np.lib.stride_tricks.as_strided(x, (N // C, C, hkv, d), (C * sn, sn, sh, sd))

    def run(self, q, k, v, scale_q=None, scale_k=None, scale_v=None, out=None, lse=None, return_lse=False,
            enable_pdl=None):
        if self._shape is None:
            raise RuntimeError("run before plan")
        if out is not None or lse is not None:
            raise NotImplementedError("out= / lse= are not supported by BlockSparseAttentionWrapper.run yet")
        if any(x is not None and x != 1 for x in (scale_q, scale_k, scale_v)):
            raise NotImplementedError("scale_q / scale_k / scale_v are not supported through the C ABI yet")
        return self._inner.run(q, (self._pages(k, "k"), self._pages(v, "v")), return_lse=return_lse)

    run_return_lse = functools.partialmethod(run, return_lse=True)

    def forward(self, q, k, v, scale_q=None, scale_k=None, scale_v=None, pos_encoding_mode="NONE", use_fp16_qk_reduction=False,
                logits_soft_cap=None, sm_scale=None, rope_scale=None, rope_theta=None):
        """Deprecated upstream (use run): these options replace the plan's, then run (see _DeprecatedAPI)."""
        self._apply_options(pos_encoding_mode=pos_encoding_mode, use_fp16_qk_reduction=use_fp16_qk_reduction,
                            logits_soft_cap=logits_soft_cap, sm_scale=sm_scale, rope_scale=rope_scale, rope_theta=rope_theta)
        return self.run(q, k, v, scale_q, scale_k, scale_v)


class MultiLevelCascadeAttentionWrapper(_Wrapper):
    """Multi-level cascade attention (upstream's wrapper): `num_levels` levels over one paged KV pool
    and one ragged query tensor; level l's qo_indptr groups all the queries into that level's
    requests (level 0 typically one shared prefix). `causal` applies to the last level only, as
    upstream. run() attends every level and merges the states (base-2 LSE). CPU arrays run on the
    CPU reference, CUDA torch tensors on the GPU (the plan's stream).

    CUDA-graph mode (`use_cuda_graph=True`, upstream's): the four buffer lists (one buffer per
    level) fix each level's capacity (requests = len(qo_indptr_buf_arr[l]) - 1, pages =
    len(paged_kv_indices_buf_arr[l])); the first plan fixes the query rows and the kernels. A run()
    captured with torch.cuda.graph then replays the latest plan; on the GPU q and the output keep
    the first plan's row count."""

    _destroy = "flashinfer_swift_cascade_destroy"

    def __init__(self, num_levels, float_workspace_buffer, kv_layout="NHD", use_cuda_graph=False, qo_indptr_buf_arr=None,
                 paged_kv_indptr_buf_arr=None, paged_kv_indices_buf_arr=None, paged_kv_last_page_len_buf_arr=None,
                 backend="auto"):
        if int(num_levels) < 1:
            raise ValueError(f"num_levels {num_levels} must be >= 1")
        self._num_levels = n = int(num_levels)
        self._graph_capacity = None
        self._max_rows = None
        if use_cuda_graph:
            arrs = (("qo_indptr_buf_arr", qo_indptr_buf_arr), ("paged_kv_indptr_buf_arr", paged_kv_indptr_buf_arr),
                    ("paged_kv_indices_buf_arr", paged_kv_indices_buf_arr),
                    ("paged_kv_last_page_len_buf_arr", paged_kv_last_page_len_buf_arr))
            for name, arr in arrs:
                if arr is None or len(arr) != n:
                    raise ValueError(f"use_cuda_graph=True needs {name}: one buffer per level ({n})")
            batches, pages = [], []
            for l in range(n):
                b = _buffer_len(qo_indptr_buf_arr[l], f"qo_indptr_buf_arr[{l}]") - 1
                for name, buf, want in ((f"paged_kv_indptr_buf_arr[{l}]", paged_kv_indptr_buf_arr[l], b + 1),
                                        (f"paged_kv_last_page_len_buf_arr[{l}]", paged_kv_last_page_len_buf_arr[l], b)):
                    if _buffer_len(buf, name) != want:
                        raise ValueError(f"{name}: {_buffer_len(buf, name)} entries, expected {want} "
                                         f"(len(qo_indptr_buf_arr[{l}]) = {b + 1})")
                batches.append(b)
                pages.append(_buffer_len(paged_kv_indices_buf_arr[l], f"paged_kv_indices_buf_arr[{l}]"))
            self._graph_capacity = (batches, pages)
        create = None if use_cuda_graph else (lambda h: _library().flashinfer_swift_cascade_create(h))
        super().__init__(float_workspace_buffer, kv_layout, create)

    def plan(self, qo_indptr_arr, paged_kv_indptr_arr, paged_kv_indices_arr, paged_kv_last_page_len, num_qo_heads,
             num_kv_heads, head_dim, page_size, causal=False, pos_encoding_mode="NONE", use_fp16_qk_reduction=False,
             sm_scale=None, window_left=-1, logits_soft_cap=None, rope_scale=None, rope_theta=None, q_data_type="float16",
             kv_data_type=None):
        n = self._num_levels
        for name, arr in (("qo_indptr_arr", qo_indptr_arr), ("paged_kv_indptr_arr", paged_kv_indptr_arr),
                          ("paged_kv_indices_arr", paged_kv_indices_arr), ("paged_kv_last_page_len", paged_kv_last_page_len)):
            if len(arr) != n:
                raise ValueError(f"{name}: {len(arr)} levels, the wrapper has num_levels = {n}")
        qo = [_int32_array(a, f"qo_indptr_arr[{l}]") for l, a in enumerate(qo_indptr_arr)]
        ip = [_int32_array(a, f"paged_kv_indptr_arr[{l}]") for l, a in enumerate(paged_kv_indptr_arr)]
        ix = [_int32_array(a, f"paged_kv_indices_arr[{l}]") for l, a in enumerate(paged_kv_indices_arr)]
        lp = [_int32_array(a, f"paged_kv_last_page_len[{l}]") for l, a in enumerate(paged_kv_last_page_len)]
        for l in range(n):
            b = qo[l].shape[0] - 1
            if b < 0:
                raise ValueError(f"qo_indptr_arr[{l}]: empty (expected batch_size + 1 entries)")
            if ip[l].shape[0] != b + 1:
                raise ValueError(f"paged_kv_indptr_arr[{l}]: {ip[l].shape[0]} entries, expected len(qo_indptr_arr[{l}]) = {b + 1}")
            if lp[l].shape[0] != b:
                raise ValueError(f"paged_kv_last_page_len[{l}]: {lp[l].shape[0]} entries, expected batch_size = {b}")
            if ix[l].shape[0] < ip[l][-1]:
                raise ValueError(f"paged_kv_indices_arr[{l}]: {ix[l].shape[0]} entries, paged_kv_indptr_arr[{l}][-1] is {int(ip[l][-1])}")
        opts = _options(causal, pos_encoding_mode, self._kv_layout, window_left, sm_scale, rope_scale, rope_theta,
                        logits_soft_cap)
        device, stream = self._plan_device()
        i32p = ctypes.POINTER(ctypes.c_int32)

        def ptrs(arrs):
            return (i32p * n)(*[a.ctypes.data_as(i32p) for a in arrs])

        sizes = np.array([a.shape[0] - 1 for a in qo], dtype=np.int32)
        if self._graph_capacity is not None and self._handle is None:
            # Graph mode: the first plan's query rows are the capacity's (upstream's rule).
            batches = np.array(self._graph_capacity[0], dtype=np.int32)
            pages = np.array(self._graph_capacity[1], dtype=np.int64)
            self._max_rows = max(int(qo[0][-1]), 1)
            self._create(lambda h: _library().flashinfer_swift_cascade_create_graph(
                n, batches.ctypes.data_as(i32p), pages.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), self._max_rows, h))
        self._keep = (qo, ip, ix, lp, sizes)
        self._first_plan_check(_library().flashinfer_swift_cascade_plan(
            self._handle, n, ptrs(qo), ptrs(ip), ptrs(ix), ptrs(lp), sizes.ctypes.data_as(i32p), int(num_qo_heads),
            int(num_kv_heads), int(head_dim), int(page_size), _data_type(q_data_type, "q_data_type"),
            _data_type(kv_data_type if kv_data_type is not None else q_data_type, "kv_data_type"), ctypes.byref(opts), device,
            stream))
        rows = self._max_rows if self._max_rows is not None and stream is not None else int(qo[0][-1])
        self._planned = (rows, int(num_qo_heads), stream)

    begin_forward = plan

    def run(self, q, paged_kv_cache):
        """The cascade's output [total, Hq, D] (q's dtype)."""
        k, v = _split_cache(paged_kv_cache)
        return self._run_with(_library().flashinfer_swift_cascade_run, q, k, v, False, ())

    forward = run


class _SharedPrefixWrapper:
    """The shared body of upstream's deprecated shared-prefix wrappers: one batch wrapper over each
    request's own pages; forward() attends the shared prefix with single_prefill_with_kv_cache
    (return_lse), the pages with the batch wrapper, and merges the two states in place, as upstream."""

    def __init__(self, inner, kv_layout):
        self._inner = inner
        self._kv_layout = kv_layout

    def reset_workspace_buffer(self, float_workspace_buffer, int_workspace_buffer=None):
        self._inner.reset_workspace_buffer(float_workspace_buffer, int_workspace_buffer)

    def _merged(self, q, k_shared, v_shared, pages_state, **prefix_options):
        out, lse = single_prefill_with_kv_cache(q, k_shared, v_shared, causal=False, pos_encoding_mode="NONE",
                                                kv_layout=self._kv_layout, return_lse=True, **prefix_options)
        merge_state_in_place(out, lse, *pages_state)
        return out

    def end_forward(self):
        """Deprecated upstream, a no-op."""


class BatchDecodeWithSharedPrefixPagedKVCacheWrapper(_SharedPrefixWrapper):
    """Upstream's (deprecated) shared-prefix decode: the prefix in standalone tensors k_shared /
    v_shared [prefix_len, Hkv, D] (NHD), each request's own pages in a paged cache (the batch decode
    wrapper). MultiLevelCascadeAttentionWrapper is the current API."""

    def __init__(self, float_workspace_buffer, kv_layout="NHD"):
        super().__init__(BatchDecodeWithPagedKVCacheWrapper(float_workspace_buffer, kv_layout), kv_layout)

    def begin_forward(self, unique_kv_indptr, unique_kv_indices, unique_kv_last_page_len, num_qo_heads, num_kv_heads, head_dim,
                      page_size, data_type="float16"):
        self._inner.begin_forward(unique_kv_indptr, unique_kv_indices, unique_kv_last_page_len, num_qo_heads, num_kv_heads,
                                  head_dim, page_size, pos_encoding_mode="NONE", data_type=data_type)

    def forward(self, q, k_shared, v_shared, unique_kv_cache):
        """q [batch, Hq, D] -> [batch, Hq, D]: attention over the shared prefix, then the request's pages."""
        planned = self._inner._plan_arguments
        if planned is None:
            raise RuntimeError("forward before begin_forward")
        pages = self._inner.forward_return_lse(q, unique_kv_cache, pos_encoding_mode="NONE")
        return self._merged(q, k_shared, v_shared, pages, sm_scale=planned["sm_scale"], rope_scale=planned["rope_scale"],
                            rope_theta=planned["rope_theta"])


class BatchPrefillWithSharedPrefixPagedKVCacheWrapper(_SharedPrefixWrapper):
    """Upstream's (deprecated) shared-prefix prefill / append: every query sees the whole prefix
    (k_shared / v_shared), then its request's own pages (the paged prefill wrapper; `causal` there,
    bottom-right aligned). MultiLevelCascadeAttentionWrapper is the current API."""

    def __init__(self, float_workspace_buffer, kv_layout="NHD"):
        super().__init__(BatchPrefillWithPagedKVCacheWrapper(float_workspace_buffer, kv_layout), kv_layout)

    def begin_forward(self, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads, num_kv_heads,
                      head_dim, page_size):
        self._inner.begin_forward(qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads,
                                  num_kv_heads, head_dim, page_size)

    def forward(self, q, k_shared, v_shared, unique_kv_cache, causal=False, use_fp16_qk_reduction=False, sm_scale=None,
                rope_scale=None, rope_theta=None):
        """q [qo_indptr[-1], Hq, D] -> the same shape."""
        options = dict(use_fp16_qk_reduction=use_fp16_qk_reduction, sm_scale=sm_scale, rope_scale=rope_scale, rope_theta=rope_theta)
        pages = self._inner.forward_return_lse(q, unique_kv_cache, causal=causal, pos_encoding_mode="NONE", **options)
        return self._merged(q, k_shared, v_shared, pages, **options)


def packbits(x, bitorder="big"):
    """Upstream's flashinfer.packbits (numpy.packbits): a boolean array, flattened, 8 values per
    uint8, the first in the most ("big") or least ("little") significant bit; the last byte padded
    with zeros. Torch in, torch out (on x's device; computed on the host)."""
    if bitorder not in ("big", "little"):
        raise ValueError(f"bitorder {bitorder!r} is not 'big' or 'little'")
    out = np.packbits(np.asarray(_numpy(x), dtype=bool).reshape(-1), bitorder=bitorder)
    if _is_torch(x):
        import torch
        return torch.from_numpy(out).to(x.device)
    return out


def segment_packbits(x, indptr, bitorder="big"):
    """Upstream's flashinfer.segment_packbits: packbits of each segment x[indptr[i]:indptr[i+1]]
    separately (each padded to whole bytes), concatenated. Returns (packed, new_indptr), new_indptr
    the segments' byte offsets (int32, on indptr's device for torch)."""
    if bitorder not in ("big", "little"):
        raise ValueError(f"bitorder {bitorder!r} is not 'big' or 'little'")
    bits = np.asarray(_numpy(x), dtype=bool).reshape(-1)
    ip = _int32_array(indptr, "indptr")
    if ip.shape[0] < 1 or ip[0] != 0 or np.any(np.diff(ip) < 0) or ip[-1] > bits.shape[0]:
        raise ValueError(f"indptr: expected non-decreasing offsets from 0 to at most len(x) = {bits.shape[0]}")
    lens = (np.diff(ip) + 7) // 8
    new_ip = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    packed = np.concatenate([np.packbits(bits[ip[i]:ip[i + 1]], bitorder=bitorder) for i in range(ip.shape[0] - 1)]
                            + [np.zeros(0, np.uint8)]).astype(np.uint8)
    if _is_torch(x) or _is_torch(indptr):
        import torch
        dev = x.device if _is_torch(x) else indptr.device
        return torch.from_numpy(packed).to(dev), torch.from_numpy(new_ip).to(indptr.device if _is_torch(indptr) else dev)
    return packed, new_ip


def get_seq_lens(kv_indptr, kv_last_page_len, page_size):
    """Each request's kv length from its page count and last-page length (upstream's get_seq_lens).
    Torch tensors: computed with torch ops on their device (CUDA: in stream order, no copy to the
    host); NumPy arrays on the host."""
    if _is_torch(kv_indptr) and _is_torch(kv_last_page_len):
        import torch
        pages = kv_indptr[1:] - kv_indptr[:-1]
        lens = (pages - 1).clamp(min=0) * int(page_size) + kv_last_page_len
        return torch.where(pages > 0, lens, torch.zeros_like(lens)).to(torch.int32)
    ip, lp = _int32_array(kv_indptr, "kv_indptr"), _int32_array(kv_last_page_len, "kv_last_page_len")
    pages = np.diff(ip)
    return np.where(pages > 0, (pages - 1) * int(page_size) + lp, 0).astype(np.int32)


def get_batch_indices_positions(append_indptr, seq_lens, nnz):
    """For each appended token, its request and its position in the request (upstream's
    get_batch_indices_positions): request b's append_len tokens sit at seq_len - append_len …
    Torch tensors: computed with torch ops on their device (CUDA: in stream order, no copy to the
    host, so it can run inside a captured step; as upstream, not validated there); NumPy arrays on
    the host, validated (a request cannot append more tokens than its sequence holds)."""
    if _is_torch(append_indptr) and _is_torch(seq_lens):
        import torch
        if append_indptr.shape[0] != seq_lens.shape[0] + 1:
            raise ValueError(f"append_indptr: {append_indptr.shape[0]} entries, expected len(seq_lens) + 1 = {seq_lens.shape[0] + 1}")
        dev, n = append_indptr.device, int(nnz)
        ap = append_indptr.to(torch.int64)
        counts = ap[1:] - ap[:-1]
        batch = torch.repeat_interleave(torch.arange(counts.shape[0], device=dev), counts, output_size=n)
        token = torch.arange(n, device=dev)
        start = seq_lens.to(torch.int64) - counts  # each request's first appended position
        pos = start[batch] + (token - ap[batch])
        return batch.to(torch.int32), pos.to(torch.int32)
    ap, sl = _int32_array(append_indptr, "append_indptr"), _int32_array(seq_lens, "seq_lens")
    if ap.shape[0] != sl.shape[0] + 1:
        raise ValueError(f"append_indptr: {ap.shape[0]} entries, expected len(seq_lens) + 1 = {sl.shape[0] + 1}")
    batch = np.zeros(int(nnz), np.int32)
    pos = np.zeros(int(nnz), np.int32)
    for b in range(sl.shape[0]):
        lo, hi = int(ap[b]), int(ap[b + 1])
        if hi - lo > sl[b]:
            raise ValueError(f"request {b}: appends {hi - lo} tokens to a sequence of {int(sl[b])}")
        batch[lo:hi] = b
        pos[lo:hi] = np.arange(sl[b] - (hi - lo), sl[b], dtype=np.int32)
    return batch, pos


def append_paged_kv_cache(append_key, append_value, batch_indices, positions, paged_kv_cache, kv_indices, kv_indptr,
                          kv_last_page_len, kv_layout="NHD", k_scale=None, v_scale=None):
    """Writes append_key / append_value [nnz, Hkv, D] into the paged cache in place (upstream's
    append_paged_kv_cache); the page table already counts the appended tokens. An FP8 cache is
    written quantized with k_scale / v_scale. CUDA index tensors (int32) are read by the kernel where
    they are: no copy to the host, no wait, capturable in a CUDA graph; as upstream they are not
    validated, and the kernel skips a token whose request, position or page is out of range. Host
    index arrays are validated first."""
    if kv_layout not in _LAYOUT:
        raise ValueError(f"kv_layout {kv_layout!r} is not one of {sorted(_LAYOUT)}")
    k, v = _split_cache(paged_kv_cache)
    keep = []
    idx = []
    for x, name in ((batch_indices, "batch_indices"), (positions, "positions"), (kv_indices, "kv_indices"),
                    (kv_indptr, "kv_indptr"), (kv_last_page_len, "kv_last_page_len")):
        dl, alive = _indices(x, name)
        idx.append(dl)
        keep.append(alive)
    stream = None
    if _is_torch(append_key) and append_key.is_cuda:
        stream = ctypes.c_void_p(_raw_stream(append_key.device))
    ts = [_Tensor.cached(append_key, "append_key"), _Tensor.cached(append_value, "append_value"), _Tensor.cached(k, "k_cache"),
          _Tensor.cached(v, "v_cache")]
    _check(_library().flashinfer_swift_append_paged_kv_cache_tensors(
        ts[0].ref(), ts[1].ref(), idx[0].ref(), idx[1].ref(), ts[2].ref(), ts[3].ref(), idx[2].ref(), idx[3].ref(), idx[4].ref(),
        _LAYOUT[kv_layout], _scale(k_scale, "k_scale"), _scale(v_scale, "v_scale"), stream))


def _states_out(v, s, shape):
    """The merged state's outputs: torch tensors on v's device for torch inputs (CUDA: the kernels on
    the current stream), NaN-filled NumPy arrays for NumPy inputs."""
    if _is_torch(v) and _is_torch(s):
        import torch
        return (torch.empty(tuple(shape), dtype=v.dtype, device=v.device),
                torch.empty(tuple(shape[:-1]), dtype=torch.float32, device=v.device))
    if not isinstance(v, np.ndarray) or not isinstance(s, np.ndarray):
        raise TypeError("v and s must both be torch tensors or both numpy.ndarray")
    return np.full(shape, np.nan, dtype=v.dtype), np.full(shape[:-1], np.nan, dtype=np.float32)


def merge_state(v_a, s_a, v_b, s_b):
    """Merges two attention states (upstream's merge_state): v [n, H, D] f16, s [n, H] float32
    base-2 LSE. Returns (V, S)."""
    v_out, s_out = _states_out(v_a, s_a, v_a.shape)
    ts = [_Tensor.cached(x, n) for x, n in ((v_a, "v_a"), (s_a, "s_a"), (v_b, "v_b"), (s_b, "s_b"), (v_out, "v_out"), (s_out, "s_out"))]
    _check(_library().flashinfer_swift_merge_state(*[t.ref() for t in ts], _stream_of(v_a)))
    return v_out, s_out


def merge_state_in_place(v, s, v_other, s_other, mask=None):
    """Merges (v_other, s_other) into (v, s) in place (upstream's merge_state_in_place); with mask
    ([n] bool), positions whose mask is False are left unchanged. A CUDA mask is read by the kernel
    where it is (no copy to the host, capturable in a CUDA graph)."""
    ts = [_Tensor.cached(v, "v"), _Tensor.cached(s, "s"), _Tensor.cached(v_other, "v_other"), _Tensor.cached(s_other, "s_other")]
    if mask is None:
        _check(_library().flashinfer_swift_merge_state_in_place(*[t.ref() for t in ts], None, _stream_of(v)))
        return
    if _is_torch(mask):
        import torch
        m = mask.reshape(-1) if mask.dim() != 1 else mask
        if m.dtype not in (torch.bool, torch.uint8):
            m = m != 0
        m = m.contiguous()
    else:
        m = np.ascontiguousarray(np.asarray(mask) != 0).reshape(-1)
    if tuple(m.shape) != (v.shape[0],):
        raise ValueError(f"mask: shape {tuple(m.shape)}, expected ({v.shape[0]},)")
    tm = _index_cached(m, "mask")
    _check(_library().flashinfer_swift_merge_state_in_place_mask_tensor(*[t.ref() for t in ts], tm.ref(), _stream_of(v)))


def merge_states(v, s):
    """Merges S states per position (upstream's merge_states): v [n, S, H, D], s [n, S, H].
    Returns (V [n, H, D], S [n, H])."""
    if v.ndim != 4:
        raise ValueError(f"v: expected 4 dimensions [n, num_states, H, D], got {v.ndim}")
    v_out, s_out = _states_out(v, s, (v.shape[0], v.shape[2], v.shape[3]))
    ts = [_Tensor.cached(v, "v"), _Tensor.cached(s, "s"), _Tensor.cached(v_out, "v_out"), _Tensor.cached(s_out, "s_out")]
    _check(_library().flashinfer_swift_merge_states(*[t.ref() for t in ts], _stream_of(v)))
    return v_out, s_out


# ---- norms, activations, RoPE (flashinfer.norm / .activation / .rope) ----

def _stream_of(x):
    """torch.cuda.current_stream() of a CUDA torch tensor's device (as a CUstream), else None."""
    if _is_torch(x) and x.is_cuda:
        import torch
        return ctypes.c_void_p(_raw_stream(x.device))
    return None


def _empty(shape, like):
    """A new tensor of `like`'s dtype and device: torch for torch, a NaN-filled NumPy array otherwise."""
    if _is_torch(like):
        import torch
        return torch.empty(tuple(shape), dtype=like.dtype, device=like.device)
    dt = np.asarray(like).dtype
    return np.full(tuple(shape), np.nan, dtype=dt) if dt.kind == "f" else np.zeros(tuple(shape), dtype=dt)


def _copy(x):
    return x.clone() if _is_torch(x) else np.array(x, copy=True)


_NORM_RMS, _NORM_GEMMA_RMS, _NORM_FUSED_ADD_RMS, _NORM_GEMMA_FUSED_ADD_RMS, _NORM_LAYER = range(5)


def _norm(kind, input, residual, weight, bias, out, eps):
    ts = [_Tensor.cached(x, n) if x is not None else None
          for x, n in ((input, "input"), (residual, "residual"), (weight, "weight"), (bias, "beta"), (out, "out"))]
    _check(_library().flashinfer_swift_norm(kind, *[t.ref() if t is not None else None for t in ts], float(eps),
                                            _stream_of(input)))


def rmsnorm(input, weight, eps=1e-6, out=None, enable_pdl=None):
    """Root-mean-square normalization over the last axis (upstream's rmsnorm):
    out = input / sqrt(mean(input^2) + eps) * weight. Returns out (a new tensor when None)."""
    out = _empty(input.shape, input) if out is None else out
    _norm(_NORM_RMS, input, None, weight, None, out, eps)
    return out


def gemma_rmsnorm(input, weight, eps=1e-6, out=None, enable_pdl=None):
    """Gemma's RMSNorm: input / sqrt(mean(input^2) + eps) * (1 + weight)."""
    out = _empty(input.shape, input) if out is None else out
    _norm(_NORM_GEMMA_RMS, input, None, weight, None, out, eps)
    return out


def fused_add_rmsnorm(input, residual, weight, eps=1e-6, enable_pdl=None):
    """In place (upstream's fused_add_rmsnorm): residual += input, then input = rmsnorm(residual).
    Returns None."""
    _norm(_NORM_FUSED_ADD_RMS, input, residual, weight, None, None, eps)


def gemma_fused_add_rmsnorm(input, residual, weight, eps=1e-6, enable_pdl=None):
    """In place: residual += input, then input = gemma_rmsnorm(residual). Returns None."""
    _norm(_NORM_GEMMA_FUSED_ADD_RMS, input, residual, weight, None, None, eps)


def layernorm(input, gemma, beta, eps=1e-6):
    """LayerNorm over the last axis (upstream's layernorm; `gemma` is upstream's name for gamma):
    (input - mean) / sqrt(var + eps) * gemma + beta, biased variance. Returns a new tensor."""
    out = _empty(input.shape, input)
    _norm(_NORM_LAYER, input, None, gemma, beta, out, eps)
    return out


def _activation(kind, input, out):
    if out is None:
        out = _empty(tuple(input.shape[:-1]) + (input.shape[-1] // 2,), input)
    ti, to = _Tensor.cached(input, "input"), _Tensor.cached(out, "out")
    _check(_library().flashinfer_swift_activation(kind, ti.ref(), to.ref(), _stream_of(input)))
    return out


def silu_and_mul(input, out=None, enable_pdl=None):
    """silu(input[..., :d]) * input[..., d:] for input [..., 2d] (upstream's silu_and_mul)."""
    return _activation(0, input, out)


def gelu_and_mul(input, out=None, enable_pdl=None):
    """gelu(input[..., :d]) * input[..., d:], the exact (erf) GELU."""
    return _activation(1, input, out)


def gelu_tanh_and_mul(input, out=None, enable_pdl=None):
    """gelu_tanh(input[..., :d]) * input[..., d:], the tanh-approximated GELU."""
    return _activation(2, input, out)


def _rope_options(rotary_dim, interleave, rope_scale, rope_theta, llama31=None):
    if llama31 is None:
        return _RopeOptions(int(rotary_dim or 0), int(bool(interleave)), float(rope_scale), float(rope_theta), 0, 0.0, 0.0, 0.0)
    low, high, old = llama31
    return _RopeOptions(int(rotary_dim or 0), int(bool(interleave)), float(rope_scale), float(rope_theta), 1, float(low),
                        float(high), float(old))


def _rope(q, k, inplace, opts, indptr=None, offsets=None, pos_ids=None):
    q_out = k_out = None
    if not inplace:
        q_out, k_out = _empty(q.shape, q), _empty(k.shape, k)
    tq, tk = _Tensor.cached(q, "q"), _Tensor.cached(k, "k")
    tqo = _Tensor.cached(q_out, "q_out") if q_out is not None else None
    tko = _Tensor.cached(k_out, "k_out") if k_out is not None else None
    if indptr is not None:
        ip, keep_ip = _indices(indptr, "indptr")
        off, keep_off = _indices(offsets, "offsets")
        idx = (ip.ref(), off.ref(), None)
    else:
        pos, keep_pos = _indices(pos_ids, "pos_ids", allow64=True)
        idx = (None, None, pos.ref())
    _check(_library().flashinfer_swift_rope_tensors(tq.ref(), tk.ref(), tqo.ref() if tqo else None, tko.ref() if tko else None,
                                                    *idx, ctypes.byref(opts), _stream_of(q)))
    return None if inplace else (q_out, k_out)


def apply_rope(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=1, rope_theta=1e4):
    """RoPE on ragged q [nnz, Hq, D] / k [nnz, Hk, D] (upstream's apply_rope): request b owns rows
    indptr[b]:indptr[b+1], row indptr[b] + j at position offsets[b] + j. Returns (q_rope, k_rope).
    CUDA indptr / offsets (int32) are read by the kernel where they are (no copy to the host, no
    wait, capturable in a CUDA graph; as upstream, not validated: rows outside indptr[0]:indptr[-1]
    are not written); host ones are validated first."""
    return _rope(q, k, False, _rope_options(rotary_dim, interleave, rope_scale, rope_theta), indptr, offsets)


def apply_rope_inplace(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=1, rope_theta=1e4):
    """apply_rope writing q and k in place. Returns None."""
    _rope(q, k, True, _rope_options(rotary_dim, interleave, rope_scale, rope_theta), indptr, offsets)


def apply_rope_pos_ids(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=1, rope_theta=1e4):
    """RoPE with row t at position pos_ids[t] (upstream's apply_rope_pos_ids; int32 or int64; a CUDA
    tensor is read by the kernel where it is: no copy to the host, capturable). Returns (q_rope, k_rope)."""
    return _rope(q, k, False, _rope_options(rotary_dim, interleave, rope_scale, rope_theta), pos_ids=pos_ids)


def apply_rope_pos_ids_inplace(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=1, rope_theta=1e4):
    """apply_rope_pos_ids writing q and k in place. Returns None."""
    _rope(q, k, True, _rope_options(rotary_dim, interleave, rope_scale, rope_theta), pos_ids=pos_ids)


def apply_llama31_rope(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=8, rope_theta=5e5,
                       low_freq_factor=1, high_freq_factor=4, old_context_len=8192):
    """apply_rope with Llama 3.1's frequency scaling. Returns (q_rope, k_rope)."""
    opts = _rope_options(rotary_dim, interleave, rope_scale, rope_theta, (low_freq_factor, high_freq_factor, old_context_len))
    return _rope(q, k, False, opts, indptr, offsets)


def apply_llama31_rope_inplace(q, k, indptr, offsets, rotary_dim=None, interleave=False, rope_scale=8, rope_theta=5e5,
                               low_freq_factor=1, high_freq_factor=4, old_context_len=8192):
    """apply_llama31_rope writing q and k in place. Returns None."""
    opts = _rope_options(rotary_dim, interleave, rope_scale, rope_theta, (low_freq_factor, high_freq_factor, old_context_len))
    _rope(q, k, True, opts, indptr, offsets)


def apply_llama31_rope_pos_ids(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=8, rope_theta=5e5,
                               low_freq_factor=1, high_freq_factor=4, old_context_len=8192):
    """apply_rope_pos_ids with Llama 3.1's frequency scaling. Returns (q_rope, k_rope)."""
    opts = _rope_options(rotary_dim, interleave, rope_scale, rope_theta, (low_freq_factor, high_freq_factor, old_context_len))
    return _rope(q, k, False, opts, pos_ids=pos_ids)


def apply_llama31_rope_pos_ids_inplace(q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=8, rope_theta=5e5,
                                       low_freq_factor=1, high_freq_factor=4, old_context_len=8192):
    """apply_llama31_rope_pos_ids writing q and k in place. Returns None."""
    opts = _rope_options(rotary_dim, interleave, rope_scale, rope_theta, (low_freq_factor, high_freq_factor, old_context_len))
    _rope(q, k, True, opts, pos_ids=pos_ids)


def apply_rope_with_cos_sin_cache_inplace(positions, query, key, head_size, cos_sin_cache, is_neox=True):
    """The vLLM / SGLang form, in place (upstream's apply_rope_with_cos_sin_cache_inplace): query
    [nnz, Hq * head_size], key [nnz, Hk * head_size], rotated by cos_sin_cache [max_position,
    rotary_dim] float32 (cos, then sin) at positions [nnz] (int32 or int64). CUDA positions are read
    by the kernel where they are (no copy to the host, no wait, capturable in a CUDA graph; as
    upstream, not validated: a position outside the cache gives NaN rows); host ones are checked
    against the cache first. Returns None."""
    pos, keep = _indices(positions, "positions", allow64=True)
    tq, tk, tc = _Tensor.cached(query, "query"), _Tensor.cached(key, "key"), _Tensor.cached(cos_sin_cache, "cos_sin_cache")
    _check(_library().flashinfer_swift_rope_cos_sin_cache_tensors(pos.ref(), tq.ref(), tk.ref(), int(head_size), tc.ref(),
                                                                  int(bool(is_neox)), _stream_of(query)))


def apply_rope_with_cos_sin_cache(positions, query, key, head_size, cos_sin_cache, is_neox=True):
    """apply_rope_with_cos_sin_cache_inplace on copies of query and key. Returns (query_rope, key_rope)."""
    q, k = _copy(query), _copy(key)
    apply_rope_with_cos_sin_cache_inplace(positions, q, k, head_size, cos_sin_cache, is_neox)
    return q, k


# ---- sampling (flashinfer.sampling) ----

_FILTER_NONE, _FILTER_TOP_K, _FILTER_TOP_P, _FILTER_MIN_P, _FILTER_TOP_K_TOP_P, _FILTER_FROM_LOGITS = range(6)
_ORDERS = {"top_k_first": 0, "joint": 1}
_U64 = (1 << 64) - 1


def _index_tensor(x, name):
    """A DLTensor over an int32 / bool / uint8 NumPy array or torch tensor (the samplers' outputs), or
    an int64 / uint64 one (seed and offset tensors)."""
    if _is_torch(x):
        import torch
        codes = {torch.int32: (0, 32), torch.bool: (6, 8), torch.uint8: (1, 8), torch.int64: (0, 64)}
        if hasattr(torch, "uint64"):
            codes[torch.uint64] = (1, 64)
        dt, shape, strides, data, device = x.dtype, tuple(x.shape), x.stride(), x.data_ptr(), x.device
    else:
        codes = {np.dtype(np.int32): (0, 32), np.dtype(np.bool_): (6, 8), np.dtype(np.uint8): (1, 8),
                 np.dtype(np.int64): (0, 64), np.dtype(np.uint64): (1, 64)}
        dt, shape, data, device = x.dtype, x.shape, x.ctypes.data, None
        strides = tuple(st // x.itemsize for st in x.strides)
    if dt not in codes:
        raise TypeError(f"{name}: dtype {dt} is not supported (int32 samples; bool or uint8 valid; int64 or uint64 seed/offset)")
    t = _Tensor.__new__(_Tensor)
    t.array = x
    n = len(shape)
    t.shape = (ctypes.c_int64 * n)(*shape)
    t.strides = (ctypes.c_int64 * n)(*strides)
    dl = _DLDevice(_kDLCUDA, device.index or 0) if device is not None and device.type == "cuda" else _DLDevice(_kDLCPU, 0)
    t.t = _DLTensor(ctypes.c_void_p(data), dl, n, _DLDataType(*codes[dt], 1), t.shape, t.strides, 0)
    t._ref = ctypes.byref(t.t)
    return t


def _index_cached(x, name):
    """_index_tensor through the descriptor cache (_Tensor.cached's rule: the key is everything the
    DLTensor holds, and a cached descriptor keeps no array alive)."""
    if _is_torch(x):
        key = ("index", x.data_ptr(), x.shape, x.stride(), x.dtype)
    else:
        key = ("index", x.ctypes.data, x.shape, x.strides, x.dtype.str)
    return _index_by_key(key, x, name)


def _index_by_key(key, x, name):
    """The cached _index_tensor of x under key (everything its DLTensor holds), made on a miss
    without keeping x alive."""
    t = _DL_CACHE.get(key)
    if t is None:
        t = _index_tensor(x, name)
        t.array = None
        if len(_DL_CACHE) >= 512:
            _DL_CACHE.clear()
        _DL_CACHE[key] = t
    return t


def _row_param(x, name):
    """A per-row parameter for the C ABI: a Python / NumPy scalar (every row); a 1-D array or CPU
    tensor (host values, one per row); or a CUDA tensor, handed to the kernel as it is — int32 for
    top_k, float32 otherwise (another dtype is converted on the current stream first) — and read when
    the kernel runs: no copy to the host, so the call can be captured in a CUDA graph (as upstream,
    the values are then not validated). Returns the struct and what must stay alive through the call."""
    if x is None:
        raise TypeError(f"{name}: a number or a per-row tensor is required")
    if _is_torch(x) and x.device.type == "cuda" and x.dim() > 0:
        import torch
        want = torch.int32 if name == "top_k" else torch.float32
        t = x.reshape(-1)
        if t.dtype != want:
            t = t.to(want)
        t = t.contiguous()
        dl = _index_tensor(t, name) if want == torch.int32 else _Tensor(t, name)
        return _RowParam(0.0, None, 0, ctypes.pointer(dl.t)), (t, dl)
    if _is_torch(x) or isinstance(x, (np.ndarray, list, tuple)):
        a = np.ascontiguousarray(_numpy(x), dtype=np.float64)
        if a.ndim == 0:
            return _RowParam(float(a), None, 0, None), None
        a = a.reshape(-1)
        return _RowParam(0.0, a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), a.shape[0], None), a
    return _RowParam(float(x), None, 0, None), None


class SamplingGenerator:
    """A CUDA-graph-safe Philox generator for the samplers: a 2-element int64 tensor `state` =
    [seed, offset] where the samplers run (a torch tensor on `device`, or a NumPy array for CPU
    inputs). Pass it as `generator=`: the kernel reads (seed, offset) from `state` when it runs, and
    the offset is then advanced on the same stream by the call's increment (batch_size, or
    batch_size * 32 for the rejection samplers, those at least 64, rounded up to a multiple of 4).
    A call captured into a CUDA graph therefore draws fresh numbers at every replay, and a call
    with the generator at (s, o) draws exactly what `seed=s, offset=o` draws.

    This is flashinfer_swift's own type: upstream's `generator=` is a torch.Generator (read and
    advanced on the host, so a captured graph replays the same numbers), and upstream's tensor
    form (`seed=`/`offset=` as int64 tensors) is read but never advanced by the call. Both are
    accepted here as well.
    """

    def __init__(self, seed, offset=0, device=None):
        s, o = _signed64(seed), _signed64(offset)
        if device is None:
            self.state = np.array([s, o], dtype=np.int64)
        else:
            import torch
            self.state = torch.tensor([s, o], dtype=torch.int64, device=device)

    @property
    def device(self):
        return self.state.device if _is_torch(self.state) else None

    def get_state(self):
        """(seed, offset) as unsigned ints (a CUDA state is copied back: this waits for its stream)."""
        s, o = (int(v) for v in (self.state.tolist() if _is_torch(self.state) else self.state))
        return s & _U64, o & _U64

    def set_state(self, seed, offset=0):
        """Sets (seed, offset) (a CUDA state in the current stream's order)."""
        if _is_torch(self.state):
            import torch
            self.state.copy_(torch.tensor([_signed64(seed), _signed64(offset)], dtype=torch.int64))
        else:
            self.state[:] = [_signed64(seed), _signed64(offset)]
        return self

    def _words(self):
        return self.state[0:1], self.state[1:2]


def _signed64(v):
    v = int(v) & _U64
    return v - (1 << 64) if v >= 1 << 63 else v


def _seed_tensors(probs, seed, offset):
    """Upstream's tensor form: seed and offset both 1-D int64 / uint64 tensors of one element, where
    probs is (a per-request length of batch_size is not supported here). None when both are ints."""
    if not isinstance(seed, (np.ndarray,)) and not _is_torch(seed) and not isinstance(offset, np.ndarray) and not _is_torch(offset):
        return None
    if (_is_torch(seed) or isinstance(seed, np.ndarray)) != (_is_torch(offset) or isinstance(offset, np.ndarray)):
        raise ValueError("seed and offset must both be tensors or both be scalars")
    for t, name in ((seed, "seed"), (offset, "offset")):
        if t.ndim != 1:
            raise ValueError(f"{name} tensor must be 1D")
        if t.shape[0] != 1:
            raise ValueError(f"{name} tensor length must be 1 (per-request seeds and offsets, length batch_size, "
                             f"are not supported by flashinfer_swift)")
        if _is_torch(probs) and (not _is_torch(t) or t.device != probs.device):
            raise ValueError(f"{name} tensor must be on {probs.device}")
    return seed, offset


def _seed_offset(probs, generator, seed, offset, increment):
    """The (seed, offset) of a sampler's Philox streams (row b: curand_init(seed, b, offset)).

    - `seed` given: (seed, offset or 0); the generator is neither read nor advanced.
    - a CUDA torch.Generator (or, for CUDA probs without one, torch.cuda.default_generators[device]):
      upstream's rule: its Philox state's (seed, offset), the offset advanced by
      round_up(increment, 4) (increment = batch_size, or batch_size * 32 for the rejection samplers),
      and the advanced offset used, so successive calls draw fresh numbers.
    - a CPU torch.Generator: seed = one int63 drawn from it (advancing it), offset 0.
    - a numpy.random.Generator: seed = generator.integers(2**63), offset 0.
    - neither, with CPU probs: a seed drawn from the global RNG (torch's default generator for torch
      tensors, numpy.random otherwise), offset 0: reproducible under torch.manual_seed / np.random.seed.
    """
    if seed is not None:
        return int(seed) & _U64, int(offset or 0) & _U64
    if generator is None and _is_torch(probs) and probs.is_cuda:
        import torch
        generator = torch.cuda.default_generators[probs.device.index if probs.device.index is not None
                                                  else torch.cuda.current_device()]
    if generator is not None:
        if isinstance(generator, np.random.Generator):
            return int(generator.integers(0, 2 ** 63)), 0
        import torch
        if generator.device.type == "cuda":
            state = generator.get_state()
            s, o = (int(v) for v in state.view(torch.int64))
            o += (int(increment) + 3) // 4 * 4
            generator.set_state(torch.tensor([s, o], dtype=torch.int64).view(torch.uint8))
            return s & _U64, o & _U64
        return int(torch.randint(0, 2 ** 63 - 1, (1,), generator=generator, dtype=torch.int64)), 0
    if _is_torch(probs):
        import torch
        return int(torch.randint(0, 2 ** 63 - 1, (1,), dtype=torch.int64)), 0
    return int(np.random.randint(0, 2 ** 63 - 1, dtype=np.int64)), 0


def _philox_source(x, name, generator, seed, offset, increment):
    """Where a sampler call takes its Philox (seed, offset): (words, advance, None, None) for a
    SamplingGenerator's state words (advanced by the library) or upstream's seed / offset tensors
    (read, not advanced); else (None, 0, seed, offset) by value (`_seed_offset`, which advances a
    torch generator by `increment` rounded up to 4)."""
    if isinstance(generator, SamplingGenerator):
        if _is_torch(x) != _is_torch(generator.state) or (_is_torch(x) and generator.device != x.device):
            raise ValueError(f"generator: its state must be where {name} is ({x.device if _is_torch(x) else 'numpy, host'})")
        return generator._words(), 1, None, None
    words = _seed_tensors(x, seed, offset)
    if words is not None:
        return words, 0, None, None
    s, o = _seed_offset(x, generator, seed, offset, increment)
    return None, 0, s, o


def _sample(probs, filter_kind, top_k, top_p, min_p, order, indices, generator, check_nan, seed, offset, return_valid, rounds):
    if indices is not None:
        probs = probs.index_select(0, indices.long()) if _is_torch(probs) else probs[_numpy(indices)]
    if check_nan:
        nan = bool(probs.isnan().any()) if _is_torch(probs) else bool(np.isnan(probs).any())
        if nan:
            raise ValueError("Input probs contains NaN.")
    batch = probs.shape[0]
    words, advance, s, o = _philox_source(probs, "probs", generator, seed, offset, batch * rounds)
    if _is_torch(probs):
        import torch
        samples = torch.empty(batch, dtype=torch.int32, device=probs.device)
        valid = torch.empty(batch, dtype=torch.bool, device=probs.device) if return_valid else None
    else:
        samples = np.zeros(batch, np.int32)
        valid = np.zeros(batch, np.bool_) if return_valid else None
    params = [_row_param(x, n) if x is not None else (None, None) for x, n in ((top_k, "top_k"), (top_p, "top_p"), (min_p, "min_p"))]
    tp, ts = _Tensor.cached(probs, "probs"), _index_cached(samples, "samples")
    tv = _index_cached(valid, "valid") if valid is not None else None
    rows = [ctypes.byref(p) if p is not None else None for p, _ in params]
    order_code = _ORDERS.get(order, -1) if order is not None else 0
    if words is None:
        _check(_library().flashinfer_swift_sampling(tp.ref(), filter_kind, order_code, *rows, s, o, ts.ref(),
                                                    tv.ref() if tv else None, _stream_of(probs)))
    else:
        tw = [_index_tensor(w, n) for w, n in zip(words, ("seed", "offset"))]
        _check(_library().flashinfer_swift_sampling_seed_tensors(tp.ref(), filter_kind, order_code, *rows, tw[0].ref(), tw[1].ref(),
                                                                 advance, ts.ref(), tv.ref() if tv else None, _stream_of(probs)))
    if indices is not None and _is_torch(indices) and indices.dtype != samples.dtype:
        samples = samples.to(indices.dtype)
    return (samples, valid) if return_valid else samples


# Upstream's samplers. Seeds: pass seed= (and offset=) for explicit, reproducible streams (ints, or,
# as upstream, 1-element int64 / uint64 tensors read when the call runs and never advanced by it);
# generator=SamplingGenerator(...) for a device state read and advanced by each call (CUDA-graph
# safe); otherwise they come from a torch / numpy `generator` or the default one (see _seed_offset,
# advanced on the host). `indices` gathers the rows of
# `probs` each output draws from; `deterministic` is accepted and ignored (always deterministic).

def sampling_from_probs(probs, indices=None, deterministic=True, generator=None, check_nan=False, seed=None, offset=None,
                        return_valid=False):
    """A token per row of probs [batch_size, vocab_size], token j with probability probs[b, j].
    Returns samples [batch_size] int32 (and, with return_valid, valid [batch_size] bool: False where
    the row had no positive probability; its sample is 0)."""
    return _sample(probs, _FILTER_NONE, None, None, None, None, indices, generator, check_nan, seed, offset, return_valid, 1)


def top_p_sampling_from_probs(probs, top_p, indices=None, deterministic=True, generator=None, check_nan=False, seed=None,
                              offset=None, return_valid=False):
    """Top-p (nucleus) sampling: from the smallest set of tokens whose mass reaches top_p (a float or
    a per-row tensor), renormalized."""
    return _sample(probs, _FILTER_TOP_P, None, top_p, None, None, indices, generator, check_nan, seed, offset, return_valid, 32)


def top_k_sampling_from_probs(probs, top_k, indices=None, deterministic=True, generator=None, check_nan=False, seed=None,
                              offset=None, return_valid=False):
    """Top-k sampling: from each row's top_k (an int or a per-row tensor) probabilities, renormalized."""
    return _sample(probs, _FILTER_TOP_K, top_k, None, None, None, indices, generator, check_nan, seed, offset, return_valid, 32)


def min_p_sampling_from_probs(probs, min_p, indices=None, deterministic=True, generator=None, check_nan=False, seed=None,
                              offset=None, return_valid=False):
    """Min-p sampling: from the tokens with p >= min_p * max(p), renormalized."""
    return _sample(probs, _FILTER_MIN_P, None, None, min_p, None, indices, generator, check_nan, seed, offset, return_valid, 1)


def top_k_top_p_sampling_from_probs(probs, top_k, top_p, indices=None, filter_apply_order="top_k_first", deterministic=True,
                                    generator=None, check_nan=False, seed=None, offset=None, return_valid=False):
    """Top-k then top-p ("top_k_first": top-p on the top-k renormalized row) or both tests on the
    original row ("joint")."""
    if filter_apply_order not in _ORDERS:
        raise ValueError(f"filter_apply_order {filter_apply_order!r} is not one of {sorted(_ORDERS)}")
    return _sample(probs, _FILTER_TOP_K_TOP_P, top_k, top_p, None, filter_apply_order, indices, generator, check_nan, seed,
                   offset, return_valid, 32)


def sampling_from_logits(logits, indices=None, deterministic=True, generator=None, check_nan=False, seed=None, offset=None,
                         return_valid=False):
    """A token per row of logits [batch_size, vocab_size] (float32, float16 or bfloat16), distributed
    as softmax(logits): upstream's one-pass Gumbel-max sampler (argmax of logit + Gumbel noise; no
    softmax is formed). Row b's noise comes from Philox stream (seed, b, offset); a generator's
    offset advances by batch_size * vocab_size (rounded up to 4), as upstream's."""
    return _sample(logits, _FILTER_FROM_LOGITS, None, None, None, None, indices, generator, check_nan, seed, offset,
                   return_valid, int(logits.shape[1]) if len(logits.shape) == 2 else 1)


def top_k_top_p_sampling_from_logits(logits, top_k, top_p, indices=None, filter_apply_order="top_k_first",
                                     deterministic=True, generator=None, check_nan=False, seed=None, offset=None,
                                     return_valid=False):
    """Top-k / top-p sampling from logits, composed as upstream composes it: "top_k_first":
    top_k_mask_logits -> softmax -> top_p_sampling_from_probs; "joint": softmax ->
    top_k_top_p_sampling_from_probs(filter_apply_order="joint"). The draw is the probability
    sampler's (seed, generator and offset rules as there)."""
    if filter_apply_order == "top_k_first":
        probs = softmax(top_k_mask_logits(logits, top_k))
        return top_p_sampling_from_probs(probs, top_p, indices, deterministic, generator, check_nan, seed, offset,
                                         return_valid)
    if filter_apply_order == "joint":
        return top_k_top_p_sampling_from_probs(softmax(logits), top_k, top_p, indices, "joint", deterministic, generator,
                                               check_nan, seed, offset, return_valid)
    raise ValueError(f"filter_apply_order {filter_apply_order!r} is not one of ['joint', 'top_k_first']")


def chain_speculative_sampling(draft_probs, draft_token_ids, target_probs, maybe_output_accepted_token_num=None,
                               maybe_output_emitted_draft_token_num=None, deterministic=True, generator=None, seed=None,
                               offset=None):
    """Speculative decoding's verification (upstream's chain_speculative_sampling): draft_probs
    [B, n, V], draft_token_ids [B, n], target_probs [B, n + 1, V]. Each draft token d at position i
    is accepted when u * p_draft(d) < p_target(d); at the first rejection a token is drawn from
    relu(p_target - p_draft) (after n acceptances, the bonus token from p_target). Returns
    (output_token_ids [B, n + 1] int32, -1 after the drawn token; accepted [B]; emitted [B]); with
    maybe_output_* given, the counts are added to them in place and they are returned, as
    upstream (int32 contiguous [B] tensors on draft_probs' device are added to by the kernel itself;
    others after it). Seeds as the samplers (row b: Philox (seed, b, offset); a torch generator or a
    SamplingGenerator advances by B * (n + 1), rounded up to 4; seed / offset may be upstream's
    1-element tensors, read when the call runs). A CUDA call runs on the current stream without
    waiting for it, so it can be captured into a CUDA graph (with seed tensors or a
    SamplingGenerator)."""
    if len(draft_probs.shape) != 3:
        raise ValueError(f"draft_probs: shape {tuple(draft_probs.shape)}, expected [batch, num_draft, vocab]")
    b, n = int(draft_probs.shape[0]), int(draft_probs.shape[1])
    words, advance, s, o = _philox_source(draft_probs, "draft_probs", generator, seed, offset, b * (n + 1))
    if _is_torch(draft_probs):
        import torch
        dev = draft_probs.device
        ids = torch.as_tensor(draft_token_ids).to(device=dev, dtype=torch.int32).contiguous()
        out = torch.empty((b, n + 1), dtype=torch.int32, device=dev)

        def counts(given):
            if (given is not None and _is_torch(given) and given.dtype == torch.int32 and given.device == dev
                    and tuple(given.shape) == (b,) and given.is_contiguous()):
                return given, False
            return torch.zeros(b, dtype=torch.int32, device=dev), given is not None
    else:
        ids = np.ascontiguousarray(_numpy(draft_token_ids), dtype=np.int32)
        out = np.empty((b, n + 1), np.int32)

        def counts(given):
            if (isinstance(given, np.ndarray) and given.dtype == np.int32 and given.shape == (b,)
                    and given.flags["C_CONTIGUOUS"] and given.flags["WRITEABLE"]):
                return given, False
            return np.zeros(b, np.int32), given is not None
    (acc, add_acc), (emi, add_emi) = counts(maybe_output_accepted_token_num), counts(maybe_output_emitted_draft_token_num)
    td, ti, tt = (_Tensor.cached(draft_probs, "draft_probs"), _index_cached(ids, "draft_token_ids"),
                  _Tensor.cached(target_probs, "target_probs"))
    outs = (_index_tensor(out, "output_token_ids"), _index_tensor(acc, "output_accepted_token_num"),
            _index_tensor(emi, "output_emitted_draft_token_num"))
    refs = [t.ref() for t in outs] + [_stream_of(draft_probs)]
    if words is None:
        _check(_library().flashinfer_swift_chain_speculative_sampling(td.ref(), ti.ref(), tt.ref(), s, o, *refs))
    else:
        tw = [_index_tensor(w, name) for w, name in zip(words, ("seed", "offset"))]
        _check(_library().flashinfer_swift_chain_speculative_sampling_seed_tensors(
            td.ref(), ti.ref(), tt.ref(), tw[0].ref(), tw[1].ref(), advance, *refs))
    if add_acc:
        maybe_output_accepted_token_num += _like(acc, maybe_output_accepted_token_num)
        acc = maybe_output_accepted_token_num
    if add_emi:
        maybe_output_emitted_draft_token_num += _like(emi, maybe_output_emitted_draft_token_num)
        emi = maybe_output_emitted_draft_token_num
    return out, acc, emi


def _like(x, target):
    """x (an int32 count array / tensor) as target's kind, device and dtype, to add into it."""
    if _is_torch(target):
        import torch
        return torch.as_tensor(x).to(device=target.device, dtype=target.dtype)
    return np.asarray(x.cpu().numpy() if _is_torch(x) else x).astype(np.asarray(target).dtype)


def _sampling_op(op, x, param, name):
    out = _empty(x.shape, x)
    p, keep = _row_param(param, name) if param is not None else (None, None)
    tx, to = _Tensor.cached(x, "input"), _Tensor.cached(out, "out")
    _check(_library().flashinfer_swift_sampling_op(op, tx.ref(), ctypes.byref(p) if p is not None else None, to.ref(),
                                                   _stream_of(x)))
    del keep
    return out


def top_k_renorm_probs(probs, top_k):
    """Each row's top_k probabilities (ties at the k-th kept), the rest 0, renormalized (probs' dtype)."""
    return _sampling_op(0, probs, top_k, "top_k")


def top_p_renorm_probs(probs, top_p):
    """Each row's nucleus of mass top_p (ties kept), the rest 0, renormalized."""
    return _sampling_op(1, probs, top_p, "top_p")


def top_k_mask_logits(logits, top_k):
    """Each row's top_k logits (ties at the k-th kept), the rest -inf."""
    return _sampling_op(2, logits, top_k, "top_k")


def softmax(logits, temperature=None, enable_pdl=None):
    """softmax(logits / temperature) per row; temperature None (1), a float or a per-row tensor."""
    return _sampling_op(3, logits, temperature, "temperature")
