// Batch prefill / append over ragged or paged K/V: the single-request CTA (prefill.cuh
// prefill_cta) driven by the plan's work items (Planner/BatchPrefillPlan.swift).
//
// Grid (work items, num_kv_heads). Work item w = (request b, q tile t, kv chunk c):
//   queries  packed rows t·CTA_Q .. of request b (rows qo_indptr[b] + qo of q / o)
//   keys     [c·kv_chunk, min((c+1)·kv_chunk, kv_len_b)) of request b, ragged (RaggedKV from row
//            kv_starts[b]) or paged (PagedKV over page_indices + kv_starts[b])
// Causal and window masks stay aligned to the whole request: the CTA runs with kv_len' = chunk end
// and qo_len' = qo_len − (kv_len − chunk end), which keeps qo + kv_len' − qo_len' = the query's
// position and masks keys from the chunk end on.
// Without split (tmp_o null) the CTA writes o / lse of its queries; with split it writes its partial
// state (o in the input dtype, lse base 2) to row o_indptr[b] + qo·chunks_b + c of tmp_o / tmp_lse,
// merged per query afterwards (cascade.cuh merge_states_varlen_kernel over the plan's merge_indptr).
#pragma once
#include <flashinfer/attention/prefill.cuh>

namespace flashinfer {

template <typename T, bool PAGED>
__device__ __forceinline__ void batch_prefill(const BatchPrefillParams& bp) {
  using DT = typename T::DT;
  const PrefillParams& p = bp.base;
  const int item = blockIdx.x, kv_head = blockIdx.y;
  const int b = bp.request_indices[item];
  const int qo_start = bp.qo_indptr[b];
  const int qo_len = bp.qo_indptr[b + 1] - qo_start;
  const int packed_len = qo_len * p.group_size;
  const int r0 = bp.qo_tile_indices[item] * T::CTA_Q;
  if (r0 >= packed_len) return;  // a request without queries (its one item has nothing to write)
  const int kv_len = bp.kv_lens[b];
  const int kv_lo = bp.kv_tile_indices[item] * bp.kv_chunk;
  const int kv_hi = min(kv_len, kv_lo + bp.kv_chunk);

  // The request's variant parameters live in shared memory and are re-read where used (barriers
  // sit between the reads, so the compiler cannot keep them in registers across the kv loop, where
  // the plain D128 kernel has none to spare; the single-request kernel reads them from the
  // constant bank). Every thread writes the same values, so no barrier is needed before reading.
  __shared__ VariantParams vp;
  vp = p.variant;
  vp.kv_len = kv_hi;
  vp.qo_len = qo_len - (kv_len - kv_hi);
  if constexpr (T::Variant::CUSTOM_MASK) {
    // The request's mask: its segment of the packed bits, rows of the whole request's kv_len.
    vp.custom_mask = p.variant.custom_mask + bp.mask_indptr[b];
    vp.mask_kv_len = kv_len;
  }

  // The destination, recomputed in the epilogue (nothing of it stays live across the kv loop).
  auto out_of = [&bq = bp]() {
    const int w = blockIdx.x;
    const int rb = bq.request_indices[w];
    const int hq = bq.base.num_kv_heads * bq.base.group_size;
    if (bq.tmp_o != nullptr) {
      const int n = bq.kv_lens[rb];
      const int chunks = n > 0 ? (n - 1) / bq.kv_chunk + 1 : 1;
      const int64 row = int64(bq.o_indptr[rb]) + bq.kv_tile_indices[w];
      return prefill::PrefillOut<DT>{static_cast<DT*>(bq.tmp_o) + row * hq * T::HEAD_DIM, int64(chunks) * hq * T::HEAD_DIM,
                                     T::HEAD_DIM, bq.tmp_lse + row * hq, int64(chunks) * hq};
    }
    const int64 qs = bq.qo_indptr[rb];
    return prefill::PrefillOut<DT>{static_cast<DT*>(bq.base.o) + qs * bq.base.o_stride_n, bq.base.o_stride_n,
                                   bq.base.o_stride_h, bq.base.lse != nullptr ? bq.base.lse + qs * hq : nullptr, hq};
  };

  const DT* q = static_cast<const DT*>(p.q) + int64(qo_start) * p.q_stride_n;
  // The request's first page-table entry (paged) or key row (ragged), in shared memory too (as vp).
  __shared__ int kv_start;
  kv_start = bp.kv_starts[b];
  if constexpr (PAGED) {
    prefill_cta<T, true>(p, vp, q, prefill::tiles<T>(PagedKV<typename T::KV_DT>{p.kv, bp.pages, kv_start}), out_of, r0,
                         kv_head, packed_len, kv_lo);
  } else {
    prefill_cta<T, true>(p, vp, q, prefill::tiles<T>(RaggedKV<typename T::KV_DT>{p.kv, kv_start}), out_of, r0, kv_head,
                         packed_len, kv_lo);
  }
}

}  // namespace flashinfer
