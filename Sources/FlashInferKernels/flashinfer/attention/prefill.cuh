// Prefill/append attention on tensor cores (FlashAttention-2 style): the CTA body (prefill_cta),
// shared by the single-request kernel (single_prefill, below) and the batch kernel over ragged or
// paged K/V (prefill_batch.cuh); where K/V come from is a policy (prefill_load.cuh).
//
// For one tile of CTA_Q packed query rows (GQA group folded into rows, prefill_traits.cuh) and one
// kv head, walk the kv tiles that any row of the tile can see, and per tile:
//   S = Q·Kᵀ                      mma.sync m16n8k16, f32 accumulate, Q and K from shared (ldmatrix)
//   S = variant.logit(S) | −inf    scale (log2 units) / soft-cap / ALiBi; masks only on edge tiles
//                                 (a plain scale is folded into the exp2 FFMA, see linear_logits)
//   m' = max(m, rowmax S); P = exp2(S − m'); d = d·exp2(m − m') + rowsum P; O = O·exp2(m − m')
//                                 (m moves lazily, see online_softmax)
//   O += P·V                      P re-packed from the S accumulators as A fragments, V via ldmatrix.trans
// then O /= d, LSE = log2(d) + m. Tiles entirely above the causal diagonal (bottom-right aligned:
// kv ≤ qo + kv_len − qo_len) or entirely left of the window are never loaded. A row that keeps no
// key (kv_len = 0, or a mask) ends with d = 0: output 0 and LSE −inf, never NaN (the running max
// is replaced by 0 while it is −inf, so exp2 never sees (−inf) − (−inf)).
//
// Pipeline (STAGES = 2 ring, K and V in separate cp.async groups so S starts when K has landed):
//   prologue:  Q, K[b] → commit;  V[b] → commit
//   tile j:    wait K[j]; sync | (RoPE K[j]; sync) | issue K[j+1], V[j+1] into the other stage |
//              sub-tile 0: S, softmax | wait V[j]; sync | O += P·V ; sub-tiles 1..: S, softmax, O += P·V |
//              (paged: tile j+2's page ids fetched after the issue, its row offsets stored at the end)
// The sync after "wait K[j]" also tells every warp is done with tile j−1, whose stage is refilled.
#pragma once
#include <flashinfer/attention/prefill_load.cuh>
#include <flashinfer/core/math.cuh>

