import CFlashInferParams
import FlashInferCUDA
import Testing

@testable import FlashInfer

/// The kernels' parameter structs are declared once, in `flashinfer/params.h`
/// (Sources/CFlashInferParams), and read by two compilers: Swift's clang importer, which lays out
/// the structs that the launchers fill and pass as bytes (`KernelArguments(bytesOf:)`), and NVRTC,
/// which lays out what the kernels read. These tests check that the two layouts agree: every field
/// of every struct at Swift's offset, and every struct at Swift's size.
@Suite struct ParamsLayoutTests {
    /// One struct as Swift lays it out: its C name, size, and each field's C name, offset and size.
    struct Layout: Sendable {
        var name: String
        var size: Int
        var fields: [(name: String, offset: Int, size: Int)]
        /// The field names that Swift's reflection reports (the imported struct's stored properties).
        var reflected: [String]

        /// Each field's bytes in `bytes` (a struct's bytes), by name: the padding left out, so two
        /// buffers compare by their fields alone.
        func fieldBytes(_ bytes: [UInt8]) -> [String: [UInt8]] {
            Dictionary(uniqueKeysWithValues: fields.map { f in
                (f.name, f.offset + f.size <= bytes.count ? Array(bytes[f.offset..<(f.offset + f.size)]) : [])
            })
        }
    }

    /// `T`'s layout from a key path to each of its fields, named by the key path (`\FIX.field`).
    static func layout<T, each V>(_ zero: T, _ paths: repeat KeyPath<T, each V>) -> Layout {
        var fields: [(name: String, offset: Int, size: Int)] = []
        func add<W>(_ p: KeyPath<T, W>) {
            fields.append((String("\(p)".split(separator: ".").last ?? ""), MemoryLayout<T>.offset(of: p) ?? -1,
                           MemoryLayout<W>.size))
        }
        repeat add(each paths)
        return Layout(name: "\(T.self)", size: MemoryLayout<T>.size, fields: fields,
                      reflected: Mirror(reflecting: zero).children.map { $0.label ?? "?" })
    }

    static func layout(of name: String) -> Layout { structs.first { $0.name == name }! }

    /// Every struct of params.h with every field, in declaration order (`everyFieldIsListed` fails,
    /// naming the struct, when the header has a field or a struct that this list lacks).
    static let structs: [Layout] = [
        layout(
            FIVariantParams(),
            \.sm_scale_log2, \.soft_cap_pre_tanh_scale, \.rope_rcp_scale, \.rope_log2_theta, \.qo_len, \.kv_len,
            \.window_left, \.num_qo_heads, \.v_scale, \.mask_kv_len, \.custom_mask
        ),
        layout(FIKVTensors(), \.k, \.v, \.k_stride_n, \.k_stride_h, \.v_stride_n, \.v_stride_h),
        layout(FIPageTable(), \.page_indices, \.k_stride_page, \.v_stride_page, \.page_size, \.page_div_m, \.page_div_l, \.pad),
        layout(
            FIDecodeParams(),
            \.q, \.o, \.lse, \.partial_o, \.partial_lse, \.q_stride_head, \.kv, \.variant, \.num_kv_heads, \.group_size,
            \.kv_begin, \.chunk_size, \.split, \.request_indices, \.chunk_indices, \.kv_indptr, \.kv_last_page_len,
            \.q_stride_batch, \.pages, \.chunk_size_ptr, \.timeline, \.merge_counters, \.o_indptr
        ),
        layout(
            FIDecodeMergeParams(),
            \.partial_o, \.partial_lse, \.o, \.lse, \.num_qo_heads, \.num_chunks, \.o_indptr, \.timeline
        ),
        layout(
            FIPrefillParams(),
            \.q, \.o, \.lse, \.q_stride_n, \.q_stride_h, \.o_stride_n, \.o_stride_h, \.kv, \.variant, \.num_kv_heads,
            \.group_size
        ),
        layout(
            FIBatchPrefillParams(),
            \.base, \.request_indices, \.qo_tile_indices, \.kv_tile_indices, \.qo_indptr, \.kv_lens, \.kv_starts,
            \.o_indptr, \.tmp_o, \.tmp_lse, \.pages, \.mask_indptr, \.kv_chunk, \.pad
        ),
        layout(
            FIMergeParams(),
            \.va, \.sa, \.vb, \.sb, \.v_out, \.s_out, \.mask, \.n, \.num_heads, \.head_dim, \.num_states, \.pad
        ),
        layout(FIMergeVarlenParams(), \.v, \.s, \.indptr, \.v_out, \.s_out, \.n, \.num_heads, \.head_dim),
        layout(
            FIAppendPagedKVParams(),
            \.append_k, \.append_v, \.k_cache, \.v_cache, \.batch_indices, \.positions, \.kv_indices, \.kv_indptr,
            \.ak_stride_n, \.ak_stride_h, \.av_stride_n, \.av_stride_h, \.kc_stride_page, \.kc_stride_token,
            \.kc_stride_head, \.vc_stride_page, \.vc_stride_token, \.vc_stride_head, \.nnz, \.num_heads, \.page_size,
            \.vecs_per_head, \.k_scale, \.v_scale, \.batch_size, \.num_indices, \.num_pages, \.pad
        ),
        layout(
            FISamplingParams(),
            \.input, \.output, \.samples, \.valid, \.top_k_arr, \.top_p_arr, \.min_p_arr, \.temperature_arr, \.seed_arr,
            \.offset_arr, \.seed, \.offset, \.row_stride, \.vocab_size, \.top_k, \.top_p, \.min_p, \.temperature, \.pad
        ),
        layout(
            FIChainSpeculativeParams(),
            \.draft_probs, \.draft_token_ids, \.target_probs, \.output_token_ids, \.accepted, \.emitted, \.seed_arr, \.offset_arr,
            \.seed, \.offset, \.num_draft, \.vocab_size
        ),
        layout(FIPhiloxAdvanceParams(), \.offset, \.increment),
        layout(FIAxpbyParams(), \.x, \.y, \.out, \.alpha, \.beta, \.n),
        layout(
            FINormParams(),
            \.input, \.residual, \.residual_out, \.weight, \.bias, \.out, \.input_stride, \.residual_stride, \.residual_out_stride,
            \.out_stride, \.rows, \.hidden, \.eps, \.weight_bias
        ),
        layout(FIActivationParams(), \.input, \.out, \.input_stride, \.out_stride, \.rows, \.d),
        layout(
            FIRopeParams(),
            \.q, \.k, \.q_out, \.k_out, \.positions, \.indptr, \.offsets, \.cos_sin_cache, \.q_stride_n, \.q_stride_h, \.k_stride_n,
            \.k_stride_h, \.qo_stride_n, \.qo_stride_h, \.ko_stride_n, \.ko_stride_h, \.cache_stride, \.nnz, \.num_qo_heads,
            \.num_kv_heads, \.rotary_dim, \.units, \.rot_units, \.heads_per_thread, \.positions_i64, \.batch_size, \.cache_rows,
            \.freqs
        ),
    ]

