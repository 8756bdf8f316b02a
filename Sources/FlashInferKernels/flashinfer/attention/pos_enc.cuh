// LLaMA RoPE applied on the fly (rotate-half / NeoX, non-interleaved, over the whole head dim):
//   freq_i = (1/rope_scale) · theta^(-2i/D),  i = d mod D/2
//   out[d] = x[d]·cos(pos·freq_i) + (d < D/2 ? -x[d + D/2] : x[d - D/2])·sin(pos·freq_i)
// Angles use __sincosf in fp32, as upstream.
#pragma once
#include <flashinfer/attention/variants.cuh>

namespace flashinfer {

// Frequency of dimension d (0 <= d < head_dim).
__device__ __forceinline__ float rope_freq(int d, int head_dim, const VariantParams& p) {
  const int i = d % (head_dim / 2);
  return p.rope_rcp_scale * exp2f(-p.rope_log2_theta * float(2 * i) / float(head_dim));
}

// Rotates element d given its value x, its rotate-half partner (x[d ± D/2]) and its frequency
// (rope_freq): first_half is d < D/2.
__device__ __forceinline__ float rope_rotate_with_freq(float x, float partner, bool first_half, int pos, float freq) {
  float s, c;
  __sincosf(float(pos) * freq, &s, &c);
  return first_half ? x * c - partner * s : x * c + partner * s;
}

}  // namespace flashinfer
