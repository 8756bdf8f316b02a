// Single-request decode attention on CUDA cores (memory-bound): one query token per head
// against kv_len keys, with split-KV across CTAs.
//
// Grid (num_chunks, num_kv_heads, head_groups); 128 threads. One CTA reads one KV head's keys
// [chunk_begin, chunk_end) exactly once and serves up to GROUP query heads of its GQA group
// (head_groups > 1 only when the group is larger than 8).
//
// Work layout. A key's HEAD_DIM elements are LANES = HEAD_DIM/8 16-byte chunks; LANES
// consecutive lanes form a "slot" and lane c of a slot always owns chunk c:
//   - it keeps q[h][8c..8c+8) for every head h of the group in registers (float, RoPE'd),
//   - and the output accumulator o[h][8c..8c+8) of its slot.
// The K/V tiles (TILE_KEYS keys) arrive in shared memory through a STAGES-deep cp.async
// pipeline; each slot takes KEYS_PER_SLOT keys of a tile:
//   1. QK:  lane c computes the partial dot of its chunk for each (key, head)   (KEYS·GROUP values)
//   2.      a transpose-reduce across the slot's lanes leaves each (key, head) total in one lane
//           (SlotReduce: ~1 shuffle per value instead of log2(LANES)),
//   3.      that lane turns it into a logit (AttentionVariant::logit, log2 units) and a weight
//           p = exp2(t - m) against the slot's running max m, and stores p in shared memory,
//   4. PV:  lane c reads the slot's p and its V chunk: o[h][8c..] += p[key][h] · v[key][8c..].
// Everything after the pipeline barrier is warp-local (__syncwarp only).
//
// Online softmax with lazy rescaling: a slot keeps its max m per head and only raises it (and
// rescales o and the row sums) when a logit exceeds m by more than RESCALE_THRESHOLD (log2
// units), so p <= 2^8 and the common tile pays no rescale. The final state per slot is exact
// (o, m, d); the slots are merged at the end with state.cuh's fold, and the CTA writes
// either the output (one chunk) or its partial (o in fp32, lse base 2) for decode_merge.cuh.
//
// Sliding window: decode keeps the last window_left+1 keys, so the host starts the KV range at
// kv_begin = max(0, kv_len - 1 - window_left); no per-key window test is needed.
#pragma once
#include <flashinfer/attention/kv.cuh>
#include <flashinfer/attention/pos_enc.cuh>
#include <flashinfer/attention/state.cuh>
#include <flashinfer/attention/variants.cuh>
#include <flashinfer/core/cp_async.cuh>
#include <flashinfer/core/math.cuh>
#include <flashinfer/core/pdl.cuh>
#include <flashinfer/core/timeline.cuh>
#include <flashinfer/core/types.cuh>
#include <flashinfer/core/vec_io.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

// Parameters of one decode launch: declared, with its fields, in flashinfer/params.h (read by
// NVRTC and by Swift, which fills it in CUDADecode.swift and CUDABatchDecode.swift).
using DecodeParams = ::FIDecodeParams;

constexpr int ilog2(int x) { return x <= 1 ? 0 : 1 + ilog2(x / 2); }

// Derived constants of one decode kernel variant.
// Variant: an attention variant (variants.cuh) whose keep() masks nothing but keys past kv_len:
// decode applies the sliding window by starting its key range at the window (kv_begin), so its
// variants have CAUSAL and WINDOW false (one query, the last position: causal keeps every key).
// KVT_: the K/V element type: DT, or fp8 (e4m3 / e5m2; converted to float when read from shared
// memory, with k_scale folded into the softmax scale and v_scale into the epilogue by the host).
// SMEM_REDUCE_: sum the slot's partial dots through shared memory (SmemSlotReduce) instead of by
// shuffles (SlotReduce); FP8 K/V only (see SMEM_REDUCE below).
template <typename DT_, int HEAD_DIM_, int GROUP_, typename Variant_, int STAGES_, int KEYS_PER_SLOT_ = 4,
          bool PAGED_ = false, bool TIMELINE_ = false, typename KVT_ = DT_, bool SMEM_REDUCE_ = false,
          bool FUSED_MERGE_ = false>
