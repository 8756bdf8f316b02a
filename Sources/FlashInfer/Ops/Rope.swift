#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rotary position embedding (`flashinfer.rope`: `apply_rope_pos_ids`, `apply_rope`,
/// `apply_llama31_rope*`), by the Float64 reference (upstream computes sin/cos in Float32).
/// Only the CPU backend runs it so far; the CUDA backend throws `.unsupportedCombination`.
///
/// Pair `i` (of `rotaryDim / 2`) rotates by `pos · freq_i`, `freq_i = theta^(−2i / rotaryDim)`
/// then scaled (`RopeScaling`). Non-interleaved (NeoX, rotate-half): element `d < rotaryDim/2`
/// pairs with `d + rotaryDim/2`; interleaved (GPT-J): `2i` pairs with `2i + 1`. Each pair `(a, b)`
/// becomes `(a cos − b sin, b cos + a sin)`; elements from `rotaryDim` on are copied.

/// How the frequencies are scaled (SEMANTICS.md §2.9).
public enum RopeScaling: Sendable, Equatable {
    /// Position interpolation: `freq / scale` (`rope_scale`; 1 is plain RoPE).
    case linear(scale: Double)
    /// Llama 3.1: with `a = oldContextLength / (2π (high − low))`, `b = −1 / (high/low − 1)`,
    /// `s = clamp(freq·a + b, 0, 1)`, `freq' = (1 − s)·freq/scale + s·freq`: short wavelengths
    /// (`< oldContextLength / high`) keep their frequency, long ones (`> oldContextLength / low`)
    /// are divided by `scale`. Upstream's defaults: scale 8, low 1, high 4, old context 8192.
    case llama31(scale: Double, lowFreqFactor: Double, highFreqFactor: Double, oldContextLength: Double)

    public static let llama31Default = RopeScaling.llama31(scale: 8, lowFreqFactor: 1, highFreqFactor: 4, oldContextLength: 8192)

    func apply(_ freq: Double) -> Double {
        switch self {
        case .linear(let scale): return freq / scale
        case .llama31(let scale, let low, let high, let old):
            let a = old / (2 * Double.pi * (high - low)), b = -1 / (high / low - 1)
            let s = min(max(freq * a + b, 0), 1)
            return (1 - s) * freq / scale + s * freq
        }
    }
}

/// The RoPE options upstream's functions take.
public struct RopeOptions: Sendable, Equatable {
    /// Rotated dimensions (even, ≤ head_dim); nil = head_dim.
    public var rotaryDim: Int?
    /// GPT-J pairs `(2i, 2i+1)` when true; NeoX halves when false (upstream's default).
    public var interleave: Bool
    /// `rope_theta` (upstream's default 1e4; Llama 3.1's 5e5).
    public var theta: Double
    public var scaling: RopeScaling

    public init(rotaryDim: Int? = nil, interleave: Bool = false, theta: Double = 1e4, scaling: RopeScaling = .linear(scale: 1)) {
        self.rotaryDim = rotaryDim
        self.interleave = interleave
        self.theta = theta
        self.scaling = scaling
    }

    /// The scaled frequency of each of the `rotaryDim / 2` pairs.
    func frequencies(rotaryDim: Int) -> [Double] {
        (0..<(rotaryDim / 2)).map { i in scaling.apply(pow(theta, -2 * Double(i) / Double(rotaryDim))) }
    }
}

enum RopeReference {
    /// One head vector rotated to position `pos`.
    static func rotate(_ x: [Double], pos: Double, freqs: [Double], interleave: Bool) -> [Double] {
        var out = x
        let half = freqs.count
        for i in 0..<half {
            let (ia, ib) = interleave ? (2 * i, 2 * i + 1) : (i, i + half)
            let angle = pos * freqs[i]
            let c = cos(angle), s = sin(angle)
            out[ia] = x[ia] * c - x[ib] * s
            out[ib] = x[ib] * c + x[ia] * s
        }
        return out
    }
}

