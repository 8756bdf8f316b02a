/// Validation for FP8 K/V scales, custom masks and block-sparse (BSR) attention (issue 12).
/// Pure: no launches; every rule is a specific `FlashInferError`. Semantics in `docs/Sparse.md`.

// MARK: FP8 K/V

/// `kScale` and `vScale` must be finite and > 0 (1 means "no scale").
func validateKVScales(_ options: AttentionOptions) throws(FlashInferError) {
    for (name, value) in [("k_scale", options.kScale), ("v_scale", options.vScale)] where !(value.isFinite && value > 0) {
        throw .option(name: name, value: "\(value)", rule: "must be finite and > 0 (1 = no scale)")
    }
}

/// The options' rules for the CUDA attention paths, checked at the top of each (single
/// decode/prefill, batch decode, batch prefill and the wrappers built on them) before any CUDA work.
/// Every option is implemented by the kernels now (k_scale folds into sm_scale, v_scale into the
/// epilogue's 1/rowsum); what remains is the scales' own rule. An option the kernels lack is
/// refused here by name, so a GPU call never silently ignores one.
func requireCUDASupport(_ options: AttentionOptions, entry: String) throws(FlashInferError) {
    try validateKVScales(options)
}

/// Dtypes of an attention call that accepts FP8 K/V: q is f16 or bf16 (an FP8 q is rejected: only
/// K/V may be FP8, as upstream's FA2 path); K and V share one dtype, q's or e4m3 / e5m2.
func validateQKVDTypes(q: DType, kv: DType, kvName: String = "k") throws(FlashInferError) {
    guard q == .f16 || q == .bf16 else {
        throw .dtype(tensor: "q", expected: q.isFP8 ? "f16 or bf16 (FP8 is supported for K/V only, not q)" : "f16 or bf16", got: q)
    }
    guard kv == q || kv.isFP8 else {
        throw .dtype(tensor: kvName, expected: "\(q.rawValue) (q's dtype), e4m3 or e5m2", got: kv)
    }
}

// MARK: custom masks

/// A request's mask holds `qoLen · kvLen` booleans, or `ceil(qoLen · kvLen / 8)` packed bytes.
func validateCustomMask(_ mask: CustomMask, qoLen: Int, kvLen: Int, name: String = "custom_mask") throws(FlashInferError) {
    let (form, expected, actual) = mask.sizeCheck(qoLen: qoLen, kvLen: kvLen)
    guard expected == actual else {
        let what = form == "packed" ? "ceil(qo_len · kv_len / 8) bytes" : "qo_len · kv_len"
        throw .shape(tensor: name, axis: 0, name: what, expected: "\(expected) (qo_len \(qoLen), kv_len \(kvLen))", got: actual)
    }
}

/// Packed masks of a batch with their byte offsets (`packCustomMasks`' output, upstream's
/// `packed_custom_mask` and `mask_indptr` after `segment_packbits`): `indptr` has `B + 1` entries from
/// 0, request `b` has `ceil(qoLens[b] · kvLens[b] / 8)` bytes, `packed.count == indptr[B]`.
func validatePackedCustomMasks(packed: [UInt8], indptr: [Int32], qoLens: [Int], kvLens: [Int], name: String = "packed_custom_mask") throws(FlashInferError) {
    let elements = try customMaskIndptr(qoLens: qoLens, kvLens: kvLens)
    guard indptr.count == elements.count else {
        throw .shape(tensor: "mask_indptr", axis: 0, name: "batch_size + 1", expected: "\(elements.count)", got: indptr.count)
    }
    try validateSegmentIndptr(indptr, name: "mask_indptr", total: packed.count, totalName: name)
    for b in 0..<(indptr.count - 1) {
        let want = (Int(elements[b + 1] - elements[b]) + 7) / 8
        guard Int(indptr[b + 1] - indptr[b]) == want else {
            throw .indices(array: "mask_indptr", position: b + 1,
                           rule: "request \(b) has \(indptr[b + 1] - indptr[b]) bytes, ceil(qo_len · kv_len / 8) = \(want)")
        }
    }
}

// MARK: block-sparse (BSR)

