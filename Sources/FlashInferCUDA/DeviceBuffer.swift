import Synchronization

/// Device memory owned by this object, with the stream-ordering state that keeps every use of it
/// ordered (docs/ORDERING.md).
///
/// The library records, per buffer, the stream of the last write it enqueued and the streams that
/// have used the buffer since. From that:
/// - a read enqueued on stream S first makes S wait for the last write when another stream wrote it
///   (`orderRead(on:)`);
/// - a write enqueued on S first makes S wait for every other stream that used the buffer since
///   its last write (`orderWrite(on:)`);
/// - a readback (`copyToHost`) runs on the writer's stream and waits for it;
/// - the free (deinit) comes after every recorded use: `cuMemFreeAsync` on the allocating stream,
///   which first waits for the other users (stream-ordered buffers, `Stream.allocate`), or
///   `cuMemFree` after synchronizing every recorded user (`Device.allocate`).
///
/// Same-stream work costs nothing extra (stream order already holds); a cross-stream use costs one
/// event record and one `cuStreamWaitEvent`. Work enqueued while a stream is being captured into a
/// CUDA graph is not recorded (it runs when the graph is replayed): see docs/ORDERING.md.
public final class DeviceBuffer: @unchecked Sendable {
    public let device: Device
    /// The device address (`CUdeviceptr`).
    public let address: CUdeviceptr
    public let byteCount: Int
    /// The stream whose order allocated this buffer and frees it (stream-ordered allocations only).
    public let orderedOn: Stream?
    /// False for memory the caller owns (`borrowing`): never freed here.
    let owned: Bool

    typealias Pending = StreamUseLog<Stream>
    private let pending = Mutex(Pending())

    init(device: Device, address: CUdeviceptr, byteCount: Int, orderedOn: Stream? = nil, owned: Bool = true) {
        self.device = device
        self.address = address
        self.byteCount = byteCount
        self.orderedOn = orderedOn
        self.owned = owned
        // Memory from the stream-ordered allocator is usable by other streams only after the
        // allocation: record it as the allocating stream's write.
        if let s = orderedOn { pending.withLock { _ = $0.write(on: s) } }
    }

    /// Device memory the caller owns (e.g. a PyTorch tensor's storage, through the C ABI): the
    /// library reads and writes it in the order of the caller's stream and never frees it. The caller
    /// keeps it alive until the work enqueued on it is done, and orders its uses across streams
    /// itself (as PyTorch does for its tensors): `orderRead` / `orderWrite` record nothing for it.
    public static func borrowing(address: CUdeviceptr, byteCount: Int, device: Device) -> DeviceBuffer {
        DeviceBuffer(device: device, address: address, byteCount: byteCount, owned: false)
    }

    deinit {
        guard owned, address != 0 else { return }
        let p = pending.withLock { $0 }
        _ = device.driver.cuCtxSetCurrent(device.context)
        if let s = orderedOn, let freeAsync = device.driver.cuMemFreeAsync {
            if !s.isCapturing {
                for u in p.streamsBeforeFree(on: s) { try? s.wait(for: u) }
            }
            _ = freeAsync(address, s.handle)
        } else {
            for u in p.streamsBeforeFree(on: nil) { _ = device.driver.cuStreamSynchronize(u.handle) }
            _ = device.driver.cuMemFree(address)
        }
    }

    private var driver: CUDADriver { device.driver }

