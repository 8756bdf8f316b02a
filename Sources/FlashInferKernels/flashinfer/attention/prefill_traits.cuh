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
#include <flashinfer/params.h>

namespace flashinfer {

// The parameters of single prefill and of batch prefill / append (one CTA = one work item of the
// plan × one kv head): declared, with their fields, in flashinfer/params.h (read by NVRTC and by
// Swift, which fills them in CUDAPrefill.swift and CUDABatchPrefill.swift).
using PrefillParams = ::FIPrefillParams;
using BatchPrefillParams = ::FIBatchPrefillParams;

// FP8 K/V (KV_DT e4m3 / e5m2, q and the output f16 / bf16): K and V tiles land by cp.async in
// fp8 staging buffers (a STAGES ring of [CTA_KV][HEAD_DIM] bytes, unswizzled), and each landed
// tile is converted (exactly) into one DT tile that the mma path reads as it reads a 16-bit tile;
// so the FP8 kernel has one DT K tile and one DT V tile instead of a ring of them:
//   Q [CTA_Q][D] DT | K [CTA_KV][D] DT | V [CTA_KV][D] DT | K8 [KV_STAGES][CTA_KV][D] | V8 [KV_STAGES][CTA_KV][D]
// The fp8 ring is KV_STAGES deep: 3 for the 64-row tile (decode-like work, bound by how many bytes
// are in flight: two fp8 tiles ahead are as many bytes as one 16-bit tile), 2 for the 128-row tile
// (compute-bound prefill; a third stage would leave one CTA per SM). k_scale and v_scale are
// applied by the variant's parameters (sm_scale, v_scale), not to the tiles.
//
// Tile geometry. DT: half or nv_bfloat16 (q, the output, and K/V as the mma reads them); KV_DT: K/V
// as stored (DT, or fp8). MMA_Q: m16 tiles per warp (2 → 32 rows per warp, so
// every K/V fragment read from shared memory feeds two mma). CTA_KV: keys per loaded tile;
// KV_SUB: keys per compute sub-tile. Variant: AttentionVariant<...>.
// KV_WARPS_: 1, the warps split the rows (warp w owns rows w·WARP_ROWS ..); 4, the decode-like
// 16-row tile (upstream's CTA_TILE_Q 16 with NUM_WARPS_KV 4): every warp owns the same 16 rows and
// takes every KV_WARPS-th sub-tile of each kv tile (its own online-softmax state), and the warps'
// states are merged through shared memory before the output (prefill.cuh, merge_kv_warps). For a
// few packed rows (decode's GQA group) a 64-row tile would leave 3 of 4 warps idle and one warp's
// mma chain setting the pace; this one spreads the keys over the four.
template <typename DT_, int HEAD_DIM_, int MMA_Q_, int CTA_KV_, int KV_SUB_, typename Variant_, typename KV_DT_ = DT_,
          int KV_WARPS_ = 1>
struct PrefillTraits {
  using DT = DT_;
  using KV_DT = KV_DT_;
  static constexpr bool KV_FP8 = sizeof(KV_DT_) == 1;
  using Variant = Variant_;
  static constexpr int HEAD_DIM = HEAD_DIM_;
  static constexpr int NUM_WARPS = 4;
  static constexpr int NUM_THREADS = NUM_WARPS * 32;
  static constexpr int MMA_Q = MMA_Q_;
  static constexpr int KV_WARPS = KV_WARPS_;             // warps sharing one set of rows
  static constexpr int WARP_ROWS = 16 * MMA_Q;           // packed rows per warp
  static constexpr int CTA_Q = NUM_WARPS / KV_WARPS * WARP_ROWS;  // packed rows per CTA
  static constexpr int CTA_KV = CTA_KV_;                 // keys per loaded kv tile
  static constexpr int KV_SUB = KV_SUB_;                 // keys per compute sub-tile
  static constexpr int SUBS = CTA_KV / KV_SUB;           // sub-tiles per kv tile
  static constexpr int STAGES = 2;                       // K (and V) tiles in shared memory
  static constexpr int MMA_D = HEAD_DIM / 16;            // k16 steps of q·k, d16 steps of p·v
  static constexpr int MMA_KV = KV_SUB / 16;             // k16 steps of p·v, n16 steps of q·k (per sub-tile)
  static constexpr int CHUNKS = HEAD_DIM / 8;            // 16-byte chunks per row
  static constexpr int HALF_CHUNKS = CHUNKS / 2;         // RoPE partners are HALF_CHUNKS apart

