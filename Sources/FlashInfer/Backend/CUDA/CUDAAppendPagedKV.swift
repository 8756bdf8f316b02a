internal import CFlashInferParams
import FlashInferCUDA

/// The JIT spec of the append kernel (`page/append.cuh`).
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

/// Appends on the device: the index arrays (batch indices, positions, the table's indices and
/// indptr) in one stream-ordered upload, then the kernel, grid-stride over 16-byte vectors.
/// Placement was validated (`appendPagedKVCache`); the kernel's vector copies need 16-byte
/// multiple strides and offsets.
func appendOnDevice(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache,
                    table: PageTable, stream: Stream) throws(FlashInferError) {
    let es = cache.dtype.byteSize
    for (n, t) in [("append_key", appendK), ("append_value", appendV), ("k_cache", cache.k), ("v_cache", cache.v)] {
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
