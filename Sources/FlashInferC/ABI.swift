// The C ABI (Sources/CFlashInferABI/include/flashinfer_swift.h), exported from
// libflashinfer_swift.so with @_cdecl. Every entry point catches every error: it returns a status
// and leaves the message in a thread-local slot (flashinfer_swift_last_error). DLPack tensors on
// the CPU run on the CPU reference backend; CUDA tensors run the GPU kernels
// on the caller's stream in the primary context.
import CFlashInferABI
import FlashInfer
import FlashInferCUDA

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - status and the thread-local last error

/// A failure of an ABI call: its status code and message.
struct ABIFailure: Error {
    var status: Int32
    var message: String

    static func invalid(_ m: String) -> ABIFailure { ABIFailure(status: Int32(FLASHINFER_SWIFT_ERROR_INVALID), message: m) }
    static func unsupported(_ m: String) -> ABIFailure { ABIFailure(status: Int32(FLASHINFER_SWIFT_ERROR_UNSUPPORTED), message: m) }

    /// A library error: unsupported combinations are UNSUPPORTED, CUDA errors RUNTIME, the rest INVALID.
    init(_ e: FlashInferError) {
        switch e {
        case .unsupportedCombination: status = Int32(FLASHINFER_SWIFT_ERROR_UNSUPPORTED)
        case .cuda: status = Int32(FLASHINFER_SWIFT_ERROR_RUNTIME)
        default: status = Int32(FLASHINFER_SWIFT_ERROR_INVALID)
        }
        message = e.description
    }

    init(status: Int32, message: String) {
        self.status = status
        self.message = message
    }
}

/// The key of each thread's last-error C string (malloc'd; freed on replacement and at thread exit).
private let errorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

private func setLastError(_ message: String) {
    free(pthread_getspecific(errorKey))
    pthread_setspecific(errorKey, strdup(message))
}

/// Empties the calling thread's last error after a success: the slot goes back to NULL (read as
/// ""), so a success allocates nothing (run() is called per layer).
private func clearLastError() {
    guard let p = pthread_getspecific(errorKey) else { return }
    free(p)
    pthread_setspecific(errorKey, nil)
}

/// Runs an entry point's body: OK, or the failure's status with its message recorded.
func guarded(_ body: () throws(ABIFailure) -> Void) -> Int32 {
    do {
        try body()
        clearLastError()
        return Int32(FLASHINFER_SWIFT_OK)
    } catch {
        setLastError(error.message)
        return error.status
    }
}

private nonisolated(unsafe) let versionCString: UnsafeMutablePointer<CChar> = strdup(FlashInferVersion.string)
private nonisolated(unsafe) let emptyCString: UnsafeMutablePointer<CChar> = strdup("")

@_cdecl("flashinfer_swift_version")
public func flashinfer_swift_version() -> UnsafePointer<CChar> { UnsafePointer(versionCString) }

@_cdecl("flashinfer_swift_last_error")
public func flashinfer_swift_last_error() -> UnsafePointer<CChar> {
    guard let p = pthread_getspecific(errorKey) else { return UnsafePointer(emptyCString) }
    return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
}

// MARK: - DLPack tensors

/// A DLTensor's dtype as the library's (f16, bf16 or f32, one lane).
func dtype(of t: DLTensor, name: String) throws(ABIFailure) -> DType { try dtype(t.dtype, name: name) }

/// A DLDataType as a dtype (a tensor's, or a plan's q / kv data type).
func dtype(_ d: DLDataType, name: String) throws(ABIFailure) -> DType {
    let (code, bits, lanes) = (d.code, d.bits, d.lanes)
    guard lanes == 1 else { throw .invalid("\(name): vector dtypes (lanes \(lanes)) are not supported") }
    switch (UInt32(code), bits) {
    case (kDLFloat.rawValue, 16): return .f16
    case (kDLBfloat.rawValue, 16): return .bf16
    case (kDLFloat.rawValue, 32): return .f32
    case (UInt32(FLASHINFER_SWIFT_DL_FLOAT8_E4M3FN), 8): return .e4m3
    case (UInt32(FLASHINFER_SWIFT_DL_FLOAT8_E5M2), 8): return .e5m2
    default: throw .invalid("\(name): DLPack dtype (code \(code), bits \(bits)) is not supported (float16, bfloat16, float32; float8_e4m3fn, float8_e5m2 for K/V)")
    }
}

