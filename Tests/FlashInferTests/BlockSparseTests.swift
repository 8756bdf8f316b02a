import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// Block-sparse attention: the reference (dense-mask expansion) against a direct block-by-block
/// implementation and against upstream's paged formulation, the mask layouts, the wrapper, and
/// every validation rule.
@Suite struct BlockSparseTests {
    struct BSRCase: CustomStringConvertible, Sendable {
        var name: String
        var m: Int, n: Int, r: Int, c: Int
        var hq = 4, hkv = 2, d = 16
        var density = 0.5
        var withMask = false
        var options = AttentionOptions()
        var description: String { "\(name) M\(m) N\(n) R\(r) C\(c) h\(hq)/\(hkv)\(withMask ? " mask" : "")" }
    }

    static let cases: [BSRCase] = [
        BSRCase(name: "vector", m: 7, n: 9, r: 1, c: 1),
        BSRCase(name: "square", m: 16, n: 16, r: 4, c: 4),
        BSRCase(name: "rect", m: 12, n: 18, r: 3, c: 2, density: 0.4),
        BSRCase(name: "M%R", m: 10, n: 12, r: 4, c: 3),
        BSRCase(name: "empty-rows", m: 12, n: 16, r: 2, c: 4, density: 0.15),
        BSRCase(name: "mask", m: 12, n: 16, r: 4, c: 2, withMask: true),
        BSRCase(name: "mask-r1", m: 6, n: 10, r: 1, c: 5, withMask: true),
        BSRCase(name: "mask-sparse", m: 16, n: 12, r: 4, c: 4, density: 0.3, withMask: true),
        BSRCase(name: "mqa-softcap", m: 8, n: 8, r: 2, c: 2, hq: 4, hkv: 1, options: .init(smScale: 0.5, logitsSoftCap: 1.5)),
        BSRCase(name: "hnd-scales", m: 9, n: 12, r: 3, c: 4, options: .init(layout: .hnd, kScale: 0.4, vScale: 3)),
    ]

    /// A random pattern: each block kept with probability `density`, in a shuffled order; block row 0
    /// is always empty (a row with no block), so every case has fully masked queries.
    static func randomPattern(_ c: BSRCase, _ rng: inout TestRNG) throws -> BlockSparsePattern {
        let mb = (c.m + c.r - 1) / c.r, nb = c.n / c.c
        var indptr: [Int32] = [0], indices: [Int32] = []
        for i in 0..<mb {
            var row = i == 0 ? [] : (0..<nb).filter { _ in rng.unit() < c.density }.map(Int32.init)
            for a in stride(from: row.count - 1, to: 0, by: -1) { row.swapAt(a, Int(rng.next() % UInt64(a + 1))) }
            indices += row
            indptr.append(Int32(indices.count))
        }
        return try BlockSparsePattern(indptr: indptr, indices: indices, rows: c.m, columns: c.n, blockRows: c.r, blockColumns: c.c)
    }

    /// Whether query `q` sees key `k`, block by block: find `k`'s block among `q`'s block row's blocks,
    /// then read the `[nnz, R, C]` mask.
    static func directKeep(_ p: BlockSparsePattern, _ mask: [Bool]?, _ q: Int, _ k: Int) -> Bool {
        let i = q / p.blockRows
        for e in Int(p.indptr[i])..<Int(p.indptr[i + 1]) where Int(p.indices[e]) == k / p.blockColumns {
            guard let mask else { return true }
            return mask[(e * p.blockRows + q % p.blockRows) * p.blockColumns + k % p.blockColumns]
        }
        return false
    }

