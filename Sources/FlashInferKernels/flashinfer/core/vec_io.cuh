// 16-byte vector I/O: asynchronous global→shared copies (cp.async, sm_80+) and conversions
// between 8 half-precision elements (one uint4) and 8 floats.
#pragma once
#include <flashinfer/core/types.cuh>

namespace flashinfer {
namespace vec_io {

// Copies 16 bytes global → shared without blocking (cp.async.cg: cached in L2 only, with a
// 128-byte L2 prefetch). When !valid nothing is read and the 16 shared bytes are zero-filled
// (src-size 0), so masked rows never hold stale or NaN data; gmem_src must still be a mapped
// address.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes)
               : "memory");
}

// Closes the current group of cp.async copies (every thread commits one group per stage, even
// an empty one, so group counts stay uniform).
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

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