namespace flashinfer {
namespace prefill {

// S[MMA_Q][2·MMA_KV][4] = Q_warp (WARP_ROWS × D) · K_tileᵀ (D × CTA_KV).
template <typename T>
__device__ __forceinline__ void compute_qk(uint32 q_smem, uint32 k_smem, float (&s)[T::MMA_Q][2 * T::MMA_KV][4]) {
  using DT = typename T::DT;
  const int lane = mma::lane_id();
  // ldmatrix row addresses. Q (A): lanes 0-15 rows 0-15 chunk 2kk, lanes 16-31 the same rows, chunk 2kk+1.
  const uint32 q_row = (warp_row0<T>() + (lane & 15)) * T::HEAD_DIM;
  const int q_x = (lane >> 4) ^ (lane & 7);
  // K (B, non-trans): matrices (keys 0-7, chunk 2kk), (0-7, 2kk+1), (8-15, 2kk), (8-15, 2kk+1).
  const uint32 k_row = ((lane & 7) + ((lane >> 4) << 3)) * T::HEAD_DIM;
  const int k_x = ((lane >> 3) & 1) ^ (lane & 7);
#pragma unroll
  for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
    for (int n = 0; n < 2 * T::MMA_KV; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[i][n][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < T::MMA_D; ++kk) {
    uint32 a[T::MMA_Q][4];
#pragma unroll
    for (int i = 0; i < T::MMA_Q; ++i)
      mma::ldmatrix_x4(a[i], q_smem + 2 * (q_row + i * 16 * T::HEAD_DIM + (((2 * kk) ^ q_x) << 3)));
#pragma unroll
    for (int nn = 0; nn < T::MMA_KV; ++nn) {
      uint32 b[4];
      mma::ldmatrix_x4(b, k_smem + 2 * (k_row + nn * 16 * T::HEAD_DIM + (((2 * kk) ^ k_x) << 3)));
#pragma unroll
      for (int i = 0; i < T::MMA_Q; ++i) {
        mma::mma_m16n8k16<DT>(s[i][2 * nn], a[i], b[0], b[1]);
        mma::mma_m16n8k16<DT>(s[i][2 * nn + 1], a[i], b[2], b[3]);
      }
    }
  }
}

// Whether the variant's logit is a plain scaling, t = s · sm_scale_log2 (no soft-cap, no ALiBi).
// Then the scale is folded into the softmax: the max is taken over raw q·k (the scale is > 0) and
// P = exp2(s·scale − m) is one FFMA and one EX2, as in FlashAttention-2.
template <typename Variant>
constexpr bool linear_logits() {
  return !Variant::SOFT_CAP && !Variant::USE_ALIBI;
}

// Logits through the variant (skipped for linear logits: see linear_logits), then −inf where the
// variant's mask drops the key (only on sub-tiles that straddle a mask edge or kv_len; the masked
// pass rewrites s in place so that both paths keep s in the same registers). Element (i, n, e) is
// packed row r0 + warp·WARP_ROWS + i·16 + lane/4 + 8·(e/2), key k0 + 8n + 2·(lane%4) + e%2. The
// rows' query index (and ALiBi slope) are recomputed here from the lane rather than kept in
// registers across the kv loop: the O and S accumulators already take most of the 255.
template <typename T>
__device__ __forceinline__ void apply_logits(float (&s)[T::MMA_Q][2 * T::MMA_KV][4], const typename T::Variant& base,
                                             int r0, int group, int k0, bool mask, const VariantParams& vp) {
  using Variant = typename T::Variant;
  const int lane = mma::lane_id();
  const int kv_lane = k0 + 2 * (lane & 3);
  const int row_lane = r0 + warp_row0<T>() + (lane >> 2);
  if constexpr (Variant::USE_ALIBI) {
    // The bias depends on the row's head and position.
#pragma unroll
    for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int pr = row_lane + i * 16 + 8 * h;
        // The kv head is blockIdx.y in both the single and the batch grid.
        const typename Variant::Head head = base.head(int(blockIdx.y) * group + pr % group);
        const int qo_pos = pr / group + vp.kv_len - vp.qo_len;
#pragma unroll
        for (int n = 0; n < 2 * T::MMA_KV; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) s[i][n][2 * h + e] = base.logit(head, s[i][n][2 * h + e], qo_pos, kv_lane + 8 * n + e);
      }
  } else if constexpr (!linear_logits<Variant>()) {
    // Soft-cap: no position enters the logit.
#pragma unroll
    for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
      for (int n = 0; n < 2 * T::MMA_KV; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[i][n][e] = base.logit(typename Variant::Head{0.f}, s[i][n][e], 0, 0);
  }
  if (mask) {
#pragma unroll
    for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int qo_idx = (row_lane + i * 16 + 8 * h) / group;
#pragma unroll
        for (int n = 0; n < 2 * T::MMA_KV; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (!base.keep(qo_idx, kv_lane + 8 * n + e)) s[i][n][2 * h + e] = -math::inf;
      }
  }
}

// Online softmax update of the thread's 2·MMA_Q rows; s becomes P = exp2(s·scale − m), where
// scale is sm_scale_log2 for linear logits (s is raw q·k) and 1 otherwise (s is the logit).
//
// Lazy rescaling: the reference max m of a row moves only when the row's new max exceeds it by
// more than RESCALE_THRESHOLD (log2 units), and O, d are rescaled only when some row of the warp
// moved (a warp-uniform branch). Exact: P, d and O all use the same m, so O/d and log2(d) + m
// do not depend on which m was used; P ≤ 2^RESCALE_THRESHOLD stays far inside f16/bf16 range.
// For most kv tiles of a long row nothing moves and the O multiplies are skipped.
// Row max and row sum are pairwise trees (short dependency chains).
constexpr float RESCALE_THRESHOLD = 8.f;

template <int N>
__device__ __forceinline__ float tree_max(float (&v)[N]) {
#pragma unroll
  for (int w = N / 2; w >= 1; w /= 2)
#pragma unroll
    for (int k = 0; k < w; ++k) v[k] = fmaxf(v[k], v[k + w]);
  return v[0];
}

template <int N>
__device__ __forceinline__ float tree_sum(float (&v)[N]) {
#pragma unroll
  for (int w = N / 2; w >= 1; w /= 2)
#pragma unroll
    for (int k = 0; k < w; ++k) v[k] += v[k + w];
  return v[0];
}

template <typename T>
__device__ __forceinline__ void online_softmax(float (&s)[T::MMA_Q][2 * T::MMA_KV][4],
                                               float (&o)[T::MMA_Q][2 * T::MMA_D][4], float (&m)[T::MMA_Q][2],
                                               float (&d)[T::MMA_Q][2], float scale) {
  constexpr int N = 2 * T::MMA_KV;  // n-tiles: 2 values per row each
  float mx[T::MMA_Q][2];
  bool move = false;
#pragma unroll
  for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v[N];
#pragma unroll
      for (int n = 0; n < N; ++n) v[n] = fmaxf(s[i][n][2 * h], s[i][n][2 * h + 1]);
      float x = fmaxf(m[i][h], tree_max(v) * scale);  // −inf · scale = −inf
      // The row is spread over the 4 lanes of a quad.
      x = fmaxf(x, math::shfl_xor(x, 1));
      x = fmaxf(x, math::shfl_xor(x, 2));
      mx[i][h] = x;
      move = move || x > m[i][h] + RESCALE_THRESHOLD;  // false while x = m = −inf
    }
  if (__any_sync(0xffffffffu, move)) {
#pragma unroll
    for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // exp2(−inf − finite) = 0 for a row's first keys; a row still empty keeps m = −inf.
        const float f = mx[i][h] == -math::inf ? 1.f : math::ptx_exp2(m[i][h] - mx[i][h]);
        m[i][h] = mx[i][h];
        d[i][h] *= f;
#pragma unroll
        for (int dn = 0; dn < 2 * T::MMA_D; ++dn) {
          o[i][dn][2 * h] *= f;
          o[i][dn][2 * h + 1] *= f;
        }
      }
  }
#pragma unroll
  for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_use = m[i][h] == -math::inf ? 0.f : m[i][h];  // empty row: exp2(−inf − 0) = 0, no NaN
      float v[N];
#pragma unroll
      for (int n = 0; n < N; ++n) {
        const float p0 = math::ptx_exp2(fmaf(s[i][n][2 * h], scale, -m_use));
        const float p1 = math::ptx_exp2(fmaf(s[i][n][2 * h + 1], scale, -m_use));
        s[i][n][2 * h] = p0;
        s[i][n][2 * h + 1] = p1;
        v[n] = p0 + p1;
      }
      d[i][h] += tree_sum(v);  // thread-partial row sum; the quad is summed at the end
    }
}

