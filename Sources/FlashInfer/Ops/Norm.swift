import FlashInferCUDA

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// RMSNorm, its fused-residual and Gemma variants, and LayerNorm (`flashinfer.norm`): the CPU
/// backend runs the Float64 reference, the CUDA backend `ops/norm.cuh` (f16/bf16, f32 accumulation,
/// hidden ≤ 32768, one CTA per row).
///
/// On each row `x` of `hidden` elements (the last axis; leading axes are rows):
/// `rms = sqrt(mean(x²) + eps)`, `out = x / rms · w` (`rmsnorm`) or `x / rms · (1 + w)` (the Gemma
/// variants, whose checkpoints store `w − 1`). The fused variants first form `x = input + residual`
/// and write it as the new residual (upstream writes both in place: `fusedAddRMSNormInPlace`);
/// the normalization uses the unrounded sum, as upstream's kernel keeps it in Float32 registers.
/// LayerNorm: `(x − mean) / sqrt(var + eps) · gamma + beta`, biased variance. Outputs have the
/// input's dtype.
enum NormReference {
    static func rmsnorm(_ x: [Double], weight: [Double], eps: Double, gemma: Bool) -> [Double] {
        var ss = 0.0
        for v in x { ss += v * v }
        let inv = 1 / (ss / Double(x.count) + eps).squareRoot()
        return x.indices.map { x[$0] * inv * (gemma ? 1 + weight[$0] : weight[$0]) }
    }

    static func layernorm(_ x: [Double], gamma: [Double], beta: [Double], eps: Double) -> [Double] {
        let mean = x.reduce(0, +) / Double(x.count)
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(x.count)
        let inv = 1 / (variance + eps).squareRoot()
        return x.indices.map { (x[$0] - mean) * inv * gamma[$0] + beta[$0] }
    }
}

/// A validated norm: every tensor is `[rows, hidden]` but the weights (`[hidden]`), all on the
/// backend's side. The backend writes `out` and, fused, `residualOut` (either may alias an input:
/// in place).
struct NormCall {
    enum Kind: String, CaseIterable, Sendable, Hashable {
        case rms = "rmsnorm", fusedAddRMS = "fused_add_rmsnorm", layer = "layernorm"
    }
    var kind: Kind
    var input: Tensor
    var residual: Tensor?
    var residualOut: Tensor?
    var weight: Tensor
    /// LayerNorm's beta.
    var bias: Tensor?
    var out: Tensor
    var rows: Int
    var hidden: Int
    var eps: Double
    /// Added to every weight: 1 for the Gemma variants.
    var weightBias: Double
}

/// `[rows, hidden]`, checked: float dtypes, `weight` (and `bias`) `[hidden]`, the others the
/// input's shape, eps finite and ≥ 0, every tensor where the backend computes.
private func validateNorm(_ input: Tensor, weight: Tensor, eps: Double, backend: Backend,
                          other: (String, Tensor)? = nil, vector: (String, Tensor)? = nil) throws(FlashInferError) -> (rows: Int, hidden: Int) {
    // One tensor at a time, no array built (a per-layer call).
    let placement = backend.implementation.placement
    try checkPlacement("input", input, placement)
    try checkPlacement("weight", weight, placement)
    try checkPlacement(vector?.0 ?? "", vector?.1, placement)
    try checkPlacement(other?.0 ?? "", other?.1, placement)
    guard input.rank >= 1 else { throw .rank(tensor: "input", expected: 2, got: input.rank) }
    let hidden = input.shape[input.rank - 1]
    guard hidden >= 1 else { throw .shape(tensor: "input", axis: input.rank - 1, name: "hidden_size", expected: ">= 1", got: hidden) }
    func vectorOfHidden(_ n: String, _ t: Tensor) throws(FlashInferError) {
        guard t.rank == 1 else { throw .rank(tensor: n, expected: 1, got: t.rank) }
        guard t.shape[0] == hidden else { throw .shape(tensor: n, axis: 0, name: "hidden_size", expected: "\(hidden) (input's)", got: t.shape[0]) }
    }
    try vectorOfHidden("weight", weight)
    if let (n, t) = vector { try vectorOfHidden(n, t) }
    func floating(_ n: String, _ t: Tensor) throws(FlashInferError) {
        guard t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16 else { throw .dtype(tensor: n, expected: "float32, float16 or bfloat16", got: t.dtype) }
    }
    try floating("input", input)
    try floating("weight", weight)
    if let (n, t) = vector { try floating(n, t) }
    if let (n, t) = other {
        try floating(n, t)
        guard t.shape == input.shape else {
            throw .shape(tensor: n, axis: 0, name: "shape \(t.shape)", expected: "input's shape \(input.shape)", got: t.shape.first ?? 0)
        }
    }
    guard eps >= 0, eps.isFinite else { throw .option(name: "eps", value: "\(eps)", rule: "must be finite and >= 0") }
    return (input.count / hidden, hidden)
}

