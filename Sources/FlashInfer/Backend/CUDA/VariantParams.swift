internal import CFlashInferParams

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension FIVariantParams {
    static let log2e: Float = 1.44269504088896340736

    /// The `VariantParams` (flashinfer/params.h) of one launch: the attention options' scale, soft
    /// cap and RoPE turned into what every attention kernel (prefill, batch prefill, decode, batch
    /// decode) reads, computed in this one place so that the kernels get bit-identical scalars.
    ///   - `sm_scale_log2`: sm_scale · log2(e) (logits in log2 units, so the softmax uses exp2), or
    ///     cap · log2(e) with a soft cap (the kernel computes cap · tanh(s · sm_scale / cap));
    ///   - `soft_cap_pre_tanh_scale`: sm_scale / cap (0 without a soft cap);
    ///   - `rope_rcp_scale`, `rope_log2_theta`: 1 / scale and log2(theta) of Llama RoPE (1 and
    ///     log2(1e4) otherwise; the kernel reads them only with RoPE).
    ///   - `v_scale`: the FP8 V scale (1 = none), which the kernels fold into the 1/rowsum of their
    ///     epilogue (linear, so split-KV partials merge as before; the LSE is unchanged).
    /// The default scale is 1/√headDim; `kScale` (FP8 K's scale) multiplies it, as upstream folds
    /// `k_scale` into `sm_scale`. The lengths as given (the batch kernels read per-request lengths
    /// from the plan and pass 0 here). No custom mask (`custom_mask` null; see `withCustomMask`).
    init(options: AttentionOptions, headDim: Int, qoLen: Int, kvLen: Int, numQOHeads: Int) {
        let scale = Float(Double(options.resolvedScale(headDim: headDim)) * Double(options.kScale))
        let cap = options.logitsSoftCap
        var ropeScale: Float = 1, ropeTheta: Float = 1e4
        if case .ropeLlama(let s, let t) = options.positionEncoding { (ropeScale, ropeTheta) = (s, t) }
        self.init(sm_scale_log2: cap > 0 ? cap * Self.log2e : scale * Self.log2e,
                  soft_cap_pre_tanh_scale: cap > 0 ? scale / cap : 0,
                  rope_rcp_scale: 1 / ropeScale,
                  rope_log2_theta: Float(log2(Double(ropeTheta))),
                  qo_len: Int32(qoLen), kv_len: Int32(kvLen), window_left: Int32(options.windowLeft),
                  num_qo_heads: Int32(numQOHeads), v_scale: options.vScale, mask_kv_len: Int32(kvLen), custom_mask: 0)
    }
}
