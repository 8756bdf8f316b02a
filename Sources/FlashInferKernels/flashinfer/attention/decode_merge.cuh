// Merge of split-KV decode partials: for each query head, folds the num_chunks states
// (o in fp32, lse base 2) written by decode.cuh with the exact base-2 state merge (state.cuh)
// and writes the output in the query's dtype (+ the merged LSE).
//
// Grid (num_qo_heads); 128 threads = GROUPS groups of LANES = HEAD_DIM/8 lanes. Lane c of group
// g folds chunks g, g+GROUPS, ... for elements [8c, 8c+8) (loads issued BATCH = 8 at a time so their
// latencies overlap); group 0 then folds the GROUPS states in order. Empty chunks (lse -inf)
// merge to nothing; all chunks empty gives output 0 and lse -inf, never NaN.
// Launched with programmatic dependent launch after the decode kernel: griddepcontrol.wait first.
#pragma once
#include <flashinfer/attention/state.cuh>
#include <flashinfer/core/mma.cuh>
#include <flashinfer/core/types.cuh>
#include <flashinfer/core/vec_io.cuh>

namespace flashinfer {

struct DecodeMergeParams {
  const float* partial_o;    // [num_chunks, num_qo_heads, head_dim]
  const float* partial_lse;  // [num_chunks, num_qo_heads], base 2
  void* o;                   // [num_qo_heads, head_dim] contiguous, output dtype
  float* lse;                // [num_qo_heads] base 2, or null
  int num_qo_heads;
  int num_chunks;            // single decode: chunks of the one request
  const int* o_indptr;       // batch decode: [B + 1], request blockIdx.y's partial rows; null for single
  unsigned long long* timeline;  // or null (bench --timeline): per CTA {after the wait, at exit, smid} ns
};

template <typename DT, int HEAD_DIM>
__device__ __forceinline__ void decode_merge(const DecodeMergeParams& p) {
  constexpr int THREADS = 128, LANES = HEAD_DIM / 8, GROUPS = THREADS / LANES, BATCH = 8;
  static_assert(THREADS % LANES == 0, "whole groups");
  __shared__ __align__(16) float s_o[GROUPS][HEAD_DIM];
  __shared__ float s_lse[GROUPS];

  // Launched as a programmatic dependent of the decode kernel (PDL): wait for its partials.
  mma::wait_dependencies();
  unsigned long long t_wait = 0;
  if (p.timeline != nullptr) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_wait));
  const int head = blockIdx.x;
  const int request = blockIdx.y;
  const int first = p.o_indptr != nullptr ? p.o_indptr[request] : 0;
  const int num_chunks = p.o_indptr != nullptr ? p.o_indptr[request + 1] - first : p.num_chunks;
  const int c = threadIdx.x % LANES, g = threadIdx.x / LANES;
  const int64 row = int64(p.num_qo_heads) * HEAD_DIM;  // floats per chunk

  float o[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  float s = -math::inf;
  for (int base = g; base < num_chunks; base += BATCH * GROUPS) {
    float ob[BATCH][8];
    float sb[BATCH];
#pragma unroll
    for (int b = 0; b < BATCH; ++b) {
      const int i = base + b * GROUPS;
      if (i < num_chunks) {
        const float4* src = reinterpret_cast<const float4*>(p.partial_o + (first + i) * row + int64(head) * HEAD_DIM + c * 8);
        const float4 x = src[0], y = src[1];
        ob[b][0] = x.x; ob[b][1] = x.y; ob[b][2] = x.z; ob[b][3] = x.w;
        ob[b][4] = y.x; ob[b][5] = y.y; ob[b][6] = y.z; ob[b][7] = y.w;
        sb[b] = p.partial_lse[int64(first + i) * p.num_qo_heads + head];
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) ob[b][e] = 0.f;
        sb[b] = -math::inf;
      }
    }
#pragma unroll
    for (int b = 0; b < BATCH; ++b) merge_state(o, s, ob[b], sb[b]);
  }

  float4* dst = reinterpret_cast<float4*>(&s_o[g][c * 8]);
  dst[0] = make_float4(o[0], o[1], o[2], o[3]);
  dst[1] = make_float4(o[4], o[5], o[6], o[7]);
  if (c == 0) s_lse[g] = s;
  __syncthreads();
  if (g != 0) return;
#pragma unroll 1
  for (int i = 1; i < GROUPS; ++i) {
    float ob[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) ob[e] = s_o[i][c * 8 + e];
    merge_state(o, s, ob, s_lse[i]);
  }
  // An empty state carries o = 0 already (merge_weights gives wa = wb = 0).
  const int64 out_row = int64(request) * p.num_qo_heads + head;
  *reinterpret_cast<uint4*>(static_cast<DT*>(p.o) + out_row * HEAD_DIM + c * 8) = vec_io::vec8<DT>::from_float(o);
  if (c == 0 && p.lse != nullptr) p.lse[out_row] = s;
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
