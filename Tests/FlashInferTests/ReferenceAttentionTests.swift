import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One reference problem; K/V are generated in NHD and transposed when the layout is HND.
struct RefCase: CustomStringConvertible, Sendable {
    var name: String
    var qoLen: Int, kvLen: Int, hq: Int, hkv: Int, d: Int
    var options: AttentionOptions
    var description: String { "\(name) qo\(qoLen) kv\(kvLen) h\(hq)/\(hkv) d\(d) \(options.layout)" }

    init(_ name: String, qo: Int, kv: Int, hq: Int = 4, hkv: Int = 4, d: Int = 16, _ options: AttentionOptions = .init()) {
        self.name = name
        (qoLen, kvLen, self.hq, self.hkv, self.d, self.options) = (qo, kv, hq, hkv, d, options)
    }
}

@Suite struct ReferenceAttentionTests {
    static let cases: [RefCase] = [
        RefCase("none", qo: 7, kv: 7),
        RefCase("causal", qo: 9, kv: 9, .init(causal: true)),
        RefCase("gqa1", qo: 5, kv: 11, hq: 8, hkv: 8, .init(causal: true)),
        RefCase("gqa4", qo: 5, kv: 11, hq: 8, hkv: 2, .init(causal: true)),
        RefCase("mqa8", qo: 5, kv: 11, hq: 8, hkv: 1, .init(causal: true)),
        RefCase("hnd", qo: 6, kv: 13, hq: 8, hkv: 2, .init(causal: true, layout: .hnd)),
        RefCase("hnd-none", qo: 6, kv: 13, hq: 4, hkv: 4, .init(layout: .hnd)),
        RefCase("rope", qo: 8, kv: 8, d: 16, .init(causal: true, positionEncoding: .ropeLlama())),
        RefCase("rope-scaled", qo: 3, kv: 20, hq: 4, hkv: 2, d: 32,
                .init(causal: true, positionEncoding: .ropeLlama(scale: 2, theta: 500))),
        RefCase("rope-hnd", qo: 4, kv: 9, hq: 6, hkv: 3, d: 8,
                .init(positionEncoding: .ropeLlama(scale: 1, theta: 1e4), layout: .hnd)),
        RefCase("alibi", qo: 6, kv: 10, hq: 6, hkv: 6, .init(causal: true, positionEncoding: .alibi)),
        RefCase("alibi-gqa", qo: 4, kv: 4, hq: 8, hkv: 2, .init(positionEncoding: .alibi)),
        RefCase("softcap", qo: 5, kv: 12, .init(causal: true, smScale: 2, logitsSoftCap: 1.5)),
        RefCase("softcap-alibi", qo: 5, kv: 12, .init(positionEncoding: .alibi, logitsSoftCap: 3)),
        RefCase("window", qo: 10, kv: 10, .init(causal: true, windowLeft: 3)),
        RefCase("window0", qo: 6, kv: 9, .init(causal: true, windowLeft: 0)),
        RefCase("window-noncausal", qo: 4, kv: 12, .init(windowLeft: 2)),
        RefCase("smscale", qo: 5, kv: 8, .init(smScale: 0.3)),
        RefCase("append", qo: 5, kv: 17, hq: 4, hkv: 2, .init(causal: true)),
        RefCase("qo>kv", qo: 8, kv: 5, .init(windowLeft: 1)),
        RefCase("everything", qo: 7, kv: 23, hq: 8, hkv: 2, d: 32,
                .init(causal: true, smScale: 0.2, positionEncoding: .ropeLlama(scale: 1.5, theta: 1e4),
                      logitsSoftCap: 4, windowLeft: 9, layout: .hnd)),
    ]