// O[MMA_Q][2·MMA_D][4] += P (WARP_ROWS × CTA_KV, from s) · V_tile (CTA_KV × D).
template <typename T>
__device__ __forceinline__ void compute_pv(uint32 v_smem, const float (&s)[T::MMA_Q][2 * T::MMA_KV][4],
                                           float (&o)[T::MMA_Q][2 * T::MMA_D][4]) {
  using DT = typename T::DT;
  const int lane = mma::lane_id();
  // V (B, .trans): matrices (keys 0-7, chunk 2dd), (8-15, 2dd), (0-7, 2dd+1), (8-15, 2dd+1).
  const uint32 v_row = ((lane & 7) + (((lane >> 3) & 1) << 3)) * T::HEAD_DIM;
  const int v_x = (lane >> 4) ^ (lane & 7);
#pragma unroll
  for (int kk = 0; kk < T::MMA_KV; ++kk) {
    // The S accumulators of n-tiles 2kk, 2kk+1 are exactly the A fragment of k16 step kk.
    uint32 a[T::MMA_Q][4];
#pragma unroll
    for (int i = 0; i < T::MMA_Q; ++i) {
      a[i][0] = mma::pack2<DT>(s[i][2 * kk][0], s[i][2 * kk][1]);
      a[i][1] = mma::pack2<DT>(s[i][2 * kk][2], s[i][2 * kk][3]);
      a[i][2] = mma::pack2<DT>(s[i][2 * kk + 1][0], s[i][2 * kk + 1][1]);
      a[i][3] = mma::pack2<DT>(s[i][2 * kk + 1][2], s[i][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dd = 0; dd < T::MMA_D; ++dd) {
      uint32 b[4];
      mma::ldmatrix_x4_trans(b, v_smem + 2 * (v_row + kk * 16 * T::HEAD_DIM + (((2 * dd) ^ v_x) << 3)));
#pragma unroll
      for (int i = 0; i < T::MMA_Q; ++i) {
        mma::mma_m16n8k16<DT>(o[i][2 * dd], a[i], b[0], b[1]);
        mma::mma_m16n8k16<DT>(o[i][2 * dd + 1], a[i], b[2], b[3]);
      }
    }
  }
}

// Where a CTA writes: query qo, head h → out + qo·o_stride_n + h·o_stride_h (D elements) and
// lse[qo·lse_stride_n + h] (lse may be null).
template <typename DT>
struct PrefillOut {
  DT* out;
  int64 o_stride_n;
  int64 o_stride_h;
  float* lse;
  int64 lse_stride_n;
};

// O ·= v_scale / d (then the variant's output_transform), LSE = log2(d) + m; the warp stages its rows in its
// own Q rows of shared memory, then writes 16-byte chunks to [qo, head, :] of the output.
template <typename T>
__device__ __forceinline__ void write_output(const PrefillOut<typename T::DT>& dst, const typename T::Variant& variant,
                                             int group, typename T::DT* q_smem,
                                             float (&o)[T::MMA_Q][2 * T::MMA_D][4], const float (&m)[T::MMA_Q][2],
                                             const float (&d)[T::MMA_Q][2], int r0, int kv_head, int packed_len) {
  using DT = typename T::DT;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  __syncwarp();  // every lane of the warp is done reading its Q rows
#pragma unroll
  for (int i = 0; i < T::MMA_Q; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float dt = d[i][h];
      dt += math::shfl_xor(dt, 1);
      dt += math::shfl_xor(dt, 2);
      const float inv = dt > 0.f ? variant.p.v_scale / dt : 0.f;  // v_scale: FP8 V's scale (1 = none)
      const int row = warp_row0<T>() + i * 16 + g + 8 * h;
#pragma unroll
      for (int dn = 0; dn < 2 * T::MMA_D; ++dn) {
        // n-tile dn is chunk dn; the thread's two columns are 2t, 2t+1 of it.
        float x0 = o[i][dn][2 * h] * inv, x1 = o[i][dn][2 * h + 1] * inv;
        if constexpr (T::Variant::TRANSFORMS_OUTPUT) {
          const int head = kv_head * group + (r0 + row) % group;
          x0 = variant.output_transform(x0, head, dn * 8 + 2 * t);
          x1 = variant.output_transform(x1, head, dn * 8 + 2 * t + 1);
        }
        *reinterpret_cast<uint32*>(q_smem + swizzle<T::CHUNKS>(row, dn) + 2 * t) = mma::pack2<DT>(x0, x1);
      }
      const int pr = r0 + row;
      if (dst.lse != nullptr && t == 0 && pr < packed_len) {
        const int qo = pr / group, head = kv_head * group + pr % group;
        dst.lse[qo * dst.lse_stride_n + head] = dt > 0.f ? math::ptx_log2(dt) + m[i][h] : -math::inf;
      }
    }
  __syncwarp();
#pragma unroll
  for (int it = 0; it < T::WARP_ROWS * T::CHUNKS / 32; ++it) {
    const int idx = lane + 32 * it;
    const int row = warp_row0<T>() + idx / T::CHUNKS, c = idx % T::CHUNKS;
    const int pr = r0 + row;
    if (pr < packed_len) {
      const int qo = pr / group, head = kv_head * group + pr % group;
      *reinterpret_cast<uint4*>(dst.out + qo * dst.o_stride_n + head * dst.o_stride_h + c * 8) =
          *reinterpret_cast<const uint4*>(q_smem + swizzle<T::CHUNKS>(row, c));
    }
  }
}

// The 16-row tile's merge (T::KV_WARPS > 1): every warp holds a state (O, m, and the thread-partial
// row sums d) of the same 16 rows over its own sub-tiles. Each thread stages its state in `buf`
// (the K/V tiles' shared memory, free once every warp is past the last tile); warp 0 then folds
// the KV_WARPS states per element: M = max m_w, weights 2^(m_w − M) (0 for a warp that saw no key
// of the row, m_w = −inf), O = Σ w·O_w, d = Σ w·d_w (the quad's partial sums stay partial:
// write_output adds them). Exact whatever reference max each warp's lazy rescaling left.
template <typename T>
__device__ __forceinline__ void merge_kv_warps(float* buf, float (&o)[T::MMA_Q][2 * T::MMA_D][4], float (&m)[T::MMA_Q][2],
                                               float (&d)[T::MMA_Q][2]) {
  static_assert(T::MMA_Q == 1, "16 rows per warp");
  constexpr int NO = 2 * T::MMA_D * 4, STRIDE = NO + 4;
  const int lane = threadIdx.x & 31;
  cp_async::wait<0>();
  __syncthreads();  // every warp is done with the K/V tiles
  float* mine = buf + threadIdx.x * STRIDE;
#pragma unroll
  for (int dn = 0; dn < 2 * T::MMA_D; ++dn)
#pragma unroll
    for (int e = 0; e < 4; ++e) mine[dn * 4 + e] = o[0][dn][e];
  mine[NO] = m[0][0];
  mine[NO + 1] = m[0][1];
  mine[NO + 2] = d[0][0];
  mine[NO + 3] = d[0][1];
  __syncthreads();
  if (threadIdx.x >= 32) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx = -math::inf;
#pragma unroll
    for (int w = 0; w < T::KV_WARPS; ++w) mx = fmaxf(mx, buf[(w * 32 + lane) * STRIDE + NO + h]);
    float wt[T::KV_WARPS];
    float dsum = 0.f;
#pragma unroll
    for (int w = 0; w < T::KV_WARPS; ++w) {
      const float mw = buf[(w * 32 + lane) * STRIDE + NO + h];
      wt[w] = mw == -math::inf ? 0.f : math::ptx_exp2(mw - mx);
      dsum = fmaf(wt[w], buf[(w * 32 + lane) * STRIDE + NO + 2 + h], dsum);
    }
    m[0][h] = mx;
    d[0][h] = dsum;
#pragma unroll
    for (int dn = 0; dn < 2 * T::MMA_D; ++dn)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float x = 0.f;
#pragma unroll
        for (int w = 0; w < T::KV_WARPS; ++w) x = fmaf(wt[w], buf[(w * 32 + lane) * STRIDE + dn * 4 + 2 * h + e], x);
        o[0][dn][2 * h + e] = x;
      }
  }
}

}  // namespace prefill

