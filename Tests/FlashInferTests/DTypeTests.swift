import Testing

@testable import FlashInfer

@Suite struct DTypeTests {
    typealias FC = FloatConversion

    // MARK: f16

    @Test func f16KnownValues() {
        #expect(FC.f16Bits(1.0) == 0x3C00)
        #expect(FC.f16Bits(-2.0) == 0xC000)
        #expect(FC.f16Bits(0.0) == 0x0000)
        #expect(FC.f16Bits(-0.0) == 0x8000)
        #expect(FC.f16Bits(65504) == 0x7BFF)  // max finite
        #expect(FC.f16Bits(65519) == 0x7BFF)  // just below the tie
        #expect(FC.f16Bits(65520) == 0x7C00)  // tie between 65504 (odd) and 65536 (even) → inf
        #expect(FC.f16Bits(1e6) == 0x7C00)
        #expect(FC.f16Bits(-1e6) == 0xFC00)
        #expect(FC.f16Bits(.infinity) == 0x7C00)
        #expect(FC.f16Bits(-.infinity) == 0xFC00)
        #expect(FC.f16Bits(0x1p-14) == 0x0400)  // smallest normal
        #expect(FC.f16Bits(0x1p-24) == 0x0001)  // smallest subnormal
        #expect(FC.f16Bits(0x1p-25) == 0x0000)  // half a quantum: tie → even (0)
        #expect(FC.f16Bits(3 * 0x1p-26) == 0x0001)  // 0.75 quantum → 1
        #expect(FC.f16Bits(3 * 0x1p-25) == 0x0002)  // 1.5 quanta: tie → even (2)
        #expect(FC.f16Bits(5 * 0x1p-25) == 0x0002)  // 2.5 quanta: tie → even (2)
        #expect(FC.f16Bits(1 + 0x1p-11) == 0x3C00)  // half ulp above 1: tie → even
        #expect(FC.f16Bits(1 + 3 * 0x1p-11) == 0x3C02)  // 1.5 ulp: tie → even (1 + 2^-9)
        #expect(FC.f16Bits(1 + 0x1p-11 + 0x1p-20) == 0x3C01)  // just above the tie
        #expect(FC.f16Bits(0x1p-14 - 0x1p-25) == 0x0400)  // subnormal rounding carries into the smallest normal
        #expect(FC.float(fromF16: 0x7BFF) == 65504)
        #expect(FC.float(fromF16: 0x0001) == 0x1p-24)
        #expect(FC.float(fromF16: 0x3555) == 0.333251953125)
        #expect(FC.float(fromF16: 0xFC00) == -.infinity)
    }

    @Test func f16NaN() {
        let bits = FC.f16Bits(.nan)
        #expect(bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0)
        #expect(bits & 0x0200 != 0)  // quiet
        #expect(FC.f16Bits(-.nan) & 0x8000 != 0)
        #expect(FC.float(fromF16: 0x7E00).isNaN)
        #expect(FC.float(fromF16: 0x7C01).isNaN)
    }

    @Test func f16RoundTripEveryPattern() {
        for b in 0...UInt16.max {
            let x = FC.float(fromF16: b)
            if x.isNaN { continue }
            #expect(FC.f16Bits(x) == b, "pattern \(b)")
        }
    }

    #if !(os(macOS) && arch(x86_64))
    /// Cross-check against the platform's `Float16` (RNE in hardware or compiler-rt).
    @Test func f16MatchesSwiftFloat16() {
        var rng = TestRNG(seed: 7)
        for _ in 0..<200_000 {
            // Random sign and mantissa; biased f32 exponent in 95..<150 spans f16's range and beyond.
            let raw = rng.next()
            let sign = UInt32(raw & 1) << 31
            let exponent = UInt32(95 + (raw >> 1) % 55) << 23
            let x = Float(bitPattern: sign | exponent | UInt32(truncatingIfNeeded: raw >> 32) & 0x7F_FFFF)
            #expect(FC.f16Bits(x) == Float16(x).bitPattern, "x = \(x)")
        }
        for b in 0...UInt16.max where !Float16(bitPattern: b).isNaN {
            #expect(FC.float(fromF16: b) == Float(Float16(bitPattern: b)))
        }
    }
    #endif

    // MARK: bf16

