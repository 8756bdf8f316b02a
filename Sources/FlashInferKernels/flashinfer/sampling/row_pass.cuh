// The building blocks of the sampling kernels: one CTA of kThreads threads owns one row of the
// [batch, vocab] input and reads it in passes.
//
// Layout of a pass. The row is cut into kWarps contiguous *segments*, one per warp, of whole
// vectors (VEC elements, 16 bytes for the vector path); lane l of warp w reads vectors
// seg_begin(w) + l, + 32, + 64, ... — every load instruction of a warp covers 512 contiguous bytes.
// A thread accumulates in registers and reduces once at the end of the pass, so a pass costs one
// read of the row and a handful of shuffles, not a block reduction per tile. The per-warp partial
// sums are kept: they are the prefix sums of the row at segment granularity, which is what lets a
// draw (inverse CDF) scan a single segment instead of the row.
//
// What a pass measures (`pivot_pass`): for each of kPivots values x_i, over the elements p > x_i,
//   count_i = #{p > x_i},  sum_i = Σ_{p > x_i} p,  min_above_i = min{p > x_i},
//   max_upto_i = max{p ≤ x_i}   (NaN is in neither set: it never compares),
// and sum_i per segment (`seg_sum[i][w]`). All reductions run in a fixed order: the kernels are
// deterministic (same input, seed and offset: same output), with no atomics.
#pragma once
#include <flashinfer/core/math.cuh>
#include <flashinfer/core/types.cuh>
#include <flashinfer/core/vec_io.cuh>

namespace flashinfer {
namespace sampling {

constexpr int kThreads = 1024;            // one CTA per row
constexpr int kWarps = kThreads / 32;     // = segments per row
constexpr int kPivots = 4;                // pivots evaluated per pass
// Vectors in flight per thread in a pass: 4 (64 bytes of f32); 2 for 8-element vectors, whose
// converted floats would otherwise overflow the 64 registers a 1024-thread CTA allows.
template <int VEC> constexpr int kUnroll = VEC >= 8 ? 2 : 4;
static_assert(kWarps == 32, "the segment scan runs on one warp: one segment per lane");

// ---- loading VEC elements as floats ----

template <typename T, int VEC> struct VecLoad;
template <typename T> struct VecLoad<T, 1> {
  static __device__ __forceinline__ void load(const T* p, float (&f)[1]) { f[0] = to_float(p[0]); }
};
template <> struct VecLoad<float, 4> {  // 16 bytes
  static __device__ __forceinline__ void load(const float* p, float (&f)[4]) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    f[0] = v.x; f[1] = v.y; f[2] = v.z; f[3] = v.w;
  }
};
template <typename T> struct VecLoad<T, 8> {  // 16 bytes of f16/bf16
  static __device__ __forceinline__ void load(const T* p, float (&f)[8]) {
    vec_io::vec8<T>::to_float(*reinterpret_cast<const uint4*>(p), f);
  }
};

// ---- the row and its segments ----

template <typename T, int VEC>
struct Row {
  static constexpr int kVec = VEC;
  const T* data;   // [vocab] the row's elements
  int num_vecs;    // vocab / VEC
  int seg_vecs;    // vectors per segment: ceil(num_vecs / kWarps)

  __device__ __forceinline__ Row(const T* d, int vocab) : data(d), num_vecs(vocab / VEC) {
    seg_vecs = (num_vecs + kWarps - 1) / kWarps;
  }
  __device__ __forceinline__ int seg_begin(int w) const { return min(w * seg_vecs, num_vecs); }
  __device__ __forceinline__ int seg_end(int w) const { return min((w + 1) * seg_vecs, num_vecs); }
  // Vector v (elements v·VEC ...), or NaN (neutral for every statistic) past `end`. A −0.0 is
  // loaded as +0.0 (x + 0 in round-to-nearest): the searches order values by their bit keys
  // (order_key puts −0.0 below +0.0) but count them with float compares (−0.0 == +0.0), so the data
  // keeps one key per value. Outputs that copy an input zero write +0.0 (equal as a float). (The
  // H200 failure with zeros at the k-th value was `below`'s, finish.cuh.)
  __device__ __forceinline__ void load(int v, int end, float (&f)[VEC]) const {
    if (v < end) {
      VecLoad<T, VEC>::load(data + int64(v) * VEC, f);
#pragma unroll
      for (int e = 0; e < VEC; ++e) f[e] += 0.f;
    } else {
#pragma unroll
      for (int e = 0; e < VEC; ++e) f[e] = __int_as_float(0x7fffffff);
    }
  }
};

// Visits every element of warp `w`'s segment once, from this lane: body(value, element index).
// kUnroll<VEC> vectors are loaded before any is used, so each thread keeps kUnroll 16-byte loads in flight.
template <typename T, int VEC, typename Body>
__device__ __forceinline__ void for_each_in_segment(const Row<T, VEC>& row, int w, int lane, Body&& body) {
  const int begin = row.seg_begin(w), end = row.seg_end(w);
  constexpr int U = kUnroll<VEC>;
  for (int v = begin + lane; v < end; v += 32 * U) {
    float f[U][VEC];
#pragma unroll
    for (int u = 0; u < U; ++u) row.load(v + 32 * u, end, f[u]);
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) body(f[u][e], (v + 32 * u) * VEC + e);
    }
  }
}

