/// Host-side conversions between `Float` and the storage formats the kernels read and write.
///
/// Every narrowing conversion rounds to nearest, ties to even (RNE), exactly like the CUDA
/// intrinsics `__float2half_rn`, `__float2bfloat16_rn` and `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, …)`.
/// Widening conversions are exact.
///
/// All formats are handled by one bit-level routine (`roundMagnitude`), parameterised by the
/// number of mantissa bits and the exponent bias, so the four formats share one proven path:
///
/// | format | exp bits | mantissa bits | bias | max finite | min subnormal | inf? |
/// |--------|----------|---------------|------|------------|---------------|------|
/// | f16    | 5        | 10            | 15   | 65504      | 2^-24         | yes  |
/// | bf16   | 8        | 7             | 127  | ≈3.39e38   | 2^-133        | yes  |
/// | e4m3fn | 4        | 3             | 7    | 448        | 2^-9          | no   |
/// | e5m2   | 5        | 2             | 15   | 57344      | 2^-16         | yes  |
public enum FloatConversion {
    // MARK: f16 (IEEE binary16)

    /// `Float` → IEEE half bits, RNE.
    /// - Overflow: a finite value that rounds above 65504 (i.e. `|x| ≥ 65520`) becomes ±inf (`0x7C00`).
    /// - ±inf → ±inf. NaN → a quiet NaN (`0x7E00` plus the top payload bits), sign kept.
    /// - Subnormals are rounded RNE to multiples of 2^-24; `|x| ≤ 2^-25` becomes ±0. The sign of zero is kept.
    public static func f16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        let sign = UInt16(truncatingIfNeeded: bits >> 16) & 0x8000
        let mag = bits & 0x7FFF_FFFF
        if mag > 0x7F80_0000 {  // NaN: quiet, keep the top 9 payload bits
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: (mag >> 13) & 0x01FF)
        }
        if mag == 0x7F80_0000 { return sign | 0x7C00 }
        let r = roundMagnitude(mag, mantissaBits: 10, bias: 15)
        return sign | (r >= 0x7C00 ? 0x7C00 : UInt16(r))
    }

    /// IEEE half bits → `Float` (exact). NaN payloads are kept (and the NaN is quiet).
    public static func float(fromF16 bits: UInt16) -> Float {
        widen(UInt32(bits), exponentBits: 5, mantissaBits: 10, hasInfinity: true)
    }

    // MARK: bf16

    /// `Float` → bfloat16 bits, RNE on the low 16 bits.
    /// - Overflow: values that round past the max finite (≈3.3895e38) become ±inf (`0x7F80`).
    /// - ±inf → ±inf. NaN → quiet NaN (top 16 bits of the input with the quiet bit `0x0040` set), sign kept.
    public static func bf16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        let sign = UInt16(truncatingIfNeeded: bits >> 16) & 0x8000
        let mag = bits & 0x7FFF_FFFF
        if mag > 0x7F80_0000 { return sign | 0x7FC0 | UInt16(truncatingIfNeeded: mag >> 16) }
        let r = roundMagnitude(mag, mantissaBits: 7, bias: 127)  // 0x7F80 (inf) is reached by carry
        return sign | UInt16(r)
    }

    /// bfloat16 bits → `Float` (exact: the bits become the top half of a `Float`).
    public static func float(fromBF16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    // MARK: fp8 e4m3 ("fn": finite, NaN only)

    /// `Float` → OCP FP8 E4M3 ("e4m3fn") bits, RNE with saturation (`__NV_SATFINITE`).
    /// - Finite values that round above 448 (i.e. `|x| > 464`; 464 itself is a tie that rounds to 448) → ±448 (`0x7E` / `0xFE`).
    /// - ±inf → ±448 (the format has no infinity).
    /// - NaN → `0x7F` regardless of the input's sign (what CUDA returns).
    /// - Subnormals are multiples of 2^-9; `|x| ≤ 2^-10` becomes ±0.
    public static func e4m3Bits(_ x: Float) -> UInt8 {
        let bits = x.bitPattern
        let sign = UInt8(truncatingIfNeeded: bits >> 24) & 0x80
        let mag = bits & 0x7FFF_FFFF
        if mag > 0x7F80_0000 { return 0x7F }
        if mag == 0x7F80_0000 { return sign | 0x7E }
        let r = roundMagnitude(mag, mantissaBits: 3, bias: 7)
        return sign | (r > 0x7E ? 0x7E : UInt8(r))  // 0x7F would be NaN: saturate
    }

    /// E4M3 bits → `Float` (exact). `0x7F` and `0xFF` are NaN; every other pattern is finite (max ±448).
    public static func float(fromE4M3 bits: UInt8) -> Float {
        if bits & 0x7F == 0x7F { return bits & 0x80 == 0 ? .nan : -.nan }
        return widen(UInt32(bits), exponentBits: 4, mantissaBits: 3, hasInfinity: false)
    }

    // MARK: fp8 e5m2

    /// `Float` → OCP FP8 E5M2 bits, RNE with saturation (`__NV_SATFINITE`).
    /// - Finite values that round above 57344 → ±57344 (`0x7B` / `0xFB`).
    /// - ±inf → ±57344 (saturation applies to infinities too, as `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2)` does).
    /// - NaN → `0x7F` (a NaN pattern: exponent all ones, mantissa `11`), regardless of the input's sign.
    /// - Subnormals are multiples of 2^-16; `|x| ≤ 2^-17` becomes ±0.
    public static func e5m2Bits(_ x: Float) -> UInt8 {
        let bits = x.bitPattern
        let sign = UInt8(truncatingIfNeeded: bits >> 24) & 0x80
        let mag = bits & 0x7FFF_FFFF
        if mag > 0x7F80_0000 { return 0x7F }
        if mag == 0x7F80_0000 { return sign | 0x7B }
        let r = roundMagnitude(mag, mantissaBits: 2, bias: 15)
        return sign | (r > 0x7B ? 0x7B : UInt8(r))
    }

    /// E5M2 bits → `Float` (exact). `0x7C`/`0xFC` are ±inf; `0x7D…0x7F` (and negatives) are NaN.
    public static func float(fromE5M2 bits: UInt8) -> Float {
        widen(UInt32(bits), exponentBits: 5, mantissaBits: 2, hasInfinity: true)
    }

    // MARK: shared bit routines

    /// Rounds the magnitude bits `mag` of a finite, non-negative `Float` to a format with
    /// `mantissaBits` stored mantissa bits and exponent `bias`, RNE.
    ///
    /// Returns the target's magnitude bit pattern (exponent field << mantissaBits | mantissa),
    /// *unclamped*: a result at or beyond the target's infinity/NaN patterns means overflow and is
    /// clamped by the caller. Carries from rounding propagate into the exponent naturally, and
    /// the subnormal → smallest-normal carry lands on the right pattern because the encoding is
    /// monotone and contiguous.
    @inline(__always)
    static func roundMagnitude(_ mag: UInt32, mantissaBits m: Int, bias: Int) -> UInt32 {
        let floatExp = Int(mag >> 23)  // biased f32 exponent, 0 for zero/subnormal
        let minNormalFloatExp = 1 - bias + 127  // f32 biased exponent of the target's smallest normal
        if floatExp >= minNormalFloatExp {
            // Normal in the target: rebias the exponent, then drop the low (23 − m) bits.
            let rebased = mag - UInt32(127 - bias) << 23
            return shiftRightRNE(rebased, by: 23 - m)
        }
        // Subnormal (or zero) in the target: count quanta of 2^(1 − bias − m).
        // value = significand · 2^(effExp − 150), so quanta = significand · 2^−shift.
        let significand = floatExp == 0 ? (mag & 0x7F_FFFF) : (mag & 0x7F_FFFF) | 0x80_0000
        let effExp = max(floatExp, 1)
        let shift = 151 - bias - m - effExp
        if shift > 24 { return 0 }  // significand < 2^24 ≤ half a quantum: rounds to zero
        return shiftRightRNE(significand, by: shift)
    }

    /// `v >> s` rounded to nearest, ties to even. Requires `1 ≤ s ≤ 31`.
    @inline(__always)
    static func shiftRightRNE(_ v: UInt32, by s: Int) -> UInt32 {
        let truncated = v >> UInt32(s)
        let remainder = v & ((1 << UInt32(s)) - 1)
        let half: UInt32 = 1 << UInt32(s - 1)
        if remainder > half || (remainder == half && truncated & 1 == 1) {
            return truncated + 1
        }
        return truncated
    }

    /// Exact widening of a small float format (sign bit just above the exponent) to `Float`.
    /// With `hasInfinity`, an all-ones exponent means inf (mantissa 0) or a quiet NaN (payload kept).
    @inline(__always)
    static func widen(_ bits: UInt32, exponentBits e: Int, mantissaBits m: Int, hasInfinity: Bool) -> Float {
        let sign = (bits >> UInt32(e + m)) & 1
        let expField = Int((bits >> UInt32(m)) & ((1 << UInt32(e)) - 1))
        let mantissa = bits & ((1 << UInt32(m)) - 1)
        let bias = (1 << (e - 1)) - 1
        let signBit = sign << 31
        if hasInfinity && expField == (1 << e) - 1 {
            if mantissa == 0 { return Float(bitPattern: signBit | 0x7F80_0000) }
            return Float(bitPattern: signBit | 0x7FC0_0000 | (mantissa << UInt32(23 - m)))
        }
        if expField == 0 {
            // Subnormal: mantissa · 2^(1 − bias − m), exact in Float for every format here.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: 1 - bias - m, significand: 1)
            return sign == 0 ? magnitude : -magnitude
        }
        let floatExp = UInt32(expField - bias + 127)
        return Float(bitPattern: signBit | floatExp << 23 | mantissa << UInt32(23 - m))
    }
}
