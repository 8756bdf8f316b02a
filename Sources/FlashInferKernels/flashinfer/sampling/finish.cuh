// Finishing a threshold search in shared memory: once the undecided elements of a row are few, one
// pass appends them (value and index) to a shared buffer, and the rest — the exact threshold, the
// kept set's mass, a second (top-p) filter on it, the draw — runs on the buffer, not the row.
//
// The top-k sketch. A top-k filter (k ≤ kThreads) needs no search to start: the first pass also
// leaves each thread's largest element (`thread_max`), and the k-th largest of these 1024 maxima,
// t_k, is a value with count(p ≥ t_k) ≥ k (t_1..t_k are k distinct elements, all ≥ t_k). So
// g = the float below t_k has count(p > g) ≥ k: P(g) fails, F_k ⊆ {p > g}, and one gather pass at g
// collects all of F_k. On a row whose large values are spread over the threads (any row not built
// against this layout) {p > g} holds about k elements; the buffer takes kCand. When it overflows
// (the large values bunched in a few threads' strips), the caller falls back to the pivot search.
//
// The finish (`Candidates`): sort the buffer by (value descending, index ascending) — a total order,
// so the nondeterministic append order leaves no trace — take the inclusive prefix sums in that
// order (fixed-order block scan), and test the filter at each value group's first position j:
//   count(p > c_j) = c_hi + j,   Σ_{p > c_j} p = s_hi + prefix_excl(j),
// where c_hi, s_hi are the count and mass above the gathered interval (0 when it is (g, ∞)). P is
// monotone, so the kept candidates are a prefix [0, m) of the sorted buffer, m = the first group
// start where P fails. A sampler then draws by inverse CDF over [0, m) in the sorted order (the
// same distribution as in index order: p restricted to F, renormalized).
#pragma once
#include <flashinfer/sampling/filter.cuh>

namespace flashinfer {
namespace sampling {

constexpr int kCand = 4096;                  // candidates the buffer holds
constexpr int kCandPerThread = kCand / kThreads;
static_assert(kCand % kThreads == 0 && kCand >= kThreads, "each thread owns kCandPerThread consecutive slots");

struct CandShared {
  float val[kCand];  // the values; after `scan`, the inclusive prefix sums (sorted order)
  int idx[kCand];    // the element indices
  float warp_total[kWarps];
  int n;             // elements appended (may exceed kCand: overflow, only the first kCand stored)
  int pos[3];        // atomicMin slots: first rejected position (two filters), drawn position
  float thr;         // the value at a rejected position
};

// The pass's extra: appends every element in (lo, hi] (NaN never is).
struct Gather {
  CandShared* cs;
  float lo, hi;
  __device__ __forceinline__ void operator()(float p, int index) const {
    if (p > lo && p <= hi) {
      const int s = atomicAdd(&cs->n, 1);
      if (s < kCand) {
        cs->val[s] = p;
        cs->idx[s] = index;
      }
    }
  }
};

// The float just below x in the keys' order (p > below(x) ⇔ p ≥ x). −0.0 is skipped: its key sits
// just below +0.0's, but p > −0.0 excludes p = +0.0, so below(+0.0) is −denorm_min. (It returned
// −0.0, and a top_k_mask_logits row whose k-th value was 0 masked its zeros: H200, 64873db, seed
// 1796395039; the "signed zeros at the k-th" check cases.)
__device__ __forceinline__ float below(float x) {
  uint32 k = order_key(x) - 1u;
  if (k == 0x7fffffffu) --k;  // the key of −0.0
  return from_order_key(k);
}

// (val, idx) a before (val, idx) b: larger value first, then smaller index.
__device__ __forceinline__ bool cand_before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

// Sorts val/idx[0..n) (n ≤ kCand) by cand_before, padding to a power of two with (-inf, INT_MAX)
// (which sorts last). Bitonic: log2(N)(log2(N)+1)/2 steps of N/2 compare-exchanges, a barrier each.
__device__ __forceinline__ void sort_candidates(CandShared& cs, int n) {
  int size = 2;
  while (size < n) size <<= 1;
  for (int j = n + threadIdx.x; j < size; j += kThreads) { cs.val[j] = -math::inf; cs.idx[j] = 0x7fffffff; }
  __syncthreads();
  for (int k = 2; k <= size; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int t = threadIdx.x; t < size / 2; t += kThreads) {
        const int i = 2 * t - (t & (j - 1)), l = i + j;
        const float vi = cs.val[i], vl = cs.val[l];
        const int ii = cs.idx[i], il = cs.idx[l];
        const bool swap = (i & k) == 0 ? cand_before(vl, il, vi, ii) : cand_before(vi, ii, vl, il);
        if (swap) { cs.val[i] = vl; cs.val[l] = vi; cs.idx[i] = il; cs.idx[l] = ii; }
      }
      __syncthreads();
    }
  }
}

