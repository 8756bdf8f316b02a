import FlashInferCUDA
import Foundation
import Testing

@testable import FlashInfer

/// Backends are reached through one dispatch point (issue 11 item 4): `Backend.implementation`.
@Suite struct BackendTests {
    static func t(_ shape: [Int], _ dtype: DType = .f16) -> Tensor {
        Tensor.host((0..<shape.reduce(1, *)).map { Float($0 % 7) / 7 }, shape: shape, dtype: dtype)
    }

    @Test func cpuImplementation() throws {
        let cpu = Backend.cpu.implementation
        #expect(cpu is CPUBackend)
        #expect(cpu.name == "cpu" && Backend.cpu.name == "cpu")
        guard case .host = cpu.placement else { Issue.record("CPU placement is not the host"); return }
        // The CPU plans batches as for an H100, so its schedules have the GPU's shape.
        #expect(cpu.multiprocessorCount == DeviceProperties.h100.multiprocessorCount && !cpu.runsCUDAGraphs)
        let x = Self.t([2, 3])
        let moved = try x.moved(to: .cpu)
        guard case .host(let a) = moved.storage, case .host(let b) = x.storage else { Issue.record("not on the host"); return }
        #expect(a === b)
    }

    /// `Backend` is switched on in one place: every other file calls through the implementation.
    @Test func oneDispatchPoint() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/FlashInfer")
        let files = FileManager.default.enumerator(atPath: root.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        #expect(files.count > 20)
        let patterns = ["switch backend", "case .cpu", "case .cuda(let stream)", "case .cuda(let s)", "case .cuda =", "case .cuda where"]
        var sites: [String] = []
        for f in files {
            let text = try String(contentsOf: root.appendingPathComponent(f), encoding: .utf8)
            for p in patterns where text.contains(p) { sites.append("\(f): \(p)") }
        }
        #expect(sites.sorted() == ["Backend/Backend.swift: case .cpu", "Backend/Backend.swift: case .cuda(let stream)"], "\(sites)")
    }

    /// Launchers live with their backend: every kernel spec, JIT lookup, argument buffer and launch
    /// of the library is in `Backend/CUDA/`.
    @Test func launchersLiveInBackendCUDA() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/FlashInfer")
        let files = FileManager.default.enumerator(atPath: root.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        var outside: [String] = []
        for f in files where !f.hasPrefix("Backend/CUDA/") {
            let text = try String(contentsOf: root.appendingPathComponent(f), encoding: .utf8)
            for p in [".launch(", "JIT.shared(", "KernelArguments(", ": KernelSpec {"] where text.contains(p) { outside.append("\(f): \(p)") }
        }
        #expect(outside.isEmpty, "\(outside)")
    }

    /// Writing caller buffers is the CUDA backend's: on the CPU it is a backend mismatch, and the
    /// CPU's checks put every tensor on the host.
    @Test func cpuBackendRefusesDeviceOnlyCalls() throws {
        let w = BatchPrefillAttention(backend: .cpu)
        try w.plan(qoIndptr: [0, 2], kvIndptr: [0, 3], numQOHeads: 4, numKVHeads: 2, headDim: 64, dtype: .f16)
        let q = Self.t([2, 4, 64]), k = Self.t([3, 2, 64])
        #expect(throws: FlashInferError.backendMismatch(what: "run(q:kv:out:lse:)", rule: "writes device buffers: plan with the CUDA backend")) {
            try w.run(q: q, kv: .ragged(k: k, v: k), out: q, lse: nil)
        }
        let r = try w.run(q: q, kv: .ragged(k: k, v: k), returnLSE: true)
        #expect(r.output.shape == [2, 4, 64] && r.lse?.shape == [2, 4] && !r.output.isOnDevice)
        // Merges on the CPU: host states in, host states out.
        let (v, s) = try mergeState(va: Self.t([3, 2, 8]), sa: Self.t([3, 2], .f32), vb: Self.t([3, 2, 8]), sb: Self.t([3, 2], .f32))
        #expect(v.shape == [3, 2, 8] && s.shape == [3, 2] && !v.isOnDevice)
    }
}
