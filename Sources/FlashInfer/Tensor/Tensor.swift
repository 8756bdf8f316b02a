import FlashInferCUDA

/// Where a tensor's bytes live.
public enum TensorStorage: @unchecked Sendable {
    /// Device memory: a buffer and a byte offset into it.
    case device(DeviceBuffer, byteOffset: Int)
    /// Host memory, owned.
    case host(HostBuffer)
}

/// Host bytes shared by tensor views.
public final class HostBuffer: @unchecked Sendable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
}

/// A strided view of elements of one dtype, on the device or the host.
///
/// Shapes and strides are in elements, outermost first (row-major when contiguous). Tensors are
/// views: copying a `Tensor` shares its storage. Kernels read the device address, the dtype, the
/// shape and the strides; validation (`Validation/`) checks them before any launch.
public struct Tensor: Sendable {
    public let storage: TensorStorage
    public let shape: [Int]
    public let strides: [Int]
    public let dtype: DType
    /// Offset of element 0 from the start of the storage, in elements (views into a larger tensor).
    public let offset: Int

    public init(storage: TensorStorage, shape: [Int], strides: [Int]? = nil, dtype: DType, offset: Int = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(offset >= 0, "negative offset")
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides ?? Tensor.contiguousStrides(shape)
        self.dtype = dtype
        precondition(self.strides.count == shape.count, "strides \(self.strides) do not match shape \(shape)")
    }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    public var rank: Int { shape.count }
    public var count: Int {
        var n = 1
        for i in shape.indices { n *= shape[i] }  // not reduce(1, *): unoptimized builds allocate for it (run() paths ask)
        return n
    }
    /// Row-major compact (`strides == Tensor.contiguousStrides(shape)`), or at most one element.
    /// Compared in place: run() paths ask it on every call (no array built).
    public var isContiguous: Bool {
        var expected = 1
        var compact = true
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            if strides[i] != expected { compact = false; break }
            expected *= shape[i]
        }
        return compact || count <= 1
    }
    public var isOnDevice: Bool { if case .device = storage { true } else { false } }

    /// The device, for device tensors.
    public var device: Device? {
        if case .device(let b, _) = storage { return b.device }
        return nil
    }

    /// The device address of element 0 (nil for host tensors).
    public var deviceAddress: CUdeviceptr? {
        if case .device(let b, let off) = storage { return b.address + CUdeviceptr(off + offset * dtype.byteSize) }
        return nil
    }

    /// Bytes spanned from element 0 to the last element, inclusive.
    public var spanBytes: Int { Tensor.spanBytes(shape: shape, strides: strides, dtype: dtype) }

    /// The bytes from a view's first element to its last, inclusive (0 when it has no elements).
    public static func spanBytes(shape: [Int], strides: [Int], dtype: DType) -> Int {
        guard !shape.contains(0) else { return 0 }
        let last = zip(shape, strides).reduce(0) { $0 + ($1.0 - 1) * $1.1 }
        return (last + 1) * dtype.byteSize
    }

    // MARK: making tensors

    /// A contiguous host tensor holding `values` rounded to `dtype` (round-to-nearest-even).
    public static func host(_ values: [Float], shape: [Int], dtype: DType) -> Tensor {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        return Tensor(storage: .host(HostBuffer(bytes: dtype.encode(values))), shape: shape, dtype: dtype)
    }

    /// Uninitialised contiguous device memory (`cuMemAlloc`: usable from any stream at once).
    public static func empty(shape: [Int], dtype: DType, device: Device) throws(CUDAError) -> Tensor {
        let n = shape.reduce(1, *) * dtype.byteSize
        return Tensor(storage: .device(try device.allocate(byteCount: n), byteOffset: 0), shape: shape, dtype: dtype)
    }

    /// Uninitialised contiguous device memory from the stream-ordered allocator, for work on
    /// `stream` (other streams' library work waits for the allocation; freed in `stream`'s order).
    public static func empty(shape: [Int], dtype: DType, stream: Stream) throws(CUDAError) -> Tensor {
        let n = shape.reduce(1, *) * dtype.byteSize
        return Tensor(storage: .device(try stream.allocate(byteCount: n), byteOffset: 0), shape: shape, dtype: dtype)
    }

    /// The device buffer behind a device tensor (nil for host tensors).
    public var buffer: DeviceBuffer? {
        if case .device(let b, _) = storage { return b }
        return nil
    }

    /// A contiguous device copy of this tensor (host or device source; strided sources are
    /// packed), complete when this returns: usable from any stream and by any code.
    public func toDevice(_ device: Device) throws(CUDAError) -> Tensor {
        let bytes = try contiguousBytesChecked()
        let buf = try device.allocate(byteCount: bytes.count)
        try buf.copyFromHostBlocking(bytes)
        return Tensor(storage: .device(buf, byteOffset: 0), shape: shape, dtype: dtype)
    }

    /// A contiguous device copy of this tensor, allocated and copied in `stream`'s order without a
    /// host wait: work enqueued on `stream` afterwards sees it; other streams' library work waits
    /// for the copy (docs/ORDERING.md). The host bytes are staged before this returns.
    public func toDevice(stream: Stream) throws(CUDAError) -> Tensor {
        let bytes = try contiguousBytesChecked()
        let buf = try stream.allocate(byteCount: bytes.count)
        try buf.copyFromHost(bytes, stream: stream)
        return Tensor(storage: .device(buf, byteOffset: 0), shape: shape, dtype: dtype)
    }

    /// The elements, converted to Float, in row-major order of `shape`. For a device tensor this
    /// waits for the stream that last wrote it (or `stream`, when given) and copies on it.
    public func toFloats(stream: Stream? = nil) throws(CUDAError) -> [Float] {
        dtype.decode(try contiguousBytesChecked(stream: stream))
    }

    /// The raw bytes of the elements in row-major order (a host copy for device tensors, made
    /// after the tensor's last write: on `stream` when given, else on the writer's stream).
    public func contiguousBytesChecked(stream: Stream? = nil) throws(CUDAError) -> [UInt8] {
        switch storage {
        case .host:
            return contiguousBytes()
        case .device(let buf, let off):
            let raw: [UInt8] = try buf.copyToHost(UInt8.self, count: spanBytes, offset: off + offset * dtype.byteSize, stream: stream)
            return gather(raw)
        }
    }

    /// Host-only variant of `contiguousBytesChecked` (device tensors trap: use the checked one).
    func contiguousBytes() -> [UInt8] {
        switch storage {
        case .host(let h): return gather(offset == 0 ? h.bytes : Array(h.bytes[(offset * dtype.byteSize)...]))
        case .device: preconditionFailure("contiguousBytes() on a device tensor: use contiguousBytesChecked()")
        }
    }

    private func gather(_ raw: [UInt8]) -> [UInt8] {
        if isContiguous { return Array(raw.prefix(count * dtype.byteSize)) }
        let es = dtype.byteSize
        var out = [UInt8]()
        out.reserveCapacity(count * es)
        var idx = [Int](repeating: 0, count: rank)
        for _ in 0..<count {
            let off = zip(idx, strides).reduce(0) { $0 + $1.0 * $1.1 } * es
            out.append(contentsOf: raw[off..<(off + es)])
            var d = rank - 1
            while d >= 0 {
                idx[d] += 1
                if idx[d] < shape[d] { break }
                idx[d] = 0
                d -= 1
            }
        }
        return out
    }

    /// Fills a device tensor's whole span with NaN (f32 `0x7FC00000`, f16/bf16 `0x7FFF`, fp8
    /// `0x7F`) before a launch, so that any element a kernel fails to write is caught. Enqueued on
    /// `stream` (ordered like a write); without a stream, on the library stream and complete on return.
    public func poison(stream: Stream? = nil) throws(CUDAError) {
        guard case .device(let buf, let boff) = storage, count > 0 else { return }
        let n = spanBytes / dtype.byteSize
        let off = boff + offset * dtype.byteSize
        let s: Stream
        if let stream { s = stream } else { s = try buf.device.libraryStream() }
        switch dtype.byteSize {
        case 4: try buf.fill(word: 0x7FC0_0000, count: n, offset: off, stream: s)
        case 2: try buf.fill(halfword: 0x7FFF, count: n, offset: off, stream: s)
        default: try buf.fill(byte: 0x7F, count: n, offset: off, stream: s)
        }
        if stream == nil { try s.synchronize() }
    }
}

