// Batch prefill / append for Hopper (sm_90a) over a paged or ragged KV cache: the single kernel's
// warp specialisation (prefill_sm90.cuh: 1 producer warpgroup, 2 wgmma consumer warpgroups, TMA +
// mbarrier K/V ring, intra-warpgroup overlap) driven by the batch plan's work items.
//
// Grid (work items, num_kv_heads); the plan (Planner/BatchPrefillPlan.swift) is made with
// ctaTileQ = 128 and without split-KV, so item w = (request b, q tile t) covers every key of b.
// The CTA serves 128 *packed* rows of kv head h: packed row r = query (r / G) of the request,
// query head h·G + r % G (G = group size, a power of two ≤ 128), so each K/V tile is loaded once
// for the whole GQA group (P4: 128 new tokens × 4 heads = 512 rows = 4 CTAs per (request, kv head)).
//
// Loads (one producer warp; every box lands on a 1024-byte boundary, so TMA's SWIZZLE_128B gives
// exactly the layout of the single kernel and its wgmma descriptors):
//   Q   one rank-4 map over the whole q tensor, dims (D, G, Hkv, total_q), box (64, G, 1, 128 / G):
//       128 packed rows in packed order per 64-column block. Rows past the request's end read the
//       next request's queries (or zeros past total_q): they are computed, masked, never written.
//   K/V paged (PAGE_SIZE > 0): rank-4 maps over the cache, dims (D, page_size, Hkv, pages) with the
//       cache's strides (NHD or HND), box (64, PAGE_SIZE, 1, 1): a 128-key tile is 128 / PAGE_SIZE
//       pages, lane i of the producer warp loads page i of the tile (PAGE_SIZE ∈ {8..128}, a power
//       of two: each page's box starts at a multiple of 8 rows = 1024 bytes). Pages past the
//       request's last read its last page again. Keys past kv_len are masked (S = −inf), and their
//       V rows (unwritten page slots, maybe NaN) are zeroed in shared memory by the consumers
//       before the last tile's P·V (zero_v_tail), as the FA2 tier's zero-filled loads.
//   K/V ragged (PAGE_SIZE == 0): rank-3 maps (D, kv_total, Hkv), box (64, 128, 1) from row
//       kv_starts[b] + 128·it (rows past the request: next request's keys or zeros, masked).
//
// Masks: key j of request b is kept by query i iff j < kv_len and, causal, j ≤ i + kv_len − qo_len
// (bottom-right aligned). Tiles past the last row's diagonal are not loaded; only tiles that cross
// the diagonal of the warpgroup's first row or kv_len are masked. Output O / d and LSE = log2 d + m
// (base 2) straight from the accumulators; a row that keeps no key (kv_len 0) gives 0 and −inf.
#pragma once
#include <flashinfer/attention/prefill_sm90.cuh>

namespace flashinfer {

using BatchPrefillParams = ::FIBatchPrefillParams;

namespace hopper {

// The mask of a tile (keys k0..) for the thread's two rows: −inf for keys ≥ kv_len and, causal, for
// keys > lim[h] (the row's query + kv_len − qo_len).
template <typename T>
__device__ __forceinline__ void mask_tile_batch(float (&s)[T::CTA_KV / 2], int k0, int kv_len, const int (&lim)[2]) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int j = 0; j < T::CTA_KV / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = k0 + 8 * j + 2 * t + e;
        bool keep = key < kv_len;
        if constexpr (T::CAUSAL) keep = keep && key <= lim[h];
        if (!keep) s[4 * j + 2 * h + e] = -math::inf;
      }
}

// The consumer warpgroups of one batch work item (the single kernel's mainloop, prefill_sm90.cuh
// consumer, with per-row causal limits of packed rows and the batch epilogue).
// Zeros rows `from`..CTA_KV − 1 of a V tile (every 16-byte chunk of those rows, so the swizzle does
// not matter), by the 128 threads of one consumer warpgroup, then makes the writes visible to the
// warpgroup's wgmma (async proxy) and to the next TMA write of the slot: paged keys past kv_len are
// page slots nobody wrote (possibly NaN), and P = 0 times NaN would be NaN.
template <typename T>
__device__ __forceinline__ void zero_v_tail(uint32 v_tile, int from, int cwg) {
  const int tid = threadIdx.x & 127;
  constexpr int CHUNKS16 = 8;  // 16-byte chunks per 128-byte row
  const int n = (T::CTA_KV - from) * CHUNKS16 * T::CHUNKS;
  for (int i = tid; i < n; i += 128) {
    const int c = i % T::CHUNKS, rest = i / T::CHUNKS;
    const int u = rest % CHUNKS16, row = from + rest / CHUNKS16;
    const uint32 addr = v_tile + c * T::KV_CHUNK_BYTES + row * 128 + u * 16;
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0) : "memory");
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cwg) : "memory");
}

