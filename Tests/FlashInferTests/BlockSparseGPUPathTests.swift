import FlashInferCUDA
import FlashInferTesting
import Dispatch
import Synchronization
import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// The host side of block-sparse attention's GPU path, without a GPU: K/V viewed as `N / C` pages
/// of `C` tokens (`BlockSparsePattern.pagedKV`, strides only, no copy), and the batch prefill plan
/// the CUDA backend makes (`BatchPrefillAttention.plan(blockSparse:)`). The CPU backend's batch
/// prefill over exactly that plan and view must give the block-sparse reference.
@Suite struct BlockSparseGPUPathTests {
    /// K/V `[N, H, D]` (NHD) / `[H, N, D]` (HND) → pages `[N/C, C, H, D]` / `[N/C, H, C, D]`: shapes,
    /// strides and offset, and every element of the view is key `page·C + slot` of the tensor.
    @Test(arguments: [KVLayout.nhd, .hnd], [false, true])
    func pagedViewReadsTheSameElements(layout: KVLayout, strided: Bool) throws {
        let (n, h, d, c) = (12, 3, 8, 4)
        let p = try BlockSparsePattern(indptr: [0, 2, 3], indices: [2, 0, 1], rows: 5, columns: n, blockRows: 3, blockColumns: c)
        var rng = TestRNG(seed: 7)
        let shape = layout == .nhd ? [n, h, d] : [h, n, d]
        let k: Tensor, v: Tensor
        if strided {
            // K and V interleaved in one [A, 2, B, D] buffer (as a combined cache), so their outer
            // strides are twice the contiguous ones and V starts B·D elements in.
            let buf = Tensor.host(sparseTestArray(shape[0] * 2 * shape[1] * d, &rng), shape: [shape[0], 2, shape[1], d], dtype: .f16)
            (k, v) = (buf.select(axis: 1, index: 0), buf.select(axis: 1, index: 1))
        } else {
            k = Tensor.host(sparseTestArray(n * h * d, &rng), shape: shape, dtype: .f16)
            v = Tensor.host(sparseTestArray(n * h * d, &rng), shape: shape, dtype: .f16)
        }
        let cache = try p.pagedKV(k: k, v: v, layout: layout)
        #expect(cache.layout == layout && cache.numPages == n / c && cache.pageSize == c && cache.numKVHeads == h && cache.headDim == d)
        let m = strided ? 2 : 1  // the outer axis' stride multiplier of the interleaved buffer
        if layout == .nhd {
            #expect(cache.k.shape == [n / c, c, h, d])
            #expect(cache.k.strides == [c * m * h * d, m * h * d, d, 1])
        } else {
            #expect(cache.k.shape == [n / c, h, c, d])
            #expect(cache.k.strides == [c * d, m * n * d, d, 1])
        }
        #expect(cache.v.offset == v.offset && cache.k.offset == k.offset)
        for (t, view) in [(k, cache.k), (v, cache.v)] {
            let src = try t.toFloats(), got = try view.toFloats()  // logical order of each
            for page in 0..<(n / c) {
                for slot in 0..<c {
                    for head in 0..<h {
                        for x in 0..<d {
                            let key = page * c + slot
                            let s = layout == .nhd ? (key * h + head) * d + x : (head * n + key) * d + x
                            let g = layout == .nhd ? ((page * c + slot) * h + head) * d + x : ((page * h + head) * c + slot) * d + x
                            #expect(got[g] == src[s])
                        }
                    }
                }
            }
        }
        // The view's table reads key `col·C + slot` for block column `col`.
        let table = p.pageTable
        let (kAll, _) = try (cache.k.toFloats(), cache.v.toFloats())
        let gathered = cache.gather(request: 0, table: table, kAll: kAll, vAll: kAll).k
        let kSrc = try k.toFloats()
        for (pos, key) in (Array((2 * c)..<(3 * c)) + Array(0..<c)).enumerated() {  // request 0: block columns [2, 0]
            for head in 0..<h {
                for x in 0..<d {
                    let s = layout == .nhd ? (key * h + head) * d + x : (head * n + key) * d + x
                    #expect(gathered[(pos * h + head) * d + x] == kSrc[s])
                }
            }
        }
    }

