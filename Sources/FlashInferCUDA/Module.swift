import Synchronization

/// A loaded CUDA module (a cubin). Unloaded with the object.
public final class Module: @unchecked Sendable {
    public let device: Device
    let handle: CUhandle?

    /// Loads a cubin image into the device's primary context.
    public init(device: Device, image: [UInt8]) throws(CUDAError) {
        self.device = device
        try device.makeCurrent()
        var m: CUhandle? = nil
        let r = image.withUnsafeBytes { device.driver.cuModuleLoadData(&m, $0.baseAddress!) }
        try device.driver.check(r, "cuModuleLoadData")
        handle = m
    }

    public func function(named name: String) throws(CUDAError) -> Function {
        var f: CUhandle? = nil
        try device.driver.check(device.driver.cuModuleGetFunction(&f, handle, name), "cuModuleGetFunction(\(name))")
        return try Function(module: self, handle: f, name: name)
    }

    deinit {
        _ = device.driver.cuCtxSetCurrent(device.context)
        _ = device.driver.cuModuleUnload(handle)
    }
}

/// Resource usage of a compiled kernel, as the driver reports it.
public struct FunctionAttributes: Sendable, Hashable {
    public var registers: Int
    public var staticSharedBytes: Int
    public var localBytes: Int
    public var maxThreadsPerBlock: Int
    public var binaryVersion: Int
}

/// A kernel entry point in a loaded module.
public final class Function: @unchecked Sendable {
    public let module: Module
    public let name: String
    let handle: CUhandle?
    public let attributes: FunctionAttributes
    /// The raised dynamic shared-memory limit: one `Function` is shared by every thread that
    /// launches the kernel (`JIT`), so the attribute update happens under this lock (a raise is
    /// idempotent; the lock keeps the bookkeeping exact).
    private let dynamicSharedLimit = Mutex(48 * 1024)

    init(module: Module, handle: CUhandle?, name: String) throws(CUDAError) {
        self.module = module
        self.handle = handle
        self.name = name
        let d = module.device.driver
        func attr(_ a: Int32) throws(CUDAError) -> Int {
            var v: Int32 = 0
            try d.check(d.cuFuncGetAttribute(&v, a, handle), "cuFuncGetAttribute(\(a))")
            return Int(v)
        }
        attributes = FunctionAttributes(
            registers: try attr(4), staticSharedBytes: try attr(1), localBytes: try attr(3),
            maxThreadsPerBlock: try attr(0), binaryVersion: try attr(6))
    }

    private var driver: CUDADriver { module.device.driver }

    /// Raises the dynamic shared-memory limit (needed above 48 KiB).
    /// Thread-safe.
    public func setMaxDynamicSharedMemory(_ bytes: Int) throws(CUDAError) {
        try dynamicSharedLimit.withLock { (limit: inout Int) throws(CUDAError) in
            guard bytes > limit else { return }
            try driver.check(driver.cuFuncSetAttribute(handle, 8 /* MAX_DYNAMIC_SHARED_SIZE_BYTES */, Int32(bytes)),
                             "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, \(bytes)) for \(name)")
            limit = bytes
        }
    }

