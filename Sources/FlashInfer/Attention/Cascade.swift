import FlashInferCUDA

/// One level of a cascade: which queries attend which pages.
public struct CascadeLevel: Sendable, Hashable {
    /// `[B_l + 1]` over the shared ragged query tensor; its last entry is the total query count.
    public var qoIndptr: [Int32]
    /// The level's pages (same pool for every level).
    public var table: PageTable

    public init(qoIndptr: [Int32], table: PageTable) {
        self.qoIndptr = qoIndptr
        self.table = table
    }
}

/// Multi-level cascade attention, FlashInfer's `MultiLevelCascadeAttentionWrapper`: N levels over
/// one paged KV pool and one ragged query tensor. Level 0 is typically the shared prefix (all the
/// batch's queries in one group, so its KV is read once), later levels the per-request suffixes.
/// `run` computes attention per level (causal only on the last level, as upstream) and merges
/// the states: `out = level[N−1] ⊕ level[N−2] ⊕ … ⊕ level[0]`.
///
/// Threads: one thread at a time (like upstream's wrappers): `plan` and `run` mutate the wrapper;
/// use one wrapper per thread. Work is ordered on the backend's stream (docs/ORDERING.md).
public final class MultiLevelCascadeAttention: @unchecked Sendable {
    public private(set) var backend: Backend
    var levels: [BatchPrefillAttention] = []
    var totalQueries = 0
    /// CUDA: per-level output and LSE buffers for every level but the last (made in plan(), so
    /// run() allocates only the result unless the caller passes it).
    var scratch: [(o: Tensor, lse: Tensor)] = []
    var lseScratch: Tensor?
    /// CUDA-graph mode (upstream's `use_cuda_graph`): one capacity per level (its requests and
    /// pages; every level's `maxQORows` is the same: the query rows any plan may have). The level
    /// wrappers are graph-mode `BatchPrefillAttention`s made by the first plan and re-planned in
    /// place afterwards, and the scratch is allocated once for `maxQORows` rows, so a `run`
    /// captured in a CUDA graph replays whatever plan was made last (within the capacities, with
    /// the first plan's kernels). `run` then takes q / out / lse with `maxQORows` rows; rows past
    /// the plan's query count hold unspecified values.
    public let graphCapacities: [GraphCapacity]?

    /// Moves the wrapper to `stream` (on the plan's device): later `run`s and `plan`s are enqueued
    /// there. No re-plan: the plan's buffers stay, and the first run on `stream` waits for their
    /// uploads on the previous stream (docs/ORDERING.md) — except under CUDA-graph capture, which
    /// records no waits (synchronize before capturing, as `torch.cuda.graph` does). How a caller
    /// plans on one stream and captures `run` on another (the C ABI does this when a run names
    /// another stream than its plan's).
    public func rebind(stream: Stream) throws(FlashInferError) {
        backend = try backend.rebound(to: stream)
        for w in levels { try w.rebind(stream: stream) }
    }

    public init(backend: Backend, graphCapacities: [GraphCapacity]? = nil) {
        self.backend = backend
        self.graphCapacities = graphCapacities
    }

