import FlashInferCUDA

/// Where a batch prefill reads K and V from.
public enum BatchKV: Sendable {
    /// A paged cache with its page table (fixed at plan time).
    case paged(PagedKVCache)
    /// Ragged tensors `[kvIndptr[B], Hkv, D]` (NHD) or `[Hkv, kvIndptr[B], D]` (HND).
    case ragged(k: Tensor, v: Tensor)
}

/// Per-request custom masks of a batch prefill plan, upstream's `custom_mask` / `packed_custom_mask`
/// with `qo_indptr` / `kv` lengths: request `b`'s mask is `qoLen_b × kvLen_b` (see `CustomMask`).
public enum BatchCustomMask: Sendable, Hashable {
    /// The requests' flattened masks concatenated (request `b` at `customMaskIndptr(...)[b]`); `true` keeps.
    case bools([Bool])
    /// Packed little-endian per request, request `b`'s bytes at `indptr[b] ..< indptr[b + 1]`
    /// (`packCustomMasks`' output).
    case packed([UInt8], indptr: [Int32])

    /// The packed bytes and byte indptr, validated against the requests' lengths.
    func resolved(qoLens: [Int], kvLens: [Int]) throws(FlashInferError) -> (packed: [UInt8], indptr: [Int32]) {
        switch self {
        case .bools(let b):
            let elements = try customMaskIndptr(qoLens: qoLens, kvLens: kvLens)
            guard b.count == Int(elements.last ?? 0) else {
                throw .shape(tensor: "custom_mask", axis: 0, name: "sum of qo_len · kv_len", expected: "\(elements.last ?? 0)", got: b.count)
            }
            return try packCustomMasks(b, qoLens: qoLens, kvLens: kvLens)
        case .packed(let p, let indptr):
            try validatePackedCustomMasks(packed: p, indptr: indptr, qoLens: qoLens, kvLens: kvLens)
            return (p, indptr)
        }
    }
}

/// Batch prefill / append attention, FlashInfer's `BatchPrefillWithPagedKVCacheWrapper` and
/// `BatchPrefillWithRaggedKVCacheWrapper` in one type: the plan says whether KV is paged (a page
/// table) or ragged (`kvIndptr`).
///
/// Queries are ragged: q `[qoIndptr[B], Hq, D]`, request `b`'s queries are rows
/// `qoIndptr[b] ..< qoIndptr[b+1]`. Causal masks align bottom-right per request (append is
/// `qoLen_b < kvLen_b`). Output has q's shape; LSE `[qoIndptr[B], Hq]` Float32, base 2.
///
/// Lifecycle:
/// ```swift
/// let prefill = BatchPrefillAttention(backend: .cuda(stream))                       // once
/// try prefill.plan(qoIndptr: qo, table: table, numQOHeads: 32, numKVHeads: 8,
///                  headDim: 128, dtype: .f16, options: AttentionOptions(causal: true))  // once per step
/// for layer in layers {
///     try prefill.run(q: q[layer], kv: .paged(caches[layer]), out: out, lse: nil)  // per layer: launches only
/// }
/// ```
/// On the GPU, `plan` schedules the work (`BatchPrefillPlan`, tile = the kernel's), uploads the
/// schedule and the page table once and sizes the split-KV workspace; `run(q:kv:out:lse:)` only
/// launches (the tensor-core kernel over the work items, then, when the plan splits KV, the
/// variable-length merge of the partial states).
///
/// Threads: one thread at a time (like upstream's wrappers): `plan` and `run` mutate the wrapper;
/// use one wrapper per thread. Work is ordered on the backend's stream (docs/ORDERING.md).
public final class BatchPrefillAttention: @unchecked Sendable {
    public private(set) var backend: Backend

    /// Moves the wrapper to `stream` (on the plan's device): later `run`s and `plan`s are enqueued
    /// there. No re-plan: the plan's buffers stay, and the first run on `stream` waits for their
    /// uploads on the previous stream (docs/ORDERING.md) — except under CUDA-graph capture, which
    /// records no waits (synchronize before capturing, as `torch.cuda.graph` does). How a caller
    /// plans on one stream and captures `run` on another (the C ABI does this when a run names
    /// another stream than its plan's).
    public func rebind(stream: Stream) throws(FlashInferError) {
        backend = try backend.rebound(to: stream)
    }

