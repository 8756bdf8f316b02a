// append_paged_kv_cache (FlashInfer >= 0.2 semantics): appended token t of request
// batch_indices[t] at position positions[t] goes to page kv_indices[kv_indptr[b] + pos / page_size],
// slot pos % page_size. Parallel per element (token, head, 16-byte vector): a pure copy, so the
// element type does not matter, only its bytes.
#pragma once
#include <flashinfer/core/types.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using AppendPagedKVParams = ::FIAppendPagedKVParams;  // flashinfer/params.h

__device__ __forceinline__ void append_paged_kv(const AppendPagedKVParams& p) {
  const int64 per_token = int64(p.num_heads) * p.vecs_per_head;
  const int64 total = per_token * p.nnz;
  for (int64 i = int64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64(gridDim.x) * blockDim.x) {
    const int t = int(i / per_token);
    const int rem = int(i % per_token);
    const int h = rem / p.vecs_per_head, vec = rem % p.vecs_per_head;
    const int b = p.batch_indices[t], pos = p.positions[t];
    const int page = p.kv_indices[p.kv_indptr[b] + pos / p.page_size];
    const int slot = pos % p.page_size;
    const char* ks = static_cast<const char*>(p.append_k) + t * p.ak_stride_n + h * p.ak_stride_h + vec * 16;
    const char* vs = static_cast<const char*>(p.append_v) + t * p.av_stride_n + h * p.av_stride_h + vec * 16;
    char* kd = static_cast<char*>(p.k_cache) + page * p.kc_stride_page + slot * p.kc_stride_token + h * p.kc_stride_head + vec * 16;
    char* vd = static_cast<char*>(p.v_cache) + page * p.vc_stride_page + slot * p.vc_stride_token + h * p.vc_stride_head + vec * 16;
    *reinterpret_cast<uint4*>(kd) = *reinterpret_cast<const uint4*>(ks);
    *reinterpret_cast<uint4*>(vd) = *reinterpret_cast<const uint4*>(vs);
  }
}

}  // namespace flashinfer
