import CFlashInferParams
import FlashInferCUDA
import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// `FIVariantParams(options:…)` (before it, `VariantParamsValues(options:…)`) replaced three copies
/// of the variant math (single decode, batch decode, prefill), and the launchers now fill the
/// imported C structs instead of packing fields one by one: the kernel arguments must be the bytes
/// that the old copies and packers produced, field for field (padding aside). The old code is kept
/// here, verbatim but for its names, as the reference.
@Suite struct VariantParamsTests {
    static let optionSets: [AttentionOptions] = [
        AttentionOptions(),
        AttentionOptions(causal: true, smScale: 0.1),
        AttentionOptions(logitsSoftCap: 30),
        AttentionOptions(smScale: 0.3, logitsSoftCap: 50, windowLeft: 13),
        AttentionOptions(positionEncoding: .ropeLlama()),
        AttentionOptions(positionEncoding: .ropeLlama(scale: 8, theta: 5e5), logitsSoftCap: 30),
        AttentionOptions(smScale: 1.7, positionEncoding: .ropeLlama(scale: 0.5, theta: 1e6), windowLeft: 0),
        AttentionOptions(positionEncoding: .ropeLlama(scale: 3, theta: 123.25)),
        AttentionOptions(causal: true, positionEncoding: .alibi, logitsSoftCap: 7.5, windowLeft: 100, layout: .hnd),
    ]
    static let headDims = [64, 128, 256, 96]

    /// The single and batch decode launches' copy (CUDADecode.swift, CUDABatchDecode.swift): the
    /// VariantParams fields of DecodeParamsValues in packing order.
    static func oldDecodeVariant(_ options: AttentionOptions, headDim: Int, kvLen: Int, numQOHeads: Int) -> ([Float], [Int32]) {
        let scale = options.resolvedScale(headDim: headDim)
        let cap = options.logitsSoftCap
        let log2e: Float = 1.44269504088896340736
        var ropeScale: Float = 1, ropeTheta: Float = 1e4
        if case .ropeLlama(let sc, let th) = options.positionEncoding { (ropeScale, ropeTheta) = (sc, th) }
        return ([cap > 0 ? cap * log2e : scale * log2e, cap > 0 ? scale / cap : 0, 1 / ropeScale, Float(log2(Double(ropeTheta)))],
                [1, Int32(kvLen), Int32(options.windowLeft), Int32(numQOHeads)])
    }

    /// The old DecodeParamsValues.arguments (a KernelArguments packer) with the old VariantParams fields.
    static func oldDecodeBytes(_ options: AttentionOptions, headDim: Int, kvLen: Int, numQOHeads: Int) -> [UInt8] {
        let (f, i) = oldDecodeVariant(options, headDim: headDim, kvLen: kvLen, numQOHeads: numQOHeads)
        var a = KernelArguments()
        for p: CUdeviceptr in [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17] { a.append(p) }
        for x: Int64 in [0x21, 0x22, 0x23, 0x24, 0x25] { a.append(x) }
        for x in f { a.append(x) }
        for x in i + [0x31, 0x32, 0x33, 0x34, 0x35] { a.append(x) }
        for p: CUdeviceptr in [0x41, 0x42, 0x43, 0x44, 0x45] { a.append(p) }
        for x: Int64 in [0x51, 0x52, 0x53] { a.append(x) }
        a.append(Int32(0x61))
        a.append(CUdeviceptr(0x71))
        a.append(CUdeviceptr(0x72))
        a.pad(toAlignment: 8)
        return a.bytes
    }

    static func newDecodeBytes(_ options: AttentionOptions, headDim: Int, kvLen: Int, numQOHeads: Int) -> [UInt8] {
        KernelArguments(bytesOf: FIDecodeParams(
            q: 0x11, k: 0x12, v: 0x13, o: 0x14, lse: 0x15, partial_o: 0x16, partial_lse: 0x17,
            q_stride_head: 0x21, k_stride_seq: 0x22, k_stride_head: 0x23, v_stride_seq: 0x24, v_stride_head: 0x25,
            variant: FIVariantParams(options: options, headDim: headDim, qoLen: 1, kvLen: kvLen, numQOHeads: numQOHeads),
            num_kv_heads: 0x31, group_size: 0x32, kv_begin: 0x33, chunk_size: 0x34, split: 0x35,
            request_indices: 0x41, chunk_indices: 0x42, kv_indptr: 0x43, kv_indices: 0x44, kv_last_page_len: 0x45,
            q_stride_batch: 0x51, k_stride_page: 0x52, v_stride_page: 0x53, page_size: 0x61, chunk_size_ptr: 0x71, timeline: 0x72
        )).bytes
    }