template <typename T, bool PAGED>
__device__ __forceinline__ void batch_consumer(const BatchPrefillParams& bp, uint32 q_s, uint32 k_s, uint32 v_s, uint32 bar, int r0,
                                               int kv_head, int group_shift, int qo_start, int qo_len, int kv_len, int n_tiles) {
  using DT = typename T::DT;
  const PrefillParams& p = bp.base;
  constexpr int S_N = T::CTA_KV / 2, O_N = T::HEAD_DIM / 2;
  const int ctid = threadIdx.x - 128;  // 0..255
  const int cwg = ctid >> 7;           // consumer warpgroup: rows 64·cwg..
  const int warp = (ctid >> 5) & 3, lane = ctid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int delta = kv_len - qo_len;
  const int wg_row0 = r0 + 64 * cwg;
  const int row0 = wg_row0 + 16 * warp + g;  // the thread's packed rows: row0, row0 + 8
  const int lim[2] = {(row0 >> group_shift) + delta, ((row0 + 8) >> group_shift) + delta};
  const int wg_lim = (wg_row0 >> group_shift) + delta;  // the warpgroup's smallest limit
  const float scale = p.variant.sm_scale_log2;

  const uint32 q_full = bar;
  auto k_full = [&](int s) { return bar + 8 * (1 + s); };
  auto v_full = [&](int s) { return bar + 8 * (1 + T::STAGES + s); };
  auto k_empty = [&](int s) { return bar + 8 * (1 + 2 * T::STAGES + s); };
  auto v_empty = [&](int s) { return bar + 8 * (1 + 3 * T::STAGES + s); };

  float o[O_N];
#pragma unroll
  for (int i = 0; i < O_N; ++i) o[i] = 0.f;
  float m[2] = {-math::inf, -math::inf}, d[2] = {0.f, 0.f};

  mbar_wait(q_full, 0);  // always: the CTA must not exit under a TMA in flight
  const uint32 q_wg = q_s + 64 * cwg * 128;

  auto edge = [&](int it) {
    const int k0 = it * T::CTA_KV;
    bool e = k0 + T::CTA_KV > kv_len;
    if constexpr (T::CAUSAL) e = e || k0 + T::CTA_KV - 1 > wg_lim;
    return e;
  };
  auto stage = [](int it) { return it % T::STAGES; };
  auto parity = [](int it) { return uint32((it / T::STAGES) & 1); };
  float sacc[S_N], f[2];
  uint32 pa[T::CTA_KV / 16][4];

  if (n_tiles > 0) {
    mbar_wait(k_full(0), 0);
    wgmma_fence();
    issue_qk<T>(sacc, q_wg, k_s);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(sacc);
    mbar_arrive(k_empty(0));
    if (edge(0)) mask_tile_batch<T>(sacc, 0, kv_len, lim);
    softmax_step<T>(sacc, m, d, f, scale);
    pack_p<T>(sacc, pa);
    for (int it = 1; it < n_tiles; ++it) {
      const int s = stage(it), sp = stage(it - 1);
      mbar_wait(k_full(s), parity(it));
      wgmma_fence();
      issue_qk<T>(sacc, q_wg, k_s + s * T::KV_BYTES);
      wgmma_commit();
      mbar_wait(v_full(sp), parity(it - 1));
      issue_pv<T>(o, pa, v_s + sp * T::KV_BYTES);
      wgmma_commit();
      wgmma_wait<1>();
      fence_operands(sacc);
      mbar_arrive(k_empty(s));
      if (edge(it)) mask_tile_batch<T>(sacc, it * T::CTA_KV, kv_len, lim);
      softmax_step<T>(sacc, m, d, f, scale);
      wgmma_wait<0>();
      fence_operands(o);
      fence_regs(pa);
      mbar_arrive(v_empty(sp));
      rescale<T>(o, f);
      pack_p<T>(sacc, pa);
    }
    const int sl = stage(n_tiles - 1);
    mbar_wait(v_full(sl), parity(n_tiles - 1));
    // Only the last tile can reach past kv_len (tiles stop at the last row's diagonal ≤ kv_len).
    if constexpr (PAGED) {
      const int valid = kv_len - (n_tiles - 1) * T::CTA_KV;
      if (valid < T::CTA_KV) zero_v_tail<T>(v_s + sl * T::KV_BYTES, valid, cwg);
    }
    wgmma_fence();
    issue_pv<T>(o, pa, v_s + sl * T::KV_BYTES);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(o);
    fence_regs(pa);
    mbar_arrive(v_empty(sl));
  }

  // Epilogue: packed row r → query qo_start + (r >> shift), head kv_head·G + (r & (G − 1)).
  DT* out = static_cast<DT*>(p.o);
  const int num_qo_heads = p.variant.num_qo_heads;
  const float v_scale = p.variant.v_scale;
  const int group_mask = (1 << group_shift) - 1;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float dt = d[h];
    dt += math::shfl_xor(dt, 1);
    dt += math::shfl_xor(dt, 2);
    const int row = row0 + 8 * h;
    const int qi = row >> group_shift;
    if (qi < qo_len) {
      const int64 tok = int64(qo_start) + qi;
      const int head = (kv_head << group_shift) + (row & group_mask);
      const float inv = dt > 0.f ? v_scale / dt : 0.f;
      DT* dst = out + tok * p.o_stride_n + int64(head) * p.o_stride_h + 2 * t;
#pragma unroll
      for (int j = 0; j < T::HEAD_DIM / 8; ++j)
        *reinterpret_cast<uint32*>(dst + 8 * j) = mma::pack2<DT>(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
      if (p.lse != nullptr && t == 0) p.lse[tok * num_qo_heads + head] = dt > 0.f ? math::ptx_log2(dt) + m[h] : -math::inf;
    }
  }
}

}  // namespace hopper

