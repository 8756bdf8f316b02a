import CFlashInferParams
import FlashInferCUDA
import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// `FIVariantParams(options:…)` replaced three copies of the variant math (single decode, batch
/// decode, prefill): it must give the values the old copies gave. The old decode copy is kept here,
/// verbatim but for its name, as the reference. (When the launchers moved to the C structs, a test
/// here also compared their bytes with the old packers'; that held, and the structs have since
/// changed shape: KV tensors and page tables are sub-structs, checked by ParamsLayoutTests.)
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

    /// `FIVariantParams(options:…)` is the one copy of the variant math: for every option set, head
    /// dim and length it gives the old copies' values, bit for bit.
    @Test(arguments: 0..<optionSets.count)
    func variantParamsAreTheOldMath(index: Int) {
        let o = Self.optionSets[index]
        for d in Self.headDims {
            for (qoLen, kvLen, heads) in [(1, 0, 32), (1, 4097, 8), (7, 300, 32)] {
                let v = FIVariantParams(options: o, headDim: d, qoLen: qoLen, kvLen: kvLen, numQOHeads: heads)
                let (f, i) = Self.oldDecodeVariant(o, headDim: d, kvLen: kvLen, numQOHeads: heads)
                #expect([v.sm_scale_log2, v.soft_cap_pre_tanh_scale, v.rope_rcp_scale, v.rope_log2_theta].map(\.bitPattern)
                        == f.map(\.bitPattern), "options \(index) d \(d)")
                #expect([v.qo_len, v.kv_len, v.window_left, v.num_qo_heads] == [Int32(qoLen)] + i.dropFirst(), "options \(index)")
            }
        }
    }

    /// `prefillParams` puts each stride, length and head count in its named field.
    @Test func prefillParamsFields() {
        let t = Tensor.host([0, 0, 0, 0], shape: [4], dtype: .f32)
        let strides: [(Int64, Int64)] = [(4096, 128), (1024, 128), (1024, 64), (4096, 130)]
        let p = prefillParams(q: t, k: t, v: t, out: t, lse: nil, strides: strides, options: AttentionOptions(), headDim: 128,
                              qoLen: 7, kvLen: 300, numQOHeads: 32, numKVHeads: 8)
        #expect([p.q_stride_n, p.q_stride_h, p.kv.k_stride_n, p.kv.k_stride_h, p.kv.v_stride_n, p.kv.v_stride_h, p.o_stride_n,
                 p.o_stride_h] == strides.flatMap { [$0.0, $0.1] })
        #expect(p.variant.qo_len == 7 && p.variant.kv_len == 300 && p.variant.num_qo_heads == 32)
        #expect(p.num_kv_heads == 8 && p.group_size == 4)
        #expect(p.q == 0 && p.kv.k == 0 && p.o == 0 && p.lse == 0, "host tensors have no device address")
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
