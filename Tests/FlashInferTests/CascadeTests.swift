import Testing

@testable import FlashInfer
import FlashInferTesting

@Suite struct CascadeTests {
    /// Two levels (shared prefix + unique suffixes) equal plain attention over each request's
    /// whole sequence (prefix pages followed by its own pages), for decode and append.
    @Test(arguments: [1, 3])
    func twoLevelsEqualPlainAttention(queriesPerRequest: Int) throws {
        let (hq, hkv, d, ps) = (4, 2, 64, 4)
        let shared = 10, unique = [3, 7, 4]
        let batch = unique.count
        var rng = TestRNG(seed: 21)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) } }
        // Pool: shared pages 0..<3, then each request's unique pages.
        let sharedPages = (shared + ps - 1) / ps
        let sharedTable = PageTable(indptr: [0, Int32(sharedPages)], indices: (0..<Int32(sharedPages)).map { $0 },
                                    lastPageLen: [Int32(shared - (sharedPages - 1) * ps)], pageSize: ps)
        var uniqueIdx: [Int32] = [], uniqueIndptr: [Int32] = [0], uniqueLast: [Int32] = []
        var next = Int32(sharedPages)
        for n in unique {
            let p = (n + ps - 1) / ps
            for _ in 0..<p { uniqueIdx.append(next); next += 1 }
            uniqueIndptr.append(uniqueIndptr.last! + Int32(p))
            uniqueLast.append(Int32(n - (p - 1) * ps))
        }
        let uniqueTable = PageTable(indptr: uniqueIndptr, indices: uniqueIdx, lastPageLen: uniqueLast, pageSize: ps)
        let numPages = Int(next)
        let cache = try PagedKVCache(k: Tensor.host(randn(numPages * ps * hkv * d), shape: [numPages, ps, hkv, d], dtype: .f16),
                                     v: Tensor.host(randn(numPages * ps * hkv * d), shape: [numPages, ps, hkv, d], dtype: .f16))
        let total = batch * queriesPerRequest
        let q = Tensor.host(randn(total * hq * d), shape: [total, hq, d], dtype: .f16)
        let perReq = (0...batch).map { Int32($0 * queriesPerRequest) }
        let cascade = MultiLevelCascadeAttention(backend: .cpu)
        let opts = AttentionOptions(causal: true)
        try cascade.plan(levels: [CascadeLevel(qoIndptr: [0, Int32(total)], table: sharedTable),
                                  CascadeLevel(qoIndptr: perReq, table: uniqueTable)],
                         numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: opts)
        let got = try cascade.run(q: q, cache: cache, returnLSE: true)
        // Plain attention over each request's whole sequence: the shared tokens, then its own
        // (gathered, since the shared length is not a whole number of pages).
        let plainOut = try got.output.toFloats()
        let qAll = try q.toFloats()
        for b in 0..<batch {
            let (sk, sv) = try cache.gather(request: 0, table: sharedTable)
            let (uk, uv) = try cache.gather(request: b, table: uniqueTable)
            let n = shared + unique[b]
            let ref = try singlePrefill(
                q: Tensor.host(Array(qAll[(b * queriesPerRequest * hq * d)..<((b + 1) * queriesPerRequest * hq * d)]), shape: [queriesPerRequest, hq, d], dtype: .f16),
                k: Tensor.host(sk + uk, shape: [n, hkv, d], dtype: .f16), v: Tensor.host(sv + uv, shape: [n, hkv, d], dtype: .f16),
                options: opts)
            let slice = Array(plainOut[(b * queriesPerRequest * hq * d)..<((b + 1) * queriesPerRequest * hq * d)])
            #expect(Tolerance.f16.compare(slice, try ref.output.toFloats()) == nil, "request \(b)")
        }
    }

    @Test func levelValidation() {
        let t = PageTable.contiguous(seqLens: [4], pageSize: 4)
        let c = MultiLevelCascadeAttention(backend: .cpu)
        #expect(throws: FlashInferError.option(name: "levels", value: "[]", rule: "a cascade needs at least one level")) {
            try c.plan(levels: [], numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        }
        #expect(throws: FlashInferError.self) {
            try c.plan(levels: [CascadeLevel(qoIndptr: [0, 4], table: t), CascadeLevel(qoIndptr: [0, 3], table: t)],
                       numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        }
        #expect(throws: FlashInferError.self) {
            try c.plan(levels: [CascadeLevel(qoIndptr: [0, 2, 4], table: t)], numQOHeads: 4, numKVHeads: 4, headDim: 64, dtype: .f16)
        }
    }
}
