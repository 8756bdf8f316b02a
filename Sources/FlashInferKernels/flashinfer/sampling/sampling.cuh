// Sampling without sorting: the samplers (upstream's sampling_from_probs, top_k / top_p / min_p /
// top_k_top_p _sampling_from_probs), top_k_renorm_probs, top_p_renorm_probs, top_k_mask_logits and
// softmax. One CTA of kThreads threads per row; passes over the row as in row_pass.cuh, the
// filters' threshold search as in filter.cuh. Semantics: SEMANTICS.md §2.8, docs/Sampling.md.
//
// Samplers: rejection from a shrinking proposal. Draw j from p restricted to {p > lo} (inverse
// CDF with the row's next Philox uniform: one segment read, row_pass.cuh `draw`); if P(p_j) holds,
// j is in the filtered set F and is the answer; else measure a pass of pivots (p_j among them),
// shrink the bracket and draw again. Whatever the pivots, an accepted token is distributed as p
// restricted to F (each proposal is p on a superset of F, conditioned on landing in F), so the
// pivot choice is free to aim for speed: upstream's dual pivot (p_j and the midpoint to the top)
// needs ~20 rounds for top-k 50 over 128k tokens; the bit-pattern midpoint and the interpolated
// guess of filter.cuh need a few. Once the bracket converged, F = {p > lo} is known and the next
// draw is the answer without a check. Every round draws the row's next uniform (cuRAND stream
// curand_init(seed, row, offset)), as upstream's kernels do, so results depend on (seed, offset)
// alone: reproducible, and CUDA-graph safe with the seed/offset read from device memory
// (seed_arr / offset_arr: a generator's state, advanced after the call by philox.cuh's
// advance_offset; docs/Sampling.md, "Generators and CUDA graphs").
//
// Degenerate rows: NaN and non-positive entries are never drawn and count for nothing (every test
// is `p > x` with x ≥ 0). A row with no positive entry gives token 0 and valid = 0. No loop runs
// more than kMaxRounds times (finite data needs ~33 at most), so no input hangs a kernel; after
// kMaxRounds rounds without acceptance a sampler returns its last draw (valid).
#pragma once
#include <flashinfer/params.h>
#include <flashinfer/sampling/finish.cuh>
#include <flashinfer/sampling/philox.cuh>

