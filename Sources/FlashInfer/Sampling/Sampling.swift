import FlashInferCUDA

/// Upstream's sampling ops (`flashinfer.sampling`) on a `[batch_size, vocab_size]` tensor: on the CPU
/// by the exact Float64 reference (`SamplingReference`), on the GPU by the kernels of
/// `flashinfer/sampling/` (rejection sampling and threshold search without sorting; one CTA per row;
/// docs/Sampling.md).
///
/// Randomness: row `b` draws from `PhiloxStream(seed: seed, subsequence: b, offset: offset)`
/// (cuRAND `curand_init(seed, b, offset)`, as upstream). The CPU draws once per row by inverse CDF
/// on the filtered distribution; the GPU's samplers draw the stream's successive uniforms, one per
/// rejection round. Both follow the filtered distribution exactly; the tokens agree where the GPU
/// accepts its first draw (always for `samplingFromProbs` and `minPSamplingFromProbs`, up to
/// float rounding of the running sums). Rows are taken to be probabilities (summing to 1); see
/// `SamplingFilter` for the exact supports and ties. Results depend on (seed, offset) only: the
/// kernels are deterministic (fixed-order reductions, no atomics).
///
/// Every sampler takes its (seed, offset) by value (`seed:offset:`, baked into the launch) or from
/// a `SamplingGenerator` (`generator:`, read when the call runs and advanced after it: the form a
/// captured CUDA graph needs to draw fresh numbers at each replay).

/// The output of a sampler: one token per row, and whether the row had a token to draw (upstream's
/// `return_valid=True`; an invalid row, with no positive probability, gets token 0).
public struct SamplingOutput: Sendable, Equatable {
    public var samples: [Int32]
    public var valid: [Bool]
}

/// The rows of `x` as Float64 (a device tensor is copied back first).
func samplingRows(_ x: Tensor, batch: Int, vocab: Int) throws(FlashInferError) -> [[Double]] {
    let flat: [Float] = try FlashInferError.wrap { () throws(CUDAError) -> [Float] in try x.toFloats() }
    var out: [[Double]] = []
    out.reserveCapacity(batch)
    for b in 0..<batch { out.append(flat[(b * vocab)..<((b + 1) * vocab)].map { Double($0) }) }
    return out
}

/// A host tensor of `x`'s shape and dtype holding `rows`.
func samplingTensor(_ rows: [[Double]], like x: Tensor) -> Tensor {
    Tensor.host(rows.flatMap { $0.map(Float.init) }, shape: x.shape, dtype: x.dtype)
}

/// The distribution each row's sampler draws from under `filter`, normalized, in Float64
/// (`[batch][vocab]`; a row with nothing to draw is all zeros). The reference the samplers and
/// their statistical tests share.
public func samplingDistribution(_ probs: Tensor, filter: SamplingFilter = .none, backend: Backend = .cpu) throws(FlashInferError) -> [[Double]] {
    let (batch, vocab) = try validateSamplingInput(probs, name: "probs", entry: "samplingDistribution", backend: backend)
    try validateFilter(filter, batch: batch, placement: backend.implementation.placement)
    return try samplingRows(probs, batch: batch, vocab: vocab).enumerated().map { SamplingReference.distribution($1, filter: filter, row: $0) }
}

/// Draws one token per row of `probs` from the distribution `filter` leaves (`samplingDistribution`).
public func sample(_ probs: Tensor, filter: SamplingFilter, seed: UInt64, offset: UInt64 = 0,
                   backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: filter, .fixed(seed: seed, offset: offset), backend: backend, entry: "sample")
}

/// `sample` with the seed and offset read from `generator` when the call runs, the offset then
/// advanced by `SamplingGenerator.increment(filter:batch:)`: the by-value call at the generator's
/// state, and CUDA-graph safe (each replay of a captured call draws fresh numbers).
public func sample(_ probs: Tensor, filter: SamplingFilter, generator: SamplingGenerator,
                   backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: filter, .generator(generator), backend: backend, entry: "sample")
}

