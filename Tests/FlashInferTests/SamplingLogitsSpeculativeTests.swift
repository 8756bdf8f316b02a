#if canImport(Glibc)
import Glibc
#endif
import FlashInferTesting
import Testing

@testable import FlashInfer

/// `samplingFromLogits`, `topKTopPSamplingFromLogits` and `chainSpeculativeSampling` on the CPU:
/// chi-square tests of the draws (alpha = 1e-6), hand cases, and each validation error.
@Suite struct SamplingLogitsSpeculativeTests {
    static let alpha = 1e-6

    static func logits(_ n: Int, seed: UInt64) -> [Float] {
        var rng = TestRNG(seed: seed)
        return (0..<n).map { _ in Float(4 * rng.unit() - 2) }
    }

    static func softmax64(_ x: [Float]) -> [Double] {
        let m = Double(x.max()!)
        let e = x.map { exp(Double($0) - m) }
        let z = e.reduce(0, +)
        return e.map { $0 / z }
    }

    static func repeated(_ row: [Float], batch: Int) -> Tensor {
        Tensor.host(Array((0..<batch).map { _ in row }.joined()), shape: [batch, row.count], dtype: .f32)
    }

    static func counts(_ s: [Int32], vocab: Int) -> [Int] {
        var c = [Int](repeating: 0, count: vocab)
        for t in s { c[Int(t)] += 1 }
        return c
    }

    /// Gumbel-max draws follow softmax(logits), for each Philox grouping (vocab % 4 = 0, 2, odd).
    @Test(arguments: [24, 22, 23])
    func gumbelMaxFollowsTheSoftmax(vocab: Int) throws {
        let x = Self.logits(vocab, seed: UInt64(vocab))
        let out = try samplingFromLogits(Self.repeated(x, batch: 20_000), seed: 11, offset: 4)
        #expect(out.valid.allSatisfy { $0 })
        let r = chiSquareTest(counts: Self.counts(out.samples, vocab: vocab), expected: Self.softmax64(x))
        #expect(r.pValue >= Self.alpha, "\(r)")
    }

    /// Row b, element j: word j mod G of PhiloxStream(seed, b · vocab + j − j mod G, offset).
    @Test func gumbelUniformsAreUpstreamsStreams() throws {
        let x: [Float] = [0, 0, 0, 0, 0, 0, 0, 0]
        let out = try samplingFromLogits(Self.repeated(x, batch: 3), seed: 5, offset: 2)
        for b in 0..<3 {
            var best = -Float.infinity, want = -1
            for g in stride(from: 0, to: 8, by: 4) {
                var s = PhiloxStream(seed: 5, subsequence: UInt64(b * 8 + g), offset: 2)
                for j in g..<(g + 4) {
                    let y = SamplingReference.gumbel(s.uniform())
                    if y > best { best = y; want = j }
                }
            }
            #expect(Int(out.samples[b]) == want)
        }
        // Rows with no logit above -inf (NaN never counts): token 0, invalid.
        let bad = Tensor.host([-.infinity, -.infinity, .nan, -.infinity, 1, .nan], shape: [2, 3], dtype: .f32)
        let o = try samplingFromLogits(bad, seed: 1)
        #expect(o.samples == [0, 1] && o.valid == [false, true])
    }