struct DecodeTraits {
  using DT = DT_;    // q and the output
  using KVT = KVT_;  // K and V
  using Variant = Variant_;
  static constexpr bool TIMELINE = TIMELINE_;      // per-CTA timestamps (DecodeParams::timeline)
  static constexpr bool PAGED = PAGED_;            // batch decode over a paged cache
  static constexpr int HEAD_DIM = HEAD_DIM_;
  static constexpr int GROUP = GROUP_;             // query heads per CTA (a power of 2, <= 8)
  static constexpr int STAGES = STAGES_;           // cp.async pipeline depth
  static constexpr int THREADS = 128;
  static constexpr int VEC = 16 / int(sizeof(DT));            // elements per 16-byte chunk
  static constexpr int LANES = HEAD_DIM / VEC;                // lanes per slot (one chunk each)
  static constexpr int SLOTS = THREADS / LANES;               // key slots per CTA
  static constexpr int KEYS_PER_SLOT = KEYS_PER_SLOT_;        // keys a slot takes per tile
  static constexpr int TILE_KEYS = SLOTS * KEYS_PER_SLOT;     // keys per pipeline stage
  static constexpr int SCORES = KEYS_PER_SLOT * GROUP;        // (key, head) values per slot per tile
  static constexpr int KV_BYTES = int(sizeof(KVT));           // bytes per K/V element (2, or 1 for fp8)
  static constexpr int ROW_COPIES = HEAD_DIM * KV_BYTES / 16; // 16-byte cp.async chunks per key row
  static constexpr int TILE_BYTES = TILE_KEYS * HEAD_DIM * KV_BYTES;  // one K or V tile
  static constexpr int COPIES = TILE_KEYS * ROW_COPIES / THREADS;     // chunks a thread copies per K (or V) tile
  static constexpr int STAGE_BYTES = 2 * TILE_BYTES;          // K tile then V tile
  static constexpr int PIPE_BYTES = STAGES * STAGE_BYTES;
  static constexpr int OBUF_BYTES = SLOTS * GROUP * HEAD_DIM * 4;  // the epilogue's o, over the pipeline
  static constexpr int PIPE_REGION = PIPE_BYTES > OBUF_BYTES ? PIPE_BYTES : OBUF_BYTES;
  static constexpr int SCORE_BYTES = SLOTS * SCORES * 4;      // [SLOTS][KEYS_PER_SLOT][GROUP] floats
  static constexpr int MAX_BYTES = SLOTS * GROUP * 4;         // [SLOTS][GROUP] floats (epilogue)
  // The slot's partial dots summed through shared memory (SmemSlotReduce) rather than by shuffles:
  // FP8 K/V kernels are instruction-bound (the conversions), and the transpose through shared
  // memory takes about half the instructions of SlotReduce's shuffles and selects. The host
  // chooses it with a register bound that keeps 4 CTAs per SM (CUDADecode.swift, DecodeSpec).
  static constexpr bool SMEM_REDUCE = SMEM_REDUCE_;
  // The split-KV merge folded into the kernel (fused_merge; PAGED split plans). A separate build:
  // in the kernels that never split (D4's), its code changed ptxas' allocation (62 → 110
  // registers for group 1) and cost 12 % (bench/NOTES.md).
  static constexpr bool FUSED_MERGE = FUSED_MERGE_;
  static constexpr int RED_SLOT = LANES * SCORES + 16;        // floats per slot: [LANES][SCORES] + pad
  static constexpr int RED_BYTES = SMEM_REDUCE ? SLOTS * RED_SLOT * 4 : 0;
  static constexpr int SMEM_BYTES = PIPE_REGION + SCORE_BYTES + MAX_BYTES + RED_BYTES;
  static constexpr float RESCALE_THRESHOLD = 8.f;             // log2 units: p <= 256

  static_assert(VEC == 8, "q and the output: 16-bit element types only");
  static_assert(KV_BYTES == 2 || KV_BYTES == 1, "K/V: q's dtype or fp8");
  static_assert(COPIES >= 1 && TILE_KEYS * ROW_COPIES == THREADS * COPIES && THREADS % ROW_COPIES == 0,
                "the K/V tile's chunks divide among threads, a fixed chunk column each");
  static_assert(HEAD_DIM == 64 || HEAD_DIM == 128 || HEAD_DIM == 256, "head_dim 64, 128 or 256");
  static_assert(GROUP == 1 || GROUP == 2 || GROUP == 4 || GROUP == 8, "GROUP is a power of 2 <= 8");
  static_assert(LANES <= 32 && 32 % LANES == 0, "a slot lives inside one warp");
  static_assert(STAGES >= 2, "at least double buffering");
  static_assert(KEYS_PER_SLOT == 2 || KEYS_PER_SLOT == 4 || KEYS_PER_SLOT == 8, "2, 4 or 8 keys per slot");
  static_assert(!Variant::CAUSAL && !Variant::WINDOW, "decode windows by its key range (see above)");
  static_assert(!SMEM_REDUCE || (KV_BYTES == 1 && SCORES % 4 == 0), "the shared-memory reduce: fp8 K/V, whole float4s");
};

