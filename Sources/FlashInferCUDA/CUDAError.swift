/// Every failure of the CUDA driver, NVRTC, or their discovery.
///
/// A driver call that returns an error becomes `.driver` carrying the call's name and the
/// driver's own error name (e.g. `CUDA_ERROR_ILLEGAL_ADDRESS`); an NVRTC call becomes `.nvrtc`.
public enum CUDAError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `libcuda.so.1` could not be loaded: no NVIDIA driver on this machine. `tried` lists each
    /// candidate with the loader's reason.
    case driverNotFound(tried: [String])
    /// The driver loaded but reports no CUDA device.
    case noDevice
    /// No NVRTC library could be loaded.
    case nvrtcNotFound(tried: [String])
    /// The CUDA headers NVRTC needs (`cuda_fp16.h`, `cuda_bf16.h`, `cuda_fp8.h`) were not found.
    case headersNotFound(tried: [String])
    /// A library lacks a symbol we need (an older driver or NVRTC than supported).
    case symbolMissing(library: String, symbol: String)
    /// A driver API call failed.
    case driver(call: String, code: Int32, name: String, message: String)
    /// An NVRTC call failed.
    case nvrtc(call: String, code: Int32, message: String)
    /// NVRTC rejected a kernel source; `log` is NVRTC's compile log.
    case compilation(kernel: String, log: String)
    /// A device index out of range.
    case invalidDevice(index: Int, count: Int)

    public var description: String {
        switch self {
        case .driverNotFound(let tried):
            return "no CUDA driver found (libcuda.so.1 could not be loaded; set FLASHINFER_CUDA_DRIVER to its path if it is installed elsewhere). Tried:\n  "
                + tried.joined(separator: "\n  ")
        case .noDevice:
            return "the CUDA driver reports no device"
        case .nvrtcNotFound(let tried):
            return "NVRTC not found: install the CUDA toolkit or `pip install nvidia-cuda-nvrtc`, or set FLASHINFER_NVRTC to libnvrtc.so's path. Tried:\n  "
                + tried.joined(separator: "\n  ")
        case .headersNotFound(let tried):
            return "CUDA headers (cuda_fp16.h) not found: install the CUDA toolkit or `pip install nvidia-cuda-runtime`, or set FLASHINFER_CUDA_INCLUDE. Tried:\n  "
                + tried.joined(separator: "\n  ")
        case .symbolMissing(let lib, let sym):
            return "\(lib) has no symbol \(sym): the installed version is too old"
        case .driver(let call, let code, let name, let message):
            return "\(call) failed: \(name) (\(code)): \(message)"
        case .nvrtc(let call, let code, let message):
            return "\(call) failed: \(message) (\(code))"
        case .compilation(let kernel, let log):
            return "NVRTC failed to compile \(kernel):\n\(log)"
        case .invalidDevice(let index, let count):
            return "device \(index) does not exist (\(count) device(s))"
        }
    }
}
