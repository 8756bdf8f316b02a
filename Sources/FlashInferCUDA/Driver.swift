/// CUDA driver API handles, as the C API defines them.
public typealias CUdeviceptr = UInt64
public typealias CUresult = Int32

typealias CUhandle = OpaquePointer

/// The dlopen'd CUDA driver (`libcuda.so.1`): every entry point we use, resolved once.
///
/// Search order for the library (first that loads wins):
/// 1. `$FLASHINFER_CUDA_DRIVER` (a path),
/// 2. `libcuda.so.1` through the dynamic loader (`LD_LIBRARY_PATH`, `ldconfig`),
/// 3. `/usr/local/nvidia/lib64`, `/usr/lib/x86_64-linux-gnu`, `/usr/lib64`, `/usr/lib/wsl/lib`.
///
/// Every call goes through `check(_:_:)`, which turns a non-zero `CUresult` into
/// `CUDAError.driver(call:code:name:message:)` with the driver's own error name.
public final class CUDADriver: @unchecked Sendable {
    let lib: DynamicLibrary
    public var path: String { lib.resolvedPath(library: "libcuda") ?? lib.path }

    // Entry points (the _v2 names first where the ABI was revised).
    let cuInit: @convention(c) (UInt32) -> CUresult
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
    let cuGetErrorName: @convention(c) (CUresult, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> CUresult
    let cuGetErrorString: @convention(c) (CUresult, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> CUresult
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> CUresult
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> CUresult
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> CUresult
    let cuDeviceTotalMem: @convention(c) (UnsafeMutablePointer<Int>, Int32) -> CUresult
    let cuDevicePrimaryCtxRetain: @convention(c) (UnsafeMutablePointer<CUhandle?>, Int32) -> CUresult
    let cuCtxSetCurrent: @convention(c) (CUhandle?) -> CUresult
    let cuCtxSynchronize: @convention(c) () -> CUresult
    let cuMemGetInfo: @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> CUresult
    let cuStreamCreate: @convention(c) (UnsafeMutablePointer<CUhandle?>, UInt32) -> CUresult
    let cuStreamDestroy: @convention(c) (CUhandle?) -> CUresult
    let cuStreamSynchronize: @convention(c) (CUhandle?) -> CUresult
    let cuStreamWaitEvent: @convention(c) (CUhandle?, CUhandle?, UInt32) -> CUresult
    /// `cuStreamIsCapturing(stream, CUstreamCaptureStatus*)`: 0 none, 1 active, 2 invalidated.
    let cuStreamIsCapturing: @convention(c) (CUhandle?, UnsafeMutablePointer<Int32>) -> CUresult
    let cuEventCreate: @convention(c) (UnsafeMutablePointer<CUhandle?>, UInt32) -> CUresult
    let cuEventDestroy: @convention(c) (CUhandle?) -> CUresult
    let cuEventRecord: @convention(c) (CUhandle?, CUhandle?) -> CUresult
    let cuEventSynchronize: @convention(c) (CUhandle?) -> CUresult
    let cuEventElapsedTime: @convention(c) (UnsafeMutablePointer<Float>, CUhandle?, CUhandle?) -> CUresult
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<CUdeviceptr>, Int) -> CUresult
    let cuMemFree: @convention(c) (CUdeviceptr) -> CUresult
    let cuMemsetD8Async: @convention(c) (CUdeviceptr, UInt8, Int, CUhandle?) -> CUresult
    let cuMemsetD16Async: @convention(c) (CUdeviceptr, UInt16, Int, CUhandle?) -> CUresult
    let cuMemsetD32Async: @convention(c) (CUdeviceptr, UInt32, Int, CUhandle?) -> CUresult
    // No synchronous cuMemcpy*: they run on the legacy default stream, which the library's
    // non-blocking streams do not wait for (docs/ORDERING.md). Only the stream-ordered copies exist.
    let cuMemcpyHtoDAsync: @convention(c) (CUdeviceptr, UnsafeRawPointer, Int, CUhandle?) -> CUresult
    let cuMemcpyDtoHAsync: @convention(c) (UnsafeMutableRawPointer, CUdeviceptr, Int, CUhandle?) -> CUresult
    let cuMemcpyDtoDAsync: @convention(c) (CUdeviceptr, CUdeviceptr, Int, CUhandle?) -> CUresult
    let cuModuleLoadData: @convention(c) (UnsafeMutablePointer<CUhandle?>, UnsafeRawPointer) -> CUresult
    let cuModuleUnload: @convention(c) (CUhandle?) -> CUresult
    let cuModuleGetFunction: @convention(c) (UnsafeMutablePointer<CUhandle?>, CUhandle?, UnsafePointer<CChar>) -> CUresult
    let cuFuncGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, CUhandle?) -> CUresult
    let cuFuncSetAttribute: @convention(c) (CUhandle?, Int32, Int32) -> CUresult
    let cuOccupancyMaxActiveBlocksPerMultiprocessor: @convention(c) (UnsafeMutablePointer<Int32>, CUhandle?, Int32, Int) -> CUresult
    let cuStreamBeginCapture: @convention(c) (CUhandle?, Int32) -> CUresult
    let cuStreamEndCapture: @convention(c) (CUhandle?, UnsafeMutablePointer<CUhandle?>) -> CUresult
    let cuGraphInstantiate: @convention(c) (UnsafeMutablePointer<CUhandle?>, CUhandle?, UInt64) -> CUresult
    let cuGraphLaunch: @convention(c) (CUhandle?, CUhandle?) -> CUresult
    let cuGraphExecDestroy: @convention(c) (CUhandle?) -> CUresult
    let cuGraphDestroy: @convention(c) (CUhandle?) -> CUresult
    let cuLaunchKernel: @convention(c) (
        CUhandle?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, CUhandle?,
        UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> CUresult
    /// The stream-ordered allocator (CUDA ≥ 11.2; nil with an older driver): `Stream.allocate`.
    let cuMemAllocAsync: (@convention(c) (UnsafeMutablePointer<CUdeviceptr>, Int, CUhandle?) -> CUresult)?
    let cuMemFreeAsync: (@convention(c) (CUdeviceptr, CUhandle?) -> CUresult)?
    /// `cuGraphDebugDotPrint` (CUDA ≥ 11.3; nil otherwise): a captured graph as Graphviz, with its
    /// kernel nodes' parameters (`FLASHINFER_GRAPH_DOT`, for debugging captures).
    let cuGraphDebugDotPrint: (@convention(c) (CUhandle?, UnsafePointer<CChar>, UInt32) -> CUresult)?
    /// `cuLaunchKernelEx` (CUDA ≥ 12.0; nil with an older driver): launches with attributes, here
    /// programmatic dependent launch (`Function.launch(programmaticDependency:)`).
    let cuLaunchKernelEx: (@convention(c) (
        UnsafeRawPointer, CUhandle?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> CUresult)?
    /// `cuTensorMapEncodeTiled` (CUDA ≥ 12.0; nil with an older driver): encodes a TMA descriptor
    /// (`TensorMap.encodeTiled`). Without it the Hopper prefill tier is unavailable (FA2 runs).
    let cuTensorMapEncodeTiled: TensorMapEncodeTiled?

    /// Whether the driver can encode TMA tensor maps (`cuTensorMapEncodeTiled`).
    public var hasTensorMaps: Bool { cuTensorMapEncodeTiled != nil }

    /// Library candidates in search order (documented above).
    public static func candidates() -> [String] {
        var c: [String] = []
        if let p = Env.get("FLASHINFER_CUDA_DRIVER") { c.append(p) }
        c.append("libcuda.so.1")
        for d in ["/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib"] {
            c.append(d + "/libcuda.so.1")
        }
        return c
    }

    private init(_ lib: DynamicLibrary) throws {
        self.lib = lib
        let L = "libcuda"
        func f<T>(_ names: String..., as t: T.Type) throws -> T { try lib.function(names, as: t, library: L) }
        cuInit = try f("cuInit", as: type(of: cuInit))
        cuDriverGetVersion = try f("cuDriverGetVersion", as: type(of: cuDriverGetVersion))
        cuGetErrorName = try f("cuGetErrorName", as: type(of: cuGetErrorName))
        cuGetErrorString = try f("cuGetErrorString", as: type(of: cuGetErrorString))
        cuDeviceGetCount = try f("cuDeviceGetCount", as: type(of: cuDeviceGetCount))
        cuDeviceGet = try f("cuDeviceGet", as: type(of: cuDeviceGet))
        cuDeviceGetName = try f("cuDeviceGetName", as: type(of: cuDeviceGetName))
        cuDeviceGetAttribute = try f("cuDeviceGetAttribute", as: type(of: cuDeviceGetAttribute))
        cuDeviceTotalMem = try f("cuDeviceTotalMem_v2", "cuDeviceTotalMem", as: type(of: cuDeviceTotalMem))
        cuDevicePrimaryCtxRetain = try f("cuDevicePrimaryCtxRetain", as: type(of: cuDevicePrimaryCtxRetain))
        cuCtxSetCurrent = try f("cuCtxSetCurrent", as: type(of: cuCtxSetCurrent))
        cuCtxSynchronize = try f("cuCtxSynchronize", as: type(of: cuCtxSynchronize))
        cuMemGetInfo = try f("cuMemGetInfo_v2", "cuMemGetInfo", as: type(of: cuMemGetInfo))
        cuStreamCreate = try f("cuStreamCreate", as: type(of: cuStreamCreate))
        cuStreamDestroy = try f("cuStreamDestroy_v2", "cuStreamDestroy", as: type(of: cuStreamDestroy))
        cuStreamSynchronize = try f("cuStreamSynchronize", as: type(of: cuStreamSynchronize))
        cuStreamWaitEvent = try f("cuStreamWaitEvent", as: type(of: cuStreamWaitEvent))
        cuStreamIsCapturing = try f("cuStreamIsCapturing", as: type(of: cuStreamIsCapturing))
        cuEventCreate = try f("cuEventCreate", as: type(of: cuEventCreate))
        cuEventDestroy = try f("cuEventDestroy_v2", "cuEventDestroy", as: type(of: cuEventDestroy))
        cuEventRecord = try f("cuEventRecord", as: type(of: cuEventRecord))
        cuEventSynchronize = try f("cuEventSynchronize", as: type(of: cuEventSynchronize))
        cuEventElapsedTime = try f("cuEventElapsedTime_v2", "cuEventElapsedTime", as: type(of: cuEventElapsedTime))
        cuMemAlloc = try f("cuMemAlloc_v2", "cuMemAlloc", as: type(of: cuMemAlloc))
        cuMemFree = try f("cuMemFree_v2", "cuMemFree", as: type(of: cuMemFree))
        cuMemsetD8Async = try f("cuMemsetD8Async", as: type(of: cuMemsetD8Async))
        cuMemsetD16Async = try f("cuMemsetD16Async", as: type(of: cuMemsetD16Async))
        cuMemsetD32Async = try f("cuMemsetD32Async", as: type(of: cuMemsetD32Async))
        cuMemcpyHtoDAsync = try f("cuMemcpyHtoDAsync_v2", "cuMemcpyHtoDAsync", as: type(of: cuMemcpyHtoDAsync))
        cuMemcpyDtoHAsync = try f("cuMemcpyDtoHAsync_v2", "cuMemcpyDtoHAsync", as: type(of: cuMemcpyDtoHAsync))
        cuMemcpyDtoDAsync = try f("cuMemcpyDtoDAsync_v2", "cuMemcpyDtoDAsync", as: type(of: cuMemcpyDtoDAsync))
        cuModuleLoadData = try f("cuModuleLoadData", as: type(of: cuModuleLoadData))
        cuModuleUnload = try f("cuModuleUnload", as: type(of: cuModuleUnload))
        cuModuleGetFunction = try f("cuModuleGetFunction", as: type(of: cuModuleGetFunction))
        cuFuncGetAttribute = try f("cuFuncGetAttribute", as: type(of: cuFuncGetAttribute))
        cuFuncSetAttribute = try f("cuFuncSetAttribute", as: type(of: cuFuncSetAttribute))
        cuOccupancyMaxActiveBlocksPerMultiprocessor = try f(
            "cuOccupancyMaxActiveBlocksPerMultiprocessor", as: type(of: cuOccupancyMaxActiveBlocksPerMultiprocessor))
        cuStreamBeginCapture = try f("cuStreamBeginCapture_v2", "cuStreamBeginCapture", as: type(of: cuStreamBeginCapture))
        cuStreamEndCapture = try f("cuStreamEndCapture", as: type(of: cuStreamEndCapture))
        cuGraphInstantiate = try f("cuGraphInstantiateWithFlags", as: type(of: cuGraphInstantiate))
        cuGraphLaunch = try f("cuGraphLaunch", as: type(of: cuGraphLaunch))
        cuGraphExecDestroy = try f("cuGraphExecDestroy", as: type(of: cuGraphExecDestroy))
        cuGraphDestroy = try f("cuGraphDestroy", as: type(of: cuGraphDestroy))
        cuLaunchKernel = try f("cuLaunchKernel", as: type(of: cuLaunchKernel))
        typealias LaunchEx = @convention(c) (
            UnsafeRawPointer, CUhandle?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
        ) -> CUresult
        cuLaunchKernelEx = try? f("cuLaunchKernelEx", as: LaunchEx.self)
        typealias DotPrint = @convention(c) (CUhandle?, UnsafePointer<CChar>, UInt32) -> CUresult
        cuGraphDebugDotPrint = try? f("cuGraphDebugDotPrint", as: DotPrint.self)
        typealias AllocAsync = @convention(c) (UnsafeMutablePointer<CUdeviceptr>, Int, CUhandle?) -> CUresult
        typealias FreeAsync = @convention(c) (CUdeviceptr, CUhandle?) -> CUresult
        cuMemAllocAsync = try? f("cuMemAllocAsync", as: AllocAsync.self)
        cuMemFreeAsync = try? f("cuMemFreeAsync", as: FreeAsync.self)
        cuTensorMapEncodeTiled = try? f("cuTensorMapEncodeTiled", as: TensorMapEncodeTiled.self)
    }

    private static let loaded: Result<CUDADriver, CUDAError> = {
        let (lib, tried) = DynamicLibrary.open(candidates: candidates())
        guard let lib else { return .failure(.driverNotFound(tried: tried)) }
        do {
            let d = try CUDADriver(lib)
            try d.check(d.cuInit(0), "cuInit")
            return .success(d)
        } catch let e as CUDAError {
            return .failure(e)
        } catch {
            return .failure(.driverNotFound(tried: ["\(error)"]))
        }
    }()

    /// The process-wide driver, loaded and initialised (`cuInit`) on first use.
    public static func shared() throws(CUDAError) -> CUDADriver {
        try loaded.get()
    }

    /// Turns a `CUresult` into a thrown error naming the call and the driver's error name.
    @inline(__always)
    func check(_ r: CUresult, _ call: @autoclosure () -> String) throws(CUDAError) {
        if r != 0 { throw error(r, call()) }
    }

    func error(_ r: CUresult, _ call: String) -> CUDAError {
        var namePtr: UnsafePointer<CChar>? = nil
        var msgPtr: UnsafePointer<CChar>? = nil
        _ = cuGetErrorName(r, &namePtr)
        _ = cuGetErrorString(r, &msgPtr)
        return .driver(
            call: call, code: r,
            name: namePtr.map { String(cString: $0) } ?? "CUDA_ERROR_\(r)",
            message: msgPtr.map { String(cString: $0) } ?? "unknown error")
    }

    /// The driver's CUDA version, e.g. 13000 for 13.0.
    public func version() throws(CUDAError) -> Int {
        var v: Int32 = 0
        try check(cuDriverGetVersion(&v), "cuDriverGetVersion")
        return Int(v)
    }

    public func deviceCount() throws(CUDAError) -> Int {
        var n: Int32 = 0
        try check(cuDeviceGetCount(&n), "cuDeviceGetCount")
        return Int(n)
    }

    /// Human-readable name of an error code (for tests and messages).
    public func errorName(_ r: CUresult) -> String {
        var namePtr: UnsafePointer<CChar>? = nil
        _ = cuGetErrorName(r, &namePtr)
        return namePtr.map { String(cString: $0) } ?? "CUDA_ERROR_\(r)"
    }
}
