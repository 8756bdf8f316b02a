import FlashInferCUDA

/// Capacity of a CUDA-graph-mode wrapper: the largest batch, page count (and, for batch prefill,
/// query rows) any plan may use.
public struct GraphCapacity: Sendable, Hashable {
    public var maxBatch: Int
    public var maxPages: Int
    /// Query rows (`qoIndptr[B]`) a batch prefill plan may have; decode: one per request.
    public var maxQORows: Int
    public init(maxBatch: Int, maxPages: Int, maxQORows: Int? = nil) {
        self.maxBatch = maxBatch
        self.maxPages = maxPages
        self.maxQORows = maxQORows ?? maxBatch
    }

    /// Throws `capacityExceeded` for a plan that does not fit: more requests, pages (nil: ragged
    /// K/V) or query rows (nil: decode, one per request) than the capacity holds.
    func check(batchSize: Int, pages: Int?, queryRows: Int? = nil) throws(FlashInferError) {
        guard batchSize <= maxBatch else { throw .capacityExceeded(what: "batch size", value: "\(batchSize)", capacity: "\(maxBatch) requests") }
        if let queryRows, queryRows > maxQORows {
            throw .capacityExceeded(what: "query rows (qo_indptr[-1])", value: "\(queryRows)", capacity: "\(maxQORows) rows")
        }
        if let pages, pages > maxPages { throw .capacityExceeded(what: "pages", value: "\(pages)", capacity: "\(maxPages) pages") }
    }

    /// Throws `capacityExceeded` for a schedule of more work items than the padded grid holds.
    static func check(workItems: Int, maxItems: Int) throws(FlashInferError) {
        guard workItems <= maxItems else { throw .capacityExceeded(what: "work items", value: "\(workItems)", capacity: "\(maxItems) work items") }
    }
}

/// Batch decode over a paged KV cache, FlashInfer's `BatchDecodeWithPagedKVCacheWrapper`.
///
/// Lifecycle — what a serving engine does every step:
/// ```swift
/// let decode = BatchDecodeWithPagedKVCache(backend: backend)          // once
/// try decode.plan(table: table, numQOHeads: 32, numKVHeads: 8, headDim: 128, dtype: .f16)  // once per step (CPU only)
/// for layer in layers {
///     let out = try decode.run(q: q[layer], cache: caches[layer])     // per layer: no host work but launches
/// }
/// ```
/// `plan` validates the page table, schedules split-KV chunks (`BatchDecodePlan`) and uploads the
/// schedule; `run` only launches. q is `[B, Hq, D]`; the output has q's shape and dtype; the
/// LSE (optional) is Float32 `[B, Hq]`, base 2.
///
/// Threads: one thread at a time (like upstream's wrappers): `plan` and `run` mutate the wrapper;
/// use one wrapper per thread. Work is ordered on the backend's stream (docs/ORDERING.md).
public final class BatchDecodeWithPagedKVCache: @unchecked Sendable {
    public private(set) var backend: Backend

    /// Moves the wrapper to `stream` (on the plan's device): later `run`s and `plan`s are enqueued
    /// there. No re-plan: the plan's buffers stay, and the first run on `stream` waits for their
    /// uploads on the previous stream (docs/ORDERING.md) — except under CUDA-graph capture, which
    /// records no waits (synchronize before capturing, as `torch.cuda.graph` does). How a caller
    /// plans on one stream and captures `run` on another (the C ABI does this when a run names
    /// another stream than its plan's).
    public func rebind(stream: Stream) throws(FlashInferError) {
        backend = try backend.rebound(to: stream)
        try tensorCorePath?.rebind(stream: stream)
    }

