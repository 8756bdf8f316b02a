// Attention variants: the hooks every attention kernel calls, so a variant is a small struct of
// compile-time choices, not a copy of a kernel (after FlashInfer's variants.cuh DefaultAttention).
//
// A kernel computes the raw dot product s = q·k (float, fp32 accumulation) and then asks the
// variant for the logit *in log2 units* (so the online softmax uses exp2):
//   t = variant.logit(variant.head(qo_head), s, qo_pos, kv_pos)   // scaling, soft-cap, ALiBi
//   keep = variant.keep(qo_idx, kv_idx)                           // causal, sliding window
// and applies RoPE to q and k on load when POS_ENC == kRoPELlama (see pos_enc.cuh). The hooks are
// listed at AttentionVariant below.
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

// The default variant: scaling, optional soft-cap, optional ALiBi, causal and window masks, RoPE.
// The hooks, in the order a kernel calls them (every kernel family calls every hook):
//   head(qo_head)                  what the logit needs per query head (here the ALiBi slope)
//   query_transform(q, qo_head, d) element d of a query row in fp32, after RoPE, before q·k
//   logit(head, s, qo_pos, kv_pos) the logit in log2 units from the raw dot product
//   keep(qo_idx, kv_idx)           whether the key is visible to the query (indices in the request)
//   output_transform(o, qo_head, d) element d of the output in fp32, before it is stored; applied to
//                                  each split-KV partial before the merge, so it must be linear in o
// TRANSFORMS_QUERY / TRANSFORMS_OUTPUT say whether the two transforms are the identity (kernels skip
// the register round trip then). CUSTOM_MASK says that keep() may drop keys anywhere, not only past
// kv_len and at the CAUSAL / WINDOW edges (prefill then tests keep() on every tile, not just on the
// tiles that straddle an edge). A new variant (FP8 scales, a custom mask, sinks) is a new type with
// these members, not a new `if` in a kernel.
//
// CUSTOM_MASK_: keep() also reads the request's packed bit mask (VariantParams::custom_mask,
// little-endian bits, row length mask_kv_len; upstream's MaskMode::kCustom). The mask replaces the
// causal mask (the host never sets both) and combines with the window.
//
// The FP8 scales are not hooks: k_scale is folded into sm_scale on the host and v_scale
// (VariantParams::v_scale) multiplies each kernel's 1/rowsum, so neither costs a register.
template <PosEnc POS_ENC_, bool SOFT_CAP_, bool CAUSAL_, bool WINDOW_, bool CUSTOM_MASK_ = false>
struct AttentionVariant {
  static constexpr PosEnc POS_ENC = POS_ENC_;
  static constexpr bool SOFT_CAP = SOFT_CAP_;
  static constexpr bool CAUSAL = CAUSAL_;
  static constexpr bool WINDOW = WINDOW_;
  static constexpr bool USE_ROPE = POS_ENC_ == PosEnc::kRoPELlama;
  static constexpr bool USE_ALIBI = POS_ENC_ == PosEnc::kALiBi;
  static constexpr bool TRANSFORMS_QUERY = false;
  static constexpr bool TRANSFORMS_OUTPUT = false;
  static constexpr bool CUSTOM_MASK = CUSTOM_MASK_;
  static_assert(!(CAUSAL_ && CUSTOM_MASK_), "a custom mask replaces the causal mask");

  // The request's parameters: its qo_len and kv_len are the ones keep() and positions use.
  const VariantParams& p;

  __device__ __forceinline__ explicit AttentionVariant(const VariantParams& params) : p(params) {}

  struct Head {
    float alibi_slope_log2;  // slope · log2(e) of the query head (0 without ALiBi)
  };
  __device__ __forceinline__ Head head(int qo_head) const {
    return Head{USE_ALIBI ? alibi_slope(qo_head, p.num_qo_heads) * math::log2e : 0.f};
  }

  __device__ __forceinline__ float query_transform(float q, int, int) const { return q; }

  // Logit in log2 units from the raw dot product. qo_pos is the query's position in the
  // sequence (qo_idx + kv_len - qo_len), kv_pos the key's.
  __device__ __forceinline__ float logit(const Head& h, float s, int qo_pos, int kv_pos) const {
    float t;
    if constexpr (SOFT_CAP) {
      t = tanhf(s * p.soft_cap_pre_tanh_scale) * p.sm_scale_log2;
    } else {
      t = s * p.sm_scale_log2;
    }
    if constexpr (USE_ALIBI) t += h.alibi_slope_log2 * float(kv_pos - qo_pos);
    return t;
  }

  // Whether key kv_idx is visible to query qo_idx (indices within the request).
  __device__ __forceinline__ bool keep(int qo_idx, int kv_idx) const {
    const int qo_pos = qo_idx + p.kv_len - p.qo_len;
    bool k = kv_idx < p.kv_len;
    if constexpr (CAUSAL) k = k && kv_idx <= qo_pos;
    if constexpr (WINDOW) k = k && kv_idx >= qo_pos - p.window_left;
    if constexpr (CUSTOM_MASK) {
      // Rows past qo_len (a tile's padding) have no bits: reading them would run past the request's
      // mask (into the next request's, or past the end of the last one's allocation). Their output
      // is never stored, so they keep what kv_len allows.
      if (k && qo_idx < p.qo_len) {
        const long long bit = (long long)qo_idx * p.mask_kv_len + kv_idx;
        k = (__ldg(p.custom_mask + (bit >> 3)) >> (bit & 7)) & 1;
      }
    }
    return k;
  }

  __device__ __forceinline__ float output_transform(float o, int, int) const { return o; }
};

}  // namespace flashinfer
