// KV policies: where key j of a request's kv head lives. Every attention kernel reads K and V
// through one of these types (decode.cuh directly; prefill_load.cuh's tile loaders wrap them), so
// a new KV source is a new policy here, not a branch in a kernel.
//
// Every policy has, for the CTA's kv head (blockIdx.y in every attention grid):
//   k_base(), v_base()    element 0 of the kv head's K / V (DT*)
//   rows(j, kb, vb, kp, vp)  the addresses of key j's K and V rows given bases kb, vb (k_base(),
//                         v_base() plus a column; decode's loader, which computes them for every
//                         key it copies: 32-bit strides, which the host checks, and one 32x32->64
//                         multiply-add per term)
//   k_stride_n()...       the element stride between consecutive keys of a run (contiguous rows, or
//                         the slots of one page)
//   PAGED                 whether keys are in pages (PagedKV adds page_of / fetch_page / row_offsets,
//                         so a loader can resolve a tile's pages once and reuse them)
//
// The batch policies hold references (to the kernel's __grid_constant__ parameters and to the
// request's first row or page entry, which kernels keep in shared memory or a register) rather
// than copies, and rebuild the head base from the parameters on each call: the prefill kernels have
// no register to spare across their kv loop (255 with D128).
#pragma once
#include <flashinfer/core/types.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using KVTensors = ::FIKVTensors;  // flashinfer/params.h
using PageTable = ::FIPageTable;

// p + a·b bytes with a 32x32->64 multiply: one IMAD.WIDE (the compiler makes int64(a)·int64(b) a
// 64-bit multiply with sign fix-ups when b comes from a 64-bit parameter).
template <typename T>
__device__ __forceinline__ const T* advance_wide(const T* p, int a, int b) {
  const T* r;
  asm("mad.wide.s32 %0, %1, %2, %3;\n" : "=l"(r) : "r"(a), "r"(b), "l"(p));
  return r;
}

// blockIdx.y (the kv head), read so that the compiler cannot hoist what depends on it out of a
// kv loop (as mma::lane_id).
__device__ __forceinline__ int kv_head_id() {
  int h;
  asm volatile("mov.u32 %0, %%ctaid.y;\n" : "=r"(h));
  return h;
}

// Contiguous rows of one request: key j at k_head + j·k_stride (single-request kernels). Holds
// the kv head's pointers, computed once.
template <typename DT>
struct ContiguousKV {
  static constexpr bool PAGED = false;
  const DT* k_head;  // key 0 of the kv head
  const DT* v_head;
  int64 k_stride;    // elements between consecutive keys
  int64 v_stride;

  // The policy of kv head `kv_head` of `t`.
  __device__ __forceinline__ static ContiguousKV of(const KVTensors& t, int kv_head) {
    return ContiguousKV{static_cast<const DT*>(t.k) + kv_head * t.k_stride_h,
                        static_cast<const DT*>(t.v) + kv_head * t.v_stride_h, t.k_stride_n, t.v_stride_n};
  }
  __device__ __forceinline__ const DT* k_base() const { return k_head; }
  __device__ __forceinline__ const DT* v_base() const { return v_head; }
  __device__ __forceinline__ int64 k_stride_n() const { return k_stride; }
  __device__ __forceinline__ int64 v_stride_n() const { return v_stride; }
  __device__ __forceinline__ void rows(int j, const DT* kb, const DT* vb, const DT*& kp, const DT*& vp) const {
    kp = advance_wide(kb, j, int(k_stride) * int(sizeof(DT)));
    vp = advance_wide(vb, j, int(v_stride) * int(sizeof(DT)));
  }
};

// Ragged batch: key j of the request at row kv_start + j of K / V.
template <typename DT>
struct RaggedKV {
  static constexpr bool PAGED = false;
  const KVTensors& t;
  const int& kv_start;  // the request's first key row

  __device__ __forceinline__ const DT* k_base() const {
    return static_cast<const DT*>(t.k) + kv_head_id() * t.k_stride_h + int64(kv_start) * t.k_stride_n;
  }
  __device__ __forceinline__ const DT* v_base() const {
    return static_cast<const DT*>(t.v) + kv_head_id() * t.v_stride_h + int64(kv_start) * t.v_stride_n;
  }
  __device__ __forceinline__ int64 k_stride_n() const { return t.k_stride_n; }
  __device__ __forceinline__ int64 v_stride_n() const { return t.v_stride_n; }
  __device__ __forceinline__ void rows(int j, const DT* kb, const DT* vb, const DT*& kp, const DT*& vp) const {
    kp = advance_wide(kb, j, int(t.k_stride_n) * int(sizeof(DT)));
    vp = advance_wide(vb, j, int(t.v_stride_n) * int(sizeof(DT)));
  }
};

// Paged cache: key j of the request is in page pages.page_indices[first_page + j / page_size],
// slot j % page_size, at base + page·stride_page + slot·stride_n. j / page_size is a multiply-high
// with the host's magic numbers (exact for 0 <= j < 2^31).
template <typename DT>
struct PagedKV {
  static constexpr bool PAGED = true;
  const KVTensors& t;
  const PageTable& pages;
  const int& first_page;  // the request's first entry in pages.page_indices

  __device__ __forceinline__ const DT* k_base() const { return static_cast<const DT*>(t.k) + kv_head_id() * t.k_stride_h; }
  __device__ __forceinline__ const DT* v_base() const { return static_cast<const DT*>(t.v) + kv_head_id() * t.v_stride_h; }
  __device__ __forceinline__ int64 k_stride_n() const { return t.k_stride_n; }
  __device__ __forceinline__ int64 v_stride_n() const { return t.v_stride_n; }

  // The request's page number of key j (j / page_size).
  __device__ __forceinline__ int page_of(int j) const {
    return int((__umulhi(uint32(j), pages.page_div_m) + uint32(j)) >> pages.page_div_l);
  }
  // Key j's page id, by a volatile non-coherent load: issued where it is written, not sunk to its
  // use (a loader issues it early so its latency hides behind other work).
  __device__ __forceinline__ int fetch_page(int j) const {
    int page;
    asm volatile("ld.global.nc.s32 %0, [%1];\n" : "=r"(page) : "l"(pages.page_indices + first_page + page_of(j)));
    return page;
  }
  // Offsets of key j's rows given its page id.
  __device__ __forceinline__ void row_offsets(int page, int j, int64& ko, int64& vo) const {
    const int slot = j - page_of(j) * pages.page_size;
    ko = page * pages.k_stride_page + slot * t.k_stride_n;
    vo = page * pages.v_stride_page + slot * t.v_stride_n;
  }
  // (32-bit strides: PagedKVCache.validate keeps the page stride and page_size x the token stride
  // below 2^31 elements, so only page x page stride needs 64 bits.)
  __device__ __forceinline__ void rows(int j, const DT* kb, const DT* vb, const DT*& kp, const DT*& vp) const {
    const int pg = page_of(j);
    const int page = pages.page_indices[first_page + pg];
    const int slot = j - pg * pages.page_size;
    constexpr int B = int(sizeof(DT));
    kp = advance_wide(advance_wide(kb, slot, int(t.k_stride_n) * B), page, int(pages.k_stride_page) * B);
    vp = advance_wide(advance_wide(vb, slot, int(t.v_stride_n) * B), page, int(pages.v_stride_page) * B);
  }
};

}  // namespace flashinfer