    private func checkRange(_ offset: Int, _ count: Int, _ what: String) {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount,
                     "\(what): range \(offset)..<\(offset + count) outside buffer of \(byteCount) bytes")
    }

    // MARK: ordering

    /// Call before enqueueing work on `stream` that reads this buffer: when another stream holds
    /// the last recorded write, `stream` waits for it. Then records the use (for later writes and
    /// the free). Nothing happens while `stream` is capturing a graph.
    public func orderRead(on stream: Stream) throws(CUDAError) {
        if stream.isCapturing { return }
        try orderRead(on: stream, capturing: false)
    }

    /// Call before enqueueing work on `stream` that writes this buffer: `stream` waits for every
    /// other stream that used the buffer since its last write, and becomes the recorded writer.
    public func orderWrite(on stream: Stream) throws(CUDAError) {
        if stream.isCapturing { return }
        try orderWrite(on: stream, capturing: false)
    }

    func orderRead(on stream: Stream, capturing: Bool) throws(CUDAError) {
        guard owned, !capturing, device === stream.device else { return }
        try pending.withLock { (p: inout Pending) throws(CUDAError) in
            for w in p.read(on: stream) { try stream.wait(for: w) }
        }
    }

    func orderWrite(on stream: Stream, capturing: Bool) throws(CUDAError) {
        guard owned, !capturing, device === stream.device else { return }
        try pending.withLock { (p: inout Pending) throws(CUDAError) in
            for u in p.write(on: stream) { try stream.wait(for: u) }
        }
    }

    /// Forgets pending uses: only after the host has waited for all of them.
    func markIdle() { pending.withLock { $0 = Pending() } }

    /// The stream of the last recorded write (nil: none pending).
    public var lastWriter: Stream? { pending.withLock { $0.writer } }

    /// Waits on the host until every recorded use of this buffer has finished. For handing the
    /// memory to code that does not go through the library (a raw `address` user).
    public func synchronize() throws(CUDAError) {
        let p = pending.withLock { $0 }
        try device.makeCurrent()
        for u in p.users { try u.synchronize() }
        let before = p.users.map(ObjectIdentifier.init)
        pending.withLock { q in
            // Forget the uses only if no other thread recorded one meanwhile.
            let same = q.users.map(ObjectIdentifier.init) == before
            if same { q = Pending() }
        }
    }

    // MARK: copies (each ordered on the stream it is enqueued on)

    /// Host → device copy of `values` at byte `offset`, enqueued on `stream` after the buffer's
    /// pending uses on other streams. Returns once the driver has staged the host bytes (pageable
    /// memory): `values` may be released at once; work enqueued later on `stream` sees the data.
    public func copyFromHost<T: BitwiseCopyable>(_ values: [T], offset: Int = 0, stream: Stream) throws(CUDAError) {
        let n = values.count * MemoryLayout<T>.stride
        checkRange(offset, n, "copyFromHost")
        guard n > 0 else { return }
        try device.makeCurrent()
        try orderWrite(on: stream)
        let r = values.withUnsafeBytes {
            driver.cuMemcpyHtoDAsync(address + CUdeviceptr(offset), $0.baseAddress!, n, stream.handle)
        }
        try driver.check(r, "cuMemcpyHtoDAsync")
    }

    /// Host → device copy that is complete when it returns: enqueued on the device's library stream
    /// (after pending uses on other streams), which is then synchronized.
    public func copyFromHostBlocking<T: BitwiseCopyable>(_ values: [T], offset: Int = 0) throws(CUDAError) {
        let s = try device.libraryStream()
        try copyFromHost(values, offset: offset, stream: s)
        try s.synchronize()
        markIdle()
    }

    /// Device → host copy of `count` elements from byte `offset`, complete when it returns.
    /// Enqueued on `stream`, by default the stream of the last recorded write (else the device's
    /// library stream), after that write; then that stream is synchronized.
    public func copyToHost<T: BitwiseCopyable>(_ type: T.Type = T.self, count: Int, offset: Int = 0,
                                               stream: Stream? = nil) throws(CUDAError) -> [T] {
        let n = count * MemoryLayout<T>.stride
        checkRange(offset, n, "copyToHost")
        guard n > 0 else { return [] }
        try device.makeCurrent()
        let s: Stream
        if let given = stream ?? lastWriter { s = given } else { s = try device.libraryStream() }
        try orderRead(on: s)
        var r: CUresult = 0
        let out = [T](unsafeUninitializedCapacity: count) { buf, initialized in
            r = driver.cuMemcpyDtoHAsync(UnsafeMutableRawPointer(buf.baseAddress!), address + CUdeviceptr(offset), n, s.handle)
            initialized = count
        }
        try driver.check(r, "cuMemcpyDtoHAsync")
        try s.synchronize()
        return out
    }

    /// Device → device copy of `byteCount` bytes from `source`, enqueued on `stream` (ordered after
    /// the source's last write and this buffer's pending uses).
    public func copy(from source: DeviceBuffer, byteCount n: Int, sourceOffset: Int = 0, offset: Int = 0, stream: Stream) throws(CUDAError) {
        checkRange(offset, n, "copy(from:)")
        precondition(sourceOffset >= 0 && sourceOffset + n <= source.byteCount, "copy(from:): source range out of bounds")
        guard n > 0 else { return }
        try device.makeCurrent()
        try source.orderRead(on: stream)
        try orderWrite(on: stream)
        try driver.check(
            driver.cuMemcpyDtoDAsync(address + CUdeviceptr(offset), source.address + CUdeviceptr(sourceOffset), n, stream.handle),
            "cuMemcpyDtoDAsync")
    }

    // MARK: fills (enqueued on `stream`, ordered like a write)

    /// Fills `count` bytes (default: to the end) from byte `offset` with `value`.
    public func fill(byte value: UInt8, count: Int? = nil, offset: Int = 0, stream: Stream) throws(CUDAError) {
        let n = count ?? (byteCount - offset)
        checkRange(offset, n, "fill(byte:)")
        guard n > 0 else { return }
        try device.makeCurrent()
        try orderWrite(on: stream)
        try driver.check(driver.cuMemsetD8Async(address + CUdeviceptr(offset), value, n, stream.handle), "cuMemsetD8Async")
    }

    /// Fills `count` 16-bit words at byte `offset` with `pattern`.
    public func fill(halfword pattern: UInt16, count: Int, offset: Int = 0, stream: Stream) throws(CUDAError) {
        checkRange(offset, count * 2, "fill(halfword:)")
        guard count > 0 else { return }
        try device.makeCurrent()
        try orderWrite(on: stream)
        try driver.check(driver.cuMemsetD16Async(address + CUdeviceptr(offset), pattern, count, stream.handle), "cuMemsetD16Async")
    }

    /// Fills `count` 32-bit words at byte `offset` with `pattern`.
    public func fill(word pattern: UInt32, count: Int, offset: Int = 0, stream: Stream) throws(CUDAError) {
        checkRange(offset, count * 4, "fill(word:count:)")
        guard count > 0 else { return }
        try device.makeCurrent()
        try orderWrite(on: stream)
        try driver.check(driver.cuMemsetD32Async(address + CUdeviceptr(offset), pattern, count, stream.handle), "cuMemsetD32Async")
    }

    /// Fills 32-bit words with `pattern` (e.g. a NaN to poison outputs); the count is byteCount/4.
    public func fill(word pattern: UInt32, stream: Stream) throws(CUDAError) {
        guard byteCount >= 4 else { return }
        try fill(word: pattern, count: byteCount / 4, stream: stream)
    }
}

