import Synchronization

/// Properties of a CUDA device, read once from the driver.
public struct DeviceProperties: Sendable, Hashable {
    public var name: String
    public var computeCapability: (major: Int, minor: Int) { (ccMajor, ccMinor) }
    public var ccMajor: Int
    public var ccMinor: Int
    public var multiprocessorCount: Int
    public var sharedMemoryPerBlock: Int
    public var sharedMemoryPerBlockOptin: Int
    public var sharedMemoryPerMultiprocessor: Int
    public var maxThreadsPerMultiprocessor: Int
    public var registersPerBlock: Int
    public var l2CacheSize: Int
    public var totalMemory: Int
    /// Peak memory clock (kHz) and global memory bus width (bits), 0 where the driver does not
    /// report them: the memory's peak bandwidth is `2 · clock · width / 8` (the decode path model's
    /// fallback for an unknown card's bandwidth).
    public var memoryClockKHz: Int = 0
    public var memoryBusWidthBits: Int = 0

    /// Memberwise (for planners and tests that model a device without opening one).
    public init(name: String, ccMajor: Int, ccMinor: Int, multiprocessorCount: Int, sharedMemoryPerBlock: Int,
                sharedMemoryPerBlockOptin: Int, sharedMemoryPerMultiprocessor: Int, maxThreadsPerMultiprocessor: Int,
                registersPerBlock: Int, l2CacheSize: Int, totalMemory: Int, memoryClockKHz: Int = 0, memoryBusWidthBits: Int = 0) {
        self.name = name
        self.ccMajor = ccMajor
        self.ccMinor = ccMinor
        self.multiprocessorCount = multiprocessorCount
        self.sharedMemoryPerBlock = sharedMemoryPerBlock
        self.sharedMemoryPerBlockOptin = sharedMemoryPerBlockOptin
        self.sharedMemoryPerMultiprocessor = sharedMemoryPerMultiprocessor
        self.maxThreadsPerMultiprocessor = maxThreadsPerMultiprocessor
        self.registersPerBlock = registersPerBlock
        self.l2CacheSize = l2CacheSize
        self.totalMemory = totalMemory
        self.memoryClockKHz = memoryClockKHz
        self.memoryBusWidthBits = memoryBusWidthBits
    }

    /// An H100 SXM as the planners' tests model it.
    public static let h100 = DeviceProperties(
        name: "NVIDIA H100 80GB HBM3", ccMajor: 9, ccMinor: 0, multiprocessorCount: 132, sharedMemoryPerBlock: 48 * 1024,
        sharedMemoryPerBlockOptin: 227 * 1024, sharedMemoryPerMultiprocessor: 228 * 1024, maxThreadsPerMultiprocessor: 2048,
        registersPerBlock: 65536, l2CacheSize: 50 * 1024 * 1024, totalMemory: 80 * 1024 * 1024 * 1024,
        memoryClockKHz: 2_619_000, memoryBusWidthBits: 5120)

    /// The NVRTC architecture to compile for: the exact one, with the `a` suffix on Hopper and
    /// later where architecture-specific instructions (wgmma, setmaxnreg) exist.
    public var nvrtcArchitecture: String {
        let base = "sm_\(ccMajor)\(ccMinor)"
        return ccMajor >= 9 ? base + "a" : base
    }
}

/// One CUDA device with its primary context.
///
/// Every operation makes the primary context current on the calling thread first
/// (`cuCtxSetCurrent` is cheap), so a `Device` may be used from any thread or task.
public final class Device: @unchecked Sendable {
    public let index: Int
    public let driver: CUDADriver
    public let properties: DeviceProperties
    let context: CUhandle?
    /// Whether `Stream.allocate` uses the stream-ordered allocator (off with
    /// `FLASHINFER_STREAM_ORDERED_ALLOC=0`, or once the device reports it unsupported).
    public var streamOrderedAllocation: Bool {
        driver.cuMemAllocAsync != nil && driver.cuMemFreeAsync != nil && streamOrdered.withLock { $0 }
    }
    func disableStreamOrderedAllocation() { streamOrdered.withLock { $0 = false } }
    private let streamOrdered = Mutex<Bool>(Env.get("FLASHINFER_STREAM_ORDERED_ALLOC") != "0")

    private static let devices = Mutex<[Int: Device]>([:])

    /// Device `index` (default 0), opened once per process.
    public static func open(_ index: Int = 0) throws(CUDAError) -> Device {
        let driver = try CUDADriver.shared()
        let count = try driver.deviceCount()
        guard count > 0 else { throw .noDevice }
        guard index >= 0 && index < count else { throw .invalidDevice(index: index, count: count) }
        if let d = devices.withLock({ $0[index] }) { return d }
        let d = try Device(driver: driver, index: index)
        return devices.withLock { table in
            if let existing = table[index] { return existing }
            table[index] = d
            return d
        }
    }

