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

/// Launches `axpby` on validated tensors (contiguous, one dtype and count, on the stream's
/// device): grid-stride over the elements, at most 8 CTAs per SM.
func launchAxpby(alpha: Float, x: Tensor, beta: Float, y: Tensor, out: Tensor, stream: Stream) throws(FlashInferError) {
    let spec = AxpbySpec(dtype: x.dtype)
    try FlashInferError.wrap { () throws(CUDAError) in
        let k = try JIT.shared(for: stream.device).kernel(spec)
        try stream.order(reading: [x, y], writing: [out])
        let p = FIAxpbyParams(x: x.deviceAddress!, y: y.deviceAddress!, out: out.deviceAddress!, alpha: alpha, beta: beta,
                              n: Int64(x.count))
        let sms = stream.device.properties.multiprocessorCount
        let blocks = max(1, min((x.count + 255) / 256, sms * 8))
        try k.function.launch(grid: (blocks, 1, 1), block: (256, 1, 1), stream: stream, parameter: p)
    }
}