func hostDoubles(_ t: Tensor) throws(FlashInferError) -> [Double] {
    try FlashInferError.wrap { () throws(CUDAError) -> [Float] in try t.toFloats() }.map { Double($0) }
}

/// `out`, when given (checked: the input's shape and dtype), else a new tensor where the backend computes.
func opOutput(_ out: Tensor?, name: String = "out", shape: [Int], dtype: DType, backend: Backend) throws(FlashInferError) -> Tensor {
    guard let out else { return try backend.implementation.allocate(shape: shape, dtype: dtype) }
    guard out.shape == shape else { throw .shape(tensor: name, axis: 0, name: "shape \(out.shape)", expected: "\(shape)", got: out.shape.first ?? 0) }
    guard out.dtype == dtype else { throw .dtype(tensor: name, expected: "\(dtype.rawValue)", got: out.dtype) }
    return out
}

/// `flashinfer.norm.rmsnorm`: `input / sqrt(mean(input²) + eps) · weight` over the last axis, into
/// `out` (a new tensor when nil; it may be `input`).
/// - Throws: `.shape` when `weight` is not `[hidden]` or `out` not the input's shape; `.option`
///   for a negative eps; `.dtype`; on CUDA also `.strides` (the last axis must be contiguous, the
///   leading axes one row stride) and `.dtype` for f32 tensors (the kernels take f16/bf16).
@discardableResult
public func rmsnorm(_ input: Tensor, weight: Tensor, eps: Double = 1e-6, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try norm(.rms, input, weight: weight, eps: eps, weightBias: 0, out: out, backend: backend)
}

/// `flashinfer.norm.gemma_rmsnorm`: `input / sqrt(mean(input²) + eps) · (1 + weight)`.
@discardableResult
public func gemmaRMSNorm(_ input: Tensor, weight: Tensor, eps: Double = 1e-6, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    try norm(.rms, input, weight: weight, eps: eps, weightBias: 1, out: out, backend: backend)
}

/// `flashinfer.norm.layernorm`: `(input − mean) / sqrt(var + eps) · gamma + beta` over the last
/// axis (biased variance). `gamma` and `beta` are `[hidden]` (upstream's are float32; the CUDA
/// kernel takes float32 or the input's dtype).
@discardableResult
public func layernorm(_ input: Tensor, gamma: Tensor, beta: Tensor, eps: Double = 1e-6, out: Tensor? = nil,
                      backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let (rows, hidden) = try validateNorm(input, weight: gamma, eps: eps, backend: backend, vector: ("beta", beta))
    guard beta.dtype == gamma.dtype else { throw .dtype(tensor: "beta", expected: "\(gamma.dtype.rawValue) (gamma's)", got: beta.dtype) }
    let o = try opOutput(out, shape: input.shape, dtype: input.dtype, backend: backend)
    try backend.implementation.norm(NormCall(kind: .layer, input: input, weight: gamma, bias: beta, out: o, rows: rows, hidden: hidden,
                                             eps: eps, weightBias: 0))
    return o
}

private func norm(_ kind: NormCall.Kind, _ input: Tensor, weight: Tensor, eps: Double, weightBias: Double, out: Tensor?,
                  backend: Backend) throws(FlashInferError) -> Tensor {
    let (rows, hidden) = try validateNorm(input, weight: weight, eps: eps, backend: backend, other: out.map { ("out", $0) })
    let o = try opOutput(out, shape: input.shape, dtype: input.dtype, backend: backend)
    try backend.implementation.norm(NormCall(kind: kind, input: input, weight: weight, out: o, rows: rows, hidden: hidden, eps: eps,
                                             weightBias: weightBias))
    return o
}

/// `fused_add_rmsnorm` into new tensors: `residual' = input + residual` and
/// `output = rmsnorm(residual')`, each in its argument's dtype (`fusedAddRMSNormInPlace` is
/// upstream's in-place form).
public func fusedAddRMSNorm(_ input: Tensor, residual: Tensor, weight: Tensor, eps: Double = 1e-6,
                            backend: Backend = .cpu) throws(FlashInferError) -> (output: Tensor, residual: Tensor) {
    try fusedAdd(input, residual: residual, weight: weight, eps: eps, gemma: false, inPlace: false, backend: backend)
}

