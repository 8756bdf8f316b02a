// Math helpers: named constants and fast base-2 exponentials (the attention kernels work in log2 units).
#pragma once

namespace flashinfer {
namespace math {

constexpr float log2e = 1.44269504088896340736f;  // log2(e)
constexpr float ln2 = 0.69314718055994530942f;    // ln(2)
#ifdef __CUDACC_RTC__
constexpr float inf = 1.f / 0.f;  // NVRTC has no __builtin_huge_valf; its front end folds this to +inf
#else
constexpr float inf = __builtin_huge_valf();
#endif

// 2^x with the SFU (ex2.approx.ftz: ~2 ulp, flushes subnormals; exp2(-inf) = 0).
__device__ __forceinline__ float ptx_exp2(float x) {
  float y;
  asm volatile("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// log2(x) with the SFU (lg2.approx.ftz; log2(0) = -inf).
__device__ __forceinline__ float ptx_log2(float x) {
  float y;
  asm volatile("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float ptx_rcp(float x) {
  float y;
  asm volatile("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float shfl_xor(float x, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, x, lane_mask);
}

}  // namespace math
}  // namespace flashinfer
