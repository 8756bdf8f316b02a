#if canImport(Glibc)
import Glibc
#endif
import FlashInferTesting
import Testing

@testable import FlashInfer

/// `SamplingGenerator` on the CPU backend (host state): a call with a generator at `(s, o)` is the
/// by-value call with `seed: s, offset: o`, and leaves the state at `(s, o + increment)`; so
/// successive calls draw fresh numbers, exactly as advancing the offset by hand, and the same
/// initial state reproduces the same sequence. (The CUDA device generator's same contract, in a
/// captured graph: the check "sampling generator graph replay ...".)
@Suite struct SamplingGeneratorTests {
    /// `batch` rows of random probabilities over `vocab` tokens.
    static func probs(batch: Int, vocab: Int, seed: UInt64) -> Tensor {
        var rng = TestRNG(seed: seed)
        var out: [Float] = []
        for _ in 0..<batch {
            let e = (0..<vocab).map { _ in Float(rng.unit() * rng.unit() * 4) }.map { expf($0) }
            let z = e.reduce(0, +)
            out += e.map { $0 / z }
        }
        return Tensor.host(out, shape: [batch, vocab], dtype: .f32)
    }

    static let filters: [SamplingFilter] = [
        .none, .topK(20), .topP(0.9), .minP(0.05), .topKTopP(topK: 20, topP: 0.8, order: .topKFirst),
        .topKTopP(topK: 20, topP: 0.8, order: .joint),
    ]

    @Test func incrementsFollowUpstreamRoundedToBlocks() {
        #expect(SamplingGenerator.increment(filter: .none, batch: 3) == 4)
        #expect(SamplingGenerator.increment(filter: .minP(0.1), batch: 8) == 8)
        #expect(SamplingGenerator.increment(filter: .topP(0.9), batch: 8) == 256)
        #expect(SamplingGenerator.increment(filter: .topK(5), batch: 1) == 64, "at least kMaxRounds uniforms per row")
        #expect(SamplingGenerator.increment(filter: .topK(5), batch: 0) == 0)
        #expect(SamplingGenerator.incrementFromLogits(batch: 3, vocab: 1001) == 3004)
        #expect(SamplingGenerator.incrementChainSpeculative(batch: 5, numDraft: 3) == 20)
        #expect(SamplingGenerator.incrementChainSpeculative(batch: 1, numDraft: 4) == 8)
    }

    @Test(arguments: filters.indices)
    func successiveCallsEqualByValueCallsAtAdvancedOffsets(i: Int) throws {
        let filter = Self.filters[i]
        let (batch, vocab) = (64, 200)
        let x = Self.probs(batch: batch, vocab: vocab, seed: 7 + UInt64(i))
        let (seed, o0) = (UInt64(0x1234_5678_9abc), UInt64(12))
        let inc = SamplingGenerator.increment(filter: filter, batch: batch)
        let g = SamplingGenerator(seed: seed, offset: o0)
        var draws: [[Int32]] = []
        for call in 0..<4 {
            let got = try sample(x, filter: filter, generator: g)
            let want = try sample(x, filter: filter, seed: seed, offset: o0 + UInt64(call) * inc)
            #expect(got == want, "call \(call)")
            draws.append(got.samples)
        }
        let state = try g.state()
        #expect(state.seed == seed && state.offset == o0 + 4 * inc)
        // Fresh numbers: 64 rows over 200 tokens, successive calls cannot agree on every row.
        for c in 1..<draws.count { #expect(draws[c] != draws[c - 1], "calls \(c - 1) and \(c) drew the same tokens") }
        // Reproducible: the same initial state, the same sequence.
        let h = SamplingGenerator(seed: seed, offset: o0)
        for call in 0..<4 { #expect(try sample(x, filter: filter, generator: h).samples == draws[call]) }
    }

    @Test func everyEntryPointTakesAGenerator() throws {
        let (batch, vocab) = (16, 64)
        let x = Self.probs(batch: batch, vocab: vocab, seed: 3)
        let (seed, o0) = (UInt64(99), UInt64(4))
        let g = SamplingGenerator(seed: seed, offset: o0)
        var o = o0
        func step(_ inc: UInt64) { o += inc }
        #expect(try samplingFromProbs(x, generator: g) == samplingFromProbs(x, seed: seed, offset: o)); step(SamplingGenerator.increment(filter: .none, batch: batch))
        #expect(try topKSamplingFromProbs(x, topK: 5, generator: g) == topKSamplingFromProbs(x, topK: 5, seed: seed, offset: o))
        step(SamplingGenerator.increment(filter: .topK(5), batch: batch))
        #expect(try topPSamplingFromProbs(x, topP: 0.7, generator: g) == topPSamplingFromProbs(x, topP: 0.7, seed: seed, offset: o))
        step(SamplingGenerator.increment(filter: .topP(0.7), batch: batch))
        #expect(try minPSamplingFromProbs(x, minP: 0.1, generator: g) == minPSamplingFromProbs(x, minP: 0.1, seed: seed, offset: o))
        step(SamplingGenerator.increment(filter: .minP(0.1), batch: batch))
        for order in FilterApplyOrder.allCases {
            #expect(try topKTopPSamplingFromProbs(x, topK: 9, topP: 0.8, order: order, generator: g)
                    == topKTopPSamplingFromProbs(x, topK: 9, topP: 0.8, order: order, seed: seed, offset: o))
            step(SamplingGenerator.increment(filter: .topKTopP(topK: 9, topP: 0.8, order: order), batch: batch))
            #expect(try topKTopPSamplingFromLogits(x, topK: 9, topP: 0.8, order: order, generator: g)
                    == topKTopPSamplingFromLogits(x, topK: 9, topP: 0.8, order: order, seed: seed, offset: o))
            step(SamplingGenerator.increment(filter: .topP(0.8), batch: batch))
        }
        #expect(try samplingFromLogits(x, generator: g) == samplingFromLogits(x, seed: seed, offset: o))
        step(SamplingGenerator.incrementFromLogits(batch: batch, vocab: vocab))
        let n = 3
        let draft = Tensor.host(try x.toFloats().prefix(4 * n * vocab).map { $0 }, shape: [4, n, vocab], dtype: .f32)
        let target = Tensor.host(try x.toFloats().prefix(4 * (n + 1) * vocab).map { $0 }, shape: [4, n + 1, vocab], dtype: .f32)
        let ids: [Int32] = (0..<(4 * n)).map { Int32($0 * 5 % vocab) }
        #expect(try chainSpeculativeSampling(draftProbs: draft, draftTokenIds: ids, targetProbs: target, generator: g)
                == chainSpeculativeSampling(draftProbs: draft, draftTokenIds: ids, targetProbs: target, seed: seed, offset: o))
        step(SamplingGenerator.incrementChainSpeculative(batch: 4, numDraft: n))
        #expect(try g.state() == (seed, o))
    }

    @Test func stateCanBeSetAndEmptyBatchesDoNotAdvance() throws {
        let g = SamplingGenerator(seed: 1, offset: 0)
        try g.set(seed: 5, offset: 40)
        #expect(try g.state() == (5, 40))
        _ = try topPSamplingFromProbs(Tensor.host([Float](), shape: [0, 10], dtype: .f32), topP: 0.5, generator: g)
        #expect(try g.state() == (5, 40))
    }
}