/// `gemma_fused_add_rmsnorm` into new tensors: `fusedAddRMSNorm` with the `(1 + weight)` scale.
public func gemmaFusedAddRMSNorm(_ input: Tensor, residual: Tensor, weight: Tensor, eps: Double = 1e-6,
                                 backend: Backend = .cpu) throws(FlashInferError) -> (output: Tensor, residual: Tensor) {
    try fusedAdd(input, residual: residual, weight: weight, eps: eps, gemma: true, inPlace: false, backend: backend)
}

/// `flashinfer.norm.fused_add_rmsnorm`, in place as upstream: `residual ← input + residual`, then
/// `input ← rmsnorm(residual)` (normalizing the unrounded Float32 sum). On CUDA it is one kernel,
/// ordered on the stream.
public func fusedAddRMSNormInPlace(input: Tensor, residual: Tensor, weight: Tensor, eps: Double = 1e-6,
                                   backend: Backend = .cpu) throws(FlashInferError) {
    _ = try fusedAdd(input, residual: residual, weight: weight, eps: eps, gemma: false, inPlace: true, backend: backend)
}

/// `flashinfer.norm.gemma_fused_add_rmsnorm`, in place: `fusedAddRMSNormInPlace` with `(1 + weight)`.
public func gemmaFusedAddRMSNormInPlace(input: Tensor, residual: Tensor, weight: Tensor, eps: Double = 1e-6,
                                        backend: Backend = .cpu) throws(FlashInferError) {
    _ = try fusedAdd(input, residual: residual, weight: weight, eps: eps, gemma: true, inPlace: true, backend: backend)
}

private func fusedAdd(_ input: Tensor, residual: Tensor, weight: Tensor, eps: Double, gemma: Bool, inPlace: Bool,
                      backend: Backend) throws(FlashInferError) -> (output: Tensor, residual: Tensor) {
    let (rows, hidden) = try validateNorm(input, weight: weight, eps: eps, backend: backend, other: ("residual", residual))
    let out = inPlace ? input : try opOutput(nil, shape: input.shape, dtype: input.dtype, backend: backend)
    let resOut = inPlace ? residual : try opOutput(nil, shape: residual.shape, dtype: residual.dtype, backend: backend)
    try backend.implementation.norm(NormCall(kind: .fusedAddRMS, input: input, residual: residual, residualOut: resOut, weight: weight,
                                             out: out, rows: rows, hidden: hidden, eps: eps, weightBias: gemma ? 1 : 0))
    return (out, resOut)
}

/// The CPU backend's norm: the Float64 reference on host tensors, written into the outputs.
func normOnHost(_ c: NormCall) throws(FlashInferError) {
    var x = try hostDoubles(c.input)
    let w = try hostDoubles(c.weight).map { $0 + c.weightBias }
    if let r = c.residual, let ro = c.residualOut {
        let rv = try hostDoubles(r)
        x = x.indices.map { x[$0] + rv[$0] }
        try writeHost(ro, x.map { Float($0) })
    }
    let b = try c.bias.map { t throws(FlashInferError) in try hostDoubles(t) }
    var out: [Float] = []
    out.reserveCapacity(x.count)
    for r in 0..<c.rows {
        let row = Array(x[(r * c.hidden)..<((r + 1) * c.hidden)])
        let y = c.kind == .layer ? NormReference.layernorm(row, gamma: w, beta: b!, eps: c.eps)
            : NormReference.rmsnorm(row, weight: w, eps: c.eps, gemma: false)
        out += y.map { Float($0) }
    }
    try writeHost(c.out, out)
}

/// Writes `values` (row-major over `t.shape`) into a host tensor's elements, rounded to its dtype;
/// any strides.
func writeHost(_ t: Tensor, _ values: [Float]) throws(FlashInferError) {
    guard !t.isOnDevice else { throw .placement(tensor: "out", expected: "host (the CPU backend)") }
    precondition(values.count == t.count, "writeHost: \(values.count) values for \(t.shape)")
    let es = t.dtype.byteSize
    let bytes = t.dtype.encode(values)
    t.withHostBytes { b in
        var idx = [Int](repeating: 0, count: t.rank)
        for i in 0..<t.count {
            let off = (t.offset + zip(idx, t.strides).reduce(0) { $0 + $1.0 * $1.1 }) * es
            for j in 0..<es { b[off + j] = bytes[i * es + j] }
            var d = t.rank - 1
            while d >= 0 {
                idx[d] += 1
                if idx[d] < t.shape[d] { break }
                idx[d] = 0
                d -= 1
            }
        }
    }
}
