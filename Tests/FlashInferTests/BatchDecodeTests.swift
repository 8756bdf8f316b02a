import Testing

@testable import FlashInfer

@Suite struct BatchDecodeTests {
    /// The automatic path: tensor cores for GQA groups of 4 and more, CUDA cores for smaller
    /// groups and always in CUDA-graph mode; the CPU backend never reports tensor cores.
    @Test func automaticKernelChoice() throws {
        #expect(!BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 1, graphMode: false))
        #expect(!BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 2, graphMode: false))
        #expect(BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 4, graphMode: false))
        #expect(BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 8, graphMode: false))
        #expect(!BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: 8, graphMode: true))
        let w = BatchDecodeWithPagedKVCache(backend: .cpu)
        #expect(w.useTensorCores == nil)
        try w.plan(table: PageTable.contiguous(seqLens: [5, 9], pageSize: 4), numQOHeads: 8, numKVHeads: 2, headDim: 64, dtype: .f16)
        #expect(!w.usesTensorCores)
    }

    /// The paged CPU path equals single decode on each request's contiguous K/V (upstream's
    /// `test_batch_decode_kernels.py` compares paged decode with single decode the same way).
    @Test(arguments: [KVLayout.nhd, .hnd])
    func pagedEqualsSingleDecodePerRequest(layout: KVLayout) throws {
        let (hq, hkv, d, ps) = (8, 2, 64, 4)
        let seqLens = [1, 7, 8, 13, 0]
        var rng = TestRNG(seed: 99)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) } }
        let table = PageTable.contiguous(seqLens: seqLens, pageSize: ps)
        let pages = Int(table.indptr.last!)
        let shape = layout == .nhd ? [pages, ps, hkv, d] : [pages, hkv, ps, d]
        let cache = try PagedKVCache(k: Tensor.host(randn(shape.reduce(1, *)), shape: shape, dtype: .f16),
                                     v: Tensor.host(randn(shape.reduce(1, *)), shape: shape, dtype: .f16), layout: layout)
        let q = Tensor.host(randn(seqLens.count * hq * d), shape: [seqLens.count, hq, d], dtype: .f16)
        let w = BatchDecodeWithPagedKVCache(backend: .cpu)
        let opts = AttentionOptions(positionEncoding: .ropeLlama(), layout: layout)
        try w.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: opts)
        let r = try w.run(q: q, cache: cache, returnLSE: true)
        let out = try r.output.toFloats(), lse = try r.lse!.toFloats()
        for b in 0..<seqLens.count {
            let (k, v) = try cache.gather(request: b, table: table)
            let single = try singleDecode(
                q: q.select(axis: 0, index: b), k: Tensor.host(k, shape: [seqLens[b], hkv, d], dtype: .f16),
                v: Tensor.host(v, shape: [seqLens[b], hkv, d], dtype: .f16),
                options: AttentionOptions(positionEncoding: .ropeLlama()), returnLSE: true)
            #expect(Array(out[(b * hq * d)..<((b + 1) * hq * d)]) == (try single.output.toFloats()))
            #expect(Array(lse[(b * hq)..<((b + 1) * hq)]) == (try single.lse!.toFloats()))
        }
    }

    @Test func runBeforePlanAndMismatchedShapesAreErrors() throws {
        let w = BatchDecodeWithPagedKVCache(backend: .cpu)
        let cache = try PagedKVCache(k: Tensor.host([Float](repeating: 0, count: 2 * 4 * 2 * 64), shape: [2, 4, 2, 64], dtype: .f16),
                                     v: Tensor.host([Float](repeating: 0, count: 2 * 4 * 2 * 64), shape: [2, 4, 2, 64], dtype: .f16))
        let q = Tensor.host([Float](repeating: 0, count: 2 * 4 * 64), shape: [2, 4, 64], dtype: .f16)
        #expect(throws: FlashInferError.notPlanned(wrapper: "BatchDecodeWithPagedKVCache")) { try w.run(q: q, cache: cache) }
        try w.plan(table: PageTable.contiguous(seqLens: [3, 4], pageSize: 4), numQOHeads: 4, numKVHeads: 2, headDim: 64, dtype: .f16)
        #expect(throws: FlashInferError.self) { try w.run(q: Tensor.host([Float](repeating: 0, count: 3 * 4 * 64), shape: [3, 4, 64], dtype: .f16), cache: cache) }
        #expect(throws: FlashInferError.groupSize(numQOHeads: 3, numKVHeads: 2)) {
            try w.plan(table: PageTable.contiguous(seqLens: [3], pageSize: 4), numQOHeads: 3, numKVHeads: 2, headDim: 64, dtype: .f16)
        }
    }
}