namespace flashinfer {

using SamplingParams = ::FISamplingParams;  // flashinfer/params.h
using ChainSpeculativeParams = ::FIChainSpeculativeParams;

namespace sampling {

// Which filter a sampler applies (the kernel's template parameter; upstream's entry points).
enum class Mode : int {
  kAll = 0,        // sampling_from_probs: every p > 0
  kTopK = 1,       // count(p > p_j) < k
  kTopP = 2,       // Σ_{p > p_j} p < top_p (top_p = 1: all)
  kMinP = 3,       // p_j ≥ min_p · max p
  kJoint = 4,      // both tests on the original row (filter_apply_order="joint")
  kTopKFirst = 5,  // top-k, renormalize, then top-p on the renormalized row (the default order)
};

// ---- per-row parameters ----

__device__ __forceinline__ int row_top_k(const SamplingParams& p, int row) {
  return max(1, p.top_k_arr ? p.top_k_arr[row] : p.top_k);
}
__device__ __forceinline__ float row_top_p(const SamplingParams& p, int row) {
  const float t = p.top_p_arr ? p.top_p_arr[row] : p.top_p;
  return t > 0.f ? t : 1e-30f;  // validated on the host; a non-positive device value keeps the top value
}

template <typename T, int VEC>
__device__ __forceinline__ Row<T, VEC> row_of(const SamplingParams& p) {
  return Row<T, VEC>(static_cast<const T*>(p.input) + int64(blockIdx.x) * p.row_stride, p.vocab_size);
}

// ---- samplers ----

// The candidate buffer of the kernels that finish in shared memory (allocated only in those).
__device__ __forceinline__ CandShared& cand_shared() {
  __shared__ CandShared cs;
  return cs;
}

// Three pivots between a and c, at equal steps of the keys (the gather pass measures them beside
// the gather threshold, for the pivot search should the buffer overflow).
__device__ __forceinline__ void key_steps(float gather_at, float a, float c, float (&x)[kPivots]) {
  const uint32 ka = order_key(a), kc = order_key(c);
  const unsigned long long span = kc > ka ? (unsigned long long)(kc - ka) : 0ull;
  x[0] = gather_at;
#pragma unroll
  for (int i = 1; i < kPivots; ++i) x[i] = from_order_key(ka + uint32(span * (unsigned long long)i / (unsigned long long)kPivots));
}

// Top-k, joint and top-k-first from the sketch (finish.cuh), after the first pass with the thread
// maxima in cand_shared().val, when count(p > 0) ≥ k and k ≤ kThreads: gather {p ≥ t_k} (all of
// F_k), sort it, find the top-k boundary (and the joint mass test, on the original row's masses:
// everything above the gathered interval is in it) or, for top-k-first, top-p on F_k renormalized
// (Σ_{p_i > p_j, i ∈ F_k} p_i < top_p · Z_k), and draw with the row's first uniform. Returns false
// when the sketch gives nothing (t_k ≤ 0) or the buffer overflowed; the bracket then holds what the
// gather pass measured and the caller goes on with the pivot search.
template <typename T, int VEC, Mode M>
__device__ __forceinline__ bool top_k_finish(const Row<T, VEC>& row, const Filter& f, float top_p, float row_max, Bracket& b,
                                             PassShared& pass, float (&seg_sum)[kWarps], philox::Stream& rng, int& token) {
  CandShared& cs = cand_shared();
  const float tk = sketch_kth(cs, f.k);
  if (!(tk > 0.f)) return false;
  const float g = below(tk);
  float x[kPivots];
  key_steps(g, tk, row_max, x);
  const int n = gather_pass(row, x, pass, cs, g, math::inf);
  if (n > kCand) {
    PivotStats s[kPivots];
#pragma unroll
    for (int i = 0; i < kPivots; ++i) s[i] = pass.stats[i];
    const int i = b.update(f, x, s);
    if (i >= 0) keep_segment_sums(pass, i, seg_sum);
    return false;
  }
  sort_candidates(cs, n);
  const Candidates c(cs, n);
  int m = c.first_rejected(cs, 0, n, f, 0, 0.f);
  if (M == Mode::kTopKFirst && top_p < 1.f) m = c.first_rejected(cs, 1, m, Filter{0x7fffffff, top_p * c.prefix(cs, m - 1), true}, 0, 0.f);
  token = c.draw(cs, m, rng.uniform() * c.prefix(cs, m - 1));
  return true;
}

template <typename T, int VEC, Mode M>
__device__ __forceinline__ void sample_row(const SamplingParams& p) {
  __shared__ PassShared pass;
  __shared__ DrawShared dsh;
  __shared__ float seg_sum[kWarps];  // segment sums of {p > lo}
  const int row_index = blockIdx.x;
  const Row<T, VEC> row = row_of<T, VEC>(p);
  philox::Stream rng(philox::seed_of(p.seed_arr, p.seed), row_index, philox::offset_of(p.offset_arr, p.offset));

  constexpr bool kSketch = M == Mode::kTopK || M == Mode::kJoint || M == Mode::kTopKFirst;
  float* thread_max = nullptr;
  if constexpr (kSketch) thread_max = cand_shared().val;
  Bracket b = first_pass(row, 0.f, pass, seg_sum, thread_max);
  const float row_max = b.hi;
  int token = 0;
  bool ok = b.at_lo.sum > 0.f;  // something to draw
  bool done = false;            // token drawn in shared memory (finish.cuh)
  if (ok) {
    // The filter, and whether F = {p > lo} is known already (then one draw is the answer).
    Filter f{0x7fffffff, math::inf, false};
    const float top_p = (M == Mode::kTopP || M == Mode::kJoint || M == Mode::kTopKFirst) ? row_top_p(p, row_index) : 1.f;
    if (M == Mode::kTopK || M == Mode::kJoint || M == Mode::kTopKFirst) f.k = row_top_k(p, row_index);
    if ((M == Mode::kTopP || M == Mode::kJoint) && top_p < 1.f) { f.mass = top_p; f.use_mass = true; }
    if (M == Mode::kMinP) {
      // F = {p ≥ max · min_p}: one pass at the float below the pivot measures it.
      const float min_p = p.min_p_arr ? p.min_p_arr[row_index] : p.min_p;
      const float pivot = b.hi * min_p;
      if (pivot > 0.f) {
        const float lo = __uint_as_float(__float_as_uint(pivot) - 1u);  // p > lo  ⇔  p ≥ pivot
        const float x[kPivots] = {lo, lo, lo, lo};
        pivot_pass(row, x, pass);
        b.lo = lo;
        b.at_lo = pass.stats[0];
        keep_segment_sums(pass, 0, seg_sum);
      }
    }
    if constexpr (kSketch) {
      // The top-k filter binds and k ≤ kThreads: the sketch, one gather pass, the finish.
      if (f.k <= kThreads && !f.accepts(b.at_lo)) done = top_k_finish<T, VEC, M>(row, f, top_p, row_max, b, pass, seg_sum, rng, token);
    }
    bool exact = M == Mode::kAll || M == Mode::kMinP || f.accepts(b.at_lo) || b.converged();
    if (!done && M == Mode::kTopKFirst) {
      // Top-k exactly (F_k = {p > lo}, mass Z_k); then top-p on F_k renormalized: the tokens of
      // F_k whose mass above is < top_p · Z_k, the proposals starting from F_k, hi back at the max.
      search(row, f, b, pass, seg_sum);
      exact = true;  // top_p = 1: F_k is the answer
      if (top_p < 1.f) {
        f.mass = top_p * b.at_lo.sum;
        f.use_mass = true;
        b.hi = row_max;
        b.at_hi = PivotStats{0, 0.f, math::inf, row_max};
        exact = f.accepts(b.at_lo);
      }
    }
    for (int round = 0; round < kMaxRounds && !done; ++round) {
      const float u = rng.uniform();
      token = draw(row, b.lo, u * b.at_lo.sum, seg_sum, dsh);
      if (token < 0) { token = 0; ok = false; break; }
      if (exact) break;
      const float pj = to_float(row.data[token]);
      if (pj >= b.hi) break;  // P(hi) holds and P is monotone
      float x[kPivots];
      b.place(f, true, pj, x);
      pivot_pass(row, x, pass);
      PivotStats s[kPivots];
#pragma unroll
      for (int i = 0; i < kPivots; ++i) s[i] = pass.stats[i];
      if (f.accepts(s[0])) break;  // p_j passes: j ∈ F
      const int i = b.update(f, x, s);
      if (i >= 0) keep_segment_sums(pass, i, seg_sum);
      exact = f.accepts(b.at_lo) || b.converged();
    }
  }
  if (threadIdx.x == 0) {
    p.samples[row_index] = ok ? token : 0;
    if (p.valid) p.valid[row_index] = ok ? 1 : 0;
  }
}

// ---- renorm and mask: the search, then a write pass ----

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* dst, const float (&f)[VEC]) {
  if constexpr (VEC == 1) {
    dst[0] = from_float<T>(f[0]);
  } else if constexpr (VEC == 4) {
    *reinterpret_cast<float4*>(dst) = make_float4(f[0], f[1], f[2], f[3]);
  } else {
    *reinterpret_cast<uint4*>(dst) = vec_io::vec8<T>::from_float(f);
  }
}

// out[j] = fn(x[j]) over the row, each warp its segment, vector by vector.
template <typename T, int VEC, typename Fn>
__device__ __forceinline__ void write_pass(const Row<T, VEC>& row, T* out, Fn&& fn) {
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  const int end = row.seg_end(w);
  for (int v = row.seg_begin(w) + lane; v < end; v += 32) {
    float f[VEC];
    row.load(v, end, f);
#pragma unroll
    for (int e = 0; e < VEC; ++e) f[e] = fn(f[e]);
    store_vec<T, VEC>(out + int64(v) * VEC, f);
  }
}

// The sketch path of top_k_renorm_probs / top_k_mask_logits (finish.cuh), after a first pass with
// the thread maxima in cs.val and count(p > floor) ≥ k, k ≤ kThreads: gather {p ≥ t_k}, sort, find
// the boundary. On success the kept set is {p > lo} with mass `total`. On failure (t_k at the
// floor, or overflow) false, the bracket updated with what the gather pass measured.
template <typename T, int VEC>
__device__ __forceinline__ bool threshold_finish(const Row<T, VEC>& row, const Filter& f, float floor, Bracket& b, PassShared& pass,
                                                 float (&seg_sum)[kWarps], CandShared& cs, float& lo, float& total) {
  const float row_max = b.hi;
  const float tk = sketch_kth(cs, f.k);
  if (!(tk > floor)) return false;
  const float g = below(tk);
  float x[kPivots];
  key_steps(g, tk, row_max, x);
  const int n = gather_pass(row, x, pass, cs, g, math::inf);
  if (n > kCand) {
    PivotStats s[kPivots];
#pragma unroll
    for (int i = 0; i < kPivots; ++i) s[i] = pass.stats[i];
    const int i = b.update(f, x, s);
    if (i >= 0) keep_segment_sums(pass, i, seg_sum);
    return false;
  }
  sort_candidates(cs, n);
  const Candidates c(cs, n);
  const int m = c.first_rejected(cs, 0, n, f, 0, 0.f);
  lo = m < n ? cs.thr : g;
  total = c.prefix(cs, m - 1);
  return true;
}

// top_p_renorm_probs after a search stopped with at most kCand elements in (lo, hi]: gather them,
// sort, find the boundary with the count and mass above hi. Kept set {p > lo}, mass `total`.
template <typename T, int VEC>
__device__ __forceinline__ bool bracket_finish(const Row<T, VEC>& row, const Filter& f, const Bracket& b, PassShared& pass,
                                               CandShared& cs, float& lo, float& total) {
  if (b.at_lo.count - b.at_hi.count > kCand) return false;
  const float x[kPivots] = {b.lo, b.lo, b.lo, b.lo};
  const int n = gather_pass(row, x, pass, cs, b.lo, b.hi);
  if (n > kCand) return false;  // not reached: n is the bracket's count
  sort_candidates(cs, n);
  const Candidates c(cs, n);
  const int m = c.first_rejected(cs, 0, n, f, b.at_hi.count, b.at_hi.sum);
  lo = m < n ? cs.thr : b.lo;
  total = b.at_hi.sum + c.prefix(cs, m - 1);
  return true;
}

// top_k_renorm_probs (kTopP = false) / top_p_renorm_probs (true): p / Σ_F p on F, 0 elsewhere;
// a row with no positive entry is all zeros.
template <typename T, int VEC, bool kTopP>
__device__ __forceinline__ void renorm_row(const SamplingParams& p) {
  __shared__ PassShared pass;
  __shared__ float seg_sum[kWarps];
  CandShared& cs = cand_shared();
  const Row<T, VEC> row = row_of<T, VEC>(p);
  T* out = static_cast<T*>(p.output) + int64(blockIdx.x) * p.row_stride;
  Bracket b = first_pass(row, 0.f, pass, seg_sum, kTopP ? nullptr : cs.val);
  Filter f{0x7fffffff, math::inf, false};
  if (kTopP) {
    const float top_p = row_top_p(p, blockIdx.x);
    if (top_p < 1.f) { f.mass = top_p; f.use_mass = true; }
  } else {
    f.k = row_top_k(p, blockIdx.x);
  }
  float lo = b.lo, total = b.at_lo.sum;
  if (b.at_lo.sum > 0.f) {
    bool done = false;
    if (!kTopP) {
      if (f.k <= kThreads && !f.accepts(b.at_lo)) done = threshold_finish(row, f, 0.f, b, pass, seg_sum, cs, lo, total);
    } else {
      // Search until the bracket holds at most kCand elements, then gather them and finish.
      search(row, f, b, pass, seg_sum, kCand);
      if (!f.accepts(b.at_lo) && !b.converged()) done = bracket_finish(row, f, b, pass, cs, lo, total);
    }
    if (!done) {
      search(row, f, b, pass, seg_sum);
      lo = b.lo;
      total = b.at_lo.sum;
    }
  }
  const bool any = total > 0.f;
  write_pass(row, out, [&](float x) { return any && x > lo ? x / total : 0.f; });
}

// top_k_mask_logits: the logits with count(x > x_j) < k, -inf elsewhere (ties at the k-th kept).
template <typename T, int VEC>
__device__ __forceinline__ void mask_logits_row(const SamplingParams& p) {
  __shared__ PassShared pass;
  __shared__ float seg_sum[kWarps];
  const Row<T, VEC> row = row_of<T, VEC>(p);
  T* out = static_cast<T*>(p.output) + int64(blockIdx.x) * p.row_stride;
  CandShared& cs = cand_shared();
  Bracket b = first_pass(row, -math::inf, pass, seg_sum, cs.val);
  const Filter f{row_top_k(p, blockIdx.x), math::inf, false};
  const bool all = f.accepts(b.at_lo);  // fewer than k values above -inf: keep the row (NaN and -inf too)
  float lo = b.lo, total = 0.f;
  bool done = false;
  if (!all && f.k <= kThreads) done = threshold_finish(row, f, -math::inf, b, pass, seg_sum, cs, lo, total);
  if (!all && !done) {
    search(row, f, b, pass, seg_sum);
    lo = b.lo;
  }
  (void)total;
  write_pass(row, out, [&](float x) { return all || x > lo ? x : -math::inf; });
}

// ---- softmax(logits / T), online ----

// A running (max, Σ 2^(y − max)) pair in log2 units; empty = (-inf, 0).
struct SoftmaxState {
  float m, d;
  __device__ __forceinline__ void merge(float m2, float d2) {
    const float mm = fmaxf(m, m2);
    // Guard (-inf) − (-inf): an empty side contributes 0, not NaN.
    const float a = m == -math::inf ? 0.f : d * math::ptx_exp2(m - mm);
    const float c = m2 == -math::inf ? 0.f : d2 * math::ptx_exp2(m2 - mm);
    m = mm;
    d = a + c;
  }
};

// One read for the max and the sum (online: each group of loaded values rescales the running sum
// once), one read + write for the output. y = x · log2(e) / T, out = 2^(y − max) / Σ. A row with a
// NaN, a +inf, or no finite value gives NaN everywhere (as torch.softmax).
template <typename T, int VEC>
__device__ __forceinline__ void softmax_row(const SamplingParams& p) {
  __shared__ float2 warp_state[kWarps];
  const Row<T, VEC> row = row_of<T, VEC>(p);
  T* out = static_cast<T*>(p.output) + int64(blockIdx.x) * p.row_stride;
  const float temperature = p.temperature_arr ? p.temperature_arr[blockIdx.x] : p.temperature;
  const float scale = math::log2e / temperature;
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  SoftmaxState s{-math::inf, 0.f};
  bool nan = false;
  const int begin = row.seg_begin(w), end = row.seg_end(w);
  constexpr int U = kUnroll<VEC>;
  for (int v = begin + lane; v < end; v += 32 * U) {
    float f[U][VEC];
#pragma unroll
    for (int u = 0; u < U; ++u) row.load(v + 32 * u, end, f[u]);
    float gm = -math::inf;
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const bool real = v + 32 * u < end;
        nan |= real && f[u][e] != f[u][e];
        f[u][e] = real ? f[u][e] * scale : -math::inf;
        gm = fmaxf(gm, f[u][e]);
      }
    }
    float gd = 0.f;
    if (gm != -math::inf) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) gd += math::ptx_exp2(f[u][e] - gm);
      }
    }
    s.merge(gm, gd);
  }
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) s.merge(math::shfl_xor(s.m, m), math::shfl_xor(s.d, m));
  nan = __any_sync(0xffffffffu, nan);
  if (lane == 0) warp_state[w] = make_float2(s.m, nan ? __int_as_float(0x7fffffff) : s.d);
  __syncthreads();
  // Every warp combines the 32 warp states (same order in each: the same result).
  SoftmaxState t{warp_state[lane].x, warp_state[lane].y};
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) t.merge(math::shfl_xor(t.m, m), math::shfl_xor(t.d, m));
  const bool bad = !(t.d > 0.f) || t.m == math::inf || t.d != t.d;  // NaN, +inf max, or nothing finite
  const float mx = t.m, inv = 1.f / t.d;
  write_pass(row, out, [&](float x) { return bad ? __int_as_float(0x7fffffff) : math::ptx_exp2(x * scale - mx) * inv; });
}