// The scalars a CTA computes once and reads throughout its kv loop.
struct PrefillGeometry {
  int r0;          // first packed row of the tile
  int packed_len;  // packed rows of the request (qo_len · group)
  int kv_lo;       // tile j holds keys kv_lo + j·CTA_KV ...
  int kv_begin;    // keys any row of the tile can see: [kv_begin, kv_end)
  int kv_end;
  int tile_begin;  // tiles [tile_begin, tile_end) hold them
  int tile_end;
  int delta;       // query qo sits at position qo + delta
  int qo_first;    // queries of the tile
  int qo_last;
};

// Where the geometry lives: registers (SHARED false; the single-request kernel, where it derives
// from blockIdx and the constant bank, so it sits in uniform registers), or shared memory (the
// batch kernel: its values come from global loads, so in registers they would be per-thread, and the
// plain D128 kernel has none to spare across the kv loop; re-read from shared memory where used,
// barriers keep the compiler from hoisting them). Thread 0 writes the shared copy, a barrier
// publishes it (found by racecheck, 2026-12-04: all threads writing it unsynchronized was flagged
// as RAW hazards on every batch prefill launch).
template <bool SHARED>
struct GeometryStorage {
  PrefillGeometry g;
  __device__ __forceinline__ PrefillGeometry& get() { return g; }
};
template <>
struct GeometryStorage<true> {
  __device__ __forceinline__ PrefillGeometry& get() {
    __shared__ PrefillGeometry g;
    return g;
  }
};

// Whether this warp owns any of the request's packed rows. The warps past them (a tile of CTA_Q
// rows over a request with fewer, e.g. decode's group of 4 in a 64-row tile) skip S, softmax and
// P·V: they would read every K and V fragment from shared memory for rows nobody writes.
// Only the 64-row tile tests it: the planner gives it the short requests, and the 128-row tile's
// plain D128 kernels have no register to spare for it (they spill).
template <typename T>
__device__ __forceinline__ bool warp_has_rows(const PrefillGeometry& g) {
  if constexpr (T::MMA_Q == 2) {
    return true;
  } else {
    return g.r0 + warp_row0<T>() < g.packed_len;
  }
}

