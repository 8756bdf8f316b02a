#if canImport(Glibc)
import Glibc
#endif
import FlashInferTesting
import Testing

@testable import FlashInfer

/// The CPU samplers: every draw lies in the filtered support, the empirical distribution passes a
/// chi-square test against `samplingDistribution` at alpha = 1e-6 (one false failure per million
/// runs of a test), and the seed/offset contract.
@Suite struct SamplingTests {
    static let alpha = 1e-6

    /// `batch` copies of one row: row b draws from Philox subsequence b, so the rows are independent draws.
    static func repeated(_ p: [Double], batch: Int) -> Tensor {
        let row = p.map(Float.init)
        return Tensor.host(Array((0..<batch).map { _ in row }.joined()), shape: [batch, p.count], dtype: .f32)
    }

    static func randomProbs(_ n: Int, seed: UInt64) -> [Double] {
        var rng = TestRNG(seed: seed)
        let logits = (0..<n).map { _ in 2 * rng.unit() * rng.unit() * 3 }
        let e = logits.map { exp($0) }
        let t = e.reduce(0, +)
        return e.map { Double(Float($0 / t)) }  // what the Float32 tensor holds
    }

    static let filters: [(String, SamplingFilter)] = [
        ("none", .none), ("top_k 5", .topK(5)), ("top_k 1", .topK(1)), ("top_p 0.5", .topP(0.5)), ("top_p 0.9", .topP(0.9)),
        ("min_p 0.3", .minP(0.3)), ("min_p 0.05", .minP(0.05)),
        ("top_k_first 8/0.6", .topKTopP(topK: 8, topP: 0.6, order: .topKFirst)),
        ("joint 8/0.6", .topKTopP(topK: 8, topP: 0.6, order: .joint)),
    ]

    @Test(arguments: filters.indices)
    func drawsLieInSupportAndMatchDistribution(i: Int) throws {
        let (name, filter) = Self.filters[i]
        let p = Self.randomProbs(24, seed: 100 + UInt64(i))
        let n = 20_000
        let probs = Self.repeated(p, batch: n)
        let out = try sample(probs, filter: filter, seed: 7 + UInt64(i), offset: 4 * UInt64(i))
        let q = try samplingDistribution(Self.repeated(p, batch: 1), filter: filter)[0]
        var counts = [Int](repeating: 0, count: p.count)
        for (s, v) in zip(out.samples, out.valid) {
            #expect(v)
            #expect(s >= 0 && Int(s) < p.count && q[Int(s)] > 0, "\(name): token \(s) outside the support")
            if s >= 0 && Int(s) < p.count { counts[Int(s)] += 1 }
        }
        let r = chiSquareTest(counts: counts, expected: q)
        #expect(r.pValue >= Self.alpha, "\(name): \(r)")
    }

    /// The named entry points are the filters above.
    @Test func namedSamplersAreTheirFilters() throws {
        let p = Self.randomProbs(30, seed: 5)
        let probs = Self.repeated(p, batch: 64)
        func same(_ a: SamplingOutput, _ f: SamplingFilter) throws { #expect(a == (try sample(probs, filter: f, seed: 3, offset: 8))) }
        try same(try samplingFromProbs(probs, seed: 3, offset: 8), .none)
        try same(try topKSamplingFromProbs(probs, topK: 4, seed: 3, offset: 8), .topK(4))
        try same(try topPSamplingFromProbs(probs, topP: 0.3, seed: 3, offset: 8), .topP(0.3))
        try same(try minPSamplingFromProbs(probs, minP: 0.2, seed: 3, offset: 8), .minP(0.2))
        try same(try topKTopPSamplingFromProbs(probs, topK: 4, topP: 0.3, order: .joint, seed: 3, offset: 8),
                 .topKTopP(topK: 4, topP: 0.3, order: .joint))
    }

    /// A wrong distribution fails: draws from top-k 5 tested against the unfiltered distribution.
    @Test func chiSquareRejectsAWrongDistribution() throws {
        let p = Self.randomProbs(24, seed: 9)
        let out = try topKSamplingFromProbs(Self.repeated(p, batch: 5_000), topK: 5, seed: 1)
        var counts = [Int](repeating: 0, count: p.count)
        for s in out.samples { counts[Int(s)] += 1 }
        #expect(chiSquareTest(counts: counts, expected: p).pValue < Self.alpha)
    }

    /// Row b's uniform is Philox(seed, subsequence b, offset)'s first: same seed/offset, same
    /// samples; another seed or offset, other samples. `samplingFromProbs` is upstream's rule.
    @Test func seedAndOffsetContract() throws {
        let p = Self.randomProbs(50, seed: 11)
        let probs = Self.repeated(p, batch: 200)
        let a = try samplingFromProbs(probs, seed: 42, offset: 0), b = try samplingFromProbs(probs, seed: 42, offset: 0)
        #expect(a == b)
        #expect(a != (try samplingFromProbs(probs, seed: 43, offset: 0)))
        #expect(a != (try samplingFromProbs(probs, seed: 42, offset: 4)))
        for row in [0, 17, 199] {
            var rng = PhiloxStream(seed: 42, subsequence: UInt64(row), offset: 0)
            let u = Double(rng.uniform())
            var running = 0.0, expected = p.count - 1
            for j in p.indices { running += p[j]; if running > u * p.reduce(0, +) { expected = j; break } }
            #expect(Int(a.samples[row]) == expected)
        }
    }

    @Test func perRowParametersAndInvalidRows() throws {
        let probs = Tensor.host([0.25, 0.5, 0.25, 0, 0, 0], shape: [2, 3], dtype: .f32)
        let out = try topKSamplingFromProbs(probs, topK: .perRow([1, 3]), seed: 5)
        #expect(out.samples == [1, 0])
        #expect(out.valid == [true, false])
    }

    // MARK: the chi-square helper

    @Test func chiSquareSurvivalKnownValues() {
        // Standard table values: the 5% and 1% critical points, and dof 2's exp(-x/2).
        #expect(abs(chiSquareSurvival(3.841458820694124, degreesOfFreedom: 1) - 0.05) < 1e-10)
        #expect(abs(chiSquareSurvival(18.307038053275146, degreesOfFreedom: 10) - 0.05) < 1e-10)
        #expect(abs(chiSquareSurvival(6.6348966010212145, degreesOfFreedom: 1) - 0.01) < 1e-10)
        #expect(abs(chiSquareSurvival(135.80672317102676, degreesOfFreedom: 100) - 0.01) < 1e-9)
        for x in [0.1, 1.0, 2.0, 10.0, 50.0] { #expect(abs(chiSquareSurvival(x, degreesOfFreedom: 2) - exp(-x / 2)) < 1e-13) }
        #expect(chiSquareSurvival(0, degreesOfFreedom: 5) == 1)
    }

    @Test func chiSquareTestPoolsSmallBinsAndFlagsOutOfSupport() {
        let r = chiSquareTest(counts: [50, 50, 0, 0], expected: [0.5, 0.499, 0.001, 0])
        #expect(r.degreesOfFreedom == 1)  // the 0.1-expected bin pooled into the smallest other bin
        #expect(r.pValue > 0.5)
        #expect(chiSquareTest(counts: [50, 49, 0, 1], expected: [0.5, 0.5, 0, 0]).pValue == 0)
    }
}