/// The shape and element strides of a DLTensor (compact row-major when `strides` is NULL).
func layout(of t: DLTensor, name: String) throws(ABIFailure) -> (shape: [Int], strides: [Int]) {
    guard t.ndim >= 0, t.ndim <= 8 else { throw .invalid("\(name): ndim \(t.ndim) is not supported") }
    guard t.ndim == 0 || t.shape != nil else { throw .invalid("\(name): shape is NULL") }
    let shape = (0..<Int(t.ndim)).map { Int(t.shape[$0]) }
    guard shape.allSatisfy({ $0 >= 0 }) else { throw .invalid("\(name): negative dimension in shape \(shape)") }
    guard let s = t.strides else { return (shape, Tensor.contiguousStrides(shape)) }
    let strides = (0..<Int(t.ndim)).map { Int(s[$0]) }
    guard strides.allSatisfy({ $0 >= 0 }) else { throw .invalid("\(name): negative strides \(strides) are not supported") }
    return (shape, strides)
}

/// A CPU DLTensor as a host `Tensor` (its bytes copied, strides kept).
func hostTensor(_ p: UnsafePointer<DLTensor>?, name: String) throws(ABIFailure) -> Tensor {
    guard let p else { throw .invalid("\(name): NULL tensor") }
    let t = p.pointee
    try requireCPU(t, name: name)
    let dt = try dtype(of: t, name: name)
    let (shape, strides) = try layout(of: t, name: name)
    let view = Tensor(storage: .host(HostBuffer(bytes: [])), shape: shape, strides: strides, dtype: dt)
    let span = view.spanBytes
    guard span == 0 || t.data != nil else { throw .invalid("\(name): data is NULL") }
    var bytes = [UInt8](repeating: 0, count: span)
    if span > 0 {
        let base = UnsafeRawPointer(t.data!) + Int(t.byte_offset)
        bytes.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: base, count: span)) }
    }
    return Tensor(storage: .host(HostBuffer(bytes: bytes)), shape: shape, strides: strides, dtype: dt)
}

/// A CUDA DLTensor as a device `Tensor` over the caller's memory (borrowed: never copied, never
/// freed here), on `device` (the DLTensor's device id, checked).
func deviceTensor(_ p: UnsafePointer<DLTensor>?, name: String, device: Device) throws(ABIFailure) -> Tensor {
    guard let p else { throw .invalid("\(name): NULL tensor") }
    let t = p.pointee
    guard UInt32(t.device.device_type.rawValue) == kDLCUDA.rawValue else {
        throw .invalid("\(name): a CPU tensor among CUDA tensors (every tensor of a call must be on the same device)")
    }
    guard Int(t.device.device_id) == device.index else {
        throw .invalid("\(name): on CUDA device \(t.device.device_id), the call's other tensors are on device \(device.index)")
    }
    let dt = try dtype(of: t, name: name)
    let (shape, strides) = try layout(of: t, name: name)
    let span = Tensor.spanBytes(shape: shape, strides: strides, dtype: dt)
    guard span == 0 || t.data != nil else { throw .invalid("\(name): data is NULL") }
    let base = CUdeviceptr(UInt(bitPattern: t.data))
    let buffer = DeviceBuffer.borrowing(address: base, byteCount: Int(t.byte_offset) + span, device: device)
    return Tensor(storage: .device(buffer, byteOffset: Int(t.byte_offset)), shape: shape, strides: strides, dtype: dt)
}

/// Every field of a DLTensor that a value built from it depends on (data, byte offset, dtype,
/// device, shape, strides), copied once; `matches` compares a DLTensor with them in place.
struct DLTensorFields {
    let data: UnsafeMutableRawPointer?
    let byteOffset: UInt64
    let code: UInt8, bits: UInt8, lanes: UInt16
    let deviceType: UInt32, deviceID: Int32
    let shape: [Int64]
    let strides: [Int64]?

    init(_ t: DLTensor) {
        data = t.data
        byteOffset = t.byte_offset
        (code, bits, lanes) = (t.dtype.code, t.dtype.bits, t.dtype.lanes)
        (deviceType, deviceID) = (UInt32(t.device.device_type.rawValue), t.device.device_id)
        let n = max(Int(t.ndim), 0)
        shape = t.shape.map { s in (0..<n).map { s[$0] } } ?? []
        strides = t.strides.map { s in (0..<n).map { s[$0] } }
    }