    private init(driver: CUDADriver, index: Int) throws(CUDAError) {
        self.driver = driver
        self.index = index
        var dev: Int32 = 0
        try driver.check(driver.cuDeviceGet(&dev, Int32(index)), "cuDeviceGet")
        var nameBuf = [CChar](repeating: 0, count: 256)
        try driver.check(driver.cuDeviceGetName(&nameBuf, 256, dev), "cuDeviceGetName")
        func attr(_ a: Int32) throws(CUDAError) -> Int {
            var v: Int32 = 0
            try driver.check(driver.cuDeviceGetAttribute(&v, a, dev), "cuDeviceGetAttribute(\(a))")
            return Int(v)
        }
        var total = 0
        try driver.check(driver.cuDeviceTotalMem(&total, dev), "cuDeviceTotalMem")
        // CUdevice_attribute values from cuda.h.
        properties = DeviceProperties(
            name: String(decoding: nameBuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
            ccMajor: try attr(75), ccMinor: try attr(76),
            multiprocessorCount: try attr(16),
            sharedMemoryPerBlock: try attr(8),
            sharedMemoryPerBlockOptin: try attr(97),
            sharedMemoryPerMultiprocessor: try attr(81),
            maxThreadsPerMultiprocessor: try attr(39),
            registersPerBlock: try attr(12),
            l2CacheSize: try attr(38),
            totalMemory: total,
            memoryClockKHz: (try? attr(36)) ?? 0,      // CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE
            memoryBusWidthBits: (try? attr(37)) ?? 0)  // CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH
        var ctx: CUhandle? = nil
        try driver.check(driver.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain")
        context = ctx
        try driver.check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    }

    /// Makes this device's primary context current on the calling thread.
    @inline(__always)
    public func makeCurrent() throws(CUDAError) {
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    /// Waits for all work on the device.
    public func synchronize() throws(CUDAError) {
        try makeCurrent()
        try driver.check(driver.cuCtxSynchronize(), "cuCtxSynchronize")
    }

    /// (free, total) device memory in bytes.
    public func memoryInfo() throws(CUDAError) -> (free: Int, total: Int) {
        try makeCurrent()
        var f = 0, t = 0
        try driver.check(driver.cuMemGetInfo(&f, &t), "cuMemGetInfo")
        return (f, t)
    }

    // MARK: memory

    /// Allocates `byteCount` bytes of device memory (uninitialised).
    public func allocate(byteCount: Int) throws(CUDAError) -> DeviceBuffer {
        try makeCurrent()
        var p: CUdeviceptr = 0
        if byteCount > 0 {
            try driver.check(driver.cuMemAlloc(&p, byteCount), "cuMemAlloc(\(byteCount) bytes)")
        }
        return DeviceBuffer(device: self, address: p, byteCount: byteCount)
    }

    /// Device memory holding a copy of `values`, complete when this returns (enqueued on the
    /// library stream, which is then synchronized): usable from any stream.
    public func upload<T: BitwiseCopyable>(_ values: [T]) throws(CUDAError) -> DeviceBuffer {
        let buf = try allocate(byteCount: values.count * MemoryLayout<T>.stride)
        try buf.copyFromHostBlocking(values)
        return buf
    }

    /// Device memory holding a copy of `values`, allocated and filled in `stream`'s order (no host
    /// wait): work enqueued on `stream` afterwards sees the data; other library work waits for it.
    public func upload<T: BitwiseCopyable>(_ values: [T], stream: Stream) throws(CUDAError) -> DeviceBuffer {
        let buf = try stream.allocate(byteCount: values.count * MemoryLayout<T>.stride)
        try buf.copyFromHost(values, stream: stream)
        return buf
    }

    /// A new stream. Non-blocking by default (`CU_STREAM_NON_BLOCKING`: it does not synchronize
    /// with the legacy default stream, which the library never uses); `blocking: true` gives a
    /// stream that does (for A/B tests). The library is correct on either (docs/ORDERING.md).
    public func makeStream(blocking: Bool = false) throws(CUDAError) -> Stream {
        try makeCurrent()
        var s: CUhandle? = nil
        try driver.check(driver.cuStreamCreate(&s, blocking ? 0 : 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate")
        return Stream(device: self, handle: s, owned: true)
    }

    private let library = Mutex<Stream?>(nil)

    /// The library's own stream on this device: non-blocking, created on first use, shared by
    /// every thread. `Backend.automatic()` runs on it; stream-less transfers (`upload(_:)`,
    /// `Tensor.toDevice(_:)`, readback of a tensor no stream has written) are enqueued on it and
    /// wait for it.
    public func libraryStream() throws(CUDAError) -> Stream {
        if let s = library.withLock({ $0 }) { return s }
        let s = try makeStream()
        return library.withLock { cur in
            if let c = cur { return c }
            cur = s
            return s
        }
    }

    /// The legacy default stream (`CUstream` 0), for interop with code that uses it. The library
    /// never enqueues on it unless handed it as a backend's stream.
    public var legacyDefaultStream: Stream { Stream(device: self, handle: nil, owned: false) }

    public func makeEvent() throws(CUDAError) -> Event {
        try makeCurrent()
        var e: CUhandle? = nil
        try driver.check(driver.cuEventCreate(&e, 0), "cuEventCreate")
        return Event(device: self, handle: e)
    }
}

/// A CUDA stream. Streams made by `Device.makeStream()` are destroyed with the object.
public final class Stream: @unchecked Sendable {
    public let device: Device
    let handle: CUhandle?
    let owned: Bool

    init(device: Device, handle: CUhandle?, owned: Bool) {
        self.device = device
        self.handle = handle
        self.owned = owned
    }

    /// While `Graph.capture` runs on this stream: the buffers the captured library calls read or
    /// write (what they pass to `order(reads:writes:)`), which the graph keeps alive (nil otherwise).
    let captureRetained = Mutex<[DeviceBuffer]?>(nil)

    /// The raw `CUstream` (for interop with other CUDA code); nil is the legacy default stream.
    public var rawHandle: OpaquePointer? { handle }

    /// A stream the caller created (e.g. PyTorch's current stream), not owned: the library
    /// enqueues on it and never destroys it. The caller keeps it alive while the library holds
    /// work or buffers recorded on it (docs/ORDERING.md, "Your own stream").
    public static func external(_ raw: OpaquePointer?, device: Device) -> Stream {
        Stream(device: device, handle: raw, owned: false)
    }

    /// Whether both objects name the same CUDA stream.
    @inline(__always)
    public func isSame(as other: Stream) -> Bool { handle == other.handle && device === other.device }

    /// Whether the stream is capturing a CUDA graph (`cuStreamIsCapturing`; false if the query fails).
    public var isCapturing: Bool {
        var status: Int32 = 0
        return device.driver.cuStreamIsCapturing(handle, &status) == 0 && status != 0
    }

    /// Work enqueued on this stream from now on waits for everything enqueued on `other` so far
    /// (an event recorded on `other`, `cuStreamWaitEvent` here). No-op for the same stream.
    public func wait(for other: Stream) throws(CUDAError) {
        guard !isSame(as: other) else { return }
        let d = device.driver
        try device.makeCurrent()
        var e: CUhandle? = nil
        try d.check(d.cuEventCreate(&e, 2 /* CU_EVENT_DISABLE_TIMING */), "cuEventCreate")
        defer { _ = d.cuEventDestroy(e) }  // released by the driver once the wait is resolved
        try d.check(d.cuEventRecord(e, other.handle), "cuEventRecord")
        try d.check(d.cuStreamWaitEvent(handle, e, 0), "cuStreamWaitEvent")
    }

    public func synchronize() throws(CUDAError) {
        try device.makeCurrent()
        try device.driver.check(device.driver.cuStreamSynchronize(handle), "cuStreamSynchronize")
    }

    /// Allocates `byteCount` bytes (uninitialised) in this stream's order (`cuMemAllocAsync`): the
    /// memory is for work enqueued on this stream from now on, and it is freed in this stream's
    /// order when the buffer is released (`cuMemFreeAsync`), so neither waits for the device.
    /// Use it for temporaries that only this stream touches. Under stream capture the allocation
    /// and the free become graph nodes. Falls back to `Device.allocate` (and `cuMemFree`) where the
    /// driver or the device has no stream-ordered allocator, or with `FLASHINFER_STREAM_ORDERED_ALLOC=0`.
    public func allocate(byteCount: Int) throws(CUDAError) -> DeviceBuffer {
        guard byteCount > 0, device.streamOrderedAllocation, let allocAsync = device.driver.cuMemAllocAsync else {
            return try device.allocate(byteCount: byteCount)
        }
        try device.makeCurrent()
        var p: CUdeviceptr = 0
        let r = allocAsync(&p, byteCount, handle)
        if r == 801 /* CUDA_ERROR_NOT_SUPPORTED: no memory pools on this device */ {
            device.disableStreamOrderedAllocation()
            return try device.allocate(byteCount: byteCount)
        }
        try device.driver.check(r, "cuMemAllocAsync(\(byteCount) bytes)")
        return DeviceBuffer(device: device, address: p, byteCount: byteCount, orderedOn: self)
    }

    deinit {
        if owned, let handle { _ = device.driver.cuStreamDestroy(handle) }
    }
}

/// A CUDA event, for timing (`elapsed(since:)`) and ordering.
public final class Event: @unchecked Sendable {
    public let device: Device
    let handle: CUhandle?

    init(device: Device, handle: CUhandle?) {
        self.device = device
        self.handle = handle
    }

    public func record(on stream: Stream) throws(CUDAError) {
        try device.driver.check(device.driver.cuEventRecord(handle, stream.handle), "cuEventRecord")
    }

    public func synchronize() throws(CUDAError) {
        try device.driver.check(device.driver.cuEventSynchronize(handle), "cuEventSynchronize")
    }

    /// Milliseconds between `start` and this event (both recorded and completed).
    public func elapsedMilliseconds(since start: Event) throws(CUDAError) -> Float {
        var ms: Float = 0
        try device.driver.check(device.driver.cuEventElapsedTime(&ms, start.handle, handle), "cuEventElapsedTime")
        return ms
    }

    deinit { _ = device.driver.cuEventDestroy(handle) }
}