extension Tensor {
    /// The view with `axis` fixed at `index` (rank − 1), sharing storage.
    public func select(axis: Int, index: Int) -> Tensor {
        precondition(axis >= 0 && axis < rank && index >= 0 && index < shape[axis], "select(axis: \(axis), index: \(index)) out of range for \(shape)")
        var sh = shape, st = strides
        sh.remove(at: axis)
        st.remove(at: axis)
        return Tensor(storage: storage, shape: sh, strides: st, dtype: dtype, offset: offset + index * strides[axis])
    }

    /// The same elements viewed with another shape (contiguous tensors only).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(isContiguous && newShape.reduce(1, *) == count, "reshaped(\(newShape)) of \(self)")
        return Tensor(storage: storage, shape: newShape, dtype: dtype, offset: offset)
    }

    /// The host bytes and the element strides, for CPU kernels that index a host tensor in place.
    func withHostBytes<R>(_ body: (inout [UInt8]) throws -> R) rethrows -> R {
        guard case .host(let h) = storage else { preconditionFailure("withHostBytes on a device tensor") }
        return try body(&h.bytes)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        "Tensor(\(dtype) \(shape)\(isContiguous ? "" : " strides \(strides)") on \(isOnDevice ? "device" : "host"))"
    }
}

extension Stream {
    /// `order(reading:writing:readingBuffers:writingBuffers:)` for up to three read tensors, two
    /// written ones and one library buffer each way, without building arrays (run() paths).
    func order(reading r0: Tensor?, _ r1: Tensor?, _ r2: Tensor?, writing w0: Tensor?, _ w1: Tensor?,
               readingBuffer rb: DeviceBuffer?, writingBuffer wb: DeviceBuffer?) throws(CUDAError) {
        try order(read: r0?.buffer, r1?.buffer, r2?.buffer, rb, write: w0?.buffer, w1?.buffer, wb)
    }

    /// Orders one operation about to be enqueued on this stream (docs/ORDERING.md): the device
    /// tensors and buffers it reads wait for their last write on another stream; those it writes
    /// wait for every other stream's pending use and record this stream as their writer. Host
    /// tensors and nils are skipped.
    func order(reading: [Tensor?], writing: [Tensor?], readingBuffers: [DeviceBuffer?] = [],
               writingBuffers: [DeviceBuffer?] = []) throws(CUDAError) {
        try order(reads: reading.map { $0?.buffer } + readingBuffers, writes: writing.map { $0?.buffer } + writingBuffers)
    }
}
