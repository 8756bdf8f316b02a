// Index arrays as DLTensors (upstream's form) for RoPE and the paged-KV append
// (flashinfer_swift.h: flashinfer_swift_rope_tensors, flashinfer_swift_rope_cos_sin_cache_tensors,
// flashinfer_swift_append_paged_kv_cache_tensors). A CUDA index tensor is handed to the kernel as
// it is (borrowed device memory: no copy to the host, no wait, so the call can be captured in a CUDA
// graph; its values are not validated, as upstream); a CPU one is read and validated on the host.
import CFlashInferABI
import FlashInfer
import FlashInferCUDA

/// A 1-D, compact integer DLTensor: its element count and width, and where it lives.
struct ABIIndexArray {
    let name: String
    let count: Int
    let is64: Bool
    /// The first element's address (host or device); nil when empty.
    let address: UnsafeMutableRawPointer?
    /// The CUDA device index, or nil for a CPU tensor.
    let cudaIndex: Int?

    init(_ p: UnsafePointer<DLTensor>?, name: String, allow64: Bool) throws(ABIFailure) {
        guard let t = p?.pointee else { throw .invalid("\(name): NULL tensor") }
        self.name = name
        switch UInt32(t.device.device_type.rawValue) {
        case kDLCPU.rawValue: cudaIndex = nil
        case kDLCUDA.rawValue: cudaIndex = Int(t.device.device_id)
        default: throw .invalid("\(name): DLPack device type \(t.device.device_type.rawValue) is not supported")
        }
        let ok = t.dtype.lanes == 1 && UInt32(t.dtype.code) == kDLInt.rawValue && (t.dtype.bits == 32 || (allow64 && t.dtype.bits == 64))
        guard ok else {
            throw .invalid("\(name): DLPack dtype (code \(t.dtype.code), bits \(t.dtype.bits)), expected \(allow64 ? "int32 or int64" : "int32")")
        }
        // Read in place (no array: a per-layer call).
        guard t.ndim == 1, let shape = t.shape else {
            throw .invalid("\(name): shape \((try? layout(of: t, name: name).shape) ?? []), expected one axis")
        }
        let n = Int(shape[0])
        guard n >= 0 else { throw .invalid("\(name): negative dimension \(n)") }
        if let st = t.strides, n > 1, st[0] != 1 { throw .invalid("\(name): stride \(st[0]), expected a compact tensor (stride 1)") }
        count = n
        is64 = t.dtype.bits == 64
        guard count == 0 || t.data != nil else { throw .invalid("\(name): data is NULL") }
        address = t.data.map { $0 + Int(t.byte_offset) }
    }

    var onCUDA: Bool { cudaIndex != nil }

    /// The values of a CPU tensor as Int32 (int64 ones must fit).
    func hostValues() throws(ABIFailure) -> [Int32] {
        guard cudaIndex == nil else { throw .invalid("\(name): a CUDA tensor where host values are needed") }
        guard count > 0, let a = address else { return [] }
        if !is64 { return (0..<count).map { a.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) } }
        var out: [Int32] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            let v = a.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)
            guard let w = Int32(exactly: v) else { throw .invalid("\(name)[\(i)] = \(v) does not fit int32") }
            out.append(w)
        }
        return out
    }

    /// A CUDA tensor's memory, borrowed, on `device` (its device id checked).
    func deviceBuffer(_ device: Device) throws(ABIFailure) -> DeviceBuffer {
        guard cudaIndex == device.index else {
            throw .invalid("\(name): not on CUDA device \(device.index), where the call's tensors are")
        }
        return DeviceBuffer.borrowing(address: CUdeviceptr(UInt(bitPattern: address)), byteCount: count * (is64 ? 8 : 4), device: device)
    }
}

/// Index arrays that must all be on the CPU or all on the call's CUDA device: true for CUDA.
func indexArraysOnDevice(_ arrays: [ABIIndexArray], device: Device?) throws(ABIFailure) -> Bool {
    let cuda = arrays.filter(\.onCUDA)
    if cuda.isEmpty { return false }
    guard device != nil else { throw .unsupported("\(cuda[0].name): a CUDA tensor among CPU tensors (every tensor of a call must be on the same device)") }
    guard cuda.count == arrays.count else {
        let cpu = arrays.first { !$0.onCUDA }!
        throw .invalid("\(cpu.name): on the CPU while \(cuda[0].name) is on the GPU (give the index tensors all on the CPU, or all on the call's CUDA device)")
    }
    return true
}

// MARK: - RoPE

/// A RoPE call's positions as the ABI got them: the caller's device memory, or host values.
enum ABIRopePositions {
    case device(DevicePositions)
    case ragged([Int32], [Int32])
    case posIds([Int32])
}

