import ArgumentParser
import FlashInfer
import FlashInferCUDA

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the CUDA driver, NVRTC, device properties and the kernel cache.")

    func run() throws {
        print("swift-flashinfer \(FlashInferVersion.string)")
        switch Result(catching: { () throws(CUDAError) in try describeDevices() }) {
        case .success(let lines): for l in lines { print(l) }
        case .failure(let e):
            print("CUDA driver: not available — \(indented(e.description))")
            print("  (the CPU reference backend is used; GPU commands report this error)")
        }
        do {
            let nvrtc = try NVRTC.shared()
            print("NVRTC: \(nvrtc.version.major).\(nvrtc.version.minor) at \(nvrtc.path)")
            do {
                print("CUDA headers: \(try nvrtc.cudaIncludeDirectory())")
            } catch {
                print("CUDA headers: not found — \(indented(error.description))")
            }
        } catch {
            print("NVRTC: not available — \(indented(error.description))")
        }
        let cache = KernelCache()
        let entries = cache.entries()
        print("kernel cache: \(cache.directory ?? "(memory only)") — \(entries.count) kernels, \(formatBytes(entries.reduce(0) { $0 + $1.bytes }))")
        print("embedded kernel sources: \(KernelSources.names.count)")
    }
}

/// A multi-line error (a message, then what was tried, one per line) indented under its heading.
private func indented(_ description: String) -> String {
    description.split(separator: "\n").map { $0.drop { $0 == " " } }.joined(separator: "\n    ")
}

private func describeDevices() throws(CUDAError) -> [String] {
    var out: [String] = []
    let driver = try CUDADriver.shared()
    let v = try driver.version()
    out.append("CUDA driver: \(v / 1000).\((v % 1000) / 10) at \(driver.path)")
    let n = try driver.deviceCount()
    out.append("devices: \(n)")
    for i in 0..<n {
        let dev = try Device.open(i)
        let p = dev.properties
        out.append("  [\(i)] \(p.name)")
        out.append("      compute capability \(p.ccMajor).\(p.ccMinor) (NVRTC target \(p.nvrtcArchitecture)), \(p.multiprocessorCount) SMs")
        out.append("      memory \(formatBytes(p.totalMemory)), L2 \(formatBytes(p.l2CacheSize))")
        out.append("      shared memory: \(formatBytes(p.sharedMemoryPerBlock)) per block (\(formatBytes(p.sharedMemoryPerBlockOptin)) opt-in), \(formatBytes(p.sharedMemoryPerMultiprocessor)) per SM")
        out.append("      max threads per SM \(p.maxThreadsPerMultiprocessor), registers per block \(p.registersPerBlock)")
        out.append("      stream-ordered allocation (temporaries): \(dev.streamOrderedAllocation ? "on" : "off")")
    }
    return out
}