    /// CPU backend, for checks: round RoPE-rotated q/k to this dtype as the tensor-core kernels do
    /// (`ReferenceAttention.prefill(rotatedRounding:)`). Not part of the public API.
    @_spi(Testing) public var referenceRotatedRounding: DType?
    public private(set) var plan: BatchPrefillPlan?
    var qoIndptr: [Int32] = []
    var kvLens: [Int] = []
    var table: PageTable?
    var kvIndptr: [Int32]?
    var shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType)?
    /// K/V as stored: q's dtype, or FP8 (e4m3 / e5m2).
    var kvDType: DType = .f16
    /// The plan's custom masks, packed (nil: none).
    var mask: (packed: [UInt8], indptr: [Int32])?
    var options = AttentionOptions()
    /// 1 + the largest page id the planned table uses (run() checks the cache against it).
    var pagesNeeded = 0
    /// The uploaded schedule (CUDA backend).
    var device: BatchPrefillDevicePlan?
    /// CUDA-graph mode (upstream's `use_cuda_graph`): fixed-capacity device arrays, the grid padded
    /// to the capacity's work items (padded items exit at once), KV never split, and the kernel
    /// (its q tile) fixed by the first plan, so a `run` captured in a graph replays correctly
    /// after any later plan within the capacity with the same kernel. `run` then takes q / out /
    /// lse with `capacity.maxQORows` rows; rows past the plan's `qoIndptr[B]` are not written.
    public let graphCapacity: GraphCapacity?
    /// Graph mode: the kernel of the first plan (every later plan must use it).
    var graphSpec: PrefillSpec?
    /// The kernel tier the current plan runs on the GPU (`AttentionOptions.tier` resolved by
    /// `plan`; also `AttentionOutput.prefillTier` of the allocating run); nil on the CPU or before
    /// a plan. `.auto` takes the Hopper tier (sm_90: `HopperBatchPrefillSpec`) when the plan is one
    /// it implements, else FA2, and then says why in `tierFallback`.
    public private(set) var tier: PrefillTier?
    /// Why `.auto` planned the FA2 tier (nil when it planned Hopper, or the tier was given).
    public private(set) var tierFallback: String?

    public init(backend: Backend, graphCapacity: GraphCapacity? = nil) {
        self.backend = backend
        self.graphCapacity = graphCapacity
    }

    /// Graph mode: work items the padded grid holds for `capacity` at q tile `ctaQ`: every request
    /// takes ceil(packed rows / ctaQ) ≥ 1 items, at most maxQORows·group/ctaQ + maxBatch in all.
    static func graphItems(_ capacity: GraphCapacity, groupSize: Int, ctaQ: Int) -> Int {
        (capacity.maxQORows * groupSize + ctaQ - 1) / ctaQ + capacity.maxBatch
    }

    /// Plans a step over a paged cache.
    /// - Parameters:
    ///   - dtype: q's (and the output's) dtype, f16 or bf16.
    ///   - kvDType: the cache's dtype: nil for q's, or e4m3 / e5m2 (FP8, with `options.kScale` / `vScale`).
    ///   - customMask: per-request masks (they replace `causal`; not in CUDA-graph mode).
    public func plan(qoIndptr: [Int32], table: PageTable, numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType,
                     kvDType: DType? = nil, options: AttentionOptions = AttentionOptions(), customMask: BatchCustomMask? = nil,
                     numPagesInCache: Int? = nil) throws(FlashInferError) {
        try plan(qoIndptr: qoIndptr, table: table, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, dtype: dtype,
                 kvDType: kvDType, options: options, customMask: customMask, numPagesInCache: numPagesInCache, tableValidated: false)
    }

    /// `tableValidated`: the caller (the tensor-core decode path) has just validated `table`
    /// against the same cache size, so plan() does not walk the page ids a second time.
    func plan(qoIndptr: [Int32], table: PageTable, numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType,
              kvDType: DType? = nil, options: AttentionOptions, customMask: BatchCustomMask? = nil, numPagesInCache: Int?,
              tableValidated: Bool) throws(FlashInferError) {
        pagesNeeded = Int(table.indices.max().map { $0 + 1 } ?? 0)
        if !tableValidated { try table.validate(numPages: numPagesInCache ?? pagesNeeded) }
        try commonPlan(qoIndptr: qoIndptr, kvLens: table.seqLens, pageSize: table.pageSize, numQOHeads: numQOHeads,
                       numKVHeads: numKVHeads, headDim: headDim, dtype: dtype, kvDType: kvDType ?? dtype, options: options,
                       customMask: customMask,
                       kvStarts: Array(table.indptr.dropLast()), pageIndices: table.indices)
        self.table = table
        self.kvIndptr = nil
    }

    /// Plans a step over ragged K/V (`kvDType`, `customMask`: as the paged plan).
    public func plan(qoIndptr: [Int32], kvIndptr: [Int32], numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType,
                     kvDType: DType? = nil, options: AttentionOptions = AttentionOptions(),
                     customMask: BatchCustomMask? = nil) throws(FlashInferError) {
        try validateIndptr(kvIndptr, name: "kv_indptr")
        guard kvIndptr.count == qoIndptr.count else {
            throw .shape(tensor: "kv_indptr", axis: 0, name: "batch_size + 1", expected: "\(qoIndptr.count) (len(qo_indptr))", got: kvIndptr.count)
        }
        let kvLens = (0..<(kvIndptr.count - 1)).map { Int(kvIndptr[$0 + 1] - kvIndptr[$0]) }
        try commonPlan(qoIndptr: qoIndptr, kvLens: kvLens, pageSize: 1, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                       headDim: headDim, dtype: dtype, kvDType: kvDType ?? dtype, options: options, customMask: customMask,
                       kvStarts: Array(kvIndptr.dropLast()), pageIndices: nil)
        self.table = nil
        self.kvIndptr = kvIndptr
    }

    private func commonPlan(qoIndptr: [Int32], kvLens: [Int], pageSize: Int, numQOHeads: Int, numKVHeads: Int, headDim: Int,
                            dtype: DType, kvDType: DType, options inOptions: AttentionOptions, customMask: BatchCustomMask?,
                            kvStarts: [Int32], pageIndices: [Int32]?) throws(FlashInferError) {
        var options = inOptions
        if customMask != nil { options.causal = false }  // the mask replaces the causal mask
        plan = nil
        // The previous device plan stays until this one replaces it: its buffers are reused when
        // large enough (no free/alloc per plan), and in graph mode a failed plan must not free the
        // arrays a captured graph points at.
        let previous = device
        try validateKVScales(options)
        try backend.implementation.requireSupport(options, entry: "BatchPrefillAttention")
        try validateIndptr(qoIndptr, name: "qo_indptr")
        guard qoIndptr.count - 1 == kvLens.count else {
            throw .shape(tensor: "qo_indptr", axis: 0, name: "batch_size + 1", expected: "\(kvLens.count + 1)", got: qoIndptr.count)
        }
        guard supportedHeadDims.contains(headDim) else { throw .unsupportedHeadDim(headDim, supported: supportedHeadDims) }
        guard numKVHeads > 0, numQOHeads % numKVHeads == 0 else { throw .groupSize(numQOHeads: numQOHeads, numKVHeads: numKVHeads) }
        try validateQKVDTypes(q: dtype, kv: kvDType, kvName: pageIndices != nil ? "paged_kv_cache" : "k")
        let qoLens = (0..<kvLens.count).map { Int(qoIndptr[$0 + 1] - qoIndptr[$0]) }
        let mask = try customMask?.resolved(qoLens: qoLens, kvLens: kvLens)
        if mask != nil && graphCapacity != nil {
            throw .unsupportedCombination("a custom mask in CUDA-graph mode (graphCapacity): the mask is uploaded per plan")
        }
        if options.causal {
            for b in 0..<kvLens.count where qoLens[b] > kvLens[b] { throw .causalQueryLongerThanKV(qoLen: qoLens[b], kvLen: kvLens[b]) }
        }
        let impl = backend.implementation
        let sms = impl.multiprocessorCount
        let group = numQOHeads / numKVHeads
        var spec = Self.kernelSpec(qoLens: qoLens, groupSize: group, headDim: headDim, dtype: dtype, kvDType: kvDType, options: options,
                                   paged: pageIndices != nil, customMask: mask != nil, numKVHeads: numKVHeads, numSMs: sms)
        var graph: BatchPrefillDevicePlan.GraphLayout? = nil
        // The capacity holds on every backend (a CPU plan beyond it fails as the GPU's would).
        try graphCapacity?.check(batchSize: kvLens.count, pages: pageIndices?.count, queryRows: Int(qoIndptr.last ?? 0))
        if let cap = graphCapacity, impl.runsCUDAGraphs {
            // The first plan fixes the kernel (and its q tile); later plans must match it.
            if let fixed = graphSpec {
                spec.tile = fixed.tile
                guard spec == fixed else {
                    throw .capacityExceeded(what: "kernel", value: spec.name,
                                            capacity: "the first plan's kernel \(fixed.name): every plan in CUDA-graph mode uses it (same dtype, head dim, options, paged/ragged)")
                }
            }
            graph = .init(capacity: cap, maxItems: Self.graphItems(cap, groupSize: group, ctaQ: spec.tile.ctaQ))
        }
        // The tier (GPU only): the Hopper kernel runs unsplit plans of 128-row q tiles.
        var hopper: HopperBatchPrefillSpec? = nil
        var tierFallback: String? = nil
        if case .device(let dev) = impl.placement {
            let request = CUDAHopperBatchPrefill.Request(
                dtype: dtype, kvDType: kvDType, headDim: headDim, groupSize: group, options: options,
                pageSize: pageIndices != nil ? pageSize : nil, customMask: mask != nil, graphMode: graph != nil, fa2CtaQ: spec.tile.ctaQ)
            (hopper, tierFallback) = try CUDAHopperBatchPrefill.resolve(request, device: dev)
        }
        var made = BatchPrefillPlan.make(qoLens: qoLens, kvLens: kvLens, pageSize: pageSize, groupSize: group,
                                         numKVHeads: numKVHeads, headDim: headDim, numSMs: sms, windowLeft: options.windowLeft,
                                         ctaTileQ: spec.tile.ctaQ, disableSplit: graph != nil)
        if hopper != nil {
            let unsplit = BatchPrefillPlan.make(qoLens: qoLens, kvLens: kvLens, pageSize: pageSize, groupSize: group,
                                                numKVHeads: numKVHeads, headDim: headDim, numSMs: sms, windowLeft: options.windowLeft,
                                                ctaTileQ: HopperBatchPrefillSpec.ctaQ, disableSplit: true)
            // `.auto`: too few (request, q tile) CTAs to fill the GPU once, where the FA2 plan splits KV
            // to fill it (e.g. one request of a few hundred queries over a long cache): FA2.
            if options.tier == .auto && made.splitKV && unsplit.workItems * numKVHeads < sms {
                hopper = nil
                tierFallback = "\(unsplit.workItems * numKVHeads) CTAs without split-KV for \(sms) SMs: the FA2 tier splits KV to fill the GPU"
            } else {
                made = unsplit
            }
        }
        device = try impl.uploadBatchPrefillPlan(made, kvLens: kvLens, kvStarts: kvStarts, pageIndices: pageIndices, mask: mask, spec: spec,
                                                 hopper: hopper,
                                                 numQOHeads: numQOHeads, packedRows: qoLens.map { $0 * group }.max() ?? 0,
                                                 previous: previous, graph: graph)
        if graph != nil { graphSpec = spec }
        plan = made
        self.qoIndptr = qoIndptr
        self.kvLens = kvLens
        self.shape = (numQOHeads, numKVHeads, headDim, dtype)
        self.kvDType = kvDType
        self.mask = mask
        self.options = options
        if case .device = impl.placement {
            self.tier = hopper != nil ? .hopper : .fa2
            self.tierFallback = tierFallback
        } else {
            self.tier = nil
            self.tierFallback = nil
        }
    }

    /// The kernel a plan of these requests runs on the GPU: the prefill kernel over ragged or paged
    /// K/V with the options' variant and `BatchPrefillPlan.kernelCtaTileQ` rows per CTA (the 16-row
    /// tile needs `numKVHeads` and `numSMs`: without them a decode-like batch gets 64 rows).
    public static func kernelSpec(qoLens: [Int], groupSize: Int, headDim: Int, dtype: DType, kvDType: DType? = nil,
                                  options: AttentionOptions, paged: Bool, customMask: Bool = false, numKVHeads: Int? = nil,
                                  numSMs: Int? = nil) -> PrefillSpec {
        let avg = qoLens.isEmpty ? 0 : Double(qoLens.reduce(0, +) * groupSize) / Double(qoLens.count)
        var spec = PrefillSpec(dtype: dtype, headDim: headDim, options: options, kvSource: paged ? .paged : .ragged, kvDType: kvDType,
                               customMask: customMask)
        // The 16-row tile: 16-bit K/V (its loop is the 16-bit one) and no RoPE on the fly (its
        // rotation of Q assumes 128-row multiples of the thread count).
        var sixteen = !(kvDType ?? dtype).isFP8
        if case .ropeLlama = options.positionEncoding { sixteen = false }
        spec.tile = .batch(headDim: headDim, plain: spec.plain,
                           ctaQ: BatchPrefillPlan.kernelCtaTileQ(averagePackedQoLen: avg, headDim: headDim, sixteenRowTile: sixteen,
                                                                 ctas: numKVHeads.map { $0 * qoLens.count }, numSMs: numSMs))
        return spec
    }

    /// Runs the planned step: the output (q's shape and dtype) and, with `returnLSE`, the LSE
    /// `[qoIndptr[B], Hq]` (base 2). On the GPU this allocates both; `run(q:kv:out:lse:)` writes
    /// into caller buffers instead.
    public func run(q: Tensor, kv: BatchKV, returnLSE: Bool = false) throws(FlashInferError) -> AttentionOutput {
        guard shape != nil, plan != nil else { throw .notPlanned(wrapper: "BatchPrefillAttention") }
        return try backend.implementation.runBatchPrefill(self, q: q, kv: kv, returnLSE: returnLSE)
    }

    /// Runs the planned step on the GPU into caller buffers: no allocation, no host work but
    /// argument packing (the schedule was uploaded by `plan`). Asynchronous on the plan's stream.
    ///
    /// - Parameters:
    ///   - q: `[qoIndptr[B], Hq, D]` on the device; token/head strides multiples of 8 elements.
    ///   - kv: the paged cache (strides free but for 16-byte rows) or ragged K/V (`options.layout`).
    ///   - out: contiguous `[qoIndptr[B], Hq, D]`, q's dtype.
    ///   - lse: nil, or contiguous Float32 `[qoIndptr[B], Hq]` (base 2).
    public func run(q: Tensor, kv: BatchKV, out: Tensor, lse: Tensor?) throws(FlashInferError) {
        guard let shape, plan != nil else { throw .notPlanned(wrapper: "BatchPrefillAttention") }
        guard let device else {
            throw .backendMismatch(what: "run(q:kv:out:lse:)", rule: "writes device buffers: plan with the CUDA backend")
        }
        let impl = backend.implementation
        let total = device.totalQO  // qoIndptr[B]; in graph mode, the capacity's rows
        try validateInputs(q: q, kv: kv, shape: shape, total: total, placement: impl.placement)
        try validateOutputBuffers(q: q, out: out, lse: lse, lseShape: (total, shape.numQOHeads),
                                  lseShapeName: "[qo_indptr[-1], num_qo_heads]", placement: impl.placement)
        try impl.runBatchPrefill(self, q: q, kv: kv, out: out, lse: lse)
    }

    /// The rules of q and K/V at run time, for either run: q `[total, Hq, D]` of the planned dtype;
    /// K/V of the plan's kind (paged or ragged), heads, head dim and dtype; every tensor where the
    /// backend computes.
    func validateInputs(q: Tensor, kv: BatchKV, shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType), total: Int,
                        placement: Placement) throws(FlashInferError) {
        try validateQ(q, shape: shape, total: total)
        switch kv {
        case .paged(let cache):
            _ = try validatePaged(cache, q: q, shape: shape)
            try checkPlacement("q", q, placement)  // one at a time: no array per run()
            try checkPlacement("k_cache", cache.k, placement)
            try checkPlacement("v_cache", cache.v, placement)
        case .ragged(let k, let v):
            _ = try validateRagged(k: k, v: v, q: q, shape: shape)
            try checkPlacement("q", q, placement)
            try checkPlacement("k", k, placement)
            try checkPlacement("v", v, placement)
        }
    }

    func validateQ(_ q: Tensor, shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType), total: Int) throws(FlashInferError) {
        guard q.rank == 3 else { throw .rank(tensor: "q", expected: 3, got: q.rank) }
        guard q.shape[0] == total, q.shape[1] == shape.numQOHeads, q.shape[2] == shape.headDim else {  // no array literal: run() path
            throw .shape(tensor: "q", axis: 0, name: "[qo_indptr[-1], heads, dim]", expected: "\([total, shape.numQOHeads, shape.headDim]) (from plan)", got: q.shape[0])
        }
        guard q.dtype == shape.dtype else { throw .dtype(tensor: "q", expected: shape.dtype.rawValue, got: q.dtype) }
        guard q.strides[2] == 1 || q.shape[2] <= 1 else { throw .strides(tensor: "q", strides: q.strides, rule: "the head_dim axis must have stride 1") }
    }

    func validatePaged(_ cache: PagedKVCache, q: Tensor, shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType)) throws(FlashInferError) -> PageTable {
        guard let table else { throw .unsupportedCombination("a paged cache for a plan made for ragged K/V") }
        guard cache.numKVHeads == shape.numKVHeads, cache.headDim == shape.headDim, cache.pageSize == table.pageSize else {
            throw .shape(tensor: "paged_kv_cache", axis: 0, name: "[heads, page_size, dim]",
                         expected: "\([shape.numKVHeads, table.pageSize, shape.headDim]) (from plan)", got: cache.numKVHeads)
        }
        guard cache.dtype == kvDType else { throw .dtype(tensor: "paged_kv_cache", expected: "\(kvDType.rawValue) (from plan)", got: cache.dtype) }
        // The table was validated in plan(); here only that the cache holds its largest page id
        // (O(1): run() does no per-page host work).
        guard cache.numPages >= pagesNeeded else {
            throw .indices(array: "kv_indices", position: 0, rule: "the plan uses page \(pagesNeeded - 1), the cache has \(cache.numPages) pages")
        }
        return table
    }

    func validateRagged(k: Tensor, v: Tensor, q: Tensor, shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType)) throws(FlashInferError) -> [Int32] {
        guard let kvIndptr else { throw .unsupportedCombination("ragged K/V for a plan made for a paged cache") }
        let nkv = Int(kvIndptr.last!)
        let expect = options.layout == .nhd ? [nkv, shape.numKVHeads, shape.headDim] : [shape.numKVHeads, nkv, shape.headDim]
        // CUDA-graph mode: the captured k / v stay while later plans change kv_indptr, so they may
        // hold more rows than this plan reads.
        let rowAxis = options.layout == .nhd ? 0 : 1
        for (n, t) in [("k", k), ("v", v)] {
            var fits = t.shape == expect
            if graphCapacity != nil, t.rank == 3, t.shape[rowAxis] >= nkv {
                var s = t.shape
                s[rowAxis] = nkv
                fits = s == expect
            }
            guard fits else {
                throw .shape(tensor: n, axis: 0, name: "shape \(t.shape)",
                             expected: "\(expect)\(graphCapacity != nil ? " (or more rows: CUDA-graph mode)" : "")", got: t.shape.first ?? 0)
            }
            guard t.dtype == kvDType else { throw .dtype(tensor: n, expected: "\(kvDType.rawValue) (from plan)", got: t.dtype) }
            guard t.strides[2] == 1 || t.shape[2] <= 1 else { throw .strides(tensor: n, strides: t.strides, rule: "the head_dim axis must have stride 1") }
        }
        return kvIndptr
    }
}