// Sums N per-lane values across the LANES lanes of a slot (xor masks < LANES). Afterwards lane l
// holds OWNED totals: v[r] is total number ((l >> DUP_BITS) * OWNED + r). Split rounds send half
// of the values to the partner and keep the other half (about one shuffle per value); when
// N < LANES the remaining DUP_BITS rounds are plain butterflies and 2^DUP_BITS lanes hold the
// same totals.
template <int N, int LANES>
struct SlotReduce {
  static constexpr int OWNED = N >= LANES ? N / LANES : 1;
  static constexpr int SPLIT_ROUNDS = ilog2(N / OWNED);
  static constexpr int DUP_BITS = ilog2(LANES) - SPLIT_ROUNDS;

  static __device__ __forceinline__ void run(float (&v)[N], int lane_in_slot) {
    split_round<0>(v, lane_in_slot);
#pragma unroll
    for (int r = 0; r < DUP_BITS; ++r) {
#pragma unroll
      for (int i = 0; i < OWNED; ++i) v[i] += __shfl_xor_sync(0xffffffffu, v[i], 1 << r);
    }
  }

 private:
  // Round R: lanes with bit (LANES >> (R+1)) set keep the upper half of v[0, 2·HALF), the others
  // the lower half; each receives the half it keeps from its partner and adds. Compile-time
  // indices throughout so v stays in registers.
  template <int R>
  static __device__ __forceinline__ void split_round(float (&v)[N], int lane_in_slot) {
    if constexpr (R < SPLIT_ROUNDS) {
      constexpr int MASK = LANES >> (R + 1);
      constexpr int HALF = N >> (R + 1);
      const bool upper = (lane_in_slot & MASK) != 0;
#pragma unroll
      for (int i = 0; i < HALF; ++i) {
        const float lo = v[i], hi = v[i + HALF];
        const float send = upper ? lo : hi;
        const float keep = upper ? hi : lo;
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, MASK);
      }
      split_round<R + 1>(v, lane_in_slot);
    }
  }
};

// SlotReduce's result through shared memory: each lane stores its N values as N/4 float4s in its
// row of the slot's [LANES][N] buffer (the float4 index XOR-swizzled by lane so that a quarter-warp's
// 16-byte stores hit distinct banks), then sums column f of the LANES rows for each value f it owns
// (the same values as SlotReduce: (lane >> DUP_BITS) * OWNED + r). The slots' buffers are padded by
// 16 floats so that the two slots of a warp (LANES = 16) read different banks. The caller keeps the
// buffer untouched between store() and sum() of all the slot's lanes (a __syncwarp between them and
// before the next store).
template <int N, int LANES>
struct SmemSlotReduce {
  using Base = SlotReduce<N, LANES>;
  static constexpr int OWNED = Base::OWNED;
  static constexpr int QUADS = N / 4;
  static constexpr int ROWS_PER_128B = 32 / N > 1 ? 32 / N : 1;
  static_assert(N % 4 == 0, "whole float4s");
  // The float4 slot of quad q in lane l's row.
  static __device__ __forceinline__ int swizzle(int q, int l) { return q ^ ((l / ROWS_PER_128B) & (QUADS - 1)); }

  static __device__ __forceinline__ void store(const float (&v)[N], float* buf, int lane_in_slot) {
    float4* row = reinterpret_cast<float4*>(buf + lane_in_slot * N);
#pragma unroll
    for (int q = 0; q < QUADS; ++q) row[swizzle(q, lane_in_slot)] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
  }
  static __device__ __forceinline__ void sum(float (&v)[N], const float* buf, int lane_in_slot) {
    const int own_base = (lane_in_slot >> Base::DUP_BITS) * OWNED;
#pragma unroll
    for (int r = 0; r < OWNED; ++r) {
      const int f = own_base + r;
      float acc = 0.f;
#pragma unroll
      for (int l = 0; l < LANES; ++l) acc += buf[l * N + 4 * swizzle(f / 4, l) + f % 4];
      v[r] = acc;
    }
  }
};

// The KV policy of a decode CTA (kv.cuh): the paged cache's pages for batch decode, the request's
// rows of kv head `kv_head` for single decode.
template <class KT>
__device__ __forceinline__ auto decode_kv(const DecodeParams& p, int kv_head, const int& first_page) {
  using DT = typename KT::KVT;
  if constexpr (KT::PAGED) {
    return PagedKV<DT>{p.kv, p.pages, first_page};
  } else {
    return ContiguousKV<DT>::of(p.kv, kv_head);
  }
}

