// Vector I/O for the memory-bound ops (norm.cuh, activation.cuh, rope.cuh): N consecutive elements
// of T moved in the widest transactions their alignment allows (16 bytes when N·sizeof(T) >= 16),
// converted to and from float registers. The launcher picks N (Backend/CUDA/CUDAOps.swift
// `opsVectorWidth`): the largest of 8, 4, 2, 1 that divides the row length, every row stride and
// every base address (in elements).
#pragma once
#include <flashinfer/core/types.cuh>

namespace flashinfer {
namespace ops {

// One load or store of BYTES bytes.
template <int BYTES> struct raw_bytes;
template <> struct raw_bytes<2> { using type = unsigned short; };
template <> struct raw_bytes<4> { using type = unsigned int; };
template <> struct raw_bytes<8> { using type = uint2; };
template <> struct raw_bytes<16> { using type = uint4; };

// N elements of T at an address aligned to min(16, N·sizeof(T)) bytes.
template <typename T, int N>
struct vec {
  static constexpr int kBytes = N * int(sizeof(T));
  static constexpr int kChunk = kBytes < 16 ? kBytes : 16;  // bytes per transaction
  static constexpr int kChunks = kBytes / kChunk;
  using Raw = typename raw_bytes<kChunk>::type;
  static_assert(kBytes % kChunk == 0, "N·sizeof(T) must be a power of two");

  union {
    Raw raw[kChunks];
    T e[N];
  };

  __device__ __forceinline__ void load(const T* p) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) raw[c] = reinterpret_cast<const Raw*>(p)[c];
  }
  // Through the read-only data path (data no thread writes during the kernel: weights).
  __device__ __forceinline__ void load_nc(const T* p) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) raw[c] = __ldg(reinterpret_cast<const Raw*>(p) + c);
  }
  __device__ __forceinline__ void store(T* p) const {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) reinterpret_cast<Raw*>(p)[c] = raw[c];
  }
  __device__ __forceinline__ void to_float(float (&f)[N]) const {
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = flashinfer::to_float(e[i]);
  }
  __device__ __forceinline__ void from_float(const float (&f)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) e[i] = flashinfer::from_float<T>(f[i]);
  }
};

// p[0..N) as floats.
template <typename T, int N>
__device__ __forceinline__ void load_float(const T* p, float (&f)[N]) {
  vec<T, N> v;
  v.load(p);
  v.to_float(f);
}

// p[0..N) as floats, through the read-only path (vec::load_nc).
template <typename T, int N>
__device__ __forceinline__ void load_float_nc(const T* p, float (&f)[N]) {
  vec<T, N> v;
  v.load_nc(p);
  v.to_float(f);
}

// f rounded to T (to nearest even) into p[0..N).
template <typename T, int N>
__device__ __forceinline__ void store_float(T* p, const float (&f)[N]) {
  vec<T, N> v;
  v.from_float(f);
  v.store(p);
}

}  // namespace ops
}  // namespace flashinfer