// ---- sampling_from_logits: Gumbel-max ----

// argmax_j (x_j + g_j), g_j = −ln2 · log2(−log2(u_j + 1e-20) + 1e-20) (a standard Gumbel up to a
// constant shift, which the argmax ignores), so the token is distributed as softmax(x). The
// uniforms are upstream's: element j of row b takes word j mod G of the Philox stream
// curand_init(seed, b · vocab + (j − j mod G), offset), G = gcd(4, vocab) (upstream's curand_uniform4
// per group of min(4, vec) elements, vec = gcd(16 / sizeof(T), vocab)); subsequences in 64 bits
// (upstream multiplies in 32). One pass; ties go to the smallest index. NaN and -inf logits are never
// chosen; a row with neither a finite nor a +inf logit gives token 0, valid = 0.
__device__ __forceinline__ float gumbel(float u) {
  return -0.6931471806f * math::ptx_log2(-math::ptx_log2(u + 1e-20f) + 1e-20f);
}

template <typename T, int VEC>
__device__ __forceinline__ void gumbel_row(const SamplingParams& p) {
  __shared__ float warp_best[kWarps];
  __shared__ int warp_index[kWarps];
  const Row<T, VEC> row = row_of<T, VEC>(p);
  const unsigned long long seed = philox::seed_of(p.seed_arr, p.seed);
  const unsigned long long offset = philox::offset_of(p.offset_arr, p.offset);
  const int vocab = p.vocab_size;
  const int group = vocab % 4 == 0 ? 4 : vocab % 2 == 0 ? 2 : 1;
  const unsigned long long base = (unsigned long long)blockIdx.x * (unsigned long long)vocab;
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  float best = -math::inf;
  int best_index = 0x7fffffff;
  // One vector at a time (the Philox rounds, not the loads, bound this kernel; loads in flight
  // beside them would spill). A vector of 4 or 8 starts a group at its first element; scalar
  // loads (a thread's elements 32 apart) start their element's group stream and skip to its word.
  const int end = row.seg_end(w);
#pragma unroll 1
  for (int v = row.seg_begin(w) + lane; v < end; v += 32) {
    float f[VEC];
    row.load(v, end, f);
    philox::Stream rng(seed, base + (unsigned long long)(v * VEC - (v * VEC) % group), offset);
    for (int k = 0; k < (v * VEC) % group; ++k) rng.next();
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const int j = v * VEC + e;
      if (e > 0 && j % group == 0) rng = philox::Stream(seed, base + (unsigned long long)j, offset);
      const float y = f[e] + gumbel(rng.uniform());
      if (y > best) { best = y; best_index = j; }  // a thread visits its indices in increasing order
    }
  }
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) {
    const float ob = math::shfl_xor(best, m);
    const int oi = __shfl_xor_sync(0xffffffffu, best_index, m);
    if (ob > best || (ob == best && oi < best_index)) { best = ob; best_index = oi; }
  }
  if (lane == 0) { warp_best[w] = best; warp_index[w] = best_index; }
  __syncthreads();
  if (w == 0) {
    best = warp_best[lane];
    best_index = warp_index[lane];
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) {
      const float ob = math::shfl_xor(best, m);
      const int oi = __shfl_xor_sync(0xffffffffu, best_index, m);
      if (ob > best || (ob == best && oi < best_index)) { best = ob; best_index = oi; }
    }
    if (lane == 0) {
      const bool ok = best > -math::inf && best_index < vocab;
      p.samples[blockIdx.x] = ok ? best_index : 0;
      if (p.valid) p.valid[blockIdx.x] = ok ? 1 : 0;
    }
  }
}