/// `sample`, naming `entry` in errors.
func sample(_ probs: Tensor, filter: SamplingFilter, _ seed: SamplingSeed, backend: Backend,
            entry: String) throws(FlashInferError) -> SamplingOutput {
    let (batch, vocab) = try validateSamplingInput(probs, name: "probs", entry: entry, backend: backend)
    try validateFilter(filter, batch: batch, placement: backend.implementation.placement)
    let philox = seed.source(increment: SamplingGenerator.increment(filter: filter, batch: batch))
    try philox.validate(backend)
    return try backend.implementation.sample(probs, filter: filter, philox: philox, batch: batch, vocab: vocab)
}

/// The ops that map a `[batch, vocab]` tensor to another (renorm, mask, softmax), as the backends
/// take them (and `launchSamplingOp` for the bench).
@_spi(Bench)
public enum SamplingOp: Sendable {
    case topKRenorm(RowParameter<Int>)
    case topPRenorm(RowParameter<Double>)
    case topKMaskLogits(RowParameter<Int>)
    case softmax(RowParameter<Double>)

    var kind: SamplingKernelKind {
        switch self {
        case .topKRenorm: .topKRenorm
        case .topPRenorm: .topPRenorm
        case .topKMaskLogits: .topKMaskLogits
        case .softmax: .softmax
        }
    }
    var inputName: String {
        switch self {
        case .topKRenorm, .topPRenorm: "probs"
        case .topKMaskLogits, .softmax: "logits"
        }
    }

    /// The reference on one Float64 row.
    func reference(_ x: [Double], row b: Int) -> [Double] {
        switch self {
        case .topKRenorm(let k): SamplingReference.renormalized(x, keep: SamplingReference.topKKeep(x, k: k.value(row: b)))
        case .topPRenorm(let p): SamplingReference.renormalized(x, keep: SamplingReference.topPKeep(x, topP: p.value(row: b)))
        case .topKMaskLogits(let k): SamplingReference.topKMaskLogits(x, k: k.value(row: b))
        case .softmax(let t): SamplingReference.softmax(x, temperature: t.value(row: b))
        }
    }
}

/// Validates and runs `op` on the backend.
func samplingOp(_ op: SamplingOp, _ x: Tensor, entry: String, backend: Backend) throws(FlashInferError) -> Tensor {
    let (batch, vocab) = try validateSamplingInput(x, name: op.inputName, entry: entry, backend: backend)
    try validateOp(op, batch: batch, placement: backend.implementation.placement)
    return try backend.implementation.samplingOp(op, x, batch: batch, vocab: vocab)
}

/// `flashinfer.sampling.sampling_from_probs`: a token per row with probability `p_j`.
public func samplingFromProbs(_ probs: Tensor, seed: UInt64, offset: UInt64 = 0, backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .none, .fixed(seed: seed, offset: offset), backend: backend, entry: "samplingFromProbs")
}

/// `samplingFromProbs` drawing from `generator` (read when the call runs, then advanced: see `SamplingGenerator`).
public func samplingFromProbs(_ probs: Tensor, generator: SamplingGenerator, backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .none, .generator(generator), backend: backend, entry: "samplingFromProbs")
}

/// `top_k_sampling_from_probs`: from the top `topK` probabilities of each row (ties kept), renormalized.
/// - Throws: `.option` when a `top_k` is < 1; `.shape` when a per-row array is not `batch_size` long.
public func topKSamplingFromProbs(_ probs: Tensor, topK: RowParameter<Int>, seed: UInt64, offset: UInt64 = 0,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topK(topK), .fixed(seed: seed, offset: offset), backend: backend, entry: "topKSamplingFromProbs")
}

/// `topKSamplingFromProbs` drawing from `generator` (read when the call runs, then advanced).
public func topKSamplingFromProbs(_ probs: Tensor, topK: RowParameter<Int>, generator: SamplingGenerator,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topK(topK), .generator(generator), backend: backend, entry: "topKSamplingFromProbs")
}

/// `top_p_sampling_from_probs`: from the nucleus of mass `topP` (ties at the boundary kept), renormalized.
/// - Throws: `.option` when a `top_p` is outside (0, 1]; `.shape` for a per-row length mismatch.
public func topPSamplingFromProbs(_ probs: Tensor, topP: RowParameter<Double>, seed: UInt64, offset: UInt64 = 0,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topP(topP), .fixed(seed: seed, offset: offset), backend: backend, entry: "topPSamplingFromProbs")
}

