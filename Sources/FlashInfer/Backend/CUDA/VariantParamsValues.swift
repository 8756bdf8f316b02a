import FlashInferCUDA

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The values of `VariantParams` (attention/variants.cuh) for one launch: the attention options'
/// scale, soft cap and RoPE turned into what every attention kernel (prefill, decode, batch decode)
/// reads, computed in one place so that the kernels get bit-identical scalars.
///   - `sm_scale_log2`: sm_scale · log2(e) (logits in log2 units, so the softmax uses exp2), or
///     cap · log2(e) with a soft cap (the kernel computes cap · tanh(s · sm_scale / cap));
///   - `soft_cap_pre_tanh_scale`: sm_scale / cap (0 without a soft cap);
///   - `rope_rcp_scale`, `rope_log2_theta`: 1 / scale and log2(theta) of Llama RoPE (1 and log2(1e4)
///     otherwise; the kernel reads them only with RoPE).
struct VariantParamsValues: Equatable {
    var smScaleLog2: Float
    var softCapPreTanhScale: Float
    var ropeRcpScale: Float
    var ropeLog2Theta: Float
    var qoLen: Int32
    var kvLen: Int32
    var windowLeft: Int32
    var numQOHeads: Int32

    static let log2e: Float = 1.44269504088896340736

    init(smScaleLog2: Float, softCapPreTanhScale: Float, ropeRcpScale: Float, ropeLog2Theta: Float,
         qoLen: Int32, kvLen: Int32, windowLeft: Int32, numQOHeads: Int32) {
        (self.smScaleLog2, self.softCapPreTanhScale, self.ropeRcpScale, self.ropeLog2Theta) =
            (smScaleLog2, softCapPreTanhScale, ropeRcpScale, ropeLog2Theta)
        (self.qoLen, self.kvLen, self.windowLeft, self.numQOHeads) = (qoLen, kvLen, windowLeft, numQOHeads)
    }

    /// The scalars for `options` at `headDim` (the default scale is 1/√headDim); the lengths as given
    /// (the batch kernels read per-request lengths from the plan and pass 0 here).
    init(options: AttentionOptions, headDim: Int, qoLen: Int, kvLen: Int, numQOHeads: Int) {
        let scale = options.resolvedScale(headDim: headDim)
        let cap = options.logitsSoftCap
        var ropeScale: Float = 1, ropeTheta: Float = 1e4
        if case .ropeLlama(let s, let t) = options.positionEncoding { (ropeScale, ropeTheta) = (s, t) }
        self.init(smScaleLog2: cap > 0 ? cap * Self.log2e : scale * Self.log2e,
                  softCapPreTanhScale: cap > 0 ? scale / cap : 0,
                  ropeRcpScale: 1 / ropeScale, ropeLog2Theta: Float(log2(Double(ropeTheta))),
                  qoLen: Int32(qoLen), kvLen: Int32(kvLen), windowLeft: Int32(options.windowLeft),
                  numQOHeads: Int32(numQOHeads))
    }

    /// Appends the struct's fields in declaration order (32 bytes, 4-byte aligned).
    func append(to a: inout KernelArguments) {
        for x in [smScaleLog2, softCapPreTanhScale, ropeRcpScale, ropeLog2Theta] { a.append(x) }
        for x in [qoLen, kvLen, windowLeft, numQOHeads] { a.append(x) }
    }
}