namespace prefill {

// The kv loop of an FP8 K/V CTA (prefill_traits.cuh): the loaders fill a KV_STAGES-deep ring of fp8
// staging tiles, and each tile is converted into the one DT K (V) tile before the math reads it.
//   prologue:  (paged: resolve tiles 0 … S−1) | K[0] | V[0] | … | K[S−2] | V[S−2]   (S = KV_STAGES)
//   tile j:    wait K[j], V[j]; sync | issue K[j+S−1], V[j+S−1] into the ring stage tile j−1 left |
//              convert K[j] and V[j]; sync | (RoPE K; sync) | per sub-tile: S, softmax, O += P·V |
//              (paged: tile j+S's page ids fetched after the issue, its row offsets stored at the end,
//              into the table stage that tile j's loads read)
// The barrier after the wait also says every warp is done with tile j−1 (its DT tiles and its ring
// stage). Its sub-tile body repeats the 16-bit loop's on purpose: sharing it through one inline
// function changed the SASS of the 16-bit 64-row kernels (+72 instructions on D1's kernel, checked
// with scripts/sass-diff.sh) and that could not be measured then; merge the two once it can be.
// With S ≥ 3 (the 64-row tile) K and V are converted in one pass behind one barrier: two
// conversion phases (and their four barriers) per tile made the decode-like tile latency-bound
// (bench/NOTES.md). With S = 2 (the 128-row tile, compute-bound) V is waited for and converted after
// sub-tile 0's S = Q·Kᵀ, as in the 16-bit loop (and the merged form spills the all-hooks variant).
template <typename T, typename KV>
__device__ __forceinline__ void kv_loop_fp8(const VariantParams& vp, const KV& kv, const typename T::Variant& base,
                                            const PrefillGeometry& g, int group, typename T::DT* q_smem,
                                            typename T::DT* k_tile, typename T::DT* v_tile, typename T::KV_DT* k_load,
                                            typename T::KV_DT* v_load, float (&o)[T::MMA_Q][2 * T::MMA_D][4],
                                            float (&m)[T::MMA_Q][2], float (&d)[T::MMA_Q][2]) {
  using Variant = typename T::Variant;
  constexpr int S = T::KV_STAGES;
  constexpr bool MERGED = S >= 3;  // K and V converted together (see above)
  const int tiles = g.tile_end - g.tile_begin;
  if constexpr (KV::PREPARED) {
#pragma unroll
    for (int t = 0; t < S; ++t) kv.prepare(t, g.kv_lo + (g.tile_begin + t) * T::CTA_KV, vp.kv_len, t < tiles);
    __syncthreads();
  }
#pragma unroll
  for (int t = 0; t < S - 1; ++t) {
    kv.load(k_load + t * T::KV_TILE_ELEMS, v_load + t * T::KV_TILE_ELEMS, t, g.kv_lo + (g.tile_begin + t) * T::CTA_KV,
            vp.kv_len, t < tiles);  // (Q joins K[0]'s group)
  }
  const uint32 q_addr = mma::smem_u32(q_smem);

  for (int i = 0; i < tiles; ++i) {
    const int stage = i % S;
    const int k0 = g.kv_lo + (g.tile_begin + i) * T::CTA_KV;

    if constexpr (MERGED) {
      cp_async::wait<2 * S - 4>();  // K[j], V[j] (and Q) landed; the tiles after them may be in flight
    } else {
      cp_async::wait<2 * S - 3>();  // K[j] (and Q) landed
    }
    __syncthreads();
    const int next = (i + S - 1) % S;  // the stage tile j−1 left
    kv.load(k_load + next * T::KV_TILE_ELEMS, v_load + next * T::KV_TILE_ELEMS, next, k0 + (S - 1) * T::CTA_KV,
            vp.kv_len, i + S - 1 < tiles);
    int next_pages = -1;
    if constexpr (KV::PREPARED) next_pages = kv.fetch(k0 + S * T::CTA_KV, vp.kv_len, i + S < tiles);
    convert_kv_tile<T>(k_load + stage * T::KV_TILE_ELEMS, k_tile);
    if constexpr (MERGED) convert_kv_tile<T>(v_load + stage * T::KV_TILE_ELEMS, v_tile);
    __syncthreads();
    if constexpr (Variant::USE_ROPE) {
      rope_k_tile<T>(k_tile, k0, vp);
      __syncthreads();
    }

#pragma unroll
    for (int sub = 0; sub < T::SUBS; ++sub) {
      const int ks = k0 + sub * T::KV_SUB;
      // Warps whose rows are all past the request's (decode-like tiles) skip the math: warp-uniform.
      const bool active = ks < g.kv_end && ks + T::KV_SUB > g.kv_begin && warp_has_rows<T>(g);
      float s[T::MMA_Q][2 * T::MMA_KV][4];
      if (active) {
        compute_qk<T>(q_addr, mma::smem_u32(k_tile + sub * T::KV_SUB * T::HEAD_DIM), s);
        bool mask = Variant::CUSTOM_MASK || ks + T::KV_SUB > vp.kv_len;
        if constexpr (Variant::CAUSAL) mask = mask || ks + T::KV_SUB - 1 > g.qo_first + g.delta;
        if constexpr (Variant::WINDOW) mask = mask || ks < g.qo_last + g.delta - vp.window_left;
        apply_logits<T>(s, base, g.r0, group, ks, mask, vp);
        online_softmax<T>(s, o, m, d, linear_logits<Variant>() ? vp.sm_scale_log2 : 1.f);
      }
      if constexpr (!MERGED) {
        if (sub == 0) {
          cp_async::wait<2 * S - 2>();  // V[j] landed
          __syncthreads();
          convert_kv_tile<T>(v_load + stage * T::KV_TILE_ELEMS, v_tile);
          __syncthreads();
        }
      }
      if (active) compute_pv<T>(mma::smem_u32(v_tile + sub * T::KV_SUB * T::HEAD_DIM), s, o);
    }
    // Tile j+S's rows into the table stage tile j's loads read (S − 1 iterations ago).
    if constexpr (KV::PREPARED) kv.store(stage, k0 + S * T::CTA_KV, i + S < tiles, next_pages);
  }
}

}  // namespace prefill

