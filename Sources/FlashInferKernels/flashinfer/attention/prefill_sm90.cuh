// Single-request prefill for Hopper (sm_90a), FlashAttention-3 style: TMA loads, an mbarrier K/V
// pipeline, a producer warpgroup and two consumer warpgroups on wgmma.
//
// CTA = one tile of CTA_Q = 128 query rows of one query head (grid: query tiles × query heads; the
// kv head is qo_head / group_size), 384 threads:
//   warpgroup 0  producer: setmaxnreg.dec to 24; one thread issues every TMA load: Q once, then
//                for each kv tile K[j] and V[j] into ring slot j % STAGES, each after the
//                consumers released the slot (empty barrier), announcing its bytes on the slot's
//                full barrier (arrive.expect_tx; the TMA completes them).
//   warpgroups 1, 2  consumers: setmaxnreg.inc to 240; warpgroup c owns query rows 64c..64c+63:
//                S = Q·Kᵀ      wgmma m64n128k16 × (D/16), Q and K from shared memory (K-major)
//                release K[j]; mask (only on the causal diagonal and kv_len tail tiles);
//                m' = max(m, rowmax S·scale); P = exp2(S·scale − m'); d = d·exp2(m − m') + rowsum P;
//                O ·= exp2(m − m')   (registers; scale = sm_scale·log2 e, as the FA2 tier)
//                O += P·V      wgmma m64n{D}k16 × (CTA_KV/16), P from registers (f16/bf16), V from
//                              shared memory (MN-major: the descriptor's transpose bit)
//                release V[j]
//              then O /= d, written straight from the accumulators, LSE = log2(d) + m (base 2).
//
// Shared memory (1024-byte aligned; every tile is made of 64-column blocks of rows of 128 B,
// swizzled by TMA with SWIZZLE_128B, see core/sm90.cuh make_desc_sw128):
//   Q [CHUNKS][CTA_Q][64] | K [STAGES][CHUNKS][CTA_KV][64] | V [STAGES][CHUNKS][CTA_KV][64] | mbarriers
//
// Tiles of keys past the causal diagonal (bottom-right aligned: key j is kept by query i iff
// j ≤ i + kv_len − qo_len) are never loaded. Rows past qo_len and keys past kv_len read as zeros
// (TMA's out-of-range fill); such keys are masked, such rows are not written. A row that keeps no
// key ends with d = 0: output 0 and LSE −inf, never NaN.
#pragma once
#include <flashinfer/core/math.cuh>
#include <flashinfer/core/mma.cuh>
#include <flashinfer/core/sm90.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using PrefillParams = ::FIPrefillParams;

template <typename DT_, int HEAD_DIM_, bool CAUSAL_, int STAGES_ = 2, bool OVERLAP_ = true>
struct HopperPrefillTraits {
  using DT = DT_;
  static constexpr int HEAD_DIM = HEAD_DIM_;
  static constexpr bool CAUSAL = CAUSAL_;
  static constexpr int STAGES = STAGES_;
  // Intra-warpgroup overlap (FA3): S[j+1] = Q·K[j+1]ᵀ and O += P[j]·V[j] are in flight together, the
  // softmax of S[j+1] runs while P[j]·V[j] does. false: each tile's two GEMMs and softmax in turn.
  static constexpr bool OVERLAP = OVERLAP_;
  static constexpr int CTA_Q = 128;   // two consumer warpgroups × 64 rows
  static constexpr int CTA_KV = 128;  // keys per tile (the S wgmma's N)
  static constexpr int NUM_THREADS = 384;
  static constexpr int CONSUMER_THREADS = 256;
  static constexpr int CHUNKS = HEAD_DIM / 64;  // 64-element (128-byte) column blocks per row
  static constexpr int Q_BYTES = CTA_Q * HEAD_DIM * 2;
  static constexpr int KV_BYTES = CTA_KV * HEAD_DIM * 2;  // one K or V tile
  static constexpr int Q_CHUNK_BYTES = CTA_Q * 128;
  static constexpr int KV_CHUNK_BYTES = CTA_KV * 128;
  static constexpr int BARRIERS = 1 + 4 * STAGES;  // q_full, k_full, v_full, k_empty, v_empty
  // Dynamic shared memory: 1024 bytes of alignment slack, the tiles, the barriers.
  static constexpr int SMEM_BYTES = 1024 + Q_BYTES + 2 * STAGES * KV_BYTES + 8 * BARRIERS;
  static constexpr int PRODUCER_REGS = 24;
  static constexpr int CONSUMER_REGS = 240;
  static_assert(HEAD_DIM == 64 || HEAD_DIM == 128, "head dim 64 or 128");
  static_assert(sizeof(DT) == 2, "f16 or bf16");
};