// The fused split-KV merge (FIDecodeParams::merge_counters): called by every CTA of a split
// launch after it wrote its partial. The classic last-block pattern: every thread fences its
// partial's stores, thread 0 counts the CTA in the counter of its (request, kv head, head group);
// the CTA that brings the count to n (the request's chunks) resets the counter, fences, and folds
// the n partials (o fp32, lse base 2; rows first .. first+n−1) into o / lse with decode_merge.cuh's
// fold: the CTA's threads are (split s, head h, lane c) — SPLITS = THREADS / (G·LANES) threads per
// (h, c) take chunks s, s+SPLITS, … with BATCH = 8 chunks' loads in flight (weights 2^(lse_i − m), the
// max raised once per batch), then split 0 folds the SPLITS states and divides once. Partials are
// read with ld.global.cg (L2: other CTAs wrote them; this SM's L1 never cached them).
template <typename KT>
__device__ __noinline__ void fused_merge(const DecodeParams& p, int request, int kv_head, int qo_head0, int heads,
                                         int first, int n) {
  using DT = typename KT::DT;
  constexpr int D = KT::HEAD_DIM, G = KT::GROUP, LANES = KT::LANES, PAIRS = G * LANES, BATCH = 8;
  constexpr int SPLITS = KT::THREADS >= PAIRS ? KT::THREADS / PAIRS : 1;
  constexpr int PER_PASS = KT::THREADS / SPLITS;  // (h, c) pairs per pass over the CTA's threads
  static_assert(KT::THREADS % PAIRS == 0 || PAIRS % KT::THREADS == 0, "whole passes");
  static_assert(SPLITS * PAIRS * 10 * 4 <= KT::SMEM_BYTES, "the fold's states fit the pipeline's shared memory");
  __shared__ int s_last;
  __threadfence();
  __syncthreads();  // every thread's partial is fenced; the epilogue is done with shared memory
  if (threadIdx.x == 0) {
    int* counter = p.merge_counters + (int64(request) * gridDim.y + kv_head) * gridDim.z + blockIdx.z;
    const int done = atomicAdd(counter, 1) + 1;
    s_last = done == n;
    if (done == n) *counter = 0;  // every CTA of this request has counted: ready for the next launch
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  extern __shared__ __align__(16) unsigned char smem[];
  float* s_acc = reinterpret_cast<float*>(smem);  // [SPLITS][PER_PASS][8]
  float* s_m = s_acc + SPLITS * PER_PASS * 8;     // [SPLITS][PER_PASS]
  float* s_d = s_m + SPLITS * PER_PASS;           // [SPLITS][PER_PASS]
  const int num_qo_heads = p.variant.num_qo_heads;
  const int split = int(threadIdx.x) / PER_PASS, slot = int(threadIdx.x) % PER_PASS;
  for (int pass = 0; pass < PAIRS; pass += PER_PASS) {
    const int pair = pass + slot;
    const int h = pair / LANES, cc = pair % LANES;
    const int qo_head = qo_head0 + min(h, heads - 1);  // a head past the group's reads a valid one, writes nothing
    const float* lse_col = p.partial_lse + int64(first) * num_qo_heads + qo_head;
    const float* o_col = p.partial_o + (int64(first) * num_qo_heads + qo_head) * D + cc * 8;
    StateFold<8> fold;
    for (int base = split; base < n; base += BATCH * SPLITS) {
      float4 ob[BATCH][2];
      float sb[BATCH];
#pragma unroll
      for (int b = 0; b < BATCH; ++b) {
        const int i = base + b * SPLITS;
        if (i < n) {
          const float4* src = reinterpret_cast<const float4*>(o_col + int64(i) * num_qo_heads * D);
          ob[b][0] = __ldcg(src);
          ob[b][1] = __ldcg(src + 1);
          sb[b] = __ldcg(lse_col + int64(i) * num_qo_heads);
        } else {
          ob[b][0] = ob[b][1] = make_float4(0.f, 0.f, 0.f, 0.f);
          sb[b] = -math::inf;
        }
      }
      float mb = fold.m;
#pragma unroll
      for (int b = 0; b < BATCH; ++b) mb = fmaxf(mb, sb[b]);
      if (mb == -math::inf) continue;  // every state so far is empty
      fold.raise_to(mb);
#pragma unroll
      for (int b = 0; b < BATCH; ++b) {
        const float os[8] = {ob[b][0].x, ob[b][0].y, ob[b][0].z, ob[b][0].w, ob[b][1].x, ob[b][1].y, ob[b][1].z, ob[b][1].w};
        fold.add_below_max(os, sb[b]);
      }
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) s_acc[(split * PER_PASS + slot) * 8 + e] = fold.acc[e];
    s_m[split * PER_PASS + slot] = fold.m;
    s_d[split * PER_PASS + slot] = fold.d;
    __syncthreads();
    if (split == 0 && h < heads) {
      float m = -math::inf;
#pragma unroll
      for (int sp = 0; sp < SPLITS; ++sp) m = fmaxf(m, s_m[sp * PER_PASS + slot]);
      StateFold<8> all(m);
#pragma unroll
      for (int sp = 0; sp < SPLITS; ++sp) {
        const float* a = s_acc + (sp * PER_PASS + slot) * 8;
        const float os[8] = {a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]};
        all.add_guarded(os, s_m[sp * PER_PASS + slot], s_d[sp * PER_PASS + slot]);
      }
      float acc[8];
      const float lse = all.finish(acc);  // every chunk empty: output 0, lse −inf
      const int64 out_row = int64(request) * num_qo_heads + qo_head;
      *reinterpret_cast<uint4*>(static_cast<DT*>(p.o) + out_row * D + cc * 8) = vec_io::vec8<DT>::from_float(acc);
      if (cc == 0 && p.lse != nullptr) p.lse[out_row] = lse;
    }
    __syncthreads();  // the states' buffer is reused by the next pass
  }
}

