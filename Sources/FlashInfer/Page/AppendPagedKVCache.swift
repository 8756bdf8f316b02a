import FlashInferCUDA

/// Index arrays of an append, on the host (CPU backend) or the device (CUDA backend: int32 tensors).
public struct AppendIndices: Sendable {
    public var batchIndices: [Int32]
    public var positions: [Int32]
    public init(batchIndices: [Int32], positions: [Int32]) {
        self.batchIndices = batchIndices
        self.positions = positions
    }
}

/// `append_paged_kv_cache` (FlashInfer ≥ 0.2): writes `appendK`/`appendV` `[nnz, Hkv, D]` into the
/// cache. Token `t` belongs to request `batchIndices[t]` at position `positions[t]`; the page table
/// must already include the appended tokens (compute the indices with `getBatchIndicesPositions`
/// from `append_indptr` and the post-append `table.seqLens`).
///
/// Host cache and tensors: computed on the CPU. Device cache: the GPU kernel on `stream`
/// (`table` and `indices` are uploaded in the stream's order; the call does not wait for the device).
public func appendPagedKVCache(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache,
                               table: PageTable, stream: Stream? = nil) throws(FlashInferError) {
    try table.validate(numPages: cache.numPages)
    // The cache's placement picks the backend: a device cache is written on `stream`.
    let backend: Backend
    if cache.k.isOnDevice {
        guard let stream else { throw .backendMismatch(what: "stream", rule: "a device cache needs a stream") }
        backend = .cuda(stream)
    } else {
        backend = .cpu
    }
    let placement = backend.implementation.placement
    try checkPlacement([("k_cache", cache.k), ("v_cache", cache.v)], placement)
    let nnz = indices.batchIndices.count
    for (n, t) in [("append_key", appendK), ("append_value", appendV)] {
        guard t.rank == 3 else { throw .rank(tensor: n, expected: 3, got: t.rank) }
        guard t.shape[0] == nnz else { throw .shape(tensor: n, axis: 0, name: "nnz", expected: "\(nnz) (len(batch_indices))", got: t.shape[0]) }
        guard t.shape[1] == cache.numKVHeads else { throw .shape(tensor: n, axis: 1, name: "num_kv_heads", expected: "\(cache.numKVHeads)", got: t.shape[1]) }
        guard t.shape[2] == cache.headDim else { throw .shape(tensor: n, axis: 2, name: "head_dim", expected: "\(cache.headDim)", got: t.shape[2]) }
        guard t.dtype == cache.dtype else { throw .dtype(tensor: n, expected: cache.dtype.rawValue, got: t.dtype) }
        guard t.strides[2] == 1 else { throw .strides(tensor: n, strides: t.strides, rule: "the head_dim axis must have stride 1") }
        try checkPlacement([(n, t)], placement)
    }
    guard indices.positions.count == nnz else {
        throw .shape(tensor: "positions", axis: 0, name: "nnz", expected: "\(nnz)", got: indices.positions.count)
    }
    let seqLens = table.seqLens
    for t in 0..<nnz {
        let b = Int(indices.batchIndices[t]), p = Int(indices.positions[t])
        guard b >= 0 && b < table.batchSize else { throw .indices(array: "batch_indices", position: t, rule: "request \(b) outside 0..<\(table.batchSize)") }
        guard p >= 0 && p < seqLens[b] else { throw .indices(array: "positions", position: t, rule: "position \(p) outside request \(b)'s \(seqLens[b]) tokens") }
    }
    try backend.implementation.appendPagedKVCache(appendK: appendK, appendV: appendV, indices: indices, cache: cache, table: table)
}
