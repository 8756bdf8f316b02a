// Row norms (upstream norm.cuh: RMSNorm, FusedAddRMSNorm, the Gemma variants, LayerNorm), one CTA
// per row of `hidden` elements, f32 accumulation:
//   rmsnorm          out = x · rsqrt(mean(x²) + eps) · (weight_bias + w)
//   fused add        x = input + residual (f32); residual_out ← x rounded to T; out = rmsnorm(x) of
//                    the unrounded x (upstream keeps it in registers too). In place (upstream's
//                    fused_add_rmsnorm): residual_out = residual, out = input
//   layernorm        out = (x − mean(x)) · rsqrt(var(x) + eps) · w + b   (biased variance, from
//                    the centred values: two reductions over the registers, no cancellation)
// Gemma's checkpoints store w − 1: weight_bias 1 scales by (1 + w); 0 otherwise.
//
// The row is read once: each thread holds its kVecs vectors of VEC elements (32 floats, 16 with
// scalar access) in registers between the reduction and the output, so the kernel moves
// exactly the bytes of input (+ residual in and out) + output, and the weight (one L2-resident
// row shared by every CTA). Thread t owns vectors t, t + blockDim, ... (coalesced); the launcher
// sizes blockDim = ceil(hidden / VEC / kVecs) rounded up to a warp (<= 1024: hidden <= 32768,
// 16384 with scalar access).
#pragma once
#include <flashinfer/core/pdl.cuh>
#include <flashinfer/ops/vec.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using NormParams = ::FINormParams;  // flashinfer/params.h

enum class NormKind { kRMSNorm, kFusedAddRMSNorm, kLayerNorm };

namespace ops {

// Floats of the row a thread keeps in registers: 32, or 16 for scalar (VEC 1) access, whose 32
// separate loads would not fit 64 registers (1024 threads per CTA). Host: normElemsPerThread.
template <int VEC> constexpr int norm_elems_per_thread() { return VEC >= 2 ? 32 : 16; }

// Sum of v over the CTA (every thread gets it). `red` holds one float per warp; the barrier at
// the start lets the caller reuse it for a second reduction.
__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < warps ? red[lane] : 0.f;
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

}  // namespace ops

// T: input/residual/output element type; WT: weight (and bias) element type; VEC elements per
// vector (hidden, the row strides and the addresses are multiples of it).
// MAX_THREADS is the launch bound (512: hidden <= 16384, registers to spare; 1024: 64 registers
// per thread, so the weights are not staged: read-only-path loads in the output loop instead).
template <typename T, typename WT, int VEC, NormKind KIND, int MAX_THREADS>
__device__ __forceinline__ void norm_row(const NormParams& p) {
  constexpr bool kStageWeights = MAX_THREADS <= 512;
  constexpr int kVecs = ops::norm_elems_per_thread<VEC>() / VEC;
  static_assert(kVecs >= 1 && ops::norm_elems_per_thread<VEC>() % VEC == 0, "VEC must divide the elements per thread");
  __shared__ float red[32];
  const int64 row = blockIdx.x;
  const int nvec = p.hidden / VEC;
  const T* in = static_cast<const T*>(p.input) + row * p.input_stride;
  const T* res = static_cast<const T*>(p.residual) + row * p.residual_stride;
  T* res_out = static_cast<T*>(p.residual_out) + row * p.residual_out_stride;
  T* out = static_cast<T*>(p.out) + row * p.out_stride;

  // The next kernel may launch at once: its CTAs take free slots and wait (griddepcontrol.wait)
  // for this grid to finish, so its launch latency hides under this one's memory time.
  pdl::launch_dependents();
  pdl::wait();  // the previous kernel's writes (input, residual) are visible
  // Every load of the row is issued before the first store (out and residual_out may alias the
  // inputs, so the compiler cannot move a load above a store): one memory round trip per row.
  ops::vec<T, VEC> xin[kVecs];
  float x[kVecs][VEC];
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nvec) xin[j].load(in + v * VEC);
  }
  // The weights (L2-resident: every CTA reads them). Staged: loaded with the row, before the
  // reduction, so their L2 round trip overlaps the row's DRAM one instead of following it (the
  // weights may alias nothing this kernel writes). Else through the read-only path
  // (ld.global.nc) in the output loop, which the compiler may issue ahead of stores.
  const WT* w = static_cast<const WT*>(p.weight);
  const WT* b = static_cast<const WT*>(p.bias);
  ops::vec<WT, VEC> win[kStageWeights ? kVecs : 1], bin[kStageWeights && KIND == NormKind::kLayerNorm ? kVecs : 1];
  if constexpr (kStageWeights) {
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int v = threadIdx.x + j * blockDim.x;
      if (v < nvec) {
        win[j].load(w + v * VEC);
        if constexpr (KIND == NormKind::kLayerNorm) bin[j].load(b + v * VEC);
      }
    }
  }
  if constexpr (KIND == NormKind::kFusedAddRMSNorm) {
    ops::vec<T, VEC> rin[kVecs];
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int v = threadIdx.x + j * blockDim.x;
      if (v < nvec) rin[j].load(res + v * VEC);
    }
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int v = threadIdx.x + j * blockDim.x;
      float r[VEC];
      xin[j].to_float(x[j]);
      rin[j].to_float(r);
#pragma unroll
      for (int i = 0; i < VEC; ++i) x[j][i] += r[i];
      if (v < nvec) ops::store_float(res_out + v * VEC, x[j]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kVecs; ++j) xin[j].to_float(x[j]);
  }
  float sum = 0.f;  // Σ x² (RMSNorm) or Σ x (LayerNorm)
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    if (threadIdx.x + j * blockDim.x >= nvec) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) x[j][i] = 0.f;  // past the row: out of the sums
    }
#pragma unroll
    for (int i = 0; i < VEC; ++i) sum += KIND == NormKind::kLayerNorm ? x[j][i] : x[j][i] * x[j][i];
  }
  const float rcp_hidden = 1.f / float(p.hidden);
  float mean = 0.f, scale;
  if constexpr (KIND == NormKind::kLayerNorm) {
    mean = ops::block_sum(sum, red) * rcp_hidden;
    float sq = 0.f;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      if (threadIdx.x + j * blockDim.x < nvec) {
#pragma unroll
        for (int i = 0; i < VEC; ++i) sq += (x[j][i] - mean) * (x[j][i] - mean);
      }
    }
    scale = rsqrtf(ops::block_sum(sq, red) * rcp_hidden + p.eps);
  } else {
    scale = rsqrtf(ops::block_sum(sum, red) * rcp_hidden + p.eps);
  }
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nvec) {
      float wf[VEC], bf[VEC];
      if constexpr (kStageWeights) {
        win[j].to_float(wf);
        if constexpr (KIND == NormKind::kLayerNorm) bin[j].to_float(bf);
      } else {
        ops::load_float_nc(w + v * VEC, wf);
        if constexpr (KIND == NormKind::kLayerNorm) ops::load_float_nc(b + v * VEC, bf);
      }
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        if constexpr (KIND == NormKind::kLayerNorm) {
          x[j][i] = (x[j][i] - mean) * scale * wf[i] + bf[i];
        } else {
          x[j][i] *= scale * (p.weight_bias + wf[i]);
        }
      }
      ops::store_float(out + v * VEC, x[j]);
    }
  }
}

}  // namespace flashinfer
