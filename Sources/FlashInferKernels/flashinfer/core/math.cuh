// Math helpers: named constants and fast base-2 exponentials (the attention kernels work in log2 units).
#pragma once

namespace flashinfer {
namespace math {

constexpr float log2e = 1.44269504088896340736f;  // log2(e)
constexpr float inf = __builtin_bit_cast(float, 0x7f800000u);  // +inf (NVRTC has no __builtin_huge_valf)

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

__device__ __forceinline__ float shfl_xor(float x, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, x, lane_mask);
}

}  // namespace math
}  // namespace flashinfer