    /// CPU backend, for checks of the tensor-core path: round RoPE-rotated q/k to this dtype as the
    /// tensor-core kernels do (`ReferenceAttention.decode(rotatedRounding:)`). Not public API.
    @_spi(Testing) public var referenceRotatedRounding: DType?
    /// CUDA-graph mode (upstream's `use_cuda_graph`): fixed-capacity buffers reused by every plan,
    /// so a `run` captured in a graph replays correctly after a new plan within the capacity.
    public let graphCapacity: GraphCapacity?
    /// Decode through the tensor-core prefill kernel (GQA group packed into rows; upstream's
    /// `use_tensor_cores`) instead of the CUDA-core decode kernel: `true` / `false` force a path,
    /// `nil` (the default) lets `plan` choose (`prefersTensorCores(table:…)`, the cost model). `usesTensorCores` tells
    /// which path the last plan took.
    public let useTensorCores: Bool?
    /// Measurement knob (`bench batch-decode --stages/--keys-per-slot`): the CUDA-core kernel's
    /// pipeline depth and keys per slot for the next plans (nil: the library's defaults).
    @_spi(Bench) public var decodeKernelTuning: (stages: Int, keysPerSlot: Int)?
    /// Measurement knob (`bench decode-paths`): the CUDA-core planner's wave-aware split
    /// (`BatchDecodePlan.make(waveAware:)`) for the next plans; off reproduces the plans before it.
    @_spi(Bench) public var waveAwareSplit = true
    /// The CUDA-core kernel's resident CTAs per SM (the driver's occupancy) in the last plan; nil on
    /// the tensor-core path and the CPU.
    @_spi(Bench) public var cudaCoreCTAsPerSM: Int? { device?.ctasPerSM }
    /// The path the last `plan` chose (false on the CPU backend).
    public private(set) var usesTensorCores = false
    var tensorCorePath: BatchPrefillAttention?
    /// The tensor-core path's kernel tile on the GPU (e.g. `q16kv128s32w4`, the single-buffered
    /// 16-row tile; `q64kv64s64`): nil on CUDA cores, on the CPU or before a plan.
    public var tensorCoreTile: PrefillTile? { tensorCorePath?.device?.spec.tile }
    public private(set) var plan: BatchDecodePlan?
    public private(set) var table: PageTable?
    var shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType)?
    /// The cache's dtype: q's, or FP8 (e4m3 / e5m2).
    var kvDType: DType = .f16
    var options = AttentionOptions()
    /// 1 + the largest page id the planned table uses (run() checks the cache against it).
    var pagesNeeded = 0
    var device: CUDABatchDecode?

    /// - Parameter graphCapacity: enables CUDA-graph mode (CUDA backend): every plan must fit the
    ///   capacity, and q and out passed to `run` have `capacity.maxBatch` rows (rows past the
    ///   planned batch are ignored / written as 0).
    /// - Parameter useTensorCores: see `useTensorCores` (`true` is not combinable with `graphCapacity` yet).
    public init(backend: Backend, graphCapacity: GraphCapacity? = nil, useTensorCores: Bool? = nil) {
        self.backend = backend
        self.graphCapacity = graphCapacity
        self.useTensorCores = useTensorCores
    }

    /// The automatic choice of `plan` when `useTensorCores` is nil, without a shape: the
    /// tensor-core path for GQA groups of 4 or more query heads per KV head, the CUDA-core kernel
    /// otherwise and in CUDA-graph mode (which the tensor-core path does not support yet) and for
    /// FP8 caches. `plan` uses the shape-aware form below; this one is what it falls back to where
    /// no device is modelled (the CPU backend).
    ///
    /// Measured on an H100 (bench/NOTES.md, 2026-11-28): group 4 — D1 2.95 TB/s on tensor cores
    /// against 2.47 on CUDA cores (the CUDA-core grid of 512 CTAs is 1.3 waves), D3 3.01 against
    /// 2.94, D2 2.80 against 2.85; group 1 (D4) 3.05 on CUDA cores against 2.99.
    ///
    /// FP8 caches take the CUDA-core kernel (`kvDType` e4m3 / e5m2): on the H200 (2026-12-04) D5
    /// ran in 201 µs there against 333 µs on the tensor-core path, whose fp8 tiles are converted in
    /// shared memory by a separate pass (bench/NOTES.md).
    public static func prefersTensorCores(groupSize: Int, graphMode: Bool, kvDType: DType? = nil) -> Bool {
        groupSize >= 4 && !graphMode && !(kvDType?.isFP8 ?? false)
    }

    /// The automatic choice of `plan` for a shape on a device: whichever path `DecodePathModel`
    /// predicts faster for this table (per-request lengths), group, head dim and device (SM count,
    /// copy ceiling); the CUDA-core kernel in CUDA-graph mode and for FP8 caches (hard rules, as
    /// above). `hardware` nil (no device modelled) falls back to the shape-free rule.
    ///
    /// On the H200 grid of `bench decode-paths` (batch 1–256 × kv 512–32768 × group 1–16) the
    /// model picks the measured-faster path on every shape where the two differ by more than 5 %;
    /// its worst loss against the faster path is 4.9 % (the fixed rule's: 93 %, at batch 1, kv
    /// 4096, group 4, where the CUDA-core kernel is 2× faster). See bench/NOTES.md.
    public static func prefersTensorCores(table: PageTable, numQOHeads: Int, numKVHeads: Int, headDim: Int, kvDType: DType,
                                          graphMode: Bool, hardware: DecodePathModel.Hardware?,
                                          model constants: DecodePathModel.Constants = .h200) -> Bool {
        let group = numQOHeads / max(numKVHeads, 1)
        guard !graphMode, !kvDType.isFP8 else { return false }
        guard let hardware, table.batchSize > 0 else { return prefersTensorCores(groupSize: group, graphMode: graphMode, kvDType: kvDType) }
        let model = DecodePathModel(hardware: hardware, constants: constants)
        let shape = DecodePathModel.Shape(table: table, numKVHeads: numKVHeads, groupSize: group, headDim: headDim,
                                          kvBytes: kvDType.byteSize)
        return model.predict(shape).prefersTensorCores
    }

    /// Plans one decode step. Host arrays only: no device → host copy.
    /// - Parameters:
    ///   - dtype: q's (and the output's) dtype, f16 or bf16.
    ///   - kvDType: the cache's dtype: nil for q's, or e4m3 / e5m2 (FP8; `options.kScale` / `vScale`
    ///     are the quantization scales, upstream's `k_scale` / `v_scale`).
    public func plan(table: PageTable, numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType, kvDType: DType? = nil,
                     options: AttentionOptions = AttentionOptions(), numPagesInCache: Int? = nil) throws(FlashInferError) {
        try validateKVScales(options)
        pagesNeeded = Int(table.indices.max().map { $0 + 1 } ?? 0)
        try table.validate(numPages: numPagesInCache ?? pagesNeeded)
        // On every backend (the CPU has no fixed buffers, but a plan that would not fit the GPU's is
        // the same error everywhere).
        try graphCapacity?.check(batchSize: table.batchSize, pages: table.indices.count)
        guard supportedHeadDims.contains(headDim) else { throw .unsupportedHeadDim(headDim, supported: supportedHeadDims) }
        guard numKVHeads > 0, numQOHeads % numKVHeads == 0 else { throw .groupSize(numQOHeads: numQOHeads, numKVHeads: numKVHeads) }
        let kv = kvDType ?? dtype
        try validateQKVDTypes(q: dtype, kv: kv, kvName: "paged_kv_cache")
        var o = options
        o.causal = false
        let tensorCores = useTensorCores
            ?? Self.prefersTensorCores(table: table, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, kvDType: kv,
                                       graphMode: graphCapacity != nil, hardware: backend.implementation.decodePathHardware)
        usesTensorCores = false
        let planned = try backend.implementation.planBatchDecode(self, table: table, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                                                                 headDim: headDim, dtype: dtype, kvDType: kv, options: o,
                                                                 numPagesInCache: numPagesInCache, tensorCores: tensorCores)
        self.plan = planned.plan
        self.device = planned.device
        self.tensorCorePath = planned.tensorCorePath
        usesTensorCores = planned.tensorCorePath != nil
        self.table = table
        self.shape = (numQOHeads, numKVHeads, headDim, dtype)
        self.kvDType = kv
        self.options = o
    }

    /// Runs the planned step on `q` `[B, Hq, D]` against `cache`.
    /// `out` (optional): a contiguous `[B, Hq, D]` device tensor in q's dtype to write into
    /// (otherwise one is allocated); `lseOut` likewise for the LSE (implies `returnLSE`).
    public func run(q: Tensor, cache: PagedKVCache, returnLSE: Bool = false, out: Tensor? = nil,
                    lseOut: Tensor? = nil) throws(FlashInferError) -> AttentionOutput {
        guard let table, let shape, plan != nil else { throw .notPlanned(wrapper: "BatchDecodeWithPagedKVCache") }
        guard q.rank == 3 else { throw .rank(tensor: "q", expected: 3, got: q.rank) }
        let impl = backend.implementation
        // CUDA-graph mode: q and out have the capacity's rows (the CPU ignores the capacity).
        let rows = graphCapacity.map { impl.runsCUDAGraphs ? $0.maxBatch : table.batchSize } ?? table.batchSize
        guard q.shape[0] == rows, q.shape[1] == shape.numQOHeads, q.shape[2] == shape.headDim else {
            throw .shape(tensor: "q", axis: 0, name: "[batch, heads, dim]", expected: "\([rows, shape.numQOHeads, shape.headDim]) (from plan)", got: q.shape[0])
        }
        guard q.dtype == shape.dtype else { throw .dtype(tensor: "q", expected: shape.dtype.rawValue, got: q.dtype) }
        guard cache.numKVHeads == shape.numKVHeads else { throw .shape(tensor: "paged_kv_cache", axis: 2, name: "num_kv_heads", expected: "\(shape.numKVHeads)", got: cache.numKVHeads) }
        guard cache.headDim == shape.headDim else { throw .shape(tensor: "paged_kv_cache", axis: 3, name: "head_dim", expected: "\(shape.headDim)", got: cache.headDim) }
        guard cache.pageSize == table.pageSize else { throw .shape(tensor: "paged_kv_cache", axis: 1, name: "page_size", expected: "\(table.pageSize) (from plan)", got: cache.pageSize) }
        guard cache.dtype == kvDType else { throw .dtype(tensor: "paged_kv_cache", expected: "\(kvDType.rawValue) (from plan)", got: cache.dtype) }
        // The table was validated in plan(); here only that the cache holds its largest page id
        // (O(1): run() does no per-page host work).
        guard cache.numPages >= pagesNeeded else {
            throw .indices(array: "kv_indices", position: 0, rule: "the plan uses page \(pagesNeeded - 1), the cache has \(cache.numPages) pages")
        }
        let placement = impl.placement
        try checkPlacement("q", q, placement)
        try checkPlacement("k_cache", cache.k, placement)
        try checkPlacement("v_cache", cache.v, placement)
        try checkPlacement("out", out, placement)
        try checkPlacement("lse", lseOut, placement)
        return try impl.runBatchDecode(self, q: q, cache: cache, table: table, returnLSE: returnLSE, out: out, lseOut: lseOut, rows: rows)
    }
}