/// Both RoPE entries' body once the positions are read: in place when q_out / k_out are NULL, else
/// into them (CUDA) or into new host tensors copied back (CPU).
func abiRope(_ q: UnsafePointer<DLTensor>?, _ k: UnsafePointer<DLTensor>?, _ qOut: UnsafePointer<DLTensor>?,
             _ kOut: UnsafePointer<DLTensor>?, side: OpSide, positions: (OpSide) throws(ABIFailure) -> ABIRopePositions,
             options: UnsafePointer<flashinfer_swift_rope_options>?) throws(ABIFailure) {
    guard (qOut == nil) == (kOut == nil) else { throw .invalid("q_out / k_out: give both (out of place) or neither (in place)") }
    let opts = try ropeOptions(options)
    let qt = try side.tensor(q, name: "q"), kt = try side.tensor(k, name: "k")
    let pos = try positions(side)
    let be = side.backend
    if qOut == nil {
        try library { () throws(FlashInferError) in
            switch pos {
            case .device(let p): try applyRopeInPlace(q: qt, k: kt, positions: p, options: opts, backend: be)
            case .ragged(let ip, let off): try applyRopeInPlace(q: qt, k: kt, indptr: ip, offsets: off, options: opts, backend: be)
            case .posIds(let p): try applyRopePosIdsInPlace(q: qt, k: kt, posIds: p, options: opts, backend: be)
            }
        }
        try side.writeBack(qt, into: q, name: "q")
        try side.writeBack(kt, into: k, name: "k")
        return
    }
    let out: (q: Tensor, k: Tensor)? = side.isCUDA ? (try side.tensor(qOut, name: "q_out"), try side.tensor(kOut, name: "k_out")) : nil
    let r = try library { () throws(FlashInferError) in
        switch pos {
        case .device(let p): try applyRope(q: qt, k: kt, positions: p, options: opts, out: out, backend: be)
        case .ragged(let ip, let off): try applyRope(q: qt, k: kt, indptr: ip, offsets: off, options: opts, out: out, backend: be)
        case .posIds(let p): try applyRopePosIds(q: qt, k: kt, posIds: p, options: opts, out: out, backend: be)
        }
    }
    try side.writeBack(r.q, into: qOut, name: "q_out")
    try side.writeBack(r.k, into: kOut, name: "k_out")
}

@_cdecl("flashinfer_swift_rope_tensors")
public func flashinfer_swift_rope_tensors(
    _ q: UnsafePointer<DLTensor>?, _ k: UnsafePointer<DLTensor>?, _ qOut: UnsafePointer<DLTensor>?, _ kOut: UnsafePointer<DLTensor>?,
    _ indptr: UnsafePointer<DLTensor>?, _ offsets: UnsafePointer<DLTensor>?, _ posIds: UnsafePointer<DLTensor>?,
    _ options: UnsafePointer<flashinfer_swift_rope_options>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        try abiRope(q, k, qOut, kOut, side: try OpSide(first: q, stream: stream), positions: { side throws(ABIFailure) in
            // The caller's device memory, or host values (ragged ones turned into positions later).
            if indptr != nil {
                let ip = try ABIIndexArray(indptr, name: "indptr", allow64: false)
                let off = try ABIIndexArray(offsets, name: "offsets", allow64: false)
                guard ip.count >= 1, off.count == ip.count - 1 else {
                    throw .invalid("offsets: \(off.count) entries, expected len(indptr) - 1 = \(ip.count - 1)")
                }
                if try indexArraysOnDevice([ip, off], device: side.device), let d = side.device {
                    return .device(.ragged(indptr: try ip.deviceBuffer(d), offsets: try off.deviceBuffer(d), batchSize: off.count))
                }
                return .ragged(try ip.hostValues(), try off.hostValues())
            }
            let pos = try ABIIndexArray(posIds, name: "pos_ids", allow64: true)
            if try indexArraysOnDevice([pos], device: side.device), let d = side.device {
                return .device(.perRow(try pos.deviceBuffer(d), int64: pos.is64))
            }
            return .posIds(try pos.hostValues())
        }, options: options)
    }
}

