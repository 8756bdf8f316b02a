internal import CFlashInferParams
import FlashInferCUDA

struct AppendPagedKVSpec: KernelSpec {
    var name: String { "append_paged_kv" }
    var entryPoint: String { "fi_append_paged_kv" }
    func source() -> String {
        """
        #include <flashinfer/page/append.cuh>
        extern "C" __global__ void fi_append_paged_kv(const __grid_constant__ flashinfer::AppendPagedKVParams p) {
          flashinfer::append_paged_kv(p);
        }
        """
    }
}

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

func appendOnDevice(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache,
                    table: PageTable, stream: Stream) throws(FlashInferError) {
    let es = cache.dtype.byteSize
    for (n, t) in [("append_key", appendK), ("append_value", appendV), ("k_cache", cache.k), ("v_cache", cache.v)] {
        guard t.device === stream.device else { throw .deviceMismatch(tensor: n) }
        guard t.strides.allSatisfy({ ($0 * es) % 16 == 0 || $0 == 1 }), (t.offset * es) % 16 == 0 else {
            throw .strides(tensor: n, strides: t.strides, rule: "strides and offset must be multiples of 16 bytes for vectorised copies")
        }
    }
    let nnz = indices.batchIndices.count
    guard nnz > 0 else { return }
    try FlashInferError.wrap { () throws(CUDAError) in
        let dev = stream.device
        // Index arrays travel in one upload: batch_indices | positions | kv_indices | kv_indptr.
        let packed = indices.batchIndices + indices.positions + table.indices + table.indptr
        // Stream-ordered: the upload, the kernel and the free follow each other on `stream`, so the
        // call returns without waiting for the device (the driver stages the pageable upload).
        let buf = try stream.allocate(byteCount: packed.count * 4)
        try buf.copyFromHost(packed, stream: stream)
        let k = try JIT.shared(for: dev).kernel(AppendPagedKVSpec())
        let ks = cache.strides(of: cache.k), vs = cache.strides(of: cache.v)
        try stream.order(reading: [appendK, appendV], writing: [cache.k, cache.v], readingBuffers: [buf])
        func bytes(_ stride: Int) -> Int64 { Int64(stride * es) }
        let p = FIAppendPagedKVParams(
            append_k: appendK.deviceAddress!, append_v: appendV.deviceAddress!,
            k_cache: cache.k.deviceAddress!, v_cache: cache.v.deviceAddress!,
            batch_indices: buf.address, positions: buf.address + CUdeviceptr(nnz * 4),
            kv_indices: buf.address + CUdeviceptr(2 * nnz * 4),
            kv_indptr: buf.address + CUdeviceptr((2 * nnz + table.indices.count) * 4),
            ak_stride_n: bytes(appendK.strides[0]), ak_stride_h: bytes(appendK.strides[1]),
            av_stride_n: bytes(appendV.strides[0]), av_stride_h: bytes(appendV.strides[1]),
            kc_stride_page: bytes(ks.page), kc_stride_token: bytes(ks.token), kc_stride_head: bytes(ks.head),
            vc_stride_page: bytes(vs.page), vc_stride_token: bytes(vs.token), vc_stride_head: bytes(vs.head),
            nnz: Int32(nnz), num_heads: Int32(cache.numKVHeads), page_size: Int32(cache.pageSize),
            vecs_per_head: Int32(cache.headDim * es / 16))
        let total = nnz * cache.numKVHeads * cache.headDim * es / 16
        let blocks = max(1, min((total + 255) / 256, dev.properties.multiprocessorCount * 16))
        try k.function.launch(grid: (blocks, 1, 1), block: (256, 1, 1), stream: stream, arguments: KernelArguments(bytesOf: p))
        // No wait: the index buffer is freed in the stream's order, after the kernel (DeviceBuffer).
    }
}
