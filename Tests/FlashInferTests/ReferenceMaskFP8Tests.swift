import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// The CPU reference's custom masks and FP8 K/V scales against naive Float64 formulas.
@Suite struct ReferenceMaskFP8Tests {
    struct MaskCase: CustomStringConvertible, Sendable {
        var name: String
        var qo: Int, kv: Int, hq: Int = 4, hkv: Int = 2, d: Int = 16
        var options = AttentionOptions()
        var density = 0.5
        var description: String { "\(name) qo\(qo) kv\(kv) h\(hq)/\(hkv) d\(d)" }
    }

    static let maskCases: [MaskCase] = [
        MaskCase(name: "plain", qo: 7, kv: 11),
        MaskCase(name: "dense", qo: 5, kv: 9, density: 0.95),
        MaskCase(name: "sparse", qo: 9, kv: 13, density: 0.1),
        MaskCase(name: "causal-flag-ignored", qo: 6, kv: 10, options: .init(causal: true)),
        MaskCase(name: "causal-qo>kv", qo: 9, kv: 4, options: .init(causal: true)),
        MaskCase(name: "window", qo: 8, kv: 12, options: .init(windowLeft: 3)),
        MaskCase(name: "softcap-smscale", qo: 5, kv: 8, hq: 6, hkv: 3, options: .init(smScale: 0.7, logitsSoftCap: 2)),
        MaskCase(name: "mqa-hnd", qo: 4, kv: 15, hq: 8, hkv: 1, options: .init(layout: .hnd)),
        MaskCase(name: "scales", qo: 6, kv: 9, options: .init(kScale: 0.6, vScale: 2.5)),
    ]

    /// `customMask` keeps exactly the keys it marks (and, with a window, those the window keeps too);
    /// causal is ignored; bools and packed give identical results, whatever the padding bits are.
    @Test(arguments: maskCases)
    func customMaskMatchesNaive(_ c: MaskCase) throws {
        var rng = TestRNG(seed: stableHashForTests(c.name))
        let q = sparseTestArray(c.qo * c.hq * c.d, &rng)
        let k = sparseTestArray(c.kv * c.hkv * c.d, &rng), v = sparseTestArray(c.kv * c.hkv * c.d, &rng)
        var mask = (0..<(c.qo * c.kv)).map { _ in rng.unit() < c.density }
        // Row 0 keeps nothing (a fully masked row); the last row keeps only its last key.
        for j in 0..<c.kv { mask[j] = false; mask[(c.qo - 1) * c.kv + j] = j == c.kv - 1 }
        let kl = c.options.layout == .hnd ? toHND(k, n: c.kv, h: c.hkv, d: c.d) : k
        let vl = c.options.layout == .hnd ? toHND(v, n: c.kv, h: c.hkv, d: c.d) : v
        func run(_ m: CustomMask) throws -> ReferenceAttention.Result {
            try ReferenceAttention.prefill(q: q, k: kl, v: vl, qoLen: c.qo, kvLen: c.kv, numQOHeads: c.hq, numKVHeads: c.hkv,
                                           headDim: c.d, options: c.options, customMask: m)
        }
        let got = try run(.bools(mask))
        let o = c.options
        let naive = NaiveAttention(qoLen: c.qo, kvLen: c.kv, hq: c.hq, hkv: c.hkv, d: c.d,
                                   smScale: Double(o.smScale ?? 1 / Float(c.d).squareRoot()), kScale: Double(o.kScale),
                                   vScale: Double(o.vScale), softCap: Double(o.logitsSoftCap))
        let want = naive.run(q: q, k: k, v: v) { i, j in
            let qPos = i + c.kv - c.qo
            return mask[i * c.kv + j] && (o.windowLeft < 0 || j >= qPos - o.windowLeft)
        }
        #expect(mismatches(got.output, want.out).isEmpty, "\(c): output \(mismatches(got.output, want.out))")
        #expect(mismatches(got.lse, want.lse).isEmpty, "\(c): lse \(mismatches(got.lse, want.lse))")
        // The fully masked row: exactly 0 and −inf, never NaN.
        #expect(got.output[0..<(c.hq * c.d)].allSatisfy { $0 == 0 })
        #expect(got.lse[0..<c.hq].allSatisfy { $0 == -.infinity })
        // Packed (little-endian) is the same mask; padding bits set to 1 change nothing.
        var packed = packbits(mask, bitOrder: .little)
        #expect(try run(.packed(packed)) == got)
        let used = c.qo * c.kv
        if used % 8 != 0 { packed[packed.count - 1] |= ~UInt8((1 << (used % 8)) - 1) }
        #expect(try run(.packed(packed)) == got)
        // The mask matters: keeping every key is plain (non-causal) attention, which differs.
        var noCausal = c.options
        noCausal.causal = false
        let all = try ReferenceAttention.prefill(q: q, k: kl, v: vl, qoLen: c.qo, kvLen: c.kv, numQOHeads: c.hq, numKVHeads: c.hkv,
                                                 headDim: c.d, options: noCausal)
        #expect(try run(.bools(Array(repeating: true, count: used))) == all)
        #expect(all.output != got.output)
    }