namespace hopper {

using namespace sm90;

// The rows' mask on a tile (keys k0.. of the S accumulators): −inf for keys ≥ kv_len and, causal,
// for keys > row + delta. Rows: row0 (h = 0) and row0 + 8 (h = 1).
template <typename T>
__device__ __forceinline__ void mask_tile(float (&s)[T::CTA_KV / 2], int k0, int kv_len, int row0, int delta) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int j = 0; j < T::CTA_KV / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = k0 + 8 * j + 2 * t + e;
        bool keep = key < kv_len;
        if constexpr (T::CAUSAL) keep = keep && key <= row0 + 8 * h + delta;
        if (!keep) s[4 * j + 2 * h + e] = -math::inf;
      }
}

template <int N>
__device__ __forceinline__ void fence_regs(uint32 (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
}

// S = Q·Kᵀ over D in steps of 16 (column block kk / 4, 32 bytes per step inside it); issued, not waited.
template <typename T>
__device__ __forceinline__ void issue_qk(float (&sacc)[T::CTA_KV / 2], uint32 q_wg, uint32 k_tile) {
#pragma unroll
  for (int kk = 0; kk < T::HEAD_DIM / 16; ++kk) {
    const uint32 off = (kk & 3) * 32;
    const uint64 da = make_desc_sw128(q_wg + (kk >> 2) * T::Q_CHUNK_BYTES + off, 16, 1024);
    const uint64 db = make_desc_sw128(k_tile + (kk >> 2) * T::KV_CHUNK_BYTES + off, 16, 1024);
    WGMMA<typename T::DT, T::CTA_KV>::template ss<0>(sacc, da, db, kk > 0);
  }
}

// O += P·V: V (keys × D, D contiguous) is B in MN-major form: 16 keys = 2048 bytes per step;
// LBO = one column block (CTA_KV rows of 128 B), SBO = 8 keys (1024 B). Issued, not waited.
template <typename T>
__device__ __forceinline__ void issue_pv(float (&o)[T::HEAD_DIM / 2], const uint32 (&pa)[T::CTA_KV / 16][4], uint32 v_tile) {
#pragma unroll
  for (int kk = 0; kk < T::CTA_KV / 16; ++kk) {
    const uint64 db = make_desc_sw128(v_tile + kk * 16 * 128, T::KV_CHUNK_BYTES, 1024);
    WGMMA<typename T::DT, T::HEAD_DIM>::template rs<1>(o, pa[kk], db, 1);
  }
}

// The online-softmax step of a tile for the thread's two rows (each spread over a quad): the new
// running max m (log2 units of the scaled logits), the factor f = exp2(m_old − m_new) that O and d
// take, d = d·f + rowsum P (the thread's partial), and S → P = exp2(S·scale − m) in place.
template <typename T>
__device__ __forceinline__ void softmax_step(float (&sacc)[T::CTA_KV / 2], float (&m)[2], float (&d)[2], float (&f)[2], float scale) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx = -math::inf;
#pragma unroll
    for (int j = 0; j < T::CTA_KV / 8; ++j) mx = fmaxf(mx, fmaxf(sacc[4 * j + 2 * h], sacc[4 * j + 2 * h + 1]));
    mx = fmaxf(mx, math::shfl_xor(mx, 1));
    mx = fmaxf(mx, math::shfl_xor(mx, 2));
    const float m_new = fmaxf(m[h], mx * scale);  // −inf · scale = −inf
    // exp2(−inf − finite) = 0 for a row's first keys; a row still empty keeps factor 1.
    f[h] = m_new == -math::inf ? 1.f : math::ptx_exp2(m[h] - m_new);
    m[h] = m_new;
    const float m_use = m_new == -math::inf ? 0.f : m_new;  // empty row: exp2(−inf − 0) = 0, no NaN
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < T::CTA_KV / 8; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float pv = math::ptx_exp2(fmaf(sacc[4 * j + 2 * h + e], scale, -m_use));
        sacc[4 * j + 2 * h + e] = pv;
        sum += pv;
      }
    d[h] = d[h] * f[h] + sum;  // the quad's partials are added in the epilogue
  }
}

