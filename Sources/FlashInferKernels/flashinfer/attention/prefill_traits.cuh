// Single-request prefill/append on tensor cores (FlashAttention-2 style, mma.sync m16n8k16):
// the parameter struct, the compile-time tile geometry and the shared-memory layout.
//
// Geometry (one CTA = NUM_WARPS warps = one tile of CTA_Q packed query rows × one kv head):
//   packed row r of kv head h_kv  ↔  query qo = r / group, qo head h_kv·group + r % group
//   (GQA "head-query fusion": the group's heads share every K/V tile loaded to shared memory)
//   warp w owns packed rows [w·WARP_ROWS, (w+1)·WARP_ROWS) of the tile: MMA_Q m16 tiles.
//   The kv axis is loaded in tiles of CTA_KV keys (STAGES K and V buffers in flight) and computed
//   in sub-tiles of KV_SUB keys: S = Q·Kᵀ, softmax and O += P·V per sub-tile, so the S
//   accumulators (MMA_Q·KV_SUB/8·4 floats) stay small beside O (MMA_Q·HEAD_DIM/8·4 floats).
//
// Shared memory (dtype elements, rows of HEAD_DIM, 16-byte chunks XOR-swizzled, see swizzle()):
//   Q [CTA_Q][HEAD_DIM]  |  K [STAGES][CTA_KV][HEAD_DIM]  |  V [STAGES][CTA_KV][HEAD_DIM]
//   The Q rows of a warp are read only by that warp; the epilogue reuses them to stage the output.
#pragma once
#include <flashinfer/attention/variants.cuh>
#include <flashinfer/core/mma.cuh>

namespace flashinfer {

// Filled by the Swift launcher (Backend/CUDA/CUDAPrefill.swift) field by field, in this order.
struct PrefillParams {
  const void* q;        // [qo_len, num_qo_heads, head_dim], strides q_stride_n / q_stride_h
  const void* k;        // NHD [kv_len, num_kv_heads, head_dim] or HND [num_kv_heads, kv_len, head_dim]
  const void* v;        // as k (its own strides)
  void* o;              // [qo_len, num_qo_heads, head_dim], strides o_stride_n / o_stride_h
  float* lse;           // [qo_len, num_qo_heads] base-2 log-sum-exp, or null
  int64 q_stride_n;     // elements between consecutive queries
  int64 q_stride_h;     // elements between consecutive query heads
  int64 k_stride_n;     // elements between consecutive keys
  int64 k_stride_h;     // elements between consecutive kv heads
  int64 v_stride_n;
  int64 v_stride_h;
  int64 o_stride_n;
  int64 o_stride_h;
  VariantParams variant;  // scale, soft cap, RoPE, qo_len, kv_len, window, num_qo_heads
  int num_kv_heads;
  int group_size;         // num_qo_heads / num_kv_heads
};

// Batch prefill / append (Backend/CUDA/CUDABatchPrefill.swift fills it, field by field, in this
// order). One CTA = one work item of the plan (request, q tile, kv chunk) × one kv head:
// grid (work items, num_kv_heads). `base` holds what every request shares:
//   q, o     ragged rows [qo_indptr[B], Hq, D] (request b's queries are rows qo_indptr[b]..)
//   k, v     ragged: rows [kv_total, Hkv, D] / [Hkv, kv_total, D], request b's keys from row kv_starts[b];
//            paged: element 0 of the K / V cache, k_stride_n = token (slot) stride, k_stride_h = head stride
//   lse      [qo_indptr[B], Hq] or null
//   variant  scale, soft cap, RoPE, window, num_qo_heads; its qo_len / kv_len are per request (below)
struct BatchPrefillParams {
  PrefillParams base;
  const int* request_indices;  // [items] request of each work item
  const int* qo_tile_indices;  // [items] q tile: packed rows qo_tile·CTA_Q.. of the request
  const int* kv_tile_indices;  // [items] kv chunk: keys kv_tile·kv_chunk ..< +kv_chunk of the request
  const int* qo_indptr;        // [B + 1] query rows of the requests
  const int* kv_lens;          // [B] keys of each request (appended ones included)
  const int* kv_starts;        // [B] ragged: first key row; paged: first entry in page_indices
  const int* page_indices;     // paged: the page table's page ids (CSR indices); ragged: null
  const int* o_indptr;         // [B] split: request b's first partial row; else null
  void* tmp_o;                 // split: partial outputs [o_indptr[B], Hq, D], row (b, qo i, chunk c) =
                               //   o_indptr[b] + i·chunks_b + c; null when the plan does not split
  float* tmp_lse;              // split: partial LSE [o_indptr[B], Hq]
  int64 k_stride_page;         // paged: elements between consecutive pages of K
  int64 v_stride_page;         // paged: of V
  int page_size;               // paged: tokens per page (1 for ragged)
  uint32 page_div_m;           // j / page_size = (umulhi(j, page_div_m) + j) >> page_div_l, j < 2^31
  int page_div_l;
  int kv_chunk;                // keys per kv chunk (chunks_b = max(ceil(kv_len_b / kv_chunk), 1))
};

// Tile geometry. DT: half or nv_bfloat16. MMA_Q: m16 tiles per warp (2 → 32 rows per warp, so
// every K/V fragment read from shared memory feeds two mma). CTA_KV: keys per loaded tile;
// KV_SUB: keys per compute sub-tile. Variant: AttentionVariant<...>.
template <typename DT_, int HEAD_DIM_, int MMA_Q_, int CTA_KV_, int KV_SUB_, typename Variant_>
struct PrefillTraits {
  using DT = DT_;
  using Variant = Variant_;
  static constexpr int HEAD_DIM = HEAD_DIM_;
  static constexpr int NUM_WARPS = 4;
  static constexpr int NUM_THREADS = NUM_WARPS * 32;
  static constexpr int MMA_Q = MMA_Q_;
  static constexpr int WARP_ROWS = 16 * MMA_Q;           // packed rows per warp
  static constexpr int CTA_Q = NUM_WARPS * WARP_ROWS;    // packed rows per CTA
  static constexpr int CTA_KV = CTA_KV_;                 // keys per loaded kv tile
  static constexpr int KV_SUB = KV_SUB_;                 // keys per compute sub-tile
  static constexpr int SUBS = CTA_KV / KV_SUB;           // sub-tiles per kv tile
  static constexpr int STAGES = 2;                       // K (and V) tiles in shared memory
  static constexpr int MMA_D = HEAD_DIM / 16;            // k16 steps of q·k, d16 steps of p·v
  static constexpr int MMA_KV = KV_SUB / 16;             // k16 steps of p·v, n16 steps of q·k (per sub-tile)
  static constexpr int CHUNKS = HEAD_DIM / 8;            // 16-byte chunks per row
  static constexpr int HALF_CHUNKS = CHUNKS / 2;         // RoPE partners are HALF_CHUNKS apart

