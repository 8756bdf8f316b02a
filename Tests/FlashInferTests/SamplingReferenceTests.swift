#if canImport(Glibc)
import Glibc
#endif
import FlashInferCUDA
import Testing

@testable import FlashInfer

/// The exact Float64 reference of the sampling filters, renormalization, logit masking and softmax:
/// hand-computed small cases (dyadic probabilities, so every partial sum is exact), and random rows
/// against naive O(V²) definitions and upstream's sort-based test reference.
@Suite struct SamplingReferenceTests {
    typealias R = SamplingReference
    /// Sorted descending: 0.375 (0 above), 0.25 (1 above, mass .375), 0.125 ×3 (2 above, mass .625).
    static let row: [Double] = [0.125, 0.375, 0.25, 0.125, 0.125]

    static func support(_ q: [Double]) -> [Int] { q.indices.filter { q[$0] > 0 } }

    @Test func rankStatsGroupTies() {
        let s = R.rankStats(Self.row)
        #expect(s.countAbove == [2, 0, 1, 2, 2])
        #expect(s.massAbove == [0.625, 0, 0.375, 0.625, 0.625])
    }

    @Test func handComputedSupports() {
        let p = Self.row
        func dist(_ f: SamplingFilter) -> [Double] { R.distribution(p, filter: f, row: 0) }
        #expect(dist(.none) == p)
        #expect(dist(.topK(1)) == [0, 1, 0, 0, 0])
        #expect(dist(.topK(2)) == [0, 0.6, 0.4, 0, 0])
        #expect(dist(.topK(3)) == p, "ties at the k-th value are all kept")
        #expect(dist(.topP(0.375)) == [0, 1, 0, 0, 0], "mass exactly top_p: the smallest set reaching it")
        #expect(dist(.topP(0.5)) == [0, 0.6, 0.4, 0, 0])
        #expect(dist(.topP(0.625)) == [0, 0.6, 0.4, 0, 0])
        #expect(dist(.topP(0.7)) == p)
        #expect(dist(.topP(1.0)) == p)
        #expect(dist(.minP(0.5)) == [0, 0.6, 0.4, 0, 0])  // pivot 0.1875
        #expect(dist(.minP(.scalar(1.0 / 3))) == p)  // pivot 0.125: ≥ keeps the ties
        #expect(dist(.minP(1.0)) == [0, 1, 0, 0, 0])
        #expect(dist(.minP(0.0)) == p)
        // top-k first renormalizes to [0, .6, .4, 0, 0] before top-p: .4 then has .6 above it.
        #expect(dist(.topKTopP(topK: 2, topP: 0.5, order: .topKFirst)) == [0, 1, 0, 0, 0])
        #expect(dist(.topKTopP(topK: 2, topP: 0.5, order: .joint)) == [0, 0.6, 0.4, 0, 0])
        #expect(dist(.topKTopP(topK: 1, topP: 0.9, order: .joint)) == [0, 1, 0, 0, 0])
        #expect(dist(.topKTopP(topK: 4, topP: 0.7, order: .topKFirst)) == p)
    }

    @Test func zeroProbabilitiesAreNeverKept() {
        let p: [Double] = [0, 0.5, 0, 0.5]
        #expect(Self.support(R.distribution(p, filter: .topK(4), row: 0)) == [1, 3])
        #expect(Self.support(R.distribution(p, filter: .minP(0.0), row: 0)) == [1, 3])
        #expect(Self.support(R.distribution(p, filter: .topP(1.0), row: 0)) == [1, 3])
        #expect(R.distribution([0, 0, 0], filter: .none, row: 0) == [0, 0, 0])
        #expect(R.draw([0, 0, 0], u: 0.5) == nil)
    }

    @Test func perRowParameters() {
        let f = SamplingFilter.topK(.perRow([1, 2]))
        #expect(R.distribution(Self.row, filter: f, row: 0) == [0, 1, 0, 0, 0])
        #expect(R.distribution(Self.row, filter: f, row: 1) == [0, 0.6, 0.4, 0, 0])
    }