// ---- warp and block reductions (fixed order) ----

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) x += math::shfl_xor(x, m);
  return x;
}
__device__ __forceinline__ float warp_min(float x) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) x = fminf(x, math::shfl_xor(x, m));
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) x = fmaxf(x, math::shfl_xor(x, m));
  return x;
}
__device__ __forceinline__ int warp_isum(int x) { return __reduce_add_sync(0xffffffffu, x); }

// Inclusive prefix sum over the warp's lanes.
__device__ __forceinline__ float warp_inclusive_scan(float x, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const float y = __shfl_up_sync(0xffffffffu, x, d);
    if (lane >= d) x += y;
  }
  return x;
}

// ---- the pivot pass ----

// One pivot's statistics over the row (see the file comment).
struct PivotStats {
  int count;        // #{p > x}
  float sum;        // Σ_{p > x} p
  float min_above;  // min{p > x}; +inf when none
  float max_upto;   // max{p ≤ x}; -inf when none
};

// Shared memory of a pass: the per-warp partials, and the per-segment sums the draws read.
struct PassShared {
  PivotStats warp_stats[kPivots][kWarps];
  PivotStats stats[kPivots];  // the row's totals (warp i < kPivots reduces pivot i)
};

// What a pass does besides the statistics: nothing (`NoExtra`), or append the elements of an
// interval to the candidate buffer (`Gather`, finish.cuh). `thread_max`, when not null, receives
// each thread's max{p ≤ x[1]} at [threadIdx.x] (with x[1] = +inf: the thread's largest element;
// the top-k sketch of finish.cuh).
struct NoExtra {
  __device__ __forceinline__ void operator()(float, int) const {}
};

// Measures the row at pivots x[0..kPivots) (all threads pass the same x; ends with a barrier, the
// totals in sh.stats and each segment's sum in sh.warp_stats[i][w].sum).
template <typename T, int VEC, typename Extra = NoExtra>
__device__ __forceinline__ void pivot_pass(const Row<T, VEC>& row, const float (&x)[kPivots], PassShared& sh,
                                           Extra extra = Extra(), float* thread_max = nullptr) {
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  int cnt[kPivots];
  float sum[kPivots], mn[kPivots], mx[kPivots];
#pragma unroll
  for (int i = 0; i < kPivots; ++i) { cnt[i] = 0; sum[i] = 0.f; mn[i] = math::inf; mx[i] = -math::inf; }
  for_each_in_segment(row, w, lane, [&](float p, int index) {
#pragma unroll
    for (int i = 0; i < kPivots; ++i) {
      const bool gt = p > x[i];
      cnt[i] += gt;
      sum[i] += gt ? p : 0.f;
      mn[i] = gt ? fminf(mn[i], p) : mn[i];
      mx[i] = gt ? mx[i] : fmaxf(mx[i], p);  // fmaxf ignores the NaN of an element that is neither
    }
    extra(p, index);
  });
  if (thread_max != nullptr) thread_max[threadIdx.x] = mx[1];
#pragma unroll
  for (int i = 0; i < kPivots; ++i) {
    PivotStats s{warp_isum(cnt[i]), warp_sum(sum[i]), warp_min(mn[i]), warp_max(mx[i])};
    if (lane == 0) sh.warp_stats[i][w] = s;
  }
  __syncthreads();
  if (w < kPivots) {
    const PivotStats s = sh.warp_stats[w][lane];
    PivotStats t{warp_isum(s.count), warp_sum(s.sum), warp_min(s.min_above), warp_max(s.max_upto)};
    if (lane == 0) sh.stats[w] = t;
  }
  __syncthreads();
}

// ---- the draw: inverse CDF over the elements p > lo ----

