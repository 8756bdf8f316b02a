// Asynchronous global → shared copies (cp.async, sm_80+): the one set of wrappers every kernel uses.
//
// A thread issues 16-byte copies, closes them into a group with commit(), and later waits until at
// most N of its committed groups are still in flight with wait<N>(). Every thread commits one group
// per pipeline stage, even an empty one, so that group counts stay uniform across the CTA. The
// copies bypass L1 (.cg). When !valid nothing is read and the 16 shared bytes are zero-filled
// (src-size 0), so masked rows never hold stale or NaN data; the source must still be a mapped
// address.
#pragma once
#include <flashinfer/core/types.cuh>

namespace flashinfer {
namespace cp_async {

// L2 prefetch hint of a copy: kL2_128B also prefetches the surrounding 128 bytes into L2 (decode's
// streaming K/V reads).
enum class Prefetch { kNone, kL2_128B };

// 16 bytes global → shared at a shared-space address.
template <Prefetch PREFETCH = Prefetch::kNone>
__device__ __forceinline__ void copy_16(uint32 smem_dst, const void* gmem_src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  if constexpr (PREFETCH == Prefetch::kL2_128B) {
    asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(smem_dst), "l"(gmem_src),
                 "r"(src_bytes)
                 : "memory");
  } else {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_dst), "l"(gmem_src), "r"(src_bytes));
  }
}

// 16 bytes global → shared at a generic pointer into shared memory.
template <Prefetch PREFETCH = Prefetch::kNone>
__device__ __forceinline__ void copy_16(void* smem_dst, const void* gmem_src, bool valid) {
  copy_16<PREFETCH>(static_cast<uint32>(__cvta_generic_to_shared(smem_dst)), gmem_src, valid);
}

// Closes the current group of this thread's copies.
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

}  // namespace cp_async
}  // namespace flashinfer