template <typename T>
__device__ __forceinline__ void rescale(float (&o)[T::HEAD_DIM / 2], const float (&f)[2]) {
#pragma unroll
  for (int j = 0; j < T::HEAD_DIM / 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      o[4 * j + 2 * h] *= f[h];
      o[4 * j + 2 * h + 1] *= f[h];
    }
}

// P as the A fragments of O += P·V: k-step kk covers keys 16kk..16kk+15 = S n-blocks 2kk, 2kk+1.
template <typename T>
__device__ __forceinline__ void pack_p(const float (&sacc)[T::CTA_KV / 2], uint32 (&pa)[T::CTA_KV / 16][4]) {
  using DT = typename T::DT;
#pragma unroll
  for (int kk = 0; kk < T::CTA_KV / 16; ++kk) {
    pa[kk][0] = mma::pack2<DT>(sacc[8 * kk + 0], sacc[8 * kk + 1]);  // row g,     keys 2t, 2t+1
    pa[kk][1] = mma::pack2<DT>(sacc[8 * kk + 2], sacc[8 * kk + 3]);  // row g + 8, keys 2t, 2t+1
    pa[kk][2] = mma::pack2<DT>(sacc[8 * kk + 4], sacc[8 * kk + 5]);  // row g,     keys 8 + 2t, ..
    pa[kk][3] = mma::pack2<DT>(sacc[8 * kk + 6], sacc[8 * kk + 7]);  // row g + 8, keys 8 + 2t, ..
  }
}

