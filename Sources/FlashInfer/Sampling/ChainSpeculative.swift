/// Upstream's `chain_speculative_sampling` (SEMANTICS.md §2.8).

/// The result of `chainSpeculativeSampling`: per request, `numDraft + 1` tokens (the accepted draft
/// tokens, then the resampled or bonus token, then `-1`), and the counts upstream adds into its
/// `output_accepted_token_num` / `output_emitted_draft_token_num` tensors (here for this call
/// alone: add them to running totals to get upstream's accumulated values).
public struct ChainSpeculativeOutput: Sendable, Equatable {
    /// `[batch, numDraft + 1]`, row-major.
    public var outputTokenIds: [Int32]
    /// Per request: the draft tokens passing the acceptance test, every position tested
    /// (positions after the first rejection with fresh uniforms): upstream's accepted count.
    public var acceptedTokenNum: [Int32]
    /// Per request: the draft tokens emitted (accepted before the first rejection).
    public var emittedDraftTokenNum: [Int32]
}

/// A validated `chainSpeculativeSampling` call, as the backends take it.
struct ChainSpeculativeCall {
    var draftProbs: Tensor      // [batch, numDraft, vocab]
    var draftTokenIds: [Int32]  // [batch, numDraft]
    var targetProbs: Tensor     // [batch, numDraft + 1, vocab]
    var philox: PhiloxSource
    var batch: Int
    var numDraft: Int
    var vocab: Int
}

/// `flashinfer.sampling.chain_speculative_sampling`: verifies `numDraft` draft tokens per request
/// against the target model. Request `b` draws from `PhiloxStream(seed, subsequence: b, offset)`:
/// for `i < n`, draft token `d_i` is accepted while `u_i · p_draft(d_i) < p_target(d_i)`; the first
/// rejection stops the chain at `pos = i` (`pos = n` when all pass). The positions `pos..<n` are
/// then tested again with fresh uniforms, each on its own, for the accepted count (upstream's
/// rule). At `pos` one token is drawn by inverse CDF, with the next uniform, from
/// `relu(q_pos − p_pos)` renormalized (from `q_n`, the bonus token, when all were accepted); the
/// positions after it are `-1`. When the draft tokens are drawn from the draft distributions, each
/// emitted token is distributed as the target's distribution at its position (the speculative
/// sampling theorem; the check tests it). A residual with no mass (`q ≤ p` everywhere, reachable only
/// when `u = 1`) draws from `q_pos`; a target row with no positive entry gives token 0; a draft id
/// outside `[0, vocab)` is rejected.
/// - Parameters:
///   - draftProbs: `[batch, numDraft, vocab]` probabilities (f32, f16 or bf16).
///   - draftTokenIds: `batch · numDraft` token ids, row-major.
///   - targetProbs: `[batch, numDraft + 1, vocab]`, the draft's dtype.
/// - Throws: `.rank`, `.shape`, `.dtype` before any work (on the CUDA backend also `.strides` for a
///   non-contiguous tensor).
public func chainSpeculativeSampling(draftProbs: Tensor, draftTokenIds: [Int32], targetProbs: Tensor, seed: UInt64,
                                     offset: UInt64 = 0, backend: Backend = .cpu) throws(FlashInferError) -> ChainSpeculativeOutput {
    let call = try validateChainSpeculative(draftProbs: draftProbs, draftTokenIds: draftTokenIds, targetProbs: targetProbs,
                                            .fixed(seed: seed, offset: offset), backend: backend)
    return try backend.implementation.chainSpeculativeSampling(call)
}

/// `chainSpeculativeSampling` drawing from `generator` (read when the call runs, then advanced by
/// `SamplingGenerator.incrementChainSpeculative(batch:numDraft:)`; see `SamplingGenerator`).
public func chainSpeculativeSampling(draftProbs: Tensor, draftTokenIds: [Int32], targetProbs: Tensor, generator: SamplingGenerator,
                                     backend: Backend = .cpu) throws(FlashInferError) -> ChainSpeculativeOutput {
    let call = try validateChainSpeculative(draftProbs: draftProbs, draftTokenIds: draftTokenIds, targetProbs: targetProbs,
                                            .generator(generator), backend: backend)
    return try backend.implementation.chainSpeculativeSampling(call)
}

