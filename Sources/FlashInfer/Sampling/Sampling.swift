import FlashInferCUDA

/// Upstream's sampling ops (`flashinfer.sampling`) on a `[batch_size, vocab_size]` tensor, computed
/// by the exact Float64 reference (`SamplingReference`). Only the CPU backend runs them so far; the
/// CUDA backend throws `.unsupportedCombination` ("no GPU kernel yet").
///
/// Randomness: row `b` draws `PhiloxStream(seed: seed, subsequence: b, offset: offset).uniform()`,
/// the first uniform upstream's kernels draw for that row (cuRAND `curand_init(seed, b, offset)`).
/// The CPU draws once per row by inverse CDF on the filtered distribution, so its samples follow
/// the same distribution as upstream's rejection samplers, but are not the same tokens (except for
/// `samplingFromProbs` on a normalized row, which is upstream's rule). Rows are taken to be
/// probabilities (summing to 1); see `SamplingFilter` for the exact supports and ties.

/// The output of a sampler: one token per row, and whether the row had a token to draw (upstream's
/// `return_valid=True`; an invalid row, with no positive probability, gets token 0).
public struct SamplingOutput: Sendable, Equatable {
    public var samples: [Int32]
    public var valid: [Bool]
}

/// The rows of `x` as Float64 (host tensors; the CPU backend's).
private func rows(_ x: Tensor, batch: Int, vocab: Int) throws(FlashInferError) -> [[Double]] {
    let flat: [Float] = try FlashInferError.wrap { () throws(CUDAError) -> [Float] in try x.toFloats() }
    var out: [[Double]] = []
    out.reserveCapacity(batch)
    for b in 0..<batch { out.append(flat[(b * vocab)..<((b + 1) * vocab)].map { Double($0) }) }
    return out
}

private func tensor(_ rows: [[Double]], like x: Tensor) -> Tensor {
    Tensor.host(rows.flatMap { $0.map(Float.init) }, shape: x.shape, dtype: x.dtype)
}

/// The distribution each row's sampler draws from under `filter`, normalized, in Float64
/// (`[batch][vocab]`; a row with nothing to draw is all zeros). The reference the samplers and
/// their statistical tests share.
public func samplingDistribution(_ probs: Tensor, filter: SamplingFilter = .none, backend: Backend = .cpu) throws(FlashInferError) -> [[Double]] {
    let (batch, vocab) = try validateSamplingInput(probs, name: "probs", entry: "samplingDistribution", backend: backend)
    try validateFilter(filter, batch: batch)
    return try rows(probs, batch: batch, vocab: vocab).enumerated().map { SamplingReference.distribution($1, filter: filter, row: $0) }
}

/// Draws one token per row of `probs` from the distribution `filter` leaves (`samplingDistribution`).
public func sample(_ probs: Tensor, filter: SamplingFilter, seed: UInt64, offset: UInt64 = 0,
                   backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: filter, seed: seed, offset: offset, backend: backend, entry: "sample")
}

/// `sample`, naming `entry` in a refusal.
func sample(_ probs: Tensor, filter: SamplingFilter, seed: UInt64, offset: UInt64, backend: Backend,
            entry: String) throws(FlashInferError) -> SamplingOutput {
    let (batch, vocab) = try validateSamplingInput(probs, name: "probs", entry: entry, backend: backend)
    try validateFilter(filter, batch: batch)
    var out = SamplingOutput(samples: [], valid: [])
    for (b, row) in try rows(probs, batch: batch, vocab: vocab).enumerated() {
        var rng = PhiloxStream(seed: seed, subsequence: UInt64(b), offset: offset)
        let q = SamplingReference.distribution(row, filter: filter, row: b)
        let token = SamplingReference.draw(q, u: rng.uniform())
        out.samples.append(Int32(token ?? 0))
        out.valid.append(token != nil)
    }
    return out
}

/// `flashinfer.sampling.sampling_from_probs`: a token per row with probability `p_j`.
public func samplingFromProbs(_ probs: Tensor, seed: UInt64, offset: UInt64 = 0, backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .none, seed: seed, offset: offset, backend: backend, entry: "samplingFromProbs")
}

/// `top_k_sampling_from_probs`: from the top `topK` probabilities of each row (ties kept), renormalized.
/// - Throws: `.option` when a `top_k` is < 1; `.shape` when a per-row array is not `batch_size` long.
public func topKSamplingFromProbs(_ probs: Tensor, topK: RowParameter<Int>, seed: UInt64, offset: UInt64 = 0,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topK(topK), seed: seed, offset: offset, backend: backend, entry: "topKSamplingFromProbs")
}

