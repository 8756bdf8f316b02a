/// The page table of a batch: CSR over pages, FlashInfer's layout (`docs/tutorials/kv_layout.rst`).
///
/// Request `b` owns pages `indices[indptr[b] ..< indptr[b+1]]` (page ids index axis 0 of the
/// cache, in any order), and its last page holds `lastPageLen[b]` tokens (1…pageSize), so
/// `seqLen(b) = pageSize · (numPages_b − 1) + lastPageLen[b]` (0 when it owns no pages).
/// Arrays are int32, as upstream requires.
public struct PageTable: Sendable, Hashable {
    /// `[B + 1]`, starts at 0, non-decreasing.
    public var indptr: [Int32]
    /// `[indptr[B]]` page ids, each `< numPages` of the cache.
    public var indices: [Int32]
    /// `[B]`, each in `1…pageSize` (ignored for requests with no pages).
    public var lastPageLen: [Int32]
    public var pageSize: Int

    public init(indptr: [Int32], indices: [Int32], lastPageLen: [Int32], pageSize: Int) {
        self.indptr = indptr
        self.indices = indices
        self.lastPageLen = lastPageLen
        self.pageSize = pageSize
    }

    public var batchSize: Int { max(indptr.count - 1, 0) }

    public func numPages(_ b: Int) -> Int { Int(indptr[b + 1] - indptr[b]) }

    /// Tokens of request `b` (`get_seq_lens`).
    public func seqLen(_ b: Int) -> Int {
        let n = numPages(b)
        return n == 0 ? 0 : pageSize * (n - 1) + Int(lastPageLen[b])
    }

    public var seqLens: [Int] { (0..<batchSize).map(seqLen) }

    /// Cache page and slot of token `pos` of request `b`.
    @inline(__always)
    public func location(request b: Int, position pos: Int) -> (page: Int, slot: Int) {
        (Int(indices[Int(indptr[b]) + pos / pageSize]), pos % pageSize)
    }

    /// Checks every rule above against a cache of `numPages` pages; each violation is a specific error.
    public func validate(numPages: Int) throws(FlashInferError) {
        guard pageSize >= 1 else { throw .option(name: "page_size", value: "\(pageSize)", rule: "must be >= 1") }
        guard indptr.count >= 1 else { throw .indices(array: "kv_indptr", position: 0, rule: "must have batch_size + 1 entries (at least 1)") }
        guard indptr[0] == 0 else { throw .indices(array: "kv_indptr", position: 0, rule: "must start at 0, got \(indptr[0])") }
        for i in 1..<indptr.count where indptr[i] < indptr[i - 1] {
            throw .indices(array: "kv_indptr", position: i, rule: "not monotonic: \(indptr[i]) < \(indptr[i - 1])")
        }
        guard Int(indptr.last!) == indices.count else {
            throw .indices(array: "kv_indptr", position: indptr.count - 1, rule: "last entry \(indptr.last!) != len(kv_indices) \(indices.count)")
        }
        guard lastPageLen.count == batchSize else {
            throw .shape(tensor: "kv_last_page_len", axis: 0, name: "batch_size", expected: "\(batchSize) (len(kv_indptr) - 1)", got: lastPageLen.count)
        }
        for (i, p) in indices.enumerated() where p < 0 || Int(p) >= numPages {
            throw .indices(array: "kv_indices", position: i, rule: "page \(p) outside the cache's \(numPages) pages")
        }
        for b in 0..<batchSize where self.numPages(b) > 0 && (lastPageLen[b] < 1 || Int(lastPageLen[b]) > pageSize) {
            throw .indices(array: "kv_last_page_len", position: b, rule: "\(lastPageLen[b]) outside 1...\(pageSize)")
        }
    }

    /// A table giving request `b` `seqLens[b]` tokens on consecutive fresh pages `0, 1, 2, ...`
    /// (for tests, benches and demos).
    public static func contiguous(seqLens: [Int], pageSize: Int) -> PageTable {
        var indptr: [Int32] = [0], last: [Int32] = []
        for n in seqLens {
            let pages = (n + pageSize - 1) / pageSize
            indptr.append(indptr.last! + Int32(pages))
            last.append(Int32(n == 0 ? pageSize : n - (pages - 1) * pageSize))
        }
        return PageTable(indptr: indptr, indices: (0..<Int(indptr.last!)).map(Int32.init), lastPageLen: last, pageSize: pageSize)
    }
}

/// `get_seq_lens`: tokens per request from the page table arrays.
public func getSeqLens(kvIndptr: [Int32], kvLastPageLen: [Int32], pageSize: Int) -> [Int] {
    PageTable(indptr: kvIndptr, indices: [], lastPageLen: kvLastPageLen, pageSize: pageSize).seqLens
}

/// `get_batch_indices_positions`: for each appended token `t` (`nnz = appendIndptr[B]`), its request
/// and its position in that request: `positions[t] = seqLens[b] − appendLen_b + (t − appendIndptr[b])`,
/// where `seqLens` are the lengths **after** the append.
///
/// Upstream's docstring example: `appendIndptr = [0,1,3,6,10]`, `seqLens = [5,5,5,5]` →
/// `batchIndices = [0,1,1,2,2,2,3,3,3,3]`, `positions = [4,3,4,2,3,4,1,2,3,4]`.
public func getBatchIndicesPositions(appendIndptr: [Int32], seqLens: [Int]) throws(FlashInferError) -> (batchIndices: [Int32], positions: [Int32]) {
    guard appendIndptr.count == seqLens.count + 1 else {
        throw .shape(tensor: "append_indptr", axis: 0, name: "batch_size + 1", expected: "\(seqLens.count + 1)", got: appendIndptr.count)
    }
    guard appendIndptr.first == 0 else { throw .indices(array: "append_indptr", position: 0, rule: "must start at 0") }
    var batch: [Int32] = [], pos: [Int32] = []
    for b in 0..<seqLens.count {
        let n = Int(appendIndptr[b + 1] - appendIndptr[b])
        guard n >= 0 else { throw .indices(array: "append_indptr", position: b + 1, rule: "not monotonic") }
        guard n <= seqLens[b] else { throw .indices(array: "append_indptr", position: b + 1, rule: "appends \(n) tokens to a request of \(seqLens[b])") }
        for j in 0..<n {
            batch.append(Int32(b))
            pos.append(Int32(seqLens[b] - n + j))
        }
    }
    return (batch, pos)
}
