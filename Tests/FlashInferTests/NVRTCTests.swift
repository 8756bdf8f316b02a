import FlashInferCUDA
import Synchronization
import Testing

@testable import FlashInfer

/// NVRTC compiles every kernel in the catalogue for Hopper (no GPU needed; CI installs NVRTC).
@Suite(.enabled(if: nvrtcAvailable, "NVRTC and CUDA headers not found (set FLASHINFER_CUDA_PIP; see README)"))
struct NVRTCTests {
    static let catalog = kernelCatalog()

    /// What the catalogue's compiles reported so far, for the one summary line (the last case prints it).
    static let reports = Mutex<(count: Int, spilling: Int, maxRegisters: Int, maxRegistersKernel: String)>((0, 0, 0, ""))

    @Test(arguments: 0..<catalog.count)
    func everyKernelCompilesForSM90aWithoutSpills(index: Int) throws {
        let (name, spec) = Self.catalog[index]
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        let k = try compiler.compile(spec, useCache: false)
        #expect(!k.cubin.isEmpty)
        let report = try #require(k.resourceReport, "no ptxas report for \(name)")
        if testVerbose { print("[nvrtc] \(name): \(report)") }
        // FLASHINFER_CUBIN_DUMP_DIR: also write each cubin as <catalogue name>.cubin, with the
        // wrapper source beside it (scripts/sass-diff.sh compares two such directories' SASS).
        if let dir = FileSystem.environment("FLASHINFER_CUBIN_DUMP_DIR") {
            let file = dir + "/" + String(name.map { $0 == " " || $0 == "/" ? "_" : $0 })
            try FileSystem.createDirectory(dir)
            try FileSystem.writeAtomically(k.cubin, to: file + ".cubin")
            try FileSystem.writeAtomically(Array(spec.source().utf8), to: file + ".cu")
        }
        #expect(report.spillStores == 0 && report.spillLoads == 0, "\(name) spills: \(report)")
        let done = Self.reports.withLock { r -> Bool in
            r.count += 1
            if report.spillStores != 0 || report.spillLoads != 0 { r.spilling += 1 }
            if report.registers > r.maxRegisters { (r.maxRegisters, r.maxRegistersKernel) = (report.registers, name) }
            return r.count == Self.catalog.count
        }
        if done {
            let r = Self.reports.withLock { $0 }
            let v = try NVRTC.shared().version
            print("[nvrtc] \(r.count) kernels compiled for sm_90a with NVRTC \(v.major).\(v.minor): \(r.spilling) spill, most registers \(r.maxRegisters) (\(r.maxRegistersKernel))\(testVerbose ? "" : "; FLASHINFER_TEST_VERBOSE=1 prints each ptxas report")")
        }
    }

    @Test func diskCacheHitAfterCompile() throws {
        let dir = makeTempDirectory("nvrtc")
        defer { removeDirectory(dir) }
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: dir))
        let spec = AxpbySpec(dtype: .f16)
        let cold = try compiler.compile(spec)
        #expect(cold.origin == .compiled)
        let warm = try compiler.compile(spec)
        #expect(warm.origin == .diskCache)
        #expect(warm.cubin == cold.cubin)
        #expect(warm.cacheKey == cold.cacheKey)
        // Another architecture is another key.
        let other = try KernelCompiler(architecture: "sm_80", cache: KernelCache(directory: dir)).compile(spec)
        #expect(other.origin == .compiled && other.cacheKey != cold.cacheKey)
    }

    struct BrokenSpec: KernelSpec {
        var name: String { "broken" }
        var entryPoint: String { "fi_broken" }
        func source() -> String { "extern \"C\" __global__ void fi_broken() { this_is_not_defined(); }" }
    }

    @Test func compileErrorCarriesTheLog() throws {
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        do {
            _ = try compiler.compile(BrokenSpec())
            Issue.record("a broken kernel compiled")
        } catch {
            guard case .compilation(let kernel, let log) = error else {
                Issue.record("wrong error: \(error)")
                return
            }
            #expect(kernel == "broken.cu")
            #expect(log.contains("this_is_not_defined"))
        }
    }

    @Test func embeddedSourcesArePresent() {
        #expect(KernelSources.names.contains("flashinfer/core/types.cuh"))
        #expect(KernelSources.names.contains("flashinfer/attention/variants.cuh"))
        // The parameter structs' C header (Sources/CFlashInferParams/include), a second root.
        #expect(KernelSources.names.contains("flashinfer/params.h"))
        #expect(KernelSources.all.values.allSatisfy { !$0.isEmpty })
    }
}

@Suite struct ResourceReportTests {
    @Test func parsesPtxasOutput() throws {
        let log = """
            ptxas info    : Compiling entry function 'fi_x' for 'sm_90a'
            ptxas info    : Function properties for fi_x
                8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
            ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]
            """
        let r = try #require(ResourceReport(ptxasLog: log))
        #expect(r.registers == 40)
        #expect(r.spillStores == 4 && r.spillLoads == 12)
        #expect(r.stackFrame == 8)
        #expect(r.sharedMemory == 2048)
        #expect(ResourceReport(ptxasLog: "no report") == nil)
    }
}