// The sorted buffer, scanned: each thread's kCandPerThread consecutive slots j = t·4 + e, their
// values, exclusive prefix sums and whether j starts a value group. Construct after
// sort_candidates; leaves cs.val = the inclusive prefix sums (valid below n).
struct Candidates {
  int n;
  float v[kCandPerThread], excl[kCandPerThread];
  bool start[kCandPerThread];

  __device__ __forceinline__ Candidates(CandShared& cs, int count) : n(count) {
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32, j0 = threadIdx.x * kCandPerThread;
    float run = 0.f;
#pragma unroll
    for (int e = 0; e < kCandPerThread; ++e) {
      const int j = j0 + e;
      v[e] = j < n ? cs.val[j] : 0.f;
      start[e] = j < n && (j == 0 || cs.val[j - 1] != v[e]);
      excl[e] = run;
      run += v[e];
    }
    if (threadIdx.x == 0) { cs.pos[0] = 0x7fffffff; cs.pos[1] = 0x7fffffff; cs.pos[2] = 0x7fffffff; }
    // Block exclusive scan of the thread totals, in a fixed order (as row_pass.cuh's draw).
    const float incl_w = warp_inclusive_scan(run, lane);
    const float up = __shfl_up_sync(0xffffffffu, incl_w, 1);
    const float excl_w = lane == 0 ? 0.f : up;
    if (lane == 31) cs.warp_total[w] = incl_w;
    __syncthreads();  // also: every thread has read cs.val before it is overwritten
    float before = 0.f;
    for (int i = 0; i < w; ++i) before += cs.warp_total[i];
    const float base = before + excl_w;
#pragma unroll
    for (int e = 0; e < kCandPerThread; ++e) {
      excl[e] += base;
      if (j0 + e < n) cs.val[j0 + e] = excl[e] + v[e];
    }
    __syncthreads();
  }

  // The first group start j < limit where f fails, with c_hi / s_hi elements / mass above the
  // buffer; `limit` when none. Slot `slot` of cs.pos; the value there in cs.thr. Every thread calls.
  __device__ __forceinline__ int first_rejected(CandShared& cs, int slot, int limit, const Filter& f, int c_hi, float s_hi) const {
    const int j0 = threadIdx.x * kCandPerThread;
#pragma unroll
    for (int e = 0; e < kCandPerThread; ++e) {
      const int j = j0 + e;
      if (j < limit && start[e] && !f.accepts(PivotStats{c_hi + j, s_hi + excl[e], 0.f, 0.f})) atomicMin(&cs.pos[slot], j);
    }
    __syncthreads();
    const int m = min(cs.pos[slot], limit);
#pragma unroll
    for (int e = 0; e < kCandPerThread; ++e) {
      if (j0 + e == m) cs.thr = v[e];
    }
    __syncthreads();
    return m;
  }

  // The inclusive prefix sum at j (0 for j < 0).
  __device__ __forceinline__ float prefix(const CandShared& cs, int j) const { return j >= 0 ? cs.val[j] : 0.f; }

  // Inverse CDF over [0, m): the first j whose inclusive prefix exceeds target (rounding: m − 1).
  // Returns the element index. Every thread calls; m ≥ 1.
  __device__ __forceinline__ int draw(CandShared& cs, int m, float target) const {
    const int j0 = threadIdx.x * kCandPerThread;
#pragma unroll
    for (int e = 0; e < kCandPerThread; ++e) {
      const int j = j0 + e;
      if (j < m && cs.val[j] > target && (j == 0 || !(cs.val[j - 1] > target))) atomicMin(&cs.pos[2], j);
    }
    __syncthreads();
    const int j = min(cs.pos[2], m - 1);
    return cs.idx[j];
  }
};

// The gather pass: every element in (lo, hi] into the buffer, plus the statistics at pivots x (as
// pivot_pass). Returns the number of elements in (lo, hi] (> kCand: the buffer overflowed).
template <typename T, int VEC>
__device__ __forceinline__ int gather_pass(const Row<T, VEC>& row, const float (&x)[kPivots], PassShared& pass, CandShared& cs,
                                           float lo, float hi) {
  if (threadIdx.x == 0) cs.n = 0;
  __syncthreads();  // also: every thread is done reading cs before it is refilled
  pivot_pass(row, x, pass, Gather{&cs, lo, hi});
  return cs.n;
}

// The top-k sketch (see the file comment): after a first pass that wrote each thread's largest
// element to cs.val[0..kThreads), the k-th largest of them (k ≤ kThreads). Sorts cs.
__device__ __forceinline__ float sketch_kth(CandShared& cs, int k) {
  cs.idx[threadIdx.x] = threadIdx.x;
  __syncthreads();
  sort_candidates(cs, kThreads);
  return cs.val[k - 1];
}

}  // namespace sampling
}  // namespace flashinfer