    @Test(arguments: cases)
    func referenceMatchesDirectBlockByBlock(_ c: BSRCase) throws {
        var rng = TestRNG(seed: stableHashForTests(c.name))
        let p = try Self.randomPattern(c, &rng)
        var blocks = c.withMask ? (0..<(p.nnz * c.r * c.c)).map { _ in rng.unit() < 0.6 } : nil
        if c.withMask, p.nnz > 0 {
            // Row 0 of the first stored block sees nothing of it.
            for cc in 0..<c.c { blocks![cc] = false }
        }
        let q = sparseTestArray(c.m * c.hq * c.d, &rng)
        let k = sparseTestArray(c.n * c.hkv * c.d, &rng), v = sparseTestArray(c.n * c.hkv * c.d, &rng)
        let hnd = c.options.layout == .hnd
        let got = try ReferenceAttention.blockSparse(
            q: q, k: hnd ? toHND(k, n: c.n, h: c.hkv, d: c.d) : k, v: hnd ? toHND(v, n: c.n, h: c.hkv, d: c.d) : v,
            pattern: p, mask: blocks.map(BlockSparseMask.blocks), numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, options: c.options)
        let o = c.options
        let naive = NaiveAttention(qoLen: c.m, kvLen: c.n, hq: c.hq, hkv: c.hkv, d: c.d, smScale: Double(o.smScale ?? 1 / Float(c.d).squareRoot()),
                                   kScale: Double(o.kScale), vScale: Double(o.vScale), softCap: Double(o.logitsSoftCap))
        let want = naive.run(q: q, k: k, v: v) { qi, kj in Self.directKeep(p, blocks, qi, kj) }
        #expect(mismatches(got.output, want.out).isEmpty, "\(c): output \(mismatches(got.output, want.out))")
        #expect(mismatches(got.lse, want.lse).isEmpty, "\(c): lse \(mismatches(got.lse, want.lse))")
        // Block row 0 is empty: its queries get exactly 0 and −inf.
        let row0 = p.queryRange(blockRow: 0).count
        #expect(got.output[0..<(row0 * c.hq * c.d)].allSatisfy { $0 == 0 })
        #expect(got.lse[0..<(row0 * c.hq)].allSatisfy { $0 == -.infinity })
        #expect(!got.output.contains { $0.isNaN } && !got.lse.contains { $0.isNaN })
        // The packed mask form gives the same result.
        if let blocks {
            let packed = try p.packedMask(blocks)
            #expect(packed.indptr == p.packedMaskIndptr)
            let viaPacked = try ReferenceAttention.blockSparse(
                q: q, k: hnd ? toHND(k, n: c.n, h: c.hkv, d: c.d) : k, v: hnd ? toHND(v, n: c.n, h: c.hkv, d: c.d) : v,
                pattern: p, mask: .packed(packed.packed), numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, options: c.options)
            #expect(viaPacked == got)
        }
    }

    /// Upstream's formulation: block row `i` is a request of `pattern.qoIndptr` queries over its blocks
    /// gathered as pages of C keys (`pattern.pageTable`), with its segment of the packed mask as the
    /// request's custom mask. It must equal the dense expansion.
    @Test(arguments: cases.filter { $0.options.layout == .nhd })
    func referenceMatchesUpstreamPagedFormulation(_ c: BSRCase) throws {
        var rng = TestRNG(seed: stableHashForTests(c.name) &+ 1)
        let p = try Self.randomPattern(c, &rng)
        let blocks = c.withMask ? (0..<(p.nnz * c.r * c.c)).map { _ in rng.unit() < 0.6 } : nil
        let q = sparseTestArray(c.m * c.hq * c.d, &rng)
        let k = sparseTestArray(c.n * c.hkv * c.d, &rng), v = sparseTestArray(c.n * c.hkv * c.d, &rng)
        let dense = try ReferenceAttention.blockSparse(q: q, k: k, v: v, pattern: p, mask: blocks.map(BlockSparseMask.blocks),
                                                       numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, options: c.options)
        let table = p.pageTable, qoIndptr = p.qoIndptr
        #expect(table.pageSize == c.c && table.seqLens == (0..<p.numBlockRows).map { Int(p.indptr[$0 + 1] - p.indptr[$0]) * c.c })
        let packed = try blocks.map { try p.packedMask($0) }
        let rowElems = c.hkv * c.d
        var out: [Float] = [], lse: [Float] = []
        for i in 0..<p.numBlockRows {
            let (lo, hi) = (Int(qoIndptr[i]), Int(qoIndptr[i + 1]))
            #expect(lo..<hi == p.queryRange(blockRow: i))
            let kvLen = table.seqLen(i)
            var kg: [Float] = [], vg: [Float] = []
            for pos in 0..<kvLen {
                let (page, slot) = table.location(request: i, position: pos)
                let key = page * c.c + slot
                kg += k[(key * rowElems)..<((key + 1) * rowElems)]
                vg += v[(key * rowElems)..<((key + 1) * rowElems)]
            }
            let mask = packed.map { CustomMask.packed(Array($0.packed[Int($0.indptr[i])..<Int($0.indptr[i + 1])])) }
            let r = try ReferenceAttention.prefill(q: Array(q[(lo * c.hq * c.d)..<(hi * c.hq * c.d)]), k: kg, v: vg, qoLen: hi - lo, kvLen: kvLen,
                                                   numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, options: c.options, customMask: mask)
            out += r.output
            lse += r.lse
        }
        #expect(mismatches(out, dense.output.map(Double.init)).isEmpty, "\(c): \(mismatches(out, dense.output.map(Double.init)))")
        #expect(mismatches(lse, dense.lse.map(Double.init)).isEmpty, "\(c): \(mismatches(lse, dense.lse.map(Double.init)))")
    }