template <class KT>
__device__ __forceinline__ void decode_kernel(const DecodeParams& p) {
  using DT = typename KT::DT;
  using KVT = typename KT::KVT;
  using KVChunk = vec_io::chunk8<KVT>;  // lane c's 8 elements of a key row
  constexpr int D = KT::HEAD_DIM, G = KT::GROUP, LANES = KT::LANES, KPS = KT::KEYS_PER_SLOT;
  constexpr int TILE = KT::TILE_KEYS, STAGES = KT::STAGES, SCORES = KT::SCORES;
  using Reduce = SlotReduce<SCORES, LANES>;
  constexpr int OWNED = Reduce::OWNED;
  using Variant = typename KT::Variant;
  constexpr bool ROPE = Variant::USE_ROPE;

  __shared__ unsigned long long s_t_entry;  // TIMELINE: kept in shared memory, not a register
  if constexpr (KT::TIMELINE) {
    if (threadIdx.x == 0) s_t_entry = timeline::now();
  }
  // The split-KV merge is launched as a programmatic dependent (PDL): let it be scheduled now, so
  // its launch overlaps this grid's tail; it waits for this grid's writes (decode_merge.cuh).
  pdl::launch_dependents();
  extern __shared__ __align__(16) unsigned char smem[];
  {
    unsigned dyn;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
    if (dyn < unsigned(KT::SMEM_BYTES)) __trap();  // the host's size disagrees with this kernel
  }
  KVT* pipe = reinterpret_cast<KVT*>(smem);                                 // [STAGES][K|V][TILE][D]
  float* scores = reinterpret_cast<float*>(smem + KT::PIPE_REGION);         // [SLOTS][KPS][G]
  float* slot_max = reinterpret_cast<float*>(smem + KT::PIPE_REGION + KT::SCORE_BYTES);  // [SLOTS][G]
  // SMEM_REDUCE: the slot's [LANES][SCORES] buffer (SmemSlotReduce).
  float* slot_red = reinterpret_cast<float*>(smem + KT::PIPE_REGION + KT::SCORE_BYTES + KT::MAX_BYTES) +
                    (int(threadIdx.x) / KT::LANES) * KT::RED_SLOT;

  const int tid = threadIdx.x;
  const int c = tid % LANES;      // this lane's 16-byte chunk of a key: elements [8c, 8c+8)
  const int slot = tid / LANES;
  const int kv_head = blockIdx.y;
  const int group_base = blockIdx.z * G;                       // first head of this CTA in the group
  const int qo_head0 = kv_head * p.group_size + group_base;    // its query head
  const int heads = min(G, p.group_size - group_base);         // valid heads (<= G)
  // Per-request values: the launch's own (single decode) or the work item's request (PAGED).
  // (Only kv_len varies per request; the window is applied by starting at kv_begin.)
  int request = 0, kv_begin = p.kv_begin, chunk = int(blockIdx.x), kv_len = p.variant.kv_len;
  int chunk_size = p.chunk_size;
  if constexpr (KT::PAGED) {
    request = p.request_indices[blockIdx.x];
    if (request < 0) return;  // a padded work item (CUDA-graph capacity): nothing to do
    chunk = p.chunk_indices[blockIdx.x];
    if (p.chunk_size_ptr != nullptr) chunk_size = *p.chunk_size_ptr;
    const int pages = p.kv_indptr[request + 1] - p.kv_indptr[request];
    kv_len = pages == 0 ? 0 : (pages - 1) * p.pages.page_size + p.kv_last_page_len[request];
    kv_begin = p.variant.window_left >= 0 ? max(0, kv_len - 1 - p.variant.window_left) : 0;
  }
  const int qo_pos = kv_len - 1;
  // The variant sees this request's lengths: one query at position kv_len - 1.
  VariantParams vp = p.variant;
  vp.qo_len = 1;
  vp.kv_len = kv_len;
  const Variant variant(vp);
  // Single decode chunks the attended range; batch chunks follow the plan over [0, kv_len).
  const int chunk_begin = KT::PAGED ? max(kv_begin, chunk * chunk_size) : kv_begin + chunk * chunk_size;
  const int chunk_end_raw = KT::PAGED ? (chunk + 1) * chunk_size : chunk_begin + chunk_size;
  const int chunk_end = min(chunk_end_raw, kv_len);
  const int num_tiles = chunk_end > chunk_begin ? (chunk_end - chunk_begin + TILE - 1) / TILE : 0;

  // q chunk c of every head, in float; rotated at position kv_len-1 with RoPE.
  float q[G][8];
  const DT* q_base = static_cast<const DT*>(p.q) + int64(request) * p.q_stride_batch;
#pragma unroll
  for (int h = 0; h < G; ++h) {
    uint4 raw = make_uint4(0, 0, 0, 0);
    if (h < heads) raw = *reinterpret_cast<const uint4*>(q_base + int64(qo_head0 + h) * p.q_stride_head + c * 8);
    vec_io::vec8<DT>::to_float(raw, q[h]);
  }
  float freq[ROPE ? 8 : 1];
  const bool first_half = c < LANES / 2;
  if constexpr (ROPE) {
#pragma unroll
    for (int e = 0; e < 8; ++e) freq[e] = rope_freq(c * 8 + e, D, p.variant);
#pragma unroll
    for (int h = 0; h < G; ++h) {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float partner = __shfl_xor_sync(0xffffffffu, q[h][e], LANES / 2);
        q[h][e] = rope_rotate_with_freq(q[h][e], partner, first_half, qo_pos, freq[e]);
      }
    }
  }
  if constexpr (Variant::TRANSFORMS_QUERY) {
#pragma unroll
    for (int h = 0; h < G; ++h)
#pragma unroll
      for (int e = 0; e < 8; ++e) q[h][e] = variant.query_transform(q[h][e], qo_head0 + h, c * 8 + e);
  }

  // Slot state: o for this lane's chunk, the slot's max per head (m_all, identical in every lane
  // of the slot), and for the (key, head) totals this lane owns after SlotReduce: their head's
  // max (m_own, equal to m_all of that head) and their share of the row sum (d_own).
  const int own_base = (c >> Reduce::DUP_BITS) * OWNED;
  float o[G][8];
  float m_all[G];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    m_all[h] = -math::inf;