@_cdecl("flashinfer_swift_rope_cos_sin_cache_tensors")
public func flashinfer_swift_rope_cos_sin_cache_tensors(
    _ positions: UnsafePointer<DLTensor>?, _ query: UnsafePointer<DLTensor>?, _ key: UnsafePointer<DLTensor>?,
    _ headSize: Int32, _ cosSinCache: UnsafePointer<DLTensor>?, _ isNeox: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let side = try OpSide(first: query, stream: stream)
        let pos = try ABIIndexArray(positions, name: "positions", allow64: true)
        let qt = try side.tensor(query, name: "query"), kt = try side.tensor(key, name: "key")
        let cache = try side.tensor(cosSinCache, name: "cos_sin_cache")
        if try indexArraysOnDevice([pos], device: side.device), let d = side.device {
            let p = DevicePositions.perRow(try pos.deviceBuffer(d), int64: pos.is64)
            try library { () throws(FlashInferError) in
                try applyRopeWithCosSinCacheInPlace(positions: p, query: qt, key: kt, headSize: Int(headSize), cosSinCache: cache,
                                                    isNeox: isNeox != 0, backend: side.backend)
            }
            return
        }
        let values = try pos.hostValues()
        try library { () throws(FlashInferError) in
            try applyRopeWithCosSinCacheInPlace(positions: values, query: qt, key: kt, headSize: Int(headSize), cosSinCache: cache,
                                                isNeox: isNeox != 0, backend: side.backend)
        }
        try side.writeBack(qt, into: query, name: "query")
        try side.writeBack(kt, into: key, name: "key")
    }
}

// MARK: - paged-KV append

@_cdecl("flashinfer_swift_append_paged_kv_cache_tensors")
public func flashinfer_swift_append_paged_kv_cache_tensors(
    _ appendK: UnsafePointer<DLTensor>?, _ appendV: UnsafePointer<DLTensor>?, _ batchIndices: UnsafePointer<DLTensor>?,
    _ positions: UnsafePointer<DLTensor>?, _ kCache: UnsafePointer<DLTensor>?, _ vCache: UnsafePointer<DLTensor>?,
    _ kvIndices: UnsafePointer<DLTensor>?, _ kvIndptr: UnsafePointer<DLTensor>?, _ kvLastPageLen: UnsafePointer<DLTensor>?,
    _ kvLayout: Int32, _ kScale: Float, _ vScale: Float, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let layout = try abiKVLayout(kvLayout)
        let bi = try ABIIndexArray(batchIndices, name: "batch_indices", allow64: false)
        let ps = try ABIIndexArray(positions, name: "positions", allow64: false)
        let ix = try ABIIndexArray(kvIndices, name: "kv_indices", allow64: false)
        let ip = try ABIIndexArray(kvIndptr, name: "kv_indptr", allow64: false)
        let lp = try ABIIndexArray(kvLastPageLen, name: "kv_last_page_len", allow64: false)
        guard ps.count == bi.count else { throw .invalid("positions: \(ps.count) entries, expected len(batch_indices) = \(bi.count)") }
        guard ip.count >= 1, lp.count == ip.count - 1 else {
            throw .invalid("kv_last_page_len: \(lp.count) entries, expected len(kv_indptr) - 1 = \(ip.count - 1)")
        }
        let (ks, vs) = (kScale > 0 ? kScale : 1, vScale > 0 ? vScale : 1)
        let device = try cudaDevice(kCache)
        if try indexArraysOnDevice([bi, ps, ix, ip, lp], device: device), let device {
            let (ak, av) = (try deviceTensor(appendK, name: "append_key", device: device),
                            try deviceTensor(appendV, name: "append_value", device: device))
            let (kt, vt) = (try deviceTensor(kCache, name: "k_cache", device: device), try deviceTensor(vCache, name: "v_cache", device: device))
            let d = DeviceAppendIndices(batchIndices: try bi.deviceBuffer(device), positions: try ps.deviceBuffer(device),
                                        kvIndices: try ix.deviceBuffer(device), kvIndptr: try ip.deviceBuffer(device),
                                        nnz: bi.count, batchSize: lp.count, numIndices: ix.count)
            let s = Stream.external(stream.map { OpaquePointer($0) }, device: device)
            try library { () throws(FlashInferError) in
                let cache = try PagedKVCache(k: kt, v: vt, layout: layout)
                try appendPagedKVCache(appendK: ak, appendV: av, deviceIndices: d, cache: cache, kScale: ks, vScale: vs, stream: s)
            }
            return
        }
        // Host index arrays: the pointer entry's path (validated, then uploaded for a CUDA cache).
        let indptr = try ip.hostValues(), pages = try ix.hostValues()
        let used = Int(indptr.last ?? 0)  // kv_indices may be longer (a preallocated buffer): its first kv_indptr[-1] entries
        guard used >= 0, used <= pages.count else {
            throw .invalid("kv_indices: \(pages.count) entries, fewer than kv_indptr[-1] = \(used)")
        }
        try abiAppendHostIndices(appendK, appendV, AppendIndices(batchIndices: try bi.hostValues(), positions: try ps.hostValues()),
                                 kCache, vCache, indptr: indptr, pages: Array(pages[..<used]), last: try lp.hostValues(),
                                 kvLayout: kvLayout, kScale: kScale, vScale: vScale, stream: stream)
    }
}