    @Test func bf16KnownValues() {
        #expect(FC.bf16Bits(1.0) == 0x3F80)
        #expect(FC.bf16Bits(-2.0) == 0xC000)
        #expect(FC.bf16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie → even
        #expect(FC.bf16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie → even
        #expect(FC.bf16Bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(FC.bf16Bits(Float(bitPattern: 0x7F7F_FFFF)) == 0x7F80)  // rounds past max → inf
        #expect(FC.bf16Bits(.infinity) == 0x7F80)
        #expect(FC.bf16Bits(-.infinity) == 0xFF80)
        #expect(FC.bf16Bits(Float(bitPattern: 0x0000_8000)) == 0x0000)  // subnormal tie → even
        #expect(FC.bf16Bits(Float(bitPattern: 0x0001_8000)) == 0x0002)
        let nan = FC.bf16Bits(.nan)
        #expect(nan & 0x7F80 == 0x7F80 && nan & 0x0040 != 0)
        // A signalling NaN whose payload sits in the low bits must stay NaN, not become inf.
        let snan = FC.bf16Bits(Float(bitPattern: 0x7F80_0001))
        #expect(FC.float(fromBF16: snan).isNaN)
        #expect(FC.float(fromBF16: 0x3F80) == 1.0)
        #expect(FC.float(fromBF16: 0x7F80) == .infinity)
    }

    @Test func bf16RoundTripEveryPattern() {
        for b in 0...UInt16.max {
            let x = FC.float(fromBF16: b)
            if x.isNaN { continue }
            #expect(FC.bf16Bits(x) == b, "pattern \(b)")
        }
    }

    // MARK: fp8

    @Test func e4m3KnownValues() {
        #expect(FC.e4m3Bits(1.0) == 0x38)
        #expect(FC.e4m3Bits(-2.0) == 0xC0)
        #expect(FC.e4m3Bits(448) == 0x7E)
        #expect(FC.e4m3Bits(464) == 0x7E)  // tie between 448 and 480 (not representable): even → 448
        #expect(FC.e4m3Bits(480) == 0x7E)  // saturates
        #expect(FC.e4m3Bits(1e6) == 0x7E)
        #expect(FC.e4m3Bits(-1e6) == 0xFE)
        #expect(FC.e4m3Bits(.infinity) == 0x7E)
        #expect(FC.e4m3Bits(-.infinity) == 0xFE)
        #expect(FC.e4m3Bits(.nan) == 0x7F)
        #expect(FC.e4m3Bits(0x1p-9) == 0x01)
        #expect(FC.e4m3Bits(0x1p-10) == 0x00)  // tie → even
        #expect(FC.e4m3Bits(3 * 0x1p-10) == 0x02)  // tie → even
        #expect(FC.e4m3Bits(0.0) == 0x00)
        #expect(FC.e4m3Bits(-0.0) == 0x80)
        #expect(FC.e4m3Bits(0x1p-6) == 0x08)  // smallest normal
        #expect(FC.float(fromE4M3: 0x7E) == 448)
        #expect(FC.float(fromE4M3: 0x01) == 0x1p-9)
        #expect(FC.float(fromE4M3: 0x7F).isNaN)
        #expect(FC.float(fromE4M3: 0xFF).isNaN)
    }

    @Test func e5m2KnownValues() {
        #expect(FC.e5m2Bits(1.0) == 0x3C)
        #expect(FC.e5m2Bits(-2.0) == 0xC0)
        #expect(FC.e5m2Bits(57344) == 0x7B)
        #expect(FC.e5m2Bits(61440) == 0x7B)  // tie toward inf: saturates
        #expect(FC.e5m2Bits(1e9) == 0x7B)
        #expect(FC.e5m2Bits(-1e9) == 0xFB)
        #expect(FC.e5m2Bits(.infinity) == 0x7B)
        #expect(FC.e5m2Bits(-.infinity) == 0xFB)
        #expect(FC.e5m2Bits(.nan) == 0x7F)
        #expect(FC.e5m2Bits(0x1p-16) == 0x01)
        #expect(FC.e5m2Bits(0x1p-17) == 0x00)  // tie → even
        #expect(FC.float(fromE5M2: 0x7B) == 57344)
        #expect(FC.float(fromE5M2: 0x7C) == .infinity)
        #expect(FC.float(fromE5M2: 0xFC) == -.infinity)
        #expect(FC.float(fromE5M2: 0x7D).isNaN)
        #expect(FC.float(fromE5M2: 0x01) == 0x1p-16)
    }

