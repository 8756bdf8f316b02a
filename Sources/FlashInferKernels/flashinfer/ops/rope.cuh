// Rotary position embedding as an op (upstream pos_enc.cuh: BatchQKApplyRotary*, the
// apply_rope* functions), on q [nnz, Hq, D] and k [nnz, Hk, D] (strided), into q_out / k_out
// (which may be q / k: in place). Row t is at position positions[t] (int32 or int64), or, for
// ragged rows (indptr + offsets, read here: they may live in device memory the host never reads),
// at offsets[b] + t − indptr[b] for the request b with indptr[b] <= t < indptr[b+1] (a binary
// search; rows outside indptr[0] ..< indptr[batch_size] are not written, as upstream's
// per-request kernel leaves them). The first rotary_dim elements of each head rotate in pairs:
//   rotate-half (NeoX, INTERLEAVE false): (e, e + rd/2) for e < rd/2, frequency index e;
//   interleaved (GPT-J, INTERLEAVE true): (2i, 2i + 1), frequency index i;
// a pair (a, b) at angle θ becomes (a·cos θ − b·sin θ, b·cos θ + a·sin θ); elements from
// rotary_dim on are copied (not touched in place).
// The angle: θ = float(pos) · freqs[i] with sin/cos in f32 (the frequencies, scaling included,
// come from the host in f64 rounded to f32: RopeOptions.frequencies, carried in the parameters by
// value), or cos = cache[pos][i], sin = cache[pos][rd/2 + i] from a [cache_rows, rd] f32 cos/sin
// cache (the vLLM/SGLang form); a position outside the cache rotates by NaN (positions in device
// memory are not validated on the host: a bad one gives NaN rows, never a read outside the cache).
//
// Work split: a unit is VEC elements of a head (rotating units first: NeoX units load their
// partner vector rd/2 further; then the copy units). Thread = (row, unit, group of
// heads_per_thread heads), unit fastest; it computes its sin/cos once and applies them to each
// head of its group, q heads then k heads (the launcher picks heads_per_thread so that short
// batches still fill the GPU, as upstream's head-parallel kernel does).
#pragma once
#include <flashinfer/core/pdl.cuh>
#include <flashinfer/ops/vec.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using RopeParams = ::FIRopeParams;  // flashinfer/params.h

// The position of `row`; false for a ragged row outside every request (not written).
__device__ __forceinline__ bool rope_position(const RopeParams& p, int row, long long& pos) {
  if (p.indptr != nullptr) {
    const int n = p.batch_size;
    if (n <= 0 || row < p.indptr[0] || row >= p.indptr[n]) return false;
    int lo = 0, hi = n;  // indptr[lo] <= row < indptr[hi]; terminates whatever indptr holds
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      if (p.indptr[mid] <= row) lo = mid; else hi = mid;
    }
    pos = (long long)p.offsets[lo] + (row - p.indptr[lo]);
    return true;
  }
  pos = p.positions_i64 ? static_cast<const long long*>(p.positions)[row] : (long long)static_cast<const int*>(p.positions)[row];
  return true;
}

template <typename T, int VEC, bool INTERLEAVE>
__device__ __forceinline__ void apply_rope(const RopeParams& p) {
  static_assert(!INTERLEAVE || VEC % 2 == 0, "interleaved pairs must lie in one vector");
  constexpr int kAngles = INTERLEAVE ? VEC / 2 : VEC;  // distinct angles per unit
  const unsigned heads = unsigned(p.num_qo_heads + p.num_kv_heads);
  const unsigned groups = (heads + p.heads_per_thread - 1) / p.heads_per_thread;
  const unsigned per_row = unsigned(p.units) * groups;
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  pdl::wait();
  if (t >= unsigned(p.nnz) * per_row) return;
  const unsigned row = t / per_row, rem = t - row * per_row;
  const unsigned group = rem / p.units, unit = rem - group * p.units;
  const int half = p.rotary_dim / 2;
  const bool rotating = int(unit) < p.rot_units;
  // Element offset of this unit's (first) vector in a head, and of its NeoX partner.
  const int e0 = rotating ? int(unit) * VEC : p.rotary_dim + (int(unit) - p.rot_units) * VEC;

  long long pos;
  if (!rope_position(p, int(row), pos)) return;
  float cs[kAngles], sn[kAngles];
  if (rotating) {
    const int f0 = INTERLEAVE ? e0 / 2 : e0;  // first frequency index
    if (p.cos_sin_cache != nullptr) {
      if (pos >= 0 && pos < p.cache_rows) {
        const float* c = p.cos_sin_cache + pos * p.cache_stride;
#pragma unroll
        for (int i = 0; i < kAngles; ++i) {
          cs[i] = c[f0 + i];
          sn[i] = c[half + f0 + i];
        }
      } else {
#pragma unroll
        for (int i = 0; i < kAngles; ++i) cs[i] = sn[i] = __int_as_float(0x7fffffff);  // NaN: no such position
      }
    } else {
#pragma unroll
      for (int i = 0; i < kAngles; ++i) sincosf(float(pos) * p.freqs[f0 + i], &sn[i], &cs[i]);
    }
  }

  const unsigned h_end = min(heads, (group + 1) * unsigned(p.heads_per_thread));
  for (unsigned h = group * p.heads_per_thread; h < h_end; ++h) {
    const bool is_q = h < unsigned(p.num_qo_heads);
    const unsigned hh = is_q ? h : h - p.num_qo_heads;
    const T* src = static_cast<const T*>(is_q ? p.q : p.k) + int64(row) * (is_q ? p.q_stride_n : p.k_stride_n) +
                   int64(hh) * (is_q ? p.q_stride_h : p.k_stride_h);
    T* dst = static_cast<T*>(is_q ? p.q_out : p.k_out) + int64(row) * (is_q ? p.qo_stride_n : p.ko_stride_n) +
             int64(hh) * (is_q ? p.qo_stride_h : p.ko_stride_h);
    float a[VEC];
    ops::load_float(src + e0, a);
    if (!rotating) {
      ops::store_float(dst + e0, a);
    } else if constexpr (INTERLEAVE) {
#pragma unroll
      for (int i = 0; i < VEC / 2; ++i) {
        const float x = a[2 * i], y = a[2 * i + 1];
        a[2 * i] = x * cs[i] - y * sn[i];
        a[2 * i + 1] = y * cs[i] + x * sn[i];
      }
      ops::store_float(dst + e0, a);
    } else {
      float b[VEC];
      ops::load_float(src + e0 + half, b);
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        const float x = a[i], y = b[i];
        a[i] = x * cs[i] - y * sn[i];
        b[i] = y * cs[i] + x * sn[i];
      }
      ops::store_float(dst + e0, a);
      ops::store_float(dst + e0 + half, b);
    }
  }
  pdl::launch_dependents();
}

}  // namespace flashinfer