    @Test(arguments: cases)
    func prefillMatchesNaive(_ c: RefCase) throws {
        let (q, k, v) = inputs(c, seed: UInt64(c.description.utf8.count) &* 977)
        let got = try ReferenceAttention.prefill(
            q: q, k: layout(k, c), v: layout(v, c), qoLen: c.qoLen, kvLen: c.kvLen,
            numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, options: c.options)
        let want = naiveAttention(q: q, kNHD: k, vNHD: v, c)
        expectClose(got, want, c.description)
    }

    @Test(arguments: [
        RefCase("decode", qo: 1, kv: 19, hq: 8, hkv: 2),
        RefCase("decode-rope", qo: 1, kv: 30, hq: 4, hkv: 4, d: 32, .init(positionEncoding: .ropeLlama())),
        RefCase("decode-window", qo: 1, kv: 30, hq: 4, hkv: 1, .init(windowLeft: 5, layout: .hnd)),
        RefCase("decode-alibi-cap", qo: 1, kv: 12, hq: 5, hkv: 5, .init(positionEncoding: .alibi, logitsSoftCap: 2)),
        RefCase("decode-causal-flag", qo: 1, kv: 7, .init(causal: true)),
    ])
    func decodeMatchesNaive(_ c: RefCase) throws {
        let (q, k, v) = inputs(c, seed: 4242)
        let got = try ReferenceAttention.decode(
            q: q, k: layout(k, c), v: layout(v, c), kvLen: c.kvLen,
            numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, options: c.options)
        #expect(got.output.count == c.hq * c.d && got.lse.count == c.hq)
        expectClose(got, naiveAttention(q: q, kNHD: k, vNHD: v, c), c.description)
    }

    @Test func emptyKVGivesZeroAndNegativeInfinity() throws {
        let q = randomArray(count: 3 * 2 * 8, seed: 1)
        let r = try ReferenceAttention.prefill(
            q: q, k: [], v: [], qoLen: 3, kvLen: 0, numQOHeads: 2, numKVHeads: 1, headDim: 8, options: .init())
        #expect(r.output == Array(repeating: 0, count: 3 * 2 * 8))
        #expect(r.lse == Array(repeating: -.infinity, count: 6))
        let d = try ReferenceAttention.decode(
            q: Array(q.prefix(16)), k: [], v: [], kvLen: 0, numQOHeads: 2, numKVHeads: 2, headDim: 8,
            options: .init(causal: true, positionEncoding: .ropeLlama(), windowLeft: 4))
        #expect(d.output == Array(repeating: 0, count: 16))
        #expect(d.lse == [-.infinity, -.infinity])
        let none = try ReferenceAttention.prefill(
            q: [], k: [], v: [], qoLen: 0, kvLen: 0, numQOHeads: 2, numKVHeads: 1, headDim: 8, options: .init(causal: true))
        #expect(none.output.isEmpty && none.lse.isEmpty)
    }

    @Test func layoutsAgree() throws {
        let c = RefCase("layouts", qo: 5, kv: 14, hq: 6, hkv: 3, d: 16,
                        .init(causal: true, positionEncoding: .ropeLlama(), windowLeft: 6))
        let (q, k, v) = inputs(c, seed: 99)
        var hnd = c
        hnd.options.layout = .hnd
        let a = try ReferenceAttention.prefill(
            q: q, k: k, v: v, qoLen: c.qoLen, kvLen: c.kvLen, numQOHeads: c.hq, numKVHeads: c.hkv,
            headDim: c.d, options: c.options)
        let b = try ReferenceAttention.prefill(
            q: q, k: layout(k, hnd), v: layout(v, hnd), qoLen: c.qoLen, kvLen: c.kvLen,
            numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, options: hnd.options)
        #expect(a == b)
    }

