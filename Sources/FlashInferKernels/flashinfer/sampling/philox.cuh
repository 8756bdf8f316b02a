// Philox4x32-10 and cuRAND's stream over it (curandStatePhilox4_32_10_t), word for word, without
// curand_kernel.h (NVRTC has no cuRAND headers). The Swift twin is PhiloxStream
// (Sources/FlashInfer/Sampling/Philox.swift); the check "sampling philox" compares the two.
//
//   init(seed, subsequence, offset) = curand_init: key = (lo(seed), hi(seed)), counter =
//     (0, 0, lo(subsequence), hi(subsequence)), then skipahead(offset): offset / 4 blocks (the low
//     64 bits of the counter, carrying into the high 64) and start at word offset % 4.
//   next()    = curand: the current block's words in order, then the next counter's block.
//   uniform() = curand_uniform: x · 2⁻³² + 2⁻³³ in float, in (0, 1]. (x · 2⁻³² is exact, so an
//     FMA contraction gives the same float as a multiply then an add.)
//
// Where (seed, offset) come from: by value in the parameters, or read from device memory when the
// parameters' pointer is set (`seed_of` / `offset_of`): a generator's state, which a CUDA graph
// replays with the value current at each replay. A generator's offset is advanced by
// `advance_offset`, a one-thread kernel launched after the sampling kernel on the same stream: the
// sampling kernel's blocks all read the old value (stream order), and no block of it writes what
// another may still read.
#pragma once
#include <flashinfer/core/types.cuh>
#include <flashinfer/params.h>

namespace flashinfer {
namespace philox {

constexpr uint32 kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32 kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key increments (Weyl sequence)
constexpr float kTwoPowMinus32 = 2.3283064365386963e-10f;  // 2⁻³²
constexpr float kTwoPowMinus33 = 1.1641532182693481e-10f;  // 2⁻³³

// One Philox4x32-10 block of `ctr` under `key`.
__device__ __forceinline__ uint4 block(uint4 c, uint2 k) {
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    if (r > 0) { k.x += kW0; k.y += kW1; }
    const uint32 hi0 = __umulhi(kM0, c.x), lo0 = kM0 * c.x;  // M0·c0
    const uint32 hi1 = __umulhi(kM1, c.z), lo1 = kM1 * c.z;  // M1·c2
    c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}

struct Stream {
  uint4 ctr;   // counter of the current block (x least significant)
  uint2 key;   // (lo(seed), hi(seed))
  uint4 out;   // block(ctr, key)
  int word;    // next word of `out`, 0..3

  // Adds n to the counter's low 64 bits, carrying into the high 64 (cuRAND's Philox_State_Incr).
  __device__ __forceinline__ void advance(unsigned long long n) {
    const unsigned long long low = (unsigned long long)ctr.x | ((unsigned long long)ctr.y << 32);
    const unsigned long long sum = low + n;
    ctr.x = uint32(sum);
    ctr.y = uint32(sum >> 32);
    if (sum < low) {
      const unsigned long long high = ((unsigned long long)ctr.z | ((unsigned long long)ctr.w << 32)) + 1;
      ctr.z = uint32(high);
      ctr.w = uint32(high >> 32);
    }
  }

  __device__ __forceinline__ Stream(unsigned long long seed, unsigned long long subsequence, unsigned long long offset) {
    key = make_uint2(uint32(seed), uint32(seed >> 32));
    ctr = make_uint4(0u, 0u, uint32(subsequence), uint32(subsequence >> 32));
    word = int(offset & 3);
    advance(offset >> 2);
    out = block(ctr, key);
  }

  __device__ __forceinline__ uint32 next() {
    const uint32 r = word == 0 ? out.x : word == 1 ? out.y : word == 2 ? out.z : out.w;
    if (++word == 4) {
      advance(1);
      out = block(ctr, key);
      word = 0;
    }
    return r;
  }

  __device__ __forceinline__ float uniform() {
    return __fadd_rn(__fmul_rn(__uint2float_rn(next()), kTwoPowMinus32), kTwoPowMinus33);
  }
};

// The seed and offset of a call: the device value when `arr` is set, else the by-value one.
__device__ __forceinline__ unsigned long long seed_of(const unsigned long long* arr, unsigned long long value) {
  return arr != nullptr ? arr[0] : value;
}
__device__ __forceinline__ unsigned long long offset_of(const unsigned long long* arr, unsigned long long value) {
  return arr != nullptr ? arr[0] : value;
}

// The generator's offset after a call: offset += increment (one thread; FIPhiloxAdvanceParams).
__device__ __forceinline__ void advance_offset(const ::FIPhiloxAdvanceParams& p) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *p.offset += p.increment;
}

}  // namespace philox
}  // namespace flashinfer
