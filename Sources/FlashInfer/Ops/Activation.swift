#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Gated activations (`flashinfer.activation`), by the Float64 reference: on `input [..., 2d]`,
/// `out[..., i] = act(input[..., i]) · input[..., d + i]`, `out [..., d]` in the input's dtype.
/// Only the CPU backend runs them so far; the CUDA backend throws `.unsupportedCombination`.
public enum GatedActivation: String, Sendable, Hashable, CaseIterable {
    /// `silu(x) = x / (1 + e^{−x})` (`silu_and_mul`).
    case silu
    /// `gelu(x) = x/2 · (1 + erf(x/√2))`, the exact GELU (`gelu_and_mul`).
    case gelu
    /// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, the tanh approximation (`gelu_tanh_and_mul`).
    case geluTanh

    /// The activation at `x`, in Float64.
    public func callAsFunction(_ x: Double) -> Double {
        switch self {
        case .silu: return x / (1 + exp(-x))
        case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        case .geluTanh:
            let sqrt2OverPi = (2 / Double.pi).squareRoot()
            return 0.5 * x * (1 + tanh(sqrt2OverPi * (x + 0.044715 * x * x * x)))
        }
    }

    var entry: String {
        switch self {
        case .silu: "siluAndMul"
        case .gelu: "geluAndMul"
        case .geluTanh: "geluTanhAndMul"
        }
    }
}

/// `act(input[..., :d]) · input[..., d:]` for `input [..., 2d]`.
/// - Throws: `.shape` when the last axis is odd or 0; `.dtype` for a non-float input.
public func gatedActivationAndMul(_ input: Tensor, activation: GatedActivation, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let impl = backend.implementation
    try impl.requireReferenceOnlyOp(entry: activation.entry)
    try checkPlacement([("input", input)], impl.placement)
    guard input.rank >= 1 else { throw .rank(tensor: "input", expected: 2, got: input.rank) }
    let last = input.shape[input.rank - 1]
    guard last >= 2, last % 2 == 0 else {
        throw .shape(tensor: "input", axis: input.rank - 1, name: "2·d", expected: "even and >= 2", got: last)
    }
    guard input.dtype == .f32 || input.dtype == .f16 || input.dtype == .bf16 else {
        throw .dtype(tensor: "input", expected: "float32, float16 or bfloat16", got: input.dtype)
    }
    let x = try hostDoubles(input), d = last / 2
    var out: [Float] = []
    out.reserveCapacity(x.count / 2)
    for r in 0..<(x.count / last) {
        for i in 0..<d { out.append(Float(activation(x[r * last + i]) * x[r * last + d + i])) }
    }
    return Tensor.host(out, shape: Array(input.shape.dropLast()) + [d], dtype: input.dtype)
}

/// `flashinfer.activation.silu_and_mul`.
public func siluAndMul(_ input: Tensor, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try gatedActivationAndMul(input, activation: .silu, backend: backend)
}

/// `flashinfer.activation.gelu_and_mul` (exact GELU).
public func geluAndMul(_ input: Tensor, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try gatedActivationAndMul(input, activation: .gelu, backend: backend)
}

/// `flashinfer.activation.gelu_tanh_and_mul` (tanh-approximated GELU).
public func geluTanhAndMul(_ input: Tensor, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try gatedActivationAndMul(input, activation: .geluTanh, backend: backend)
}