// ---- chain_speculative_sampling ----

// relu(q − p) over a row (p null: q itself), read as a Row is (NaN past the end; NaN entries of q
// or p count as 0).
template <typename T, int VEC>
struct ResidualRow {
  static constexpr int kVec = VEC;
  const T* q;
  const T* p;
  int num_vecs, seg_vecs;
  __device__ __forceinline__ ResidualRow(const T* q_, const T* p_, int vocab) : q(q_), p(p_), num_vecs(vocab / VEC) {
    seg_vecs = (num_vecs + kWarps - 1) / kWarps;
  }
  __device__ __forceinline__ int seg_begin(int w) const { return min(w * seg_vecs, num_vecs); }
  __device__ __forceinline__ int seg_end(int w) const { return min((w + 1) * seg_vecs, num_vecs); }
  __device__ __forceinline__ void load(int v, int end, float (&f)[VEC]) const {
    if (v < end) {
      VecLoad<T, VEC>::load(q + int64(v) * VEC, f);
      if (p != nullptr) {
        float d[VEC];
        VecLoad<T, VEC>::load(p + int64(v) * VEC, d);
#pragma unroll
        for (int e = 0; e < VEC; ++e) f[e] = f[e] - d[e];
      }
#pragma unroll
      for (int e = 0; e < VEC; ++e) f[e] = fmaxf(f[e], 0.f);  // NaN → 0
    } else {
#pragma unroll
      for (int e = 0; e < VEC; ++e) f[e] = __int_as_float(0x7fffffff);
    }
  }
};