    @Test func inverseCDFDraw() {
        let q: [Double] = [0, 0.25, 0, 0.5, 0.25]
        #expect(R.draw(q, u: 0x1p-33) == 1)
        #expect(R.draw(q, u: 0.25) == 3, "the running sum must exceed u")
        #expect(R.draw(q, u: 0.7) == 3)
        #expect(R.draw(q, u: 0.75) == 4)
        #expect(R.draw(q, u: 1) == 4, "u = 1: no sum exceeds it, the last positive token")
    }

    @Test func maskLogitsAndSoftmaxByHand() {
        let inf = Double.infinity
        #expect(R.topKMaskLogits([1, 3, 3, 2], k: 1) == [-inf, 3, 3, -inf])
        #expect(R.topKMaskLogits([1, 3, 3, 2], k: 2) == [-inf, 3, 3, -inf])
        #expect(R.topKMaskLogits([1, 3, 3, 2], k: 3) == [-inf, 3, 3, 2])
        #expect(R.topKMaskLogits([1, -inf, 2], k: 3) == [1, -inf, 2])
        #expect(R.softmax([0, 0, -inf], temperature: 1) == [0.5, 0.5, 0])
        let e = R.softmax([2, 0], temperature: 2)
        let expected = [exp(1.0) / (exp(1.0) + 1), 1 / (exp(1.0) + 1)]
        #expect(abs(e[0] - expected[0]) < 1e-15 && abs(e[1] - expected[1]) < 1e-15)
        let allMasked = R.softmax([-inf, -inf], temperature: 1)
        #expect(allMasked[0].isNaN && allMasked[1].isNaN)
    }

    // MARK: random rows against naive definitions

    static func randomRow(_ n: Int, _ rng: inout TestRNG, ties: Bool) -> [Double] {
        var x = (0..<n).map { _ in ties ? Double(rng.next() % 6) : (rng.unit() < 0.1 ? 0 : rng.unit() * rng.unit()) }
        if x.allSatisfy({ $0 == 0 }) { x[0] = 1 }
        let total = x.reduce(0, +)
        return x.map { $0 / total }
    }

    /// `count(j)`, `mass(j)` by their definitions, pair by pair.
    static func naiveKeep(_ p: [Double], k: Int?, topP: Double?) -> [Bool] {
        p.indices.map { j in
            guard p[j] > 0 else { return false }
            let above = p.indices.filter { p[$0] > p[j] }
            var mass = 0.0
            for i in above { mass += p[i] }
            return (k.map { above.count < $0 } ?? true) && (topP.map { $0 >= 1 || mass < $0 } ?? true)
        }
    }