    @Test func lseIsBase2() throws {
        // q = 0 makes every logit 0: lse = log2(n), output = mean of v.
        let n = 10, d = 4
        let v = randomArray(count: n * d, seed: 5)
        let r = try ReferenceAttention.decode(
            q: Array(repeating: 0, count: d), k: randomArray(count: n * d, seed: 6), v: v,
            kvLen: n, numQOHeads: 1, numKVHeads: 1, headDim: d, options: .init())
        #expect(abs(Double(r.lse[0]) - log2(Double(n))) < 1e-6)
        for i in 0..<d {
            let mean = (0..<n).map { Double(v[$0 * d + i]) }.reduce(0, +) / Double(n)
            #expect(abs(Double(r.output[i]) - mean) < 1e-6)
        }
    }

    @Test func errors() {
        func run(q: Int = 2 * 2 * 4, k: Int = 3 * 1 * 4, qo: Int = 2, kv: Int = 3, hq: Int = 2, hkv: Int = 1,
                 d: Int = 4, _ o: AttentionOptions = .init()) -> ReferenceError? {
            do {
                _ = try ReferenceAttention.prefill(
                    q: .init(repeating: 1, count: max(q, 0)), k: .init(repeating: 1, count: max(k, 0)),
                    v: .init(repeating: 1, count: max(k, 0)), qoLen: qo, kvLen: kv,
                    numQOHeads: hq, numKVHeads: hkv, headDim: d, options: o)
                return nil
            } catch { return error as? ReferenceError }
        }
        #expect(run() == nil)
        #expect(run(q: 10) == .countMismatch(tensor: "q", expected: 16, actual: 10))
        #expect(run(k: 11) == .countMismatch(tensor: "k", expected: 12, actual: 11))
        #expect(run(q: 0, hq: 3, hkv: 2) == .headsNotDivisible(numQOHeads: 3, numKVHeads: 2))
        #expect(run(hkv: 0) == .nonPositive(name: "numKVHeads", value: 0))
        #expect(run(d: 0) == .nonPositive(name: "headDim", value: 0))
        #expect(run(qo: -1) == .negativeLength(name: "qoLen", value: -1))
        #expect(run(q: 4 * 2 * 4, qo: 4, .init(causal: true))
                == .causalQueryLongerThanKV(qoLen: 4, kvLen: 3))
        #expect(run(q: 2 * 2 * 3, k: 3 * 3, d: 3, .init(positionEncoding: .ropeLlama())) == .oddHeadDimForRoPE(headDim: 3))
        #expect(run(.init(windowLeft: -2)) == .invalidWindow(windowLeft: -2))
        #expect(ReferenceError.headsNotDivisible(numQOHeads: 3, numKVHeads: 2).description.contains("multiple"))
    }

    @Test func mergeOfDisjointRangesEqualsWhole() throws {
        let (hq, d, n, split) = (4, 16, 21, 8)
        let q = randomArray(count: 3 * hq * d, seed: 10)
        let k = randomArray(count: n * hq * d, seed: 11), v = randomArray(count: n * hq * d, seed: 12)
        func run(_ range: Range<Int>) throws -> ReferenceAttention.Result {
            let slice = (range.lowerBound * hq * d)..<(range.upperBound * hq * d)
            return try ReferenceAttention.prefill(
                q: q, k: Array(k[slice]), v: Array(v[slice]), qoLen: 3, kvLen: range.count,
                numQOHeads: hq, numKVHeads: hq, headDim: d, options: .init())
        }
        let whole = try run(0..<n), left = try run(0..<split), right = try run(split..<n), none = try run(0..<0)
        for index in 0..<(3 * hq) {
            let a = left.state(at: index), b = right.state(at: index), w = whole.state(at: index)
            for m in [AttentionState.merge(a, b), .merge(b, a), .merge([a, none.state(at: index), b], headDim: d)] {
                #expect(abs(m.lse - w.lse) <= 1e-5 * abs(w.lse) + 1e-6)
                for i in 0..<d { #expect(abs(m.output[i] - w.output[i]) <= 1e-5 * abs(w.output[i]) + 1e-6) }
            }
            // The empty state is the identity.
            #expect(AttentionState.merge(a, .empty(headDim: d)) == a)
        }
    }

    @Test func emptyStatesMergeToZeroNotNaN() {
        let e = AttentionState.empty(headDim: 3)
        let m = AttentionState.merge(e, e)
        #expect(m.output == [0, 0, 0])
        #expect(m.lse == -.infinity)
        #expect(AttentionState.merge([], headDim: 2) == .empty(headDim: 2))
    }

    // MARK: helpers

    /// Naive Float64 attention straight from the definitions (K/V in NHD): per-key masks, RoPE by
    /// explicit rotation, plain `exp` without max subtraction, natural log then × log2(e).
    func naiveAttention(q: [Float], kNHD k: [Float], vNHD v: [Float], _ c: RefCase) -> (out: [Double], lse: [Double]) {
        let o = c.options
        let scale = Double(o.smScale ?? 1 / Float(c.d).squareRoot())
        func rope(_ x: [Double], _ pos: Int) -> [Double] {
            guard case let .ropeLlama(s, theta) = o.positionEncoding else { return x }
            let half = c.d / 2
            return (0..<c.d).map { dd in
                let i = dd % half
                let angle = Double(pos) * (1 / Double(s)) * pow(Double(theta), -2 * Double(i) / Double(c.d))
                let other = dd < half ? -x[dd + half] : x[dd - half]
                return x[dd] * cos(angle) + other * sin(angle)
            }
        }
        var out = [Double](repeating: 0, count: c.qoLen * c.hq * c.d)
        var lse = [Double](repeating: -.infinity, count: c.qoLen * c.hq)
        for i in 0..<c.qoLen {
            let qPos = i + c.kvLen - c.qoLen
            for h in 0..<c.hq {
                let kvh = h / (c.hq / c.hkv)
                let qv = rope((0..<c.d).map { Double(q[(i * c.hq + h) * c.d + $0]) }, qPos)
                var weights: [(j: Int, w: Double)] = []
                for j in 0..<c.kvLen {
                    if o.causal && j > i + c.kvLen - c.qoLen { continue }
                    if o.windowLeft >= 0 && j < i + c.kvLen - c.qoLen - o.windowLeft { continue }
                    let kv = rope((0..<c.d).map { Double(k[(j * c.hkv + kvh) * c.d + $0]) }, j)
                    var s = scale * zip(qv, kv).map(*).reduce(0, +)
                    if o.logitsSoftCap > 0 { s = Double(o.logitsSoftCap) * tanh(s / Double(o.logitsSoftCap)) }
                    if o.positionEncoding == .alibi { s += alibiSlope(head: h, numHeads: c.hq) * Double(j - qPos) }
                    weights.append((j, exp(s)))
                }
                guard !weights.isEmpty else { continue }
                let sum = weights.map(\.w).reduce(0, +)
                lse[i * c.hq + h] = log(sum) * (1 / log(2.0))
                for (j, w) in weights {
                    for dd in 0..<c.d { out[(i * c.hq + h) * c.d + dd] += w / sum * Double(v[(j * c.hkv + kvh) * c.d + dd]) }
                }
            }
        }
        return (out, lse)
    }

    func expectClose(_ got: ReferenceAttention.Result, _ want: (out: [Double], lse: [Double]), _ what: String) {
        #expect(got.output.count == want.out.count && got.lse.count == want.lse.count, "\(what): sizes")
        guard got.output.count == want.out.count, got.lse.count == want.lse.count else { return }
        func close(_ a: Float, _ b: Double) -> Bool {
            a.isNaN == false && (Double(a) == b || abs(Double(a) - b) <= 1e-5 * abs(b) + 1e-7)
        }
        let badOut = (0..<want.out.count).filter { !close(got.output[$0], want.out[$0]) }
        let badLSE = (0..<want.lse.count).filter { !close(got.lse[$0], want.lse[$0]) }
        #expect(badOut.isEmpty, "\(what): output differs at \(badOut.prefix(5).map { ($0, got.output[$0], want.out[$0]) })")
        #expect(badLSE.isEmpty, "\(what): lse differs at \(badLSE.prefix(5).map { ($0, got.lse[$0], want.lse[$0]) })")
    }

    func inputs(_ c: RefCase, seed: UInt64) -> (q: [Float], k: [Float], v: [Float]) {
        (randomArray(count: c.qoLen * c.hq * c.d, seed: seed),
         randomArray(count: c.kvLen * c.hkv * c.d, seed: seed &+ 1),
         randomArray(count: c.kvLen * c.hkv * c.d, seed: seed &+ 2))
    }

    /// NHD `[kvLen, Hkv, D]` → the case's layout.
    func layout(_ x: [Float], _ c: RefCase) -> [Float] {
        guard c.options.layout == .hnd else { return x }
        var y = x
        for j in 0..<c.kvLen {
            for h in 0..<c.hkv {
                for dd in 0..<c.d { y[(h * c.kvLen + j) * c.d + dd] = x[(j * c.hkv + h) * c.d + dd] }
            }
        }
        return y
    }

    /// Values in ±[0.1, 1): never zero.
    func randomArray(count: Int, seed: UInt64) -> [Float] {
        var rng = TestRNG(seed: seed)
        return (0..<count).map { _ in
            let mag = Float(0.1 + 0.9 * rng.unit())
            return rng.next() & 1 == 0 ? mag : -mag
        }
    }
}

