import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// `quantize` / `dequantize`: every code round-trips, ties go to even, values saturate, NaN stays NaN,
/// and the code is that of the real quotient `x / scale`, checked against a search over all codes.
@Suite struct FP8QuantizationTests {
    static let formats: [DType] = [.e4m3, .e5m2]

    /// The oracle: the finite code nearest to `x / scale`, by comparing `|x − v·scale|` in Double over
    /// every finite code (exact for the two nearest candidates), ties to the even code; beyond the
    /// largest value this picks the largest (saturation); ±inf saturates; NaN gives nil.
    static func nearestCode(_ x: Float, scale: Float, _ dtype: DType) -> UInt8? {
        if x.isNaN { return nil }
        let sign: UInt8 = x.sign == .minus ? 0x80 : 0
        let finite = (UInt8(0)...0x7F).filter { dtype.value(bits: UInt32($0)).isFinite }
        if x.isInfinite { return sign | finite.max(by: { dtype.value(bits: UInt32($0)) < dtype.value(bits: UInt32($1)) })! }
        let target = abs(Double(x)), s = Double(scale)
        var best: UInt8 = 0, bestDist = Double.infinity
        for c in finite {
            let d = abs(target - Double(dtype.value(bits: UInt32(c))) * s)
            if d < bestDist || (d == bestDist && c & 1 == 0) { (best, bestDist) = (c, d) }
        }
        return sign | best
    }

    static let scales: [Float] = [1, 0.25, 4, 0.37, 3.1, 1.0 / 448, 1e-3, 250]

    @Test(arguments: formats)
    func everyCodeRoundTrips(dtype: DType) throws {
        let codes = (0...255).map(UInt8.init)
        for scale in Self.scales {
            let values = try dequantize(codes, from: dtype, scale: scale)
            let back = try quantize(values, to: dtype, scale: scale)
            for c in codes {
                let v = dtype.value(bits: UInt32(c))
                let got = back[Int(c)]
                if v.isNaN {
                    #expect(dtype.value(bits: UInt32(got)).isNaN, "\(dtype) code \(c) scale \(scale): NaN must stay NaN, got \(got)")
                } else if v.isInfinite {
                    // e5m2's ±inf codes come back as ±max (saturation).
                    #expect(got == (c & 0x80) | 0x7B, "\(dtype) code \(c) scale \(scale)")
                } else {
                    #expect(got == c, "\(dtype) code \(c) (\(v)) scale \(scale): \(values[Int(c)]) → \(got)")
                    #expect(values[Int(c)] == v * scale, "dequantize is value · scale")
                }
            }
        }
    }

    @Test(arguments: formats)
    func matchesNearestCodeSearch(dtype: DType) throws {
        var rng = TestRNG(seed: dtype == .e4m3 ? 3 : 4)
        var xs: [Float] = [0, -0.0, .infinity, -.infinity, .nan]
        for _ in 0..<3000 {
            // Magnitudes from far below the smallest subnormal to far above the max.
            let mag = Float(pow(2.0, rng.unit() * 44 - 24))
            xs.append(rng.next() & 1 == 0 ? mag : -mag)
        }
        for scale in Self.scales + [Float(rng.unit() * 10 + 0.01), Float(rng.unit())] {
            let got = try quantize(xs, to: dtype, scale: scale)
            for (x, code) in zip(xs, got) {
                if let want = Self.nearestCode(x, scale: scale, dtype) {
                    #expect(code == want, "\(dtype) x \(x) scale \(scale): got \(code), nearest \(want)")
                } else {
                    #expect(dtype.value(bits: UInt32(code)).isNaN, "NaN → \(code)")
                }
            }
        }
    }

    /// A `Float` division can land exactly on an FP8 midpoint and round a second time; `quantize`
    /// rounds the real quotient once. Inputs `x = Float(midpoint · s)` make the Float quotient the
    /// midpoint while the real one is off it by `x`'s rounding.
    @Test(arguments: formats)
    func roundsTheRealQuotientOnce(dtype: DType) throws {
        var rng = TestRNG(seed: 77)
        // Midpoints between neighbours in [1, 2): odd multiples of 1/16 (e4m3) or 1/8 (e5m2).
        let half: Double = dtype == .e4m3 ? 1.0 / 16 : 1.0 / 8
        let steps: [Double] = [1, 3, 5, 7].map { $0 * half }
        var doubleRoundingCases = 0
        for _ in 0..<4000 {
            let midpoint = 1 + steps[Int(rng.next() % UInt64(steps.count))]
            let scale = Float(rng.unit() * 3 + 0.1)
            let x = Float(midpoint * Double(scale))
            let want = Self.nearestCode(x, scale: scale, dtype)!
            let got = try quantize([x], to: dtype, scale: scale)[0]
            #expect(got == want, "x \(x) scale \(scale)")
            if UInt8(dtype.bits(x / scale)) != want { doubleRoundingCases += 1 }
        }
        // The construction does exercise double rounding (otherwise this test proves nothing).
        #expect(doubleRoundingCases > 100)
    }