    /// Upstream's docstring example: M = N = 3, R = C = 1, indptr [0,1,3,5], indices [2,0,2,1,2] is the
    /// mask [[0,0,1],[1,0,1],[0,1,1]]; and the layout helpers on a worked 2-block-row example.
    @Test func layoutsWorkedByHand() throws {
        let p = try BlockSparsePattern(indptr: [0, 1, 3, 5], indices: [2, 0, 2, 1, 2], rows: 3, columns: 3, blockRows: 1, blockColumns: 1)
        #expect(try p.denseMask() == [0, 0, 1, 1, 0, 1, 0, 1, 1].map { $0 == 1 })
        #expect(p.qoIndptr == [0, 1, 2, 3] && p.pageTable.lastPageLen == [1, 1, 1])
        // M = 4, N = 6, R = 2, C = 3: block row 0 stores block columns [1, 0], row 1 stores [1].
        let q = try BlockSparsePattern(indptr: [0, 2, 3], indices: [1, 0, 1], rows: 4, columns: 6, blockRows: 2, blockColumns: 3)
        #expect(q.maskIndptr == [0, 12, 18])  // rows 2 · (2 blocks · 3) keys, then 2 · 3
        #expect(q.packedMaskIndptr == [0, 2, 3])
        // [nnz = 3, R = 2, C = 3] mask, one line per stored block p: its row 0, then its row 1.
        let blocks: [Bool] = [
            1, 0, 0, 0, 1, 0,  // p0: block row 0, block column 1 (keys 3...5)
            0, 0, 1, 1, 1, 1,  // p1: block row 0, block column 0 (keys 0...2)
            1, 1, 0, 0, 0, 1,  // p2: block row 1, block column 1 (keys 3...5)
        ].map { $0 == 1 }
        // convert_bsr_mask_layout: request 0 rows are [p0 r0 | p1 r0], [p0 r1 | p1 r1]; request 1 [p2 r0], [p2 r1].
        let flat = try q.flattenedMask(blocks)
        #expect(flat == [1, 0, 0, 0, 0, 1, /**/ 0, 1, 0, 1, 1, 1, /**/ 1, 1, 0, /**/ 0, 0, 1].map { $0 == 1 })
        // Packed little-endian per request: request 0 bits 0,5,7,9,10,11 → 0b1010_0001 = 161, 0b0000_1110 = 14;
        // request 1 bits 0,1,5 → 0b0010_0011 = 35.
        let packed = try q.packedMask(blocks)
        #expect(packed.packed == [161, 14, 35] && packed.indptr == [0, 2, 3])
        // Dense [4, 6]: query 0 sees columns 3 (p0 c0) and 2 (p1 c2); query 1 sees 4 and 0, 1, 2;
        // query 2 sees 3, 4; query 3 sees 5.
        let dense = try q.denseMask(.blocks(blocks))
        #expect(dense == [
            0, 0, 1, 1, 0, 0,
            1, 1, 1, 0, 1, 0,
            0, 0, 0, 1, 1, 0,
            0, 0, 0, 0, 0, 1,
        ].map { $0 == 1 })
        #expect(try q.denseMask(.packed(packed.packed)) == dense)
        // M % R ≠ 0: qo_indptr ends at M.
        let short = try BlockSparsePattern(indptr: [0, 1, 2, 2], indices: [0, 1], rows: 10, columns: 8, blockRows: 4, blockColumns: 4)
        #expect(short.qoIndptr == [0, 4, 8, 10] && short.queryRange(blockRow: 2) == 8..<10)
    }

    static let headDim = 64

    /// The wrapper on the CPU: f16 and FP8 K/V, output in q's dtype, LSE on request.
    @Test(arguments: [DType.f16, .e4m3, .e5m2])
    func wrapperRunsOnCPU(kvDType: DType) throws {
        let c = BSRCase(name: "wrapper", m: 12, n: 16, r: 4, c: 4, hq: 4, hkv: 2, d: Self.headDim, withMask: true)
        var rng = TestRNG(seed: 41)
        let p = try Self.randomPattern(c, &rng)
        let blocks = (0..<(p.nnz * c.r * c.c)).map { _ in rng.unit() < 0.7 }
        let qv = sparseTestArray(c.m * c.hq * c.d, &rng)
        let kv = sparseTestArray(c.n * c.hkv * c.d, &rng), vv = sparseTestArray(c.n * c.hkv * c.d, &rng)
        let (ks, vs): (Float, Float) = kvDType.isFP8 ? (1.0 / 400, 1.0 / 300) : (1, 1)
        let q = Tensor.host(qv, shape: [c.m, c.hq, c.d], dtype: .f16)
        let k = kvDType.isFP8 ? try quantize(Tensor.host(kv, shape: [c.n, c.hkv, c.d], dtype: .f32), to: kvDType, scale: ks)
            : Tensor.host(kv, shape: [c.n, c.hkv, c.d], dtype: .f16)
        let v = kvDType.isFP8 ? try quantize(Tensor.host(vv, shape: [c.n, c.hkv, c.d], dtype: .f32), to: kvDType, scale: vs)
            : Tensor.host(vv, shape: [c.n, c.hkv, c.d], dtype: .f16)
        let bsr = BlockSparseAttention(backend: .cpu)
        try bsr.plan(pattern: p, numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, qDType: .f16, kvDType: kvDType,
                     mask: .blocks(blocks), options: .init(kScale: ks, vScale: vs))
        let r = try bsr.run(q: q, k: k, v: v, returnLSE: true)
        #expect(r.output.dtype == .f16 && r.output.shape == [c.m, c.hq, c.d])
        #expect(r.lse?.shape == [c.m, c.hq] && r.lse?.dtype == .f32)
        // Naive over the values as stored, dequantized with the scales.
        let kd = kvDType.isFP8 ? try dequantize(k, scale: ks).toFloats() : try k.toFloats()
        let vd = kvDType.isFP8 ? try dequantize(v, scale: vs).toFloats() : try v.toFloats()
        let naive = NaiveAttention(qoLen: c.m, kvLen: c.n, hq: c.hq, hkv: c.hkv, d: c.d, smScale: 1 / sqrt(Double(c.d)))
        let want = naive.run(q: try q.toFloats(), k: kd, v: vd) { qi, kj in Self.directKeep(p, blocks, qi, kj) }
        // The output is rounded to f16: 2^-11 relative.
        #expect(mismatches(try r.output.toFloats(), want.out, rtol: 1e-3, atol: 1e-4).isEmpty)
        #expect(mismatches(try r.lse!.toFloats(), want.lse).isEmpty)
        // Without returnLSE there is none; the same plan runs again.
        #expect(try bsr.run(q: q, k: k, v: v).lse == nil)
        // The upstream-argument plan is the same plan.
        let bsr2 = BlockSparseAttention(backend: .cpu)
        try bsr2.plan(indptr: p.indptr, indices: p.indices, rows: c.m, columns: c.n, blockRows: c.r, blockColumns: c.c,
                      numQOHeads: c.hq, numKVHeads: c.hkv, headDim: c.d, qDType: .f16, kvDType: kvDType,
                      mask: .blocks(blocks), options: .init(kScale: ks, vScale: vs))
        #expect(try bsr2.run(q: q, k: k, v: v).output.toFloats() == (try r.output.toFloats()))
    }
}