    /// Whether `t` still has every field these were copied from (allocates nothing).
    func matches(_ t: DLTensor) -> Bool {
        guard t.data == data, t.byte_offset == byteOffset, t.dtype.code == code, t.dtype.bits == bits, t.dtype.lanes == lanes,
              UInt32(t.device.device_type.rawValue) == deviceType, t.device.device_id == deviceID,
              Int(t.ndim) == shape.count, (t.strides != nil) == (strides != nil) else { return false }
        if !shape.isEmpty {
            guard let ts = t.shape else { return false }
            for i in 0..<shape.count where ts[i] != shape[i] { return false }
        }
        if let strides, let ts = t.strides {
            for i in 0..<strides.count where ts[i] != strides[i] { return false }
        }
        return true
    }
}

/// Values built from a caller's DLTensors, by the DLTensor's address, each reused only while the
/// DLTensor still has every field it was built from (`DLTensorFields`): a struct rewritten in place,
/// or a new one at a freed one's address, misses. At most `capacity` entries (then it starts over).
/// Not thread-safe: each handle owns one, and a handle's calls do not overlap (flashinfer_swift.h).
///
/// An open-addressing table of entry objects (linear probing, at most half full) keyed by the
/// address with a multiplicative hash: a lookup is a few loads and one retain, where a
/// `Dictionary` of (fields, value) tuples hashed the key with SipHash and copied the tuple out
/// (retaining every array in it) — a quarter of the ABI's own time per run() on the null driver.
final class DLTensorCache<Value> {
    private final class Entry {
        let key: UnsafeRawPointer
        let fields: DLTensorFields
        let value: Value
        init(key: UnsafeRawPointer, fields: DLTensorFields, value: Value) {
            (self.key, self.fields, self.value) = (key, fields, value)
        }
    }

    private var slots: [Entry?]
    private var used = 0
    private let mask: Int
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        var n = 16
        while n < 2 * capacity { n <<= 1 }
        slots = Array(repeating: nil, count: n)
        mask = n - 1
    }

    @inline(__always) private func home(_ key: UnsafeRawPointer) -> Int {
        // Fibonacci hashing of the address (DLTensors are 8-byte aligned: the low bits carry nothing).
        let h = (UInt64(UInt(bitPattern: key)) >> 3) &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: h >> 32) & mask
    }

    /// The value cached for `p`, if `p` has not changed since (no allocation).
    func lookup(_ p: UnsafePointer<DLTensor>) -> Value? {
        let key = UnsafeRawPointer(p)
        var i = home(key)
        while let e = slots[i] {
            if e.key == key { return e.fields.matches(p.pointee) ? e.value : nil }
            i = (i + 1) & mask
        }
        return nil
    }

    func insert(_ value: Value, for p: UnsafePointer<DLTensor>) {
        let key = UnsafeRawPointer(p)
        if used >= capacity {
            for i in slots.indices { slots[i] = nil }
            used = 0
        }
        let entry = Entry(key: key, fields: DLTensorFields(p.pointee), value: value)
        var i = home(key)
        while let e = slots[i] {
            if e.key == key {
                slots[i] = entry
                return
            }
            i = (i + 1) & mask
        }
        slots[i] = entry
        used += 1
    }

    var count: Int { used }
}

/// The device `Tensor`s a handle's runs built from the caller's DLTensors. A decode step calls
/// run() once per layer with the same DLTensor structs (the Python package keeps one per tensor),
/// so each `Tensor` (its shape and strides arrays, its borrowed buffer) is built once instead of at
/// every call: a hit allocates nothing. A hit is also checked against the call's device.
final class DeviceTensorCache {
    /// 32 layers' K and V halves and a step's other tensors fit many times over.
    static let capacity = 4096
    private let cache = DLTensorCache<Tensor>(capacity: DeviceTensorCache.capacity)

    /// `deviceTensor(p, name:, device:)`, from the cache when the DLTensor is unchanged.
    func tensor(_ p: UnsafePointer<DLTensor>?, name: String, device: Device) throws(ABIFailure) -> Tensor {
        guard let p else { throw .invalid("\(name): NULL tensor") }
        if let t = cache.lookup(p), t.device === device { return t }
        let t = try deviceTensor(p, name: name, device: device)
        cache.insert(t, for: p)
        return t
    }
}

