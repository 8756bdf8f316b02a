import FlashInfer

/// The comparison rule every GPU check uses: `|got − expected| ≤ atol + rtol·|expected|`,
/// elementwise, NaN never passes. Values are upstream FlashInfer's test tolerances.
public struct Tolerance: Sendable, Hashable, CustomStringConvertible {
    public var atol: Float
    public var rtol: Float

    public init(atol: Float, rtol: Float) {
        self.atol = atol
        self.rtol = rtol
    }

    /// fp16 inputs and outputs: 1e-3 / 1e-3.
    public static let f16 = Tolerance(atol: 1e-3, rtol: 1e-3)
    /// bf16, and the cases where upstream uses 1e-2 (soft-cap and ALiBi prefill): 1e-2 / 1e-2.
    public static let relaxed = Tolerance(atol: 1e-2, rtol: 1e-2)

    /// The tolerance for an attention check (see docs: fp16 1e-3 except soft-cap/ALiBi prefill; bf16 1e-2).
    /// With an FP8 `vScale` > 1 the absolute part scales with it: the kernels compute Σ p·v in the
    /// stored FP8 values' units and multiply by `v_scale` afterwards, so every absolute error (the
    /// 16-bit rounding of p above all) grows by that factor. (Found on the H200 at 466/467: a paged
    /// batch prefill case with v_scale 2.5 off by 1.04e-3 at one element of 2.4M, seed 1796370619.)
    /// Still far below upstream's FP8 tolerances (atol 1e-2, rtol 2e-2 to 0.2).
    public static func attention(dtype: DType, prefill: Bool, options: AttentionOptions) -> Tolerance {
        var t: Tolerance = dtype != .f16 || (prefill && (options.logitsSoftCap > 0 || options.positionEncoding == .alibi)) ? .relaxed : .f16
        if options.vScale > 1 { t.atol *= options.vScale }
        return t
    }

    public var description: String { "atol \(atol), rtol \(rtol)" }

    /// A failed comparison: the first offending element and summary statistics.
    public struct Mismatch: Sendable, CustomStringConvertible {
        public var index: Int
        public var got: Float
        public var expected: Float
        public var failures: Int
        public var maxAbsError: Float
        public var description: String {
            "\(failures) elements out of tolerance; first at \(index): got \(got), expected \(expected); max |err| \(maxAbsError)"
        }
    }

    /// nil when every element passes. `-inf` matches `-inf` (empty rows' LSE).
    public func compare(_ got: [Float], _ expected: [Float]) -> Mismatch? {
        precondition(got.count == expected.count, "compare: \(got.count) vs \(expected.count) elements")
        var first: Int?
        var failures = 0
        var maxErr: Float = 0
        for i in 0..<got.count {
            let g = got[i], e = expected[i]
            if g == e { continue }  // covers ±inf equal
            let err = abs(g - e)
            let ok = err <= atol + rtol * abs(e)  // false for NaN
            if !ok {
                failures += 1
                if first == nil { first = i }
            }
            if err.isFinite { maxErr = max(maxErr, err) } else { maxErr = .infinity }
        }
        guard let f = first else { return nil }
        return Mismatch(index: f, got: got[f], expected: expected[f], failures: failures, maxAbsError: maxErr)
    }
}
