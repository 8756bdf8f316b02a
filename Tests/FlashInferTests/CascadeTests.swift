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

    /// CUDA-graph mode on the CPU backend: the capacities are checked at every plan (count of levels,
    /// one maxQORows, each level's requests and pages, the query rows), a refused plan leaves the
    /// wrapper unplanned, and a later plan within the capacities runs as a plain wrapper does.
    @Test func graphCapacities() throws {
        let (hq, hkv, d, ps) = (4, 2, 64, 4)
        let shared = PageTable.contiguous(seqLens: [8], pageSize: ps)
        var own = PageTable.contiguous(seqLens: [3, 6], pageSize: ps)
        own.indices = own.indices.map { $0 + 2 }
        let levels = [CascadeLevel(qoIndptr: [0, 2], table: shared), CascadeLevel(qoIndptr: [0, 1, 2], table: own)]
        func caps(_ b1: Int, _ p1: Int, rows: Int = 2) -> [GraphCapacity] {
            [GraphCapacity(maxBatch: 1, maxPages: 2, maxQORows: rows), GraphCapacity(maxBatch: b1, maxPages: p1, maxQORows: rows)]
        }
        func plan(_ c: MultiLevelCascadeAttention, _ l: [CascadeLevel]) throws {
            try c.plan(levels: l, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16)
        }
        #expect(throws: FlashInferError.self) { try plan(MultiLevelCascadeAttention(backend: .cpu, graphCapacities: [caps(2, 3)[0]]), levels) }
        #expect(throws: FlashInferError.self) {
            try plan(MultiLevelCascadeAttention(backend: .cpu, graphCapacities: [caps(2, 3)[0], caps(2, 3, rows: 3)[1]]), levels)
        }
        #expect(throws: FlashInferError.capacityExceeded(what: "batch size", value: "2", capacity: "1 requests")) {
            try plan(MultiLevelCascadeAttention(backend: .cpu, graphCapacities: caps(1, 3)), levels)
        }
        #expect(throws: FlashInferError.capacityExceeded(what: "pages", value: "3", capacity: "2 pages")) {
            try plan(MultiLevelCascadeAttention(backend: .cpu, graphCapacities: caps(2, 2)), levels)
        }
        let g = MultiLevelCascadeAttention(backend: .cpu, graphCapacities: caps(2, 3))
        var rng = TestRNG(seed: 5)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) } }
        let cache = try PagedKVCache(k: Tensor.host(randn(5 * ps * hkv * d), shape: [5, ps, hkv, d], dtype: .f16),
                                     v: Tensor.host(randn(5 * ps * hkv * d), shape: [5, ps, hkv, d], dtype: .f16))
        let q = Tensor.host(randn(2 * hq * d), shape: [2, hq, d], dtype: .f16)
        // Three query rows where the capacity holds two: refused, and the wrapper is unplanned.
        #expect(throws: FlashInferError.capacityExceeded(what: "query rows (qo_indptr[-1])", value: "3", capacity: "2 rows")) {
            try plan(g, [CascadeLevel(qoIndptr: [0, 3], table: shared), CascadeLevel(qoIndptr: [0, 1, 3], table: own)])
        }
        #expect(throws: FlashInferError.notPlanned(wrapper: "MultiLevelCascadeAttention")) { _ = try g.run(q: q, cache: cache) }
        try plan(g, levels)
        let plain = MultiLevelCascadeAttention(backend: .cpu)
        try plan(plain, levels)
        #expect(try g.run(q: q, cache: cache).output.toFloats() == plain.run(q: q, cache: cache).output.toFloats())
    }
}
