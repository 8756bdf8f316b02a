import FlashInferCUDA
import Testing

@testable import FlashInfer

/// The sampling kernels without a GPU: their specs, and NVRTC compiling each for Hopper with zero
/// spills (the catalogue's NVRTC test compiles them too; this suite names their registers).
@Suite struct SamplingKernelTests {
    @Test(.enabled(if: nvrtcAvailable, "NVRTC and CUDA headers not found (set FLASHINFER_CUDA_PIP; see README)"))
    func samplingKernelsCompileForSM90aWithoutSpills() throws {
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        var lines: [String] = []
        for (name, spec) in SamplingSpec.catalog {
            let k = try compiler.compile(spec, useCache: false)
            let report = try #require(k.resourceReport, "no ptxas report for \(name)")
            lines.append("\(name): \(report)")
            #expect(report.spillStores == 0 && report.spillLoads == 0, "\(name) spills: \(report)")
            // 1024 threads per CTA: at most 64 registers per thread.
            #expect(report.registers <= 64, "\(name): \(report.registers) registers (1024-thread CTAs need <= 64)")
        }
        if testVerbose { for l in lines { print("[nvrtc] \(l)") } }
    }

    @Test func specsNameTheirVariantAndPickTheVectorWidth() {
        let s = SamplingSpec(kind: .topKFirst, dtype: .f32, vocab: 128_256, rowStride: 128_256, aligned: true)
        #expect(s.vec == 4 && s.name == "sampling_top_k_first_f32_v4" && s.entryPoint == "fi_sampling_top_k_first_f32_v4")
        #expect(s.source().contains("Mode::kTopKFirst") && s.source().contains("sample_row<float, 4"))
        #expect(SamplingSpec(kind: .softmax, dtype: .bf16, vocab: 32_000, rowStride: 32_000, aligned: true).vec == 8)
        // A vocabulary, a row stride or an address off the 16-byte grid takes scalar loads.
        #expect(SamplingSpec(kind: .topP, dtype: .f32, vocab: 111, rowStride: 111, aligned: true).vec == 1)
        #expect(SamplingSpec(kind: .topP, dtype: .f32, vocab: 128, rowStride: 130, aligned: true).vec == 1)
        #expect(SamplingSpec(kind: .topP, dtype: .f32, vocab: 128, rowStride: 128, aligned: false).vec == 1)
        #expect(SamplingSpec(kind: .topKMaskLogits, dtype: .f16, vocab: 100, rowStride: 100, aligned: true).vec == 1)
        for f in [SamplingFilter.none, .topK(5), .topP(0.5), .minP(0.1), .topKTopP(topK: 5, topP: 0.5, order: .joint),
                  .topKTopP(topK: 5, topP: 0.5, order: .topKFirst)] {
            #expect(SamplingKernelKind(f).isSampler)
        }
        #expect(SamplingKernelKind(.topKTopP(topK: 5, topP: 0.5, order: .joint)) == .joint)
        let names = SamplingSpec.catalog.map(\.spec.name)
        #expect(Set(names).count == names.count, "catalogue names repeat")
        #expect(kernelCatalog().contains { $0.spec.name == "sampling_top_k_first_f32_v4" })
    }

    /// The CUDA backend's layout rule (checked before launch): unit stride along the vocabulary,
    /// rows not overlapping; padded rows are fine.
    @Test func rowLayoutIsValidatedBeforeLaunch() throws {
        let x = Tensor.host((0..<24).map(Float.init), shape: [4, 6], dtype: .f32)
        try validateSamplingRows(x, name: "probs")
        try validateSamplingRows(Tensor(storage: x.storage, shape: [4, 5], strides: [6, 1], dtype: .f32), name: "probs")  // padded rows
        #expect(throws: FlashInferError.strides(tensor: "probs", strides: [1, 4], rule: "rows must be contiguous (stride 1 along the vocabulary, row stride >= vocab_size)")) {
            try validateSamplingRows(Tensor(storage: x.storage, shape: [6, 4], strides: [1, 4], dtype: .f32), name: "probs")  // transposed
        }
        #expect(throws: FlashInferError.self) {
            try validateSamplingRows(Tensor(storage: x.storage, shape: [4, 6], strides: [3, 1], dtype: .f32), name: "logits")  // overlapping
        }
    }

    /// Without a GPU the CUDA path is unreachable and says why: opening a device throws, and
    /// `Backend.automatic()` falls back to the CPU, where every sampling op runs.
    @Test(.enabled(if: !gpuAvailable, "a GPU is present"))
    func withoutAGPUTheCUDAPathRefusesCleanly() throws {
        #expect(throws: CUDAError.self) { try Device.open() }
        let backend = Backend.automatic()
        #expect(backend.name == "cpu")
        let probs = Tensor.host([0.5, 0.25, 0.25, 0], shape: [1, 4], dtype: .f32)
        #expect(try topKSamplingFromProbs(probs, topK: 1, seed: 3, backend: backend).samples == [0])
        #expect(try topKRenormProbs(probs, topK: 1, backend: backend).toFloats() == [1, 0, 0, 0])
    }
}
