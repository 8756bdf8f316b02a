import Testing

@testable import FlashInfer
import FlashInferTesting

@Suite struct SharedPrefixTests {
    /// Shared prefix (as tensors or as pages) + unique pages equals plain attention over the
    /// concatenation, for decode and for causal append.
    @Test(arguments: [1, 4], [false, true])
    func equalsPlainAttention(queriesPerRequest: Int, prefixAsPages: Bool) throws {
        let (hq, hkv, d, ps) = (4, 2, 64, 4)
        let sharedLen = 12, unique = [5, 4, 9]  // append: each request's own part holds its new tokens
        var rng = TestRNG(seed: 77)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) } }
        // Cache: prefix pages 0..<3, then unique pages.
        let prefixPages = sharedLen / ps
        let prefixTable = PageTable(indptr: [0, Int32(prefixPages)], indices: (0..<Int32(prefixPages)).map { $0 }, lastPageLen: [Int32(ps)], pageSize: ps)
        var uTable = PageTable.contiguous(seqLens: unique, pageSize: ps)
        uTable.indices = uTable.indices.map { $0 + Int32(prefixPages) }
        let numPages = prefixPages + uTable.indices.count
        let cache = try PagedKVCache(k: Tensor.host(randn(numPages * ps * hkv * d), shape: [numPages, ps, hkv, d], dtype: .f16),
                                     v: Tensor.host(randn(numPages * ps * hkv * d), shape: [numPages, ps, hkv, d], dtype: .f16))
        let (pk, pv) = try cache.gather(request: 0, table: prefixTable)
        let total = unique.count * queriesPerRequest
        let q = Tensor.host(randn(total * hq * d), shape: [total, hq, d], dtype: .f16)
        let qo = (0...unique.count).map { Int32($0 * queriesPerRequest) }
        let opts = AttentionOptions(causal: queriesPerRequest > 1)
        let attn = SharedPrefixAttention(backend: .cpu)
        try attn.plan(prefix: prefixAsPages ? .pages(prefixTable) : .tensors(length: sharedLen), unique: uTable,
                      qoIndptr: queriesPerRequest == 1 ? nil : qo, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: opts)
        let out = try attn.run(q: q, cache: cache, prefix: prefixAsPages ? .pages : .tensors(
            k: Tensor.host(pk, shape: [sharedLen, hkv, d], dtype: .f16), v: Tensor.host(pv, shape: [sharedLen, hkv, d], dtype: .f16))).output.toFloats()
        let qAll = try q.toFloats()
        for b in 0..<unique.count {
            let (uk, uv) = try cache.gather(request: b, table: uTable)
            let n = sharedLen + unique[b]
            let lo = b * queriesPerRequest * hq * d, hi = lo + queriesPerRequest * hq * d
            let ref = try singlePrefill(q: Tensor.host(Array(qAll[lo..<hi]), shape: [queriesPerRequest, hq, d], dtype: .f16),
                                        k: Tensor.host(pk + uk, shape: [n, hkv, d], dtype: .f16), v: Tensor.host(pv + uv, shape: [n, hkv, d], dtype: .f16),
                                        options: opts)
            #expect(Tolerance.f16.compare(Array(out[lo..<hi]), try ref.output.toFloats()) == nil, "request \(b)")
        }
    }

    @Test func mismatchedPrefixKindIsAnError() throws {
        let t = PageTable.contiguous(seqLens: [4], pageSize: 4)
        let attn = SharedPrefixAttention(backend: .cpu)
        try attn.plan(prefix: .tensors(length: 4), unique: t, numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        let cache = try PagedKVCache(k: Tensor.host([Float](repeating: 0, count: 4 * 4 * 64), shape: [1, 4, 4, 64], dtype: .f16),
                                     v: Tensor.host([Float](repeating: 0, count: 4 * 4 * 64), shape: [1, 4, 4, 64], dtype: .f16))
        let q = Tensor.host([Float](repeating: 0, count: 4 * 64), shape: [1, 4, 64], dtype: .f16)
        #expect(throws: FlashInferError.self) { _ = try attn.run(q: q, cache: cache, prefix: .pages) }
        #expect(throws: FlashInferError.self) {
            try attn.plan(prefix: .pages(PageTable.contiguous(seqLens: [4, 4], pageSize: 4)), unique: t, numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        }
    }
}