template <typename T>
__device__ __forceinline__ void consumer(const PrefillParams& p, uint32 q_s, uint32 k_s, uint32 v_s, uint32 bar, int r0,
                                         int qo_head, int n_tiles) {
  using DT = typename T::DT;
  constexpr int S_N = T::CTA_KV / 2, O_N = T::HEAD_DIM / 2;
  const int ctid = threadIdx.x - 128;  // 0..255
  const int cwg = ctid >> 7;           // consumer warpgroup: rows 64·cwg..
  const int warp = (ctid >> 5) & 3, lane = ctid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int qo_len = p.variant.qo_len, kv_len = p.variant.kv_len;
  const int delta = kv_len - qo_len;
  const int wg_row0 = r0 + 64 * cwg;           // first row of the warpgroup
  const int row0 = wg_row0 + 16 * warp + g;  // the thread's rows: row0, row0 + 8
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

  // Every consumer waits for Q, even with no kv tile: the CTA must not exit under a TMA in flight.
  mbar_wait(q_full, 0);
  const uint32 q_wg = q_s + 64 * cwg * 128;  // the warpgroup's 64 rows in each Q column block

  // Whether some key of tile `it` is masked for some row of the warpgroup (warpgroup-uniform).
  auto edge = [&](int it) {
    const int k0 = it * T::CTA_KV;
    bool e = k0 + T::CTA_KV > kv_len;
    if constexpr (T::CAUSAL) e = e || k0 + T::CTA_KV - 1 > wg_row0 + delta;
    return e;
  };
  auto stage = [](int it) { return it % T::STAGES; };
  auto parity = [](int it) { return uint32((it / T::STAGES) & 1); };
  float sacc[S_N], f[2];
  uint32 pa[T::CTA_KV / 16][4];

  if constexpr (T::OVERLAP) {
    if (n_tiles > 0) {
      // Tile 0: S, softmax, P.
      mbar_wait(k_full(0), 0);
      wgmma_fence();
      issue_qk<T>(sacc, q_wg, k_s);
      wgmma_commit();
      wgmma_wait<0>();
      fence_operands(sacc);
      mbar_arrive(k_empty(0));
      if (edge(0)) mask_tile<T>(sacc, 0, kv_len, row0, delta);
      softmax_step<T>(sacc, m, d, f, scale);  // O is still 0: no rescale
      pack_p<T>(sacc, pa);
      // Tile it: S[it] and P[it−1]·V[it−1] in flight together; softmax of S[it] under the PV.
      for (int it = 1; it < n_tiles; ++it) {
        const int s = stage(it), sp = stage(it - 1);
        mbar_wait(k_full(s), parity(it));
        wgmma_fence();
        issue_qk<T>(sacc, q_wg, k_s + s * T::KV_BYTES);
        wgmma_commit();
        mbar_wait(v_full(sp), parity(it - 1));
        issue_pv<T>(o, pa, v_s + sp * T::KV_BYTES);
        wgmma_commit();
        wgmma_wait<1>();  // S[it] done (PV may still run)
        fence_operands(sacc);
        mbar_arrive(k_empty(s));
        if (edge(it)) mask_tile<T>(sacc, it * T::CTA_KV, kv_len, row0, delta);
        softmax_step<T>(sacc, m, d, f, scale);
        wgmma_wait<0>();  // P[it−1]·V[it−1] done: O and the P registers are free
        fence_operands(o);
        fence_regs(pa);
        mbar_arrive(v_empty(sp));
        rescale<T>(o, f);
        pack_p<T>(sacc, pa);
      }
      const int sl = stage(n_tiles - 1);
      mbar_wait(v_full(sl), parity(n_tiles - 1));
      wgmma_fence();
      issue_pv<T>(o, pa, v_s + sl * T::KV_BYTES);
      wgmma_commit();
      wgmma_wait<0>();
      fence_operands(o);
      fence_regs(pa);
      mbar_arrive(v_empty(sl));
    }
  } else {
    for (int it = 0; it < n_tiles; ++it) {
      const int s = stage(it);
      mbar_wait(k_full(s), parity(it));
      wgmma_fence();
      issue_qk<T>(sacc, q_wg, k_s + s * T::KV_BYTES);
      wgmma_commit();
      wgmma_wait<0>();
      fence_operands(sacc);
      mbar_arrive(k_empty(s));
      if (edge(it)) mask_tile<T>(sacc, it * T::CTA_KV, kv_len, row0, delta);
      softmax_step<T>(sacc, m, d, f, scale);
      rescale<T>(o, f);
      pack_p<T>(sacc, pa);
      mbar_wait(v_full(s), parity(it));
      wgmma_fence();
      issue_pv<T>(o, pa, v_s + s * T::KV_BYTES);
      wgmma_commit();
      wgmma_wait<0>();
      fence_operands(o);
      fence_regs(pa);
      mbar_arrive(v_empty(s));
    }
  }

  // Epilogue: O / d and LSE = log2(d) + m, straight from the accumulators.
  DT* out = static_cast<DT*>(p.o);
  const int num_qo_heads = p.variant.num_qo_heads;
  const float v_scale = p.variant.v_scale;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float dt = d[h];
    dt += math::shfl_xor(dt, 1);
    dt += math::shfl_xor(dt, 2);
    const int row = row0 + 8 * h;
    if (row < qo_len) {
      const float inv = dt > 0.f ? v_scale / dt : 0.f;
      DT* dst = out + int64(row) * p.o_stride_n + int64(qo_head) * p.o_stride_h + 2 * t;
#pragma unroll
      for (int j = 0; j < T::HEAD_DIM / 8; ++j)
        *reinterpret_cast<uint32*>(dst + 8 * j) = mma::pack2<DT>(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
      if (p.lse != nullptr && t == 0)
        p.lse[int64(row) * num_qo_heads + qo_head] = dt > 0.f ? math::ptx_log2(dt) + m[h] : -math::inf;
    }
  }
}

}  // namespace hopper