func validateChainSpeculative(draftProbs: Tensor, draftTokenIds: [Int32], targetProbs: Tensor, _ seed: SamplingSeed,
                              backend: Backend) throws(FlashInferError) -> ChainSpeculativeCall {
    let (batch, n, vocab) = try validateChainSpeculativeShapes(draftProbs: draftProbs, targetProbs: targetProbs,
                                                               numIds: draftTokenIds.count, backend: backend)
    let philox = seed.source(increment: SamplingGenerator.incrementChainSpeculative(batch: batch, numDraft: n))
    try philox.validate(backend)
    return ChainSpeculativeCall(draftProbs: draftProbs, draftTokenIds: draftTokenIds, targetProbs: targetProbs, philox: philox,
                                batch: batch, numDraft: n, vocab: vocab)
}

/// `(batch, numDraft, vocab)` of a `chainSpeculativeSampling` call with `numIds` draft token ids
/// (nil: not counted here), validated: placement, ranks, dtypes, shapes.
func validateChainSpeculativeShapes(draftProbs: Tensor, targetProbs: Tensor, numIds: Int?,
                                    backend: Backend) throws(FlashInferError) -> (batch: Int, numDraft: Int, vocab: Int) {
    let placement = backend.implementation.placement
    try checkPlacement("draft_probs", draftProbs, placement)
    try checkPlacement("target_probs", targetProbs, placement)
    guard draftProbs.rank == 3 else { throw .rank(tensor: "draft_probs", expected: 3, got: draftProbs.rank) }
    guard targetProbs.rank == 3 else { throw .rank(tensor: "target_probs", expected: 3, got: targetProbs.rank) }
    guard draftProbs.dtype == .f32 || draftProbs.dtype == .f16 || draftProbs.dtype == .bf16 else {
        throw .dtype(tensor: "draft_probs", expected: "float32, float16 or bfloat16", got: draftProbs.dtype)
    }
    guard targetProbs.dtype == draftProbs.dtype else {
        throw .dtype(tensor: "target_probs", expected: "draft_probs' dtype (\(draftProbs.dtype.rawValue))", got: targetProbs.dtype)
    }
    let (batch, n, vocab) = (draftProbs.shape[0], draftProbs.shape[1], draftProbs.shape[2])
    guard n >= 1 else { throw .shape(tensor: "draft_probs", axis: 1, name: "num_speculate_tokens", expected: ">= 1", got: n) }
    guard vocab >= 1, vocab < Int(Int32.max) else { throw .shape(tensor: "draft_probs", axis: 2, name: "vocab_size", expected: ">= 1 and < 2^31", got: vocab) }
    guard targetProbs.shape[0] == batch else { throw .shape(tensor: "target_probs", axis: 0, name: "batch_size", expected: "\(batch)", got: targetProbs.shape[0]) }
    guard targetProbs.shape[1] == n + 1 else {
        throw .shape(tensor: "target_probs", axis: 1, name: "num_speculate_tokens + 1", expected: "\(n + 1)", got: targetProbs.shape[1])
    }
    guard targetProbs.shape[2] == vocab else { throw .shape(tensor: "target_probs", axis: 2, name: "vocab_size", expected: "\(vocab)", got: targetProbs.shape[2]) }
    if let numIds, numIds != batch * n {
        throw .shape(tensor: "draft_token_ids", axis: 0, name: "batch_size * num_speculate_tokens", expected: "\(batch * n)", got: numIds)
    }
    return (batch, n, vocab)
}

extension SamplingReference {
    /// One request of `chainSpeculativeSampling` (rows of Float as the tensors hold them): the
    /// tokens, the accepted and the emitted counts.
    static func chainSpeculative(draft: [[Float]], ids: [Int32], target: [[Float]], stream s: inout PhiloxStream) -> (tokens: [Int32], accepted: Int, emitted: Int) {
        let n = draft.count, vocab = target[0].count
        func passes(_ i: Int, _ u: Float) -> Bool {
            let id = Int(ids[i])
            guard id >= 0 && id < vocab else { return false }
            return u * draft[i][id] < target[i][id]
        }
        var tokens = [Int32](repeating: -1, count: n + 1)
        var pos = n
        for i in 0..<n {
            if !passes(i, s.uniform()) { pos = i; break }
            tokens[i] = ids[i]
        }
        var accepted = pos
        for i in pos..<n where passes(i, s.uniform()) { accepted += 1 }
        let u = s.uniform()
        let q = target[pos].map { Double($0) }
        var residual = q
        if pos < n { residual = q.indices.map { max(q[$0] - Double(draft[pos][$0]), 0) } }
        if !residual.contains(where: { $0 > 0 }) { residual = q }
        tokens[pos] = Int32(draw(residual, u: u) ?? 0)
        return (tokens, accepted, pos)
    }
}
