import FlashInferCUDA

/// The CUDA backend: the kernels on one stream (device tensors in and out, work ordered on
/// `stream`, docs/ORDERING.md). Its launchers are the `CUDA*` types of this folder; the
/// single-request plans come from the plan cache (`CUDASinglePlan.swift`). See `BackendImplementation`.
struct CUDABackend: BackendImplementation {
    let stream: Stream

    var name: String { "cuda:\(stream.device.index) (\(stream.device.properties.name))" }
    var placement: Placement { .device(stream.device) }
    var multiprocessorCount: Int { stream.device.properties.multiprocessorCount }
    var runsCUDAGraphs: Bool { true }
    var decodePathHardware: DecodePathModel.Hardware? { DecodePathModel.Hardware(properties: stream.device.properties) }

    /// The tensor itself when on the stream's device; else a device copy, allocated and uploaded
    /// in the stream's order without a host wait.
    func move(_ tensor: Tensor) throws(FlashInferError) -> Tensor {
        if let d = tensor.device, d === stream.device { return tensor }
        return try FlashInferError.wrap { () throws(CUDAError) in try tensor.toDevice(stream: stream) }
    }

    func singleAttention(_ problem: SingleAttentionProblem, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput {
        try CUDAAttention.single(problem, returnLSE: returnLSE, stream: stream)
    }

    // MARK: - State merges

    func mergeState(va: Tensor, sa: Tensor, vb: Tensor, sb: Tensor, n: Int, h: Int, d: Int) throws(FlashInferError) -> (v: Tensor, s: Tensor) {
        let (v, s) = try allocateStates(n: n, h: h, d: d, dtype: va.dtype, stream: stream)
        try launchMerge(.pair, dtype: va.dtype, va: va, sa: sa, vb: vb, sb: sb, vOut: v, sOut: s, mask: nil, n: n, h: h, d: d, states: 0, stream: stream)
        return (v, s)
    }

    func mergeStateInPlace(v: Tensor, s: Tensor, vOther: Tensor, sOther: Tensor, mask: [UInt8]?, n: Int, h: Int, d: Int) throws(FlashInferError) {
        var maskBuf: DeviceBuffer?
        // Stream-ordered: the mask is freed in the stream's order after the kernel, no host wait.
        if let mask { maskBuf = try FlashInferError.wrap { () throws(CUDAError) in try stream.device.upload(mask, stream: stream) } }
        try launchMerge(.inPlace, dtype: v.dtype, va: v, sa: s, vb: vOther, sb: sOther, vOut: v, sOut: s, mask: maskBuf, n: n, h: h, d: d, states: 0, stream: stream)
    }

    func mergeStates(v: Tensor, s: Tensor, n: Int, states k: Int, h: Int, d: Int) throws(FlashInferError) -> (v: Tensor, s: Tensor) {
        let (vo, so) = try allocateStates(n: n, h: h, d: d, dtype: v.dtype, stream: stream)
        try launchMerge(.many, dtype: v.dtype, va: v, sa: s, vb: nil, sb: nil, vOut: vo, sOut: so, mask: nil, n: n, h: h, d: d, states: k, stream: stream)
        return (vo, so)
    }

    // MARK: - Paged KV cache

    func requireSupport(_ options: AttentionOptions, entry: String) throws(FlashInferError) {
        try requireCUDASupport(options, entry: entry)
    }

    // MARK: - Norms, RoPE, activations (CUDAOps.swift)

    /// Allocated in the stream's order.
    func allocate(shape: [Int], dtype: DType) throws(FlashInferError) -> Tensor {
        try FlashInferError.wrap { () throws(CUDAError) in try Tensor.empty(shape: shape, dtype: dtype, stream: stream) }
    }
    func norm(_ call: NormCall) throws(FlashInferError) { try launchNorm(call, stream: stream) }
    func gatedActivation(_ call: ActivationCall) throws(FlashInferError) { try launchActivation(call, stream: stream) }
    func rope(_ call: RopeCall) throws(FlashInferError) { try launchRope(call, stream: stream) }

    // MARK: - Block-sparse

    /// Upstream's formulation (`sparse.py`): a paged batch prefill plan, block row `i` = request `i`,
    /// its blocks = pages of `C` tokens, the in-block mask as the requests' custom masks (uploaded
    /// here with the schedule). The wrapper's previous prefill plan is reused (its buffers grow only).
    func planBlockSparse(_ w: BlockSparseAttention, pattern: BlockSparsePattern, mask: BlockSparseMask?, numQOHeads: Int,
                         numKVHeads: Int, headDim: Int, qDType: DType, kvDType: DType,
                         options: AttentionOptions) throws(FlashInferError) -> BatchPrefillAttention? {
        let p = w.prefill ?? BatchPrefillAttention(backend: w.backend)
        try p.plan(blockSparse: pattern, mask: mask, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim,
                   qDType: qDType, kvDType: kvDType, options: options)
        return p
    }

    /// Allocates the output (and LSE) in the stream's order and runs into them.
    func blockSparseAttention(_ w: BlockSparseAttention, q: Tensor, k: Tensor, v: Tensor, pattern: BlockSparsePattern,
                              numQOHeads: Int, numKVHeads: Int, headDim: Int, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput {
        let (out, lse) = try FlashInferError.wrap { () throws(CUDAError) in
            (try Tensor.empty(shape: q.shape, dtype: q.dtype, stream: stream),
             returnLSE ? try Tensor.empty(shape: [pattern.rows, numQOHeads], dtype: .f32, stream: stream) : nil)
        }
        try runBlockSparse(w, q: q, k: k, v: v, out: out, lse: lse)
        return AttentionOutput(output: out, lse: lse)
    }

    /// Launches the planned batch prefill over K/V viewed as `N / C` pages (no copy).
    func runBlockSparse(_ w: BlockSparseAttention, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?) throws(FlashInferError) {
        guard let p = w.prefill, let pattern = w.pattern else {
            throw .backendMismatch(what: "BlockSparseAttention.run", rule: "the plan was made for another backend")
        }
        try p.run(q: q, kv: .paged(try pattern.pagedKV(k: k, v: v, layout: w.options.layout)), out: out, lse: lse)
    }

    // MARK: - Paged KV cache

    func appendPagedKVCache(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache,
                            table: PageTable, kScale: Float, vScale: Float) throws(FlashInferError) {
        try appendOnDevice(appendK: appendK, appendV: appendV, indices: .host(indices, table), cache: cache,
                           kScale: kScale, vScale: vScale, stream: stream)
    }

    // MARK: - Batch decode

    /// The tensor-core path (the prefill kernel, GQA group packed into rows) when `tensorCores`,
    /// else the CUDA-core decode kernel (`CUDABatchDecode`; in CUDA-graph mode it reuses the
    /// previous plan's fixed buffers when the shape agrees).
    func planBatchDecode(_ w: BatchDecodeWithPagedKVCache, table: PageTable, numQOHeads: Int, numKVHeads: Int,
                         headDim: Int, dtype: DType, kvDType: DType, options o: AttentionOptions, numPagesInCache: Int?,
                         tensorCores: Bool) throws(FlashInferError) -> BatchDecodeExecution {
        if tensorCores {
            guard w.graphCapacity == nil else {
                throw .unsupportedCombination("useTensorCores: true with graphCapacity (CUDA-graph mode runs the CUDA-core kernel)")
            }
            let p = w.tensorCorePath ?? BatchPrefillAttention(backend: w.backend)  // reused: its buffers grow only
            try p.plan(qoIndptr: (0...table.batchSize).map(Int32.init), table: table, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                       headDim: headDim, dtype: dtype, kvDType: kvDType, options: o, numPagesInCache: numPagesInCache,
                       tableValidated: true)
            // Informational (the prefill plan is what runs): one item per request.
            let pages = (0..<table.batchSize).map(table.numPages)
            let plan = BatchDecodePlan.make(numPages: pages, pageSize: table.pageSize, numKVHeads: numKVHeads, maxGridSize: Int.max,
                                            disableSplit: true)
            return BatchDecodeExecution(plan: plan, tensorCorePath: p)
        }
        // Graph mode reuses the previous plan's buffers when the shape agrees.
        let reuse = w.graphCapacity != nil && w.shape.map { $0 == (numQOHeads, numKVHeads, headDim, dtype) } == true ? w.device?.graph : nil
        let d = try CUDABatchDecode(table: table, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, dtype: dtype,
                                    kvDType: kvDType, tuning: w.decodeKernelTuning, waveAware: w.waveAwareSplit,
                                    options: o, stream: stream, capacity: w.graphCapacity, reuse: reuse)
        return BatchDecodeExecution(plan: d.plan, device: d)
    }

    func runBatchDecode(_ w: BatchDecodeWithPagedKVCache, q: Tensor, cache: PagedKVCache, table: PageTable,
                        returnLSE: Bool, out: Tensor?, lseOut: Tensor?, rows: Int) throws(FlashInferError) -> AttentionOutput {
        let numQOHeads = w.shape!.numQOHeads
        guard w.device != nil || w.tensorCorePath != nil else { throw .backendMismatch(what: "plan", rule: "made for another backend than this run") }
        let o: Tensor
        if let out { o = out } else {
            o = try FlashInferError.wrap { () throws(CUDAError) in try Tensor.empty(shape: q.shape, dtype: q.dtype, stream: stream) }
        }
        guard o.shape == q.shape, o.dtype == q.dtype else { throw .dtype(tensor: "out", expected: "q's shape and dtype", got: o.dtype) }
        var l = lseOut
        if l == nil && returnLSE {
            l = try FlashInferError.wrap { () throws(CUDAError) in try Tensor.empty(shape: [rows, numQOHeads], dtype: .f32, stream: stream) }
        }
        if let l, l.rank != 2 || l.shape[0] != rows || l.shape[1] != numQOHeads || l.dtype != .f32 || !l.isContiguous {
            throw .shape(tensor: "lse", axis: 0, name: "[batch, heads] f32", expected: "\([rows, numQOHeads])", got: l.shape.first ?? 0)
        }
        if let tc = w.tensorCorePath {
            try tc.run(q: q, kv: .paged(cache), out: o, lse: l)
        } else if let device = w.device {
            try device.run(q: q, cache: cache, out: o, lse: l, options: w.options, stream: stream)
        }
        return AttentionOutput(output: o, lse: l)
    }

    // MARK: - Batch prefill

    /// Uploads the schedule (`BatchPrefillDevicePlan`), after checking that the lengths fit the
    /// kernel's 32-bit index arithmetic.
    func uploadBatchPrefillPlan(_ plan: BatchPrefillPlan, kvLens: [Int], kvStarts: [Int32], pageIndices: [Int32]?,
                                mask: (packed: [UInt8], indptr: [Int32])?,
                                spec: PrefillSpec, hopper: HopperBatchPrefillSpec?, numQOHeads: Int, packedRows: Int,
                                previous: BatchPrefillDevicePlan?,
                                graph: BatchPrefillDevicePlan.GraphLayout?) throws(FlashInferError) -> BatchPrefillDevicePlan? {
        guard packedRows < Int(Int32.max) - spec.tile.ctaQ, plan.chunkTokens < Int(Int32.max) / 2 else {
            throw .shape(tensor: "q", axis: 0, name: "qo_len · group_size", expected: "< 2^31", got: packedRows)
        }
        return try BatchPrefillDevicePlan(plan: plan, kvLens: kvLens, kvStarts: kvStarts, pageIndices: pageIndices, mask: mask, spec: spec,
                                          hopper: hopper, numQOHeads: numQOHeads, stream: stream, previous: previous, graph: graph)
    }

    /// Allocates the output (and LSE) in the stream's order and runs into them.
    func runBatchPrefill(_ w: BatchPrefillAttention, q: Tensor, kv: BatchKV, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput {
        guard let shape = w.shape else { throw .notPlanned(wrapper: "BatchPrefillAttention") }
        let total = Int(w.qoIndptr.last!)
        let (out, lse) = try FlashInferError.wrap { () throws(CUDAError) in
            (try Tensor.empty(shape: [total, shape.numQOHeads, shape.headDim], dtype: shape.dtype, stream: stream),
             returnLSE ? try Tensor.empty(shape: [total, shape.numQOHeads], dtype: .f32, stream: stream) : nil)
        }
        try w.run(q: q, kv: kv, out: out, lse: lse)
        return AttentionOutput(output: out, lse: lse, prefillTier: w.tier)
    }

    /// Launches the validated run (`BatchPrefillAttention.run(q:kv:out:lse:)`) over the K/V view.
    func runBatchPrefill(_ w: BatchPrefillAttention, q: Tensor, kv: BatchKV, out: Tensor, lse: Tensor?) throws(FlashInferError) {
        guard let device = w.device, let shape = w.shape else {
            throw .backendMismatch(what: "run(q:kv:out:lse:)", rule: "writes device buffers: plan with the CUDA backend")
        }
        func st(_ t: Tensor, _ axis: Int) -> Int64 { t.shape[axis] > 1 ? Int64(t.strides[axis]) : 0 }
        let view: CUDABatchPrefill.KVView
        switch kv {
        case .paged(let cache):
            // (page, slot, head) axes per layout: NHD [pages, slot, head, D], HND [pages, head, slot, D].
            let (sa, ha) = cache.layout == .nhd ? (1, 2) : (2, 1)
            view = CUDABatchPrefill.KVView(k: cache.k, v: cache.v, kStrides: (st(cache.k, sa), st(cache.k, ha)),
                                           vStrides: (st(cache.v, sa), st(cache.v, ha)),
                                           kPageStride: st(cache.k, 0), vPageStride: st(cache.v, 0), rows: cache.numPages)
        case .ragged(let k, let v):
            let (na, ha) = w.options.layout == .nhd ? (0, 1) : (1, 0)
            view = CUDABatchPrefill.KVView(k: k, v: v, kStrides: (st(k, na), st(k, ha)), vStrides: (st(v, na), st(v, ha)),
                                           rows: k.shape[na])
        }
        try CUDABatchPrefill.run(device: device, q: q, kv: view, out: out, lse: lse, options: w.options,
                                 numQOHeads: shape.numQOHeads, numKVHeads: shape.numKVHeads, stream: stream)
    }

    // MARK: - Cascade

    func cascadeScratch(levels: Int, totalQueries n: Int, numQOHeads: Int, headDim: Int,
                        dtype: DType) throws(FlashInferError) -> (levels: [(o: Tensor, lse: Tensor)], lse: Tensor?) {
        let device = stream.device
        return try FlashInferError.wrap { () throws(CUDAError) in
            var scratch: [(o: Tensor, lse: Tensor)] = []
            for _ in 0..<(levels - 1) {
                scratch.append((try Tensor.empty(shape: [n, numQOHeads, headDim], dtype: dtype, device: device),
                                try Tensor.empty(shape: [n, numQOHeads], dtype: .f32, device: device)))
            }
            return (scratch, try Tensor.empty(shape: [n, numQOHeads], dtype: .f32, device: device))
        }
    }

    /// Into `out` (or a new output): the last level first, then each lower level into its scratch
    /// buffers, merged in place.
    func runCascade(_ w: MultiLevelCascadeAttention, q: Tensor, cache: PagedKVCache, returnLSE: Bool, out: Tensor?,
                    lse: Tensor?) throws(FlashInferError) -> AttentionOutput {
        let last = w.levels[w.levels.count - 1]  // not .last: unoptimized builds allocate for it (run() paths)
        let o: Tensor
        if let out { o = out } else {
            o = try FlashInferError.wrap { () throws(CUDAError) in try Tensor.empty(shape: q.shape, dtype: q.dtype, stream: stream) }
        }
        let s = lse ?? w.lseScratch!
        try last.run(q: q, kv: .paged(cache), out: o, lse: s)
        var i = w.levels.count - 1
        while i > 0 {  // an index loop: reversed() would build an array at every run()
            i -= 1
            let level = w.levels[i]
            try level.run(q: q, kv: .paged(cache), out: w.scratch[i].o, lse: w.scratch[i].lse)
            try FlashInfer.mergeStateInPlace(v: o, s: s, vOther: w.scratch[i].o, sOther: w.scratch[i].lse, backend: w.backend)
        }
        return AttentionOutput(output: o, lse: returnLSE || lse != nil ? s : nil)
    }
}

extension DecodePathModel.Hardware {
    /// The model's view of a CUDA device: its SM count and copy ceiling (`copyTBps(name:…)`).
    public init(properties p: DeviceProperties) {
        self.init(smCount: p.multiprocessorCount,
                  copyTBps: Self.copyTBps(name: p.name, memoryClockKHz: p.memoryClockKHz, memoryBusWidthBits: p.memoryBusWidthBits))
    }
}
