import FlashInfer
import FlashInferCUDA

/// Cascade == plain attention over each request's whole sequence (shared prefix levels, then its
/// own pages), on the GPU against the Float64 reference. Levels 2 and 3; decode and append.
struct CascadeCase {
    var levels: Int
    var shared: Int
    var unique: Int
    var queriesPerRequest: Int  // 1 = decode, > 1 = append (causal on the last level)
    var pageSize: Int
    var batch: Int
    var dtype: DType = .f16

    var name: String {
        "cascade levels=\(levels) shared=\(shared) unique=\(unique) qo=\(queriesPerRequest) page=\(pageSize) B=\(batch) \(dtype.rawValue)"
    }

    /// `stream` nil runs the CPU backend (to check the check itself without a GPU: `check --cpu`).
    func run(device: Device?, stream: Stream?, rng: inout SeededRNG) throws -> String? {
        let backend: Backend = stream.map { .cuda($0) } ?? .cpu
        let (hq, hkv, d, ps) = (32, 8, 128, pageSize)
        var nextPage: Int32 = 0
        func pages(_ n: Int) -> (ids: [Int32], last: Int32) {
            let p = max((n + ps - 1) / ps, 1)
            let ids = (0..<Int32(p)).map { nextPage + $0 }
            nextPage += Int32(p)
            return (ids, Int32(n - (p - 1) * ps))
        }
        // Level 0: one prefix shared by all. Level 1 (3 levels only): a prefix per pair of requests.
        // Last level: each request's own tokens.
        var tables: [PageTable] = [], qoIndptrs: [[Int32]] = []
        let total = batch * queriesPerRequest
        let p0 = pages(shared)
        tables.append(PageTable(indptr: [0, Int32(p0.ids.count)], indices: p0.ids, lastPageLen: [p0.last], pageSize: ps))
        qoIndptrs.append([0, Int32(total)])
        let midLen = 3 * ps + 5
        if levels == 3 {
            var idx: [Int32] = [], ind: [Int32] = [0], last: [Int32] = [], qo: [Int32] = [0]
            for g in stride(from: 0, to: batch, by: 2) {
                let p = pages(midLen)
                idx += p.ids
                ind.append(Int32(idx.count))
                last.append(p.last)
                qo.append(Int32(min(g + 2, batch) * queriesPerRequest))
            }
            tables.append(PageTable(indptr: ind, indices: idx, lastPageLen: last, pageSize: ps))
            qoIndptrs.append(qo)
        }
        var idx: [Int32] = [], ind: [Int32] = [0], last: [Int32] = []
        for _ in 0..<batch {
            let p = pages(unique)
            idx += p.ids
            ind.append(Int32(idx.count))
            last.append(p.last)
        }
        tables.append(PageTable(indptr: ind, indices: idx, lastPageLen: last, pageSize: ps))
        qoIndptrs.append((0...batch).map { Int32($0 * queriesPerRequest) })
        let numPages = Int(nextPage)
        let shape = [numPages, 2, ps, hkv, d]
        let kvHost = Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: dtype)
        let hostCache = try PagedKVCache(combined: kvHost)
        let devCache = try PagedKVCache(combined: kvHost.moved(to: backend))
        let q = Tensor.host((0..<(total * hq * d)).map { _ in rng.normal() }, shape: [total, hq, d], dtype: dtype)
        let options = AttentionOptions(causal: queriesPerRequest > 1)
        let cascade = MultiLevelCascadeAttention(backend: backend)
        try cascade.plan(levels: zip(qoIndptrs, tables).map { CascadeLevel(qoIndptr: $0.0, table: $0.1) },
                         numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: dtype, options: options, numPagesInCache: numPages)
        let got: [Float]
        if let device, let stream {
            let out = try Tensor.empty(shape: q.shape, dtype: dtype, device: device)
            try out.poison(stream: stream)
            _ = try cascade.run(q: q.toDevice(device), cache: devCache, out: out)
            try stream.synchronize()
            got = try out.toFloats()
        } else {
            got = try cascade.run(q: q, cache: devCache).output.toFloats()
        }
        // Reference: each request's concatenated sequence through the Float64 reference.
        let kAll = try hostCache.k.toFloats(), vAll = try hostCache.v.toFloats()
        let qAll = try q.toFloats()
        var expected: [Float] = []
        for b in 0..<batch {
            var k: [Float] = [], v: [Float] = []
            for (l, t) in tables.enumerated() {
                let r = l == 0 ? 0 : (l == 1 && levels == 3 ? b / 2 : b)
                let g = hostCache.gather(request: r, table: t, kAll: kAll, vAll: vAll)
                k += g.k
                v += g.v
            }
            let n = k.count / (hkv * d)
            let lo = b * queriesPerRequest * hq * d
            let r = try ReferenceAttention.prefill(q: Array(qAll[lo..<(lo + queriesPerRequest * hq * d)]), k: k, v: v,
                                                   qoLen: queriesPerRequest, kvLen: n, numQOHeads: hq, numKVHeads: hkv, headDim: d, options: options,
                                                   rotatedRounding: dtype)
            expected += r.output
        }
        let tol = dtype == .f16 ? Tolerance.f16 : .relaxed
        if let m = tol.compare(got, expected.map { dtype.roundTrip($0) }) { return "output: \(m)" }
        return nil
    }
}