/// The CUDA device of a call whose first tensor is `p` (nil for a CPU call).
func cudaDevice(_ p: UnsafePointer<DLTensor>?) throws(ABIFailure) -> Device? {
    guard let t = p?.pointee, UInt32(t.device.device_type.rawValue) == kDLCUDA.rawValue else { return nil }
    do { return try Device.open(Int(t.device.device_id)) } catch { throw ABIFailure(.cuda(error)) }
}

func requireCPU(_ t: DLTensor, name: String) throws(ABIFailure) {
    switch UInt32(t.device.device_type.rawValue) {
    case kDLCPU.rawValue: return
    case kDLCUDA.rawValue:
        throw .unsupported("\(name): a CUDA tensor among CPU tensors (every tensor of a call must be on the same device)")
    default: throw .invalid("\(name): DLPack device type \(t.device.device_type.rawValue) is not supported")
    }
}

/// Writes a host result into a CPU DLTensor of the same shape and dtype, element by element
/// through the destination's strides.
func write(_ result: Tensor, into p: UnsafePointer<DLTensor>?, name: String) throws(ABIFailure) {
    guard let p else { throw .invalid("\(name): NULL tensor") }
    let t = p.pointee
    try requireCPU(t, name: name)
    let dt = try dtype(of: t, name: name)
    let (shape, strides) = try layout(of: t, name: name)
    guard shape == result.shape else { throw .invalid("\(name): shape \(shape), expected \(result.shape)") }
    guard dt == result.dtype else { throw .invalid("\(name): dtype \(dt.rawValue), expected \(result.dtype.rawValue)") }
    let es = dt.byteSize
    let src: [UInt8]
    do { src = try result.contiguousBytesChecked() } catch { throw ABIFailure(.cuda(error)) }
    guard !src.isEmpty else { return }
    guard let data = t.data else { throw .invalid("\(name): data is NULL") }
    let base = data + Int(t.byte_offset)
    src.withUnsafeBytes { from in
        // A compact destination takes the bytes at once; a strided one element by element.
        if strides == Tensor.contiguousStrides(shape) {
            base.copyMemory(from: from.baseAddress!, byteCount: src.count)
            return
        }
        var index = [Int](repeating: 0, count: shape.count)
        for e in 0..<result.count {
            var off = 0
            for a in 0..<shape.count { off += index[a] * strides[a] }
            (base + off * es).copyMemory(from: from.baseAddress! + e * es, byteCount: es)
            var a = shape.count - 1
            while a >= 0 {
                index[a] += 1
                if index[a] < shape[a] { break }
                index[a] = 0
                a -= 1
            }
        }
    }
}

// MARK: - options

func attentionOptions(_ p: UnsafePointer<flashinfer_swift_options>?, prefill: Bool) throws(ABIFailure) -> AttentionOptions {
    guard let o = p?.pointee else { return AttentionOptions() }
    let pos: PositionEncoding
    switch o.pos_encoding_mode {
    case Int32(FLASHINFER_SWIFT_POS_NONE): pos = .none
    case Int32(FLASHINFER_SWIFT_POS_ROPE_LLAMA): pos = .ropeLlama(scale: o.rope_scale > 0 ? o.rope_scale : 1, theta: o.rope_theta > 0 ? o.rope_theta : 1e4)
    case Int32(FLASHINFER_SWIFT_POS_ALIBI): pos = .alibi
    default: throw .invalid("pos_encoding_mode \(o.pos_encoding_mode) is not one of NONE (0), ROPE_LLAMA (1), ALIBI (2)")
    }
    let layout: KVLayout
    switch o.kv_layout {
    case Int32(FLASHINFER_SWIFT_LAYOUT_NHD): layout = .nhd
    case Int32(FLASHINFER_SWIFT_LAYOUT_HND): layout = .hnd
    default: throw .invalid("kv_layout \(o.kv_layout) is not one of NHD (0), HND (1)")
    }
    if !prefill && o.causal != 0 { throw .invalid("causal: decode has one query per head; causal applies to prefill only") }
    return AttentionOptions(causal: o.causal != 0, smScale: o.sm_scale > 0 ? o.sm_scale : nil, positionEncoding: pos,
                            logitsSoftCap: o.logits_soft_cap, windowLeft: Int(o.window_left), layout: layout,
                            kScale: o.k_scale > 0 ? o.k_scale : 1, vScale: o.v_scale > 0 ? o.v_scale : 1)
}