    /// Rows emptied by the mask and the window together, and an all-false mask.
    @Test func fullyMaskedRowsAreZeroAndNegativeInfinity() throws {
        let (qo, kv, h, d) = (4, 6, 2, 8)
        var rng = TestRNG(seed: 5)
        let q = sparseTestArray(qo * h * d, &rng), k = sparseTestArray(kv * h * d, &rng), v = sparseTestArray(kv * h * d, &rng)
        // Each row keeps only key 0; with window 1 rows whose window starts past key 0 see nothing.
        let mask = (0..<(qo * kv)).map { $0 % kv == 0 }
        let r = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: h, numKVHeads: h, headDim: d,
                                               options: .init(windowLeft: 1), customMask: .bools(mask))
        // Query i sits at position i + 2; window 1 keeps keys ≥ i + 1: key 0 is outside for every row.
        #expect(r.output.allSatisfy { $0 == 0 })
        #expect(r.lse.allSatisfy { $0 == -.infinity })
        let none = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: h, numKVHeads: h, headDim: d,
                                                  options: .init(causal: true), customMask: .packed([0, 0, 0]))
        #expect(none.output.allSatisfy { $0 == 0 } && none.lse.allSatisfy { $0 == -.infinity })
        // Without the window, every row sees key 0 alone: output = v[0] of its kv head, LSE = logit / ln 2.
        let one = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: h, numKVHeads: h, headDim: d,
                                                 options: .init(), customMask: .bools(mask))
        for i in 0..<qo {
            for hh in 0..<h {
                #expect(Array(one.output[((i * h + hh) * d)..<((i * h + hh + 1) * d)]) == Array(v[(hh * d)..<((hh + 1) * d)]))
                let dot = (0..<d).map { Double(q[(i * h + hh) * d + $0]) * Double(k[hh * d + $0]) }.reduce(0, +)
                #expect(abs(Double(one.lse[i * h + hh]) - dot / sqrt(Double(d)) / log(2.0)) < 1e-6)
            }
        }
    }

    /// `kScale` multiplies the logit scale (before the soft cap), `vScale` the output; the LSE is
    /// that of the scaled logits. Also through decode, and RoPE / ALiBi keep working with scales.
    @Test(arguments: [(Float(0.5), Float(2)), (3, 0.25), (1, 7), (0.01, 1)])
    func scalesMatchNaive(kScale: Float, vScale: Float) throws {
        let (qo, kv, hq, hkv, d) = (5, 12, 4, 2, 16)
        var rng = TestRNG(seed: UInt64(kScale * 100 + vScale))
        let q = sparseTestArray(qo * hq * d, &rng), k = sparseTestArray(kv * hkv * d, &rng), v = sparseTestArray(kv * hkv * d, &rng)
        for cap: Float in [0, 1.5] {
            let o = AttentionOptions(causal: true, logitsSoftCap: cap, kScale: kScale, vScale: vScale)
            let got = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d, options: o)
            let naive = NaiveAttention(qoLen: qo, kvLen: kv, hq: hq, hkv: hkv, d: d, smScale: 1 / sqrt(Double(d)),
                                       kScale: Double(kScale), vScale: Double(vScale), softCap: Double(cap))
            let want = naive.run(q: q, k: k, v: v) { i, j in j <= i + kv - qo }
            #expect(mismatches(got.output, want.out).isEmpty, "cap \(cap): \(mismatches(got.output, want.out))")
            #expect(mismatches(got.lse, want.lse).isEmpty, "cap \(cap): \(mismatches(got.lse, want.lse))")
            // Scaling is linear where it should be: vScale alone scales the output, leaves the LSE.
            var unitV = o
            unitV.vScale = 1
            let u = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d, options: unitV)
            #expect(u.lse == got.lse)
            for (a, b) in zip(u.output, got.output) { #expect(abs(a * vScale - b) <= 1e-6 * abs(b) + 1e-7) }
        }
        // Decode with scales: the last query row of a non-causal prefill.
        let dq = Array(q.suffix(hq * d))
        let dec = try ReferenceAttention.decode(q: dq, k: k, v: v, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                                options: .init(kScale: kScale, vScale: vScale))
        let naive = NaiveAttention(qoLen: 1, kvLen: kv, hq: hq, hkv: hkv, d: d, smScale: 1 / sqrt(Double(d)),
                                   kScale: Double(kScale), vScale: Double(vScale))
        let want = naive.run(q: dq, k: k, v: v) { _, _ in true }
        #expect(mismatches(dec.output, want.out).isEmpty && mismatches(dec.lse, want.lse).isEmpty)
        // With RoPE and ALiBi, kScale only rescales sm_scale: identical to smScale · kScale without it.
        for pe in [PositionEncoding.ropeLlama(), .alibi] {
            let scaled = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                                        options: .init(causal: true, smScale: 0.25, positionEncoding: pe, kScale: kScale))
            let folded = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                                        options: .init(causal: true, smScale: 0.25 * kScale, positionEncoding: pe))
            #expect(mismatches(scaled.output, folded.output.map(Double.init), rtol: 1e-6).isEmpty, "\(pe.name)")
            #expect(mismatches(scaled.lse, folded.lse.map(Double.init), rtol: 1e-6).isEmpty, "\(pe.name)")
        }
    }

    /// FP8 K/V as stored (e4m3 / e5m2 codes decoded exactly) with their scales equal attention over the
    /// dequantized K/V; and they differ from attention over the unquantized K/V (the rounding is real).
    @Test(arguments: [DType.e4m3, .e5m2])
    func fp8KVReadExactlyWithScales(dtype: DType) throws {
        let (qo, kv, hq, hkv, d) = (4, 10, 4, 4, 16)
        var rng = TestRNG(seed: dtype == .e4m3 ? 31 : 32)
        let q = sparseTestArray(qo * hq * d, &rng)
        let k = sparseTestArray(kv * hkv * d, &rng).map { $0 * 3 }, v = sparseTestArray(kv * hkv * d, &rng).map { $0 * 5 }
        let (ks, vs): (Float, Float) = (3.0 / 448 * 1.7, 5.0 / 448 * 1.3)
        let kCodes = try quantize(k, to: dtype, scale: ks), vCodes = try quantize(v, to: dtype, scale: vs)
        let kStored = dtype.decode(kCodes), vStored = dtype.decode(vCodes)  // exact fp8 values
        let o = AttentionOptions(causal: true, kScale: ks, vScale: vs)
        let got = try ReferenceAttention.prefill(q: q, k: kStored, v: vStored, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv,
                                                 headDim: d, options: o)
        let kDeq = try dequantize(kCodes, from: dtype, scale: ks), vDeq = try dequantize(vCodes, from: dtype, scale: vs)
        let naive = NaiveAttention(qoLen: qo, kvLen: kv, hq: hq, hkv: hkv, d: d, smScale: 1 / sqrt(Double(d)))
        let want = naive.run(q: q, k: kDeq, v: vDeq) { i, j in j <= i + kv - qo }
        #expect(mismatches(got.output, want.out).isEmpty, "\(mismatches(got.output, want.out))")
        #expect(mismatches(got.lse, want.lse).isEmpty, "\(mismatches(got.lse, want.lse))")
        let exact = naive.run(q: q, k: k, v: v) { i, j in j <= i + kv - qo }
        #expect(!mismatches(got.output, exact.out).isEmpty)
        // Every stored value is exactly an fp8 value (re-quantizing with scale 1 gives the same codes).
        #expect(try quantize(kStored, to: dtype) == kCodes)
    }

    @Test func errors() {
        let (qo, kv, h, d) = (3, 5, 1, 4)
        let q = [Float](repeating: 0.5, count: qo * h * d), k = [Float](repeating: 0.5, count: kv * h * d)
        func run(_ o: AttentionOptions = .init(), mask: CustomMask? = nil) -> ReferenceError? {
            do {
                _ = try ReferenceAttention.prefill(q: q, k: k, v: k, qoLen: qo, kvLen: kv, numQOHeads: h, numKVHeads: h, headDim: d,
                                                   options: o, customMask: mask)
                return nil
            } catch { return error as? ReferenceError }
        }
        #expect(run(mask: .bools(Array(repeating: true, count: 15))) == nil)
        #expect(run(mask: .packed([0xFF, 0x7F])) == nil)
        #expect(run(mask: .bools(Array(repeating: true, count: 14))) == .maskCountMismatch(form: "bools", expected: 15, actual: 14))
        #expect(run(mask: .packed([0xFF])) == .maskCountMismatch(form: "packed", expected: 2, actual: 1))
        #expect(run(mask: .packed([0xFF, 0, 0])) == .maskCountMismatch(form: "packed", expected: 2, actual: 3))
        for bad: Float in [0, -2, .infinity, .nan] {
            #expect(run(.init(kScale: bad)).map { "\($0)" } == "kScale must be finite and > 0, got \(bad)")
            #expect(run(.init(vScale: bad)).map { "\($0)" } == "vScale must be finite and > 0, got \(bad)")
        }
        #expect(ReferenceError.maskCountMismatch(form: "packed", expected: 2, actual: 1).description.contains("bytes"))
    }
}

/// FNV-1a, for per-case seeds.
func stableHashForTests(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
