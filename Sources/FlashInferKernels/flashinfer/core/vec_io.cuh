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

// 4 floats -> 4 elements of T (8 bytes) at an 8-byte aligned dst.
template <typename T>
__device__ __forceinline__ void store4(T* dst, const float (&f)[4]) {
  const float v[8] = {f[0], f[1], f[2], f[3], 0.f, 0.f, 0.f, 0.f};
  const uint4 w = vec8<T>::from_float(v);
  *reinterpret_cast<uint2*>(dst) = make_uint2(w.x, w.y);
}

}  // namespace vec_io
}  // namespace flashinfer
