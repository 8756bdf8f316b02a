import FlashInferCUDA

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// RMSNorm and its fused-residual and Gemma variants (`flashinfer.norm`), by the Float64 reference.
/// Only the CPU backend runs them so far; the CUDA backend throws `.unsupportedCombination`.
///
/// On each row `x` of `hidden` elements (the last axis; leading axes are rows):
/// `rms = sqrt(mean(x²) + eps)`, `out = x / rms · w` (`rmsnorm`) or `x / rms · (1 + w)` (the Gemma
/// variants, whose checkpoints store `w − 1`). The fused variants first form `x = input + residual`
/// and return it as the new residual (upstream writes both in place); the normalization uses the
/// unrounded sum, as upstream's kernel keeps it in Float32 registers. Outputs have the input's dtype.
enum NormReference {
    static func rmsnorm(_ x: [Double], weight: [Double], eps: Double, gemma: Bool) -> [Double] {
        var ss = 0.0
        for v in x { ss += v * v }
        let inv = 1 / (ss / Double(x.count) + eps).squareRoot()
        return x.indices.map { x[$0] * inv * (gemma ? 1 + weight[$0] : weight[$0]) }
    }
}

/// `[rows, hidden]`, checked: the backend runs it, float dtypes, `weight` is `[hidden]`, eps ≥ 0.
private func validateNorm(_ input: Tensor, weight: Tensor, eps: Double, entry: String, backend: Backend,
                          others: [(String, Tensor)] = []) throws(FlashInferError) -> (rows: Int, hidden: Int) {
    let impl = backend.implementation
    try impl.requireReferenceOnlyOp(entry: entry)
    try checkPlacement([("input", input), ("weight", weight)] + others, impl.placement)
    guard input.rank >= 1 else { throw .rank(tensor: "input", expected: 2, got: input.rank) }
    guard weight.rank == 1 else { throw .rank(tensor: "weight", expected: 1, got: weight.rank) }
    let hidden = input.shape[input.rank - 1]
    guard hidden >= 1 else { throw .shape(tensor: "input", axis: input.rank - 1, name: "hidden_size", expected: ">= 1", got: hidden) }
    guard weight.shape[0] == hidden else { throw .shape(tensor: "weight", axis: 0, name: "hidden_size", expected: "\(hidden) (input's)", got: weight.shape[0]) }
    for (n, t) in [("input", input), ("weight", weight)] + others {
        guard t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16 else { throw .dtype(tensor: n, expected: "float32, float16 or bfloat16", got: t.dtype) }
    }
    for (n, t) in others where t.shape != input.shape {
        throw .shape(tensor: n, axis: 0, name: "shape \(t.shape)", expected: "input's shape \(input.shape)", got: t.shape.first ?? 0)
    }
    guard eps >= 0, eps.isFinite else { throw .option(name: "eps", value: "\(eps)", rule: "must be finite and >= 0") }
    return (input.count / hidden, hidden)
}

func hostDoubles(_ t: Tensor) throws(FlashInferError) -> [Double] {
    try FlashInferError.wrap { () throws(CUDAError) -> [Float] in try t.toFloats() }.map { Double($0) }
}

private func normRows(_ x: [Double], weight: [Double], rows: Int, hidden: Int, eps: Double, gemma: Bool) -> [Float] {
    var out: [Float] = []
    out.reserveCapacity(x.count)
    for r in 0..<rows {
        out += NormReference.rmsnorm(Array(x[(r * hidden)..<((r + 1) * hidden)]), weight: weight, eps: eps, gemma: gemma).map { Float($0) }
    }
    return out
}

/// `flashinfer.norm.rmsnorm`: `input / sqrt(mean(input²) + eps) · weight` over the last axis.
/// - Throws: `.shape` when `weight` is not `[hidden]`; `.option` for a negative eps; `.dtype`.
public func rmsnorm(_ input: Tensor, weight: Tensor, eps: Double = 1e-6, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let (rows, hidden) = try validateNorm(input, weight: weight, eps: eps, entry: "rmsnorm", backend: backend)
    let out = normRows(try hostDoubles(input), weight: try hostDoubles(weight), rows: rows, hidden: hidden, eps: eps, gemma: false)
    return Tensor.host(out, shape: input.shape, dtype: input.dtype)
}

/// `flashinfer.norm.gemma_rmsnorm`: `input / sqrt(mean(input²) + eps) · (1 + weight)`.
public func gemmaRMSNorm(_ input: Tensor, weight: Tensor, eps: Double = 1e-6, backend: Backend = .cpu) throws(FlashInferError) -> Tensor {
    let (rows, hidden) = try validateNorm(input, weight: weight, eps: eps, entry: "gemmaRMSNorm", backend: backend)
    let out = normRows(try hostDoubles(input), weight: try hostDoubles(weight), rows: rows, hidden: hidden, eps: eps, gemma: true)
    return Tensor.host(out, shape: input.shape, dtype: input.dtype)
}

/// `flashinfer.norm.fused_add_rmsnorm`: `residual' = input + residual` and `output = rmsnorm(residual')`
/// (upstream overwrites `residual` and `input`; here both come back as new tensors, each in its
/// argument's dtype).
public func fusedAddRMSNorm(_ input: Tensor, residual: Tensor, weight: Tensor, eps: Double = 1e-6,
                            backend: Backend = .cpu) throws(FlashInferError) -> (output: Tensor, residual: Tensor) {
    try fusedAdd(input, residual: residual, weight: weight, eps: eps, gemma: false, entry: "fusedAddRMSNorm", backend: backend)
}

/// `flashinfer.norm.gemma_fused_add_rmsnorm`: `fusedAddRMSNorm` with the `(1 + weight)` scale.
public func gemmaFusedAddRMSNorm(_ input: Tensor, residual: Tensor, weight: Tensor, eps: Double = 1e-6,
                                 backend: Backend = .cpu) throws(FlashInferError) -> (output: Tensor, residual: Tensor) {
    try fusedAdd(input, residual: residual, weight: weight, eps: eps, gemma: true, entry: "gemmaFusedAddRMSNorm", backend: backend)
}

private func fusedAdd(_ input: Tensor, residual: Tensor, weight: Tensor, eps: Double, gemma: Bool, entry: String,
                      backend: Backend) throws(FlashInferError) -> (output: Tensor, residual: Tensor) {
    let (rows, hidden) = try validateNorm(input, weight: weight, eps: eps, entry: entry, backend: backend, others: [("residual", residual)])
    let x = try hostDoubles(input), r = try hostDoubles(residual)
    let sum = x.indices.map { x[$0] + r[$0] }
    let out = normRows(sum, weight: try hostDoubles(weight), rows: rows, hidden: hidden, eps: eps, gemma: gemma)
    return (Tensor.host(out, shape: input.shape, dtype: input.dtype),
            Tensor.host(sum.map { Float($0) }, shape: residual.shape, dtype: residual.dtype))
}
