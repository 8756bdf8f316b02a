import FlashInferCUDA

/// Launches the single-request attention kernels: allocates the outputs (unless given) and
/// dispatches to the decode kernel (`CUDADecode`, CUDA cores, split-KV) or the prefill kernel
/// (`CUDAPrefill`, tensor cores).
enum CUDAAttention {
    static func single(q: Tensor, k: Tensor, v: Tensor, shape: SingleAttentionShape, decode: Bool,
                       options: AttentionOptions, returnLSE: Bool, out: Tensor? = nil,
                       stream: Stream) throws(FlashInferError) -> AttentionOutput {
        let device = stream.device
        if let d = q.device, d !== device { throw .deviceMismatch(tensor: "q (vs the stream's device)") }
        let outTensor: Tensor
        if let out {
            guard out.isOnDevice, out.device === device else { throw .placement(tensor: "out", expected: "device") }
            guard out.shape == q.shape else { throw .shape(tensor: "out", axis: 0, name: "shape \(out.shape)", expected: "q's shape \(q.shape)", got: out.shape.first ?? 0) }
            guard out.dtype == q.dtype else { throw .dtype(tensor: "out", expected: q.dtype.rawValue, got: out.dtype) }
            guard out.isContiguous else { throw .strides(tensor: "out", strides: out.strides, rule: "must be contiguous") }
            outTensor = out
        } else {
            outTensor = try FlashInferError.wrap { () throws(CUDAError) in try Tensor.empty(shape: q.shape, dtype: q.dtype, stream: stream) }
        }
        let lseShape = decode ? [shape.numQOHeads] : [shape.qoLen, shape.numQOHeads]
        let lse: Tensor? = returnLSE
            ? try FlashInferError.wrap { () throws(CUDAError) in try Tensor.empty(shape: lseShape, dtype: .f32, stream: stream) }
            : nil
        if decode {
            try CUDADecode.run(q: q, k: k, v: v, shape: shape, options: options, out: outTensor, lse: lse, stream: stream)
        } else {
            try CUDAPrefill.run(q: q, k: k, v: v, shape: shape, options: options, out: outTensor, lse: lse, stream: stream)
        }
        return AttentionOutput(output: outTensor, lse: lse)
    }
}

/// Whether this build has GPU attention kernels.
public let gpuAttentionKernelsAvailable = true