public func cascadeCases() -> [CheckCase] {
    var cs: [CascadeCase] = []
    for shared in [128, 2048, 32768] {
        for (unique, qo) in [(1, 1), (37, 1), (256, 1), (37, 17)] {
            let batch = shared == 32768 ? 4 : 12
            cs.append(CascadeCase(levels: 2, shared: shared, unique: unique, queriesPerRequest: qo, pageSize: 16, batch: batch))
        }
    }
    cs.append(CascadeCase(levels: 2, shared: 2048, unique: 37, queriesPerRequest: 1, pageSize: 1, batch: 17))
    cs.append(CascadeCase(levels: 2, shared: 128, unique: 37, queriesPerRequest: 17, pageSize: 1, batch: 5))
    cs.append(CascadeCase(levels: 3, shared: 2048, unique: 37, queriesPerRequest: 1, pageSize: 16, batch: 12))
    cs.append(CascadeCase(levels: 3, shared: 128, unique: 256, queriesPerRequest: 17, pageSize: 16, batch: 7, dtype: .bf16))
    cs.append(CascadeCase(levels: 3, shared: 2048, unique: 1, queriesPerRequest: 1, pageSize: 1, batch: 12, dtype: .bf16))
    return cs.map { c in
        CheckCase(name: c.name, run: { device, stream, rng in try c.run(device: device, stream: stream, rng: &rng) },
                  cpuRun: { rng in try c.run(device: nil, stream: nil, rng: &rng) })
    }
}

/// CUDA-graph mode of the cascade: one capture after the first plan (two levels: a shared prefix,
/// then each request's own pages), replayed after re-plans with other prefix lengths, batch sizes
/// and page tables within the capacities; each replay against the CPU cascade on the planned rows.
public func cascadeGraphCases() -> [CheckCase] {
    [CheckCase(name: "cascade cuda-graph replay after re-plan") { device, stream, rng in
        let (hq, hkv, d, ps, maxBatch, numPages) = (32, 8, 128, 16, 6, 600)
        let caps = [GraphCapacity(maxBatch: 1, maxPages: 256, maxQORows: maxBatch),
                    GraphCapacity(maxBatch: maxBatch, maxPages: numPages, maxQORows: maxBatch)]
        let shape = [numPages, 2, ps, hkv, d]
        let kvHost = Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: .f16)
        let hostCache = try PagedKVCache(combined: kvHost)
        let devCache = try PagedKVCache(combined: kvHost.toDevice(device))
        let q = try Tensor.empty(shape: [maxBatch, hq, d], dtype: .f16, device: device)
        let out = try Tensor.empty(shape: [maxBatch, hq, d], dtype: .f16, device: device)
        guard case .device(let qBuf, _) = q.storage else { return "q not on the device" }
        let cascade = MultiLevelCascadeAttention(backend: .cuda(stream), graphCapacities: caps)
        var graph: Graph?
        let steps: [(shared: Int, unique: [Int])] = [(1024, [1, 300, 17, 1000, 5, 64]), (2048, [40, 17]),
                                                     (16, [1, 1, 1, 2000, 3, 9]), (4096, [129])]
        for (step, s) in steps.enumerated() {
            var perm = (0..<Int32(numPages)).map { $0 }
            for i in stride(from: perm.count - 1, to: 0, by: -1) { perm.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            let sharedPages = s.shared / ps
            var at = sharedPages, idx: [Int32] = [], ind: [Int32] = [0], last: [Int32] = []
            for n in s.unique {
                let p = (n + ps - 1) / ps
                idx += perm[at..<(at + p)]
                at += p
                ind.append(Int32(idx.count))
                last.append(Int32(n - (p - 1) * ps))
            }
            let b = s.unique.count
            let levels = [CascadeLevel(qoIndptr: [0, Int32(b)],
                                       table: PageTable(indptr: [0, Int32(sharedPages)], indices: Array(perm[0..<sharedPages]),
                                                        lastPageLen: [Int32(ps)], pageSize: ps)),
                          CascadeLevel(qoIndptr: (0...b).map(Int32.init),
                                       table: PageTable(indptr: ind, indices: idx, lastPageLen: last, pageSize: ps))]
            let qHost = (0..<(maxBatch * hq * d)).map { _ in rng.normal() }
            try qBuf.copyFromHost(DType.f16.encode(qHost), stream: stream)
            try out.poison(stream: stream)
            try cascade.plan(levels: levels, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            if graph == nil {
                graph = try Graph.capture(on: stream) { _ = try cascade.run(q: q, cache: devCache, out: out) }
            }
            try graph!.launch(on: stream)
            try stream.synchronize()
            let cpu = MultiLevelCascadeAttention(backend: .cpu)
            try cpu.plan(levels: levels, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            let expected = try cpu.run(q: Tensor.host(Array(qHost[0..<(b * hq * d)]), shape: [b, hq, d], dtype: .f16),
                                       cache: hostCache).output.toFloats()
            if let m = Tolerance.f16.compare(Array(try out.toFloats()[0..<(b * hq * d)]), expected) {
                return "step \(step) (shared \(s.shared), B=\(b)): \(m)"
            }
        }
        // Refused: more requests than level 1 holds, more query rows than the capacity.
        let t = PageTable.contiguous(seqLens: Array(repeating: 16, count: maxBatch + 1), pageSize: ps)
        do {
            try cascade.plan(levels: [CascadeLevel(qoIndptr: [0, Int32(maxBatch + 1)], table: PageTable.contiguous(seqLens: [16], pageSize: ps)),
                                      CascadeLevel(qoIndptr: (0...(maxBatch + 1)).map(Int32.init), table: t)],
                             numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            return "graph mode accepted \(maxBatch + 1) requests"
        } catch {}
        return nil
    }]
}
