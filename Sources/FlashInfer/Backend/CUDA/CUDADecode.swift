import FlashInferCUDA

/// Single-request decode on CUDA cores (placeholder until the decode kernel lands).
enum CUDADecode {
    static func run(q: Tensor, k: Tensor, v: Tensor, shape: SingleAttentionShape, options: AttentionOptions,
                    out: Tensor, lse: Tensor?, stream: Stream) throws(FlashInferError) {
        throw .option(name: "backend", value: "cuda", rule: "the GPU decode kernel is not built yet")
    }
}
