internal import CFlashInferParams
import FlashInferCUDA

// The merge kernels' launchers (`attention/cascade.cuh`): `mergeState`, `mergeStateInPlace`,
// `mergeStates` on the CUDA backend (`CUDABackend`), and the batch prefill's split-KV merge
// (`MergeKind.varlen`, launched by `CUDABatchPrefill`).

/// Which merge a `MergeSpec` instantiates.
enum MergeKind: String, Sendable, Hashable {
    case pair = "merge_state", inPlace = "merge_state_in_place", many = "merge_states"
    /// Split-KV partials with a variable count per position (`MergeVarlenParams`).
    case varlen = "merge_states_varlen"
}

struct MergeSpec: KernelSpec {
    var kind: MergeKind
    var dtype: DType
    var name: String { "\(kind.rawValue)_\(dtype.rawValue)" }
    var entryPoint: String { "fi_\(name)" }
    func source() -> String {
        let call = switch kind {
        case .pair: "flashinfer::merge_state_kernel<\(dtype.cudaTypeName), false>(p)"
        case .inPlace: "flashinfer::merge_state_kernel<\(dtype.cudaTypeName), true>(p)"
        case .many: "flashinfer::merge_states_kernel<\(dtype.cudaTypeName)>(p)"
        case .varlen: "flashinfer::merge_states_varlen_kernel<\(dtype.cudaTypeName)>(p)"
        }
        let params = kind == .varlen ? "MergeVarlenParams" : "MergeParams"
        return """
            #include <flashinfer/attention/cascade.cuh>
            extern "C" __global__ void \(entryPoint)(const __grid_constant__ flashinfer::\(params) p) { \(call); }
            """
    }
}

/// New merged states `[n, h, d]` and `[n, h]`, allocated in the stream's order.
func allocateStates(n: Int, h: Int, d: Int, dtype: DType, stream: Stream) throws(FlashInferError) -> (Tensor, Tensor) {
    try FlashInferError.wrap { () throws(CUDAError) in
        (try Tensor.empty(shape: [n, h, d], dtype: dtype, stream: stream), try Tensor.empty(shape: [n, h], dtype: .f32, stream: stream))
    }
}

/// Launches a merge on validated tensors (`mergeState*`: every one on the stream's device), in
/// the stream's order; grid-stride over the `n·h·d/8` 16-byte vectors, at most 16 CTAs per SM.
func launchMerge(_ kind: MergeKind, dtype: DType, va: Tensor, sa: Tensor, vb: Tensor?, sb: Tensor?, vOut: Tensor, sOut: Tensor,
                 mask: DeviceBuffer?, n: Int, h: Int, d: Int, states: Int, stream: Stream) throws(FlashInferError) {
    let total = n * h * d / 8
    guard total > 0 else { return }
    try FlashInferError.wrap { () throws(CUDAError) in
        let k = try JIT.shared(for: stream.device).kernel(MergeSpec(kind: kind, dtype: dtype))
        try stream.order(read: va.buffer, sa.buffer, vb?.buffer, sb?.buffer, mask, write: vOut.buffer, sOut.buffer)
        let p = FIMergeParams(
            va: va.deviceAddress!, sa: sa.deviceAddress!, vb: vb?.deviceAddress ?? 0, sb: sb?.deviceAddress ?? 0,
            v_out: vOut.deviceAddress!, s_out: sOut.deviceAddress!, mask: mask?.address ?? 0,
            n: Int64(n), num_heads: Int32(h), head_dim: Int32(d), num_states: Int32(states), pad: 0)
        let blocks = max(1, min((total + 255) / 256, stream.device.properties.multiprocessorCount * 16))
        try k.function.launch(grid: (blocks, 1, 1), block: (256, 1, 1), stream: stream, parameter: p)
    }
}