    /// Resident blocks per SM for a block size and dynamic shared memory.
    public func maxActiveBlocksPerSM(blockSize: Int, dynamicSharedBytes: Int) throws(CUDAError) -> Int {
        var n: Int32 = 0
        try driver.check(driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, handle, Int32(blockSize), dynamicSharedBytes),
                         "cuOccupancyMaxActiveBlocksPerMultiprocessor(\(name))")
        return Int(n)
    }

    /// Launches with arguments packed as the kernel's parameter buffer (see `KernelArguments`).
    ///
    /// `programmaticDependency`: launch as a programmatic dependent of the kernel before it on the
    /// stream (PDL, Hopper; `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`): its CTAs may
    /// start once every CTA of the previous kernel has run `griddepcontrol.launch_dependents` (or
    /// exited), so its launch overlaps the previous kernel's tail. The kernel must run
    /// `griddepcontrol.wait` before it reads what the previous kernel wrote. Ignored (a plain
    /// launch) where the driver has no `cuLaunchKernelEx` or `FLASHINFER_PDL=0` is set.
    public func launch(grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                       stream: Stream, arguments: KernelArguments, programmaticDependency: Bool = false) throws(CUDAError) {
        if sharedBytes > 48 * 1024 { try setMaxDynamicSharedMemory(sharedBytes) }
        let pdl = usesPDL(programmaticDependency)
        // The parameters go as `kernelParams` (one pointer per parameter), which the driver copies
        // when it enqueues the launch or records it into a graph under stream capture. (Passed as
        // one `extra` CU_LAUNCH_PARAM_BUFFER_POINTER buffer, a captured launch kept reading this
        // function's temporary buffer at every replay: decode-step's 32-launch capture replayed
        // with freed parameters, CUDA_ERROR_ILLEGAL_ADDRESS on the H200, compute-sanitizer: a
        // cp.async from a stale page address.) The driver only reads through the pointers.
        let offsets = arguments.offsets
        let r: CUresult = arguments.bytes.withUnsafeBytes { argp in
            withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: max(offsets.count, 1)) { pp in
                guard !offsets.isEmpty, let base = argp.baseAddress else {
                    return enqueue(grid: grid, block: block, sharedBytes: sharedBytes, stream: stream, params: nil, pdl: pdl)
                }
                for i in offsets.indices { pp[i] = UnsafeMutableRawPointer(mutating: base + offsets[i]) }  // no enumerated(): allocates unoptimized
                return enqueue(grid: grid, block: block, sharedBytes: sharedBytes, stream: stream, params: pp.baseAddress, pdl: pdl)
            }
        }
        try checkLaunch(r, grid: grid, block: block, sharedBytes: sharedBytes, pdl: pdl)
    }

    /// Launches a kernel whose single parameter is `parameter` (a `params.h` struct), as
    /// `launch(parameter: parameter)` does but with no heap allocation:
    /// the run() paths launch this way (issue 15: nothing allocated on the hot path).
    public func launch<T: BitwiseCopyable>(grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                                           stream: Stream, parameter: T, programmaticDependency: Bool = false) throws(CUDAError) {
        if sharedBytes > 48 * 1024 { try setMaxDynamicSharedMemory(sharedBytes) }
        let pdl = usesPDL(programmaticDependency)
        var value = parameter
        let r: CUresult = withUnsafeMutableBytes(of: &value) { bytes in
            var pointer = bytes.baseAddress
            return withUnsafeMutablePointer(to: &pointer) { pp in
                enqueue(grid: grid, block: block, sharedBytes: sharedBytes, stream: stream, params: pp, pdl: pdl)
            }
        }
        try checkLaunch(r, grid: grid, block: block, sharedBytes: sharedBytes, pdl: pdl)
    }

    private func usesPDL(_ requested: Bool) -> Bool {
        requested && Function.pdlEnabled && driver.cuLaunchKernelEx != nil
    }

    private func enqueue(grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int, stream: Stream,
                         params: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, pdl: Bool) -> CUresult {
        if pdl, let launchEx = driver.cuLaunchKernelEx {
            return LaunchConfig.with(grid: grid, block: block, sharedBytes: sharedBytes, stream: stream.handle,
                                     programmaticStreamSerialization: true) { config in launchEx(config, handle, params, nil) }
        }
        return driver.cuLaunchKernel(
            handle, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2),
            UInt32(block.0), UInt32(block.1), UInt32(block.2),
            UInt32(sharedBytes), stream.handle, params, nil)
    }

    private func checkLaunch(_ r: CUresult, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int, pdl: Bool) throws(CUDAError) {
        try driver.check(r, "\(pdl ? "cuLaunchKernelEx" : "cuLaunchKernel")(\(name), grid \(grid), block \(block), smem \(sharedBytes))")
    }

    /// PDL launches are on unless the environment sets `FLASHINFER_PDL=0` (for A/B timing).
    static let pdlEnabled: Bool = Env.get("FLASHINFER_PDL") != "0"
}