#pragma unroll
    for (int e = 0; e < 8; ++e) o[h][e] = 0.f;
  }
  float m_own[OWNED], d_own[OWNED];
#pragma unroll
  for (int r = 0; r < OWNED; ++r) {
    m_own[r] = -math::inf;
    d_own[r] = 0.f;
  }

  // K and V through the KV policy (kv.cuh): the request's pages, or the one request's rows.
  const int first_page = KT::PAGED ? p.kv_indptr[request] : 0;
  const auto kv = decode_kv<KT>(p, kv_head, first_page);
  const KVT* k_head = kv.k_base();
  const KVT* v_head = kv.v_base();
  // Stage a tile: thread tid copies 16-byte chunk cc = tid % ROW_COPIES of keys
  // tid / ROW_COPIES + n·(THREADS / ROW_COPIES), n < COPIES, of K and of V (for 16-bit K/V: chunk c
  // of keys slot + n·SLOTS, n < KPS).
  constexpr int CHUNK_ELEMS = 16 / KT::KV_BYTES;
  constexpr int KEYS_PER_PASS = KT::THREADS / KT::ROW_COPIES;
  const int cc = tid % KT::ROW_COPIES, copy_key = tid / KT::ROW_COPIES;
  const KVT* k_col = k_head + cc * CHUNK_ELEMS;  // this thread's column of every K / V row
  const KVT* v_col = v_head + cc * CHUNK_ELEMS;
  auto load_tile = [&](int tile, int stage) {
    KVT* ks = pipe + stage * (2 * TILE * D);
    KVT* vs = ks + TILE * D;
    const int key0 = chunk_begin + tile * TILE;
#pragma unroll
    for (int n = 0; n < KT::COPIES; ++n) {
      const int key = copy_key + n * KEYS_PER_PASS;
      const int j = key0 + key;
      const bool valid = j < chunk_end;
      const KVT *k_row, *v_row;
      kv.rows(valid ? j : chunk_begin, k_col, v_col, k_row, v_row);  // a mapped address; nothing is read when !valid
      cp_async::copy_16<cp_async::Prefetch::kL2_128B>(ks + key * D + cc * CHUNK_ELEMS, k_row, valid);
      cp_async::copy_16<cp_async::Prefetch::kL2_128B>(vs + key * D + cc * CHUNK_ELEMS, v_row, valid);
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < num_tiles) load_tile(s, s);
    cp_async::commit();
  }

  float* slot_scores = scores + slot * SCORES;
  for (int tile = 0; tile < num_tiles; ++tile) {
    cp_async::wait<STAGES - 2>();
    __syncthreads();  // tile `tile` is in shared memory; everyone is done with tile-1's stage
    if (tile + STAGES - 1 < num_tiles) load_tile(tile + STAGES - 1, (tile + STAGES - 1) % STAGES);
    cp_async::commit();

    const KVT* ks = pipe + (tile % STAGES) * (2 * TILE * D) + slot * KPS * D;  // this slot's keys
    const KVT* vs = ks + TILE * D;
    const int key0 = chunk_begin + tile * TILE + slot * KPS;  // this slot's first key

    // 1. QK partial dots of chunk c: s[k·G + h].
    float s[SCORES];
#pragma unroll
    for (int k = 0; k < KPS; ++k) {
      const typename KVChunk::Raw raw = KVChunk::load(ks + k * D + c * 8);
      float kf[8];
      KVChunk::to_float(raw, kf);
      if constexpr (ROPE) {
        const typename KVChunk::Raw praw = KVChunk::shfl_xor(raw, LANES / 2);
        float pk[8];
        KVChunk::to_float(praw, pk);
#pragma unroll
        for (int e = 0; e < 8; ++e) kf[e] = rope_rotate_with_freq(kf[e], pk[e], first_half, key0 + k, freq[e]);
      }
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float acc = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc = fmaf(q[h][e], kf[e], acc);
        s[k * G + h] = acc;
      }
    }

    // 2. Totals: this lane now owns s[0..OWNED) = (key, head) numbers own_base + r.
    if constexpr (KT::SMEM_REDUCE) {
      // (The previous tile's sums finished before this tile's __syncthreads.)
      SmemSlotReduce<SCORES, LANES>::store(s, slot_red, c);
      __syncwarp();
      SmemSlotReduce<SCORES, LANES>::sum(s, slot_red, c);
    } else {
      Reduce::run(s, c);
    }

    // 3. Logits (log2 units; masked keys -inf) and the lazy max test.
    float t[OWNED];
    bool grow = false;
