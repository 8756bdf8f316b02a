import FlashInferCUDA

/// `out = alpha·x + beta·y` elementwise on the GPU, computed in Float32 and rounded to the dtype.
///
/// `x`, `y` and `out` are contiguous device tensors of one dtype and one element count. Runs on
/// `stream` (asynchronously). The smallest kernel on the JIT path, used by `flashinfer check`.
public func axpby(alpha: Float, x: Tensor, beta: Float, y: Tensor, out: Tensor, stream: Stream) throws(FlashInferError) {
    try checkPlacement([("x", x), ("y", y), ("out", out)], .device(stream.device))
    for (n, t) in [("x", x), ("y", y), ("out", out)] {
        guard t.isContiguous else { throw .strides(tensor: n, strides: t.strides, rule: "must be contiguous") }
        guard t.dtype == x.dtype else { throw .dtype(tensor: n, expected: x.dtype.rawValue, got: t.dtype) }
        guard t.count == x.count else { throw .shape(tensor: n, axis: 0, name: "count", expected: "\(x.count)", got: t.count) }
    }
    try launchAxpby(alpha: alpha, x: x, beta: beta, y: y, out: out, stream: stream)
}