namespace prefill {

// The kv loop of the single-buffered 16-row tile (PrefillTraits::SINGLE_BUFFER: CTA_KV 128, one
// K and one V tile in shared memory, each warp one sub-tile of KV_SUB keys per tile). Upstream's
// decode geometry: twice the keys per warp and per barrier of the 2-stage 64-key ring in the same
// shared memory, so the online softmax and the O rescale run once per 32 keys, not 16.
//   prologue:  (paged: resolve tiles 0, 1) | Q, K[b] → commit | V[b] → commit
//   tile j:    wait K[j]; sync | S = Q·K[j]ᵀ of the warp's sub-tile, softmax | sync (K[j] read) |
//              issue K[j+1] | wait V[j]; sync | O += P·V[j] | sync (V[j] read) | issue V[j+1] |
//              (paged: tile j+2's rows into the table stage tile j's loads read, fetched at the top)
// K[j+1] lands during P·V of tile j, V[j+1] during S of tile j+1: one group in flight at each wait.
// The sub-tile's S / mask / softmax repeats the 2-stage loop's: one shared inline function changed
// the SASS of 30 catalogue kernels (causal, window and ALiBi variants of both loops; sass-diff.sh,
// 2026-12-04) with no device time left to check them; merge it after a GPU check.
template <typename T, typename KV>
__device__ __forceinline__ void kv_loop_single_buffer(const VariantParams& vp, const KV& kv, const typename T::Variant& base,
                                                      const PrefillGeometry& g, int group, typename T::DT* q_smem,
                                                      typename T::DT* k_smem, typename T::DT* v_smem,
                                                      float (&o)[T::MMA_Q][2 * T::MMA_D][4], float (&m)[T::MMA_Q][2],
                                                      float (&d)[T::MMA_Q][2]) {
  using Variant = typename T::Variant;
  static_assert(T::SUBS == T::KV_WARPS, "one sub-tile per warp");
  if constexpr (KV::PREPARED) {
    kv.prepare(0, g.kv_lo + g.tile_begin * T::CTA_KV, vp.kv_len, true);
    kv.prepare(1, g.kv_lo + (g.tile_begin + 1) * T::CTA_KV, vp.kv_len, g.tile_begin + 1 < g.tile_end);
    __syncthreads();
  }
  kv.load_one(0, k_smem, 0, g.kv_lo + g.tile_begin * T::CTA_KV, vp.kv_len, true);  // Q, K[b]
  kv.load_one(1, v_smem, 0, g.kv_lo + g.tile_begin * T::CTA_KV, vp.kv_len, true);  // V[b]
  const uint32 q_addr = mma::smem_u32(q_smem);
  const int warp = int(threadIdx.x >> 5);
  for (int j = g.tile_begin; j < g.tile_end; ++j) {
    const int stage = (j - g.tile_begin) & 1;  // the page table's stage of tile j
    const int k0 = g.kv_lo + j * T::CTA_KV;
    const int ks = k0 + warp * T::KV_SUB;
    const bool more = j + 1 < g.tile_end;
    int next_pages = -1;
    if constexpr (KV::PREPARED) next_pages = kv.fetch(k0 + 2 * T::CTA_KV, vp.kv_len, j + 2 < g.tile_end);

    cp_async::wait<1>();  // K[j] (and Q) landed; V[j] may still be in flight
    __syncthreads();
    // The warp's sub-tile (warp-uniform): skipped when no row sees it or the warp has no rows.
    const bool active = ks < g.kv_end && ks + T::KV_SUB > g.kv_begin && warp_has_rows<T>(g);
    float s[T::MMA_Q][2 * T::MMA_KV][4];
    if (active) {
      prefill::compute_qk<T>(q_addr, mma::smem_u32(k_smem + warp * T::KV_SUB * T::HEAD_DIM), s);
      bool mask = Variant::CUSTOM_MASK || ks + T::KV_SUB > vp.kv_len;
      if constexpr (Variant::CAUSAL) mask = mask || ks + T::KV_SUB - 1 > g.qo_first + g.delta;
      if constexpr (Variant::WINDOW) mask = mask || ks < g.qo_last + g.delta - vp.window_left;
      prefill::apply_logits<T>(s, base, g.r0, group, ks, mask, vp);
      prefill::online_softmax<T>(s, o, m, d, prefill::linear_logits<Variant>() ? vp.sm_scale_log2 : 1.f);
    }
    __syncthreads();  // every warp is done with K[j]
    kv.load_one(0, k_smem, stage ^ 1, k0 + T::CTA_KV, vp.kv_len, more);
    cp_async::wait<1>();  // V[j] landed; K[j+1] may still be in flight
    __syncthreads();
    if (active) prefill::compute_pv<T>(mma::smem_u32(v_smem + warp * T::KV_SUB * T::HEAD_DIM), s, o);
    __syncthreads();  // every warp is done with V[j]
    kv.load_one(1, v_smem, stage ^ 1, k0 + T::CTA_KV, vp.kv_len, more);
    // Tile j+2's rows into the table stage that tile j's loads read (several barriers ago).
    if constexpr (KV::PREPARED) kv.store(stage, k0 + 2 * T::CTA_KV, j + 2 < g.tile_end, next_pages);
  }
}

}  // namespace prefill

