import Testing

@testable import FlashInfer
@testable import FlashInferCUDA

@Suite struct DriverTests {
    /// On a machine without the NVIDIA driver (CI), every GPU entry point fails cleanly.
    @Test(.enabled(if: !gpuAvailable, "a GPU is present"))
    func noDriverIsAClearErrorNotACrash() throws {
        do {
            _ = try Device.open()
            Issue.record("Device.open() succeeded without a GPU")
        } catch {
            switch error {
            case .driverNotFound(let tried):
                #expect(tried.contains { $0.contains("libcuda.so.1") })
                #expect(error.description.contains("no CUDA driver found"))
            case .noDevice: break
            default: Issue.record("unexpected error \(error)")
            }
        }
        if case .cpu = Backend.automatic() {} else { Issue.record("automatic backend is not the CPU") }
    }

    @Test func driverCandidatesFollowTheDocumentedOrder() {
        let c = CUDADriver.candidates()
        #expect(c.contains("libcuda.so.1"))
        let i = c.firstIndex(of: "libcuda.so.1")!
        #expect(c[(i + 1)...].allSatisfy { $0.hasSuffix("/libcuda.so.1") })
    }

    /// `flashinfer info` once named libnvrtc-builtins.so as the NVRTC library: a prefix match on
    /// "libnvrtc" took whichever of the two the loader had mapped first.
    @Test func libraryFileNamesMatchTheLibraryNotItsSiblings() {
        for name in ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.13.0.88"] {
            #expect(DynamicLibrary.isSharedObject(name, of: "libnvrtc"), "\(name)")
        }
        for name in ["libnvrtc-builtins.so.13.0", "libnvrtc-builtins.so", "libnvrtc.alt.so.13", "libnvrtc.a", "libnvrtcx.so"] {
            #expect(!DynamicLibrary.isSharedObject(name, of: "libnvrtc"), "\(name)")
        }
        #expect(DynamicLibrary.isSharedObject("libnvrtc-builtins.so.13.0", of: "libnvrtc-builtins"))
        #expect(DynamicLibrary.isSharedObject("libcuda.so.1", of: "libcuda"))
        #expect(!DynamicLibrary.isSharedObject("libcudart.so.13", of: "libcuda"))
        #expect(!NVRTC.candidates().contains { $0.contains("builtins") })
    }

    /// The NVRTC that loaded reports its own file, not libnvrtc-builtins (which it maps beside itself).
    @Test(.enabled(if: nvrtcAvailable, "NVRTC not found"))
    func nvrtcPathIsLibnvrtcItself() throws {
        let base = try NVRTC.shared().path.split(separator: "/").last.map(String.init) ?? ""
        #expect(DynamicLibrary.isSharedObject(base, of: "libnvrtc"), "\(base)")
    }

    /// Every directory searched is named when nothing loads: those without a libnvrtc.so* as such,
    /// the others through their files' dlopen errors.
    @Test func nvrtcSearchNamesEveryDirectory() {
        let steps = NVRTC.searchSteps()
        #expect(steps.contains { step in
            switch step {
            case .emptyDirectory(let d): d == "/usr/local/cuda/lib64"
            case .load(let p): p.hasPrefix("/usr/local/cuda/lib64/")
            }
        })
        #expect(Array(steps.suffix(3)) == ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"].map { .load($0) })
        let e = CUDAError.nvrtcNotFound(tried: ["/usr/local/cuda/lib64/libnvrtc.so*: no such directory", "libnvrtc.so.13: not found"])
        #expect(e.description.hasSuffix("Tried:\n  /usr/local/cuda/lib64/libnvrtc.so*: no such directory\n  libnvrtc.so.13: not found"))
    }

    @Test func errorMessagesNameTheCallAndTheError() {
        let e = CUDAError.driver(call: "cuLaunchKernel(k)", code: 700, name: "CUDA_ERROR_ILLEGAL_ADDRESS", message: "an illegal memory access")
        #expect(e.description.contains("cuLaunchKernel(k)"))
        #expect(e.description.contains("CUDA_ERROR_ILLEGAL_ADDRESS"))
    }

    @Test func kernelArgumentsMatchCStructLayout() {
        // struct { void* a; void* b; void* c; float x; float y; long long n; } — 40 bytes.
        var a = KernelArguments()
        a.append(UInt64(0x1111))
        a.append(UInt64(0x2222))
        a.append(UInt64(0x3333))
        a.append(Float(1))
        a.append(Float(2))
        a.append(Int64(7))
        a.pad(toAlignment: 8)
        #expect(a.bytes.count == 40)
        // One pointer per parameter (cuLaunchKernel's kernelParams, which the driver copies, also
        // under stream capture): each at its aligned offset.
        #expect(a.offsets == [0, 8, 16, 24, 28, 32])
        #expect(KernelArguments(bytesOf: (UInt64(1), Float(2))).offsets == [0])
        #expect(KernelArguments().offsets.isEmpty)
        // struct { int i; double d; char c; } — d at 8, size 24 with tail padding.
        var b = KernelArguments()
        b.append(Int32(1))
        b.append(Double(2))
        b.append(UInt8(3))
        b.pad(toAlignment: 8)
        #expect(b.bytes.count == 24)
        #expect(b.offsets == [0, 8, 16])
        #expect(b.bytes[8..<16].elementsEqual(withUnsafeBytes(of: Double(2)) { Array($0) }))
    }

    @Test func nvrtcArchitectureForHopperHasTheASuffix() {
        var p = DeviceProperties(name: "x", ccMajor: 9, ccMinor: 0, multiprocessorCount: 132, sharedMemoryPerBlock: 0,
                                 sharedMemoryPerBlockOptin: 0, sharedMemoryPerMultiprocessor: 0, maxThreadsPerMultiprocessor: 0,
                                 registersPerBlock: 0, l2CacheSize: 0, totalMemory: 0)
        #expect(p.nvrtcArchitecture == "sm_90a")
        p.ccMajor = 8
        #expect(p.nvrtcArchitecture == "sm_80")
    }
}
