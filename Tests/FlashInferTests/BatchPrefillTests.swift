import Testing

@testable import FlashInfer

@Suite struct BatchPrefillTests {
    /// Paged and ragged batch prefill equal single prefill per request (upstream's
    /// `test_batch_prefill_kernels.py` compares with single prefill the same way).
    @Test(arguments: [false, true])
    func pagedAndRaggedEqualSinglePrefillPerRequest(causal: Bool) throws {
        let (hq, hkv, d, ps) = (4, 2, 64, 8)
        let qoLens = [1, 5, 9], kvLens = [3, 5, 20]
        var rng = TestRNG(seed: 3)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) } }
        var qoIndptr: [Int32] = [0], kvIndptr: [Int32] = [0]
        for i in 0..<3 {
            qoIndptr.append(qoIndptr.last! + Int32(qoLens[i]))
            kvIndptr.append(kvIndptr.last! + Int32(kvLens[i]))
        }
        let q = Tensor.host(randn(Int(qoIndptr.last!) * hq * d), shape: [Int(qoIndptr.last!), hq, d], dtype: .f16)
        let kr = Tensor.host(randn(Int(kvIndptr.last!) * hkv * d), shape: [Int(kvIndptr.last!), hkv, d], dtype: .f16)
        let vr = Tensor.host(randn(Int(kvIndptr.last!) * hkv * d), shape: [Int(kvIndptr.last!), hkv, d], dtype: .f16)
        let opts = AttentionOptions(causal: causal, positionEncoding: .ropeLlama())
        // Paged copy of the same K/V.
        let table = PageTable.contiguous(seqLens: kvLens, pageSize: ps)
        let pages = Int(table.indptr.last!)
        let cache = try PagedKVCache(k: Tensor.host([Float](repeating: 0, count: pages * ps * hkv * d), shape: [pages, ps, hkv, d], dtype: .f16),
                                     v: Tensor.host([Float](repeating: 0, count: pages * ps * hkv * d), shape: [pages, ps, hkv, d], dtype: .f16))
        let (bi, pos) = try getBatchIndicesPositions(appendIndptr: kvIndptr, seqLens: kvLens)
        try appendPagedKVCache(appendK: kr, appendV: vr, indices: AppendIndices(batchIndices: bi, positions: pos), cache: cache, table: table)

        let ragged = BatchPrefillAttention(backend: .cpu)
        try ragged.plan(qoIndptr: qoIndptr, kvIndptr: kvIndptr, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: opts)
        let rr = try ragged.run(q: q, kv: .ragged(k: kr, v: vr), returnLSE: true)
        let paged = BatchPrefillAttention(backend: .cpu)
        try paged.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: opts)
        let pr = try paged.run(q: q, kv: .paged(cache), returnLSE: true)
        #expect(try rr.output.toFloats() == pr.output.toFloats())
        #expect(try rr.lse!.toFloats() == pr.lse!.toFloats())
        let qAll = try q.toFloats(), kAll = try kr.toFloats(), vAll = try vr.toFloats()
        let out = try rr.output.toFloats()
        for b in 0..<3 {
            let (q0, k0) = (Int(qoIndptr[b]), Int(kvIndptr[b]))
            let single = try singlePrefill(
                q: Tensor.host(Array(qAll[(q0 * hq * d)..<((q0 + qoLens[b]) * hq * d)]), shape: [qoLens[b], hq, d], dtype: .f16),
                k: Tensor.host(Array(kAll[(k0 * hkv * d)..<((k0 + kvLens[b]) * hkv * d)]), shape: [kvLens[b], hkv, d], dtype: .f16),
                v: Tensor.host(Array(vAll[(k0 * hkv * d)..<((k0 + kvLens[b]) * hkv * d)]), shape: [kvLens[b], hkv, d], dtype: .f16),
                options: opts)
            #expect(Array(out[(q0 * hq * d)..<((q0 + qoLens[b]) * hq * d)]) == (try single.output.toFloats()))
        }
    }

    @Test func planValidation() {
        let w = BatchPrefillAttention(backend: .cpu)
        #expect(throws: FlashInferError.indices(array: "qo_indptr", position: 2, rule: "not monotonic: 1 < 3")) {
            try w.plan(qoIndptr: [0, 3, 1], kvIndptr: [0, 4, 8], numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        }
        #expect(throws: FlashInferError.causalQueryLongerThanKV(qoLen: 5, kvLen: 4)) {
            try w.plan(qoIndptr: [0, 5], kvIndptr: [0, 4], numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16, options: .init(causal: true))
        }
        #expect(throws: FlashInferError.self) {
            try w.plan(qoIndptr: [0, 1, 2], kvIndptr: [0, 4], numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        }
        #expect(throws: FlashInferError.indices(array: "kv_indptr", position: 0, rule: "must start at 0, got 2")) {
            try w.plan(qoIndptr: [0, 1], kvIndptr: [2, 4], numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        }
    }
}