    /// The struct names that params.h declares (`typedef struct FIName {`).
    static func declaredStructs() -> [String] {
        let header = KernelSources.all["flashinfer/params.h"] ?? ""
        return header.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ")
            guard words.count >= 3, words[0] == "typedef", words[1] == "struct", words[2].hasPrefix("FI") else { return nil }
            return String(words[2])
        }
    }

    @Test func everyFieldIsListed() {
        #expect(Self.structs.map(\.name) == Self.declaredStructs(), "the structs of params.h, in order")
        for s in Self.structs {
            #expect(s.fields.map(\.name) == s.reflected, "\(s.name): list every field of the header, in order")
            #expect(s.fields.allSatisfy { $0.offset >= 0 && $0.offset + $0.size <= s.size }, "\(s.name)")
        }
    }

    /// The source NVRTC compiles: a `static_assert` per struct size and per field offset.
    static func assertions() -> String {
        var body = "#include <flashinfer/params.h>\n"
        for s in structs {
            body += "static_assert(sizeof(\(s.name)) == \(s.size), \"sizeof(\(s.name)) != Swift's \(s.size)\");\n"
            for f in s.fields {
                body += "static_assert(__builtin_offsetof(\(s.name), \(f.name)) == \(f.offset), "
                    + "\"\(s.name).\(f.name) is not at Swift's offset \(f.offset)\");\n"
            }
        }
        return body
    }

    struct AssertSpec: KernelSpec {
        var body: String
        var name: String { "params_layout_asserts" }
        var entryPoint: String { "fi_params_layout_asserts" }
        func source() -> String { body + "extern \"C\" __global__ void fi_params_layout_asserts() {}\n" }
    }

    /// Whether this NVRTC has `__builtin_offsetof` (13.0 has not: .ci/run runs this test with 13.5).
    static let nvrtcHasOffsetof: Bool = {
        guard nvrtcAvailable, let compiler = try? KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil)) else {
            return false
        }
        let probe = AssertSpec(body: "struct S { int a; long long b; };\nstatic_assert(__builtin_offsetof(S, b) == 8, \"\");\n")
        do throws(CUDAError) {
            _ = try compiler.compile(probe, useCache: false)
            return true
        } catch {
            // Another failure is no reason to skip: the test then reports it.
            guard case .compilation(_, let log) = error else { return true }
            return !log.contains("__builtin_offsetof")
        }
    }()

    @Test(.enabled(if: nvrtcAvailable, "NVRTC and CUDA headers not found (set FLASHINFER_CUDA_PIP; see README)"),
          .enabled(if: nvrtcHasOffsetof, "this NVRTC has no __builtin_offsetof (13.0); .ci/run uses 13.5"))
    func nvrtcLaysOutEveryFieldAsSwiftDoes() throws {
        let body = Self.assertions()
        #expect(body.components(separatedBy: "__builtin_offsetof").count - 1 == Self.structs.map(\.fields.count).reduce(0, +))
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        do {
            _ = try compiler.compile(AssertSpec(body: body), useCache: false)
        } catch {
            Issue.record("params.h is laid out differently by NVRTC and by Swift: \(error)")
        }
    }

    /// A launcher's arguments are the struct's bytes: its size, each field at its offset.
    @Test func argumentsAreTheStructsBytes() {
        let p = FIAxpbyParams(x: 0x1111, y: 0x2222, out: 0x3333, alpha: 1.5, beta: -2, n: 77)
        let bytes = KernelArguments(bytesOf: p).bytes
        #expect(bytes.count == MemoryLayout<FIAxpbyParams>.size && bytes.count == 40)
        func at<T: BitwiseCopyable>(_ offset: Int?, as: T.Type) -> T {
            bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset!, as: T.self) }
        }
        #expect(at(MemoryLayout<FIAxpbyParams>.offset(of: \.out), as: UInt64.self) == 0x3333)
        #expect(at(MemoryLayout<FIAxpbyParams>.offset(of: \.beta), as: Float.self) == -2)
        #expect(at(MemoryLayout<FIAxpbyParams>.offset(of: \.n), as: Int64.self) == 77)
    }
}
