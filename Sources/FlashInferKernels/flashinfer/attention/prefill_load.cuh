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
#include <flashinfer/attention/kv.cuh>
#include <flashinfer/attention/prefill_traits.cuh>
#include <flashinfer/attention/pos_enc.cuh>
#include <flashinfer/core/cp_async.cuh>
#include <flashinfer/core/vec_io.cuh>

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
// (FP8 K/V: `tile` is the fp8 staging tile, kv_load_offset.)
template <typename T>
__device__ __forceinline__ void load_kv_tile(const typename T::KV_DT* head, int64 stride_n, typename T::KV_DT* tile,
                                             int k0, int kv_len) {
  constexpr int ROWS_PER_PASS = T::NUM_THREADS / T::KV_CHUNKS;
  const int tid = (threadIdx.x & ~31) + mma::lane_id();
  const int row0 = tid / T::KV_CHUNKS, c = tid % T::KV_CHUNKS;
  const int rows_left = kv_len - k0 - row0;  // pass `it` is valid while it·ROWS_PER_PASS < rows_left
  const typename T::KV_DT* src = head + (k0 + row0) * stride_n + c * T::KV_CHUNK_ELEMS;
#pragma unroll
  for (int it = 0; it < T::CTA_KV / ROWS_PER_PASS; ++it) {
    const bool valid = it * ROWS_PER_PASS < rows_left;
    cp_async::copy_16(mma::smem_u32(tile + kv_load_offset<T>(row0 + it * ROWS_PER_PASS, c)),
                      valid ? src : head, valid);
    src += ROWS_PER_PASS * stride_n;
  }
}

// Tile loaders: how a CTA's K and V tiles reach shared memory, over a KV policy of kv.cuh (which
// says where each key lives). prefill_cta calls:
//   load(k_tile, v_tile, stage, k0, kv_len, active): issues the K tile (keys k0 ..< k0 + CTA_KV of
//     the kv head, zeros from kv_len on) into k_tile (K/V stage `stage`), commits a cp.async group,
//     issues the V tile and commits again; with !active only the two (empty) commits, so the
//     pipeline's group count stays fixed.
//   PREPARED: the loader also has prepare(stage, k0, kv_len, active), which resolves the rows of a
//     tile ahead of its load (at least one __syncthreads between the two; see PagedTiles), split
//     into fetch() and store().

// Keys in runs of rows (ContiguousKV, RaggedKV): load_kv_tile from the policy's base and stride.
// The base is rebuilt per tile (RaggedKV reads it from the parameters): no pointer stays live
// across the kv loop.
template <typename T, typename KV>
struct RowTiles {
  using DT = typename T::KV_DT;
  static constexpr bool PREPARED = false;
  KV kv;

  __device__ __forceinline__ void load(DT* k_tile, DT* v_tile, int, int k0, int kv_len, bool active) const {
    if (active) load_kv_tile<T>(kv.k_base(), kv.k_stride_n(), k_tile, k0, kv_len);
    cp_async::commit();
    if (active) load_kv_tile<T>(kv.v_base(), kv.v_stride_n(), v_tile, k0, kv_len);
    cp_async::commit();
  }

  // K (kv_idx 0) or V (1) alone, one commit group.
  __device__ __forceinline__ void load_one(int kv_idx, DT* tile, int, int k0, int kv_len, bool active) const {
    if (active) {
      if (kv_idx == 0) {
        load_kv_tile<T>(kv.k_base(), kv.k_stride_n(), tile, k0, kv_len);
      } else {
        load_kv_tile<T>(kv.v_base(), kv.v_stride_n(), tile, k0, kv_len);
      }
    }
    cp_async::commit();
  }
};

// Keys in pages (PagedKV). A tile's rows are resolved once, not by every thread that copies a
// chunk of them: prepare() has thread t < CTA_KV read row t's page id and store the row's K and V
// element offsets in a shared table [2 stages][CTA_KV][K, V]; load() then reads one offset per row
// it copies. The kernel prepares tile j + 2 at the end of iteration j, so the table entry is
// written one barrier after its previous reader (tile j's loads) and read one barrier after it is
// written. Rows at or past kv_len read no page id (the table ends there): offset 0, and their
// chunks land as zeros.
template <typename T, typename KV>
struct PagedTiles {
  using DT = typename T::KV_DT;
  static constexpr bool PREPARED = true;
  static_assert(KV::PAGED, "a paged KV policy");
  static_assert(T::CTA_KV <= T::NUM_THREADS, "one thread per row of a kv tile");
  KV kv;

  struct Table {
    int64 off[T::KV_STAGES][T::CTA_KV][2];  // [stage][row][K, V] element offsets from the kv head's element 0
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
    return kv.fetch_page(j);
  }

