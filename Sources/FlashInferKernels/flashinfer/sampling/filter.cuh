// The filters of the samplers and the renorm/mask ops, as a threshold search on a row.
//
// A filter keeps token j when P(p_j) holds, with
//   P(x) = count(p > x) < k  and  Σ_{p > x} p < mass          (either test can be off)
// — top-k, top-p and joint top-k/top-p (SEMANTICS.md §2.8; docs/Sampling.md gives the exact
// supports). P is monotone (false below some value, true above), so the kept set is
// F = {p ≥ v} for the smallest element value v with P(v), i.e. F = {p > lo} for any lo between
// v's predecessor among the elements and v.
//
// The search keeps a bracket (lo, hi] with P(lo) false and P(hi) true: every element ≤ lo is
// dropped, every element > hi kept, and the elements in (lo, hi] lie in [a, c] = [min{p > lo},
// max{p ≤ hi}]. A pivot pass (row_pass.cuh) evaluates P at kPivots values at once and the bracket
// shrinks to the two pivots around the flip. It has converged when a = c: (lo, hi] then holds one
// distinct value, which is v, so F = {p > lo}.
//
// Pivots per pass (`place`): while [a, c] spans more than a binade, equal steps in the order of
// the floats' bit patterns (about log-spaced: a softmax's tail spans ~10 binades); once narrower,
// the bit-pattern midpoint (halves the floats left whatever the data) and a guess g from linear
// interpolation of the counts (or masses) at lo and hi, with g ± (c − a)/64 beside it: in a narrow
// bracket the elements are close to evenly spread and the guess lands within a 64th. Either way
// the floats left shrink at least by half per pass, so a search ends within ~32 passes. The
// samplers put their sampled token's value in the first pivot (below).
#pragma once
#include <flashinfer/sampling/row_pass.cuh>