    @Test(arguments: FilterApplyOrder.allCases)
    func topKTopPFromLogitsFollowsTheFilteredSoftmax(order: FilterApplyOrder) throws {
        let x = Self.logits(24, seed: 3)
        let out = try topKTopPSamplingFromLogits(Self.repeated(x, batch: 20_000), topK: 8, topP: 0.7, order: order, seed: 2)
        let probs = Tensor.host(Self.softmax64(x).map(Float.init), shape: [1, 24], dtype: .f32)
        let q = try samplingDistribution(probs, filter: .topKTopP(topK: 8, topP: 0.7, order: order))[0]
        let c = Self.counts(out.samples, vocab: 24)
        for j in 0..<24 where c[j] > 0 { #expect(q[j] > 0, "token \(j) outside the support") }
        let r = chiSquareTest(counts: c, expected: q)
        #expect(r.pValue >= Self.alpha, "\(r)")
    }

    /// The emitted token at each position follows the target when draft tokens follow the draft.
    @Test func chainSpeculativeEmitsTheTargetDistribution() throws {
        let (batch, n, vocab) = (20_000, 2, 12)
        let p = (0..<n).map { Self.softmax64(Self.logits(vocab, seed: 20 + UInt64($0))) }
        let q = (0...n).map { Self.softmax64(Self.logits(vocab, seed: 40 + UInt64($0))) }
        var rng = TestRNG(seed: 9)
        var ids: [Int32] = []
        for _ in 0..<batch {
            for i in 0..<n {
                let u = rng.unit()
                var run = 0.0, pick = vocab - 1
                for j in 0..<vocab { run += p[i][j]; if run > u { pick = j; break } }
                ids.append(Int32(pick))
            }
        }
        let d = Tensor.host(Array((0..<batch).map { _ in p.joined() }.joined()).map(Float.init), shape: [batch, n, vocab], dtype: .f32)
        let t = Tensor.host(Array((0..<batch).map { _ in q.joined() }.joined()).map(Float.init), shape: [batch, n + 1, vocab], dtype: .f32)
        let out = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: ids, targetProbs: t, seed: 3)
        var counts = [[Int]](repeating: [Int](repeating: 0, count: vocab), count: n + 1)
        for b in 0..<batch {
            let e = Int(out.emittedDraftTokenNum[b])
            #expect(out.acceptedTokenNum[b] >= out.emittedDraftTokenNum[b])
            for i in 0...e { counts[i][Int(out.outputTokenIds[b * (n + 1) + i])] += 1 }
            for i in stride(from: e + 1, through: n, by: 1) { #expect(out.outputTokenIds[b * (n + 1) + i] == -1) }
        }
        for i in 0...n {
            let r = chiSquareTest(counts: counts[i], expected: q[i])
            #expect(r.pValue >= Self.alpha, "position \(i): \(r)")
        }
    }

    /// Draft = target: every draft token passes (u · p < p for u < 1), the bonus comes from q_n;
    /// an out-of-range draft id is rejected.
    @Test func chainSpeculativeHandCases() throws {
        let row: [Float] = [0.5, 0.25, 0.125, 0.125]
        let d = Tensor.host(row + row, shape: [1, 2, 4], dtype: .f32)
        let t = Tensor.host(row + row + [0, 0, 1, 0], shape: [1, 3, 4], dtype: .f32)
        let out = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: [1, 3], targetProbs: t, seed: 8)
        #expect(out.outputTokenIds == [1, 3, 2] && out.acceptedTokenNum == [2] && out.emittedDraftTokenNum == [2])
        let rejected = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: [7, 3], targetProbs: t, seed: 8)
        #expect(rejected.emittedDraftTokenNum == [0] && rejected.outputTokenIds[1...] == [-1, -1])
        #expect(rejected.outputTokenIds[0] >= 0 && rejected.outputTokenIds[0] < 4)
    }

    @Test func validationErrors() {
        typealias E = FlashInferError
        let x = Tensor.host([Float](repeating: 0.25, count: 8), shape: [2, 4], dtype: .f32)
        #expect(throws: E.rank(tensor: "logits", expected: 2, got: 1)) { try samplingFromLogits(x.reshaped([8]), seed: 0) }
        let fp8 = Tensor.host([0.5, 0.5], shape: [1, 2], dtype: .e4m3)
        #expect(throws: E.dtype(tensor: "logits", expected: "float32, float16 or bfloat16", got: .e4m3)) { try samplingFromLogits(fp8, seed: 0) }
        #expect(throws: E.option(name: "top_k", value: "0", rule: "must be >= 1")) { try topKTopPSamplingFromLogits(x, topK: 0, topP: 0.5, seed: 0) }
        #expect(throws: E.option(name: "top_p", value: "1.5", rule: "must be in (0, 1]")) { try topKTopPSamplingFromLogits(x, topK: 2, topP: 1.5, seed: 0) }
        #expect(throws: E.shape(tensor: "top_k", axis: 0, name: "batch_size", expected: "2", got: 1)) {
            try topKTopPSamplingFromLogits(x, topK: .perRow([3]), topP: 0.5, order: .joint, seed: 0)
        }
        #expect(throws: E.rank(tensor: "logits", expected: 2, got: 3)) { try topKTopPSamplingFromLogits(x.reshaped([1, 2, 4]), topK: 1, topP: 1.0, seed: 0) }

        let d = Tensor.host([Float](repeating: 0.25, count: 8), shape: [1, 2, 4], dtype: .f32)
        let t = Tensor.host([Float](repeating: 0.25, count: 12), shape: [1, 3, 4], dtype: .f32)
        func spec(_ d: Tensor, _ ids: [Int32], _ t: Tensor) throws(FlashInferError) { _ = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: ids, targetProbs: t, seed: 0) }
        #expect(throws: E.rank(tensor: "draft_probs", expected: 3, got: 2)) { try spec(x, [0, 0], t) }
        #expect(throws: E.rank(tensor: "target_probs", expected: 3, got: 2)) { try spec(d, [0, 0], x) }
        #expect(throws: E.dtype(tensor: "draft_probs", expected: "float32, float16 or bfloat16", got: .e4m3)) {
            try spec(Tensor.host([Float](repeating: 0.25, count: 8), shape: [1, 2, 4], dtype: .e4m3), [0, 0], t)
        }
        #expect(throws: E.dtype(tensor: "target_probs", expected: "draft_probs' dtype (f32)", got: .bf16)) {
            try spec(d, [0, 0], Tensor.host([Float](repeating: 0.25, count: 12), shape: [1, 3, 4], dtype: .bf16))
        }
        #expect(throws: E.shape(tensor: "draft_probs", axis: 1, name: "num_speculate_tokens", expected: ">= 1", got: 0)) {
            try spec(Tensor.host([], shape: [1, 0, 4], dtype: .f32), [], Tensor.host([0.25, 0.25, 0.25, 0.25], shape: [1, 1, 4], dtype: .f32))
        }
        #expect(throws: E.shape(tensor: "target_probs", axis: 0, name: "batch_size", expected: "1", got: 2)) {
            try spec(d, [0, 0], Tensor.host([Float](repeating: 0.25, count: 24), shape: [2, 3, 4], dtype: .f32))
        }
        #expect(throws: E.shape(tensor: "target_probs", axis: 1, name: "num_speculate_tokens + 1", expected: "3", got: 2)) {
            try spec(d, [0, 0], Tensor.host([Float](repeating: 0.25, count: 8), shape: [1, 2, 4], dtype: .f32))
        }
        #expect(throws: E.shape(tensor: "target_probs", axis: 2, name: "vocab_size", expected: "4", got: 2)) {
            try spec(d, [0, 0], Tensor.host([Float](repeating: 0.5, count: 6), shape: [1, 3, 2], dtype: .f32))
        }
        #expect(throws: E.shape(tensor: "draft_token_ids", axis: 0, name: "batch_size * num_speculate_tokens", expected: "2", got: 3)) {
            try spec(d, [0, 0, 0], t)
        }
    }
}
