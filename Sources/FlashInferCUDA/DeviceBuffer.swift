/// Device memory owned by this object; freed on deinit: with `cuMemFree` (which waits for the
/// device) or, for a stream-ordered buffer (`Stream.allocate`), with `cuMemFreeAsync` on its
/// stream (no wait: the memory is reused only after the work enqueued on that stream before).
public final class DeviceBuffer: @unchecked Sendable {
    public let device: Device
    /// The device address (`CUdeviceptr`).
    public let address: CUdeviceptr
    public let byteCount: Int
    /// The stream whose order frees this buffer (stream-ordered allocations only).
    public let orderedOn: Stream?

    init(device: Device, address: CUdeviceptr, byteCount: Int, orderedOn: Stream? = nil) {
        self.device = device
        self.address = address
        self.byteCount = byteCount
        self.orderedOn = orderedOn
    }

    deinit {
        if address != 0 {
            _ = device.driver.cuCtxSetCurrent(device.context)
            if let s = orderedOn, let freeAsync = device.driver.cuMemFreeAsync {
                _ = freeAsync(address, s.handle)
            } else {
                _ = device.driver.cuMemFree(address)
            }
        }
    }

    private var driver: CUDADriver { device.driver }

    private func checkRange(_ offset: Int, _ count: Int, _ what: String) {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount,
                     "\(what): range \(offset)..<\(offset + count) outside buffer of \(byteCount) bytes")
    }

    /// Synchronous host → device copy of `values` at byte `offset`.
    public func copyFromHost<T: BitwiseCopyable>(_ values: [T], offset: Int = 0) throws(CUDAError) {
        let n = values.count * MemoryLayout<T>.stride
        checkRange(offset, n, "copyFromHost")
        guard n > 0 else { return }
        try device.makeCurrent()
        let r = values.withUnsafeBytes { driver.cuMemcpyHtoD(address + CUdeviceptr(offset), $0.baseAddress!, n) }
        try driver.check(r, "cuMemcpyHtoD")
    }

    /// Synchronous device → host copy of `count` elements starting at byte `offset`.
    public func copyToHost<T: BitwiseCopyable>(_ type: T.Type = T.self, count: Int, offset: Int = 0) throws(CUDAError) -> [T] {
        let n = count * MemoryLayout<T>.stride
        checkRange(offset, n, "copyToHost")
        guard n > 0 else { return [] }
        try device.makeCurrent()
        var r: CUresult = 0
        let out = [T](unsafeUninitializedCapacity: count) { buf, initialized in
            r = driver.cuMemcpyDtoH(UnsafeMutableRawPointer(buf.baseAddress!), address + CUdeviceptr(offset), n)
            initialized = count
        }
        try driver.check(r, "cuMemcpyDtoH")
        return out
    }

    /// Asynchronous host → device copy on `stream`. The host array must stay alive and unchanged
    /// until the stream reaches the copy (pageable memory: the driver stages it before returning).
    public func copyFromHostAsync<T: BitwiseCopyable>(_ values: [T], offset: Int = 0, stream: Stream) throws(CUDAError) {
        let n = values.count * MemoryLayout<T>.stride
        checkRange(offset, n, "copyFromHostAsync")
        guard n > 0 else { return }
        try device.makeCurrent()
        let r = values.withUnsafeBytes {
            driver.cuMemcpyHtoDAsync(address + CUdeviceptr(offset), $0.baseAddress!, n, stream.handle)
        }
        try driver.check(r, "cuMemcpyHtoDAsync")
    }

    /// Device → device copy of `byteCount` bytes from `source` (synchronous with respect to the host).
    public func copy(from source: DeviceBuffer, byteCount n: Int, sourceOffset: Int = 0, offset: Int = 0) throws(CUDAError) {
        checkRange(offset, n, "copy(from:)")
        precondition(sourceOffset >= 0 && sourceOffset + n <= source.byteCount, "copy(from:): source range out of bounds")
        guard n > 0 else { return }
        try device.makeCurrent()
        try driver.check(driver.cuMemcpyDtoD(address + CUdeviceptr(offset), source.address + CUdeviceptr(sourceOffset), n), "cuMemcpyDtoD")
    }

    /// Asynchronous device → device copy on `stream`.
    public func copyAsync(from source: DeviceBuffer, byteCount n: Int, sourceOffset: Int = 0, offset: Int = 0, stream: Stream) throws(CUDAError) {
        checkRange(offset, n, "copyAsync(from:)")
        precondition(sourceOffset >= 0 && sourceOffset + n <= source.byteCount, "copyAsync(from:): source range out of bounds")
        guard n > 0 else { return }
        try driver.check(
            driver.cuMemcpyDtoDAsync(address + CUdeviceptr(offset), source.address + CUdeviceptr(sourceOffset), n, stream.handle),
            "cuMemcpyDtoDAsync")
    }

    /// Fills bytes with `value` (asynchronous on `stream`, or the default stream).
    public func fill(byte value: UInt8, count: Int? = nil, offset: Int = 0, stream: Stream? = nil) throws(CUDAError) {
        let n = count ?? (byteCount - offset)
        checkRange(offset, n, "fill(byte:)")
        guard n > 0 else { return }
        try device.makeCurrent()
        try driver.check(driver.cuMemsetD8Async(address + CUdeviceptr(offset), value, n, stream?.handle), "cuMemsetD8Async")
    }

    /// Fills `count` 16-bit words at byte `offset` with `pattern`.
    public func fill(halfword pattern: UInt16, count: Int, offset: Int = 0, stream: Stream? = nil) throws(CUDAError) {
        checkRange(offset, count * 2, "fill(halfword:)")
        guard count > 0 else { return }
        try device.makeCurrent()
        try driver.check(driver.cuMemsetD16Async(address + CUdeviceptr(offset), pattern, count, stream?.handle), "cuMemsetD16Async")
    }

    /// Fills `count` 32-bit words at byte `offset` with `pattern`.
    public func fill(word pattern: UInt32, count: Int, offset: Int = 0, stream: Stream? = nil) throws(CUDAError) {
        checkRange(offset, count * 4, "fill(word:count:)")
        guard count > 0 else { return }
        try device.makeCurrent()
        try driver.check(driver.cuMemsetD32Async(address + CUdeviceptr(offset), pattern, count, stream?.handle), "cuMemsetD32Async")
    }

    /// Fills 32-bit words with `pattern` (e.g. a NaN to poison outputs); the count is byteCount/4.
    public func fill(word pattern: UInt32, stream: Stream? = nil) throws(CUDAError) {
        guard byteCount >= 4 else { return }
        try device.makeCurrent()
        try driver.check(driver.cuMemsetD32Async(address, pattern, byteCount / 4, stream?.handle), "cuMemsetD32Async")
    }
}
