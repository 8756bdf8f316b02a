// The multi-level cascade through the C ABI: an opaque handle around MultiLevelCascadeAttention
// (flashinfer_swift.h, "cascade"). As the batch wrappers: the backend comes from the device named at
// plan (the CPU reference, or CUDA on the plan's stream, which run must pass again).
import CFlashInferABI
import FlashInfer
import FlashInferCUDA

final class CascadeHandle {
    /// run()'s device tensors, kept between calls.
    let tensors = DeviceTensorCache()
    /// CUDA-graph mode (`create_graph`): one capacity per level.
    var capacities: [GraphCapacity]?
    var wrapper: MultiLevelCascadeAttention?
    var device: Device?
    var stream: UnsafeMutableRawPointer?
    var layout: KVLayout = .nhd
    init() {}
}

@_cdecl("flashinfer_swift_cascade_create")
public func flashinfer_swift_cascade_create(_ handle: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard let handle else { throw .invalid("handle: NULL") }
        handle.pointee = OpaquePointer(Unmanaged.passRetained(CascadeHandle()).toOpaque())
    }
}

@_cdecl("flashinfer_swift_cascade_destroy")
public func flashinfer_swift_cascade_destroy(_ handle: OpaquePointer?) {
    guard let handle else { return }
    Unmanaged<CascadeHandle>.fromOpaque(UnsafeRawPointer(handle)).release()
}

@_cdecl("flashinfer_swift_cascade_create_graph")
public func flashinfer_swift_cascade_create_graph(_ numLevels: Int32, _ maxBatch: UnsafePointer<Int32>?,
                                                  _ maxPages: UnsafePointer<Int64>?, _ maxQORows: Int64,
                                                  _ handle: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard let handle else { throw .invalid("handle: NULL") }
        guard numLevels >= 1 else { throw .invalid("num_levels \(numLevels) must be >= 1") }
        guard let maxBatch, let maxPages else { throw .invalid("max_batch / max_pages: NULL") }
        var caps: [GraphCapacity] = []
        for l in 0..<Int(numLevels) {
            caps.append(try graphCapacity(maxBatch: maxBatch[l], maxPages: maxPages[l], maxQORows: maxQORows, level: l))
        }
        let h = CascadeHandle()
        h.capacities = caps
        handle.pointee = OpaquePointer(Unmanaged.passRetained(h).toOpaque())
    }
}

func cascadeHandle(_ p: OpaquePointer?) throws(ABIFailure) -> CascadeHandle {
    guard let p else { throw .invalid("handle: NULL") }
    return Unmanaged<CascadeHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

@_cdecl("flashinfer_swift_cascade_plan")
public func flashinfer_swift_cascade_plan(
    _ handle: OpaquePointer?, _ numLevels: Int32, _ qoIndptr: UnsafePointer<UnsafePointer<Int32>?>?,
    _ kvIndptr: UnsafePointer<UnsafePointer<Int32>?>?, _ kvIndices: UnsafePointer<UnsafePointer<Int32>?>?,
    _ kvLastPageLen: UnsafePointer<UnsafePointer<Int32>?>?, _ batchSizes: UnsafePointer<Int32>?, _ numQOHeads: Int32,
    _ numKVHeads: Int32, _ headDim: Int32, _ pageSize: Int32, _ qDType: DLDataType, _ kvDType: DLDataType,
    _ options: UnsafePointer<flashinfer_swift_options>?, _ device: DLDevice, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let h = try cascadeHandle(handle)
        guard numLevels >= 0 else { throw .invalid("num_levels \(numLevels) < 0") }
        let n = Int(numLevels)
        guard n == 0 || (qoIndptr != nil && kvIndptr != nil && kvIndices != nil && kvLastPageLen != nil && batchSizes != nil) else {
            throw .invalid("qo_indptr / kv_indptr / kv_indices / kv_last_page_len / batch_sizes: NULL")
        }
        var levels: [CascadeLevel] = []
        for l in 0..<n {
            let b = Int(batchSizes![l])
            guard b >= 0 else { throw .invalid("level \(l): batch_size \(b) < 0") }
            let qo = try int32s(qoIndptr![l], b + 1, name: "level \(l) qo_indptr")
            let ip = try int32s(kvIndptr![l], b + 1, name: "level \(l) paged_kv_indptr")
            let ix = try int32s(kvIndices![l], max(Int(ip.last ?? 0), 0), name: "level \(l) paged_kv_indices")
            let lp = try int32s(kvLastPageLen![l], b, name: "level \(l) paged_kv_last_page_len")
            levels.append(CascadeLevel(qoIndptr: qo, table: PageTable(indptr: ip, indices: ix, lastPageLen: lp, pageSize: Int(pageSize))))
        }
        let q = try dtype(qDType, name: "q_data_type"), kv = try dtype(kvDType, name: "kv_data_type")
        let opts = try attentionOptions(options, prefill: true)
        let (backend, dev) = try planBackend(device, stream: stream)
        // The cascade makes its level wrappers at each plan; a new one only for a new backend.
        if h.wrapper == nil || h.device !== dev {
            h.wrapper = MultiLevelCascadeAttention(backend: backend, graphCapacities: h.capacities)
            h.stream = stream
        }
        try follow(stream: stream, current: &h.stream, device: dev) { s throws(FlashInferError) in try h.wrapper!.rebind(stream: s) }
        let w = h.wrapper!
        try library { () throws(FlashInferError) in
            try w.plan(levels: levels, numQOHeads: Int(numQOHeads), numKVHeads: Int(numKVHeads), headDim: Int(headDim),
                       dtype: q, kvDType: kv, options: opts)
        }
        (h.device, h.stream, h.layout) = (dev, stream, opts.layout)
    }
}

@_cdecl("flashinfer_swift_cascade_run")
public func flashinfer_swift_cascade_run(
    _ handle: OpaquePointer?, _ q: UnsafePointer<DLTensor>?, _ kCache: UnsafePointer<DLTensor>?, _ vCache: UnsafePointer<DLTensor>?,
    _ out: UnsafePointer<DLTensor>?, _ lse: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let h = try cascadeHandle(handle)
        guard let w = h.wrapper else { throw .invalid("run before plan") }
        try follow(stream: stream, current: &h.stream, device: h.device) { s throws(FlashInferError) in try w.rebind(stream: s) }
        try runPagedWrapper(device: h.device, tensors: h.tensors, layout: h.layout, q: q, kCache: kCache,
                            vCache: vCache, out: out, lse: lse,
                            onDevice: { qt, cache, ot, lt throws(FlashInferError) in _ = try w.run(q: qt, cache: cache, out: ot, lse: lt) },
                            onHost: { qt, cache, withLSE throws(FlashInferError) in try w.run(q: qt, cache: cache, returnLSE: withLSE) })
    }
}