// MARK: - attention

private func single(decode: Bool, q: UnsafePointer<DLTensor>?, k: UnsafePointer<DLTensor>?, v: UnsafePointer<DLTensor>?,
                    out: UnsafePointer<DLTensor>?, lse: UnsafePointer<DLTensor>?,
                    options: UnsafePointer<flashinfer_swift_options>?, stream: UnsafeMutableRawPointer?) throws(ABIFailure) {
    let opts = try attentionOptions(options, prefill: !decode)
    if let device = try cudaDevice(q) {
        // CUDA tensors: the GPU kernels on the caller's stream (PyTorch's current stream), in the
        // primary context (the one PyTorch uses), into the caller's out / lse. Asynchronous.
        let (qt, kt, vt) = (try deviceTensor(q, name: "q", device: device), try deviceTensor(k, name: "k", device: device),
                            try deviceTensor(v, name: "v", device: device))
        let ot = try deviceTensor(out, name: "out", device: device)
        let lt = try lse.map { p throws(ABIFailure) in try deviceTensor(p, name: "lse", device: device) }
        let s = Stream.external(stream.map { OpaquePointer($0) }, device: device)
        try library { () throws(FlashInferError) in
            if decode {
                try singleDecode(q: qt, k: kt, v: vt, options: opts, out: ot, lse: lt, stream: s)
            } else {
                try singlePrefill(q: qt, k: kt, v: vt, options: opts, out: ot, lse: lt, stream: s)
            }
        }
        return
    }
    let qt = try hostTensor(q, name: "q"), kt = try hostTensor(k, name: "k"), vt = try hostTensor(v, name: "v")
    let r = try library { () throws(FlashInferError) in
        decode
            ? try singleDecode(q: qt, k: kt, v: vt, options: opts, returnLSE: lse != nil, backend: .cpu)
            : try singlePrefill(q: qt, k: kt, v: vt, options: opts, returnLSE: lse != nil, backend: .cpu)
    }
    try write(r.output, into: out, name: "out")
    if let lse, let l = r.lse { try write(l, into: lse, name: "lse") }
}

@_cdecl("flashinfer_swift_single_decode")
public func flashinfer_swift_single_decode(_ q: UnsafePointer<DLTensor>?, _ k: UnsafePointer<DLTensor>?, _ v: UnsafePointer<DLTensor>?,
                                           _ out: UnsafePointer<DLTensor>?, _ lse: UnsafePointer<DLTensor>?,
                                           _ options: UnsafePointer<flashinfer_swift_options>?, _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in try single(decode: true, q: q, k: k, v: v, out: out, lse: lse, options: options, stream: stream) }
}

@_cdecl("flashinfer_swift_single_prefill")
public func flashinfer_swift_single_prefill(_ q: UnsafePointer<DLTensor>?, _ k: UnsafePointer<DLTensor>?, _ v: UnsafePointer<DLTensor>?,
                                            _ out: UnsafePointer<DLTensor>?, _ lse: UnsafePointer<DLTensor>?,
                                            _ options: UnsafePointer<flashinfer_swift_options>?, _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in try single(decode: false, q: q, k: k, v: v, out: out, lse: lse, options: options, stream: stream) }
}

// MARK: - state merges

/// Runs a library call, its error as an ABI failure.
func library<T>(_ body: () throws(FlashInferError) -> T) throws(ABIFailure) -> T {
    do { return try body() } catch { throw ABIFailure(error) }
}

@_cdecl("flashinfer_swift_merge_state")
public func flashinfer_swift_merge_state(_ va: UnsafePointer<DLTensor>?, _ sa: UnsafePointer<DLTensor>?, _ vb: UnsafePointer<DLTensor>?,
                                         _ sb: UnsafePointer<DLTensor>?, _ vOut: UnsafePointer<DLTensor>?,
                                         _ sOut: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in
        let side = try OpSide(first: va, stream: stream)
        let (a, sA, b, sB) = (try side.tensor(va, name: "v_a"), try side.tensor(sa, name: "s_a"),
                              try side.tensor(vb, name: "v_b"), try side.tensor(sb, name: "s_b"))
        let r = try library { () throws(FlashInferError) in try mergeState(va: a, sa: sA, vb: b, sb: sB, backend: side.backend) }
        try side.copyResult(r.v, into: vOut, name: "v_out")
        try side.copyResult(r.s, into: sOut, name: "s_out")
    }
}