struct DrawShared {
  float thread_sum[kWarps];  // block-scan scratch: each warp's total
  int segment;               // the segment the target falls in
  float target;              // the target within that segment
  int token;                 // the result (-1: none)
  int last;                  // the segment's last element with p > lo (the rounding fallback)
};

// The first element (index order) whose running sum of {p : p > lo} exceeds `target`, where
// seg_sum[w] is segment w's sum of {p > lo} (a pivot pass's sh.warp_stats[i][w].sum, copied
// while lo stays). Reads one segment: about vocab / 32 elements.
// When rounding leaves the target above every running sum, the last such element of the chosen
// segment; -1 when there is none (all seg_sum are 0). Every thread calls it; all get the result.
// `R`: a Row, or any type with its interface (kVec, seg_begin, seg_end, load).
template <typename R>
__device__ __forceinline__ int draw(const R& row, float lo, float target, const float (&seg_sum)[kWarps], DrawShared& sh) {
  constexpr int VEC = R::kVec;
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  __syncthreads();  // every thread has read the previous draw's result
  // 1. The segment: the first whose inclusive prefix exceeds the target (one warp, one lane
  // each). Prefix sums are non-decreasing, so the chosen segment's exclusive prefix (the previous
  // lane's inclusive one, shuffled, not recomputed) is <= target and its offset t >= 0.
  if (w == 0) {
    const float s = seg_sum[lane];
    const float incl = warp_inclusive_scan(s, lane);
    const float up = __shfl_up_sync(0xffffffffu, incl, 1);  // every lane shuffles (full mask)
    const float excl = lane == 0 ? 0.f : up;
    const unsigned over = __ballot_sync(0xffffffffu, incl > target && s > 0.f);
    const unsigned nonzero = __ballot_sync(0xffffffffu, s > 0.f);
    int pick;
    float t;
    if (over != 0) {
      pick = __ffs(over) - 1;
      t = fmaxf(0.f, target - __shfl_sync(0xffffffffu, excl, pick));
    } else {  // rounding (or nothing to draw): the last non-empty segment, its last element
      pick = nonzero != 0 ? 31 - __clz(nonzero) : -1;
      t = math::inf;
    }
    if (lane == 0) { sh.segment = pick; sh.target = t; sh.token = -1; sh.last = -1; }
  }
  __syncthreads();
  const int segment = sh.segment;
  float t = sh.target;
  if (segment < 0) return -1;
  // 2. Within the segment: tiles of kThreads vectors, one per thread, in order. The threads'
  // running-sum intervals [excl, incl) must tile [0, tile total) exactly, so that one thread at
  // most claims t: excl is the previous thread's incl (shuffled within a warp; across warps the
  // warp offsets are summed in sequence, so warp w + 1's offset is warp w's offset + its total).
  const int begin = row.seg_begin(segment), end = row.seg_end(segment);
  int last = -1;
  for (int base = begin; base < end; base += kThreads) {
    const int v = base + threadIdx.x;
    float f[VEC];
    row.load(v, end, f);
    float mine = 0.f;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const bool keep = f[e] > lo;
      mine += keep ? f[e] : 0.f;
      if (keep) last = v * VEC + e;
    }
    const float warp_incl = warp_inclusive_scan(mine, lane);
    const float warp_up = __shfl_up_sync(0xffffffffu, warp_incl, 1);
    const float warp_excl = lane == 0 ? 0.f : warp_up;
    if (lane == 31) sh.thread_sum[w] = warp_incl;
    __syncthreads();
    float before = 0.f, tile = 0.f;
    for (int i = 0; i < kWarps; ++i) {  // broadcast reads; the same sequence in every thread
      if (i == w) before = tile;
      tile += sh.thread_sum[i];
    }
    const float excl = before + warp_excl, incl = before + warp_incl;
    if (excl <= t && t < incl) {
      float run = excl;
      int token = -1, fallback = -1;
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        if (f[e] > lo) {
          fallback = v * VEC + e;
          run += f[e];
          if (token < 0 && run > t) token = v * VEC + e;
        }
      }
      sh.token = token >= 0 ? token : fallback;  // fallback: rounding within the thread's vector
    }
    __syncthreads();
    if (sh.token >= 0) return sh.token;
    t -= tile;
  }
  // Rounding left the target beyond the segment: its last element with p > lo.
  const int last_w = __reduce_max_sync(0xffffffffu, last);
  if (lane == 0) atomicMax(&sh.last, last_w);
  __syncthreads();
  return sh.last;
}

}  // namespace sampling
}  // namespace flashinfer
