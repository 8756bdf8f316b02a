// 16-byte vector I/O: conversions between 8 half-precision elements (one uint4) and 8 floats.
// (Asynchronous global → shared copies: core/cp_async.cuh.)
#pragma once
#include <flashinfer/core/types.cuh>

namespace flashinfer {
namespace vec_io {

// 8 elements of T packed in 16 bytes <-> 8 floats.
template <typename T> struct vec8;

template <> struct vec8<__half> {
  static __device__ __forceinline__ void to_float(const uint4& raw, float (&f)[8]) {
    const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h = *reinterpret_cast<const __half2*>(&w[i]);
      const float2 x = __half22float2(h);
      f[2 * i] = x.x;
      f[2 * i + 1] = x.y;
    }
  }
  static __device__ __forceinline__ uint4 from_float(const float (&f)[8]) {
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
      w[i] = *reinterpret_cast<const unsigned*>(&h);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
};

template <> struct vec8<__nv_bfloat16> {
  // bf16 → f32 is exact: the bf16 bits are the high half of the f32.
  static __device__ __forceinline__ void to_float(const uint4& raw, float (&f)[8]) {
    const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
  static __device__ __forceinline__ uint4 from_float(const float (&f)[8]) {
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __nv_bfloat162 h = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
      w[i] = *reinterpret_cast<const unsigned*>(&h);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
};

// fp8x2 (two bytes, element 0 in the low byte) -> 2 floats, through the hardware cvt to f16x2
// (sm_89+; exact: every e4m3 and e5m2 value is an f16 value).
template <__nv_fp8_interpretation_t I>
__device__ __forceinline__ float2 fp8x2_to_float2(unsigned short x) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(x), I);
  return __half22float2(*reinterpret_cast<const __half2*>(&h));
}

template <typename T> struct fp8_kind;
template <> struct fp8_kind<__nv_fp8_e4m3> { static constexpr __nv_fp8_interpretation_t value = __NV_E4M3; };
template <> struct fp8_kind<__nv_fp8_e5m2> { static constexpr __nv_fp8_interpretation_t value = __NV_E5M2; };

// 8 consecutive elements of a K/V row as one register chunk: 16 bytes of f16/bf16 (uint4) or 8
// bytes of fp8 (uint2). load, shfl_xor (a lane's partner chunk, for RoPE) and to_float.
template <typename T>
struct chunk8 {
  using Raw = uint4;
  static __device__ __forceinline__ Raw load(const T* p) { return *reinterpret_cast<const uint4*>(p); }
  static __device__ __forceinline__ Raw shfl_xor(const Raw& r, int mask) {
    return make_uint4(__shfl_xor_sync(0xffffffffu, r.x, mask), __shfl_xor_sync(0xffffffffu, r.y, mask),
                      __shfl_xor_sync(0xffffffffu, r.z, mask), __shfl_xor_sync(0xffffffffu, r.w, mask));
  }
  static __device__ __forceinline__ void to_float(const Raw& r, float (&f)[8]) { vec8<T>::to_float(r, f); }
};

template <typename T>
struct chunk8_fp8 {
  using Raw = uint2;
  static __device__ __forceinline__ Raw load(const T* p) { return *reinterpret_cast<const uint2*>(p); }
  static __device__ __forceinline__ Raw shfl_xor(const Raw& r, int mask) {
    return make_uint2(__shfl_xor_sync(0xffffffffu, r.x, mask), __shfl_xor_sync(0xffffffffu, r.y, mask));
  }
  static __device__ __forceinline__ void to_float(const Raw& r, float (&f)[8]) {
    const unsigned w[2] = {r.x, r.y};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float2 a = fp8x2_to_float2<fp8_kind<T>::value>((unsigned short)(w[i] & 0xffffu));
      const float2 b = fp8x2_to_float2<fp8_kind<T>::value>((unsigned short)(w[i] >> 16));
      f[4 * i] = a.x;
      f[4 * i + 1] = a.y;
      f[4 * i + 2] = b.x;
      f[4 * i + 3] = b.y;
    }
  }
};
template <> struct chunk8<__nv_fp8_e4m3> : chunk8_fp8<__nv_fp8_e4m3> {};
template <> struct chunk8<__nv_fp8_e5m2> : chunk8_fp8<__nv_fp8_e5m2> {};

template <typename T> struct is_half { static constexpr bool value = false; };
template <> struct is_half<__half> { static constexpr bool value = true; };

// 16 fp8 elements (one 16-byte chunk) -> 16 elements of T (f16 or bf16) in two 16-byte chunks,
// exactly (every fp8 value is an f16 and a bf16 value).
template <typename F8, typename T>
__device__ __forceinline__ void fp8x16_to(const uint4& raw, uint4& lo, uint4& hi) {
  const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
  unsigned out[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t((w[i] >> (16 * half)) & 0xffffu),
                                                        fp8_kind<F8>::value);
      if constexpr (is_half<T>::value) {
        out[2 * i + half] = *reinterpret_cast<const unsigned*>(&h);
      } else {
        const float2 x = __half22float2(*reinterpret_cast<const __half2*>(&h));
        const __nv_bfloat162 b = __floats2bfloat162_rn(x.x, x.y);
        out[2 * i + half] = *reinterpret_cast<const unsigned*>(&b);
      }
    }
  }
  lo = make_uint4(out[0], out[1], out[2], out[3]);
  hi = make_uint4(out[4], out[5], out[6], out[7]);
}

// 4 floats -> 4 elements of T (8 bytes) at an 8-byte aligned dst.
template <typename T>
__device__ __forceinline__ void store4(T* dst, const float (&f)[4]) {
  const float v[8] = {f[0], f[1], f[2], f[3], 0.f, 0.f, 0.f, 0.f};
  const uint4 w = vec8<T>::from_float(v);
  *reinterpret_cast<uint2*>(dst) = make_uint2(w.x, w.y);
}

}  // namespace vec_io
}  // namespace flashinfer
