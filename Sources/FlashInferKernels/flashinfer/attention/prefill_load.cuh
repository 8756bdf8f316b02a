// Prefill pipeline stage 1: global → shared memory. The Q tile (once per CTA, RoPE applied on the
// way in), K and V tiles (cp.async, zero-filled past kv_len), and RoPE on a K tile in place.
//
// RoPE choice: q is rotated while it is loaded (registers → shared, once per CTA) and each K tile
// is rotated in shared memory right after it lands, before any warp reads it; both are rounded
// back to the input dtype, as upstream's FA2 kernels do. Angles are fp32 with __sincosf
// (pos_enc.cuh's convention).
//
// Thread → data maps: CHUNKS divides the block, so every thread copies one fixed chunk column
// (tid % CHUNKS) of rows tid / CHUNKS + k·(NUM_THREADS / CHUNKS); consecutive threads copy
// consecutive 16-byte chunks of a row (coalesced). RoPE works on chunk pairs (c, c + CHUNKS/2).
#pragma once
#include <flashinfer/attention/prefill_traits.cuh>
#include <flashinfer/attention/pos_enc.cuh>

namespace flashinfer {
namespace prefill {

// Rotates 8 elements of the first half (lo, dims 8c..8c+7) with their partners (hi, dims
// 8c+D/2..): lo' = lo·cos − hi·sin, hi' = hi·cos + lo·sin, angle pos·freq[e].
template <typename DT>
__device__ __forceinline__ void rope_rotate_chunk_pair(uint4& lo, uint4& hi, const float (&freq)[8], int pos) {
  DT* a = reinterpret_cast<DT*>(&lo);
  DT* b = reinterpret_cast<DT*>(&hi);
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    float s, c;
    __sincosf(float(pos) * freq[e], &s, &c);
    const float x1 = to_float(a[e]), x2 = to_float(b[e]);
    a[e] = from_float<DT>(x1 * c - x2 * s);
    b[e] = from_float<DT>(x2 * c + x1 * s);
  }
}

// RoPE frequencies of the 8 dims of first-half chunk c.
template <int HEAD_DIM>
__device__ __forceinline__ void rope_chunk_freqs(int c, const VariantParams& vp, float (&freq)[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) freq[e] = rope_freq(c * 8 + e, HEAD_DIM, vp);
}

// Q tile [CTA_Q][HEAD_DIM] of packed rows r0.. of kv head kv_head, by cp.async (rows past the
// end are zeros). Joins the caller's next commit group.
template <typename T>
__device__ __forceinline__ void load_q(const PrefillParams& p, typename T::DT* q_smem, int r0, int kv_head,
                                       int packed_len) {
  using DT = typename T::DT;
  const DT* q = static_cast<const DT*>(p.q);
  const int c = threadIdx.x % T::CHUNKS;
#pragma unroll
  for (int it = 0; it < T::CTA_Q * T::CHUNKS / T::NUM_THREADS; ++it) {
    const int row = threadIdx.x / T::CHUNKS + it * (T::NUM_THREADS / T::CHUNKS);
    const int pr = r0 + row;
    const bool valid = pr < packed_len;
    const int qo = pr / p.group_size, head = kv_head * p.group_size + pr % p.group_size;
    const DT* src = valid ? q + qo * p.q_stride_n + head * p.q_stride_h + c * 8 : q;
    mma::cp_async_16(mma::smem_u32(q_smem + swizzle<T::CHUNKS>(row, c)), src, valid);
  }
}

// Q tile with RoPE: each query rotated at its position qo + kv_len − qo_len. Plain loads and
// stores (visible after the caller's next __syncthreads).
template <typename T>
__device__ __forceinline__ void load_q_rope(const PrefillParams& p, typename T::DT* q_smem, int r0, int kv_head,
                                            int packed_len) {
  using DT = typename T::DT;
  const DT* q = static_cast<const DT*>(p.q);
  const int c = threadIdx.x % T::HALF_CHUNKS;
  float freq[8];
  rope_chunk_freqs<T::HEAD_DIM>(c, p.variant, freq);
#pragma unroll
  for (int it = 0; it < T::CTA_Q * T::HALF_CHUNKS / T::NUM_THREADS; ++it) {
    const int row = threadIdx.x / T::HALF_CHUNKS + it * (T::NUM_THREADS / T::HALF_CHUNKS);
    const int pr = r0 + row;
    uint4 lo = make_uint4(0, 0, 0, 0), hi = lo;
    if (pr < packed_len) {
      const int qo = pr / p.group_size, head = kv_head * p.group_size + pr % p.group_size;
      const DT* src = q + qo * p.q_stride_n + head * p.q_stride_h;
      lo = *reinterpret_cast<const uint4*>(src + c * 8);
      hi = *reinterpret_cast<const uint4*>(src + (c + T::HALF_CHUNKS) * 8);
      rope_rotate_chunk_pair<DT>(lo, hi, freq, qo + p.variant.kv_len - p.variant.qo_len);
    }
    *reinterpret_cast<uint4*>(q_smem + swizzle<T::CHUNKS>(row, c)) = lo;
    *reinterpret_cast<uint4*>(q_smem + swizzle<T::CHUNKS>(row, c + T::HALF_CHUNKS)) = hi;
  }
}

// One K or V tile: keys k0..k0+CTA_KV−1 of the kv head into `tile` [CTA_KV][HEAD_DIM] by
// cp.async, zeros past kv_len (V must be finite there: p = 0 times garbage could be NaN).
// `head` points at key 0 of the kv head. Addresses are rebuilt from the lane on every call
// (mma::lane_id) instead of being hoisted out of the kv loop into registers.
template <typename T>
__device__ __forceinline__ void load_kv_tile(const typename T::DT* head, int64 stride_n, typename T::DT* tile,
                                             int k0, int kv_len) {
  constexpr int ROWS_PER_PASS = T::NUM_THREADS / T::CHUNKS;
  const int tid = (threadIdx.x & ~31) + mma::lane_id();
  const int row0 = tid / T::CHUNKS, c = tid % T::CHUNKS;
  const int rows_left = kv_len - k0 - row0;  // pass `it` is valid while it·ROWS_PER_PASS < rows_left
  const typename T::DT* src = head + (k0 + row0) * stride_n + c * 8;
#pragma unroll
  for (int it = 0; it < T::CTA_KV / ROWS_PER_PASS; ++it) {
    const bool valid = it * ROWS_PER_PASS < rows_left;
    mma::cp_async_16(mma::smem_u32(tile + swizzle<T::CHUNKS>(row0 + it * ROWS_PER_PASS, c)),
                     valid ? src : head, valid);
    src += ROWS_PER_PASS * stride_n;
  }
}

// RoPE on a landed K tile in place: key k0 + row rotated at its index.
template <typename T>
__device__ __forceinline__ void rope_k_tile(typename T::DT* tile, int k0, const VariantParams& vp) {
  using DT = typename T::DT;
  const int c = threadIdx.x % T::HALF_CHUNKS;
  float freq[8];
  rope_chunk_freqs<T::HEAD_DIM>(c, vp, freq);
#pragma unroll
  for (int it = 0; it < T::CTA_KV * T::HALF_CHUNKS / T::NUM_THREADS; ++it) {
    const int row = threadIdx.x / T::HALF_CHUNKS + it * (T::NUM_THREADS / T::HALF_CHUNKS);
    uint4* plo = reinterpret_cast<uint4*>(tile + swizzle<T::CHUNKS>(row, c));
    uint4* phi = reinterpret_cast<uint4*>(tile + swizzle<T::CHUNKS>(row, c + T::HALF_CHUNKS));
    uint4 lo = *plo, hi = *phi;
    rope_rotate_chunk_pair<DT>(lo, hi, freq, k0 + row);
    *plo = lo;
    *phi = hi;
  }
}

}  // namespace prefill
}  // namespace flashinfer
