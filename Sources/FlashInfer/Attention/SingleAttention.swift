import FlashInferCUDA

/// Output of an attention call: `output` has q's shape and dtype; `lse` (when asked for) is
/// Float32 `[.., Hq]`, base 2.
public struct AttentionOutput: Sendable {
    public var output: Tensor
    public var lse: Tensor?
    /// The single-prefill kernel tier that ran on the GPU (`AttentionOptions.tier` resolved); nil for
    /// decode and on the CPU.
    public var prefillTier: PrefillTier? = nil
}

/// Single-request decode attention: one query token per head against `kvLen` keys.
///
/// - Parameters:
///   - q: `[Hq, D]`, f16 or bf16.
///   - k, v: `[kvLen, Hkv, D]` (NHD) or `[Hkv, kvLen, D]` (HND), q's dtype or FP8 (e4m3 / e5m2, with
///     `options.kScale` / `vScale`); `Hq % Hkv == 0`.
///   - options: scale, position encoding, soft-cap, window, layout (`causal` is irrelevant).
///   - returnLSE: also return the base-2 log-sum-exp `[Hq]`.
///   - out: (CUDA) a contiguous device tensor of q's shape and dtype to write into; allocated when nil.
/// - Returns: output `[Hq, D]` (+ LSE). `kvLen == 0` gives output 0 and LSE −inf.
public func singleDecode(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions(),
                         returnLSE: Bool = false, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> AttentionOutput {
    let problem = try validateSingle(q: q, k: k, v: v, decode: true, options: options, placement: backend.implementation.placement, out: out)
    return try runSingle(problem, returnLSE: returnLSE, backend: backend)
}

/// Single-request prefill or append attention: `qoLen` queries against `kvLen ≥ qoLen` keys
/// (causal masks aligned bottom-right, so append is `qoLen < kvLen`).
///
/// - Parameters:
///   - q: `[qoLen, Hq, D]`, f16 or bf16.
///   - k, v: `[kvLen, Hkv, D]` (NHD) or `[Hkv, kvLen, D]` (HND), q's dtype or FP8 (e4m3 / e5m2, with
///     `options.kScale` / `vScale`).
///   - customMask: the `qoLen × kvLen` mask (`true` keeps a key; booleans or packed little-endian,
///     `CustomMask`), upstream's `custom_mask` / `packed_custom_mask`. It replaces `causal`; a query
///     that keeps no key gets output 0 and LSE −inf.
/// - Returns: output `[qoLen, Hq, D]` (+ LSE `[qoLen, Hq]`, base 2).
public func singlePrefill(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions(),
                          customMask: CustomMask? = nil, returnLSE: Bool = false, out: Tensor? = nil,
                          backend: Backend = .cpu) throws(FlashInferError) -> AttentionOutput {
    let problem = try validateSingle(q: q, k: k, v: v, decode: false, options: options, placement: backend.implementation.placement,
                                     out: out, customMask: customMask)
    return try runSingle(problem, returnLSE: returnLSE, backend: backend)
}

/// Runs a validated problem on its backend.
func runSingle(_ problem: SingleAttentionProblem, returnLSE: Bool, backend: Backend) throws(FlashInferError) -> AttentionOutput {
    try backend.implementation.singleAttention(problem, returnLSE: returnLSE)
}