// One CTA: packed query rows r0 ..< r0 + CTA_Q (of packed_len) of kv head kv_head against the keys
// [kv_lo, vp.kv_len) that the variant lets them see, K/V tiles from `kv` (a tile loader of
// prefill_load.cuh over a KV policy of kv.cuh). vp carries the lengths that place the queries: query qo sits at position
// qo + vp.kv_len − vp.qo_len. Tiles start at kv_lo (so a kv chunk's first tile holds no earlier
// key). `q` points at query 0; `out_of()` gives the destination (PrefillOut), evaluated only in the
// epilogue so that it holds no registers across the kv loop. SHARED_GEOMETRY: see GeometryStorage.
template <typename T, bool SHARED_GEOMETRY, typename KV, typename OutFn>
__device__ __forceinline__ void prefill_cta(const PrefillParams& p, const VariantParams& vp, const typename T::DT* q,
                                            const KV& kv, OutFn out_of, int r0, int kv_head, int packed_len, int kv_lo) {
  using DT = typename T::DT;
  using Variant = typename T::Variant;
  using KV_DT = typename T::KV_DT;
  extern __shared__ __align__(128) unsigned char prefill_smem[];
  DT* q_smem = reinterpret_cast<DT*>(prefill_smem);                // [CTA_Q][D]
  DT* k_smem = q_smem + T::Q_ELEMS;                               // [KV_BUFS][CTA_KV][D]
  DT* v_smem = k_smem + T::KV_BUFS * T::KV_TILE_ELEMS;            // [KV_BUFS][CTA_KV][D]
  // Where the loaders put K and V: the DT rings, or (FP8) the fp8 staging rings after them.
  KV_DT* k_load = reinterpret_cast<KV_DT*>(T::KV_FP8 ? reinterpret_cast<DT*>(v_smem + T::KV_TILE_ELEMS) : k_smem);
  KV_DT* v_load = T::KV_FP8 ? k_load + T::KV_STAGES * T::KV_TILE_ELEMS : reinterpret_cast<KV_DT*>(v_smem);

  const int group = p.group_size;
  GeometryStorage<SHARED_GEOMETRY> storage;
  PrefillGeometry& g = storage.get();
  {
    const int delta = vp.kv_len - vp.qo_len;
    const int qo_first = r0 / group;
    const int qo_last = (min(r0 + T::CTA_Q, packed_len) - 1) / group;
    int kv_begin = kv_lo, kv_end = vp.kv_len;
    if constexpr (Variant::CAUSAL) kv_end = min(kv_end, qo_last + delta + 1);
    if constexpr (Variant::WINDOW) kv_begin = max(kv_begin, qo_first + delta - vp.window_left);
    const int tile_begin = (kv_begin - kv_lo) / T::CTA_KV;
    const int tile_end = kv_end > kv_begin ? (kv_end - kv_lo + T::CTA_KV - 1) / T::CTA_KV : tile_begin;
    const PrefillGeometry mine{r0, packed_len, kv_lo, kv_begin, kv_end, tile_begin, tile_end, delta, qo_first, qo_last};
    if constexpr (SHARED_GEOMETRY) {
      // One writer, then a barrier before any read (every thread writing the same values is a
      // data race all the same: compute-sanitizer's racecheck reports it, thousands per launch).
      if (threadIdx.x == 0) g = mine;
      __syncthreads();
    } else {
      g = mine;
    }
  }

  const Variant base(vp);  // per-row values (ALiBi slopes) come from base.head() in apply_logits

  float o[T::MMA_Q][2 * T::MMA_D][4];
  float m[T::MMA_Q][2], d[T::MMA_Q][2];
#pragma unroll
  for (int i = 0; i < T::MMA_Q; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m[i][h] = -math::inf;
      d[i][h] = 0.f;
    }
#pragma unroll
    for (int dn = 0; dn < 2 * T::MMA_D; ++dn)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[i][dn][e] = 0.f;
  }

  if (g.tile_begin < g.tile_end) {
    if constexpr (Variant::USE_ROPE || Variant::TRANSFORMS_QUERY) {
      prefill::load_q_rope<T>(p, vp, q, q_smem, g.r0, kv_head, g.packed_len);
    } else {
      prefill::load_q<T>(p, q, q_smem, g.r0, kv_head, g.packed_len);
    }
    if constexpr (T::KV_FP8) {
      prefill::kv_loop_fp8<T>(vp, kv, base, g, group, q_smem, k_smem, v_smem, k_load, v_load, o, m, d);
    } else if constexpr (T::SINGLE_BUFFER) {
      prefill::kv_loop_single_buffer<T>(vp, kv, base, g, group, q_smem, k_smem, v_smem, o, m, d);
    } else {
      if constexpr (KV::PREPARED) {
        // Resolve the first two tiles' rows (the loop prepares each later tile two ahead).
        kv.prepare(0, g.kv_lo + g.tile_begin * T::CTA_KV, vp.kv_len, true);
        kv.prepare(1, g.kv_lo + (g.tile_begin + 1) * T::CTA_KV, vp.kv_len, g.tile_begin + 1 < g.tile_end);
        __syncthreads();
      }
      kv.load(k_load, v_load, 0, g.kv_lo + g.tile_begin * T::CTA_KV, vp.kv_len, true);  // Q, K[b] | V[b]
      const uint32 q_addr = mma::smem_u32(q_smem);

      for (int j = g.tile_begin; j < g.tile_end; ++j) {
        const int stage = (j - g.tile_begin) & 1;
        DT* k_tile = k_smem + stage * T::KV_TILE_ELEMS;
        DT* v_tile = v_smem + stage * T::KV_TILE_ELEMS;
        const int k0 = g.kv_lo + j * T::CTA_KV;

        cp_async::wait<1>();  // K[j] (and Q) landed; V[j] may still be in flight
        __syncthreads();
        if constexpr (Variant::USE_ROPE) {
          prefill::rope_k_tile<T>(k_tile, k0, vp);
          __syncthreads();
        }
        // K[j+1] | V[j+1] into the other stage (two commit groups, empty past the last tile).
        kv.load(k_load + (stage ^ 1) * T::KV_TILE_ELEMS, v_load + (stage ^ 1) * T::KV_TILE_ELEMS, stage ^ 1,
                k0 + T::CTA_KV, vp.kv_len, j + 1 < g.tile_end);
        // Paged: tile j+2's page ids now, stored as row offsets after the math (PagedKV::fetch).
        int next_pages = -1;
        if constexpr (KV::PREPARED) next_pages = kv.fetch(k0 + 2 * T::CTA_KV, vp.kv_len, j + 2 < g.tile_end);

#pragma unroll
        for (int sub = 0; sub < T::SUBS; ++sub) {
          const int ks = k0 + sub * T::KV_SUB;
          // Sub-tiles that no row of the tile sees are skipped (CTA-uniform), and so are warps whose
          // rows all lie past the request's (a decode-like tile: packed rows < CTA_Q; warp-uniform).
          // The 16-row tile: warp w takes sub-tiles w, w + KV_WARPS, … (warp-uniform).
          const bool active = ks < g.kv_end && ks + T::KV_SUB > g.kv_begin && warp_has_rows<T>(g) &&
                              (T::KV_WARPS == 1 || sub % T::KV_WARPS == int(threadIdx.x >> 5));
          float s[T::MMA_Q][2 * T::MMA_KV][4];
          if (active) {
            prefill::compute_qk<T>(q_addr, mma::smem_u32(k_tile + sub * T::KV_SUB * T::HEAD_DIM), s);
            // Per-element masks only where some key of the sub-tile is invisible to some row.
            bool mask = Variant::CUSTOM_MASK || ks + T::KV_SUB > vp.kv_len;
            if constexpr (Variant::CAUSAL) mask = mask || ks + T::KV_SUB - 1 > g.qo_first + g.delta;
            if constexpr (Variant::WINDOW) mask = mask || ks < g.qo_last + g.delta - vp.window_left;
            prefill::apply_logits<T>(s, base, g.r0, group, ks, mask, vp);
            prefill::online_softmax<T>(s, o, m, d, prefill::linear_logits<Variant>() ? vp.sm_scale_log2 : 1.f);
          }
          if (sub == 0) {
            cp_async::wait<2>();  // V[j] landed
            __syncthreads();
          }
          if (active) prefill::compute_pv<T>(mma::smem_u32(v_tile + sub * T::KV_SUB * T::HEAD_DIM), s, o);
        }
        // Tile j+2's rows into the table entry that tile j's loads read (a barrier ago).
        if constexpr (KV::PREPARED) kv.store(stage, k0 + 2 * T::CTA_KV, j + 2 < g.tile_end, next_pages);
      }
    }
  }

  if constexpr (T::KV_WARPS > 1) {
    // The 16-row tile: fold the warps' states into warp 0's, which writes.
    prefill::merge_kv_warps<T>(reinterpret_cast<float*>(k_smem), o, m, d);
    if (threadIdx.x >= 32) return;
  }
  prefill::write_output<T>(out_of(), base, group, q_smem, o, m, d, g.r0, kv_head, g.packed_len);
}

// The single-request kernel body. Grid (num q tiles, num kv heads), NUM_THREADS threads, SMEM_BYTES
// dynamic shared memory. Tiles are taken in reverse so that, under a causal mask, the longest run first.
template <typename T>
__device__ __forceinline__ void single_prefill(const PrefillParams& p) {
  using DT = typename T::DT;
  const int kv_head = blockIdx.y;
  const auto kv = prefill::tiles<T>(ContiguousKV<typename T::KV_DT>::of(p.kv, kv_head));
  auto out_of = [&p]() {
    return prefill::PrefillOut<DT>{static_cast<DT*>(p.o), p.o_stride_n, p.o_stride_h, p.lse,
                                   int64(p.num_kv_heads) * p.group_size};
  };
  prefill_cta<T, false>(p, p.variant, static_cast<const DT*>(p.q), kv, out_of, (gridDim.x - 1 - blockIdx.x) * T::CTA_Q,
                 kv_head, p.variant.qo_len * p.group_size, 0);
}

}  // namespace flashinfer