    /// The prefill launches' copy (CUDAPrefill.swift appendPrefillParams, now prefillParams), host tensors (address 0).
    static func oldPrefillBytes(_ options: AttentionOptions, strides: [(Int64, Int64)], headDim: Int, qoLen: Int, kvLen: Int,
                                numQOHeads: Int, numKVHeads: Int) -> [UInt8] {
        var a = KernelArguments()
        let scale = options.resolvedScale(headDim: headDim)
        let cap = options.logitsSoftCap
        var ropeScale: Float = 1, ropeTheta: Float = 1e4
        if case .ropeLlama(let s, let t) = options.positionEncoding { (ropeScale, ropeTheta) = (s, t) }
        let log2e: Float = 1.442_695_040_888_963_4
        for _ in 0..<5 { a.append(CUdeviceptr(0)) }
        for (sn, sh) in strides {
            a.append(sn)
            a.append(sh)
        }
        a.append(cap > 0 ? cap * log2e : scale * log2e)  // sm_scale_log2
        a.append(cap > 0 ? scale / cap : 0)                // soft_cap_pre_tanh_scale
        a.append(1 / ropeScale)                            // rope_rcp_scale
        a.append(Float(log2(Double(ropeTheta))))          // rope_log2_theta
        a.append(Int32(qoLen))
        a.append(Int32(kvLen))
        a.append(Int32(options.windowLeft))
        a.append(Int32(numQOHeads))
        a.append(Int32(numKVHeads))
        a.append(Int32(numQOHeads / numKVHeads))
        return a.bytes
    }

    @Test(arguments: 0..<optionSets.count)
    func decodeArgumentsAreTheOldBytes(index: Int) {
        let o = Self.optionSets[index]
        let decode = ParamsLayoutTests.layout(of: "FIDecodeParams"), variant = ParamsLayoutTests.layout(of: "FIVariantParams")
        let variantOffset = MemoryLayout<FIDecodeParams>.offset(of: \.variant)!
        for d in Self.headDims {
            for (kvLen, heads) in [(0, 32), (4097, 8)] {
                let new = Self.newDecodeBytes(o, headDim: d, kvLen: kvLen, numQOHeads: heads)
                let old = Self.oldDecodeBytes(o, headDim: d, kvLen: kvLen, numQOHeads: heads)
                #expect(new.count == old.count)
                #expect(decode.fieldBytes(new) == decode.fieldBytes(old), "options \(index) d \(d)")
                #expect(variant.fieldBytes(Array(new[variantOffset...])) == variant.fieldBytes(Array(old[variantOffset...])),
                        "options \(index) d \(d)")
            }
        }
    }

    @Test(arguments: 0..<optionSets.count)
    func prefillArgumentsAreTheOldBytes(index: Int) {
        let o = Self.optionSets[index]
        let t = Tensor.host([0, 0, 0, 0], shape: [4], dtype: .f32)
        let prefill = ParamsLayoutTests.layout(of: "FIPrefillParams"), variant = ParamsLayoutTests.layout(of: "FIVariantParams")
        let variantOffset = MemoryLayout<FIPrefillParams>.offset(of: \.variant)!
        let strides: [(Int64, Int64)] = [(4096, 128), (1024, 128), (1024, 64), (4096, 128)]
        for d in Self.headDims {
            for (qo, kv, hq, hkv) in [(7, 300, 32, 8), (0, 0, 8, 8)] {
                let new = KernelArguments(bytesOf: prefillParams(q: t, k: t, v: t, out: t, lse: nil, strides: strides, options: o,
                                                                 headDim: d, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv)).bytes
                let old = Self.oldPrefillBytes(o, strides: strides, headDim: d, qoLen: qo, kvLen: kv, numQOHeads: hq, numKVHeads: hkv)
                #expect(new.count == old.count)
                #expect(prefill.fieldBytes(new) == prefill.fieldBytes(old), "options \(index) d \(d)")
                #expect(variant.fieldBytes(Array(new[variantOffset...])) == variant.fieldBytes(Array(old[variantOffset...])),
                        "options \(index) d \(d)")
            }
        }
    }

    /// The decode and prefill copies agreed with each other too (their log2e literals round to one Float).
    @Test func theCopiesAgreed() {
        #expect(Float(1.44269504088896340736).bitPattern == Float(1.442_695_040_888_963_4).bitPattern)
        for o in Self.optionSets {
            let v = FIVariantParams(options: o, headDim: 128, qoLen: 1, kvLen: 5, numQOHeads: 4)
            let (f, _) = Self.oldDecodeVariant(o, headDim: 128, kvLen: 5, numQOHeads: 4)
            #expect([v.sm_scale_log2, v.soft_cap_pre_tanh_scale, v.rope_rcp_scale, v.rope_log2_theta].map(\.bitPattern)
                    == f.map(\.bitPattern))
        }
    }
}