    @Test func fp8RoundTripEveryPattern() {
        for b in 0...UInt8.max {
            let x = FC.float(fromE4M3: b)
            if !x.isNaN { #expect(FC.e4m3Bits(x) == b, "e4m3 pattern \(b)") }
            let y = FC.float(fromE5M2: b)
            // ±inf saturates to ±57344 by design, so it does not round-trip.
            if !y.isNaN && !y.isInfinite { #expect(FC.e5m2Bits(y) == b, "e5m2 pattern \(b)") }
        }
    }

    /// Brute force: the encoded value is the nearest finite fp8 value, ties to the even pattern,
    /// saturating beyond the max.
    @Test(arguments: [DType.e4m3, .e5m2])
    func fp8IsNearestEven(_ dtype: DType) {
        let table: [(bits: UInt32, value: Float)] = (0..<256).compactMap { b in
            let v = dtype.value(bits: UInt32(b))
            return v.isFinite ? (UInt32(b), v) : nil
        }
        var rng = TestRNG(seed: 11)
        let limit: Float = dtype == .e4m3 ? 600 : 80000
        var samples: [Float] = table.map(\.value)
        for i in 0..<(table.count - 1) where table[i].value < table[i + 1].value {
            samples.append((table[i].value + table[i + 1].value) / 2)  // exact midpoints
        }
        let scales: [Float] = [limit, 1, 0.05, 1e-4]
        for _ in 0..<20000 {
            let mag = Float(rng.unit()) * scales[Int(rng.next() % 4)]
            samples.append(rng.next() & 1 == 0 ? mag : -mag)
        }
        for x in samples {
            var best = table[0]
            for t in table {
                let dt = abs(Double(t.value) - Double(x)), db = abs(Double(best.value) - Double(x))
                if dt < db || (dt == db && t.bits & 1 == 0) { best = t }
            }
            #expect(dtype.value(bits: dtype.bits(x)) == best.value, "\(dtype) x = \(x)")
        }
    }

    // MARK: DType

    @Test func dtypeProperties() {
        #expect(DType.allCases.map(\.byteSize) == [4, 2, 2, 1, 1])
        #expect(DType.allCases.map(\.cudaTypeName) == ["float", "half", "nv_bfloat16", "__nv_fp8_e4m3", "__nv_fp8_e5m2"])
        #expect(DType.allCases.filter(\.isFP8) == [.e4m3, .e5m2])
        let names: [String: DType] = [
            "f32": .f32, "float32": .f32, "f16": .f16, "float16": .f16, "half": .f16,
            "bf16": .bf16, "bfloat16": .bf16, "e4m3": .e4m3, "fp8_e4m3": .e4m3, "e5m2": .e5m2, "fp8_e5m2": .e5m2,
        ]
        for (name, dtype) in names { #expect(DType(name: name) == dtype) }
        #expect(DType(name: "int8") == nil)
    }

    @Test func encodeDecode() {
        #expect(DType.f16.encode([1.0, -2.0]) == [0x00, 0x3C, 0x00, 0xC0])
        #expect(DType.bf16.encode([1.0]) == [0x80, 0x3F])
        #expect(DType.f32.encode([1.0]) == [0x00, 0x00, 0x80, 0x3F])
        #expect(DType.e4m3.encode([1.0, 448, 1e9]) == [0x38, 0x7E, 0x7E])
        var rng = TestRNG(seed: 3)
        let values = (0..<1000).map { _ in Float(rng.unit() * 20 - 10) }
        for dtype in DType.allCases {
            let bytes = dtype.encode(values)
            #expect(bytes.count == values.count * dtype.byteSize)
            #expect(dtype.decode(bytes) == values.map(dtype.roundTrip))
        }
        #expect(DType.f32.roundTrip(0.1) == 0.1)
        #expect(DType.f16.roundTrip(0.1) == 0.0999755859375)
        #expect(DType.bf16.roundTrip(0.1) == 0.10009765625)
        #expect(DType.e4m3.roundTrip(1000) == 448)
    }
}