// The CTA of work item blockIdx.x, kv head blockIdx.y. PAGE_SIZE: tokens per page (a power of two,
// 8..128), or 0 for ragged K/V. tm_q: rank 4 (D, G, Hkv, total_q); tm_k / tm_v: rank 4 (paged) or 3.
template <typename T, int PAGE_SIZE>
__device__ __forceinline__ void hopper_batch_prefill(const BatchPrefillParams& bp, const sm90::TensorMap* tm_q,
                                                     const sm90::TensorMap* tm_k, const sm90::TensorMap* tm_v) {
  using namespace sm90;
  static_assert(PAGE_SIZE == 0 || (PAGE_SIZE >= 8 && PAGE_SIZE <= T::CTA_KV && (PAGE_SIZE & (PAGE_SIZE - 1)) == 0),
                "page size: 0 (ragged) or a power of two in 8..128");
  constexpr int PAGES_PER_TILE = PAGE_SIZE > 0 ? T::CTA_KV / PAGE_SIZE : 1;
  const PrefillParams& p = bp.base;
  const int item = blockIdx.x, kv_head = blockIdx.y;
  const int b = bp.request_indices[item];
  const int qo_start = bp.qo_indptr[b];
  const int qo_len = bp.qo_indptr[b + 1] - qo_start;
  const int group_shift = __ffs(p.group_size) - 1;  // the group is a power of two
  const int r0 = bp.qo_tile_indices[item] * T::CTA_Q;
  if (r0 >= (qo_len << group_shift)) return;  // the whole CTA: a request without queries (or a padded item)
  const int kv_len = bp.kv_lens[b];
  const int kv_start = bp.kv_starts[b];

  extern __shared__ __align__(1024) unsigned char hopper_smem[];
  const uint32 base = (smem_addr(hopper_smem) + 1023u) & ~1023u;
  const uint32 q_s = base;
  const uint32 k_s = q_s + T::Q_BYTES;
  const uint32 v_s = k_s + T::STAGES * T::KV_BYTES;
  const uint32 bar = v_s + T::STAGES * T::KV_BYTES;

  int kv_end = kv_len;
  if constexpr (T::CAUSAL) {
    const int q_last = min((r0 + T::CTA_Q - 1) >> group_shift, qo_len - 1);
    kv_end = max(0, min(kv_len, q_last + kv_len - qo_len + 1));
  }
  const int n_tiles = (kv_end + T::CTA_KV - 1) / T::CTA_KV;

  if (threadIdx.x == 0) {
    prefetch_tensor_map(tm_q);
    prefetch_tensor_map(tm_k);
    prefetch_tensor_map(tm_v);
    mbar_init(bar, 1);
    for (int s = 0; s < T::STAGES; ++s) {
      mbar_init(bar + 8 * (1 + s), 1);
      mbar_init(bar + 8 * (1 + T::STAGES + s), 1);
      mbar_init(bar + 8 * (1 + 2 * T::STAGES + s), T::CONSUMER_THREADS);
      mbar_init(bar + 8 * (1 + 3 * T::STAGES + s), T::CONSUMER_THREADS);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (threadIdx.x < 128) {
    setmaxnreg_dec<T::PRODUCER_REGS>();
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      if (lane == 0) {
        mbar_arrive_expect_tx(bar, T::Q_BYTES);
#pragma unroll
        for (int c = 0; c < T::CHUNKS; ++c)
          tma_load_4d(q_s + c * T::Q_CHUNK_BYTES, tm_q, bar, 64 * c, 0, kv_head, qo_start + (r0 >> group_shift));
      }
      const int last_page = PAGE_SIZE > 0 ? (kv_len + PAGE_SIZE - 1) / PAGE_SIZE - 1 : 0;
      // Lane i: page i of the tile, its id read one tile ahead (the load's latency hides under a tile).
      auto page_of = [&](int it) {
        return lane < PAGES_PER_TILE ? bp.pages.page_indices[kv_start + min(it * PAGES_PER_TILE + lane, last_page)] : 0;
      };
      int next_page = 0;
      if constexpr (PAGE_SIZE > 0) {
        if (n_tiles > 0) next_page = page_of(0);
      }
      for (int it = 0; it < n_tiles; ++it) {
        const int s = it % T::STAGES;
        const uint32 phase = ((it / T::STAGES) & 1) ^ 1;
        const uint32 k_full = bar + 8 * (1 + s), v_full = bar + 8 * (1 + T::STAGES + s);
        const uint32 k_empty = bar + 8 * (1 + 2 * T::STAGES + s), v_empty = bar + 8 * (1 + 3 * T::STAGES + s);
        if constexpr (PAGE_SIZE > 0) {
          const int page = next_page;
          if (it + 1 < n_tiles) next_page = page_of(it + 1);
          const uint32 row_off = uint32(lane * PAGE_SIZE * 128);
          mbar_wait(k_empty, phase);
          if (lane == 0) mbar_arrive_expect_tx(k_full, T::KV_BYTES);
          __syncwarp();
          if (lane < PAGES_PER_TILE) {
#pragma unroll
            for (int c = 0; c < T::CHUNKS; ++c)
              tma_load_4d(k_s + s * T::KV_BYTES + c * T::KV_CHUNK_BYTES + row_off, tm_k, k_full, 64 * c, 0, kv_head, page);
          }
          mbar_wait(v_empty, phase);
          if (lane == 0) mbar_arrive_expect_tx(v_full, T::KV_BYTES);
          __syncwarp();
          if (lane < PAGES_PER_TILE) {
#pragma unroll
            for (int c = 0; c < T::CHUNKS; ++c)
              tma_load_4d(v_s + s * T::KV_BYTES + c * T::KV_CHUNK_BYTES + row_off, tm_v, v_full, 64 * c, 0, kv_head, page);
          }
        } else {
          if (lane == 0) {
            const int row = kv_start + it * T::CTA_KV;
            mbar_wait(k_empty, phase);
            mbar_arrive_expect_tx(k_full, T::KV_BYTES);
#pragma unroll
            for (int c = 0; c < T::CHUNKS; ++c)
              tma_load_3d(k_s + s * T::KV_BYTES + c * T::KV_CHUNK_BYTES, tm_k, k_full, 64 * c, row, kv_head);
            mbar_wait(v_empty, phase);
            mbar_arrive_expect_tx(v_full, T::KV_BYTES);
#pragma unroll
            for (int c = 0; c < T::CHUNKS; ++c)
              tma_load_3d(v_s + s * T::KV_BYTES + c * T::KV_CHUNK_BYTES, tm_v, v_full, 64 * c, row, kv_head);
          }
        }
      }
    }
  } else {
    setmaxnreg_inc<T::CONSUMER_REGS>();
    hopper::batch_consumer<T, (PAGE_SIZE > 0)>(bp, q_s, k_s, v_s, bar, r0, kv_head, group_shift, qo_start, qo_len, kv_len, n_tiles);
  }
}

}  // namespace flashinfer