@_cdecl("flashinfer_swift_merge_state_in_place")
public func flashinfer_swift_merge_state_in_place(_ v: UnsafePointer<DLTensor>?, _ s: UnsafePointer<DLTensor>?,
                                                  _ vOther: UnsafePointer<DLTensor>?, _ sOther: UnsafePointer<DLTensor>?,
                                                  _ mask: UnsafePointer<UInt8>?, _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in
        // CUDA: merged in place in the caller's memory. CPU: into host copies of v and s, written back.
        let side = try OpSide(first: v, stream: stream)
        let (vt, st) = (try side.tensor(v, name: "v"), try side.tensor(s, name: "s"))
        let (vo, so) = (try side.tensor(vOther, name: "v_other"), try side.tensor(sOther, name: "s_other"))
        let m = mask.map { p in (0..<(vt.shape.first ?? 0)).map { p[$0] } }
        try library { () throws(FlashInferError) in
            try mergeStateInPlace(v: vt, s: st, vOther: vo, sOther: so, mask: m, backend: side.backend)
        }
        try side.writeBack(vt, into: v, name: "v")
        try side.writeBack(st, into: s, name: "s")
    }
}

@_cdecl("flashinfer_swift_merge_state_in_place_mask_tensor")
public func flashinfer_swift_merge_state_in_place_mask_tensor(_ v: UnsafePointer<DLTensor>?, _ s: UnsafePointer<DLTensor>?,
                                                              _ vOther: UnsafePointer<DLTensor>?, _ sOther: UnsafePointer<DLTensor>?,
                                                              _ mask: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard let mt = mask?.pointee else { throw .invalid("mask: NULL tensor (use flashinfer_swift_merge_state_in_place without a mask)") }
        let side = try OpSide(first: v, stream: stream)
        let (vt, st) = (try side.tensor(v, name: "v"), try side.tensor(s, name: "s"))
        let (vo, so) = (try side.tensor(vOther, name: "v_other"), try side.tensor(sOther, name: "s_other"))
        let n = vt.shape.first ?? 0
        // The caller's CUDA mask is read by the kernel where it is (no copy to the host); a CPU mask is
        // read here (and uploaded by the CUDA backend).
        let onDevice = side.device != nil && UInt32(mt.device.device_type.rawValue) == kDLCUDA.rawValue
        let m = try compactBuffer(mask, name: "mask", shape: [n], bits: 8, codes: [kDLBool.rawValue, kDLUInt.rawValue, kDLInt.rawValue],
                                  what: "bool or uint8", device: onDevice ? side.device : nil, shapeName: "positions")
        if onDevice, let device = side.device, case .cuda(let stream) = side.backend {
            let buffer = DeviceBuffer.borrowing(address: CUdeviceptr(UInt(bitPattern: m)), byteCount: n, device: device)
            try library { () throws(FlashInferError) in
                try mergeStateInPlace(v: vt, s: st, vOther: vo, sOther: so, deviceMask: buffer, stream: stream)
            }
            return
        }
        let values = (0..<n).map { m!.load(fromByteOffset: $0, as: UInt8.self) }
        try library { () throws(FlashInferError) in
            try mergeStateInPlace(v: vt, s: st, vOther: vo, sOther: so, mask: values, backend: side.backend)
        }
        try side.writeBack(vt, into: v, name: "v")
        try side.writeBack(st, into: s, name: "s")
    }
}

@_cdecl("flashinfer_swift_merge_states")
public func flashinfer_swift_merge_states(_ v: UnsafePointer<DLTensor>?, _ s: UnsafePointer<DLTensor>?, _ vOut: UnsafePointer<DLTensor>?,
                                          _ sOut: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in
        let side = try OpSide(first: v, stream: stream)
        let (vt, st) = (try side.tensor(v, name: "v"), try side.tensor(s, name: "s"))
        let r = try library { () throws(FlashInferError) in try mergeStates(v: vt, s: st, backend: side.backend) }
        try side.copyResult(r.v, into: vOut, name: "v_out")
        try side.copyResult(r.s, into: sOut, name: "s_out")
    }
}
