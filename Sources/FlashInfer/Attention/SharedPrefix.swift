import FlashInferCUDA

/// The two-level cascade made simple (upstream's `BatchDecodeWithSharedPrefixPagedKVCacheWrapper`
/// and `BatchPrefillWithSharedPrefixPagedKVCacheWrapper`): every request attends a shared prefix,
/// then its own pages. The prefix is read once for the whole batch.
///
/// ```swift
/// let attn = SharedPrefixAttention(backend: backend)
/// try attn.plan(prefix: .tensors(length: 32768), unique: table, numQOHeads: 32, numKVHeads: 8,
///               headDim: 128, dtype: .f16)                       // decode: one query per request
/// let out = try attn.run(q: q, cache: cache, prefix: .tensors(k: sharedK, v: sharedV))
/// ```
/// For append, pass `queriesPerRequest`-style `qoIndptr`; the causal mask (when asked) applies to
/// the unique part only — every query sees the whole prefix, as upstream.
///
/// Threads: one thread at a time (like upstream's wrappers): `plan` and `run` mutate the wrapper;
/// use one wrapper per thread. Work is ordered on the backend's stream (docs/ORDERING.md).
public final class SharedPrefixAttention: @unchecked Sendable {
    public private(set) var backend: Backend

    /// Moves the wrapper to `stream` (on the plan's device): later `run`s and `plan`s are enqueued
    /// there. No re-plan: the plan's buffers stay, and the first run on `stream` waits for their
    /// uploads on the previous stream (docs/ORDERING.md) — except under CUDA-graph capture, which
    /// records no waits (synchronize before capturing, as `torch.cuda.graph` does). How a caller
    /// plans on one stream and captures `run` on another (the C ABI does this when a run names
    /// another stream than its plan's).
    public func rebind(stream: Stream) throws(FlashInferError) {
        backend = try backend.rebound(to: stream)
        try shared?.rebind(stream: stream)
        try unique?.rebind(stream: stream)
    }

    /// Where the shared prefix lives, at plan time.
    public enum PrefixPlan: Sendable {
        /// Pages of the same cache as the unique parts (`table` describes one sequence).
        case pages(PageTable)
        /// Separate K and V tensors `[length, Hkv, D]` (NHD), passed to `run`.
        case tensors(length: Int)
    }

    /// The prefix's data at run time (must match the plan).
    public enum PrefixData: Sendable {
        case pages
        case tensors(k: Tensor, v: Tensor)
    }

    var shared: BatchPrefillAttention?
    var unique: BatchPrefillAttention?
    var prefix: PrefixPlan?

    public init(backend: Backend) {
        self.backend = backend
    }

    /// - Parameters:
    ///   - unique: each request's own pages (`B` requests).
    ///   - qoIndptr: `[B + 1]` queries per request; nil for decode (one query each).
    ///   - kvDType: K/V's dtype (the pool's and the prefix tensors'): nil for q's, or e4m3 / e5m2.
    public func plan(prefix: PrefixPlan, unique table: PageTable, qoIndptr: [Int32]? = nil, numQOHeads: Int, numKVHeads: Int,
                     headDim: Int, dtype: DType, kvDType: DType? = nil, options: AttentionOptions = AttentionOptions(),
                     numPagesInCache: Int? = nil) throws(FlashInferError) {
        let b = table.batchSize
        let qo = qoIndptr ?? (0...b).map(Int32.init)
        guard qo.count == b + 1 else {
            throw .shape(tensor: "qo_indptr", axis: 0, name: "batch_size + 1", expected: "\(b + 1) (unique table's requests + 1)", got: qo.count)
        }
        let total = qo.last ?? 0
        var sharedOptions = options
        sharedOptions.causal = false
        let s = BatchPrefillAttention(backend: backend)
        switch prefix {
        case .pages(let t):
            guard t.batchSize == 1 else {
                throw .shape(tensor: "prefix kv_indptr", axis: 0, name: "batch_size + 1", expected: "2 (one shared sequence)", got: t.indptr.count)
            }
            try s.plan(qoIndptr: [0, total], table: t, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, dtype: dtype,
                       kvDType: kvDType, options: sharedOptions, numPagesInCache: numPagesInCache)
        case .tensors(let length):
            guard length >= 0 else { throw .option(name: "prefix length", value: "\(length)", rule: "must be >= 0") }
            sharedOptions.layout = .nhd
            try s.plan(qoIndptr: [0, total], kvIndptr: [0, Int32(length)], numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                       headDim: headDim, dtype: dtype, kvDType: kvDType, options: sharedOptions)
        }
        let u = BatchPrefillAttention(backend: backend)
        try u.plan(qoIndptr: qo, table: table, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, dtype: dtype,
                   kvDType: kvDType, options: options, numPagesInCache: numPagesInCache)
        (self.shared, self.unique, self.prefix) = (s, u, prefix)
    }

    /// q `[total, Hq, D]` → output (+ LSE over prefix and unique keys, base 2).
    public func run(q: Tensor, cache: PagedKVCache, prefix data: PrefixData = .pages, returnLSE: Bool = false) throws(FlashInferError) -> AttentionOutput {
        guard let shared, let unique, let prefix else { throw .notPlanned(wrapper: "SharedPrefixAttention") }
        let u = try unique.run(q: q, kv: .paged(cache), returnLSE: true)
        let s: AttentionOutput
        switch (prefix, data) {
        case (.pages, .pages):
            s = try shared.run(q: q, kv: .paged(cache), returnLSE: true)
        case (.tensors(let length), .tensors(let k, let v)):
            guard k.rank == 3, k.shape[0] == length else {
                throw .shape(tensor: "prefix k", axis: 0, name: "length", expected: "\(length) (from plan)", got: k.shape.first ?? 0)
            }
            s = try shared.run(q: q, kv: .ragged(k: k, v: v), returnLSE: true)
        default:
            throw .unsupportedCombination("prefix \(data) does not match the plan's prefix kind")
        }
        try mergeStateInPlace(v: u.output, s: u.lse!, vOther: s.output, sOther: s.lse!, backend: backend)
        return AttentionOutput(output: u.output, lse: returnLSE ? u.lse : nil)
    }
}