#pragma unroll
    for (int r = 0; r < OWNED; ++r) {
      const int f = own_base + r;
      const int j = key0 + f / G;
      t[r] = j < chunk_end && variant.keep(0, j) ? variant.logit(variant.head(qo_head0 + f % G), s[r], qo_pos, j)
                                                 : -math::inf;
      grow |= t[r] > m_own[r] + KT::RESCALE_THRESHOLD;
    }
    if (__any_sync(0xffffffffu, grow)) {
      // Rare: raise the maxima to the exact max so far, rescale o and the row sums.
#pragma unroll
      for (int r = 0; r < OWNED; ++r) slot_scores[own_base + r] = t[r];
      __syncwarp();
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float mx = m_all[h];
#pragma unroll
        for (int k = 0; k < KPS; ++k) mx = fmaxf(mx, slot_scores[k * G + h]);
        const float scale = mx == -math::inf ? 1.f : math::ptx_exp2(m_all[h] - mx);
#pragma unroll
        for (int e = 0; e < 8; ++e) o[h][e] *= scale;
        m_all[h] = mx;
      }
#pragma unroll
      for (int r = 0; r < OWNED; ++r) {
        const int h = (own_base + r) % G;
        float mx = m_own[r];
#pragma unroll
        for (int k = 0; k < KPS; ++k) mx = fmaxf(mx, slot_scores[k * G + h]);
        d_own[r] *= mx == -math::inf ? 1.f : math::ptx_exp2(m_own[r] - mx);
        m_own[r] = mx;
      }
      __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < OWNED; ++r) {
      const float pr = t[r] == -math::inf ? 0.f : math::ptx_exp2(t[r] - m_own[r]);
      d_own[r] += pr;
      slot_scores[own_base + r] = pr;  // lanes holding duplicates write identical values
    }
    __syncwarp();

    // 4. PV: o[h][8c..] += p[k][h] · v[k][8c..].