/// The caller-buffer rules of the batch runs into `out` / `lse`: both where the backend computes;
/// `out` contiguous with q's shape and dtype; `lse` nil or contiguous Float32 `lseShape`.
func validateOutputBuffers(q: Tensor, out: Tensor, lse: Tensor?, lseShape: (Int, Int), lseShapeName: String,
                           placement: Placement) throws(FlashInferError) {
    try checkPlacement("out", out, placement)  // one at a time: no array per run()
    try checkPlacement("lse", lse, placement)
    guard out.shape == q.shape else {
        throw .shape(tensor: "out", axis: 0, name: "shape \(out.shape)", expected: "q's shape \(q.shape)", got: out.shape.first ?? 0)
    }
    guard out.dtype == q.dtype else { throw .dtype(tensor: "out", expected: q.dtype.rawValue, got: out.dtype) }
    guard out.isContiguous else { throw .strides(tensor: "out", strides: out.strides, rule: "must be contiguous") }
    if let lse {
        guard lse.isContiguous, lse.dtype == .f32, lse.rank == 2, lse.shape[0] == lseShape.0, lse.shape[1] == lseShape.1 else {
            throw .shape(tensor: "lse", axis: 0, name: "shape \(lse.shape)", expected: "contiguous f32 \(lseShapeName)", got: lse.shape.first ?? 0)
        }
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