    @Test func randomSupportsMatchNaiveDefinitions() {
        var rng = TestRNG(seed: 13)
        for trial in 0..<300 {
            let n = 1 + Int(rng.next() % 60), ties = trial % 2 == 0
            let p = Self.randomRow(n, &rng, ties: ties)
            let k = 1 + Int(rng.next() % UInt64(n + 2)), topP = [0.1, 0.5, 0.9, 1.0, rng.unit()][trial % 5]
            #expect(R.topKKeep(p, k: k) == Self.naiveKeep(p, k: k, topP: nil), "trial \(trial)")
            #expect(R.topPKeep(p, topP: topP) == Self.naiveKeep(p, k: nil, topP: topP), "trial \(trial)")
            let joint = R.distribution(p, filter: .topKTopP(topK: .scalar(k), topP: .scalar(topP), order: .joint), row: 0)
            #expect(Self.support(joint) == p.indices.filter { Self.naiveKeep(p, k: k, topP: topP)[$0] }, "trial \(trial)")
            let minP = rng.unit()
            let pmax = p.max()!
            #expect(Self.support(R.distribution(p, filter: .minP(.scalar(minP)), row: 0)) == p.indices.filter { p[$0] > 0 && p[$0] >= pmax * minP })
            // Every distribution is normalized.
            for f in [SamplingFilter.topK(.scalar(k)), .topP(.scalar(topP)), .topKTopP(topK: .scalar(k), topP: .scalar(topP), order: .topKFirst)] {
                let q = R.distribution(p, filter: f, row: 0)
                #expect(abs(q.reduce(0, +) - 1) < 1e-12)
                // Kept tokens keep their ratios.
                let s = Self.support(q)
                for j in s { #expect(abs(q[j] / q[s[0]] - p[j] / p[s[0]]) < 1e-12) }
            }
            // top-k count: k or more tokens when there are k positive ones; more only through ties.
            let kept = R.topKKeep(p, k: k).filter { $0 }.count, positive = p.filter { $0 > 0 }.count
            #expect(kept >= min(k, positive))
            if !ties { #expect(kept == min(k, positive)) }
        }
    }

    /// Upstream's `test_top_p_renorm_probs` reference: sort ascending, `cdf ≥ 1 − p` keeps a token. On
    /// rows without exact partial-sum coincidences it keeps the same set.
    @Test func topPMatchesUpstreamSortReference() {
        var rng = TestRNG(seed: 14)
        for trial in 0..<200 {
            let p = Self.randomRow(2 + Int(rng.next() % 100), &rng, ties: false)
            let topP = [0.1, 0.5, 0.9][trial % 3]
            let asc = p.indices.sorted { p[$0] < p[$1] }
            var cdf = 0.0, upstream = [Bool](repeating: false, count: p.count)
            for j in asc { cdf += p[j]; upstream[j] = cdf >= 1 - topP && p[j] > 0 }
            #expect(R.topPKeep(p, topP: topP) == upstream, "trial \(trial)")
        }
    }

    @Test func randomMaskLogitsMatchesNaive() {
        var rng = TestRNG(seed: 15)
        for trial in 0..<200 {
            let n = 1 + Int(rng.next() % 50)
            let x = (0..<n).map { _ in Double(Int(rng.next() % 8)) - 4 }  // many ties
            let k = 1 + Int(rng.next() % UInt64(n))
            let naive = x.map { v in x.filter { $0 > v }.count < k ? v : -Double.infinity }
            #expect(R.topKMaskLogits(x, k: k) == naive, "trial \(trial)")
        }
    }

    // MARK: the public ops on tensors

    @Test func publicRenormMaskSoftmaxOnTensors() throws {
        let probs = Tensor.host((Self.row + Self.row).map(Float.init), shape: [2, 5], dtype: .f32)
        #expect(try topKRenormProbs(probs, topK: .perRow([1, 2])).toFloats() == [0, 1, 0, 0, 0, 0, 0.6, 0.4, 0, 0])
        #expect(try topPRenormProbs(probs, topP: 0.5).toFloats() == [0, 0.6, 0.4, 0, 0, 0, 0.6, 0.4, 0, 0])
        let logits = Tensor.host([1, 3, 3, 2, 0, 1, 2, 3], shape: [2, 4], dtype: .f32)
        let masked = try topKMaskLogits(logits, topK: .perRow([2, 1])).toFloats()
        let ninf = -Float.infinity
        let maskedExpected: [Float] = [ninf, 3, 3, ninf, ninf, ninf, ninf, 3]
        #expect(masked == maskedExpected)
        let sm = try softmax(Tensor.host([0, 0, 2, 0], shape: [2, 2], dtype: .f32), temperature: .perRow([1, 2])).toFloats()
        let e = Float(exp(1.0))
        for (a, b) in zip(sm, [0.5, 0.5, e / (e + 1), 1 / (e + 1)]) { #expect(abs(a - b) < 1e-6) }
        let bf = try topKRenormProbs(Tensor.host(Self.row.map(Float.init), shape: [1, 5], dtype: .bf16), topK: 1)
        #expect(bf.dtype == .bf16)
        #expect(try bf.toFloats() == [0, 1, 0, 0, 0])
    }

    // MARK: validation

    @Test func validationErrors() {
        typealias E = FlashInferError
        let probs = Tensor.host(Self.row.map(Float.init) + Self.row.map(Float.init), shape: [2, 5], dtype: .f32)
        for bad in [0.0, -0.1, 1.5, .nan] {
            #expect(throws: E.option(name: "top_p", value: "\(bad)", rule: "must be in (0, 1]")) { try topPRenormProbs(probs, topP: .scalar(bad)) }
        }
        #expect(throws: E.option(name: "top_p", value: "0.0", rule: "must be in (0, 1]")) {
            try topKTopPSamplingFromProbs(probs, topK: 2, topP: .perRow([0.5, 0]), seed: 0)
        }
        #expect(throws: E.option(name: "top_k", value: "0", rule: "must be >= 1")) { try topKRenormProbs(probs, topK: 0) }
        #expect(throws: E.option(name: "top_k", value: "-3", rule: "must be >= 1")) { try topKSamplingFromProbs(probs, topK: .perRow([1, -3]), seed: 0) }
        #expect(throws: E.option(name: "top_k", value: "0", rule: "must be >= 1")) { try topKMaskLogits(probs, topK: 0) }
        #expect(throws: E.option(name: "min_p", value: "1.5", rule: "must be in [0, 1]")) { try minPSamplingFromProbs(probs, minP: 1.5, seed: 0) }
        #expect(throws: E.option(name: "temperature", value: "0.0", rule: "must be finite and > 0")) { try softmax(probs, temperature: 0.0) }
        #expect(throws: E.shape(tensor: "top_k", axis: 0, name: "batch_size", expected: "2", got: 3)) { try topKRenormProbs(probs, topK: .perRow([1, 2, 3])) }
        #expect(throws: E.shape(tensor: "top_p", axis: 0, name: "batch_size", expected: "2", got: 1)) { try topPSamplingFromProbs(probs, topP: .perRow([0.5]), seed: 0) }
        #expect(throws: E.shape(tensor: "min_p", axis: 0, name: "batch_size", expected: "2", got: 0)) { try minPSamplingFromProbs(probs, minP: .perRow([]), seed: 0) }
        #expect(throws: E.shape(tensor: "temperature", axis: 0, name: "batch_size", expected: "2", got: 3)) { try softmax(probs, temperature: .perRow([1, 1, 1])) }
        #expect(throws: E.rank(tensor: "probs", expected: 2, got: 1)) { try samplingFromProbs(probs.reshaped([10]), seed: 0) }
        #expect(throws: E.rank(tensor: "logits", expected: 2, got: 3)) { try softmax(probs.reshaped([1, 2, 5])) }
        let fp8 = Tensor.host([0.5, 0.5], shape: [1, 2], dtype: .e4m3)
        #expect(throws: E.dtype(tensor: "probs", expected: "float32, float16 or bfloat16", got: .e4m3)) { try samplingFromProbs(fp8, seed: 0) }
    }

    /// On a GPU (skipped without one): the CUDA backend runs the kernels; on dyadic rows (exact
    /// sums in f32 and f64) their results equal the reference's. (`flashinfer check --filter
    /// sampling` is the full GPU check.)
    @Test(.enabled(if: gpuAvailable, "no GPU"))
    func cudaBackendRunsTheKernels() throws {
        let backend = Backend.cuda(try Device.open().libraryStream())
        let row: [Float] = [0.25, 0, 0.125, 0.125, 0.0625, 0.0625, 0.125, 0.125, 0.0625, 0.0625]
        let probs = Tensor.host(row + row.reversed(), shape: [2, 10], dtype: .f32)
        let gpu = try probs.moved(to: backend)
        #expect(try topKRenormProbs(gpu, topK: 3, backend: backend).toFloats() == topKRenormProbs(probs, topK: 3).toFloats())
        #expect(try topPRenormProbs(gpu, topP: 0.5, backend: backend).toFloats() == topPRenormProbs(probs, topP: 0.5).toFloats())
        #expect(try topKMaskLogits(gpu, topK: 1, backend: backend).toFloats() == topKMaskLogits(probs, topK: 1).toFloats())
        #expect(try samplingFromProbs(gpu, seed: 7, backend: backend) == samplingFromProbs(probs, seed: 7))
        #expect(try minPSamplingFromProbs(gpu, minP: 0.5, seed: 9, offset: 3, backend: backend)
                == minPSamplingFromProbs(probs, minP: 0.5, seed: 9, offset: 3))
    }
}