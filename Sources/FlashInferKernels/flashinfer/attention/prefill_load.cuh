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
#include <flashinfer/core/cp_async.cuh>

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
// end are zeros). `q` points at query 0 of the request. Joins the caller's next commit group.
template <typename T>
__device__ __forceinline__ void load_q(const PrefillParams& p, const typename T::DT* q, typename T::DT* q_smem,
                                       int r0, int kv_head, int packed_len) {
  using DT = typename T::DT;
  const int c = threadIdx.x % T::CHUNKS;
#pragma unroll
  for (int it = 0; it < T::CTA_Q * T::CHUNKS / T::NUM_THREADS; ++it) {
    const int row = threadIdx.x / T::CHUNKS + it * (T::NUM_THREADS / T::CHUNKS);
    const int pr = r0 + row;
    const bool valid = pr < packed_len;
    const int qo = pr / p.group_size, head = kv_head * p.group_size + pr % p.group_size;
    const DT* src = valid ? q + qo * p.q_stride_n + head * p.q_stride_h + c * 8 : q;
    cp_async::copy_16(mma::smem_u32(q_smem + swizzle<T::CHUNKS>(row, c)), src, valid);
  }
}

// Q tile through registers: each query rotated at its position qo + kv_len − qo_len (vp's lengths)
// when the variant uses RoPE, then the variant's query_transform when it has one. Plain loads and
// stores (visible after the caller's next __syncthreads). Taken only by variants with RoPE or a
// query transform; the others load Q with cp.async (load_q).
template <typename T>
__device__ __forceinline__ void load_q_rope(const PrefillParams& p, const VariantParams& vp, const typename T::DT* q,
                                            typename T::DT* q_smem, int r0, int kv_head, int packed_len) {
  using DT = typename T::DT;
  using Variant = typename T::Variant;
  const int c = threadIdx.x % T::HALF_CHUNKS;
  float freq[8];
  if constexpr (Variant::USE_ROPE) rope_chunk_freqs<T::HEAD_DIM>(c, vp, freq);
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
      if constexpr (Variant::USE_ROPE) rope_rotate_chunk_pair<DT>(lo, hi, freq, qo + vp.kv_len - vp.qo_len);
      if constexpr (Variant::TRANSFORMS_QUERY) {
        const Variant variant(vp);
        DT* a = reinterpret_cast<DT*>(&lo);
        DT* b = reinterpret_cast<DT*>(&hi);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          a[e] = from_float<DT>(variant.query_transform(to_float(a[e]), head, c * 8 + e));
          b[e] = from_float<DT>(variant.query_transform(to_float(b[e]), head, (c + T::HALF_CHUNKS) * 8 + e));
        }
      }
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
    cp_async::copy_16(mma::smem_u32(tile + swizzle<T::CHUNKS>(row0 + it * ROWS_PER_PASS, c)),
                      valid ? src : head, valid);
    src += ROWS_PER_PASS * stride_n;
  }
}

// KV access policies: where a CTA's keys and values come from.
//   load(k_tile, v_tile, stage, k0, kv_len, active): issues the K tile (keys k0 ..< k0 + CTA_KV of
//     the kv head, zeros from kv_len on) into k_tile (K/V stage `stage`), commits a cp.async group,
//     issues the V tile and commits again; with !active only the two (empty) commits, so the
//     pipeline's group count stays fixed.
//   PREPARED: the policy also has prepare(stage, k0, kv_len, active), which resolves the rows of a
//     tile ahead of its load (at least one __syncthreads between the two; see PagedKV).

// Contiguous rows: key j at head + j·stride_n (the single-request kernel).
template <typename T>
struct ContiguousKV {
  using DT = typename T::DT;
  static constexpr bool PREPARED = false;
  const DT* k_head;  // key 0 of the kv head
  const DT* v_head;
  int64 k_stride_n;  // elements between consecutive keys
  int64 v_stride_n;

  __device__ __forceinline__ void load(DT* k_tile, DT* v_tile, int, int k0, int kv_len, bool active) const {
    if (active) load_kv_tile<T>(k_head, k_stride_n, k_tile, k0, kv_len);
    cp_async::commit();
    if (active) load_kv_tile<T>(v_head, v_stride_n, v_tile, k0, kv_len);
    cp_async::commit();
  }
};

// The batch policies hold no pointer across the kv loop, where the plain D128 kernel has no
// register to spare (255): head pointers are rebuilt per tile from the parameters, the kv head
// (kv_head_id, not hoistable) and the request's first row or page-table entry, which the batch
// kernel keeps in shared memory (`kv_start`, a reference).

// blockIdx.y (the kv head), read so that the compiler cannot hoist what depends on it out of the
// kv loop (as mma::lane_id).
__device__ __forceinline__ int kv_head_id() {
  int h;
  asm volatile("mov.u32 %0, %%ctaid.y;\n" : "=r"(h));
  return h;
}

// Ragged batch: key j of the request at row kv_start + j of K / V (load_kv_tile's loads).
template <typename T>
struct RaggedKV {
  using DT = typename T::DT;
  static constexpr bool PREPARED = false;
  const BatchPrefillParams& bp;
  const int& kv_start;  // the request's first key row

  __device__ __forceinline__ void load(DT* k_tile, DT* v_tile, int, int k0, int kv_len, bool active) const {
    const PrefillParams& p = bp.base;
    if (active) {
      const DT* k_head = static_cast<const DT*>(p.k) + kv_head_id() * p.k_stride_h + int64(kv_start) * p.k_stride_n;
      load_kv_tile<T>(k_head, p.k_stride_n, k_tile, k0, kv_len);
    }
    cp_async::commit();
    if (active) {
      const DT* v_head = static_cast<const DT*>(p.v) + kv_head_id() * p.v_stride_h + int64(kv_start) * p.v_stride_n;
      load_kv_tile<T>(v_head, p.v_stride_n, v_tile, k0, kv_len);
    }
    cp_async::commit();
  }
};