// Each segment's Σ_{x > 0} x into seg_sum (warp w: segment w); returns the row's total (fixed order).
template <typename R>
__device__ __forceinline__ float segment_sums(const R& row, float (&seg_sum)[kWarps]) {
  constexpr int VEC = R::kVec;
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  const int end = row.seg_end(w);
  float s = 0.f;
  for (int v = row.seg_begin(w) + lane; v < end; v += 32) {
    float f[VEC];
    row.load(v, end, f);
#pragma unroll
    for (int e = 0; e < VEC; ++e) s += f[e] > 0.f ? f[e] : 0.f;
  }
  s = warp_sum(s);
  __syncthreads();  // every thread is done reading the previous seg_sum
  if (lane == 0) seg_sum[w] = s;
  __syncthreads();
  float total = 0.f;
  for (int i = 0; i < kWarps; ++i) total += seg_sum[i];
  return total;
}

// Upstream's ChainSpeculativeSampling, per request b (stream curand_init(seed, b, offset)): for
// i < n, u_i; the draft token d_i is accepted while u_i · p_draft(d_i) < p_target(d_i), and the
// first rejection stops the chain at pos = i (pos = n when all pass). The positions pos..n−1 are
// then tested again with fresh uniforms, each on its own, to count `accepted` (pos + those that
// pass; `emitted` = pos). At pos a token is drawn by inverse CDF from relu(q_pos − p_pos) (from
// q_n, the bonus token, when pos = n), with the next uniform; the rest is −1. Where the residual
// has no mass (q ≤ p everywhere, reachable only with u = 1) the draw is from q_pos; a target row
// with no positive entry gives token 0. A draft id outside [0, vocab) is rejected. The counts are
// added into p.accepted[b] / p.emitted[b] (upstream's output_accepted_token_num and
// output_emitted_draft_token_num accumulate across calls).
template <typename T, int VEC>
__device__ __forceinline__ void chain_speculative_row(const ChainSpeculativeParams& p) {
  __shared__ DrawShared dsh;
  __shared__ float seg_sum[kWarps];
  const int b = blockIdx.x, n = p.num_draft, vocab = p.vocab_size;
  const T* draft = static_cast<const T*>(p.draft_probs) + int64(b) * n * vocab;
  const T* target = static_cast<const T*>(p.target_probs) + int64(b) * (n + 1) * vocab;
  int* out = p.output_token_ids + int64(b) * (n + 1);
  philox::Stream rng(philox::seed_of(p.seed_arr, p.seed), b, philox::offset_of(p.offset_arr, p.offset));
  auto passes = [&](int i, float u) {
    const int id = p.draft_token_ids[int64(b) * n + i];
    if (id < 0 || id >= vocab) return false;
    const float q = to_float(target[int64(i) * vocab + id]), pd = to_float(draft[int64(i) * vocab + id]);
    return u * pd < q;
  };
  int pos = n;
  for (int i = 0; i < n; ++i) {
    if (!passes(i, rng.uniform())) { pos = i; break; }
    if (threadIdx.x == 0) out[i] = p.draft_token_ids[int64(b) * n + i];
  }
  int accepted = pos;
  for (int i = pos; i < n; ++i) accepted += passes(i, rng.uniform()) ? 1 : 0;
  const float u = rng.uniform();
  const ResidualRow<T, VEC> residual(target + int64(pos) * vocab, pos < n ? draft + int64(pos) * vocab : nullptr, vocab);
  float total = segment_sums(residual, seg_sum);
  int token;
  if (total > 0.f) {
    token = draw(residual, 0.f, u * total, seg_sum, dsh);
  } else {
    const ResidualRow<T, VEC> q(target + int64(pos) * vocab, nullptr, vocab);
    total = segment_sums(q, seg_sum);
    token = total > 0.f ? draw(q, 0.f, u * total, seg_sum, dsh) : 0;
  }
  if (threadIdx.x == 0) {
    out[pos] = token < 0 ? 0 : token;
    for (int i = pos + 1; i <= n; ++i) out[i] = -1;
    p.accepted[b] += accepted;  // added, as upstream's output_*_token_num (the caller zeroes them)
    p.emitted[b] += pos;
  }
}

// ---- the Philox check: the first vocab_size uniforms of each row's stream (seed and offset by
// value or from device memory, as the samplers take them) ----

__device__ __forceinline__ void philox_uniforms_row(const SamplingParams& p) {
  if (threadIdx.x != 0) return;
  philox::Stream rng(philox::seed_of(p.seed_arr, p.seed), blockIdx.x, philox::offset_of(p.offset_arr, p.offset));
  float* out = static_cast<float*>(p.output) + int64(blockIdx.x) * p.row_stride;
  for (int i = 0; i < p.vocab_size; ++i) out[i] = rng.uniform();
}

}  // namespace sampling
}  // namespace flashinfer
