// The batch prefill wrapper through the C ABI: an opaque handle around BatchPrefillAttention, paged
// or ragged as planned (flashinfer_swift.h, "batch prefill"). As batch decode: the backend comes
// from the device named at plan (CPU reference, or CUDA on the plan's stream).
import CFlashInferABI
import FlashInfer
import FlashInferCUDA

final class BatchPrefillHandle {
    /// run()'s device tensors, kept between calls.
    let tensors = DeviceTensorCache()
    /// CUDA-graph mode (`create_graph`): the wrapper's fixed capacity.
    var capacity: GraphCapacity?
    var wrapper: BatchPrefillAttention?
    var device: Device?
    var stream: UnsafeMutableRawPointer?
    var layout: KVLayout = .nhd
    var paged = true
    init() {}
}

@_cdecl("flashinfer_swift_batch_prefill_create")
public func flashinfer_swift_batch_prefill_create(_ handle: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard let handle else { throw .invalid("handle: NULL") }
        handle.pointee = OpaquePointer(Unmanaged.passRetained(BatchPrefillHandle()).toOpaque())
    }
}

@_cdecl("flashinfer_swift_batch_prefill_destroy")
public func flashinfer_swift_batch_prefill_destroy(_ handle: OpaquePointer?) {
    guard let handle else { return }
    Unmanaged<BatchPrefillHandle>.fromOpaque(UnsafeRawPointer(handle)).release()
}

@_cdecl("flashinfer_swift_batch_prefill_create_graph")
public func flashinfer_swift_batch_prefill_create_graph(_ maxBatch: Int32, _ maxPages: Int64, _ maxQORows: Int64,
                                                        _ handle: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard let handle else { throw .invalid("handle: NULL") }
        let cap = try graphCapacity(maxBatch: maxBatch, maxPages: maxPages, maxQORows: maxQORows, level: nil)
        let h = BatchPrefillHandle()
        h.capacity = cap
        handle.pointee = OpaquePointer(Unmanaged.passRetained(h).toOpaque())
    }
}

/// A create_graph's capacity, checked: max_batch > 0, max_pages >= 0 (0: ragged K/V only),
/// max_qo_rows > 0, each below 2^31.
func graphCapacity(maxBatch: Int32, maxPages: Int64, maxQORows: Int64, level: Int?) throws(ABIFailure) -> GraphCapacity {
    let tag = level.map { "level \($0) " } ?? ""
    guard maxBatch > 0 else { throw .invalid("\(tag)max_batch \(maxBatch) must be > 0 (len(qo_indptr_buf) - 1)") }
    guard maxPages >= 0, maxPages < Int64(Int32.max) else {
        throw .invalid("\(tag)max_pages \(maxPages) must be in 0 ..< 2^31 (len(paged_kv_indices_buf); 0 for ragged K/V)")
    }
    guard maxQORows > 0, maxQORows < Int64(Int32.max) else {
        throw .invalid("\(tag)max_qo_rows \(maxQORows) must be in 1 ..< 2^31 (the query rows of every plan: qo_indptr[-1])")
    }
    return GraphCapacity(maxBatch: Int(maxBatch), maxPages: Int(maxPages), maxQORows: Int(maxQORows))
}