// Paged cache: key j of the request is in page pages[j / page_size], slot j % page_size, at
// head + page·stride_page + slot·stride_n, pages = page_indices + kv_start.
//
// A tile's rows are resolved once, not by every thread that copies a chunk of them: prepare() has
// thread t < CTA_KV read row t's page id (j / page_size by multiply-high: page_div_m, page_div_l
// from the host, exact for j < 2^31) and store the row's K and V element offsets in a shared table
// [2 stages][CTA_KV][K, V]; load() then reads one offset per row it copies. The kernel prepares
// tile j + 2 at the end of iteration j, so the table entry is written one barrier after its previous
// reader (tile j's loads) and read one barrier after it is written. Rows at or past kv_len read
// no page id (the table ends there): offset 0, and their chunks land as zeros.
template <typename T>
struct PagedKV {
  using DT = typename T::DT;
  static constexpr bool PREPARED = true;
  static_assert(T::CTA_KV <= T::NUM_THREADS, "one thread per row of a kv tile");
  const BatchPrefillParams& bp;
  const int& kv_start;  // the request's first entry in bp.page_indices

  struct Table {
    int64 off[2][T::CTA_KV][2];  // [stage][row][K, V] element offsets from the kv head's element 0
  };
  __device__ __forceinline__ static Table& table() {
    __shared__ Table t;
    return t;
  }

  // Row t's page id for the tile at k0 (thread t < CTA_KV; −1 for other threads and rows past the
  // end). Split from store() so that the kernel issues the load at the top of an iteration and
  // stores the offsets at its end: the global load's latency hides behind the tile's math instead of
  // stalling the next barrier (measured: paged P3 12 % behind ragged with the load at the end).
  __device__ __forceinline__ int fetch(int k0, int kv_len, bool active) const {
    const int t = threadIdx.x, j = k0 + t;
    if (!active || t >= T::CTA_KV || j >= kv_len) return -1;
    const int pi = int((__umulhi(uint32(j), bp.page_div_m) + uint32(j)) >> bp.page_div_l);
    // volatile: issued here, before the tile's math (also volatile asm), not sunk to its use.
    int page;
    asm volatile("ld.global.nc.s32 %0, [%1];\n" : "=r"(page) : "l"(bp.page_indices + kv_start + pi));
    return page;
  }

  // Row t's K and V offsets into the table's stage from the page id fetch() returned.
  __device__ __forceinline__ void store(int stage, int k0, bool active, int page) const {
    const int t = threadIdx.x;
    if (!active || t >= T::CTA_KV) return;
    const PrefillParams& p = bp.base;
    int64 ko = 0, vo = 0;
    if (page >= 0) {
      const int j = k0 + t;
      const int pi = int((__umulhi(uint32(j), bp.page_div_m) + uint32(j)) >> bp.page_div_l);
      const int slot = j - pi * bp.page_size;
      ko = page * bp.k_stride_page + slot * p.k_stride_n;
      vo = page * bp.v_stride_page + slot * p.v_stride_n;
    }
    table().off[stage][t][0] = ko;
    table().off[stage][t][1] = vo;
  }

  __device__ __forceinline__ void prepare(int stage, int k0, int kv_len, bool active) const {
    store(stage, k0, active, fetch(k0, kv_len, active));
  }

  // One tile of K (kv = 0) or V (kv = 1): the thread's rows as load_kv_tile maps them.
  __device__ __forceinline__ void load_tile(const void* cache, int64 stride_h, int kv, DT* tile, int stage, int k0,
                                            int kv_len) const {
    constexpr int ROWS_PER_PASS = T::NUM_THREADS / T::CHUNKS;
    const int tid = (threadIdx.x & ~31) + mma::lane_id();
    const int row0 = tid / T::CHUNKS, c = tid % T::CHUNKS;
    const int rows_left = kv_len - k0 - row0;  // pass `it` is valid while it·ROWS_PER_PASS < rows_left
    const DT* head = static_cast<const DT*>(cache) + kv_head_id() * stride_h + c * 8;
    // All of the thread's row offsets first, then the copies: an LDGSTS issued right after an LDS
    // gets three dummy shared loads from ptxas (seen in the SASS: `@!PT LDS RZ, [RZ]` ×3 before
    // each predicated LDGSTS when the two were interleaved).
    constexpr int PASSES = T::CTA_KV / ROWS_PER_PASS;
    int64 off[PASSES];
#pragma unroll
    for (int it = 0; it < PASSES; ++it) off[it] = mma::ld_shared_s64(&table().off[stage][row0 + it * ROWS_PER_PASS][kv]);
#pragma unroll
    for (int it = 0; it < PASSES; ++it) {
      const int row = row0 + it * ROWS_PER_PASS;
      cp_async::copy_16(mma::smem_u32(tile + swizzle<T::CHUNKS>(row, c)), head + off[it], it * ROWS_PER_PASS < rows_left);
    }
  }

  __device__ __forceinline__ void load(DT* k_tile, DT* v_tile, int stage, int k0, int kv_len, bool active) const {
    const PrefillParams& p = bp.base;
    if (active) load_tile(p.k, p.k_stride_h, 0, k_tile, stage, k0, kv_len);
    cp_async::commit();
    if (active) load_tile(p.v, p.v_stride_h, 1, v_tile, stage, k0, kv_len);
    cp_async::commit();
  }
};

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
