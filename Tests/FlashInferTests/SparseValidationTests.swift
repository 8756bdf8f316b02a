import FlashInferCUDA
import Testing

@testable import FlashInfer

/// Every rule of `Validation/SparseValidation.swift` (each error named), the scale options on the
/// public CPU paths, and the CUDA paths' typed rejection of what the kernels do not do yet.
@Suite struct SparseValidationTests {
    typealias E = FlashInferError

    @Test func blockSparsePatternRules() {
        func make(_ indptr: [Int32], _ indices: [Int32], m: Int = 8, n: Int = 8, r: Int = 4, c: Int = 2) throws(FlashInferError) -> BlockSparsePattern {
            try BlockSparsePattern(indptr: indptr, indices: indices, rows: m, columns: n, blockRows: r, blockColumns: c)
        }
        #expect((try? make([0, 2, 3], [0, 3, 1])) != nil)
        #expect(throws: E.option(name: "R (block rows)", value: "0", rule: "must be >= 1")) { try make([0], [], m: 0, r: 0) }
        #expect(throws: E.option(name: "C (block columns)", value: "-1", rule: "must be >= 1")) { try make([0, 0, 0], [], c: -1) }
        #expect(throws: E.option(name: "M (rows)", value: "-4", rule: "must be >= 0")) { try make([0], [], m: -4) }
        #expect(throws: E.option(name: "N (columns)", value: "-2", rule: "must be >= 0")) { try make([0, 0, 0], [], n: -2) }
        // N not divisible by C (upstream rejects it too).
        #expect(throws: E.option(name: "N (columns)", value: "9", rule: "must be divisible by C = 2: K/V are read as N / C whole blocks of C columns")) {
            try make([0, 0, 0], [], n: 9)
        }
        // M not divisible by R is fine (a short last block row), but indptr must have ceil(M/R) + 1 entries.
        #expect((try? make([0, 1, 1, 2], [0, 1], m: 9)) != nil)
        #expect(throws: E.shape(tensor: "indptr", axis: 0, name: "MB + 1", expected: "4 (ceil(M / R) + 1 with M = 9, R = 4)", got: 3)) {
            try make([0, 1, 2], [0, 1], m: 9)
        }
        #expect(throws: E.indices(array: "indptr", position: 0, rule: "must start at 0, got 1")) { try make([1, 2, 3], [0, 1, 2]) }
        #expect(throws: E.indices(array: "indptr", position: 2, rule: "not monotonic: 1 < 2")) { try make([0, 2, 1], [0, 1]) }
        #expect(throws: E.shape(tensor: "indices", axis: 0, name: "length", expected: "2 (indptr[-1])", got: 3)) { try make([0, 1, 2], [0, 1, 2]) }
        #expect(throws: E.indices(array: "indices", position: 1, rule: "block column 4 outside 0..<4 (N / C = 8 / 2)")) { try make([0, 2, 2], [0, 4]) }
        #expect(throws: E.indices(array: "indices", position: 0, rule: "block column -1 outside 0..<4 (N / C = 8 / 2)")) { try make([0, 1, 1], [-1]) }
        #expect(throws: E.indices(array: "indices", position: 2, rule: "block column 3 appears twice in block row 0")) { try make([0, 3, 4], [3, 1, 3, 3]) }
        // The same column in two block rows is fine; empty patterns too.
        #expect((try? make([0, 1, 2], [3, 3])) != nil)
        #expect((try? make([0], [], m: 0, n: 0)) != nil)
    }

    @Test func blockSparseMaskRules() throws {
        let p = try BlockSparsePattern(indptr: [0, 2, 3], indices: [0, 3, 1], rows: 8, columns: 8, blockRows: 4, blockColumns: 2)
        #expect(throws: Never.self) { try validateBlockSparseMask(.blocks(Array(repeating: true, count: 24)), pattern: p) }
        #expect(throws: E.shape(tensor: "mask", axis: 0, name: "nnz · R · C", expected: "24 (nnz 3, R 4, C 2)", got: 23)) {
            try validateBlockSparseMask(.blocks(Array(repeating: true, count: 23)), pattern: p)
        }
        // Packed: block row 0 has 4 · 4 = 16 bits (2 bytes), row 1 4 · 2 = 8 bits (1 byte).
        #expect(p.packedMaskIndptr == [0, 2, 3])
        #expect(throws: Never.self) { try validateBlockSparseMask(.packed([0, 0, 0]), pattern: p) }
        #expect(throws: E.shape(tensor: "packed_mask", axis: 0, name: "bytes (Σ over block rows of ceil(R · nnz_i · C / 8))", expected: "3", got: 4)) {
            try validateBlockSparseMask(.packed([0, 0, 0, 0]), pattern: p)
        }
        // A mask needs M divisible by R.
        let short = try BlockSparsePattern(indptr: [0, 1, 2], indices: [0, 1], rows: 7, columns: 8, blockRows: 4, blockColumns: 2)
        #expect(throws: E.option(name: "M (rows)", value: "7", rule: "must be divisible by R = 4 with an in-block mask (it has R rows per block)")) {
            try validateBlockSparseMask(.blocks(Array(repeating: true, count: 16)), pattern: short)
        }
        #expect(throws: E.self) { try short.denseMask(.blocks(Array(repeating: true, count: 16))) }
        #expect(throws: E.self) { try p.flattenedMask(Array(repeating: true, count: 5)) }
        #expect((try? short.denseMask()) != nil)  // no mask: fine
    }

    @Test func blockSparseOptionRules() {
        func check(_ o: AttentionOptions) throws(FlashInferError) { try validateBlockSparseOptions(o) }
        #expect(throws: Never.self) { try check(.init(smScale: 0.1, logitsSoftCap: 30, layout: .hnd, kScale: 2, vScale: 0.5)) }
        let rejected: [(AttentionOptions, String)] = [
            (.init(causal: true), "causal"), (.init(windowLeft: 4), "window_left = 4"),
            (.init(positionEncoding: .ropeLlama()), "position encoding rope"), (.init(positionEncoding: .alibi), "position encoding alibi"),
        ]
        for (o, what) in rejected {
            do {
                try check(o)
                Issue.record("\(what) accepted")
            } catch {
                guard case .unsupportedCombination(let msg) = error else { Issue.record("\(error)"); continue }
                #expect(msg.hasPrefix("\(what) with block-sparse attention"), "\(msg)")
            }
        }
        #expect(throws: E.option(name: "sm_scale", value: "-1.0", rule: "must be finite and > 0")) { try check(.init(smScale: -1)) }
        #expect(throws: E.option(name: "logits_soft_cap", value: "-1.0", rule: "must be finite and >= 0 (0 disables it)")) { try check(.init(logitsSoftCap: -1)) }
        #expect(throws: E.option(name: "k_scale", value: "0.0", rule: "must be finite and > 0 (1 = no scale)")) { try check(.init(kScale: 0)) }
    }

    @Test func scaleAndDTypeRules() {
        #expect(throws: Never.self) { try validateKVScales(.init(kScale: 1e-3, vScale: 1e3)) }
        for bad: Float in [0, -1, .infinity, -.infinity, .nan] {
            #expect(throws: E.option(name: "k_scale", value: "\(bad)", rule: "must be finite and > 0 (1 = no scale)")) { try validateKVScales(.init(kScale: bad)) }
            #expect(throws: E.option(name: "v_scale", value: "\(bad)", rule: "must be finite and > 0 (1 = no scale)")) { try validateKVScales(.init(vScale: bad)) }
        }
        // q f16/bf16; K/V q's dtype or FP8; an FP8 q is rejected with the reason.
        for q in [DType.f16, .bf16] {
            for kv in [q, .e4m3, .e5m2] { #expect(throws: Never.self) { try validateQKVDTypes(q: q, kv: kv) } }
        }
        #expect(throws: E.dtype(tensor: "q", expected: "f16 or bf16 (FP8 is supported for K/V only, not q)", got: .e4m3)) {
            try validateQKVDTypes(q: .e4m3, kv: .e4m3)
        }
        #expect(throws: E.dtype(tensor: "q", expected: "f16 or bf16 (FP8 is supported for K/V only, not q)", got: .e5m2)) {
            try validateQKVDTypes(q: .e5m2, kv: .f16)
        }
        #expect(throws: E.dtype(tensor: "q", expected: "f16 or bf16", got: .f32)) { try validateQKVDTypes(q: .f32, kv: .f32) }
        #expect(throws: E.dtype(tensor: "k", expected: "f16 (q's dtype), e4m3 or e5m2", got: .bf16)) { try validateQKVDTypes(q: .f16, kv: .bf16) }
    }

    @Test func customMaskRules() throws {
        #expect(throws: Never.self) { try validateCustomMask(.bools(Array(repeating: true, count: 12)), qoLen: 3, kvLen: 4) }
        #expect(throws: E.shape(tensor: "custom_mask", axis: 0, name: "qo_len · kv_len", expected: "12 (qo_len 3, kv_len 4)", got: 11)) {
            try validateCustomMask(.bools(Array(repeating: true, count: 11)), qoLen: 3, kvLen: 4)
        }
        #expect(throws: E.shape(tensor: "custom_mask", axis: 0, name: "ceil(qo_len · kv_len / 8) bytes", expected: "2 (qo_len 3, kv_len 4)", got: 1)) {
            try validateCustomMask(.packed([0]), qoLen: 3, kvLen: 4)
        }
        // A batch: the bool masks' total must be Σ qo·kv; packing gives per-request byte segments.
        let (qo, kv) = ([2, 0, 3, 1], [5, 4, 3, 9])
        #expect(try customMaskIndptr(qoLens: qo, kvLens: kv) == [0, 10, 10, 19, 28])
        var rng = TestRNG(seed: 8)
        let bools = (0..<28).map { _ in rng.unit() < 0.5 }
        let (packed, indptr) = try packCustomMasks(bools, qoLens: qo, kvLens: kv)
        #expect(indptr == [0, 2, 2, 4, 6])
        let elements: [Int] = [0, 10, 10, 19, 28]
        for b in 0..<4 {
            let seg = CustomMask.packed(Array(packed[Int(indptr[b])..<Int(indptr[b + 1])]))
            #expect(seg.bools(count: qo[b] * kv[b]) == Array(bools[elements[b]..<elements[b + 1]]), "request \(b)")
        }
        #expect(throws: Never.self) { try validatePackedCustomMasks(packed: packed, indptr: indptr, qoLens: qo, kvLens: kv) }
        #expect(throws: E.shape(tensor: "custom_mask", axis: 0, name: "sum of qo_len · kv_len", expected: "28", got: 27)) {
            try packCustomMasks(Array(bools.dropLast()), qoLens: qo, kvLens: kv)
        }
        #expect(throws: E.shape(tensor: "kv_lens", axis: 0, name: "batch_size", expected: "4 (len(qo_lens))", got: 3)) {
            try customMaskIndptr(qoLens: qo, kvLens: [1, 2, 3])
        }
        #expect(throws: E.self) { try customMaskIndptr(qoLens: [-1], kvLens: [2]) }
        #expect(throws: E.indices(array: "mask_indptr", position: 2, rule: "request 1 has 1 bytes, ceil(qo_len · kv_len / 8) = 0")) {
            try validatePackedCustomMasks(packed: packed + [0], indptr: [0, 2, 3, 5, 7], qoLens: qo, kvLens: kv)
        }
        #expect(throws: E.shape(tensor: "mask_indptr", axis: 0, name: "batch_size + 1", expected: "5", got: 4)) {
            try validatePackedCustomMasks(packed: packed, indptr: [0, 2, 4, 6], qoLens: qo, kvLens: kv)
        }
        #expect(throws: E.shape(tensor: "packed_custom_mask", axis: 0, name: "length", expected: "6 (mask_indptr[-1])", got: 7)) {
            try validatePackedCustomMasks(packed: packed + [0], indptr: indptr, qoLens: qo, kvLens: kv)
        }
    }

    /// The CUDA paths call `requireCUDASupport` first: the kernels implement the scales (k_scale
    /// folded into sm_scale, v_scale in the epilogue), so valid scales pass and only invalid values
    /// are refused, as `.option` (not as unsupported).
    @Test func cudaAcceptsValidScales() {
        #expect(throws: Never.self) { try requireCUDASupport(.init(causal: true, positionEncoding: .alibi), entry: "x") }
        for o in [AttentionOptions(kScale: 0.5), .init(vScale: 2), .init(kScale: 2, vScale: 2)] {
            #expect(throws: Never.self) { try requireCUDASupport(o, entry: "single prefill") }
        }
        #expect(throws: E.option(name: "v_scale", value: "-1.0", rule: "must be finite and > 0 (1 = no scale)")) {
            try requireCUDASupport(.init(vScale: -1), entry: "x")
        }
        #expect(throws: E.option(name: "k_scale", value: "inf", rule: "must be finite and > 0 (1 = no scale)")) {
            try requireCUDASupport(.init(kScale: .infinity), entry: "x")
        }
    }

    /// The public attention APIs on the CPU honour the scales and reject bad ones with `.option`.
    @Test func publicCPUPathsUseScales() throws {
        var rng = TestRNG(seed: 14)
        let (qo, kv, h, d) = (3, 7, 2, 64)
        let qv = sparseTestArray(qo * h * d, &rng), kv_ = sparseTestArray(kv * h * d, &rng), vv = sparseTestArray(kv * h * d, &rng)
        let q = Tensor.host(qv, shape: [qo, h, d], dtype: .f16)
        let k = Tensor.host(kv_, shape: [kv, h, d], dtype: .f16), v = Tensor.host(vv, shape: [kv, h, d], dtype: .f16)
        let o = AttentionOptions(causal: true, kScale: 0.3, vScale: 4)
        let got = try singlePrefill(q: q, k: k, v: v, options: o, returnLSE: true)
        let want = try ReferenceAttention.prefill(q: try q.toFloats(), k: try k.toFloats(), v: try v.toFloats(), qoLen: qo, kvLen: kv,
                                                  numQOHeads: h, numKVHeads: h, headDim: d, options: o)
        #expect(try got.lse!.toFloats() == want.lse)
        #expect(try got.output.toFloats() == Tensor.host(want.output, shape: [qo, h, d], dtype: .f16).toFloats())
        let plain = try singlePrefill(q: q, k: k, v: v, options: .init(causal: true), returnLSE: true)
        #expect(try plain.lse!.toFloats() != got.lse!.toFloats())
        let dec = try singleDecode(q: q.select(axis: 0, index: 0), k: k, v: v, options: .init(vScale: 2))
        let decPlain = try singleDecode(q: q.select(axis: 0, index: 0), k: k, v: v)
        for (a, b) in zip(try dec.output.toFloats(), try decPlain.output.toFloats()) { #expect(a == DType.f16.roundTrip(2 * b)) }
        // Bad scales: a typed option error on every entry point, before any work.
        let bad = AttentionOptions(kScale: -1)
        let err = E.option(name: "k_scale", value: "-1.0", rule: "must be finite and > 0 (1 = no scale)")
        #expect(throws: err) { try singlePrefill(q: q, k: k, v: v, options: bad) }
        #expect(throws: err) { try singleDecode(q: q.select(axis: 0, index: 0), k: k, v: v, options: bad) }
        let table = PageTable.contiguous(seqLens: [5, 3], pageSize: 4)
        #expect(throws: err) { try BatchPrefillAttention(backend: .cpu).plan(qoIndptr: [0, 2, 3], table: table, numQOHeads: h, numKVHeads: h, headDim: d, dtype: .f16, options: bad) }
        #expect(throws: err) { try BatchDecodeWithPagedKVCache(backend: .cpu).plan(table: table, numQOHeads: h, numKVHeads: h, headDim: d, dtype: .f16, options: bad) }
        #expect(throws: err) { try BlockSparseAttention(backend: .cpu).plan(indptr: [0, 0], indices: [], rows: 1, columns: 4, blockRows: 1, blockColumns: 4, numQOHeads: h, numKVHeads: h, headDim: d, options: bad) }
    }

    /// The wrapper's own rules: plan before run, tensors as planned, dtypes, heads.
    @Test func blockSparseWrapperRules() throws {
        let bsr = BlockSparseAttention(backend: .cpu)
        let q = Tensor.host(Array(repeating: 0.5, count: 4 * 2 * 64), shape: [4, 2, 64], dtype: .f16)
        let k = Tensor.host(Array(repeating: 0.5, count: 8 * 1 * 64), shape: [8, 1, 64], dtype: .f16)
        #expect(throws: E.notPlanned(wrapper: "BlockSparseAttention")) { try bsr.run(q: q, k: k, v: k) }
        func plan(q: DType = .f16, kv: DType? = nil, hq: Int = 2, hkv: Int = 1, d: Int = 64, mask: BlockSparseMask? = nil) throws(FlashInferError) {
            try bsr.plan(indptr: [0, 1, 2], indices: [0, 1], rows: 4, columns: 8, blockRows: 2, blockColumns: 4,
                         numQOHeads: hq, numKVHeads: hkv, headDim: d, qDType: q, kvDType: kv, mask: mask)
        }
        #expect(throws: E.dtype(tensor: "q", expected: "f16 or bf16 (FP8 is supported for K/V only, not q)", got: .e4m3)) { try plan(q: .e4m3) }
        #expect(throws: E.dtype(tensor: "k", expected: "bf16 (q's dtype), e4m3 or e5m2", got: .f16)) { try plan(q: .bf16, kv: .f16) }
        #expect(throws: E.unsupportedHeadDim(48, supported: supportedHeadDims)) { try plan(d: 48) }
        #expect(throws: E.groupSize(numQOHeads: 3, numKVHeads: 2)) { try plan(hq: 3, hkv: 2) }
        #expect(throws: E.shape(tensor: "mask", axis: 0, name: "nnz · R · C", expected: "16 (nnz 2, R 2, C 4)", got: 3)) {
            try plan(mask: .blocks([true, true, true]))
        }
        try plan()
        #expect(throws: Never.self) { try bsr.run(q: q, k: k, v: k) }
        #expect(throws: E.dtype(tensor: "q", expected: "f16 (from plan)", got: .bf16)) {
            try bsr.run(q: Tensor.host(Array(repeating: 0.5, count: 4 * 2 * 64), shape: [4, 2, 64], dtype: .bf16), k: k, v: k)
        }
        #expect(throws: E.self) { try bsr.run(q: q.reshaped([2, 4, 64]), k: k, v: k) }
        #expect(throws: E.self) { try bsr.run(q: q, k: k.reshaped([4, 2, 64]), v: k) }
        let k8 = try quantize(k, to: .e4m3)
        #expect(throws: E.dtype(tensor: "v", expected: "f16 (from plan)", got: .e4m3)) { try bsr.run(q: q, k: k, v: k8) }
        // A failed plan leaves the wrapper unplanned.
        #expect(throws: E.self) { try plan(d: 48) }
        #expect(throws: E.notPlanned(wrapper: "BlockSparseAttention")) { try bsr.run(q: q, k: k, v: k) }
    }

    // MARK: on a GPU (skipped without one): the public CUDA paths take the scales and block-sparse.

    /// k_scale / v_scale and `BlockSparseAttention` run on the CUDA backend (they were refused before
    /// the kernels had them): each call is accepted and matches the CPU backend.
    @Test(.enabled(if: gpuAvailable, "no GPU"))
    func cudaPathsAcceptScalesAndBlockSparse() throws {
        let stream = try Device.open().libraryStream()
        let backend = Backend.cuda(stream)
        var rng = TestRNG(seed: 15)
        let (qo, kv, h, d) = (4, 8, 2, 64)
        let qHost = Tensor.host(sparseTestArray(qo * h * d, &rng), shape: [qo, h, d], dtype: .f16)
        let kHost = Tensor.host(sparseTestArray(kv * h * d, &rng), shape: [kv, h, d], dtype: .f16)
        let q = try qHost.toDevice(stream.device), k = try kHost.toDevice(stream.device)
        func close(_ gpu: Tensor, _ cpu: Tensor, _ what: String) throws {
            let (g, c) = (try gpu.toFloats(), try cpu.toFloats())
            #expect(mismatches(g, c.map(Double.init), rtol: 2e-3, atol: 2e-3).isEmpty, "\(what): \(mismatches(g, c.map(Double.init), rtol: 2e-3, atol: 2e-3))")
        }
        let scaled = AttentionOptions(kScale: 0.5, vScale: 2)
        try close(try singlePrefill(q: q, k: k, v: k, options: scaled, backend: backend).output,
                  try singlePrefill(q: qHost, k: kHost, v: kHost, options: scaled).output, "singlePrefill(k_scale, v_scale)")
        try close(try singleDecode(q: q.select(axis: 0, index: 0), k: k, v: k, options: .init(vScale: 2), backend: backend).output,
                  try singleDecode(q: qHost.select(axis: 0, index: 0), k: kHost, v: kHost, options: .init(vScale: 2)).output, "singleDecode(v_scale)")
        let table = PageTable.contiguous(seqLens: [5, 3], pageSize: 4)
        #expect(throws: Never.self) {
            try BatchPrefillAttention(backend: backend).plan(qoIndptr: [0, 2, 3], table: table, numQOHeads: h, numKVHeads: h, headDim: d,
                                                             dtype: .f16, options: .init(vScale: 3))
        }
        for tc in [false, true] {
            #expect(throws: Never.self) {
                try BatchDecodeWithPagedKVCache(backend: backend, useTensorCores: tc).plan(table: table, numQOHeads: h, numKVHeads: h,
                                                                                            headDim: d, dtype: .f16, options: .init(kScale: 3))
            }
        }
        // Block-sparse: M 4, N 8, R 2, C 4; block row 0 sees block column 1, block row 1 nothing.
        let bsrGPU = BlockSparseAttention(backend: backend), bsrCPU = BlockSparseAttention(backend: .cpu)
        for w in [bsrGPU, bsrCPU] {
            try w.plan(indptr: [0, 1, 1], indices: [1], rows: qo, columns: kv, blockRows: 2, blockColumns: 4, numQOHeads: h,
                       numKVHeads: h, headDim: d, options: scaled)
        }
        #expect(bsrGPU.batchPrefillPlan != nil)
        let g = try bsrGPU.run(q: q, k: k, v: k, returnLSE: true), c = try bsrCPU.run(q: qHost, k: kHost, v: kHost, returnLSE: true)
        try close(g.output, c.output, "BlockSparseAttention output")
        let lse = try g.lse!.toFloats()
        #expect(lse[(2 * h)...].allSatisfy { $0 == -.infinity }, "\(lse)")
        #expect(mismatches(Array(lse[..<(2 * h)]), try c.lse!.toFloats()[..<(2 * h)].map(Double.init), rtol: 1e-3, atol: 1e-3).isEmpty)
    }
}
