import Dispatch
import Synchronization
import Testing

@testable import FlashInfer

/// Issue 10, item 4: the shared objects are safe to use from several threads at once (the CPU
/// backend here; the GPU side runs under `flashinfer check --threads N --noise` on the device),
/// and a wrapper per thread computes exactly what it computes alone.
@Suite struct ConcurrencyTests {
    struct Problem: Sendable {
        var q: Tensor, k: Tensor, v: Tensor, table: PageTable, cache: PagedKVCache
    }

    static func problem(seed: UInt64) throws -> Problem {
        let (hq, hkv, d, ps) = (8, 2, 64, 4)
        var rng = TestRNG(seed: seed)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 2 - 1) } }
        let seqLens = [3, 9, 16]
        let table = PageTable.contiguous(seqLens: seqLens, pageSize: ps)
        let pages = Int(table.indptr.last!)
        let shape = [pages, ps, hkv, d]
        let cache = try PagedKVCache(k: Tensor.host(randn(shape.reduce(1, *)), shape: shape, dtype: .f16),
                                     v: Tensor.host(randn(shape.reduce(1, *)), shape: shape, dtype: .f16), layout: .nhd)
        return Problem(q: Tensor.host(randn(seqLens.count * hq * d), shape: [seqLens.count, hq, d], dtype: .f16),
                       k: Tensor.host(randn(40 * hkv * d), shape: [40, hkv, d], dtype: .f16),
                       v: Tensor.host(randn(40 * hkv * d), shape: [40, hkv, d], dtype: .f16), table: table, cache: cache)
    }

    /// Single decode of request 0's query and a batch decode (one wrapper per thread): the floats.
    static func compute(_ p: Problem) throws -> [Float] {
        let q0 = p.q.select(axis: 0, index: 0)
        let single = try singleDecode(q: q0, k: p.k, v: p.v, options: AttentionOptions(positionEncoding: .ropeLlama()),
                                      returnLSE: true, backend: .cpu)
        let w = BatchDecodeWithPagedKVCache(backend: .cpu)
        try w.plan(table: p.table, numQOHeads: 8, numKVHeads: 2, headDim: 64, dtype: .f16)
        let batch = try w.run(q: p.q, cache: p.cache, returnLSE: true)
        return try single.output.toFloats() + single.lse!.toFloats() + batch.output.toFloats() + batch.lse!.toFloats()
    }

    @Test func threadsComputeWhatOneThreadComputes() throws {
        let n = 8
        let problems = try (0..<n).map { try Self.problem(seed: 100 + UInt64($0)) }
        let expected = try problems.map(Self.compute)
        let got = Mutex([[Float]?](repeating: nil, count: n))
        let errors = Mutex([String]())
        // Every thread runs every problem (the shared host tensors are read by all of them at once).
        DispatchQueue.concurrentPerform(iterations: n) { t in
            for i in 0..<n {
                let j = (i + t) % n
                do {
                    let r = try Self.compute(problems[j])
                    if r != expected[j] { errors.withLock { $0.append("thread \(t): problem \(j) differs") } }
                    if t == 0 { got.withLock { $0[j] = r } }
                } catch {
                    errors.withLock { $0.append("thread \(t): \(error)") }
                }
            }
        }
        #expect(errors.withLock { $0 } == [])
        #expect(got.withLock { $0 }.allSatisfy { $0 != nil })
    }

    /// The JIT's in-memory table and the disk cache under concurrent stores and loads of one key.
    @Test func kernelCacheConcurrentStoresOfOneKey() {
        let dir = makeTempDirectory("concurrent")
        defer { removeDirectory(dir) }
        let cache = KernelCache(directory: dir)
        let payload: [UInt8] = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let bad = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            cache.store(key: "k", cubin: payload)
            switch cache.load(key: "k") {
            case .hit(let p) where p == payload: break
            default: bad.add(1, ordering: .relaxed)
            }
        }
        #expect(bad.load(ordering: .relaxed) == 0)
    }
}