namespace flashinfer {
namespace sampling {

constexpr int kMaxRounds = 64;  // passes of one search (≤ ~33 needed: each halves the floats in [a, c])

struct Filter {
  int k;          // count(p > x) < k; INT_MAX: off
  float mass;     // Σ_{p > x} p < mass
  bool use_mass;  // the mass test is on
  __device__ __forceinline__ bool accepts(const PivotStats& s) const {
    return s.count < k && (!use_mass || s.sum < mass);
  }
};

// Floats ↔ unsigned keys in the same order (negative values too: the logits' search).
__device__ __forceinline__ uint32 order_key(float f) {
  const uint32 b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float from_order_key(uint32 k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct Bracket {
  float lo, hi;
  PivotStats at_lo;  // the pass statistics at lo (count, sum, min_above = a)
  PivotStats at_hi;  // at hi (count, sum, max_upto = c)

  // (lo, hi] holds a single distinct value (or, from rounding, nothing): F = {p > lo}.
  __device__ __forceinline__ bool converged() const { return !(at_lo.min_above < at_hi.max_upto); }

  // kPivots pivots in [a, c]; x[0] = `sampled` when the caller has one (a sampler's token value).
  __device__ __forceinline__ void place(const Filter& f, bool has_sampled, float sampled, float (&x)[kPivots]) const {
    const float a = at_lo.min_above, c = at_hi.max_upto;
    const uint32 ka = order_key(a), kc = order_key(c);
    if (!(a > 0.f && c <= 2.f * a)) {
      // Wide (more than a binade, or through zero): equal steps of the keys, which for positive
      // floats are close to equal steps of log2 — the scale of a softmax's tail. Shrinks the
      // keys left by 4 or 5 per pass.
      const int n = has_sampled ? kPivots - 1 : kPivots;
      const unsigned long long span = (unsigned long long)(kc - ka);
#pragma unroll
      for (int i = 0; i < kPivots; ++i) {
        const int j = has_sampled ? i : i + 1;  // x[1..] (or x[0..]) at steps 1..n of n + 1
        x[i] = from_order_key(ka + uint32(span * (unsigned long long)j / (unsigned long long)(n + 1)));
      }
      if (has_sampled) x[0] = sampled;
      return;
    }
    // Narrow: the elements in [a, c] are close to evenly spread; interpolate where the count (or
    // mass) falls to k (mass), and bracket the guess g by ±(c − a)/64. The key midpoint beside
    // it halves the keys left whatever the data.
    const float mid = from_order_key(ka + (kc - ka) / 2);
    float r = 0.f;
    if (f.k != 0x7fffffff) r = (float(at_lo.count) - (float(f.k) - 0.5f)) / float(at_lo.count - at_hi.count);
    if (f.use_mass) r = fmaxf(r, (at_lo.sum - f.mass) / (at_lo.sum - at_hi.sum));
    if (!(r >= 0.f)) r = 0.f;  // NaN from 0/0
    r = fminf(r, 1.f);
    const float g = a + (c - a) * r, d = (c - a) * (1.f / 64.f);
    x[0] = has_sampled ? sampled : g;
    x[1] = mid;
    x[2] = fmaxf(a, g - d);
    x[3] = fminf(c, g + d);
  }

  // Shrinks to the pivots around the flip. Returns the pivot that became lo (its segment sums
  // are the next draws'), or -1 when lo stays.
  __device__ __forceinline__ int update(const Filter& f, const float (&x)[kPivots], const PivotStats (&s)[kPivots]) {
    int new_lo = -1;
#pragma unroll
    for (int i = 0; i < kPivots; ++i) {
      if (f.accepts(s[i])) {
        if (x[i] < hi) { hi = x[i]; at_hi = s[i]; }
      } else if (x[i] > lo) {
        lo = x[i];
        at_lo = s[i];
        new_lo = i;
      }
    }
    return new_lo;
  }
};

// Warp 0 copies pivot i's segment sums into seg_sum (the sums of {p > lo} the draws read).
__device__ __forceinline__ void keep_segment_sums(const PassShared& pass, int i, float (&seg_sum)[kWarps]) {
  if (threadIdx.x < kWarps) seg_sum[threadIdx.x] = pass.warp_stats[i][threadIdx.x].sum;
  __syncthreads();
}

// The first pass: statistics at `floor` (0 for probabilities: only p > 0 can be kept; -inf for
// logits) and the row's maximum. Returns the bracket (floor, max] and keeps floor's segment sums.
// `thread_max` (optional): each thread's largest element at [threadIdx.x] (finish.cuh's sketch).
template <typename T, int VEC>
__device__ __forceinline__ Bracket first_pass(const Row<T, VEC>& row, float floor, PassShared& pass, float (&seg_sum)[kWarps],
                                              float* thread_max = nullptr) {
  const float x[kPivots] = {floor, math::inf, math::inf, math::inf};
  pivot_pass(row, x, pass, NoExtra(), thread_max);
  Bracket b;
  b.lo = floor;
  b.at_lo = pass.stats[0];
  b.hi = pass.stats[1].max_upto;  // the maximum: P(max) holds for every filter (count 0, mass 0)
  b.at_hi = PivotStats{0, 0.f, math::inf, b.hi};
  keep_segment_sums(pass, 0, seg_sum);
  return b;
}

// Searches the bracket until F = {p > b.lo} (P(lo) holds — everything above the floor is kept — or
// the bracket converged), keeping lo's segment sums. Bounded by kMaxRounds passes (on exhaustion,
// which finite data never reaches, F = {p > lo} keeps a few tokens too many).
// `stop_at` > 0 also stops once the bracket (lo, hi] holds at most that many elements (for
// finish.cuh: gather them and finish in shared memory).
template <typename T, int VEC>
__device__ __forceinline__ void search(const Row<T, VEC>& row, const Filter& f, Bracket& b, PassShared& pass,
                                       float (&seg_sum)[kWarps], int stop_at = 0) {
  for (int round = 0; round < kMaxRounds && !f.accepts(b.at_lo) && !b.converged() && b.at_lo.count - b.at_hi.count > stop_at;
       ++round) {
    float x[kPivots];
    b.place(f, false, 0.f, x);
    pivot_pass(row, x, pass);
    PivotStats s[kPivots];
#pragma unroll
    for (int i = 0; i < kPivots; ++i) s[i] = pass.stats[i];
    const int i = b.update(f, x, s);
    if (i >= 0) keep_segment_sums(pass, i, seg_sum);
  }
}

}  // namespace sampling
}  // namespace flashinfer
