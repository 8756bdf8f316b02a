import FlashInferCUDA
import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// Whether NVRTC and the CUDA headers can be found (CI installs them from pip; see .ci/run).
let nvrtcAvailable: Bool = {
    guard let n = try? NVRTC.shared() else { return false }
    return (try? n.cudaIncludeDirectory()) != nil
}()

/// Whether tests print their per-item detail (each kernel's ptxas report, …): `FLASHINFER_TEST_VERBOSE=1`.
/// Otherwise a test prints at most a one-line summary, so `swift test`'s output stays readable.
let testVerbose: Bool = FileSystem.environment("FLASHINFER_TEST_VERBOSE").map { $0 != "0" } ?? false

/// Whether a CUDA driver and device are present (never on CI).
let gpuAvailable: Bool = (try? Device.open()) != nil

/// A fresh empty directory under /tmp.
func makeTempDirectory(_ tag: String) -> String {
    var template = Array("/tmp/fi-test-\(tag)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(p != nil, "mkdtemp failed")
    return String(cString: p!)
}

func removeDirectory(_ path: String) {
    for f in FileSystem.list(path) { unlink(path + "/" + f) }
    rmdir(path)
}