/// The BSR rules (upstream `BlockSparseAttentionWrapper.plan`, stricter where upstream reads out of
/// bounds or double-counts):
/// - `R ≥ 1`, `C ≥ 1`, `M ≥ 0`, `N ≥ 0`;
/// - `N` divisible by `C` (the kernel views K/V as `N / C` pages of `C` columns; upstream rejects it too);
///   `M` need not be divisible by `R`: the last block row has `M − (MB − 1)·R` rows, as upstream's
///   `qo_indptr` (`R·arange(MB+1)`, last entry `M`);
/// - `indptr` has `MB + 1 = ceil(M / R) + 1` entries, starts at 0, is non-decreasing and ends at `nnz`;
/// - every block column in `0 ..< N / C`, and none twice in one block row (a repeated block would
///   count its keys twice in the kernel's softmax but once in the dense mask).
func validateBlockSparse(indptr: [Int32], indices: [Int32], rows m: Int, columns n: Int, blockRows r: Int, blockColumns c: Int) throws(FlashInferError) {
    guard r >= 1 else { throw .option(name: "R (block rows)", value: "\(r)", rule: "must be >= 1") }
    guard c >= 1 else { throw .option(name: "C (block columns)", value: "\(c)", rule: "must be >= 1") }
    guard m >= 0 else { throw .option(name: "M (rows)", value: "\(m)", rule: "must be >= 0") }
    guard n >= 0 else { throw .option(name: "N (columns)", value: "\(n)", rule: "must be >= 0") }
    guard n % c == 0 else {
        throw .option(name: "N (columns)", value: "\(n)", rule: "must be divisible by C = \(c): K/V are read as N / C whole blocks of C columns")
    }
    guard m <= Int(Int32.max), n <= Int(Int32.max) else {
        throw .option(name: "M, N", value: "\(m), \(n)", rule: "must be < 2^31 (int32 index arrays)")
    }
    let mb = (m + r - 1) / r, nb = n / c
    guard indptr.count == mb + 1 else {
        throw .shape(tensor: "indptr", axis: 0, name: "MB + 1", expected: "\(mb + 1) (ceil(M / R) + 1 with M = \(m), R = \(r))", got: indptr.count)
    }
    try validateSegmentIndptr(indptr, name: "indptr", total: indices.count, totalName: "indices")
    var seen = [Int32](repeating: -1, count: nb)  // block row that last used each block column
    for i in 0..<mb {
        for p in Int(indptr[i])..<Int(indptr[i + 1]) {
            let col = indices[p]
            guard col >= 0, Int(col) < nb else {
                throw .indices(array: "indices", position: p, rule: "block column \(col) outside 0..<\(nb) (N / C = \(n) / \(c))")
            }
            guard seen[Int(col)] != Int32(i) else {
                throw .indices(array: "indices", position: p, rule: "block column \(col) appears twice in block row \(i)")
            }
            seen[Int(col)] = Int32(i)
        }
    }
}

/// An in-block mask for `pattern`: `.blocks` has `nnz · R · C` elements, `.packed` the bytes of
/// `pattern.packedMaskIndptr`; either needs `M` divisible by `R` (the mask has `R` rows per block).
func validateBlockSparseMask(_ mask: BlockSparseMask, pattern: BlockSparsePattern) throws(FlashInferError) {
    guard pattern.rows % pattern.blockRows == 0 else {
        throw .option(name: "M (rows)", value: "\(pattern.rows)",
                      rule: "must be divisible by R = \(pattern.blockRows) with an in-block mask (it has R rows per block)")
    }
    switch mask {
    case .blocks(let b):
        let want = pattern.nnz * pattern.blockRows * pattern.blockColumns
        guard b.count == want else {
            throw .shape(tensor: "mask", axis: 0, name: "nnz · R · C", expected: "\(want) (nnz \(pattern.nnz), R \(pattern.blockRows), C \(pattern.blockColumns))", got: b.count)
        }
    case .packed(let p):
        let want = Int(pattern.packedMaskIndptr.last!)
        guard p.count == want else {
            throw .shape(tensor: "packed_mask", axis: 0, name: "bytes (Σ over block rows of ceil(R · nnz_i · C / 8))", expected: "\(want)", got: p.count)
        }
    }
}

/// Options block-sparse attention supports: scale, soft cap, FP8 scales, layout. Causal masks, the
/// sliding window and position encodings are rejected: upstream applies them in each block row's
/// *gathered* key coordinates (its kernel sees a block row as one request over the selected blocks
/// only), which is not a position in the N columns; express them in the pattern or the mask instead.
func validateBlockSparseOptions(_ options: AttentionOptions) throws(FlashInferError) {
    try validateKVScales(options)
    if let s = options.smScale, !(s.isFinite && s > 0) { throw .option(name: "sm_scale", value: "\(s)", rule: "must be finite and > 0") }
    guard options.logitsSoftCap >= 0, options.logitsSoftCap.isFinite else {
        throw .option(name: "logits_soft_cap", value: "\(options.logitsSoftCap)", rule: "must be finite and >= 0 (0 disables it)")
    }
    let why = "upstream applies it in each block row's gathered key coordinates, not at column positions; put it in the block pattern or the in-block mask"
    if options.causal { throw .unsupportedCombination("causal with block-sparse attention: \(why)") }
    if options.windowLeft != -1 { throw .unsupportedCombination("window_left = \(options.windowLeft) with block-sparse attention: \(why)") }
    if options.positionEncoding != .none {
        throw .unsupportedCombination("position encoding \(options.positionEncoding.name) with block-sparse attention: \(why)")
    }
}
