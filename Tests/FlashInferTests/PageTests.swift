import Testing

@testable import FlashInfer

@Suite struct PageTests {
    @Test func upstreamDocstringExample() throws {
        let (b, p) = try getBatchIndicesPositions(appendIndptr: [0, 1, 3, 6, 10], seqLens: [5, 5, 5, 5])
        #expect(b == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
        #expect(p == [4, 3, 4, 2, 3, 4, 1, 2, 3, 4])
    }

    /// The decode kernels address rows with 32-bit byte strides: a cache whose page (or token)
    /// stride reaches 2^31 bytes is refused by name when it is made, before any launch.
    @Test func strideOf2GiBIsRefused() throws {
        let base = Tensor.host([Float](repeating: 1, count: 2 * 4 * 2 * 8), shape: [2, 4, 2, 8], dtype: .f16)
        let huge = (1 << 31) / 2  // elements: 2^31 bytes of f16
        let k = Tensor(storage: base.storage, shape: [2, 4, 2, 8], strides: [huge, 16, 8, 1], dtype: .f16)
        #expect(throws: FlashInferError.strides(tensor: "k_cache", strides: [huge, 16, 8, 1], rule: "page and token strides must stay below 2^31 bytes")) {
            _ = try PagedKVCache(k: k, v: base)
        }
        // One page: the page stride is never used, so any value passes.
        let one = Tensor(storage: base.storage, shape: [1, 4, 2, 8], strides: [huge, 16, 8, 1], dtype: .f16)
        let oneV = Tensor(storage: base.storage, shape: [1, 4, 2, 8], dtype: .f16)
        _ = try PagedKVCache(k: one, v: oneV)
    }

    @Test func seqLensFromTheTable() {
        // page_size 16: 3 pages with 5 on the last → 37; 1 page with 16 → 16; no pages → 0.
        #expect(getSeqLens(kvIndptr: [0, 3, 4, 4], kvLastPageLen: [5, 16, 1], pageSize: 16) == [37, 16, 0])
        let t = PageTable.contiguous(seqLens: [37, 16, 0, 1], pageSize: 16)
        #expect(t.indptr == [0, 3, 4, 4, 5])
        #expect(t.lastPageLen == [5, 16, 16, 1])
        #expect(t.seqLens == [37, 16, 0, 1])
    }

    @Test func tableValidation() {
        func err(_ t: PageTable, pages: Int = 10) -> FlashInferError? {
            do { try t.validate(numPages: pages); return nil } catch { return error }
        }
        #expect(err(PageTable(indptr: [0, 2], indices: [0, 1], lastPageLen: [3], pageSize: 4)) == nil)
        #expect(err(PageTable(indptr: [1, 2], indices: [0, 1], lastPageLen: [3], pageSize: 4))
            == .indices(array: "kv_indptr", position: 0, rule: "must start at 0, got 1"))
        #expect(err(PageTable(indptr: [0, 2, 1], indices: [0, 1], lastPageLen: [3, 3], pageSize: 4))
            == .indices(array: "kv_indptr", position: 2, rule: "not monotonic: 1 < 2"))
        #expect(err(PageTable(indptr: [0, 2], indices: [0, 10], lastPageLen: [3], pageSize: 4))
            == .indices(array: "kv_indices", position: 1, rule: "page 10 outside the cache's 10 pages"))
        #expect(err(PageTable(indptr: [0, 2], indices: [0, -1], lastPageLen: [3], pageSize: 4))
            == .indices(array: "kv_indices", position: 1, rule: "page -1 outside the cache's 10 pages"))
        #expect(err(PageTable(indptr: [0, 2], indices: [0, 1], lastPageLen: [5], pageSize: 4))
            == .indices(array: "kv_last_page_len", position: 0, rule: "5 outside 1...4"))
        #expect(err(PageTable(indptr: [0, 2], indices: [0, 1], lastPageLen: [0], pageSize: 4))
            == .indices(array: "kv_last_page_len", position: 0, rule: "0 outside 1...4"))
        guard case .shape(tensor: "kv_last_page_len", _, _, _, got: 2) = err(PageTable(indptr: [0, 2], indices: [0, 1], lastPageLen: [1, 1], pageSize: 4)) else {
            Issue.record("batch size mismatch not caught"); return
        }
        guard case .indices(array: "kv_indptr", _, _) = err(PageTable(indptr: [0, 3], indices: [0, 1], lastPageLen: [1], pageSize: 4)) else {
            Issue.record("indptr/indices length mismatch not caught"); return
        }
    }

    @Test(arguments: [KVLayout.nhd, .hnd], [1, 8, 16])
    func appendThenGatherReturnsWhatWasAppended(layout: KVLayout, pageSize: Int) throws {
        let (h, d) = (2, 64)
        // Pages deliberately out of order and shared across nothing: request 0 → pages [5, 2], request 1 → [0, 3, 1]...
        let seqLens = [2 * pageSize - 1, 3 * pageSize, 1]
        var rng = TestRNG(seed: 7)
        var pages: [Int32] = Array(0..<Int32(seqLens.map { ($0 + pageSize - 1) / pageSize }.reduce(0, +)))
        pages.reverse()
        var indptr: [Int32] = [0], last: [Int32] = []
        for n in seqLens {
            let np = (n + pageSize - 1) / pageSize
            indptr.append(indptr.last! + Int32(np))
            last.append(Int32(n - (np - 1) * pageSize))
        }
        let table = PageTable(indptr: indptr, indices: pages, lastPageLen: last, pageSize: pageSize)
        let numPages = pages.count + 2
        let cacheShape = layout == .nhd ? [numPages, 2, pageSize, h, d] : [numPages, 2, h, pageSize, d]
        let cache = try PagedKVCache(combined: Tensor.host([Float](repeating: 0, count: cacheShape.reduce(1, *)), shape: cacheShape, dtype: .f16), layout: layout)
        // Append every token of every request (append_indptr = prefix sums of seqLens).
        var appendIndptr: [Int32] = [0]
        for n in seqLens { appendIndptr.append(appendIndptr.last! + Int32(n)) }
        let nnz = Int(appendIndptr.last!)
        let (bi, pos) = try getBatchIndicesPositions(appendIndptr: appendIndptr, seqLens: seqLens)
        let kv = (0..<(nnz * h * d)).map { _ in Float(rng.unit() * 4 - 2) }, vv = (0..<(nnz * h * d)).map { _ in Float(rng.unit() * 4 - 2) }
        let ak = Tensor.host(kv, shape: [nnz, h, d], dtype: .f16), av = Tensor.host(vv, shape: [nnz, h, d], dtype: .f16)
        try appendPagedKVCache(appendK: ak, appendV: av, indices: AppendIndices(batchIndices: bi, positions: pos), cache: cache, table: table)
        for b in 0..<seqLens.count {
            let (gk, gv) = try cache.gather(request: b, table: table)
            let from = Int(appendIndptr[b]) * h * d, to = Int(appendIndptr[b + 1]) * h * d
            #expect(gk == Array(try ak.toFloats()[from..<to]))
            #expect(gv == Array(try av.toFloats()[from..<to]))
        }
    }

    @Test func appendValidation() throws {
        let cache = try PagedKVCache(k: Tensor.host([Float](repeating: 0, count: 4 * 4 * 2 * 64), shape: [4, 4, 2, 64], dtype: .f16),
                                     v: Tensor.host([Float](repeating: 0, count: 4 * 4 * 2 * 64), shape: [4, 4, 2, 64], dtype: .f16))
        let table = PageTable.contiguous(seqLens: [5], pageSize: 4)
        let k = Tensor.host([Float](repeating: 1, count: 2 * 2 * 64), shape: [2, 2, 64], dtype: .f16)
        func err(_ i: AppendIndices, _ kk: Tensor = k) -> FlashInferError? {
            do { try appendPagedKVCache(appendK: kk, appendV: kk, indices: i, cache: cache, table: table); return nil } catch { return error }
        }
        #expect(err(AppendIndices(batchIndices: [0, 0], positions: [3, 4])) == nil)
        #expect(err(AppendIndices(batchIndices: [0, 1], positions: [3, 4])) == .indices(array: "batch_indices", position: 1, rule: "request 1 outside 0..<1"))
        #expect(err(AppendIndices(batchIndices: [0, 0], positions: [3, 5])) == .indices(array: "positions", position: 1, rule: "position 5 outside request 0's 5 tokens"))
        guard case .shape(tensor: "append_key", axis: 0, _, _, _) = err(AppendIndices(batchIndices: [0], positions: [4])) else { Issue.record("nnz"); return }
        guard case .dtype = err(AppendIndices(batchIndices: [0, 0], positions: [3, 4]), Tensor.host([Float](repeating: 1, count: 256), shape: [2, 2, 64], dtype: .bf16)) else {
            Issue.record("dtype"); return
        }
    }
}
