// append_paged_kv_cache (FlashInfer >= 0.2 semantics): appended token t of request
// batch_indices[t] at position positions[t] goes to page kv_indices[kv_indptr[b] + pos / page_size],
// slot pos % page_size. Parallel per element (token, head, 16-byte vector of the cache).
//
// The indices may live in device memory the host never read (the ABI's and Python's CUDA index
// tensors, as upstream), so every token's target is checked against the parameters' bounds
// (append_target): a token whose request, position, page slot or page is out of range is skipped,
// never written outside the cache. Host-validated indices always pass.
//
// Two kernels:
// - append_paged_kv: append dtype == cache dtype, a pure copy, so the element type does not matter,
//   only its bytes.
// - append_paged_kv_quant<InT, OutT>: f16 / bf16 / f32 into an FP8 (e4m3 / e5m2) cache; each element
//   is stored as the FP8 code of x / scale rounded to nearest (ties to even) from the exact quotient,
//   saturating to the largest finite value (inf too), NaN -> 0x7F: the CPU's
//   `quantize(_:to:scale:)` (Tensor/FP8Quantization.swift) bit for bit.
#pragma once
#include <flashinfer/core/types.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using AppendPagedKVParams = ::FIAppendPagedKVParams;  // flashinfer/params.h

// Token t's page and slot; false when its request, position, page slot or page is out of range.
__device__ __forceinline__ bool append_target(const AppendPagedKVParams& p, int t, int& page, int& slot) {
  const int b = p.batch_indices[t], pos = p.positions[t];
  if (b < 0 || b >= p.batch_size || pos < 0) return false;
  const int lo = p.kv_indptr[b], hi = p.kv_indptr[b + 1];
  const long long idx = (long long)lo + pos / p.page_size;  // 64-bit: a huge position must not wrap below hi
  if (lo < 0 || hi > p.num_indices || idx >= hi) return false;
  page = p.kv_indices[idx];
  slot = pos % p.page_size;
  return page >= 0 && page < p.num_pages;
}

__device__ __forceinline__ void append_paged_kv(const AppendPagedKVParams& p) {
  const int64 per_token = int64(p.num_heads) * p.vecs_per_head;
  const int64 total = per_token * p.nnz;
  for (int64 i = int64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64(gridDim.x) * blockDim.x) {
    const int t = int(i / per_token);
    const int rem = int(i % per_token);
    const int h = rem / p.vecs_per_head, vec = rem % p.vecs_per_head;
    int page, slot;
    if (!append_target(p, t, page, slot)) continue;
    const char* ks = static_cast<const char*>(p.append_k) + t * p.ak_stride_n + h * p.ak_stride_h + vec * 16;
    const char* vs = static_cast<const char*>(p.append_v) + t * p.av_stride_n + h * p.av_stride_h + vec * 16;
    char* kd = static_cast<char*>(p.k_cache) + page * p.kc_stride_page + slot * p.kc_stride_token + h * p.kc_stride_head + vec * 16;
    char* vd = static_cast<char*>(p.v_cache) + page * p.vc_stride_page + slot * p.vc_stride_token + h * p.vc_stride_head + vec * 16;
    *reinterpret_cast<uint4*>(kd) = *reinterpret_cast<const uint4*>(ks);
    *reinterpret_cast<uint4*>(vd) = *reinterpret_cast<const uint4*>(vs);
  }
}

// ---- quantization to FP8 ----

// Where vector `vec` (16 cache bytes) of head h of appended token t goes: byte offsets from k_cache / v_cache.
struct AppendSlot {
  int t, h, vec;
  long long k_off, v_off;  // bytes from k_cache / v_cache
  bool ok;                 // append_target: in range
};

__device__ __forceinline__ AppendSlot append_slot(const AppendPagedKVParams& p, int64 i, int64 per_token) {
  AppendSlot s;
  s.t = int(i / per_token);
  const int rem = int(i % per_token);
  s.h = rem / p.vecs_per_head;
  s.vec = rem % p.vecs_per_head;
  int page = 0, slot = 0;
  s.ok = append_target(p, s.t, page, slot);
  s.k_off = page * p.kc_stride_page + slot * p.kc_stride_token + s.h * p.kc_stride_head + s.vec * 16;
  s.v_off = page * p.vc_stride_page + slot * p.vc_stride_token + s.h * p.vc_stride_head + s.vec * 16;
  return s;
}

