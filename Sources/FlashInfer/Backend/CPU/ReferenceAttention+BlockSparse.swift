extension ReferenceAttention {
    /// Block-sparse attention (upstream's `BlockSparseAttentionWrapper`), computed as dense attention
    /// of the `M` queries over the `N` keys under the pattern's dense mask (`BlockSparsePattern.denseMask`):
    /// `prefill(qoLen: M, kvLen: N, customMask:)`. Query `q` sees key `k` iff block `(q / R, k / C)` is
    /// stored and the in-block mask, if any, keeps `(q % R, k % C)`; a query that sees no key gets
    /// output 0 and LSE −inf.
    ///
    /// This equals upstream's paged formulation (each block row a request over its blocks as pages of
    /// `C` keys, `pattern.qoIndptr` / `pattern.pageTable`) because nothing in the supported options
    /// depends on a key's position: `validateBlockSparseOptions` rejects causal, window, RoPE and ALiBi.
    ///
    /// `q` is `[M, Hq, D]`; `k`, `v` are `[N, Hkv, D]` (`.nhd`) or `[Hkv, N, D]` (`.hnd`), decoded
    /// exactly (FP8 K/V with `options.kScale` / `vScale`). Throws `FlashInferError` for the options or
    /// the mask, `ReferenceError` for the arrays.
    public static func blockSparse(
        q: [Float], k: [Float], v: [Float], pattern: BlockSparsePattern, mask: BlockSparseMask? = nil,
        numQOHeads: Int, numKVHeads: Int, headDim: Int, options: AttentionOptions
    ) throws -> Result {
        try validateBlockSparseOptions(options)
        let dense = try pattern.denseMask(mask)
        return try prefill(
            q: q, k: k, v: v, qoLen: pattern.rows, kvLen: pattern.columns, numQOHeads: numQOHeads,
            numKVHeads: numKVHeads, headDim: headDim, options: options, customMask: .bools(dense))
    }
}
