// out[i] = alpha * x[i] + beta * y[i], computed in float. The smallest kernel that exercises the
// whole path (JIT spec -> NVRTC -> cubin cache -> launch -> check); also the copy-bandwidth probe.
#pragma once
#include <flashinfer/core/types.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

using AxpbyParams = ::FIAxpbyParams;  // flashinfer/params.h

template <typename T>
__device__ __forceinline__ void axpby(const AxpbyParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const T* y = static_cast<const T*>(p.y);
  T* out = static_cast<T*>(p.out);
  for (int64 i = int64(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n; i += int64(gridDim.x) * blockDim.x) {
    out[i] = from_float<T>(p.alpha * to_float(x[i]) + p.beta * to_float(y[i]));
  }
}

}  // namespace flashinfer
