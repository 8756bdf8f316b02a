import FlashInferCUDA
import Testing

@_spi(Bench) @testable import FlashInfer

/// The host side of the decode kernel checked against its C++ declarations without a GPU: NVRTC
/// compiles `static_assert`s on the parameter structs' layout and the traits Swift mirrors.
@Suite(.enabled(if: nvrtcAvailable, "NVRTC and CUDA headers not found (set FLASHINFER_CUDA_PIP; see README)"))
struct DecodeKernelTests {
    struct AssertSpec: KernelSpec {
        var body: String
        var name: String { "decode_layout_asserts" }
        var entryPoint: String { "fi_decode_layout_asserts" }
        func source() -> String {
            """
            #include <flashinfer/attention/decode.cuh>
            #include <flashinfer/attention/decode_merge.cuh>
            \(body)
            extern "C" __global__ void fi_decode_layout_asserts() {}
            """
        }
    }

    /// Byte offset of each field: every field gets a distinct sentinel, found in the packed bytes.
    static func offsets(_ bytes: [UInt8], _ sentinels: [(String, [UInt8])]) -> [(String, Int)] {
        sentinels.map { name, pattern in
            let i = (0...(bytes.count - pattern.count)).first { Array(bytes[$0..<($0 + pattern.count)]) == pattern }
            return (name, i ?? -1)
        }
    }

    static func le<T: FixedWidthInteger>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x.littleEndian) { Array($0) } }

    @Test func paramStructsMatchTheHeader() throws {
        let p = DecodeParamsValues(
            q: 0x1111_0001, k: 0x1111_0002, v: 0x1111_0003, o: 0x1111_0004, lse: 0x1111_0005,
            partialO: 0x1111_0006, partialLSE: 0x1111_0007,
            qStrideHead: 0x2222_0001, kStrideSeq: 0x2222_0002, kStrideHead: 0x2222_0003, vStrideSeq: 0x2222_0004,
            vStrideHead: 0x2222_0005,
            variant: VariantParamsValues(smScaleLog2: 1.5, softCapPreTanhScale: 2.5, ropeRcpScale: 3.5, ropeLog2Theta: 4.5,
                                         qoLen: 0x3301, kvLen: 0x3302, windowLeft: 0x3303, numQOHeads: 0x3304),
            numKVHeads: 0x3305, groupSize: 0x3306, kvBegin: 0x3307, chunkSize: 0x3308, split: 0x3309,
            requestIndices: 0x5501, chunkIndices: 0x5502, kvIndptr: 0x5503, kvIndices: 0x5504, kvLastPageLen: 0x5505,
            qStrideBatch: 0x6601, kStridePage: 0x6602, vStridePage: 0x6603, pageSize: 0x7701, chunkSizePtr: 0x8801,
            timeline: 0x8802)
        let bytes = p.arguments.bytes
        var fields: [(String, [UInt8])] = [
            ("q", Self.le(UInt64(0x1111_0001))), ("k", Self.le(UInt64(0x1111_0002))), ("v", Self.le(UInt64(0x1111_0003))),
            ("o", Self.le(UInt64(0x1111_0004))), ("lse", Self.le(UInt64(0x1111_0005))),
            ("partial_o", Self.le(UInt64(0x1111_0006))), ("partial_lse", Self.le(UInt64(0x1111_0007))),
            ("q_stride_head", Self.le(Int64(0x2222_0001))), ("k_stride_seq", Self.le(Int64(0x2222_0002))),
            ("k_stride_head", Self.le(Int64(0x2222_0003))), ("v_stride_seq", Self.le(Int64(0x2222_0004))),
            ("v_stride_head", Self.le(Int64(0x2222_0005))),
            ("variant.sm_scale_log2", Self.le(Float(1.5).bitPattern)), ("variant.soft_cap_pre_tanh_scale", Self.le(Float(2.5).bitPattern)),
            ("variant.rope_rcp_scale", Self.le(Float(3.5).bitPattern)), ("variant.rope_log2_theta", Self.le(Float(4.5).bitPattern)),
        ]
        for (i, n) in ["variant.qo_len", "variant.kv_len", "variant.window_left", "variant.num_qo_heads", "num_kv_heads",
                       "group_size", "kv_begin", "chunk_size", "split"].enumerated() {
            fields.append((n, Self.le(Int32(0x3301 + i))))
        }
        for (i, n) in ["request_indices", "chunk_indices", "kv_indptr", "kv_indices", "kv_last_page_len"].enumerated() {
            fields.append((n, Self.le(UInt64(0x5501 + i))))
        }
        for (i, n) in ["q_stride_batch", "k_stride_page", "v_stride_page"].enumerated() { fields.append((n, Self.le(Int64(0x6601 + i)))) }
        fields.append(("page_size", Self.le(Int32(0x7701))))
        fields.append(("chunk_size_ptr", Self.le(UInt64(0x8801))))
        fields.append(("timeline", Self.le(UInt64(0x8802))))
        let offs = Self.offsets(bytes, fields)
        #expect(offs.allSatisfy { $0.1 >= 0 })
        var body = "using P = flashinfer::DecodeParams;\nstatic_assert(sizeof(P) == \(bytes.count), \"DecodeParams size\");\n"
        for (n, o) in offs { body += "static_assert(__builtin_offsetof(P, \(n)) == \(o), \"DecodeParams.\(n)\");\n" }

        let m = DecodeMergeParamsValues(partialO: 0x4401, partialLSE: 0x4402, o: 0x4403, lse: 0x4404, numQOHeads: 0x4405, numChunks: 0x4406,
                                        oIndptr: 0x4407, timeline: 0x4408)
        let mb = m.arguments.bytes
        let moffs = Self.offsets(mb, [
            ("partial_o", Self.le(UInt64(0x4401))), ("partial_lse", Self.le(UInt64(0x4402))), ("o", Self.le(UInt64(0x4403))),
            ("lse", Self.le(UInt64(0x4404))), ("num_qo_heads", Self.le(Int32(0x4405))), ("num_chunks", Self.le(Int32(0x4406))),
            ("o_indptr", Self.le(UInt64(0x4407))), ("timeline", Self.le(UInt64(0x4408))),
        ])
        body += "using M = flashinfer::DecodeMergeParams;\nstatic_assert(sizeof(M) == \(mb.count), \"DecodeMergeParams size\");\n"
        for (n, o) in moffs { body += "static_assert(__builtin_offsetof(M, \(n)) == \(o), \"DecodeMergeParams.\(n)\");\n" }

        // Traits Swift mirrors: tile keys and dynamic shared memory, for every catalogue variant.
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
            Issue.record("layout asserts failed: \(error)")
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