    /// Plans every level. Validation: ≥ 1 level, every level's `qoIndptr` covers the same total
    /// query count, and each level's page table is valid. `kvDType`: the pool's dtype (nil: q's;
    /// e4m3 / e5m2 for an FP8 pool, with `options.kScale` / `vScale`).
    public func plan(levels: [CascadeLevel], numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType, kvDType: DType? = nil,
                     options: AttentionOptions = AttentionOptions(), numPagesInCache: Int? = nil) throws(FlashInferError) {
        guard let first = levels.first else { throw .option(name: "levels", value: "[]", rule: "a cascade needs at least one level") }
        let total = first.qoIndptr.last ?? 0
        if let caps = graphCapacities {
            guard caps.count == levels.count else {
                throw .option(name: "levels", value: "\(levels.count) levels",
                              rule: "CUDA-graph mode was set up for \(caps.count) levels (one capacity per level)")
            }
            guard Set(caps.map(\.maxQORows)).count == 1 else {
                throw .option(name: "graphCapacities", value: caps.map { "\($0.maxQORows)" }.joined(separator: ", "),
                              rule: "every level covers the same queries: one maxQORows for all levels")
            }
        }
        // Graph mode keeps the level wrappers (their fixed device buffers are what a captured graph
        // reads); otherwise each plan makes new ones.
        let keep = graphCapacities != nil && self.levels.count == levels.count
        // Until this plan succeeds the wrapper is unplanned (a failed graph-mode plan may have
        // re-planned some levels already).
        isPlanned = false
        var planned: [BatchPrefillAttention] = []
        for (l, level) in levels.enumerated() {
            guard level.qoIndptr.last == total else {
                throw .indices(array: "qo_indptr[level \(l)]", position: level.qoIndptr.count - 1,
                               rule: "covers \(level.qoIndptr.last ?? 0) queries, level 0 covers \(total): every level must cover every query")
            }
            guard level.qoIndptr.count - 1 == level.table.batchSize else {
                throw .shape(tensor: "kv_indptr[level \(l)]", axis: 0, name: "batch_size + 1",
                             expected: "\(level.qoIndptr.count) (len(qo_indptr[level \(l)]))", got: level.table.indptr.count)
            }
            var o = options
            o.causal = options.causal && l == levels.count - 1
            let w = keep ? self.levels[l] : BatchPrefillAttention(backend: backend, graphCapacity: graphCapacities?[l])
            do {
                try w.plan(qoIndptr: level.qoIndptr, table: level.table, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                           headDim: headDim, dtype: dtype, kvDType: kvDType, options: o, numPagesInCache: numPagesInCache)
            } catch {
                throw error.atLevel(l)
            }
            planned.append(w)
        }
        self.levels = planned
        self.isPlanned = true
        self.totalQueries = Int(total)
        // Graph mode: the scratch of the capacity's rows, allocated by the first plan (or when the
        // heads, head dim or dtype change, which the level wrappers refuse anyway).
        let rows = graphCapacities.map { $0[0].maxQORows } ?? Int(total)
        let scratchShape = ScratchShape(levels: levels.count, rows: rows, numQOHeads: numQOHeads, headDim: headDim, dtype: dtype)
        if !keep || scratchShape != self.scratchShape {
            (scratch, lseScratch) = try backend.implementation.cascadeScratch(levels: levels.count, totalQueries: rows,
                                                                               numQOHeads: numQOHeads, headDim: headDim, dtype: dtype)
            self.scratchShape = scratchShape
        }
    }

    struct ScratchShape: Equatable {
        var levels, rows, numQOHeads, headDim: Int
        var dtype: DType
    }
    var scratchShape: ScratchShape?
    /// The last plan succeeded (run's precondition).
    var isPlanned = false

    /// Runs the cascade on q `[total, Hq, D]` over the shared paged pool.
    /// With the CUDA backend, `out` (`[total, Hq, D]`, q's dtype) and `lse` (`[total, Hq]` f32) may be
    /// given; then run() allocates nothing and only launches.
    public func run(q: Tensor, cache: PagedKVCache, returnLSE: Bool = false, out: Tensor? = nil,
                    lse: Tensor? = nil) throws(FlashInferError) -> AttentionOutput {
        guard isPlanned, !levels.isEmpty else { throw .notPlanned(wrapper: "MultiLevelCascadeAttention") }
        return try backend.implementation.runCascade(self, q: q, cache: cache, returnLSE: returnLSE, out: out, lse: lse)
    }
}

extension FlashInferError {
    /// A cascade level's planning error with the level named and its kind kept (a bad input stays
    /// a bad input): the tensor, array or option names gain a `level N` prefix; errors that do not
    /// depend on the level (head dim, group size, CUDA) are unchanged.
    func atLevel(_ l: Int) -> FlashInferError {
        let tag = "level \(l) "
        switch self {
        case .rank(let t, let e, let g): return .rank(tensor: tag + t, expected: e, got: g)
        case .shape(let t, let a, let n, let e, let g): return .shape(tensor: tag + t, axis: a, name: n, expected: e, got: g)
        case .dtype(let t, let e, let g): return .dtype(tensor: tag + t, expected: e, got: g)
        case .option(let n, let v, let r): return .option(name: tag + n, value: v, rule: r)
        case .indices(let a, let p, let r): return .indices(array: tag + a, position: p, rule: r)
        case .unsupportedCombination(let r): return .unsupportedCombination("level \(l): \(r)")
        default: return self
        }
    }
}