    @Test func tiesToEvenAndSaturation() throws {
        func code(_ x: Float, _ d: DType, scale: Float = 1) throws -> UInt8 { try quantize([x], to: d, scale: scale)[0] }
        for scale: Float in [1, 0.125, 8] {
            // e4m3: 1.0 is 0 0111 000 (0x38), 1.125 0x39, 1.25 0x3A. 1.0625 is halfway 1.0 / 1.125 → even 1.0;
            // 1.1875 is halfway 1.125 / 1.25 → even 1.25.
            #expect(try code(1.0625 * scale, .e4m3, scale: scale) == 0x38)
            #expect(try code(1.1875 * scale, .e4m3, scale: scale) == 0x3A)
            #expect(try code(-1.1875 * scale, .e4m3, scale: scale) == 0xBA)
            // Subnormals are multiples of 2^-9: 2^-10 → 0 (even), 3·2^-10 → 2·2^-9 (0x02).
            #expect(try code(0x1p-10 * scale, .e4m3, scale: scale) == 0x00)
            #expect(try code(3 * 0x1p-10 * scale, .e4m3, scale: scale) == 0x02)
            // e5m2: 1.0 = 0 01111 00 (0x3C), 1.25 0x3D, 1.5 0x3E; 1.125 → 1.0, 1.375 → 1.5.
            #expect(try code(1.125 * scale, .e5m2, scale: scale) == 0x3C)
            #expect(try code(1.375 * scale, .e5m2, scale: scale) == 0x3E)
            // Saturation: e4m3 max 448 = 0 1111 110 (0x7E); e5m2 max 57344 = 0 11110 11 (0x7B).
            for x: Float in [448, 449, 464, 465, 1e6, .infinity] {
                #expect(try code(x * scale, .e4m3, scale: scale) == 0x7E, "\(x)")
                #expect(try code(-x * scale, .e4m3, scale: scale) == 0xFE, "\(-x)")
            }
            for x: Float in [57344, 60000, 61440, 1e9, .infinity] {
                #expect(try code(x * scale, .e5m2, scale: scale) == 0x7B, "\(x)")
                #expect(try code(-x * scale, .e5m2, scale: scale) == 0xFB, "\(-x)")
            }
            for d in Self.formats { #expect(d.value(bits: UInt32(try code(.nan, d, scale: scale))).isNaN) }
        }
        // The scale divides: 500 with scale 2 is 250 (e4m3 256 is 0 1111 000 = 0x78; 250 rounds to 256),
        // with scale 0.5 it is 1000 (saturates).
        #expect(try code(500, .e4m3, scale: 2) == 0x78)
        #expect(try code(500, .e4m3, scale: 0.5) == 0x7E)
        // dequantize multiplies: 0x38 (1.0) with scale 0.37 is 0.37; 0x7E (448) with scale 2 is 896.
        #expect(try dequantize([0x38, 0x7E], from: .e4m3, scale: 0.37) == [0.37, 448 * 0.37])
        #expect(try dequantize([0x3C, 0x7B], from: .e5m2, scale: 2) == [2, 114688])
    }

    @Test func tensors() throws {
        var rng = TestRNG(seed: 9)
        let values = (0..<24).map { _ in Float(rng.unit() * 8 - 4) }
        let t = Tensor.host(values, shape: [2, 3, 4], dtype: .f32)
        for d in Self.formats {
            let q = try quantize(t, to: d, scale: 0.03)
            #expect(q.shape == [2, 3, 4] && q.dtype == d && !q.isOnDevice)
            #expect(try q.contiguousBytesChecked() == (try quantize(values, to: d, scale: 0.03)))
            let back = try dequantize(q, scale: 0.03)
            #expect(back.dtype == .f32 && back.shape == [2, 3, 4])
            #expect(try back.toFloats() == (try dequantize(try q.contiguousBytesChecked(), from: d, scale: 0.03)))
            // The round trip is within half a step of the format (relative 2^-4 for e4m3, 2^-3 for e5m2).
            let tol: Float = d == .e4m3 ? 1.0 / 16 : 1.0 / 8
            for (a, b) in zip(values, try back.toFloats()) { #expect(abs(a - b) <= tol * abs(a) + 0.03 * 0x1p-9, "\(a) → \(b)") }
        }
        // An f16 tensor is read as its stored values.
        let h = Tensor.host([1.0625, 3], shape: [2], dtype: .f16)
        #expect(try quantize(h, to: .e4m3).contiguousBytesChecked() == [0x38, 0x44])
    }

    @Test func errors() {
        for bad: Float in [0, -1, .infinity, .nan] {
            #expect(throws: FlashInferError.option(name: "scale", value: "\(bad)", rule: "must be finite and > 0")) {
                try quantize([1], to: .e4m3, scale: bad)
            }
            #expect(throws: FlashInferError.self) { try dequantize([1], from: .e5m2, scale: bad) }
        }
        #expect(throws: FlashInferError.dtype(tensor: "quantize(to:)", expected: "e4m3 or e5m2", got: .f16)) {
            try quantize([1], to: .f16)
        }
        #expect(throws: FlashInferError.dtype(tensor: "dequantize", expected: "e4m3 or e5m2", got: .bf16)) {
            try dequantize(Tensor.host([1], shape: [1], dtype: .bf16))
        }
    }
}