/// `topPSamplingFromProbs` drawing from `generator` (read when the call runs, then advanced).
public func topPSamplingFromProbs(_ probs: Tensor, topP: RowParameter<Double>, generator: SamplingGenerator,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topP(topP), .generator(generator), backend: backend, entry: "topPSamplingFromProbs")
}

/// `min_p_sampling_from_probs`: from the tokens with `p ≥ minP · max p`, renormalized.
/// - Throws: `.option` when a `min_p` is outside [0, 1]; `.shape` for a per-row length mismatch.
public func minPSamplingFromProbs(_ probs: Tensor, minP: RowParameter<Double>, seed: UInt64, offset: UInt64 = 0,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .minP(minP), .fixed(seed: seed, offset: offset), backend: backend, entry: "minPSamplingFromProbs")
}

/// `minPSamplingFromProbs` drawing from `generator` (read when the call runs, then advanced).
public func minPSamplingFromProbs(_ probs: Tensor, minP: RowParameter<Double>, generator: SamplingGenerator,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .minP(minP), .generator(generator), backend: backend, entry: "minPSamplingFromProbs")
}

/// `top_k_top_p_sampling_from_probs` with `filter_apply_order` `order`.
public func topKTopPSamplingFromProbs(_ probs: Tensor, topK: RowParameter<Int>, topP: RowParameter<Double>,
                                      order: FilterApplyOrder = .topKFirst, seed: UInt64, offset: UInt64 = 0,
                                      backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topKTopP(topK: topK, topP: topP, order: order), .fixed(seed: seed, offset: offset), backend: backend,
               entry: "topKTopPSamplingFromProbs")
}

/// `topKTopPSamplingFromProbs` drawing from `generator` (read when the call runs, then advanced).
public func topKTopPSamplingFromProbs(_ probs: Tensor, topK: RowParameter<Int>, topP: RowParameter<Double>,
                                      order: FilterApplyOrder = .topKFirst, generator: SamplingGenerator,
                                      backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topKTopP(topK: topK, topP: topP, order: order), .generator(generator), backend: backend,
               entry: "topKTopPSamplingFromProbs")
}

/// `top_k_renorm_probs`: each row's top-k probabilities (ties at the k-th value kept), the rest 0,
/// renormalized. Same dtype and shape as `probs`.
public func topKRenormProbs(_ probs: Tensor, topK: RowParameter<Int>, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try samplingOp(.topKRenorm(topK), probs, entry: "topKRenormProbs", backend: backend)
}

/// `top_p_renorm_probs`: each row's nucleus of mass `topP` (the tokens with `Σ_{p_i > p_j} p_i < topP`,
/// ties kept), the rest 0, renormalized. Upstream's sort-based test reference keeps `cdf ≥ 1 − p`
/// in ascending order, which differs only when a partial sum equals `topP` exactly (it then keeps
/// one more token); this keeps the smallest set reaching `topP`, as the top-p sampler does.
public func topPRenormProbs(_ probs: Tensor, topP: RowParameter<Double>, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try samplingOp(.topPRenorm(topP), probs, entry: "topPRenormProbs", backend: backend)
}

/// `top_k_mask_logits`: each row's top-k logits (ties at the k-th value kept), the rest `-inf`.
public func topKMaskLogits(_ logits: Tensor, topK: RowParameter<Int>, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try samplingOp(.topKMaskLogits(topK), logits, entry: "topKMaskLogits", backend: backend)
}

/// `flashinfer.sampling.softmax(logits, temperature)`: `softmax(logits / T)` per row, `T` a scalar
/// or one per row. `-inf` logits get probability 0; a row with no finite maximum is NaN.
/// - Throws: `.option` when a temperature is not finite and positive.
public func softmax(_ logits: Tensor, temperature: RowParameter<Double> = .scalar(1), backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try samplingOp(.softmax(temperature), logits, entry: "softmax", backend: backend)
}
