import FlashInferCUDA

/// The CPU backend: the Float64 reference (`ReferenceAttention`, `AttentionState`) on host tensors.
/// Every result is a new host tensor; the wrappers' plans are the GPU's schedules, made for an
/// H100's SM count, so that the tests can compare them. See `BackendImplementation`.
struct CPUBackend: BackendImplementation {
    var name: String { "cpu" }
    var placement: Placement { .host }
    var multiprocessorCount: Int { DeviceProperties.h100.multiprocessorCount }
    var runsCUDAGraphs: Bool { false }
    var decodePathHardware: DecodePathModel.Hardware? { nil }

    /// The tensor itself when on the host; a device tensor is copied back after its last write.
    func move(_ tensor: Tensor) throws(FlashInferError) -> Tensor {
        if !tensor.isOnDevice { return tensor }
        let bytes = try FlashInferError.wrap { () throws(CUDAError) in try tensor.contiguousBytesChecked() }
        return Tensor(storage: .host(HostBuffer(bytes: bytes)), shape: tensor.shape, dtype: tensor.dtype)
    }

    func singleAttention(_ problem: SingleAttentionProblem, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput {
        let (q, shape, decode, options) = (problem.q, problem.shape, problem.decode, problem.options)
        let r = try reference {
            try ReferenceAttention.prefill(
                q: try q.toFloats(), k: try problem.k.toFloats(), v: try problem.v.toFloats(), qoLen: shape.qoLen, kvLen: shape.kvLen,
                numQOHeads: shape.numQOHeads, numKVHeads: shape.numKVHeads, headDim: shape.headDim,
                options: decode ? withoutCausal(options) : options, customMask: problem.customMask)
        }
        let out = Tensor.host(r.output, shape: q.shape, dtype: q.dtype)
        return AttentionOutput(output: out, lse: returnLSE ? Tensor.host(r.lse, shape: problem.lseShape, dtype: .f32) : nil)
    }

    // MARK: - State merges

    func mergeState(va: Tensor, sa: Tensor, vb: Tensor, sb: Tensor, n: Int, h: Int, d: Int) throws(FlashInferError) -> (v: Tensor, s: Tensor) {
        let a = try hostStates(va, sa), b = try hostStates(vb, sb)
        let merged = zip(a, b).map { AttentionState.merge($0, $1) }
        return packStates(merged, shape: [n, h, d], dtype: va.dtype)
    }

    func mergeStateInPlace(v: Tensor, s: Tensor, vOther: Tensor, sOther: Tensor, mask: [UInt8]?, n: Int, h: Int, d: Int) throws(FlashInferError) {
        let a = try hostStates(v, s), b = try hostStates(vOther, sOther)
        var merged = a
        for i in 0..<merged.count where mask.map({ $0[i / h] != 0 }) ?? true { merged[i] = AttentionState.merge(a[i], b[i]) }
        let (mv, ms) = packStates(merged, shape: [n, h, d], dtype: v.dtype)
        try overwriteHost(v, with: mv)
        try overwriteHost(s, with: ms)
    }

    func mergeStates(v: Tensor, s: Tensor, n: Int, states k: Int, h: Int, d: Int) throws(FlashInferError) -> (v: Tensor, s: Tensor) {
        let all = try hostStates(v.reshaped([n * k, h, d]), s.reshaped([n * k, h]))
        var merged: [AttentionState] = []
        for p in 0..<n {
            for head in 0..<h {
                merged.append(AttentionState.merge((0..<k).map { all[(p * k + $0) * h + head] }, headDim: d))
            }
        }
        return packStates(merged, shape: [n, h, d], dtype: v.dtype)
    }

    // MARK: - Options and block-sparse

    func requireSupport(_ options: AttentionOptions, entry: String) throws(FlashInferError) {}

    // MARK: - Norms, RoPE, activations (the Float64 references of Ops/)

    func allocate(shape: [Int], dtype: DType) throws(FlashInferError) -> Tensor {
        Tensor.host([Float](repeating: 0, count: shape.reduce(1, *)), shape: shape, dtype: dtype)
    }
    func norm(_ call: NormCall) throws(FlashInferError) { try normOnHost(call) }
    func gatedActivation(_ call: ActivationCall) throws(FlashInferError) { try activationOnHost(call) }
    func rope(_ call: RopeCall) throws(FlashInferError) { try ropeOnHost(call) }

    func planBlockSparse(_ w: BlockSparseAttention, pattern: BlockSparsePattern, mask: BlockSparseMask?, numQOHeads: Int,
                         numKVHeads: Int, headDim: Int, qDType: DType, kvDType: DType,
                         options: AttentionOptions) throws(FlashInferError) -> BatchPrefillAttention? {
        nil
    }

    /// The Float64 reference over the dense expansion of the pattern (`ReferenceAttention.blockSparse`).
    func blockSparseAttention(_ w: BlockSparseAttention, q: Tensor, k: Tensor, v: Tensor, pattern: BlockSparsePattern,
                              numQOHeads: Int, numKVHeads: Int, headDim: Int, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput {
        let (mask, options) = (w.mask, w.options)
        let r = try reference {
            try ReferenceAttention.blockSparse(q: try q.toFloats(), k: try k.toFloats(), v: try v.toFloats(), pattern: pattern,
                                               mask: mask, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                                               headDim: headDim, options: options)
        }
        return AttentionOutput(output: Tensor.host(r.output, shape: q.shape, dtype: q.dtype),
                               lse: returnLSE ? Tensor.host(r.lse, shape: [pattern.rows, numQOHeads], dtype: .f32) : nil)
    }

    func runBlockSparse(_ w: BlockSparseAttention, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?) throws(FlashInferError) {
        throw .backendMismatch(what: "run(q:k:v:out:lse:)", rule: "writes device buffers: plan with the CUDA backend")
    }

    // MARK: - Paged KV cache

    func appendPagedKVCache(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache,
                            table: PageTable, kScale: Float, vScale: Float) throws(FlashInferError) {
        appendOnHost(appendK: appendK, appendV: appendV, indices: indices, cache: cache, table: table, kScale: kScale, vScale: vScale)
    }

    // MARK: - Batch decode

    func planBatchDecode(_ w: BatchDecodeWithPagedKVCache, table: PageTable, numQOHeads: Int, numKVHeads: Int,
                         headDim: Int, dtype: DType, kvDType: DType, options: AttentionOptions, numPagesInCache: Int?,
                         tensorCores: Bool) throws(FlashInferError) -> BatchDecodeExecution {
        let pages = (0..<table.batchSize).map(table.numPages)
        return BatchDecodeExecution(plan: BatchDecodePlan.make(numPages: pages, pageSize: table.pageSize, numKVHeads: numKVHeads,
                                                               maxGridSize: 2 * multiprocessorCount))
    }

    /// The reference per request (`out` and `lseOut` are for the CUDA backend and are not written).
    func runBatchDecode(_ w: BatchDecodeWithPagedKVCache, q: Tensor, cache: PagedKVCache, table: PageTable,
                        returnLSE: Bool, out: Tensor?, lseOut: Tensor?, rows: Int) throws(FlashInferError) -> AttentionOutput {
        let (hq, hkv, d) = (w.shape!.numQOHeads, w.shape!.numKVHeads, w.shape!.headDim)
        let qAll = try FlashInferError.wrap { () throws(CUDAError) in try q.toFloats() }
        let kAll = try FlashInferError.wrap { () throws(CUDAError) in try cache.k.toFloats() }
        let vAll = try FlashInferError.wrap { () throws(CUDAError) in try cache.v.toFloats() }
        var out = [Float](), lse = [Float]()
        for b in 0..<table.batchSize {
            let (k, v) = cache.gather(request: b, table: table, kAll: kAll, vAll: vAll)
            var o = w.options
            o.layout = .nhd
            let r: ReferenceAttention.Result
            do {
                r = try ReferenceAttention.decode(q: Array(qAll[(b * hq * d)..<((b + 1) * hq * d)]), k: k, v: v, kvLen: table.seqLen(b),
                                                  numQOHeads: hq, numKVHeads: hkv, headDim: d, options: o,
                                                  rotatedRounding: w.referenceRotatedRounding)
            } catch { throw .reference("\(error)") }
            out += r.output
            lse += r.lse
        }
        return AttentionOutput(output: Tensor.host(out, shape: q.shape, dtype: q.dtype),
                               lse: returnLSE ? Tensor.host(lse, shape: [table.batchSize, hq], dtype: .f32) : nil)
    }

    // MARK: - Batch prefill

    func uploadBatchPrefillPlan(_ plan: BatchPrefillPlan, kvLens: [Int], kvStarts: [Int32], pageIndices: [Int32]?,
                                mask: (packed: [UInt8], indptr: [Int32])?,
                                spec: PrefillSpec, hopper: HopperBatchPrefillSpec?, numQOHeads: Int, packedRows: Int,
                                previous: BatchPrefillDevicePlan?,
                                graph: BatchPrefillDevicePlan.GraphLayout?) throws(FlashInferError) -> BatchPrefillDevicePlan? {
        nil
    }

    /// The reference per request, on K/V gathered from the pages or the ragged rows.
    func runBatchPrefill(_ w: BatchPrefillAttention, q: Tensor, kv: BatchKV, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput {
        guard let shape = w.shape else { throw .notPlanned(wrapper: "BatchPrefillAttention") }
        let (qoIndptr, kvLens, options) = (w.qoIndptr, w.kvLens, w.options)
        let total = Int(qoIndptr.last!)
        try w.validateInputs(q: q, kv: kv, shape: shape, total: total, placement: placement)
        let gather: (Int) throws(FlashInferError) -> (k: [Float], v: [Float])
        switch kv {
        case .paged(let cache):
            let table = w.table!  // validateInputs: a plan over pages
            let kAll = try FlashInferError.wrap { () throws(CUDAError) in try cache.k.toFloats() }
            let vAll = try FlashInferError.wrap { () throws(CUDAError) in try cache.v.toFloats() }
            gather = { b throws(FlashInferError) in cache.gather(request: b, table: table, kAll: kAll, vAll: vAll) }
        case .ragged(let k, let v):
            let kvIndptr = w.kvIndptr!  // validateInputs: a plan over ragged K/V
            let nkv = Int(kvIndptr.last!)
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
            // The request's packed mask segment (little-endian bits, as the kernel reads it).
            let mask = w.mask.map { CustomMask.packed(Array($0.packed[Int($0.indptr[b])..<Int($0.indptr[b + 1])])) }
            do {
                let r = try ReferenceAttention.prefill(q: Array(qAll[(lo * hq * d)..<((lo + qo) * hq * d)]), k: k, v: v, qoLen: qo, kvLen: kvLens[b],
                                                       numQOHeads: hq, numKVHeads: hkv, headDim: d, options: o,
                                                       rotatedRounding: w.referenceRotatedRounding, customMask: mask)
                out += r.output
                lse += r.lse
            } catch { throw .reference("\(error)") }
        }
        return AttentionOutput(output: Tensor.host(out, shape: q.shape, dtype: q.dtype),
                               lse: returnLSE ? Tensor.host(lse, shape: [total, hq], dtype: .f32) : nil)
    }

    func runBatchPrefill(_ w: BatchPrefillAttention, q: Tensor, kv: BatchKV, out: Tensor, lse: Tensor?) throws(FlashInferError) {
        throw .backendMismatch(what: "run(q:kv:out:lse:)", rule: "writes device buffers: plan with the CUDA backend")
    }

    // MARK: - Cascade

    func cascadeScratch(levels: Int, totalQueries: Int, numQOHeads: Int, headDim: Int,
                        dtype: DType) throws(FlashInferError) -> (levels: [(o: Tensor, lse: Tensor)], lse: Tensor?) {
        ([], nil)
    }

    /// Each level returns new tensors; the lower levels are merged into the last one's.
    func runCascade(_ w: MultiLevelCascadeAttention, q: Tensor, cache: PagedKVCache, returnLSE: Bool, out: Tensor?,
                    lse: Tensor?) throws(FlashInferError) -> AttentionOutput {
        let last = w.levels.last!
        let top = try last.run(q: q, kv: .paged(cache), returnLSE: true)
        guard let s = top.lse else { preconditionFailure("level returned no LSE") }
        for level in w.levels.dropLast().reversed() {
            let r = try level.run(q: q, kv: .paged(cache), returnLSE: true)
            try FlashInfer.mergeStateInPlace(v: top.output, s: s, vOther: r.output, sOther: r.lse!, backend: w.backend)
        }
        return AttentionOutput(output: top.output, lse: returnLSE ? s : nil)
    }
}

private func withoutCausal(_ o: AttentionOptions) -> AttentionOptions {
    var o = o
    o.causal = false
    return o
}

private func hostStates(_ v: Tensor, _ s: Tensor) throws(FlashInferError) -> [AttentionState] {
    let d = v.shape.last!
    let vf = try FlashInferError.wrap { () throws(CUDAError) in try v.toFloats() }
    let sf = try FlashInferError.wrap { () throws(CUDAError) in try s.toFloats() }
    return (0..<sf.count).map { i in AttentionState(output: vf[(i * d)..<((i + 1) * d)].map(Double.init), lse: Double(sf[i])) }
}

private func packStates(_ states: [AttentionState], shape: [Int], dtype: DType) -> (v: Tensor, s: Tensor) {
    (Tensor.host(states.flatMap { $0.output.map(Float.init) }, shape: shape, dtype: dtype),
     Tensor.host(states.map { Float($0.lse) }, shape: Array(shape.dropLast()), dtype: .f32))
}

private func overwriteHost(_ dst: Tensor, with src: Tensor) throws(FlashInferError) {
    let bytes = src.contiguousBytes()
    dst.withHostBytes { b in
        let start = dst.offset * dst.dtype.byteSize
        for i in 0..<bytes.count { b[start + i] = bytes[i] }
    }
}

/// The append on host tensors: each token's rows copied byte for byte into its slot, or, when the
/// cache is FP8 and the appended K/V are not, quantized there (`fp8Code`, the code of `x / scale`
/// that `quantize(_:to:scale:)` gives; `scale` is `kScale` for K, `vScale` for V).
private func appendOnHost(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache, table: PageTable,
                          kScale: Float, vScale: Float) {
    let es = cache.dtype.byteSize, d = cache.headDim
    for (src, dst, scale) in [(appendK, cache.k, kScale), (appendV, cache.v, vScale)] {
        // [nnz, H, D] packed, in the cache's dtype.
        let srcBytes = src.dtype == dst.dtype
            ? src.contiguousBytes()
            : src.dtype.decode(src.contiguousBytes()).map { fp8Code($0, dtype: dst.dtype, scale: scale) }
        let s = cache.strides(of: dst)
        dst.withHostBytes { bytes in
            for t in 0..<indices.batchIndices.count {
                let (page, slot) = table.location(request: Int(indices.batchIndices[t]), position: Int(indices.positions[t]))
                for h in 0..<cache.numKVHeads {
                    let to = (dst.offset + page * s.page + slot * s.token + h * s.head) * es
                    let from = ((t * cache.numKVHeads + h) * d) * es
                    for i in 0..<(d * es) { bytes[to + i] = srcBytes[from + i] }
                }
            }
        }
    }
}

/// Runs a reference computation, its errors as `FlashInferError`s (a reference error by its
/// description, a CUDA error from reading a device tensor back as itself).
private func reference<T>(_ body: () throws -> T) throws(FlashInferError) -> T {
    do {
        return try body()
    } catch let e as FlashInferError {
        throw e
    } catch let e as ReferenceError {
        throw .reference(e.description)
    } catch let e as CUDAError {
        throw .cuda(e)
    } catch {
        throw .reference("\(error)")
    }
}
