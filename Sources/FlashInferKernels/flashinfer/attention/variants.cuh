// Attention variants: the hooks every attention kernel calls, so a variant is a small struct of
// compile-time choices, not a copy of a kernel (after FlashInfer's variants.cuh DefaultAttention).
//
// A kernel computes the raw dot product s = q·k (float, fp32 accumulation) and then asks the
// variant for the logit *in log2 units* (so the online softmax uses exp2):
//   t = variant.logit(s, qo_pos, kv_pos)      // scaling, soft-cap, ALiBi
//   keep = variant.keep(qo_idx, kv_idx)       // causal, sliding window
// and applies RoPE to q and k on load when POS_ENC == kRoPELlama (see pos_enc.cuh).
#pragma once
#include <flashinfer/core/math.cuh>
#include <flashinfer/params.h>

namespace flashinfer {

enum class PosEnc : int { kNone = 0, kRoPELlama = 1, kALiBi = 2 };

// Scalars every variant reads; filled on the host (Swift) per call. Fields: flashinfer/params.h.
using VariantParams = ::FIVariantParams;

// ALiBi slope of head h (upstream pos_enc.cuh: n = 2^floor(log2 H)).
__device__ __forceinline__ float alibi_slope(int h, int num_heads) {
  int n = 1 << (31 - __clz(num_heads));
  return h < n ? exp2f(-8.f * float(h + 1) / float(n))
               : exp2f(-4.f * float((h + 1 - n) * 2 - 1) / float(n));
}

template <PosEnc POS_ENC_, bool SOFT_CAP_, bool CAUSAL_, bool WINDOW_>
struct AttentionVariant {
  static constexpr PosEnc POS_ENC = POS_ENC_;
  static constexpr bool SOFT_CAP = SOFT_CAP_;
  static constexpr bool CAUSAL = CAUSAL_;
  static constexpr bool WINDOW = WINDOW_;
  static constexpr bool USE_ROPE = POS_ENC_ == PosEnc::kRoPELlama;
  static constexpr bool USE_ALIBI = POS_ENC_ == PosEnc::kALiBi;

  const VariantParams& p;
  float alibi_slope_log2;  // slope · log2(e) for this kernel's head (0 without ALiBi)

  __device__ __forceinline__ AttentionVariant(const VariantParams& params, int qo_head)
      : p(params),
        alibi_slope_log2(USE_ALIBI ? alibi_slope(qo_head, params.num_qo_heads) * math::log2e : 0.f) {}

  // Logit in log2 units from the raw dot product. qo_pos is the query's position in the
  // sequence (qo_idx + kv_len - qo_len), kv_pos the key's.
  __device__ __forceinline__ float logit(float s, int qo_pos, int kv_pos) const {
    float t;
    if constexpr (SOFT_CAP) {
      t = tanhf(s * p.soft_cap_pre_tanh_scale) * p.sm_scale_log2;
    } else {
      t = s * p.sm_scale_log2;
    }
    if constexpr (USE_ALIBI) t += alibi_slope_log2 * float(kv_pos - qo_pos);
    return t;
  }

  // Whether key kv_idx is visible to query qo_idx (indices within the request).
  __device__ __forceinline__ bool keep(int qo_idx, int kv_idx) const {
    const int qo_pos = qo_idx + p.kv_len - p.qo_len;
    bool k = kv_idx < p.kv_len;
    if constexpr (CAUSAL) k = k && kv_idx <= qo_pos;
    if constexpr (WINDOW) k = k && kv_idx >= qo_pos - p.window_left;
    return k;
  }
};

}  // namespace flashinfer