  static constexpr int KV_CHUNKS = HEAD_DIM * int(sizeof(KV_DT)) / 16;  // 16-byte chunks per stored K/V row
  static constexpr int KV_CHUNK_ELEMS = 16 / int(sizeof(KV_DT));

  static constexpr int Q_ELEMS = CTA_Q * HEAD_DIM;
  static constexpr int KV_TILE_ELEMS = CTA_KV * HEAD_DIM;
  // DT K (and V) tiles in shared memory: the 16-row tile over 128 keys keeps one K and one V tile
  // (SINGLE_BUFFER: K[j+1] loads while tile j's P·V runs, V[j+1] while tile j+1's S runs).
  static constexpr bool SINGLE_BUFFER = !KV_FP8 && KV_WARPS_ > 1 && CTA_KV_ > 64;
  static constexpr int KV_BUFS = KV_FP8 || SINGLE_BUFFER ? 1 : STAGES;
  static constexpr int KV_STAGES = KV_FP8 ? (CTA_Q <= 64 ? 3 : 2) : STAGES;  // depth of the loaders' ring
  static constexpr int SMEM_ELEMS = Q_ELEMS + 2 * KV_BUFS * KV_TILE_ELEMS;  // DT elements
  static constexpr int STAGING_BYTES = KV_FP8 ? 2 * KV_STAGES * KV_TILE_ELEMS : 0;  // the fp8 rings
  static constexpr int SMEM_BYTES = SMEM_ELEMS * int(sizeof(DT)) + STAGING_BYTES;

  static_assert(sizeof(DT) == 2, "f16 / bf16 inputs only");
  static_assert(sizeof(KV_DT) == 2 || sizeof(KV_DT) == 1, "K/V: q's dtype or fp8");
  static_assert(NUM_THREADS % KV_CHUNKS == 0 && (CTA_KV * KV_CHUNKS) % NUM_THREADS == 0, "stored K/V tile divides among threads");
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
  static_assert(KV_WARPS == 1 || (KV_WARPS == NUM_WARPS && MMA_Q == 1 && SUBS % KV_WARPS == 0 && !KV_FP8),
                "the 16-row tile: 4 warps over the sub-tiles of a 16-bit K/V tile");
  static_assert(!SINGLE_BUFFER || (SUBS == KV_WARPS && !Variant::USE_ROPE),
                "the single-buffered 16-row tile: one sub-tile per warp per kv tile, no RoPE on the fly");
  // The 16-row tile's merge stages every thread's O, m and d in the K/V region.
  static_assert(KV_WARPS == 1 || NUM_THREADS * (8 * MMA_D + 4) * 4 <= 2 * KV_BUFS * KV_TILE_ELEMS * int(sizeof(DT)),
                "the warps' states fit the K/V tiles' shared memory");
};

// The first packed row (within the CTA's tile) of this thread's warp.
template <typename T>
__device__ __forceinline__ int warp_row0() {
  if constexpr (T::KV_WARPS > 1) {
    return 0;
  } else {
    return int(threadIdx.x >> 5) * T::WARP_ROWS;
  }
}

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][CHUNKS·8] tile. The chunk index
// is XORed with row % 8, so the 8 row addresses of one ldmatrix phase (8 rows, one logical chunk)
// and the 8 chunks of one row (cp.async, output) fall in 8 different bank groups.
template <int CHUNKS>
__device__ __forceinline__ int swizzle(int row, int chunk) {
  return row * (CHUNKS * 8) + ((chunk ^ (row & 7)) << 3);
}

// Element offset where a loader puts 16-byte chunk `chunk` of stored row `row`: the swizzled DT
// tile, or for fp8 the unswizzled staging tile (read once, by convert_kv_tile).
template <typename T>
__device__ __forceinline__ int kv_load_offset(int row, int chunk) {
  if constexpr (T::KV_FP8) {
    return row * T::HEAD_DIM + chunk * T::KV_CHUNK_ELEMS;
  } else {
    return swizzle<T::CHUNKS>(row, chunk);
  }
}

}  // namespace flashinfer