// The CTA: grid (query tiles, query heads); heavy (late, causal) query tiles are launched first.
template <typename T>
__device__ __forceinline__ void hopper_single_prefill(const PrefillParams& p, const sm90::TensorMap* tm_q,
                                                      const sm90::TensorMap* tm_k, const sm90::TensorMap* tm_v) {
  using namespace sm90;
  extern __shared__ __align__(1024) unsigned char hopper_smem[];
  const uint32 base = (smem_addr(hopper_smem) + 1023u) & ~1023u;
  const uint32 q_s = base;
  const uint32 k_s = q_s + T::Q_BYTES;
  const uint32 v_s = k_s + T::STAGES * T::KV_BYTES;
  const uint32 bar = v_s + T::STAGES * T::KV_BYTES;

  const int qo_len = p.variant.qo_len, kv_len = p.variant.kv_len;
  const int r0 = (gridDim.x - 1 - blockIdx.x) * T::CTA_Q;
  const int qo_head = blockIdx.y;
  const int kv_head = qo_head / p.group_size;
  // Keys any row of the tile keeps: causal, up to the last row's diagonal.
  int kv_end = kv_len;
  if constexpr (T::CAUSAL) kv_end = max(0, min(kv_len, r0 + T::CTA_Q + kv_len - qo_len));
  const int n_tiles = (kv_end + T::CTA_KV - 1) / T::CTA_KV;

  if (threadIdx.x == 0) {
    prefetch_tensor_map(tm_q);
    prefetch_tensor_map(tm_k);
    prefetch_tensor_map(tm_v);
    mbar_init(bar, 1);  // q_full: the producer's arrive.expect_tx
    for (int s = 0; s < T::STAGES; ++s) {
      mbar_init(bar + 8 * (1 + s), 1);                                     // k_full
      mbar_init(bar + 8 * (1 + T::STAGES + s), 1);                         // v_full
      mbar_init(bar + 8 * (1 + 2 * T::STAGES + s), T::CONSUMER_THREADS);  // k_empty: every consumer thread
      mbar_init(bar + 8 * (1 + 3 * T::STAGES + s), T::CONSUMER_THREADS);  // v_empty
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (threadIdx.x < 128) {
    setmaxnreg_dec<T::PRODUCER_REGS>();
    if (threadIdx.x == 0) {
      mbar_arrive_expect_tx(bar, T::Q_BYTES);
#pragma unroll
      for (int c = 0; c < T::CHUNKS; ++c) tma_load_3d(q_s + c * T::Q_CHUNK_BYTES, tm_q, bar, 64 * c, r0, qo_head);
      for (int it = 0; it < n_tiles; ++it) {
        const int s = it % T::STAGES;
        const uint32 phase = ((it / T::STAGES) & 1) ^ 1;  // the previous use of the slot was released
        const uint32 k_full = bar + 8 * (1 + s), v_full = bar + 8 * (1 + T::STAGES + s);
        const uint32 k_empty = bar + 8 * (1 + 2 * T::STAGES + s), v_empty = bar + 8 * (1 + 3 * T::STAGES + s);
        mbar_wait(k_empty, phase);
        mbar_arrive_expect_tx(k_full, T::KV_BYTES);
#pragma unroll
        for (int c = 0; c < T::CHUNKS; ++c)
          tma_load_3d(k_s + s * T::KV_BYTES + c * T::KV_CHUNK_BYTES, tm_k, k_full, 64 * c, it * T::CTA_KV, kv_head);
        mbar_wait(v_empty, phase);
        mbar_arrive_expect_tx(v_full, T::KV_BYTES);
#pragma unroll
        for (int c = 0; c < T::CHUNKS; ++c)
          tma_load_3d(v_s + s * T::KV_BYTES + c * T::KV_CHUNK_BYTES, tm_v, v_full, 64 * c, it * T::CTA_KV, kv_head);
      }
    }
  } else {
    setmaxnreg_inc<T::CONSUMER_REGS>();
    hopper::consumer<T>(p, q_s, k_s, v_s, bar, r0, qo_head, n_tiles);
  }
}

}  // namespace flashinfer
