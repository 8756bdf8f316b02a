// Merge of split-KV decode partials: for each query head, folds the num_chunks states
// (o in fp32, lse base 2) written by decode.cuh with the exact base-2 state merge (state.cuh)
// and writes the output in the query's dtype (+ the merged LSE).
//
// Grid (num_qo_heads, requests); 128 threads = GROUPS groups of LANES = HEAD_DIM/4 lanes. Lane c
// of group g folds chunks g, g+GROUPS, ... for elements [4c, 4c+4) with state.cuh's StateFold
// (weights 2^(lse_i - m), no division per chunk; BATCH = 4 chunks' loads in flight, the max raised
// once per batch); group 0 then folds the GROUPS states and divides once. (The previous form, a pairwise state merge with two divisions
// per chunk, took 3.3 µs after its release for D6's 16 chunks on the H100.) Empty chunks (lse
// -inf) merge to nothing; all chunks empty gives output 0 and lse -inf, never NaN.
// Launched with programmatic dependent launch after the decode kernel: griddepcontrol.wait first.
#pragma once
#include <flashinfer/attention/state.cuh>
#include <flashinfer/core/pdl.cuh>
#include <flashinfer/core/types.cuh>
#include <flashinfer/core/vec_io.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using DecodeMergeParams = ::FIDecodeMergeParams;  // flashinfer/params.h

template <typename DT, int HEAD_DIM>
__device__ __forceinline__ void decode_merge(const DecodeMergeParams& p) {
  constexpr int THREADS = 128, LANES = HEAD_DIM / 4, GROUPS = THREADS / LANES, BATCH = 4;
  static_assert(THREADS % LANES == 0, "whole groups");
  __shared__ __align__(16) float s_acc[GROUPS][HEAD_DIM];
  __shared__ float s_m[GROUPS], s_d[GROUPS];

  // Launched as a programmatic dependent of the decode kernel (PDL): wait for its partials.
  pdl::wait();
  unsigned long long t_wait = 0;
  if (p.timeline != nullptr) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_wait));
  const int head = blockIdx.x;
  const int request = blockIdx.y;
  const int first = p.o_indptr != nullptr ? p.o_indptr[request] : 0;
  const int num_chunks = p.o_indptr != nullptr ? p.o_indptr[request + 1] - first : p.num_chunks;
  const int c = threadIdx.x % LANES, g = threadIdx.x / LANES;
  const int64 row = int64(p.num_qo_heads) * HEAD_DIM;  // floats per chunk
  const float* o_base = p.partial_o + int64(first) * row + int64(head) * HEAD_DIM + c * 4;
  const float* lse_base = p.partial_lse + int64(first) * p.num_qo_heads + head;

  // Group g folds chunks g, g+GROUPS, ... against a running max m: acc = sum 2^(lse_i - m) o_i,
  // d = sum 2^(lse_i - m) (no division until the end). BATCH chunks' loads are issued together.
  StateFold<4> fold;
  for (int base = g; base < num_chunks; base += BATCH * GROUPS) {
    float4 ob[BATCH];
    float sb[BATCH];
#pragma unroll
    for (int b = 0; b < BATCH; ++b) {
      const int i = base + b * GROUPS;
      if (i < num_chunks) {
        ob[b] = *reinterpret_cast<const float4*>(o_base + i * row);
        sb[b] = lse_base[int64(i) * p.num_qo_heads];
      } else {
        ob[b] = make_float4(0.f, 0.f, 0.f, 0.f);
        sb[b] = -math::inf;
      }
    }
    float mb = fold.m;
#pragma unroll
    for (int b = 0; b < BATCH; ++b) mb = fmaxf(mb, sb[b]);
    if (mb == -math::inf) continue;  // every state so far is empty
    fold.raise_to(mb);
#pragma unroll
    for (int b = 0; b < BATCH; ++b) fold.add_below_max(reinterpret_cast<const float(&)[4]>(ob[b]), sb[b]);
  }
  *reinterpret_cast<float4*>(&s_acc[g][c * 4]) = make_float4(fold.acc[0], fold.acc[1], fold.acc[2], fold.acc[3]);
  if (c == 0) { s_m[g] = fold.m; s_d[g] = fold.d; }
  __syncthreads();
  if (g == 0) {
    // The GROUPS partial folds, into one: raised to their max at once, then added.
    float mm = -math::inf;
#pragma unroll
    for (int i = 0; i < GROUPS; ++i) mm = fmaxf(mm, s_m[i]);
    StateFold<4> all(mm);
#pragma unroll
    for (int i = 0; i < GROUPS; ++i) {
      const float4 a = *reinterpret_cast<const float4*>(&s_acc[i][c * 4]);
      all.add_guarded(reinterpret_cast<const float(&)[4]>(a), s_m[i], s_d[i]);
    }
    float out[4];
    const float lse = all.finish(out);
    // All chunks empty: output 0 and lse -inf, never NaN.
    const int64 out_row = int64(request) * p.num_qo_heads + head;
    vec_io::store4<DT>(static_cast<DT*>(p.o) + out_row * HEAD_DIM + c * 4, out);
    if (c == 0 && p.lse != nullptr) p.lse[out_row] = lse;
  }
  // Written out rather than with timeline::record: the merge checks `timeline` at run time, and
  // the helper changes ptxas' schedule of the whole kernel (16 fewer instructions, not measured).
  if (p.timeline != nullptr && threadIdx.x == 0) {
    unsigned long long t_exit;
    unsigned smid;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_exit));
    asm("mov.u32 %0, %%smid;" : "=r"(smid));
    const int64 cta = blockIdx.x + int64(gridDim.x) * blockIdx.y;
    p.timeline[3 * cta] = t_wait;
    p.timeline[3 * cta + 1] = t_exit;
    p.timeline[3 * cta + 2] = smid;
  }
}

}  // namespace flashinfer