  // Row t's K and V offsets into the table's stage from the page id fetch() returned.
  __device__ __forceinline__ void store(int stage, int k0, bool active, int page) const {
    const int t = threadIdx.x;
    if (!active || t >= T::CTA_KV) return;
    int64 ko = 0, vo = 0;
    if (page >= 0) kv.row_offsets(page, k0 + t, ko, vo);
    table().off[stage][t][0] = ko;
    table().off[stage][t][1] = vo;
  }

  __device__ __forceinline__ void prepare(int stage, int k0, int kv_len, bool active) const {
    store(stage, k0, active, fetch(k0, kv_len, active));
  }

  // One tile of K (kv = 0) or V (kv = 1): the thread's rows as load_kv_tile maps them.
  __device__ __forceinline__ void load_tile(const DT* base, int kv_idx, DT* tile, int stage, int k0, int kv_len) const {
    constexpr int ROWS_PER_PASS = T::NUM_THREADS / T::KV_CHUNKS;
    const int tid = (threadIdx.x & ~31) + mma::lane_id();
    const int row0 = tid / T::KV_CHUNKS, c = tid % T::KV_CHUNKS;
    const int rows_left = kv_len - k0 - row0;  // pass `it` is valid while it·ROWS_PER_PASS < rows_left
    const DT* head = base + c * T::KV_CHUNK_ELEMS;
    // All of the thread's row offsets first, then the copies: an LDGSTS issued right after an LDS
    // gets three dummy shared loads from ptxas (seen in the SASS: `@!PT LDS RZ, [RZ]` ×3 before
    // each predicated LDGSTS when the two were interleaved).
    constexpr int PASSES = T::CTA_KV / ROWS_PER_PASS;
    int64 off[PASSES];
#pragma unroll
    for (int it = 0; it < PASSES; ++it) off[it] = mma::ld_shared_s64(&table().off[stage][row0 + it * ROWS_PER_PASS][kv_idx]);
#pragma unroll
    for (int it = 0; it < PASSES; ++it) {
      const int row = row0 + it * ROWS_PER_PASS;
      cp_async::copy_16(mma::smem_u32(tile + kv_load_offset<T>(row, c)), head + off[it], it * ROWS_PER_PASS < rows_left);
    }
  }

  __device__ __forceinline__ void load(DT* k_tile, DT* v_tile, int stage, int k0, int kv_len, bool active) const {
    if (active) load_tile(kv.k_base(), 0, k_tile, stage, k0, kv_len);
    cp_async::commit();
    if (active) load_tile(kv.v_base(), 1, v_tile, stage, k0, kv_len);
    cp_async::commit();
  }

  // K (kv_idx 0) or V (1) alone, one commit group.
  __device__ __forceinline__ void load_one(int kv_idx, DT* tile, int stage, int k0, int kv_len, bool active) const {
    if (active) load_tile(kv_idx == 0 ? kv.k_base() : kv.v_base(), kv_idx, tile, stage, k0, kv_len);
    cp_async::commit();
  }
};

// The tile loader of a KV policy.
template <typename T, typename KV>
__device__ __forceinline__ auto tiles(const KV& kv) {
  if constexpr (KV::PAGED) {
    return PagedTiles<T, KV>{kv};
  } else {
    return RowTiles<T, KV>{kv};
  }
}

// FP8 K/V: a landed staging tile (fp8 [CTA_KV][HEAD_DIM], unswizzled) into the DT tile the mma
// path reads (swizzled), exactly. Plain shared loads and stores (visible after the caller's next
// __syncthreads). Rows past kv_len were zero-filled by cp.async and stay zeros.
template <typename T>
__device__ __forceinline__ void convert_kv_tile(const typename T::KV_DT* staging, typename T::DT* tile) {
#pragma unroll
  for (int it = 0; it < T::CTA_KV * T::KV_CHUNKS / T::NUM_THREADS; ++it) {
    const int idx = threadIdx.x + it * T::NUM_THREADS;
    const int row = idx / T::KV_CHUNKS, c = idx % T::KV_CHUNKS;
    const uint4 raw = *reinterpret_cast<const uint4*>(staging + row * T::HEAD_DIM + c * 16);
    uint4 lo, hi;
    vec_io::fp8x16_to<typename T::KV_DT, typename T::DT>(raw, lo, hi);
    *reinterpret_cast<uint4*>(tile + swizzle<T::CHUNKS>(row, 2 * c)) = lo;
    *reinterpret_cast<uint4*>(tile + swizzle<T::CHUNKS>(row, 2 * c + 1)) = hi;
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