/// `CUlaunchConfig` and its `CUlaunchAttribute`s, laid out as cuda.h lays them out (x86-64/aarch64):
/// config = 7 × u32 (grid, block, shared bytes), 4 bytes padding, CUstream, CUlaunchAttribute*,
/// u32 numAttrs, padding (56 bytes); attribute = u32 id, 4 bytes padding, a 64-byte value union.
/// Built on the stack (no heap allocation per launch).
enum LaunchConfig {
    static func with<R>(grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int, stream: CUhandle?,
                        programmaticStreamSerialization: Bool, _ body: (UnsafeRawPointer) -> R) -> R {
        withUnsafeTemporaryAllocation(byteCount: 72 + 56, alignment: 8) { raw in
            let attrs = raw.baseAddress!, config = raw.baseAddress! + 72
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            let n: UInt32 = programmaticStreamSerialization ? 1 : 0
            if programmaticStreamSerialization {
                // CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (6), value 1.
                attrs.storeBytes(of: UInt32(6), toByteOffset: 0, as: UInt32.self)
                attrs.storeBytes(of: Int32(1), toByteOffset: 8, as: Int32.self)
            }
            let dims = (grid.0, grid.1, grid.2, block.0, block.1, block.2, sharedBytes)
            config.storeBytes(of: UInt32(dims.0), toByteOffset: 0, as: UInt32.self)
            config.storeBytes(of: UInt32(dims.1), toByteOffset: 4, as: UInt32.self)
            config.storeBytes(of: UInt32(dims.2), toByteOffset: 8, as: UInt32.self)
            config.storeBytes(of: UInt32(dims.3), toByteOffset: 12, as: UInt32.self)
            config.storeBytes(of: UInt32(dims.4), toByteOffset: 16, as: UInt32.self)
            config.storeBytes(of: UInt32(dims.5), toByteOffset: 20, as: UInt32.self)
            config.storeBytes(of: UInt32(dims.6), toByteOffset: 24, as: UInt32.self)
            config.storeBytes(of: stream, toByteOffset: 32, as: CUhandle?.self)
            config.storeBytes(of: UnsafeMutableRawPointer?(attrs), toByteOffset: 40, as: UnsafeMutableRawPointer?.self)
            config.storeBytes(of: n, toByteOffset: 48, as: UInt32.self)
            return body(UnsafeRawPointer(config))
        }
    }
}

/// A kernel's parameter buffer: the bytes `cuLaunchKernel` copies into the kernel's parameter space.
///
/// Every library kernel takes one `const __grid_constant__` struct declared in C
/// (`Sources/CFlashInferParams/include/flashinfer/params.h`), which Swift imports: a launcher fills
/// the imported struct by field name and passes `KernelArguments(bytesOf: params)`, so the offsets,
/// the padding and the size are the struct's own (the C compiler's, checked against NVRTC's by
/// ParamsLayoutTests), never a second hand-written copy of the declaration.
///
/// `append` packs loose values in order, each at its natural alignment (the bytes of a C struct of
/// those fields); only the bench's probe kernels, which take several plain arguments, use it.
public struct KernelArguments: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// The byte offset of each parameter in `bytes` (the launch passes a pointer to each).
    public private(set) var offsets: [Int] = []

    public init() {}

    /// The bytes of one C struct, the kernel's single parameter (its padding bytes are
    /// unspecified: the kernel never reads them).
    public init<T: BitwiseCopyable>(bytesOf value: T) {
        bytes = withUnsafeBytes(of: value) { Array($0) }
        offsets = [0]
    }

    /// Appends the next parameter, aligned as the kernel's parameter list aligns it.
    public mutating func append<T: BitwiseCopyable>(_ value: T) {
        let align = MemoryLayout<T>.alignment
        while bytes.count % align != 0 { bytes.append(0) }
        offsets.append(bytes.count)
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    /// Appends the next parameter as raw bytes at an offset aligned to `alignment` (a parameter
    /// whose alignment Swift's types cannot express, e.g. a 64-byte aligned `CUtensorMap`).
    public mutating func append(rawBytes: [UInt8], alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
        offsets.append(bytes.count)
        bytes.append(contentsOf: rawBytes)
    }

    /// Pads to `alignment` (call at the end to match a struct's trailing padding).
    public mutating func pad(toAlignment alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }
}