template <typename OutT> struct fp8_interpretation;
template <> struct fp8_interpretation<__nv_fp8_e4m3> { static constexpr __nv_fp8_interpretation_t value = __NV_E4M3; };
template <> struct fp8_interpretation<__nv_fp8_e5m2> { static constexpr __nv_fp8_interpretation_t value = __NV_E5M2; };

// x / s as a float rounded to odd: the quotient rounded toward zero, with its last mantissa bit set
// when it is inexact. A later round-to-nearest-even into a format with at least two fewer
// significand bits (FP8 keeps 3 or 2 of float's 23) then equals rounding the exact quotient once.
// (A correctly rounded x / s can land exactly on an FP8 midpoint that the exact quotient is not on,
// and then rounds to even where a single rounding would not: a double rounding.)
// Exactness test: float * float is exact in double (48 significant bits, no underflow), so the
// comparison is exact for every finite x and s. inf / NaN quotients (x inf or NaN) pass through:
// the conversion saturates inf and keeps NaN. An overflowing finite quotient is FLT_MAX (RZ), whose
// last bit is already set; an underflowing one becomes +-2^-149: both convert as the exact value would.
__device__ __forceinline__ float div_round_to_odd(float x, float s) {
  float q = __fdiv_rz(x, s);
  const unsigned int bits = __float_as_uint(q);
  if ((bits & 0x7f800000u) != 0x7f800000u && double(q) * double(s) != double(x)) q = __uint_as_float(bits | 1u);
  return q;
}

// 16 elements of InT at `src` (16-byte aligned) -> 16 FP8 codes of x / scale.
template <typename InT, typename OutT>
__device__ __forceinline__ uint4 quantize16(const char* src, float scale) {
  constexpr int kLoads = int(sizeof(InT));  // 16 elements * sizeof(InT) bytes, 16 bytes per load
  uint4 raw[kLoads];
#pragma unroll
  for (int i = 0; i < kLoads; ++i) raw[i] = reinterpret_cast<const uint4*>(src)[i];
  const InT* x = reinterpret_cast<const InT*>(raw);
  uint4 out;
  __nv_fp8x2_storage_t* o = reinterpret_cast<__nv_fp8x2_storage_t*>(&out);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float2 q = make_float2(div_round_to_odd(to_float(x[2 * i]), scale), div_round_to_odd(to_float(x[2 * i + 1]), scale));
    o[i] = __nv_cvt_float2_to_fp8x2(q, __NV_SATFINITE, fp8_interpretation<OutT>::value);  // .x in the low byte
  }
  return out;
}

// One thread per 16 cache bytes (16 elements): vecs_per_head = head_dim / 16.
template <typename InT, typename OutT>
__device__ __forceinline__ void append_paged_kv_quant(const AppendPagedKVParams& p) {
  const int64 per_token = int64(p.num_heads) * p.vecs_per_head;
  const int64 total = per_token * p.nnz;
  constexpr int kInBytes = 16 * int(sizeof(InT));
  for (int64 i = int64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64(gridDim.x) * blockDim.x) {
    const AppendSlot s = append_slot(p, i, per_token);
    if (!s.ok) continue;
    const char* ks = static_cast<const char*>(p.append_k) + s.t * p.ak_stride_n + s.h * p.ak_stride_h + s.vec * kInBytes;
    const char* vs = static_cast<const char*>(p.append_v) + s.t * p.av_stride_n + s.h * p.av_stride_h + s.vec * kInBytes;
    *reinterpret_cast<uint4*>(static_cast<char*>(p.k_cache) + s.k_off) = quantize16<InT, OutT>(ks, p.k_scale);
    *reinterpret_cast<uint4*>(static_cast<char*>(p.v_cache) + s.v_off) = quantize16<InT, OutT>(vs, p.v_scale);
  }
}

}  // namespace flashinfer