extension Stream {
    /// Orders one operation about to be enqueued on this stream: each buffer it reads after its
    /// last write on another stream, each buffer it writes after every other stream's pending use
    /// (`DeviceBuffer.orderRead` / `orderWrite`), with one capture query for all of them. Call it
    /// before the operation's first launch; a buffer both read and written goes in both lists.
    public func order(reads: [DeviceBuffer?], writes: [DeviceBuffer?]) throws(CUDAError) {
        let capturing = isCapturing
        if capturing {
            // Under `Graph.capture`: the graph holds these addresses, so it keeps the buffers alive.
            captureRetained.withLock { list in
                guard list != nil else { return }
                for b in reads + writes { if let b { list!.append(b) } }
            }
            return
        }
        for b in reads { try b?.orderRead(on: self, capturing: false) }
        for b in writes { try b?.orderWrite(on: self, capturing: false) }
    }

    /// `order(reads:writes:)` for up to five read and four written buffers, without building
    /// arrays: the run() paths order every launch this way (no heap allocation per call).
    public func order(read r0: DeviceBuffer?, _ r1: DeviceBuffer? = nil, _ r2: DeviceBuffer? = nil, _ r3: DeviceBuffer? = nil,
                      _ r4: DeviceBuffer? = nil,
                      write w0: DeviceBuffer?, _ w1: DeviceBuffer? = nil, _ w2: DeviceBuffer? = nil, _ w3: DeviceBuffer? = nil) throws(CUDAError) {
        if isCapturing {
            // Under `Graph.capture`: the graph holds these addresses, so it keeps the buffers alive.
            captureRetained.withLock { list in
                guard list != nil else { return }
                for b in [r0, r1, r2, r3, r4, w0, w1, w2, w3] { if let b { list!.append(b) } }
            }
            return
        }
        try r0?.orderRead(on: self, capturing: false)
        try r1?.orderRead(on: self, capturing: false)
        try r2?.orderRead(on: self, capturing: false)
        try r3?.orderRead(on: self, capturing: false)
        try r4?.orderRead(on: self, capturing: false)
        try w0?.orderWrite(on: self, capturing: false)
        try w1?.orderWrite(on: self, capturing: false)
        try w2?.orderWrite(on: self, capturing: false)
        try w3?.orderWrite(on: self, capturing: false)
    }
}

/// Anything that names a CUDA stream, for `StreamUseLog`.
protocol StreamIdentity {
    func isSame(as other: Self) -> Bool
}

extension Stream: StreamIdentity {}

/// The ordering rules of `DeviceBuffer` as a pure state machine (unit-tested without a GPU): the
/// stream of the last write and the streams that used the buffer since (the writer included).
struct StreamUseLog<S: StreamIdentity> {
    private(set) var writer: S?
    private(set) var users: [S] = []

    init() {}

    /// A read on `s`: returns the streams `s` must wait for first (the last writer, when another
    /// stream wrote and `s` has not waited for that write yet), and records the use.
    mutating func read(on s: S) -> [S] {
        // An index loop: contains(where:) (a closure context) and for-in (an iterator's generic
        // temporaries) allocate in unoptimized builds, which CI's allocation count runs.
        for i in users.indices where users[i].isSame(as: s) { return [] }
        users.append(s)
        if let w = writer, !w.isSame(as: s) { return [w] }
        return []
    }

    /// A write on `s`: returns the streams `s` must wait for first (every other stream that used
    /// the buffer since its last write), and makes `s` the writer and only user.
    mutating func write(on s: S) -> [S] {
        // The steady state of a run() loop (this stream already the writer and only user): nothing
        // to wait for and nothing to change, so nothing allocated (`users = [s]` allocated each time).
        if users.count == 1, users[0].isSame(as: s), let w = writer, w.isSame(as: s) { return [] }
        var waits: [S] = []
        for i in users.indices where !users[i].isSame(as: s) { waits.append(users[i]) }
        writer = s
        users.removeAll(keepingCapacity: true)
        users.append(s)
        return waits
    }

    /// The streams a free must come after: on stream `s` (stream-ordered free), every other user;
    /// nil (a host-side free), every user.
    func streamsBeforeFree(on s: S?) -> [S] {
        guard let s else { return users }
        return users.filter { !$0.isSame(as: s) }
    }
}