/// `apply_rope_pos_ids` (and, with `.llama31`, `apply_llama31_rope_pos_ids`): `q [nnz, Hq, D]` and
/// `k [nnz, Hk, D]`, row `t` at position `posIds[t]`; returns the rotated `(q, k)` in their dtypes.
/// - Throws: `.rank`/`.shape` for mismatched tensors or `posIds`; `.option` for an odd or too large
///   `rotaryDim`, a non-positive theta or scale, or Llama 3.1 factors with `high ≤ low`.
public func applyRopePosIds(q: Tensor, k: Tensor, posIds: [Int32], options: RopeOptions = .init(),
                            backend: Backend = .cpu) throws(FlashInferError) -> (q: Tensor, k: Tensor) {
    let impl = backend.implementation
    try impl.requireReferenceOnlyOp(entry: "applyRopePosIds")
    try checkPlacement([("q", q), ("k", k)], impl.placement)
    guard q.rank == 3 else { throw .rank(tensor: "q", expected: 3, got: q.rank) }
    guard k.rank == 3 else { throw .rank(tensor: "k", expected: 3, got: k.rank) }
    let (nnz, d) = (q.shape[0], q.shape[2])
    guard k.shape[0] == nnz else { throw .shape(tensor: "k", axis: 0, name: "nnz", expected: "\(nnz) (q's)", got: k.shape[0]) }
    guard k.shape[2] == d else { throw .shape(tensor: "k", axis: 2, name: "head_dim", expected: "\(d) (q's)", got: k.shape[2]) }
    guard posIds.count == nnz else { throw .shape(tensor: "pos_ids", axis: 0, name: "nnz", expected: "\(nnz) (q's)", got: posIds.count) }
    for (n, t) in [("q", q), ("k", k)] where !(t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16) {
        throw .dtype(tensor: n, expected: "float32, float16 or bfloat16", got: t.dtype)
    }
    let rd = options.rotaryDim ?? d
    guard rd >= 2, rd % 2 == 0, rd <= d else { throw .option(name: "rotary_dim", value: "\(rd)", rule: "must be even and in 2...\(d) (head_dim)") }
    guard options.theta > 0, options.theta.isFinite else { throw .option(name: "rope_theta", value: "\(options.theta)", rule: "must be finite and > 0") }
    switch options.scaling {
    case .linear(let s):
        guard s > 0, s.isFinite else { throw .option(name: "rope_scale", value: "\(s)", rule: "must be finite and > 0") }
    case .llama31(let s, let low, let high, let old):
        guard s > 0, s.isFinite else { throw .option(name: "rope_scale", value: "\(s)", rule: "must be finite and > 0") }
        guard low > 0, high > low else { throw .option(name: "high_freq_factor", value: "\(high)", rule: "must exceed low_freq_factor \(low) > 0") }
        guard old > 0 else { throw .option(name: "old_context_len", value: "\(old)", rule: "must be > 0") }
    }
    let freqs = options.frequencies(rotaryDim: rd)
    func run(_ t: Tensor) throws(FlashInferError) -> Tensor {
        let x = try hostDoubles(t)
        var out: [Float] = []
        out.reserveCapacity(x.count)
        for row in 0..<(t.count / d) {
            let pos = Double(posIds[row / t.shape[1]])
            out += RopeReference.rotate(Array(x[(row * d)..<((row + 1) * d)]), pos: pos, freqs: freqs, interleave: options.interleave).map { Float($0) }
        }
        return Tensor.host(out, shape: t.shape, dtype: t.dtype)
    }
    return (try run(q), try run(k))
}

/// `apply_rope` (and `apply_llama31_rope`): ragged rows, request `b` owning rows
/// `indptr[b] ..< indptr[b+1]`, row `indptr[b] + j` at position `offsets[b] + j`.
/// - Throws: `.indices`/`.shape` for a bad `indptr` or an `offsets` of the wrong length; as
///   `applyRopePosIds` otherwise.
public func applyRope(q: Tensor, k: Tensor, indptr: [Int32], offsets: [Int32], options: RopeOptions = .init(),
                      backend: Backend = .cpu) throws(FlashInferError) -> (q: Tensor, k: Tensor) {
    try backend.implementation.requireReferenceOnlyOp(entry: "applyRope")
    guard q.rank == 3 else { throw .rank(tensor: "q", expected: 3, got: q.rank) }
    try validateSegmentIndptr(indptr, name: "indptr", total: q.shape[0], totalName: "q")
    guard offsets.count == indptr.count - 1 else {
        throw .shape(tensor: "offsets", axis: 0, name: "batch_size", expected: "\(indptr.count - 1) (len(indptr) − 1)", got: offsets.count)
    }
    var pos: [Int32] = []
    for b in 0..<offsets.count {
        for j in 0..<(indptr[b + 1] - indptr[b]) { pos.append(offsets[b] + j) }
    }
    return try applyRopePosIds(q: q, k: k, posIds: pos, options: options, backend: backend)
}