    @Test func pagedViewRejectsAStridedHeadDim() throws {
        let p = try BlockSparsePattern(indptr: [0, 1], indices: [0], rows: 2, columns: 4, blockRows: 2, blockColumns: 4)
        let buf = Tensor.host(Array(repeating: 0.5, count: 4 * 2 * 16), shape: [4, 2, 16], dtype: .f16)
        let k = Tensor(storage: buf.storage, shape: [4, 2, 8], strides: [32, 16, 2], dtype: .f16)  // every other element
        #expect(throws: FlashInferError.strides(tensor: "k", strides: [32, 16, 2], rule: "the head_dim axis must have stride 1")) {
            _ = try p.pagedKV(k: k, v: k, layout: .nhd)
        }
    }

    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var m: Int, n: Int, r: Int, c: Int
        var hq = 4, hkv = 2
        var layout: KVLayout = .nhd
        var mask: String = "none"  // none, blocks, packed
        var kvDType: DType = .f16
        var options = AttentionOptions()
        var description: String { "\(name) M\(m) N\(n) R\(r) C\(c) \(layout.rawValue) mask=\(mask) kv=\(kvDType.rawValue)" }
    }

    static let cases: [Case] = [
        Case(name: "square", m: 32, n: 48, r: 16, c: 16),
        Case(name: "hnd-gqa", m: 24, n: 40, r: 8, c: 8, hq: 8, hkv: 2, layout: .hnd),
        Case(name: "M%R", m: 20, n: 36, r: 3, c: 4, options: .init(logitsSoftCap: 5)),
        Case(name: "vector-r1", m: 9, n: 32, r: 1, c: 16, layout: .hnd),
        Case(name: "mask-blocks", m: 32, n: 48, r: 8, c: 16, mask: "blocks"),
        Case(name: "mask-packed-hnd", m: 30, n: 24, r: 3, c: 8, layout: .hnd, mask: "packed"),
        Case(name: "fp8", m: 16, n: 64, r: 4, c: 16, hq: 4, hkv: 1, mask: "blocks", kvDType: .e4m3,
             options: .init(kScale: 0.01, vScale: 0.02)),
    ]

    /// The CUDA backend's formulation on the CPU backend: `BatchPrefillAttention.plan(blockSparse:)`
    /// (block row i = request i, pages = block columns, the packed in-block mask per request) run over
    /// `pattern.pagedKV` equals `BlockSparseAttention` on the CPU (the dense reference). Block row 1 is
    /// empty in every case: exactly 0 and −inf.
    @Test(arguments: cases)
    func batchPrefillOverThePagedViewIsTheReference(_ c: Case) throws {
        var rng = TestRNG(seed: stableHashForTests(c.name))
        let d = 64
        let mb = (c.m + c.r - 1) / c.r, nb = c.n / c.c
        var indptr: [Int32] = [0], indices: [Int32] = []
        for i in 0..<mb {
            var row = i == 1 ? [] : (0..<nb).filter { _ in rng.unit() < 0.5 }.map(Int32.init)
            for a in stride(from: row.count - 1, to: 0, by: -1) { row.swapAt(a, Int(rng.next() % UInt64(a + 1))) }
            indices += row
            indptr.append(Int32(indices.count))
        }
        let p = try BlockSparsePattern(indptr: indptr, indices: indices, rows: c.m, columns: c.n, blockRows: c.r, blockColumns: c.c)
        let blocks = (0..<(p.nnz * c.r * c.c)).map { _ in rng.unit() < 0.6 }
        let mask: BlockSparseMask? = c.mask == "blocks" ? .blocks(blocks) : c.mask == "packed" ? .packed(try p.packedMask(blocks).packed) : nil
        let kvShape = c.layout == .nhd ? [c.n, c.hkv, d] : [c.hkv, c.n, d]
        let q = Tensor.host(sparseTestArray(c.m * c.hq * d, &rng), shape: [c.m, c.hq, d], dtype: .f16)
        func kv() throws -> Tensor {
            let x = Tensor.host(sparseTestArray(c.n * c.hkv * d, &rng), shape: kvShape, dtype: .f32)
            return c.kvDType.isFP8 ? try quantize(x, to: c.kvDType, scale: 1.0 / 256) : try Tensor.host(x.toFloats(), shape: kvShape, dtype: .f16)
        }
        let (k, v) = (try kv(), try kv())
        var options = c.options
        options.layout = c.layout

        let prefill = BatchPrefillAttention(backend: .cpu)
        try prefill.plan(blockSparse: p, mask: mask, numQOHeads: c.hq, numKVHeads: c.hkv, headDim: d, qDType: .f16, kvDType: c.kvDType,
                         options: options)
        // The plan is upstream's: qo_indptr, pages = block columns of C tokens, per-row packed masks.
        #expect(prefill.qoIndptr == p.qoIndptr)
        #expect(prefill.kvLens == (0..<mb).map { Int(p.indptr[$0 + 1] - p.indptr[$0]) * c.c })
        #expect(prefill.table?.indices == p.indices && prefill.table?.pageSize == c.c)
        if mask != nil {
            let packed = try p.packedMask(blocks)
            #expect(prefill.mask?.packed == packed.packed && prefill.mask?.indptr == packed.indptr)
        } else {
            #expect(prefill.mask == nil)
        }
        let viaPages = try prefill.run(q: q, kv: .paged(try p.pagedKV(k: k, v: v, layout: c.layout)), returnLSE: true)

        let bsr = BlockSparseAttention(backend: .cpu)
        try bsr.plan(pattern: p, numQOHeads: c.hq, numKVHeads: c.hkv, headDim: d, qDType: .f16, kvDType: c.kvDType, mask: mask, options: options)
        #expect(bsr.prefill == nil && bsr.batchPrefillPlan == nil)  // the CPU runs the dense reference
        let ref = try bsr.run(q: q, k: k, v: v, returnLSE: true)
        // Both outputs are rounded to f16 from Float64 sums taken in another key order.
        let (go, ro) = (try viaPages.output.toFloats(), try ref.output.toFloats())
        let (gl, rl) = (try viaPages.lse!.toFloats(), try ref.lse!.toFloats())
        #expect(mismatches(go, ro.map(Double.init), rtol: 1e-3, atol: 1e-4).isEmpty, "\(c): \(mismatches(go, ro.map(Double.init), rtol: 1e-3, atol: 1e-4))")
        #expect(mismatches(gl, rl.map(Double.init)).isEmpty, "\(c): \(mismatches(gl, rl.map(Double.init)))")
        // Block row 1 stores nothing.
        for qi in p.queryRange(blockRow: 1) {
            for h in 0..<c.hq {
                #expect(gl[qi * c.hq + h] == -.infinity)
                #expect(go[((qi * c.hq + h) * d)..<((qi * c.hq + h + 1) * d)].allSatisfy { $0 == 0 })
            }
        }
    }

    /// On the CPU backend there is no device plan: the caller-buffer run is refused, as for batch prefill.
    @Test func runIntoBuffersNeedsTheCUDABackend() throws {
        let p = try BlockSparsePattern(indptr: [0, 1], indices: [0], rows: 2, columns: 4, blockRows: 2, blockColumns: 4)
        let bsr = BlockSparseAttention(backend: .cpu)
        try bsr.plan(pattern: p, numQOHeads: 2, numKVHeads: 2, headDim: 64)
        let q = Tensor.host(Array(repeating: 0.1, count: 2 * 2 * 64), shape: [2, 2, 64], dtype: .f16)
        let k = Tensor.host(Array(repeating: 0.1, count: 4 * 2 * 64), shape: [4, 2, 64], dtype: .f16)
        #expect(throws: FlashInferError.backendMismatch(what: "run(q:k:v:out:lse:)", rule: "writes device buffers: plan with the CUDA backend")) {
            try bsr.run(q: q, k: k, v: k, out: q, lse: nil)
        }
        // Its output rules come first (validation before the backend).
        let out32 = Tensor.host(Array(repeating: 0, count: 2 * 2 * 64), shape: [2, 2, 64], dtype: .bf16)
        #expect(throws: FlashInferError.dtype(tensor: "out", expected: "f16", got: .bf16)) { try bsr.run(q: q, k: k, v: k, out: out32, lse: nil) }
        let lse = Tensor.host([0, 0, 0], shape: [3], dtype: .f32)
        #expect(throws: FlashInferError.self) { try bsr.run(q: q, k: k, v: k, out: q, lse: lse) }
        // Unplanned.
        #expect(throws: FlashInferError.notPlanned(wrapper: "BlockSparseAttention")) {
            try BlockSparseAttention(backend: .cpu).run(q: q, k: k, v: k, out: q, lse: nil)
        }
    }
}

/// In the NVRTC suite (run by `.ci/run` under both NVRTC versions, the GPU machine's included).
extension NVRTCTests {
    /// NVRTC compiles every kernel the custom-mask and block-sparse GPU checks launch that the
    /// catalogue does not hold, for sm_90a, with zero spills (as the catalogue's test requires).
    @Test
    func sparseCheckKernelsCompileWithoutSpills() throws {
        let catalogue = Set(kernelCatalog().map { $0.spec.name })
        let specs = sparseCheckKernelSpecs().filter { !catalogue.contains($0.name) }
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: specs.count) { i in
            do {
                let k = try compiler.compile(specs[i], useCache: false)
                if let r = k.resourceReport, r.spillStores > 0 || r.spillLoads > 0 { failures.withLock { $0.append("\(specs[i].name) spills: \(r)") } }
                if k.resourceReport == nil { failures.withLock { $0.append("\(specs[i].name): no ptxas report") } }
            } catch {
                failures.withLock { $0.append("\(specs[i].name): \(error)") }
            }
        }
        let f = failures.withLock { $0 }
        #expect(f.isEmpty, "\(f)")
    }
}
