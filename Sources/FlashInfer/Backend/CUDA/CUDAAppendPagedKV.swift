internal import CFlashInferParams
import FlashInferCUDA

/// The JIT spec of the append kernels (`page/append.cuh`): the byte copy when the appended K/V
/// have the cache's dtype (any dtype: one spec), else the quantizing kernel from `input`
/// (f16, bf16, f32) into an FP8 `cache` (e4m3, e5m2).
struct AppendPagedKVSpec: KernelSpec {
    /// The quantization's dtypes; nil for the copy.
    var quantization: Quantization?

    struct Quantization: Hashable, Sendable {
        var input: DType
        var cache: DType
    }

    /// The copy.
    init() { quantization = nil }

    /// The kernel that appends `input` tensors into a `cache` of that dtype (the copy) or of an FP8
    /// dtype (quantizing; `appendPagedKVCache` validated the pair).
    init(input: DType, cache: DType) {
        quantization = input == cache ? nil : Quantization(input: input, cache: cache)
    }

    var name: String {
        guard let q = quantization else { return "append_paged_kv" }
        return "append_paged_kv_\(q.input.rawValue)_\(q.cache.rawValue)"
    }
    var entryPoint: String { "fi_" + name }

    func source() -> String {
        let call = quantization.map { "flashinfer::append_paged_kv_quant<\($0.input.cudaTypeName), \($0.cache.cudaTypeName)>(p)" }
            ?? "flashinfer::append_paged_kv(p)"
        return """
            #include <flashinfer/page/append.cuh>
            extern "C" __global__ void \(entryPoint)(const __grid_constant__ flashinfer::AppendPagedKVParams p) {
              \(call);
            }
            """
    }

    /// The copy and every quantizing pair, for `kernelCatalog()`.
    static var catalog: [(name: String, spec: any KernelSpec)] {
        var out: [(name: String, spec: any KernelSpec)] = [("append_paged_kv", AppendPagedKVSpec())]
        for input in [DType.f16, .bf16, .f32] {
            for cache in [DType.e4m3, .e5m2] {
                out.append(("append_paged_kv \(input.rawValue) to \(cache.rawValue)", AppendPagedKVSpec(input: input, cache: cache)))
            }
        }
        return out
    }
}

/// The append kernels' vector rule: they move whole 16-byte vectors of the cache (16 FP8 codes
/// from 16 appended elements, when quantizing), so every stride (but a unit one) and offset of the
/// four tensors must be a multiple of 16 bytes, and a cache row of `head_dim` elements whole vectors.
/// (Pure: called by `appendOnDevice`, and by the tests on host tensors.)
func checkAppendVectorAligned(appendK: Tensor, appendV: Tensor, cache: PagedKVCache) throws(FlashInferError) {
    func vectorAligned(_ n: String, _ t: Tensor) throws(FlashInferError) {  // one at a time: no array (a per-layer call)
        let es = t.dtype.byteSize
        guard t.strides.allSatisfy({ ($0 * es) % 16 == 0 || $0 == 1 }), (t.offset * es) % 16 == 0 else {
            throw .strides(tensor: n, strides: t.strides, rule: "strides and offset must be multiples of 16 bytes for vectorised copies")
        }
    }
    try vectorAligned("append_key", appendK)
    try vectorAligned("append_value", appendV)
    try vectorAligned("k_cache", cache.k)
    try vectorAligned("v_cache", cache.v)
    let es = cache.dtype.byteSize
    guard (cache.headDim * es) % 16 == 0 else {
        throw .shape(tensor: "k_cache", axis: 3, name: "head_dim", expected: "a multiple of \(16 / es) (the append kernels move whole 16-byte vectors of the cache)",
                     got: cache.headDim)
    }
}

