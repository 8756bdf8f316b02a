// Attention-state merging (upstream attention/cascade.cuh: MergeState, MergeStateInPlace,
// MergeStates), base-2 LSE. One thread merges 8 consecutive elements (16 bytes of f16/bf16) of one
// (position, head); the thread holding element 0 also writes the LSE.
#pragma once
#include <flashinfer/core/types.cuh>
#include <flashinfer/attention/state.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using MergeParams = ::FIMergeParams;  // flashinfer/params.h

template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&x)[8]) {
  static_assert(sizeof(T) == 2, "f16/bf16 only");
  uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) x[i] = to_float(e[i]);
}

template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&x)[8]) {
  uint4 raw;
  T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) e[i] = from_float<T>(x[i]);
  *reinterpret_cast<uint4*>(p) = raw;
}

// Two states → one (IN_PLACE: out = a, b = other; rows with mask 0 untouched).
template <typename T, bool IN_PLACE>
__device__ __forceinline__ void merge_state_kernel(const MergeParams& p) {
  const int vecs = p.head_dim / 8;
  const int64 total = p.n * p.num_heads * vecs;
  for (int64 i = int64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64(gridDim.x) * blockDim.x) {
    const int64 row = i / vecs;  // (pos, head)
    const int vec = int(i % vecs);
    if (IN_PLACE && p.mask != nullptr && p.mask[row / p.num_heads] == 0) continue;
    float a[8], b[8];
    load8(static_cast<const T*>(p.va) + row * p.head_dim + vec * 8, a);
    load8(static_cast<const T*>(p.vb) + row * p.head_dim + vec * 8, b);
    StateFold<8> fold;
    fold.push(a, p.sa[row]);
    fold.push(b, p.sb[row]);
    const float s = fold.finish(a);
    store8(static_cast<T*>(p.v_out) + row * p.head_dim + vec * 8, a);
    if (vec == 0) p.s_out[row] = s;
  }
}

// N states per (position, head) → one, folded left to right in fp32 (state.cuh) (num_states 0 → 0 / -inf;
// num_states 1 → a copy, as upstream).
template <typename T>
__device__ __forceinline__ void merge_states_kernel(const MergeParams& p) {
  const int vecs = p.head_dim / 8;
  const int64 total = p.n * p.num_heads * vecs;
  for (int64 i = int64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64(gridDim.x) * blockDim.x) {
    const int64 row = i / vecs;
    const int64 pos = row / p.num_heads;
    const int head = int(row % p.num_heads), vec = int(i % vecs);
    float acc[8];
    float s_acc;
    if (p.num_states == 1) {  // upstream: one state is copied as is (even an empty one's v)
      load8(static_cast<const T*>(p.va) + row * p.head_dim + vec * 8, acc);
      s_acc = p.sa[row];
    } else {
      StateFold<8> fold;
      for (int k = 0; k < p.num_states; ++k) {
        const int64 srow = (pos * p.num_states + k) * p.num_heads + head;
        float x[8];
        load8(static_cast<const T*>(p.va) + srow * p.head_dim + vec * 8, x);
        fold.push(x, p.sa[srow]);
      }
      s_acc = fold.finish(acc);
    }
    store8(static_cast<T*>(p.v_out) + row * p.head_dim + vec * 8, acc);
    if (vec == 0 && p.s_out != nullptr) p.s_out[row] = s_acc;
  }
}

// Variable-length merge (upstream VariableLengthMergeStates; split-KV batch prefill): position t's
// states are rows indptr[t] ..< indptr[t+1] of v [rows, H, D] / s [rows, H], folded left to right
// in fp32 (state.cuh) into v_out [n, H, D] (contiguous) and s_out [n, H] (or null). No state → 0 / -inf.
using MergeVarlenParams = ::FIMergeVarlenParams;  // flashinfer/params.h

template <typename T>
__device__ __forceinline__ void merge_states_varlen_kernel(const MergeVarlenParams& p) {
  const int vecs = p.head_dim / 8;
  const int64 total = p.n * p.num_heads * vecs;
  for (int64 i = int64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64(gridDim.x) * blockDim.x) {
    const int64 row = i / vecs;  // (pos, head)
    const int64 pos = row / p.num_heads;
    const int head = int(row % p.num_heads), vec = int(i % vecs);
    StateFold<8> fold;
    for (int k = p.indptr[pos]; k < p.indptr[pos + 1]; ++k) {
      const int64 srow = int64(k) * p.num_heads + head;
      float x[8];
      load8(static_cast<const T*>(p.v) + srow * p.head_dim + vec * 8, x);
      fold.push(x, p.s[srow]);
    }
    float acc[8];
    const float s_acc = fold.finish(acc);
    store8(static_cast<T*>(p.v_out) + row * p.head_dim + vec * 8, acc);
    if (vec == 0 && p.s_out != nullptr) p.s_out[row] = s_acc;
  }
}

}  // namespace flashinfer