/// `top_p_sampling_from_probs`: from the nucleus of mass `topP` (ties at the boundary kept), renormalized.
/// - Throws: `.option` when a `top_p` is outside (0, 1]; `.shape` for a per-row length mismatch.
public func topPSamplingFromProbs(_ probs: Tensor, topP: RowParameter<Double>, seed: UInt64, offset: UInt64 = 0,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topP(topP), seed: seed, offset: offset, backend: backend, entry: "topPSamplingFromProbs")
}

/// `min_p_sampling_from_probs`: from the tokens with `p ≥ minP · max p`, renormalized.
/// - Throws: `.option` when a `min_p` is outside [0, 1]; `.shape` for a per-row length mismatch.
public func minPSamplingFromProbs(_ probs: Tensor, minP: RowParameter<Double>, seed: UInt64, offset: UInt64 = 0,
                                  backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .minP(minP), seed: seed, offset: offset, backend: backend, entry: "minPSamplingFromProbs")
}

/// `top_k_top_p_sampling_from_probs` with `filter_apply_order` `order`.
public func topKTopPSamplingFromProbs(_ probs: Tensor, topK: RowParameter<Int>, topP: RowParameter<Double>,
                                      order: FilterApplyOrder = .topKFirst, seed: UInt64, offset: UInt64 = 0,
                                      backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try sample(probs, filter: .topKTopP(topK: topK, topP: topP, order: order), seed: seed, offset: offset, backend: backend,
               entry: "topKTopPSamplingFromProbs")
}

/// `top_k_renorm_probs`: each row's top-k probabilities (ties at the k-th value kept), the rest 0,
/// renormalized. Same dtype and shape as `probs`.
public func topKRenormProbs(_ probs: Tensor, topK: RowParameter<Int>, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let (batch, vocab) = try validateSamplingInput(probs, name: "probs", entry: "topKRenormProbs", backend: backend)
    try validateTopK(topK, batch: batch)
    let out = try rows(probs, batch: batch, vocab: vocab).enumerated().map { b, p in
        SamplingReference.renormalized(p, keep: SamplingReference.topKKeep(p, k: topK.value(row: b)))
    }
    return tensor(out, like: probs)
}

/// `top_p_renorm_probs`: each row's nucleus of mass `topP` (the tokens with `Σ_{p_i > p_j} p_i < topP`,
/// ties kept), the rest 0, renormalized. Upstream's sort-based test reference keeps `cdf ≥ 1 − p`
/// in ascending order, which differs only when a partial sum equals `topP` exactly (it then keeps
/// one more token); this keeps the smallest set reaching `topP`, as the top-p sampler does.
public func topPRenormProbs(_ probs: Tensor, topP: RowParameter<Double>, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let (batch, vocab) = try validateSamplingInput(probs, name: "probs", entry: "topPRenormProbs", backend: backend)
    try validateTopP(topP, batch: batch)
    let out = try rows(probs, batch: batch, vocab: vocab).enumerated().map { b, p in
        SamplingReference.renormalized(p, keep: SamplingReference.topPKeep(p, topP: topP.value(row: b)))
    }
    return tensor(out, like: probs)
}

/// `top_k_mask_logits`: each row's top-k logits (ties at the k-th value kept), the rest `-inf`.
public func topKMaskLogits(_ logits: Tensor, topK: RowParameter<Int>, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let (batch, vocab) = try validateSamplingInput(logits, name: "logits", entry: "topKMaskLogits", backend: backend)
    try validateTopK(topK, batch: batch)
    let out = try rows(logits, batch: batch, vocab: vocab).enumerated().map { b, x in
        SamplingReference.topKMaskLogits(x, k: topK.value(row: b))
    }
    return tensor(out, like: logits)
}

/// `flashinfer.sampling.softmax(logits, temperature)`: `softmax(logits / T)` per row, `T` a scalar
/// or one per row. `-inf` logits get probability 0; a row with no finite maximum is NaN.
/// - Throws: `.option` when a temperature is not finite and positive.
public func softmax(_ logits: Tensor, temperature: RowParameter<Double> = .scalar(1), backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let (batch, vocab) = try validateSamplingInput(logits, name: "logits", entry: "softmax", backend: backend)
    try validateTemperature(temperature, batch: batch)
    let out = try rows(logits, batch: batch, vocab: vocab).enumerated().map { b, x in
        SamplingReference.softmax(x, temperature: temperature.value(row: b))
    }
    return tensor(out, like: logits)
}
