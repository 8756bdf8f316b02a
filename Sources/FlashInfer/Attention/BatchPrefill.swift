import FlashInferCUDA

/// Where a batch prefill reads K and V from.
public enum BatchKV: Sendable {
    /// A paged cache with its page table (fixed at plan time).
    case paged(PagedKVCache)
    /// Ragged tensors `[kvIndptr[B], Hkv, D]` (NHD) or `[Hkv, kvIndptr[B], D]` (HND).
    case ragged(k: Tensor, v: Tensor)
}

/// Batch prefill / append attention, FlashInfer's `BatchPrefillWithPagedKVCacheWrapper` and
/// `BatchPrefillWithRaggedKVCacheWrapper` in one type: the plan says whether KV is paged (a page
/// table) or ragged (`kvIndptr`).
///
/// Queries are ragged: q `[qoIndptr[B], Hq, D]`, request `b`'s queries are rows
/// `qoIndptr[b] ..< qoIndptr[b+1]`. Causal masks align bottom-right per request (append is
/// `qoLen_b < kvLen_b`). Output has q's shape; LSE `[qoIndptr[B], Hq]` Float32, base 2.
public final class BatchPrefillAttention: @unchecked Sendable {
    public let backend: Backend
    public private(set) var plan: BatchPrefillPlan?
    var qoIndptr: [Int32] = []
    var kvLens: [Int] = []
    var table: PageTable?
    var kvIndptr: [Int32]?
    var shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType)?
    var options = AttentionOptions()

    public init(backend: Backend) {
        self.backend = backend
    }

    /// Plans a step over a paged cache.
    public func plan(qoIndptr: [Int32], table: PageTable, numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType,
                     options: AttentionOptions = AttentionOptions(), numPagesInCache: Int? = nil) throws(FlashInferError) {
        try table.validate(numPages: numPagesInCache ?? Int(table.indices.max().map { $0 + 1 } ?? 0))
        try commonPlan(qoIndptr: qoIndptr, kvLens: table.seqLens, pageSize: table.pageSize, numQOHeads: numQOHeads,
                       numKVHeads: numKVHeads, headDim: headDim, dtype: dtype, options: options)
        self.table = table
        self.kvIndptr = nil
    }

    /// Plans a step over ragged K/V.
    public func plan(qoIndptr: [Int32], kvIndptr: [Int32], numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType,
                     options: AttentionOptions = AttentionOptions()) throws(FlashInferError) {
        try validateIndptr(kvIndptr, name: "kv_indptr")
        guard kvIndptr.count == qoIndptr.count else {
            throw .shape(tensor: "kv_indptr", axis: 0, name: "batch_size + 1", expected: "\(qoIndptr.count) (len(qo_indptr))", got: kvIndptr.count)
        }
        let kvLens = (0..<(kvIndptr.count - 1)).map { Int(kvIndptr[$0 + 1] - kvIndptr[$0]) }
        try commonPlan(qoIndptr: qoIndptr, kvLens: kvLens, pageSize: 1, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                       headDim: headDim, dtype: dtype, options: options)
        self.table = nil
        self.kvIndptr = kvIndptr
    }

    private func commonPlan(qoIndptr: [Int32], kvLens: [Int], pageSize: Int, numQOHeads: Int, numKVHeads: Int, headDim: Int,
                            dtype: DType, options: AttentionOptions) throws(FlashInferError) {
        try validateIndptr(qoIndptr, name: "qo_indptr")
        guard qoIndptr.count - 1 == kvLens.count else {
            throw .shape(tensor: "qo_indptr", axis: 0, name: "batch_size + 1", expected: "\(kvLens.count + 1)", got: qoIndptr.count)
        }
        guard supportedHeadDims.contains(headDim) else { throw .unsupportedHeadDim(headDim, supported: supportedHeadDims) }
        guard numKVHeads > 0, numQOHeads % numKVHeads == 0 else { throw .groupSize(numQOHeads: numQOHeads, numKVHeads: numKVHeads) }
        guard dtype == .f16 || dtype == .bf16 else { throw .dtype(tensor: "q", expected: "f16 or bf16", got: dtype) }
        let qoLens = (0..<kvLens.count).map { Int(qoIndptr[$0 + 1] - qoIndptr[$0]) }
        if options.causal {
            for b in 0..<kvLens.count where qoLens[b] > kvLens[b] { throw .causalQueryLongerThanKV(qoLen: qoLens[b], kvLen: kvLens[b]) }
        }
        let sms: Int
        switch backend {
        case .cpu: sms = DeviceProperties.h100.multiprocessorCount
        case .cuda(let s): sms = s.device.properties.multiprocessorCount
        }
        plan = BatchPrefillPlan.make(qoLens: qoLens, kvLens: kvLens, pageSize: pageSize, groupSize: numQOHeads / numKVHeads,
                                     numKVHeads: numKVHeads, headDim: headDim, numSMs: sms, windowLeft: options.windowLeft)
        self.qoIndptr = qoIndptr
        self.kvLens = kvLens
        self.shape = (numQOHeads, numKVHeads, headDim, dtype)
        self.options = options
    }

    /// Runs the planned step.
    public func run(q: Tensor, kv: BatchKV, returnLSE: Bool = false) throws(FlashInferError) -> AttentionOutput {
        guard let shape, plan != nil else { throw .option(name: "plan", value: "none", rule: "call plan() before run()") }
        let total = Int(qoIndptr.last!)
        guard q.rank == 3 else { throw .rank(tensor: "q", expected: 3, got: q.rank) }
        guard q.shape == [total, shape.numQOHeads, shape.headDim] else {
            throw .shape(tensor: "q", axis: 0, name: "[qo_indptr[-1], heads, dim]", expected: "\([total, shape.numQOHeads, shape.headDim]) (from plan)", got: q.shape[0])
        }
        guard q.dtype == shape.dtype else { throw .dtype(tensor: "q", expected: shape.dtype.rawValue, got: q.dtype) }
        let gather: (Int) throws(FlashInferError) -> (k: [Float], v: [Float])
        switch kv {
        case .paged(let cache):
            guard let table else { throw .option(name: "kv", value: "paged", rule: "the plan was made for ragged K/V") }
            guard cache.numKVHeads == shape.numKVHeads, cache.headDim == shape.headDim, cache.pageSize == table.pageSize else {
                throw .shape(tensor: "paged_kv_cache", axis: 0, name: "[heads, page_size, dim]",
                             expected: "\([shape.numKVHeads, table.pageSize, shape.headDim]) (from plan)", got: cache.numKVHeads)
            }
            guard cache.dtype == q.dtype else { throw .dtype(tensor: "paged_kv_cache", expected: q.dtype.rawValue, got: cache.dtype) }
            try table.validate(numPages: cache.numPages)
            if case .cuda = backend { throw .option(name: "backend", value: "cuda", rule: "the GPU batch prefill kernel is not built yet") }
            let kAll = try FlashInferError.wrap { () throws(CUDAError) in try cache.k.toFloats() }
            let vAll = try FlashInferError.wrap { () throws(CUDAError) in try cache.v.toFloats() }
            gather = { b throws(FlashInferError) in cache.gather(request: b, table: table, kAll: kAll, vAll: vAll) }
        case .ragged(let k, let v):
            guard let kvIndptr else { throw .option(name: "kv", value: "ragged", rule: "the plan was made for a paged cache") }
            let nkv = Int(kvIndptr.last!)
            let expect = options.layout == .nhd ? [nkv, shape.numKVHeads, shape.headDim] : [shape.numKVHeads, nkv, shape.headDim]
            for (n, t) in [("k", k), ("v", v)] {
                guard t.shape == expect else { throw .shape(tensor: n, axis: 0, name: "shape \(t.shape)", expected: "\(expect)", got: t.shape.first ?? 0) }
                guard t.dtype == q.dtype else { throw .dtype(tensor: n, expected: q.dtype.rawValue, got: t.dtype) }
            }
            if case .cuda = backend { throw .option(name: "backend", value: "cuda", rule: "the GPU batch prefill kernel is not built yet") }
            let kAll = try FlashInferError.wrap { () throws(CUDAError) in try k.toFloats() }
            let vAll = try FlashInferError.wrap { () throws(CUDAError) in try v.toFloats() }
            let (h, d, layout) = (shape.numKVHeads, shape.headDim, options.layout)
            gather = { b in
                let lo = Int(kvIndptr[b]), n = Int(kvIndptr[b + 1]) - lo
                var ko = [Float](repeating: 0, count: n * h * d), vo = ko
                for t in 0..<n {
                    for head in 0..<h {
                        let src = layout == .nhd ? ((lo + t) * h + head) * d : (head * nkv + lo + t) * d
                        for i in 0..<d {
                            ko[(t * h + head) * d + i] = kAll[src + i]
                            vo[(t * h + head) * d + i] = vAll[src + i]
                        }
                    }
                }
                return (ko, vo)
            }
        }
        let qAll = try FlashInferError.wrap { () throws(CUDAError) in try q.toFloats() }
        let (hq, hkv, d) = (shape.numQOHeads, shape.numKVHeads, shape.headDim)
        var out = [Float](), lse = [Float]()
        for b in 0..<kvLens.count {
            let (k, v) = try gather(b)
            let lo = Int(qoIndptr[b]), qo = Int(qoIndptr[b + 1]) - lo
            var o = options
            o.layout = .nhd
            do {
                let r = try ReferenceAttention.prefill(q: Array(qAll[(lo * hq * d)..<((lo + qo) * hq * d)]), k: k, v: v, qoLen: qo, kvLen: kvLens[b],
                                                       numQOHeads: hq, numKVHeads: hkv, headDim: d, options: o)
                out += r.output
                lse += r.lse
            } catch { throw .option(name: "reference", value: "", rule: "\(error)") }
        }
        return AttentionOutput(output: Tensor.host(out, shape: q.shape, dtype: q.dtype),
                               lse: returnLSE ? Tensor.host(lse, shape: [total, hq], dtype: .f32) : nil)
    }
}

/// indptr rules shared by every plan: starts at 0, non-decreasing, at least one entry.
func validateIndptr(_ indptr: [Int32], name: String) throws(FlashInferError) {
    guard !indptr.isEmpty else { throw .indices(array: name, position: 0, rule: "must have batch_size + 1 entries (at least 1)") }
    guard indptr[0] == 0 else { throw .indices(array: name, position: 0, rule: "must start at 0, got \(indptr[0])") }
    for i in 1..<indptr.count where indptr[i] < indptr[i - 1] {
        throw .indices(array: name, position: i, rule: "not monotonic: \(indptr[i]) < \(indptr[i - 1])")
    }
}
