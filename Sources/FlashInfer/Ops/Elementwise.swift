internal import CFlashInferParams
import FlashInferCUDA

/// The JIT spec of `axpby`: one kernel per element type.
struct AxpbySpec: KernelSpec {
    var dtype: DType
    var name: String { "axpby_\(dtype.rawValue)" }
    var entryPoint: String { "fi_axpby_\(dtype.rawValue)" }
    func source() -> String {
        """
        #include <flashinfer/ops/elementwise.cuh>
        extern "C" __global__ void \(entryPoint)(const __grid_constant__ flashinfer::AxpbyParams p) {
          flashinfer::axpby<\(dtype.cudaTypeName)>(p);
        }
        """
    }
}

/// `out = alpha·x + beta·y` elementwise on the GPU, computed in Float32 and rounded to the dtype.
///
/// `x`, `y` and `out` are contiguous device tensors of one dtype and one element count. Runs on
/// `stream` (asynchronously). The smallest kernel on the JIT path, used by `flashinfer check`.
public func axpby(alpha: Float, x: Tensor, beta: Float, y: Tensor, out: Tensor, stream: Stream) throws(FlashInferError) {
    for (n, t) in [("x", x), ("y", y), ("out", out)] {
        guard t.isOnDevice else { throw .placement(tensor: n, expected: "device") }
        guard t.isContiguous else { throw .strides(tensor: n, strides: t.strides, rule: "must be contiguous") }
        guard t.dtype == x.dtype else { throw .dtype(tensor: n, expected: x.dtype.rawValue, got: t.dtype) }
        guard t.count == x.count else { throw .shape(tensor: n, axis: 0, name: "count", expected: "\(x.count)", got: t.count) }
        guard t.device === stream.device else { throw .deviceMismatch(tensor: n) }
    }
    let spec = AxpbySpec(dtype: x.dtype)
    try FlashInferError.wrap { () throws(CUDAError) in
        let k = try JIT.shared(for: stream.device).kernel(spec)
        try stream.order(reading: [x, y], writing: [out])
        let p = FIAxpbyParams(x: x.deviceAddress!, y: y.deviceAddress!, out: out.deviceAddress!, alpha: alpha, beta: beta,
                              n: Int64(x.count))
        let sms = stream.device.properties.multiprocessorCount
        let blocks = max(1, min((x.count + 255) / 256, sms * 8))
        try k.function.launch(grid: (blocks, 1, 1), block: (256, 1, 1), stream: stream, arguments: KernelArguments(bytesOf: p))
    }
}
