// append_paged_kv_cache through the C ABI (flashinfer_swift.h, "paged-KV append"): CPU caches are
// written by the CPU backend and copied back into the caller's memory; CUDA caches by the kernel on
// the caller's stream, in place.
import CFlashInferABI
import FlashInfer
import FlashInferCUDA

@_cdecl("flashinfer_swift_append_paged_kv_cache")
public func flashinfer_swift_append_paged_kv_cache(
    _ appendK: UnsafePointer<DLTensor>?, _ appendV: UnsafePointer<DLTensor>?, _ batchIndices: UnsafePointer<Int32>?,
    _ positions: UnsafePointer<Int32>?, _ nnz: Int32, _ kCache: UnsafePointer<DLTensor>?, _ vCache: UnsafePointer<DLTensor>?,
    _ kvIndices: UnsafePointer<Int32>?, _ kvIndptr: UnsafePointer<Int32>?, _ kvLastPageLen: UnsafePointer<Int32>?,
    _ batchSize: Int32, _ kvLayout: Int32, _ kScale: Float, _ vScale: Float, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard nnz >= 0, batchSize >= 0 else { throw .invalid("nnz \(nnz) / batch_size \(batchSize) < 0") }
        let b = Int(batchSize)
        let indptr = try int32s(kvIndptr, b + 1, name: "kv_indptr")
        let pages = try int32s(kvIndices, Int(indptr.last ?? 0), name: "kv_indices")
        let last = try int32s(kvLastPageLen, b, name: "kv_last_page_len")
        let indices = AppendIndices(batchIndices: try int32s(batchIndices, Int(nnz), name: "batch_indices"),
                                    positions: try int32s(positions, Int(nnz), name: "positions"))
        try abiAppendHostIndices(appendK, appendV, indices, kCache, vCache, indptr: indptr, pages: pages, last: last,
                                 kvLayout: kvLayout, kScale: kScale, vScale: vScale, stream: stream)
    }
}

/// The cache layout code (FLASHINFER_SWIFT_LAYOUT_*).
func abiKVLayout(_ kvLayout: Int32) throws(ABIFailure) -> KVLayout {
    switch kvLayout {
    case Int32(FLASHINFER_SWIFT_LAYOUT_NHD): .nhd
    case Int32(FLASHINFER_SWIFT_LAYOUT_HND): .hnd
    default: throw .invalid("kv_layout \(kvLayout) is not one of NHD (0), HND (1)")
    }
}

/// An append with host index arrays (validated by `appendPagedKVCache`): a CUDA cache is written by
/// the kernel on `stream` (the arrays uploaded in its order), a CPU cache by the CPU backend on host
/// copies, copied back into the caller's memory.
func abiAppendHostIndices(_ appendK: UnsafePointer<DLTensor>?, _ appendV: UnsafePointer<DLTensor>?, _ indices: AppendIndices,
                          _ kCache: UnsafePointer<DLTensor>?, _ vCache: UnsafePointer<DLTensor>?, indptr: [Int32], pages: [Int32],
                          last: [Int32], kvLayout: Int32, kScale: Float, vScale: Float,
                          stream: UnsafeMutableRawPointer?) throws(ABIFailure) {
    let layout = try abiKVLayout(kvLayout)
    let (ks, vs) = (kScale > 0 ? kScale : 1, vScale > 0 ? vScale : 1)
    if let device = try cudaDevice(appendK) {
        let (ak, av) = (try deviceTensor(appendK, name: "append_key", device: device),
                        try deviceTensor(appendV, name: "append_value", device: device))
        let (kt, vt) = (try deviceTensor(kCache, name: "k_cache", device: device), try deviceTensor(vCache, name: "v_cache", device: device))
        let s = Stream.external(stream.map { OpaquePointer($0) }, device: device)
        try library { () throws(FlashInferError) in
            let cache = try PagedKVCache(k: kt, v: vt, layout: layout)
            try appendPagedKVCache(appendK: ak, appendV: av, indices: indices, cache: cache,
                                   table: PageTable(indptr: indptr, indices: pages, lastPageLen: last, pageSize: cache.pageSize),
                                   kScale: ks, vScale: vs, stream: s)
        }
        return
    }
    let (ak, av) = (try hostTensor(appendK, name: "append_key"), try hostTensor(appendV, name: "append_value"))
    let (kt, vt) = (try hostTensor(kCache, name: "k_cache"), try hostTensor(vCache, name: "v_cache"))
    try library { () throws(FlashInferError) in
        let cache = try PagedKVCache(k: kt, v: vt, layout: layout)
        try appendPagedKVCache(appendK: ak, appendV: av, indices: indices, cache: cache,
                               table: PageTable(indptr: indptr, indices: pages, lastPageLen: last, pageSize: cache.pageSize),
                               kScale: ks, vScale: vs)
    }
    // The CPU backend wrote the host copies: back into the caller's caches.
    try write(kt, into: kCache, name: "k_cache")
    try write(vt, into: vCache, name: "v_cache")
}
