#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Gated activations (`flashinfer.activation`): on `input [..., 2d]`,
/// `out[..., i] = act(input[..., i]) · input[..., d + i]`, `out [..., d]` in the input's dtype.
/// The CPU backend runs the Float64 reference, the CUDA backend `ops/activation.cuh` (f16/bf16,
/// Float32 math).
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
}

/// A validated gated activation: `input` viewed as `[rows, 2d]`, `out` as `[rows, d]`.
struct ActivationCall {
    var activation: GatedActivation
    var input: Tensor
    var out: Tensor
    var rows: Int
    var d: Int
}

/// `act(input[..., :d]) · input[..., d:]` for `input [..., 2d]`, into `out [..., d]` (a new tensor
/// when nil).
/// - Throws: `.shape` when the last axis is odd or 0, or `out` is not `[..., d]`; `.dtype` for a
///   non-float input or an `out` of another dtype; on CUDA also `.strides` (the last axis must be
///   contiguous, the leading axes one row stride) and `.dtype` for f32 (the kernels take f16/bf16).
@discardableResult
public func gatedActivationAndMul(_ input: Tensor, activation: GatedActivation, out: Tensor? = nil,
                                  backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let impl = backend.implementation
    try checkPlacement([("input", input)] + (out.map { [("out", $0)] } ?? []), impl.placement)
    guard input.rank >= 1 else { throw .rank(tensor: "input", expected: 2, got: input.rank) }
    let last = input.shape[input.rank - 1]
    guard last >= 2, last % 2 == 0 else {
        throw .shape(tensor: "input", axis: input.rank - 1, name: "2·d", expected: "even and >= 2", got: last)
    }
    guard input.dtype == .f32 || input.dtype == .f16 || input.dtype == .bf16 else {
        throw .dtype(tensor: "input", expected: "float32, float16 or bfloat16", got: input.dtype)
    }
    let d = last / 2
    let o = try opOutput(out, shape: Array(input.shape.dropLast()) + [d], dtype: input.dtype, backend: backend)
    try impl.gatedActivation(ActivationCall(activation: activation, input: input, out: o, rows: input.count / last, d: d))
    return o
}

/// The CPU backend's gated activation: the Float64 reference, written into `out`.
func activationOnHost(_ c: ActivationCall) throws(FlashInferError) {
    let x = try hostDoubles(c.input), last = 2 * c.d
    var out: [Float] = []
    out.reserveCapacity(c.rows * c.d)
    for r in 0..<c.rows {
        for i in 0..<c.d { out.append(Float(c.activation(x[r * last + i]) * x[r * last + c.d + i])) }
    }
    try writeHost(c.out, out)
}

/// `flashinfer.activation.silu_and_mul`.
@discardableResult
public func siluAndMul(_ input: Tensor, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try gatedActivationAndMul(input, activation: .silu, out: out, backend: backend)
}

/// `flashinfer.activation.gelu_and_mul` (exact GELU).
@discardableResult
public func geluAndMul(_ input: Tensor, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try gatedActivationAndMul(input, activation: .gelu, out: out, backend: backend)
}

/// `flashinfer.activation.gelu_tanh_and_mul` (tanh-approximated GELU).
@discardableResult
public func geluTanhAndMul(_ input: Tensor, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try gatedActivationAndMul(input, activation: .geluTanh, out: out, backend: backend)
}
