// Programmatic dependent launch (PDL, sm_90): the one place for griddepcontrol.
//
// A kernel launched as a programmatic dependent of this one (Function.launch(programmaticDependency: true)
// on the host) may start once every CTA here has called launch_dependents() (or exited); the
// dependent calls wait() before it reads this kernel's writes (it returns once the primary grid
// has completed and its memory is flushed). Both are no-ops for kernels launched without the PDL
// attribute, and compile to nothing below sm_90.
#pragma once

namespace flashinfer {
namespace pdl {

// Lets the dependent grid be scheduled now (its launch overlaps this grid's tail).
__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
}

// Waits until the primary grid has completed and its writes are visible.
__device__ __forceinline__ void wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

}  // namespace pdl
}  // namespace flashinfer