  static constexpr int Q_ELEMS = CTA_Q * HEAD_DIM;
  static constexpr int KV_TILE_ELEMS = CTA_KV * HEAD_DIM;
  static constexpr int SMEM_ELEMS = Q_ELEMS + 2 * STAGES * KV_TILE_ELEMS;
  static constexpr int SMEM_BYTES = SMEM_ELEMS * int(sizeof(DT));

  static_assert(sizeof(DT) == 2, "f16 / bf16 inputs only");
  static_assert(HEAD_DIM == 64 || HEAD_DIM == 128 || HEAD_DIM == 256, "head_dim 64, 128 or 256");
  static_assert(MMA_Q == 1 || MMA_Q == 2, "16 or 32 rows per warp");
  static_assert(KV_SUB % 16 == 0 && KV_SUB >= 16, "sub-tile of whole k16 steps");
  static_assert(CTA_KV % KV_SUB == 0, "kv tile of whole sub-tiles");
  static_assert(CHUNKS >= 8, "the XOR swizzle needs at least 8 chunks per row");
  static_assert(NUM_THREADS % CHUNKS == 0, "each thread copies a fixed chunk column");
  static_assert((CTA_Q * CHUNKS) % NUM_THREADS == 0, "Q tile divides among threads");
  static_assert((CTA_KV * CHUNKS) % NUM_THREADS == 0, "K/V tile divides among threads");
  static_assert((CTA_KV * HALF_CHUNKS) % NUM_THREADS == 0, "RoPE on K divides among threads");
  static_assert((CTA_Q * HALF_CHUNKS) % NUM_THREADS == 0, "RoPE on Q divides among threads");
  static_assert((WARP_ROWS * CHUNKS) % 32 == 0, "output rows of a warp divide among lanes");
  static_assert(SMEM_BYTES <= 227 * 1024, "shared memory of one CTA");
};

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][CHUNKS·8] tile. The chunk index
// is XORed with row % 8, so the 8 row addresses of one ldmatrix phase (8 rows, one logical chunk)
// and the 8 chunks of one row (cp.async, output) fall in 8 different bank groups.
template <int CHUNKS>
__device__ __forceinline__ int swizzle(int row, int chunk) {
  return row * (CHUNKS * 8) + ((chunk ^ (row & 7)) << 3);
}

}  // namespace flashinfer
