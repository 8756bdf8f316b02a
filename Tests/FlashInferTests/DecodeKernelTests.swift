import FlashInferCUDA
import Testing

@_spi(Bench) @testable import FlashInfer

/// The host side of the decode kernel checked against its C++ declarations without a GPU: NVRTC
/// compiles `static_assert`s on the traits Swift mirrors.
@Suite(.enabled(if: nvrtcAvailable, "NVRTC and CUDA headers not found (set FLASHINFER_CUDA_PIP; see README)"))
struct DecodeKernelTests {
    struct AssertSpec: KernelSpec {
        var body: String
        var name: String { "decode_traits_asserts" }
        var entryPoint: String { "fi_decode_traits_asserts" }
        func source() -> String {
            """
            #include <flashinfer/attention/decode.cuh>
            #include <flashinfer/attention/decode_merge.cuh>
            \(body)
            extern "C" __global__ void fi_decode_traits_asserts() {}
            """
        }
    }

    /// The traits Swift mirrors (tile keys and dynamic shared memory) for every catalogue variant.
    /// (The parameter structs' layout: ParamsLayoutTests.)
    @Test func traitsMatchTheHeader() throws {
        var body = ""
        for case let s as DecodeSpec in decodeCatalog().map(\.spec) {
            let kt = s.traits
            body += "static_assert(\(kt)::SMEM_BYTES == \(s.sharedBytes) && \(kt)::TILE_KEYS == \(s.tileKeys), \"\(s.name)\");\n"
        }
        for (stages, keys) in [(2, 2), (3, 8), (6, 4), (8, 2)] {
            let s = DecodeSpec(dtype: .bf16, headDim: 64, group: 2, posEnc: .rope, softCap: true, stages: stages, keysPerSlot: keys)
            let kt = s.traits
            body += "static_assert(\(kt)::SMEM_BYTES == \(s.sharedBytes) && \(kt)::TILE_KEYS == \(s.tileKeys), \"\(s.name)\");\n"
        }
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        do {
            _ = try compiler.compile(AssertSpec(body: body), useCache: false)
        } catch {
            Issue.record("traits asserts failed: \(error)")
        }
    }
}

/// The catalogue (what CI compiles) covers every decode code path (no NVRTC needed).
@Suite struct DecodeCatalogTests {
    /// CUDADecodeLaunch refuses, with a reason, the pipelines too small for the epilogue's o buffer
    /// (the kernel's static_assert); every catalogue kernel passes the rule.
    @Test func epilogueFitsThePipeline() {
        for case let s as DecodeSpec in decodeCatalog().map(\.spec) {
            #expect(s.epilogueBytes <= s.pipelineBytes, "\(s.name)")
        }
        // Group 8 at head_dim 128 with 2 stages of 16-key tiles: 16 KiB of pipeline, 32 KiB of o.
        let small = DecodeSpec(dtype: .f16, headDim: 128, group: 8, posEnc: .none, softCap: false, stages: 2, keysPerSlot: 2)
        #expect(small.pipelineBytes == 16384 && small.epilogueBytes == 32768)
        let ok = DecodeSpec(dtype: .f16, headDim: 128, group: 8, posEnc: .none, softCap: false, stages: 4, keysPerSlot: 2)
        #expect(ok.epilogueBytes <= ok.pipelineBytes)
    }

    @Test func catalogueHasEveryDecodeCodePath() {
        let specs = decodeCatalog().compactMap { $0.spec as? DecodeSpec }
        for dtype in [DType.f16, .bf16] {
            for d in supportedHeadDims {
                for pe in DecodeSpec.PosEnc.allCases {
                    for cap in [false, true] {
                        #expect(specs.contains { $0.dtype == dtype && $0.headDim == d && $0.posEnc == pe && $0.softCap == cap })
                    }
                }
                for g in [1, 2, 4, 8] { #expect(specs.contains { $0.dtype == dtype && $0.headDim == d && $0.group == g }) }
            }
        }
        #expect(Set(specs.map(\.name)).count == specs.count)
    }
}