/// SplitMix64, local to these tests.
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// `rotatedRounding` (what the tensor-core kernels do with RoPE'd q/k): Float32 rounding is the
/// exact rotation up to Float32; bf16 rounding equals attention without RoPE on inputs that were
/// rotated and rounded by hand; without RoPE the option changes nothing.
@Suite struct ReferenceRotatedRoundingTests {
    @Test(arguments: [KVLayout.nhd, .hnd])
    func roundingModelsRotateThenStore(layout: KVLayout) throws {
        let (qo, kv, hq, hkv, d) = (5, 9, 4, 2, 16)
        var rng = TestRNG(seed: 5)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 4 - 2) } }
        let q = randn(qo * hq * d), k = randn(kv * hkv * d), v = randn(kv * hkv * d)
        let rope = AttentionOptions(causal: true, positionEncoding: .ropeLlama(scale: 1, theta: 1e4), layout: layout)
        let exact = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d, options: rope)
        let f32 = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                                 options: rope, rotatedRounding: .f32)
        for (a, b) in zip(exact.output, f32.output) { #expect(abs(a - b) <= 1e-5) }
        // By hand: rotate in Double, round to bf16, attend without RoPE.
        let half = d / 2
        func rotate(_ x: [Float], pos: (Int) -> Int) -> [Float] {
            var out = x
            for r in 0..<(x.count / d) {
                for i in 0..<half {
                    let angle = Double(pos(r)) * pow(1e4, -2.0 * Double(i) / Double(d))
                    let (x1, x2) = (Double(x[r * d + i]), Double(x[r * d + i + half]))
                    out[r * d + i] = DType.bf16.roundTrip(Float(x1 * cos(angle) - x2 * sin(angle)))
                    out[r * d + i + half] = DType.bf16.roundTrip(Float(x2 * cos(angle) + x1 * sin(angle)))
                }
            }
            return out
        }
        let qr = rotate(q) { r in kv - qo + r / hq }
        let kr = rotate(k) { r in layout == .nhd ? r / hkv : r % kv }
        var plain = rope
        plain.positionEncoding = .none
        let byHand = try ReferenceAttention.prefill(q: qr, k: kr, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d, options: plain)
        let bf16 = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                                  options: rope, rotatedRounding: .bf16)
        #expect(bf16 == byHand)
        #expect(bf16.output != exact.output)  // the rounding is visible
        // Without RoPE the option is inert.
        let none = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                                  options: plain, rotatedRounding: .bf16)
        #expect(none == (try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d, options: plain)))
    }
}
