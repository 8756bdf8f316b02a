import FlashInferCUDA

/// Launches the single-request attention kernels: allocates the outputs (unless given) and
/// dispatches to the decode kernel (`CUDADecode`, CUDA cores, split-KV) or the prefill kernel
/// (`CUDAPrefill`, tensor cores).
enum CUDAAttention {
    /// Runs a validated problem on `stream`: into the problem's `out` (or a new output), with the
    /// LSE in the problem's `lse` (or a new one when `returnLSE`).
    static func single(_ problem: SingleAttentionProblem, returnLSE: Bool, stream: Stream) throws(FlashInferError) -> AttentionOutput {
        let q = problem.q
        let lseShape = problem.lseShape
        let (outTensor, lse) = try FlashInferError.wrap { () throws(CUDAError) -> (Tensor, Tensor?) in
            let out = if let o = problem.out { o } else { try Tensor.empty(shape: q.shape, dtype: q.dtype, stream: stream) }
            if let l = problem.lse { return (out, l) }
            return (out, returnLSE ? try Tensor.empty(shape: lseShape, dtype: .f32, stream: stream) : nil)
        }
        if problem.decode {
            try CUDADecode.run(problem, out: outTensor, lse: lse, stream: stream)
            return AttentionOutput(output: outTensor, lse: lse)
        }
        let tier = try CUDAPrefill.run(problem, out: outTensor, lse: lse, stream: stream)
        return AttentionOutput(output: outTensor, lse: lse, prefillTier: tier)
    }
}

/// Whether this build has GPU attention kernels.
public let gpuAttentionKernelsAvailable = true
