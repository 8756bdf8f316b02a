// Element types and their conversions. Device-only, NVRTC-clean (no host code, no <iostream>).
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>

namespace flashinfer {

using int64 = long long;
using uint32 = unsigned int;

// dtype_traits<T>: float conversions for every storage type the kernels read or write.
template <typename T> struct dtype_traits;

template <> struct dtype_traits<float> {
  static __device__ __forceinline__ float to_float(float x) { return x; }
  static __device__ __forceinline__ float from_float(float x) { return x; }
};
template <> struct dtype_traits<__half> {
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
};
template <> struct dtype_traits<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct dtype_traits<__nv_fp8_e4m3> {
  static __device__ __forceinline__ float to_float(__nv_fp8_e4m3 x) { return float(x); }
  static __device__ __forceinline__ __nv_fp8_e4m3 from_float(float x) { return __nv_fp8_e4m3(x); }
};
template <> struct dtype_traits<__nv_fp8_e5m2> {
  static __device__ __forceinline__ float to_float(__nv_fp8_e5m2 x) { return float(x); }
  static __device__ __forceinline__ __nv_fp8_e5m2 from_float(float x) { return __nv_fp8_e5m2(x); }
};

template <typename T> __device__ __forceinline__ float to_float(T x) { return dtype_traits<T>::to_float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x) { return dtype_traits<T>::from_float(x); }

}  // namespace flashinfer