func batchPrefillHandle(_ p: OpaquePointer?) throws(ABIFailure) -> BatchPrefillHandle {
    guard let p else { throw .invalid("handle: NULL") }
    return Unmanaged<BatchPrefillHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

func int32s(_ p: UnsafePointer<Int32>?, _ n: Int, name: String) throws(ABIFailure) -> [Int32] {
    guard n > 0 else { return [] }
    guard let p else { throw .invalid("\(name): NULL") }
    return (0..<n).map { p[$0] }
}

@_cdecl("flashinfer_swift_batch_prefill_plan")
public func flashinfer_swift_batch_prefill_plan(
    _ handle: OpaquePointer?, _ qoIndptr: UnsafePointer<Int32>?, _ kvIndptr: UnsafePointer<Int32>?,
    _ kvIndices: UnsafePointer<Int32>?, _ kvLastPageLen: UnsafePointer<Int32>?, _ batchSize: Int32, _ numQOHeads: Int32,
    _ numKVHeads: Int32, _ headDim: Int32, _ pageSize: Int32, _ qDType: DLDataType, _ kvDType: DLDataType,
    _ options: UnsafePointer<flashinfer_swift_options>?, _ packedMask: UnsafePointer<UInt8>?, _ maskIndptr: UnsafePointer<Int32>?,
    _ device: DLDevice, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let h = try batchPrefillHandle(handle)
        guard batchSize >= 0 else { throw .invalid("batch_size \(batchSize) < 0") }
        let b = Int(batchSize)
        let qo = try int32s(qoIndptr, b + 1, name: "qo_indptr")
        let kvp = try int32s(kvIndptr, b + 1, name: "kv_indptr")
        let paged = pageSize > 0
        let q = try dtype(qDType, name: "q_data_type"), kv = try dtype(kvDType, name: "kv_data_type")
        let opts = try attentionOptions(options, prefill: true)
        var mask: BatchCustomMask? = nil
        if let maskIndptr {
            let ind = (0...b).map { maskIndptr[$0] }
            let bytes = Int(ind.last ?? 0)
            guard bytes == 0 || packedMask != nil else { throw .invalid("packed_custom_mask: NULL") }
            mask = .packed((0..<bytes).map { packedMask![$0] }, indptr: ind)
        }
        let (backend, dev) = try planBackend(device, stream: stream)
        if h.wrapper == nil || h.device !== dev {
            h.wrapper = BatchPrefillAttention(backend: backend, graphCapacity: h.capacity)
            h.stream = stream
        }
        try follow(stream: stream, current: &h.stream, device: dev) { s throws(FlashInferError) in try h.wrapper!.rebind(stream: s) }
        let w = h.wrapper!
        if paged {
            let nnz = Int(kvp.last ?? 0)
            let table = PageTable(indptr: kvp, indices: try int32s(kvIndices, nnz, name: "paged_kv_indices"),
                                  lastPageLen: try int32s(kvLastPageLen, b, name: "paged_kv_last_page_len"), pageSize: Int(pageSize))
            try library { () throws(FlashInferError) in
                try w.plan(qoIndptr: qo, table: table, numQOHeads: Int(numQOHeads), numKVHeads: Int(numKVHeads), headDim: Int(headDim),
                           dtype: q, kvDType: kv, options: opts, customMask: mask)
            }
        } else {
            try library { () throws(FlashInferError) in
                try w.plan(qoIndptr: qo, kvIndptr: kvp, numQOHeads: Int(numQOHeads), numKVHeads: Int(numKVHeads), headDim: Int(headDim),
                           dtype: q, kvDType: kv, options: opts, customMask: mask)
            }
        }
        (h.device, h.stream, h.layout, h.paged) = (dev, stream, opts.layout, paged)
    }
}

@_cdecl("flashinfer_swift_batch_prefill_run")
public func flashinfer_swift_batch_prefill_run(
    _ handle: OpaquePointer?, _ q: UnsafePointer<DLTensor>?, _ k: UnsafePointer<DLTensor>?, _ v: UnsafePointer<DLTensor>?,
    _ out: UnsafePointer<DLTensor>?, _ lse: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let h = try batchPrefillHandle(handle)
        guard let w = h.wrapper else { throw .invalid("run before plan") }
        func kv(_ kt: Tensor, _ vt: Tensor) throws(ABIFailure) -> BatchKV {
            guard h.paged else { return .ragged(k: kt, v: vt) }
            return .paged(try library { () throws(FlashInferError) in try PagedKVCache(k: kt, v: vt, layout: h.layout) })
        }
        if let device = h.device {
            try follow(stream: stream, current: &h.stream, device: device) { s throws(FlashInferError) in try w.rebind(stream: s) }
            let tensors = h.tensors
            let qt = try tensors.tensor(q, name: "q", device: device)
            let cache = try kv(try tensors.tensor(k, name: "k", device: device), try tensors.tensor(v, name: "v", device: device))
            let ot = try tensors.tensor(out, name: "out", device: device)
            let lt = try lse.map { p throws(ABIFailure) in try tensors.tensor(p, name: "lse", device: device) }
            try library { () throws(FlashInferError) in try w.run(q: qt, kv: cache, out: ot, lse: lt) }
            return
        }
        let qt = try hostTensor(q, name: "q")
        let cache = try kv(try hostTensor(k, name: "k"), try hostTensor(v, name: "v"))
        let r = try library { () throws(FlashInferError) in try w.run(q: qt, kv: cache, returnLSE: lse != nil) }
        try write(r.output, into: out, name: "out")
        if let lse, let l = r.lse { try write(l, into: lse, name: "lse") }
    }
}