#pragma unroll
    for (int k = 0; k < KPS; ++k) {
      float vf[8];
      KVChunk::to_float(KVChunk::load(vs + k * D + c * 8), vf);
      float pk[G];
      if constexpr (G % 4 == 0) {
#pragma unroll
        for (int h = 0; h < G; h += 4) {
          const float4 x = *reinterpret_cast<const float4*>(slot_scores + k * G + h);
          pk[h] = x.x; pk[h + 1] = x.y; pk[h + 2] = x.z; pk[h + 3] = x.w;
        }
      } else {
#pragma unroll
        for (int h = 0; h < G; ++h) pk[h] = slot_scores[k * G + h];
      }
#pragma unroll
      for (int h = 0; h < G; ++h) {
#pragma unroll
        for (int e = 0; e < 8; ++e) o[h][e] = fmaf(pk[h], vf[e], o[h][e]);
      }
    }
  }

  // Epilogue: merge the slots' states (o, m, d) per head, then write.
  cp_async::wait<0>();
  __syncthreads();  // the pipeline buffers are free: reuse them for o
  float* obuf = reinterpret_cast<float*>(smem);  // [SLOTS][G][D]
#pragma unroll
  for (int h = 0; h < G; ++h) {
    float4* dst = reinterpret_cast<float4*>(obuf + (slot * G + h) * D + c * 8);
    dst[0] = make_float4(o[h][0], o[h][1], o[h][2], o[h][3]);
    dst[1] = make_float4(o[h][4], o[h][5], o[h][6], o[h][7]);
  }
  if (c == 0) {
#pragma unroll
    for (int h = 0; h < G; ++h) slot_max[slot * G + h] = m_all[h];
  }
#pragma unroll
  for (int r = 0; r < OWNED; ++r) slot_scores[own_base + r] = d_own[r];  // row-sum shares [KPS][G]
  __syncthreads();

  const int num_qo_heads = p.variant.num_qo_heads;
  // Fused merge: this request's partial rows [first, first + n); one chunk is written directly.
  const bool fused = KT::FUSED_MERGE && p.split && p.merge_counters != nullptr;
  int first = 0, n = int(gridDim.x);
  if constexpr (KT::PAGED) {
    if (fused) {
      first = p.o_indptr[request];
      n = p.o_indptr[request + 1] - first;
    }
  }
  const bool direct = fused && n == 1;
  for (int pair = tid; pair < G * LANES; pair += KT::THREADS) {
    const int h = pair / LANES, cc = pair % LANES;
    if (h >= heads) continue;
    float m = -math::inf;
    for (int sl = 0; sl < KT::SLOTS; ++sl) m = fmaxf(m, slot_max[sl * G + h]);
    StateFold<8> fold(m);  // the slots' states (o, max, row sum), raised to their max at once
    for (int sl = 0; sl < KT::SLOTS; ++sl) {
      float ds = 0.f;
#pragma unroll
      for (int k = 0; k < KPS; ++k) ds += scores[sl * SCORES + k * G + h];
      const float4* src = reinterpret_cast<const float4*>(obuf + (sl * G + h) * D + cc * 8);
      const float4 a = src[0], b = src[1];
      const float os[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
      fold.add_guarded(os, slot_max[sl * G + h], ds);
    }
    float acc[8];
    const float lse = fold.finish(acc);  // no key: output 0, lse -inf
    const float v_scale = p.variant.v_scale;  // FP8 V's scale (1 = none); linear, so partials merge as before
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= v_scale;
    const int qo_head = qo_head0 + h;
    if constexpr (Variant::TRANSFORMS_OUTPUT) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] = variant.output_transform(acc[e], qo_head, cc * 8 + e);
    }
    if (p.split && !direct) {
      float4* dst = reinterpret_cast<float4*>(p.partial_o + (int64(blockIdx.x) * num_qo_heads + qo_head) * D + cc * 8);
      dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
      if (cc == 0) p.partial_lse[int64(blockIdx.x) * num_qo_heads + qo_head] = lse;
    } else {
      const int64 out_row = int64(request) * num_qo_heads + qo_head;
      *reinterpret_cast<uint4*>(static_cast<DT*>(p.o) + out_row * D + cc * 8) = vec_io::vec8<DT>::from_float(acc);
      if (cc == 0 && p.lse != nullptr) p.lse[out_row] = lse;
    }
  }
  if constexpr (KT::FUSED_MERGE) {
    if (fused && !direct) fused_merge<KT>(p, request, kv_head, qo_head0, heads, first, n);
  }
  if constexpr (KT::TIMELINE) {
    __syncthreads();
    if (tid == 0 && p.timeline != nullptr) {
      timeline::record(p.timeline, blockIdx.x + int64(gridDim.x) * (blockIdx.y + int64(gridDim.y) * blockIdx.z), s_t_entry);
    }
  }
}

}  // namespace flashinfer
