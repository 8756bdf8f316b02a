// The batch decode wrapper through the C ABI: an opaque handle around BatchDecodeWithPagedKVCache
// (flashinfer_swift.h, "batch decode"). The backend is chosen at plan time from the device the
// caller names: CPU (the reference) or CUDA (the GPU kernels on the caller's stream).
import CFlashInferABI
import FlashInfer
import FlashInferCUDA

/// The handle's object: the wrapper of the last plan, its backend's device (nil: CPU) and the
/// plan's shape, kept for run's checks.
final class BatchDecodeHandle {
    /// run()'s device tensors, kept between calls.
    let tensors = DeviceTensorCache()
    let useTensorCores: Bool?
    /// CUDA-graph mode (`create_graph`): the wrapper's fixed capacity.
    var capacity: GraphCapacity?
    var wrapper: BatchDecodeWithPagedKVCache?
    var device: Device?
    var stream: UnsafeMutableRawPointer?
    var layout: KVLayout = .nhd

    init(useTensorCores: Bool?) { self.useTensorCores = useTensorCores }
}

@_cdecl("flashinfer_swift_batch_decode_create")
public func flashinfer_swift_batch_decode_create(_ useTensorCores: Int32,
                                                 _ handle: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard let handle else { throw .invalid("handle: NULL") }
        guard (-1...1).contains(useTensorCores) else { throw .invalid("use_tensor_cores \(useTensorCores) is not -1 (auto), 0 or 1") }
        let h = BatchDecodeHandle(useTensorCores: useTensorCores < 0 ? nil : useTensorCores == 1)
        handle.pointee = OpaquePointer(Unmanaged.passRetained(h).toOpaque())
    }
}

@_cdecl("flashinfer_swift_batch_decode_create_graph")
public func flashinfer_swift_batch_decode_create_graph(_ maxBatch: Int32, _ maxPages: Int64,
                                                       _ handle: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard let handle else { throw .invalid("handle: NULL") }
        guard maxBatch > 0 else { throw .invalid("max_batch \(maxBatch) must be > 0 (len(paged_kv_last_page_len_buffer))") }
        guard maxPages > 0, maxPages < Int64(Int32.max) else {
            throw .invalid("max_pages \(maxPages) must be in 1 ..< 2^31 (len(paged_kv_indices_buffer))")
        }
        let h = BatchDecodeHandle(useTensorCores: false)
        h.capacity = GraphCapacity(maxBatch: Int(maxBatch), maxPages: Int(maxPages))
        handle.pointee = OpaquePointer(Unmanaged.passRetained(h).toOpaque())
    }
}

@_cdecl("flashinfer_swift_batch_decode_destroy")
public func flashinfer_swift_batch_decode_destroy(_ handle: OpaquePointer?) {
    guard let handle else { return }
    Unmanaged<BatchDecodeHandle>.fromOpaque(UnsafeRawPointer(handle)).release()
}

func batchDecodeHandle(_ p: OpaquePointer?) throws(ABIFailure) -> BatchDecodeHandle {
    guard let p else { throw .invalid("handle: NULL") }
    return Unmanaged<BatchDecodeHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

/// The backend a wrapper plans on for the device the caller names: the CPU reference for kDLCPU,
/// the GPU kernels on the caller's `stream` for kDLCUDA (with that device; nil for the CPU).
func planBackend(_ device: DLDevice, stream: UnsafeMutableRawPointer?) throws(ABIFailure) -> (Backend, Device?) {
    switch UInt32(device.device_type.rawValue) {
    case kDLCPU.rawValue: return (.cpu, nil)
    case kDLCUDA.rawValue:
        let d: Device
        do throws(CUDAError) { d = try Device.open(Int(device.device_id)) } catch { throw ABIFailure(.cuda(error)) }
        return (.cuda(Stream.external(stream.map { OpaquePointer($0) }, device: d)), d)
    default: throw .invalid("device type \(device.device_type.rawValue) is not supported (CPU 1, CUDA 2)")
    }
}

/// A CUDA wrapper's plan or run on `stream` while the wrapper is on another stream (`current`):
/// the wrapper moves there (`rebind(stream:)`, no re-plan; the first run waits for the plan's
/// uploads on the old stream). How a PyTorch engine plans on its current stream and captures `run`
/// under `torch.cuda.graph`, whose capture stream is another one. Nothing for the CPU (no device).
func follow(stream: UnsafeMutableRawPointer?, current: inout UnsafeMutableRawPointer?, device: Device?,
            _ rebind: (Stream) throws(FlashInferError) -> Void) throws(ABIFailure) {
    guard let device, stream != current else { return }
    try library { () throws(FlashInferError) in try rebind(Stream.external(stream.map { OpaquePointer($0) }, device: device)) }
    current = stream
}

@_cdecl("flashinfer_swift_batch_decode_plan")
public func flashinfer_swift_batch_decode_plan(
    _ handle: OpaquePointer?, _ indptr: UnsafePointer<Int32>?, _ indices: UnsafePointer<Int32>?,
    _ lastPageLen: UnsafePointer<Int32>?, _ batchSize: Int32, _ numQOHeads: Int32, _ numKVHeads: Int32, _ headDim: Int32,
    _ pageSize: Int32, _ qDType: DLDataType, _ kvDType: DLDataType, _ options: UnsafePointer<flashinfer_swift_options>?,
    _ device: DLDevice, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let h = try batchDecodeHandle(handle)
        guard batchSize >= 0 else { throw .invalid("batch_size \(batchSize) < 0") }
        guard let indptr else { throw .invalid("indptr: NULL") }
        guard lastPageLen != nil || batchSize == 0 else { throw .invalid("last_page_len: NULL") }
        let b = Int(batchSize)
        let ptr = (0...b).map { indptr[$0] }
        let nnz = Int(ptr.last ?? 0)
        guard nnz == 0 || indices != nil else { throw .invalid("indices: NULL") }
        let table = PageTable(indptr: ptr, indices: (0..<nnz).map { indices![$0] },
                              lastPageLen: (0..<b).map { lastPageLen![$0] }, pageSize: Int(pageSize))
        let q = try dtype(qDType, name: "q_data_type"), kv = try dtype(kvDType, name: "kv_data_type")
        let opts = try attentionOptions(options, prefill: false)
        let (backend, dev) = try planBackend(device, stream: stream)
        // A new device (or the first plan) needs a new wrapper; otherwise the wrapper moves to this
        // stream if need be, re-plans and reuses its buffers (a graph captured from it keeps them).
        if h.wrapper == nil || h.device !== dev {
            h.wrapper = BatchDecodeWithPagedKVCache(backend: backend, graphCapacity: h.capacity, useTensorCores: h.useTensorCores)
            h.stream = stream
        }
        try follow(stream: stream, current: &h.stream, device: dev) { s throws(FlashInferError) in try h.wrapper!.rebind(stream: s) }
        try library { () throws(FlashInferError) in
            try h.wrapper!.plan(table: table, numQOHeads: Int(numQOHeads), numKVHeads: Int(numKVHeads), headDim: Int(headDim),
                                dtype: q, kvDType: kv, options: opts)
        }
        (h.device, h.stream, h.layout) = (dev, stream, opts.layout)
    }
}

