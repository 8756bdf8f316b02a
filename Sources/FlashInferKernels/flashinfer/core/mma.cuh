// PTX wrappers for the sm80+ tensor-core path (mma.sync, ldmatrix; cp.async is core/cp_async.cuh).
//
// Fragment layouts of mma.sync.m16n8k16 (row.col), lane = 4·g + t (g = lane/4, t = lane%4):
//   A 16×16 (row-major), 4 × b32 of two 16-bit values:
//     a0 = A[g][2t..2t+1]   a1 = A[g+8][2t..2t+1]   a2 = A[g][2t+8..2t+9]   a3 = A[g+8][2t+8..2t+9]
//   B 16×8 (k × n, "col"), 2 × b32:
//     b0 = B[2t..2t+1][g]   b1 = B[2t+8..2t+9][g]
//   C/D 16×8 f32, 4 floats:
//     c0,c1 = C[g][2t], C[g][2t+1]   c2,c3 = C[g+8][2t], C[g+8][2t+1]
// ldmatrix.x4 loads four 8×8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i and
// each lane receives (row g, columns 2t, 2t+1) of each matrix (transposed with .trans).
#pragma once
#include <flashinfer/core/types.cuh>

namespace flashinfer {
namespace mma {

// Shared-memory (state space) address of a generic pointer into shared memory.
__device__ __forceinline__ uint32 smem_u32(const void* p) {
  return static_cast<uint32>(__cvta_generic_to_shared(p));
}

// The lane index, read so that the compiler cannot hoist what depends on it out of a loop (ldmatrix
// addresses are cheap to recompute, but dozens hoisted out of the kv loop would cost registers).
__device__ __forceinline__ int lane_id() {
  int l;
  asm volatile("mov.u32 %0, %%laneid;\n" : "=r"(l));
  return l;
}

__device__ __forceinline__ void ldmatrix_x4(uint32 r[4], uint32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32 r[4], uint32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// D = A·B + D, f32 accumulate; T is the 16-bit input type (half or nv_bfloat16).
template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float d[4], const uint32 a[4], uint32 b0, uint32 b1);

template <>
__device__ __forceinline__ void mma_m16n8k16<__half>(float d[4], const uint32 a[4], uint32 b0, uint32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_m16n8k16<__nv_bfloat16>(float d[4], const uint32 a[4], uint32 b0, uint32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats → one b32 of two 16-bit values (x in the low half), round to nearest.
template <typename T> __device__ __forceinline__ uint32 pack2(float x, float y);

template <> __device__ __forceinline__ uint32 pack2<__half>(float x, float y) {
  __half2 h = __floats2half2_rn(x, y);
  return *reinterpret_cast<uint32*>(&h);
}
template <> __device__ __forceinline__ uint32 pack2<__nv_bfloat16>(float x, float y) {
  __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  return *reinterpret_cast<uint32*>(&h);
}

// A volatile shared load: stays in program order with the other volatile asm (cp.async, mma).
__device__ __forceinline__ int64 ld_shared_s64(const void* p) {
  int64 v;
  asm volatile("ld.shared.s64 %0, [%1];\n" : "=l"(v) : "r"(smem_u32(p)));
  return v;
}

}  // namespace mma
}  // namespace flashinfer
