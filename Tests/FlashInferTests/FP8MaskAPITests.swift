import Testing

@testable import FlashInfer

/// The public APIs that gained FP8 K/V and custom masks (issue 12), on the CPU backend (the GPU
/// side is checked by `flashinfer check`), and the kernel specs they pick.
@Suite struct FP8MaskAPITests {
    typealias E = FlashInferError

    static func host(_ values: [Float], _ shape: [Int], _ dtype: DType) -> Tensor { Tensor.host(values, shape: shape, dtype: dtype) }
    /// A host tensor holding these FP8 codes as they are.
    static func codes(_ bytes: [UInt8], _ shape: [Int], _ dtype: DType) -> Tensor {
        Tensor(storage: .host(HostBuffer(bytes: bytes)), shape: shape, dtype: dtype)
    }

    // MARK: single prefill with a custom mask

    /// `singlePrefill(customMask:)` equals the reference with the same mask; `causal` is ignored
    /// under a mask; the packed form gives the same result; a wrong size and a decode mask are refused.
    @Test func singlePrefillCustomMask() throws {
        var rng = TestRNG(seed: 12)
        let (qo, kv, hq, hkv, d) = (5, 9, 4, 2, 64)
        let qv = sparseTestArray(qo * hq * d, &rng), kvv = sparseTestArray(kv * hkv * d, &rng), vv = sparseTestArray(kv * hkv * d, &rng)
        let q = Self.host(qv, [qo, hq, d], .f16), k = Self.host(kvv, [kv, hkv, d], .f16), v = Self.host(vv, [kv, hkv, d], .f16)
        var mask = (0..<(qo * kv)).map { _ in rng.unit() < 0.5 }
        for j in 0..<kv { mask[j] = false }  // query 0 keeps nothing
        let got = try singlePrefill(q: q, k: k, v: v, options: .init(causal: true), customMask: .bools(mask), returnLSE: true)
        let ref = try ReferenceAttention.prefill(q: try q.toFloats(), k: try k.toFloats(), v: try v.toFloats(), qoLen: qo, kvLen: kv,
                                                 numQOHeads: hq, numKVHeads: hkv, headDim: d, options: .init(),
                                                 customMask: .bools(mask))
        #expect(try got.output.toFloats() == Tensor.host(ref.output, shape: [qo, hq, d], dtype: .f16).toFloats())
        #expect(try got.lse!.toFloats() == ref.lse)
        // The fully masked query: output 0, LSE −inf.
        #expect(try got.output.toFloats()[0..<(hq * d)].allSatisfy { $0 == 0 })
        #expect(try got.lse!.toFloats()[0..<hq].allSatisfy { $0 == -.infinity })
        let packed = try singlePrefill(q: q, k: k, v: v, customMask: .packed(packbits(mask, bitOrder: .little)))
        #expect(try packed.output.toFloats() == got.output.toFloats())
        #expect(throws: E.self) { try singlePrefill(q: q, k: k, v: v, customMask: .bools(Array(mask.dropLast()))) }
        #expect(throws: E.unsupportedCombination("a custom mask in decode (single prefill and batch prefill take one)")) {
            _ = try validateSingle(q: Self.host(Array(repeating: 0.5, count: hq * d), [hq, d], .f16), k: k, v: v, decode: true,
                                   options: .init(), placement: .host, customMask: .bools(mask))
        }
    }

    // MARK: batch prefill with masks and FP8 K/V

    /// `BatchPrefillAttention.plan(kvDType:customMask:)` on the CPU: each request equals the reference
    /// with its own mask over the FP8 values as stored, scaled; the mask wins over `causal`.
    @Test(arguments: [false, true])
    func batchPrefillMaskAndFP8(paged: Bool) throws {
        var rng = TestRNG(seed: paged ? 21 : 22)
        let qoLens = [3, 0, 5], kvLens = [7, 4, 9]
        let (hq, hkv, d) = (4, 2, 64)
        let options = AttentionOptions(causal: true, kScale: 0.5, vScale: 2)
        let total = qoLens.reduce(0, +), nkv = kvLens.reduce(0, +)
        let qv = sparseTestArray(total * hq * d, &rng)
        let q = Self.host(qv, [total, hq, d], .bf16)
        let masks = zip(qoLens, kvLens).map { qo, kv in (0..<(qo * kv)).map { _ in rng.unit() < 0.6 } }
        var qoIndptr: [Int32] = [0], kvIndptr: [Int32] = [0]
        for b in 0..<3 {
            qoIndptr.append(qoIndptr.last! + Int32(qoLens[b]))
            kvIndptr.append(kvIndptr.last! + Int32(kvLens[b]))
        }
        let kAll = try quantize(sparseTestArray(nkv * hkv * d, &rng), to: .e4m3), vAll = try quantize(sparseTestArray(nkv * hkv * d, &rng), to: .e4m3)
        let kf = try dequantize(kAll, from: .e4m3), vf = try dequantize(vAll, from: .e4m3)
        let w = BatchPrefillAttention(backend: .cpu)
        let out: AttentionOutput
        if paged {
            // Page size 1: page p holds key p (the ragged rows as pages).
            let table = PageTable(indptr: kvIndptr, indices: (0..<Int32(nkv)).map { $0 }, lastPageLen: kvLens.map { $0 > 0 ? 1 : 0 },
                                      pageSize: 1)
            try w.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .bf16, kvDType: .e4m3,
                       options: options, customMask: .bools(masks.flatMap { $0 }))
            let cache = try PagedKVCache(k: Self.codes(kAll, [nkv, 1, hkv, d], .e4m3),
                                         v: Self.codes(vAll, [nkv, 1, hkv, d], .e4m3))
            out = try w.run(q: q, kv: .paged(cache), returnLSE: true)
        } else {
            let packed = try packCustomMasks(masks.flatMap { $0 }, qoLens: qoLens, kvLens: kvLens)
            try w.plan(qoIndptr: qoIndptr, kvIndptr: kvIndptr, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .bf16, kvDType: .e4m3,
                       options: options, customMask: .packed(packed.packed, indptr: packed.indptr))
            out = try w.run(q: q, kv: .ragged(k: Self.codes(kAll, [nkv, hkv, d], .e4m3),
                                             v: Self.codes(vAll, [nkv, hkv, d], .e4m3)), returnLSE: true)
        }
        let got = try out.output.toFloats(), gotLSE = try out.lse!.toFloats()
        let qRounded = try q.toFloats()
        for b in 0..<3 where qoLens[b] > 0 {
            let (q0, k0) = (Int(qoIndptr[b]), Int(kvIndptr[b]))
            var o = options
            o.causal = false
            let ref = try ReferenceAttention.prefill(
                q: Array(qRounded[(q0 * hq * d)..<((q0 + qoLens[b]) * hq * d)]), k: Array(kf[(k0 * hkv * d)..<((k0 + kvLens[b]) * hkv * d)]),
                v: Array(vf[(k0 * hkv * d)..<((k0 + kvLens[b]) * hkv * d)]), qoLen: qoLens[b], kvLen: kvLens[b], numQOHeads: hq,
                numKVHeads: hkv, headDim: d, options: o, customMask: .bools(masks[b]))
            let expect = try Tensor.host(ref.output, shape: [qoLens[b], hq, d], dtype: .bf16).toFloats()
            #expect(Array(got[(q0 * hq * d)..<((q0 + qoLens[b]) * hq * d)]) == expect, "request \(b)")
            #expect(Array(gotLSE[(q0 * hq)..<((q0 + qoLens[b]) * hq)]) == ref.lse, "request \(b) lse")
        }
    }

    /// Plan-time refusals: a mask of the wrong total size, a packed indptr that disagrees with the
    /// lengths, an FP8 q, K/V of another 16-bit dtype, a mask in CUDA-graph mode; run-time: a cache
    /// of another dtype than planned.
    @Test func batchPrefillRefusals() throws {
        let w = BatchPrefillAttention(backend: .cpu)
        let (qo, kv): ([Int32], [Int32]) = ([0, 2, 5], [0, 4, 8])
        func plan(dtype: DType = .f16, kvDType: DType? = nil, mask: BatchCustomMask? = nil) throws {
            try w.plan(qoIndptr: qo, kvIndptr: kv, numQOHeads: 2, numKVHeads: 2, headDim: 64, dtype: dtype, kvDType: kvDType, customMask: mask)
        }
        #expect(throws: E.shape(tensor: "custom_mask", axis: 0, name: "sum of qo_len · kv_len", expected: "20", got: 19)) {
            try plan(mask: .bools(Array(repeating: true, count: 19)))
        }
        #expect(throws: E.self) { try plan(mask: .packed([0xFF, 0xFF, 0xFF], indptr: [0, 2, 3])) }
        #expect(throws: E.dtype(tensor: "q", expected: "f16 or bf16 (FP8 is supported for K/V only, not q)", got: .e4m3)) { try plan(dtype: .e4m3) }
        #expect(throws: E.dtype(tensor: "k", expected: "f16 (q's dtype), e4m3 or e5m2", got: .bf16)) { try plan(kvDType: .bf16) }
        try plan(kvDType: .e5m2, mask: .bools(Array(repeating: true, count: 20)))
        let q = Self.host(Array(repeating: 0.25, count: 5 * 2 * 64), [5, 2, 64], .f16)
        let k16 = Self.host(Array(repeating: 0.25, count: 8 * 2 * 64), [8, 2, 64], .f16)
        #expect(throws: E.dtype(tensor: "k", expected: "e5m2 (from plan)", got: .f16)) { _ = try w.run(q: q, kv: .ragged(k: k16, v: k16)) }
        let g = BatchPrefillAttention(backend: .cpu, graphCapacity: GraphCapacity(maxBatch: 4, maxPages: 16, maxQORows: 16))
        #expect(throws: E.unsupportedCombination("a custom mask in CUDA-graph mode (graphCapacity): the mask is uploaded per plan")) {
            try g.plan(qoIndptr: qo, kvIndptr: kv, numQOHeads: 2, numKVHeads: 2, headDim: 64, dtype: .f16,
                       customMask: .bools(Array(repeating: true, count: 20)))
        }
    }

    // MARK: batch decode with an FP8 cache

    /// `BatchDecodeWithPagedKVCache.plan(kvDType:)`: the CPU run over an FP8 cache equals the
    /// reference on the stored values with the scales; a 16-bit cache for an FP8 plan is refused.
    @Test func batchDecodeFP8() throws {
        var rng = TestRNG(seed: 31)
        let (hq, hkv, d, ps) = (8, 2, 64, 4)
        let table = PageTable.contiguous(seqLens: [5, 9], pageSize: ps)
        let pages = table.indices.count
        let n = pages * ps * hkv * d
        let kb = try quantize(sparseTestArray(n, &rng), to: .e5m2), vb = try quantize(sparseTestArray(n, &rng), to: .e5m2)
        let cache = try PagedKVCache(k: Self.codes(kb, [pages, ps, hkv, d], .e5m2),
                                     v: Self.codes(vb, [pages, ps, hkv, d], .e5m2))
        let q = Self.host(sparseTestArray(2 * hq * d, &rng), [2, hq, d], .f16)
        let options = AttentionOptions(kScale: 3, vScale: 0.25)
        let w = BatchDecodeWithPagedKVCache(backend: .cpu)
        try w.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, kvDType: .e5m2, options: options)
        let got = try w.run(q: q, cache: cache, returnLSE: true)
        let kAll = try cache.k.toFloats(), vAll = try cache.v.toFloats(), qAll = try q.toFloats()
        for b in 0..<2 {
            let (k, v) = cache.gather(request: b, table: table, kAll: kAll, vAll: vAll)
            let ref = try ReferenceAttention.decode(q: Array(qAll[(b * hq * d)..<((b + 1) * hq * d)]), k: k, v: v, kvLen: table.seqLen(b),
                                                    numQOHeads: hq, numKVHeads: hkv, headDim: d, options: options)
            #expect(Array(try got.output.toFloats()[(b * hq * d)..<((b + 1) * hq * d)])
                    == (try Tensor.host(ref.output, shape: [hq, d], dtype: .f16).toFloats()))
        }
        let c16 = try PagedKVCache(k: Self.host(Array(repeating: 0.5, count: n), [pages, ps, hkv, d], .f16),
                                   v: Self.host(Array(repeating: 0.5, count: n), [pages, ps, hkv, d], .f16))
        #expect(throws: E.dtype(tensor: "paged_kv_cache", expected: "e5m2 (from plan)", got: .f16)) { _ = try w.run(q: q, cache: c16) }
        // The automatic path: CUDA cores for FP8 caches (measured, bench/NOTES.md), tensor cores for
        // 16-bit caches with groups of 4 or more.
        #expect(BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 4, graphMode: false, kvDType: .e4m3) == false)
        #expect(BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 4, graphMode: false, kvDType: .f16))
        #expect(BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 2, graphMode: false) == false)
    }

    // MARK: kernel specs

    /// The specs name their K/V dtype and mask, drop `causal` under a mask, and size shared memory
    /// as the kernels do (FP8: one 16-bit K and V tile plus the fp8 ring, 3 deep for the 64-row tile).
    @Test func specs() {
        let p = PrefillSpec(dtype: .f16, headDim: 128, options: .init(causal: true), kvSource: .paged, kvDType: .e4m3, customMask: true)
        #expect(p.name.hasPrefix("batch_prefill_paged_f16_kve4m3_d128_none_mask_"))
        #expect(!p.causal && p.customMask && !p.plain)
        #expect(p.source().contains("__nv_fp8_e4m3>"))
        var t = PrefillTile.batch(headDim: 128, plain: false, ctaQ: 64)
        #expect(t.fp8Stages == 3)
        #expect(t.sharedBytes(headDim: 128, elementBytes: 2, kvElementBytes: 1) == (64 + 2 * 64) * 128 * 2 + 2 * 3 * 64 * 128)
        t = PrefillTile.batch(headDim: 128, plain: false, ctaQ: 128)
        #expect(t.fp8Stages == 2)
        #expect(t.sharedBytes(headDim: 128, elementBytes: 2, kvElementBytes: 2) == (128 + 4 * 64) * 128 * 2)
        let f16 = PrefillSpec(dtype: .f16, headDim: 128)
        #expect(f16.name == "prefill_f16_d128_none_q128kv64s64" && f16.kvDType == .f16)
        let dec = DecodeSpec(dtype: .bf16, headDim: 128, group: 4, posEnc: .none, softCap: false, paged: true, kvDType: .e5m2)
        #expect(dec.name == "decode_bf16_kve5m2_d128_g4_none_s4_k4_paged")
        #expect(dec.sharedBytes == max(dec.pipelineBytes, dec.epilogueBytes) + dec.slots * 4 * 4 * 4 + dec.slots * 4 * 4)
        #expect(dec.pipelineBytes == 4 * 2 * dec.tileKeys * 128)
        #expect(DecodeSpec(dtype: .f16, headDim: 128, group: 4, posEnc: .none, softCap: false).name == "decode_f16_d128_g4_none_s4_k4")
    }
}