@_cdecl("flashinfer_swift_batch_decode_run")
public func flashinfer_swift_batch_decode_run(
    _ handle: OpaquePointer?, _ q: UnsafePointer<DLTensor>?, _ kCache: UnsafePointer<DLTensor>?, _ vCache: UnsafePointer<DLTensor>?,
    _ out: UnsafePointer<DLTensor>?, _ lse: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let h = try batchDecodeHandle(handle)
        guard let w = h.wrapper else { throw .invalid("run before plan") }
        try follow(stream: stream, current: &h.stream, device: h.device) { s throws(FlashInferError) in try w.rebind(stream: s) }
        try runPagedWrapper(device: h.device, tensors: h.tensors, layout: h.layout, q: q, kCache: kCache,
                            vCache: vCache, out: out, lse: lse,
                            onDevice: { qt, cache, ot, lt throws(FlashInferError) in _ = try w.run(q: qt, cache: cache, out: ot, lseOut: lt) },
                            onHost: { qt, cache, withLSE throws(FlashInferError) in try w.run(q: qt, cache: cache, returnLSE: withLSE) })
    }
}

/// The run of a paged-cache wrapper handle (batch decode, cascade): on the plan's device (CUDA
/// tensors into the caller's `out` / `lse`, on the wrapper's stream: the caller's, after `follow`) or on the host (the CPU
/// reference, its results written into the caller's arrays).
func runPagedWrapper(
    device: Device?, tensors: DeviceTensorCache, layout: KVLayout,
    q: UnsafePointer<DLTensor>?, kCache: UnsafePointer<DLTensor>?, vCache: UnsafePointer<DLTensor>?,
    out: UnsafePointer<DLTensor>?, lse: UnsafePointer<DLTensor>?,
    onDevice: (Tensor, PagedKVCache, Tensor, Tensor?) throws(FlashInferError) -> Void,
    onHost: (Tensor, PagedKVCache, Bool) throws(FlashInferError) -> AttentionOutput
) throws(ABIFailure) {
    if let device {
        let qt = try tensors.tensor(q, name: "q", device: device)
        let (kt, vt) = (try tensors.tensor(kCache, name: "k_cache", device: device), try tensors.tensor(vCache, name: "v_cache", device: device))
        let cache = try library { () throws(FlashInferError) in try PagedKVCache(k: kt, v: vt, layout: layout) }
        let ot = try tensors.tensor(out, name: "out", device: device)
        let lt = try lse.map { p throws(ABIFailure) in try tensors.tensor(p, name: "lse", device: device) }
        try library { () throws(FlashInferError) in try onDevice(qt, cache, ot, lt) }
        return
    }
    let qt = try hostTensor(q, name: "q")
    let (kt, vt) = (try hostTensor(kCache, name: "k_cache"), try hostTensor(vCache, name: "v_cache"))
    let cache = try library { () throws(FlashInferError) in try PagedKVCache(k: kt, v: vt, layout: layout) }
    let r = try library { () throws(FlashInferError) in try onHost(qt, cache, lse != nil) }
    try write(r.output, into: out, name: "out")
    if let lse, let l = r.lse { try write(l, into: lse, name: "lse") }
}
