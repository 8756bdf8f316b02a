// The attention state (output o, log-sum-exp in base 2) and its exact merge
// (upstream attention/state.cuh and cascade.cuh MergeStateKernel):
//   m = max(sa, sb); wa = exp2(sa - m); wb = exp2(sb - m)   with (-inf) - (-inf) guarded to -inf
//   o = (wa·oa + wb·ob) / (wa + wb)   (0 when both are empty);  s = log2(wa + wb) + m
//
// Two forms of the same math:
//   - normalised states merged pairwise (merge_weights, merge_state_into: cascade.cuh), and
//   - unnormalised states folded without division against a running max m (acc = sum 2^(s_i - m)·o_i,
//     d = sum 2^(s_i - m); decode.cuh's slot epilogue and decode_merge.cuh), normalised once at the
//     end (normalize_state).
#pragma once
#include <flashinfer/core/math.cuh>

namespace flashinfer {

// Merge weights of two states; both empty (-inf) give wa = wb = 0 and lse -inf, never NaN.
__device__ __forceinline__ void merge_weights(float sa, float sb, float& wa, float& wb, float& lse) {
  const float m = fmaxf(sa, sb);
  if (m == -math::inf) {
    wa = 0.f; wb = 0.f; lse = -math::inf;
    return;
  }
  const float ea = math::ptx_exp2(sa - m), eb = math::ptx_exp2(sb - m);
  const float d = ea + eb;
  wa = ea / d; wb = eb / d;
  lse = math::ptx_log2(d) + m;
}

// (o, s) <- merge((o, s), (ob, sb)) for N output elements of one row (normalised states: two
// divisions per merge; the cascade kernels fold with it).
template <int N>
__device__ __forceinline__ void merge_state_into(float (&o)[N], float& s, const float (&ob)[N], float sb) {
  float wa, wb, lse;
  merge_weights(s, sb, wa, wb, lse);
#pragma unroll
  for (int e = 0; e < N; ++e) o[e] = wa * o[e] + wb * ob[e];
  s = lse;
}

// An unnormalised state (acc, m, d) with at least one key (d > 0) -> the output o = acc / d in
// place; returns lse = m + log2(d).
template <int N>
__device__ __forceinline__ float normalize_nonempty_state(float (&acc)[N], float m, float d) {
  const float inv = 1.f / d;
#pragma unroll
  for (int e = 0; e < N; ++e) acc[e] *= inv;
  return m + math::ptx_log2(d);
}

// The same for any state: d = 0 (no key) gives o = 0 and lse -inf, never NaN.
template <int N>
__device__ __forceinline__ float normalize_state(float (&acc)[N], float m, float d) {
  if (d > 0.f) return normalize_nonempty_state(acc, m, d);
#pragma unroll
  for (int e = 0; e < N; ++e) acc[e] = 0.f;
  return -math::inf;
}

}  // namespace flashinfer
