#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Upstream's `sampling_from_logits` and `top_k_top_p_sampling_from_logits` (SEMANTICS.md §2.8).

/// `flashinfer.sampling.sampling_from_logits`: one token per row distributed as `softmax(logits)`,
/// by Gumbel-max without a softmax: `argmax_j (x_j + g_j)` with `g_j = −ln2 · log2(−log2(u_j + 1e-20) + 1e-20)`
/// (a standard Gumbel up to a constant shift). The uniforms are upstream's: element `j` of row `b`
/// takes word `j mod G` of `PhiloxStream(seed, subsequence: b · vocab + (j − j mod G), offset)`,
/// `G = gcd(4, vocab)` — so a call consumes `vocab` words per row (upstream advances its generator
/// by `batch · vocab`). Ties go to the smallest index; NaN and `-inf` logits are never chosen; a row
/// with no other logit gives token 0 with `valid = false`. The CPU computes the same argmax with
/// `log2f`, the GPU with the SFU's `lg2.approx`: the tokens agree except at near-ties.
/// - Throws: `.rank`, `.dtype`, `.shape` for a bad `logits` (`[batch_size, vocab_size]`, f32/f16/bf16).
public func samplingFromLogits(_ logits: Tensor, seed: UInt64, offset: UInt64 = 0, backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try samplingFromLogits(logits, .fixed(seed: seed, offset: offset), backend: backend)
}

/// `samplingFromLogits` drawing from `generator` (read when the call runs, then advanced by
/// `SamplingGenerator.incrementFromLogits(batch:vocab:)`; see `SamplingGenerator`).
public func samplingFromLogits(_ logits: Tensor, generator: SamplingGenerator, backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try samplingFromLogits(logits, .generator(generator), backend: backend)
}

func samplingFromLogits(_ logits: Tensor, _ seed: SamplingSeed, backend: Backend) throws(FlashInferError) -> SamplingOutput {
    let (batch, vocab) = try validateSamplingInput(logits, name: "logits", entry: "samplingFromLogits", backend: backend)
    let philox = seed.source(increment: SamplingGenerator.incrementFromLogits(batch: batch, vocab: vocab))
    try philox.validate(backend)
    return try backend.implementation.samplingFromLogits(logits, philox: philox, batch: batch, vocab: vocab)
}

/// `flashinfer.sampling.top_k_top_p_sampling_from_logits`, as upstream composes it:
/// `.topKFirst`: `topKMaskLogits` → `softmax` → `topPSamplingFromProbs`; `.joint`: `softmax` →
/// `topKTopPSamplingFromProbs(order: .joint)`. The draw is the probability sampler's (row `b`'s
/// stream `PhiloxStream(seed, b, offset)`), so the token is distributed as the top-k-first (or
/// joint) filter of `softmax(logits)`.
/// - Throws: as the parts: `.option` for a `top_k` < 1 or a `top_p` outside (0, 1], `.shape` for a
///   per-row length mismatch, `.rank`/`.dtype` for bad logits.
public func topKTopPSamplingFromLogits(_ logits: Tensor, topK: RowParameter<Int>, topP: RowParameter<Double>,
                                       order: FilterApplyOrder = .topKFirst, seed: UInt64, offset: UInt64 = 0,
                                       backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try topKTopPSamplingFromLogits(logits, topK: topK, topP: topP, order: order, .fixed(seed: seed, offset: offset), backend: backend)
}

/// `topKTopPSamplingFromLogits` drawing from `generator` (read by the probability sampler when it
/// runs, then advanced by its increment; see `SamplingGenerator`).
public func topKTopPSamplingFromLogits(_ logits: Tensor, topK: RowParameter<Int>, topP: RowParameter<Double>,
                                       order: FilterApplyOrder = .topKFirst, generator: SamplingGenerator,
                                       backend: Backend = .cpu) throws(FlashInferError) -> SamplingOutput {
    try topKTopPSamplingFromLogits(logits, topK: topK, topP: topP, order: order, .generator(generator), backend: backend)
}

func topKTopPSamplingFromLogits(_ logits: Tensor, topK: RowParameter<Int>, topP: RowParameter<Double>, order: FilterApplyOrder,
                                _ seed: SamplingSeed, backend: Backend) throws(FlashInferError) -> SamplingOutput {
    let (batch, _) = try validateSamplingInput(logits, name: "logits", entry: "topKTopPSamplingFromLogits", backend: backend)
    try validateTopK(topK, batch: batch, placement: backend.implementation.placement)
    try validateTopP(topP, batch: batch, placement: backend.implementation.placement)
    try seed.source(increment: 0).validate(backend)
    switch order {
    case .topKFirst:
        let probs = try softmax(try topKMaskLogits(logits, topK: topK, backend: backend), backend: backend)
        return try sample(probs, filter: .topP(topP), seed, backend: backend, entry: "topKTopPSamplingFromLogits")
    case .joint:
        let probs = try softmax(logits, backend: backend)
        return try sample(probs, filter: .topKTopP(topK: topK, topP: topP, order: .joint), seed, backend: backend,
                          entry: "topKTopPSamplingFromLogits")
    }
}

extension SamplingReference {
    /// Upstream's Gumbel noise of a uniform, in Float: `−ln2 · log2(−log2(u + 1e-20) + 1e-20)`.
    static func gumbel(_ u: Float) -> Float {
        -0.6931471806 * log2f(-log2f(u + 1e-20) + 1e-20)
    }

    /// Elements per Philox group of `sampling_from_logits`: `gcd(4, vocab)`.
    static func logitsGroup(vocab: Int) -> Int { vocab % 4 == 0 ? 4 : vocab % 2 == 0 ? 2 : 1 }

    /// The Gumbel-max token of row `b` (nil: no logit above `-inf` that is not NaN).
    static func gumbelArgmax(_ x: [Float], row b: Int, seed: UInt64, offset: UInt64) -> Int? {
        let vocab = x.count, group = logitsGroup(vocab: vocab)
        var best = -Float.infinity, index: Int? = nil
        var start = 0
        while start < vocab {
            var s = PhiloxStream(seed: seed, subsequence: UInt64(b) &* UInt64(vocab) &+ UInt64(start), offset: offset)
            for j in start..<min(start + group, vocab) {
                let y = x[j] + gumbel(s.uniform())
                if y > best { best = y; index = j }
            }
            start += group
        }
        return index
    }
}
