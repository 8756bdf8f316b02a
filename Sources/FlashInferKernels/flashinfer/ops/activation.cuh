// Gated activations (upstream activation.cuh: silu_and_mul, gelu_and_mul, gelu_tanh_and_mul): on
// a row [x | y] of 2·d elements, out[i] = act(x[i]) · y[i], f32 math, rounded to T.
//   silu(x)      = x / (1 + e^−x)
//   gelu(x)      = x/2 · (1 + erf(x/√2))                      (exact)
//   gelu_tanh(x) = x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³)))
// One thread per VEC output elements (one 16-byte vector of f16/bf16 when d allows): two loads,
// one store; thread i is vector i % (d/VEC) of row i / (d/VEC) (rows·d/VEC < 2^31, checked on the
// host), so a warp reads 512 contiguous bytes of x, of y and writes 512 of out.
#pragma once
#include <flashinfer/core/pdl.cuh>
#include <flashinfer/ops/vec.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using ActivationParams = ::FIActivationParams;  // flashinfer/params.h

enum class Activation { kSiLU, kGELU, kGELUTanh };

namespace ops {

constexpr float kRcpSqrt2 = 0.70710678118654752440f;    // 1/√2
constexpr float kSqrt2OverPi = 0.79788456080286535588f; // √(2/π)
constexpr float kGeluTanhCubic = 0.044715f;

template <Activation A>
__device__ __forceinline__ float activation(float x) {
  if constexpr (A == Activation::kSiLU) {
    return x / (1.f + expf(-x));
  } else if constexpr (A == Activation::kGELU) {
    return 0.5f * x * (1.f + erff(x * kRcpSqrt2));
  } else {
    return 0.5f * x * (1.f + tanhf(kSqrt2OverPi * (x + kGeluTanhCubic * x * x * x)));
  }
}

}  // namespace ops

template <typename T, int VEC, Activation A>
__device__ __forceinline__ void act_and_mul(const ActivationParams& p) {
  const unsigned nvec = unsigned(p.d) / VEC;  // vectors per output row
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  pdl::launch_dependents();  // the next kernel's CTAs may take free slots now and wait for this grid
  pdl::wait();
  if (i < unsigned(p.rows) * nvec) {
    const unsigned row = i / nvec, c = (i - row * nvec) * VEC;
    const T* x = static_cast<const T*>(p.input) + int64(row) * p.input_stride + c;
    float a[VEC], b[VEC];
    ops::load_float(x, a);
    ops::load_float(x + p.d, b);
#pragma unroll
    for (int k = 0; k < VEC; ++k) a[k] = ops::activation<A>(a[k]) * b[k];
    ops::store_float(static_cast<T*>(p.out) + int64(row) * p.out_stride + c, a);
  }
}

}  // namespace flashinfer