/// Appends on the device: host index arrays (batch indices, positions, the table's indices and
/// indptr) in one stream-ordered upload, or the caller's device arrays as they are; then the
/// kernel, grid-stride over 16-byte vectors of the cache, each token's target bounds-checked
/// (`append_target`). Placement, dtypes and scales were validated (`validateAppendTensors`: the
/// scales are 1 for the copy); the vector rule is `checkAppendVectorAligned`.
func appendOnDevice(appendK: Tensor, appendV: Tensor, indices: AppendIndexSource, cache: PagedKVCache,
                    kScale: Float, vScale: Float, stream: Stream) throws(FlashInferError) {
    try checkAppendVectorAligned(appendK: appendK, appendV: appendV, cache: cache)
    let es = cache.dtype.byteSize
    let spec = AppendPagedKVSpec(input: appendK.dtype, cache: cache.dtype)
    let nnz = indices.nnz
    guard nnz > 0 else { return }
    try FlashInferError.wrap { () throws(CUDAError) in
        let dev = stream.device
        // (batch_indices, positions, kv_indices, kv_indptr) addresses, the requests and page ids.
        let addr: (bi: CUdeviceptr, pos: CUdeviceptr, ix: CUdeviceptr, ip: CUdeviceptr)
        let (batch, numIndices): (Int, Int)
        var uploaded: DeviceBuffer?
        switch indices {
        case .host(let i, let table):
            // Index arrays travel in one upload: batch_indices | positions | kv_indices | kv_indptr.
            let packed = i.batchIndices + i.positions + table.indices + table.indptr
            // Stream-ordered: the upload, the kernel and the free follow each other on `stream`, so
            // the call returns without waiting for the device (the driver stages the pageable upload).
            let buf = try stream.allocate(byteCount: packed.count * 4)
            try buf.copyFromHost(packed, stream: stream)
            uploaded = buf
            addr = (buf.address, buf.address + CUdeviceptr(nnz * 4), buf.address + CUdeviceptr(2 * nnz * 4),
                    buf.address + CUdeviceptr((2 * nnz + table.indices.count) * 4))
            (batch, numIndices) = (table.batchSize, table.indices.count)
        case .device(let d):
            addr = (d.batchIndices.address, d.positions.address, d.kvIndices.address, d.kvIndptr.address)
            (batch, numIndices) = (d.batchSize, d.numIndices)
        }
        let k = try JIT.shared(for: dev).kernel(spec)
        let ks = cache.strides(of: cache.k), vs = cache.strides(of: cache.v)
        if case .device(let d) = indices {
            try stream.order(read: appendK.buffer, appendV.buffer, d.batchIndices, d.positions, d.kvIndices,
                             write: cache.k.buffer, cache.v.buffer)
            try stream.order(read: d.kvIndptr, write: nil)
        } else {
            try stream.order(read: appendK.buffer, appendV.buffer, uploaded, write: cache.k.buffer, cache.v.buffer)
        }
        func bytes(_ stride: Int) -> Int64 { Int64(stride * es) }  // the cache's
        func bytes(_ stride: Int, of dtype: DType) -> Int64 { Int64(stride * dtype.byteSize) }
        let p = FIAppendPagedKVParams(
            append_k: appendK.deviceAddress!, append_v: appendV.deviceAddress!,
            k_cache: cache.k.deviceAddress!, v_cache: cache.v.deviceAddress!,
            batch_indices: addr.bi, positions: addr.pos, kv_indices: addr.ix, kv_indptr: addr.ip,
            ak_stride_n: bytes(appendK.strides[0], of: appendK.dtype), ak_stride_h: bytes(appendK.strides[1], of: appendK.dtype),
            av_stride_n: bytes(appendV.strides[0], of: appendV.dtype), av_stride_h: bytes(appendV.strides[1], of: appendV.dtype),
            kc_stride_page: bytes(ks.page), kc_stride_token: bytes(ks.token), kc_stride_head: bytes(ks.head),
            vc_stride_page: bytes(vs.page), vc_stride_token: bytes(vs.token), vc_stride_head: bytes(vs.head),
            nnz: Int32(nnz), num_heads: Int32(cache.numKVHeads), page_size: Int32(cache.pageSize),
            vecs_per_head: Int32(cache.headDim * es / 16), k_scale: kScale, v_scale: vScale,
            batch_size: Int32(batch), num_indices: Int32(numIndices), num_pages: Int32(cache.numPages), pad: 0)
        let total = nnz * cache.numKVHeads * cache.headDim * es / 16
        let blocks = max(1, min((total + 255) / 256, dev.properties.multiprocessorCount * 16))
        try k.function.launch(grid: (blocks, 1, 1), block: (256, 1, 1), stream: stream, parameter: p)
        // No wait: an uploaded index buffer is freed in the stream's order, after the kernel (DeviceBuffer).
    }
}
