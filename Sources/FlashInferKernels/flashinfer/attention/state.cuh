// The attention state and its one merge (upstream attention/state.cuh and cascade.cuh, base-2 LSE).
//
// A state is either normalised, (o, lse s), or unnormalised against a max, (acc, m, d) with
// o = acc / d and s = m + log2(d). Every device-side merge (the cascade kernels, the split-KV
// decode merge, decode's slot epilogue) is the same division-free fold against a running max m:
//   acc = Σ 2^(s_i − m)·o_i·d_i,  d = Σ 2^(s_i − m)·d_i      (d_i = 1 for a normalised state)
// raising m (and rescaling acc and d by 2^(m_old − m_new)) when a larger s_i arrives, and dividing
// once at the end (StateFold::finish). Empty states (s = −inf) add nothing; a fold of only empty
// states finishes as o = 0, lse = −inf, never NaN. Merging two states this way gives
//   o = (2^(sa−m)·oa + 2^(sb−m)·ob) / (2^(sa−m) + 2^(sb−m)),  s = m + log2(2^(sa−m) + 2^(sb−m)),
// upstream's MergeState, with one division per element instead of two.
#pragma once
#include <flashinfer/core/math.cuh>

namespace flashinfer {

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

// The fold of N output elements of one row (see the top of this file).
template <int N>
struct StateFold {
  float acc[N];
  float m;  // running max (log2 units); -inf while every state so far is empty
  float d;  // Σ 2^(s_i − m)·d_i

  __device__ __forceinline__ StateFold() : m(-math::inf), d(0.f) {
#pragma unroll
    for (int e = 0; e < N; ++e) acc[e] = 0.f;
  }

  // A fold whose max is known before its states arrive (the max of their maxima, or −inf).
  __device__ __forceinline__ explicit StateFold(float max) : m(max), d(0.f) {
#pragma unroll
    for (int e = 0; e < N; ++e) acc[e] = 0.f;
  }

  // Raises the running max to m_new >= m: acc and d scale by 2^(m − m_new) (0 when m = −inf, and
  // acc and d are 0 then).
  __device__ __forceinline__ void raise_to(float m_new) {
    const float scale = math::ptx_exp2(m - m_new);
    d *= scale;
#pragma unroll
    for (int e = 0; e < N; ++e) acc[e] *= scale;
    m = m_new;
  }

  // Adds a state whose max (or lse) s is at most m, given acc_i = o_i·d_i and its sum d_i
  // (d_i = 1 for a normalised state). Needs a finite m, or s = m = −inf with weight forced to 0
  // by the caller (add_guarded).
  template <typename Vec>
  __device__ __forceinline__ void add_below_max(const Vec& acc_i, float s, float d_i = 1.f) {
    const float w = math::ptx_exp2(s - m);  // s = −inf: 0
    d = fmaf(w, d_i, d);
#pragma unroll
    for (int e = 0; e < N; ++e) acc[e] = fmaf(w, acc_i[e], acc[e]);
  }

  // As add_below_max for any s <= m, m = −inf included (an empty state then adds nothing).
  template <typename Vec>
  __device__ __forceinline__ void add_guarded(const Vec& acc_i, float s, float d_i = 1.f) {
    const float w = s == -math::inf ? 0.f : math::ptx_exp2(s - m);
    d = fmaf(w, d_i, d);
#pragma unroll
    for (int e = 0; e < N; ++e) acc[e] = fmaf(w, acc_i[e], acc[e]);
  }

  // Adds any state (raising the max first when s > m).
  template <typename Vec>
  __device__ __forceinline__ void push(const Vec& acc_i, float s, float d_i = 1.f) {
    if (s == -math::inf) return;
    if (s > m) raise_to(s);
    add_below_max(acc_i, s, d_i);
  }

  // out = acc / d; returns the merged lse (o = 0, −inf when every state was empty).
  __device__ __forceinline__ float finish(float (&out)[N]) const {
#pragma unroll
    for (int e = 0; e < N; ++e) out[e] = acc[e];
    return normalize_state(out, m, d);
  }
};

}  // namespace flashinfer
