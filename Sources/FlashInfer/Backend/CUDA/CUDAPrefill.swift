import FlashInferCUDA

/// Single-request prefill/append on tensor cores (placeholder until the prefill kernel lands).
enum CUDAPrefill {
    static func run(q: Tensor, k: Tensor, v: Tensor, shape: SingleAttentionShape, options: AttentionOptions,
                    out: Tensor, lse: Tensor?, stream: Stream) throws(FlashInferError) {
        throw .option(name: "backend", value: "cuda", rule: "the GPU prefill kernel is not built yet")
    }
}
