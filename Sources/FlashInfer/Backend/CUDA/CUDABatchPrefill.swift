internal import CFlashInferParams
import FlashInferCUDA
import Synchronization

/// The device side of a `BatchPrefillAttention` plan, made once in `plan()`: the schedule's int32
/// arrays in one device buffer, the kernel spec, and (when the plan splits KV) the workspace of
/// partial states. `run()` then only launches.
final class BatchPrefillDevicePlan: @unchecked Sendable {
    /// One device buffer of int32 arrays; each field is an element offset into it (nil: absent).
    let arrays: DeviceBuffer
    let requestIndices: Int, qoTileIndices: Int, kvTileIndices: Int
    let qoIndptr: Int, kvLens: Int, kvStarts: Int
    let pageIndices: Int?, oIndptr: Int?, mergeIndptr: Int?
    /// Custom masks: the requests' byte offsets (in `arrays`) and the packed bits (own buffer).
    let maskIndptr: Int?
    let maskBytes: DeviceBuffer?
    /// Work items (grid x).
    let items: Int
    let spec: PrefillSpec
    /// The Hopper tier's kernel when the plan runs on it (`CUDAHopperBatchPrefill.resolve`; the plan
    /// then has 128-row q tiles and no split), nil for the FA2 tier (`spec`).
    let hopper: HopperBatchPrefillSpec?
    let pageSize: Int
    let pageDivM: UInt32, pageDivL: Int32
    /// Keys per kv chunk (the plan's chunk; covers every request when not split).
    let kvChunk: Int
    /// Split-KV workspace: partial outputs `[oIndptr[B], Hq, D]` (input dtype) and LSE `[oIndptr[B], Hq]`.
    let tmpO: DeviceBuffer?, tmpLSE: DeviceBuffer?
    let totalQO: Int
    /// The kernels `run` launches, loaded here (its shared-memory limit raised): run() makes no
    /// JIT lookup, module or attribute call, so a run captured into a CUDA graph is launches only.
    let kernel: Function
    let merge: Function?
    /// The Hopper tier's launch arguments (parameters + TMA descriptors) by the tensors they were
    /// built from: a run() over tensors seen before (a decode or prefill step's layers) encodes no
    /// descriptor and allocates nothing. Per plan object (a new plan starts empty); bounded; locked
    /// (runs of one wrapper from two threads must not corrupt it).
    let hopperArguments = Mutex<[HopperArgumentsKey: KernelArguments]>([:])

    /// Uploads `plan`'s schedule. The work items go to the GPU grouped by request as planned but
    /// with each request's q tiles in reverse (last, longest under a causal mask, first), so that
    /// the short tiles are what is left at the end of the grid.
    ///
    /// - Parameters:
    ///   - kvStarts: per request, the first ragged key row, or the first entry of `pageIndices`.
    ///   - pageIndices: the page table's page ids (paged), nil for ragged K/V.
    ///   - previous: the wrapper's previous device plan: its buffers are reused when large enough
    ///     (the upload is then ordered on `stream` after the runs already enqueued there).
    ///   - graph: CUDA-graph mode: every array at a fixed offset sized by the capacity, the grid
    ///     padded to `maxItems` (padded items name request 0 with a q tile past any request's rows,
    ///     so they exit at once), no split, the kv chunk a constant: the kernel's arguments are then
    ///     the same for every plan and a captured launch replays after a new plan.
    init(plan: BatchPrefillPlan, kvLens: [Int], kvStarts: [Int32], pageIndices: [Int32]?,
         mask: (packed: [UInt8], indptr: [Int32])? = nil, spec: PrefillSpec, hopper: HopperBatchPrefillSpec? = nil,
         numQOHeads: Int, stream: Stream, previous: BatchPrefillDevicePlan? = nil, graph: GraphLayout? = nil) throws(FlashInferError) {
        precondition(hopper == nil || (!plan.splitKV && plan.ctaTileQ == HopperBatchPrefillSpec.ctaQ && graph == nil),
                     "the Hopper tier runs unsplit plans of 128-row q tiles, outside CUDA-graph mode")
        var order = Self.reversedTileOrder(plan)
        if let graph {
            guard !plan.splitKV, plan.workItems <= graph.maxItems, kvLens.count <= graph.capacity.maxBatch else {
                throw .capacityExceeded(what: "work items", value: "\(plan.workItems)", capacity: "\(graph.maxItems) work items")
            }
            order += Array(repeating: -1, count: graph.maxItems - plan.workItems)
        }
        func padded(_ xs: [Int32], to n: Int?, with fill: Int32) -> [Int32] {
            guard let n else { return xs }
            return xs + Array(repeating: fill, count: max(0, n - xs.count))
        }
        let padTile = Int32.max / Int32(spec.tile.ctaQ)  // r0 = padTile·ctaQ ≥ every request's packed rows
        var all: [Int32] = []
        func add(_ xs: [Int32]) -> Int {
            while all.count % 64 != 0 { all.append(0) }  // 256-byte aligned arrays
            let at = all.count
            all += xs
            return at
        }
        requestIndices = add(order.map { $0 < 0 ? 0 : plan.requestIndices[$0] })
        qoTileIndices = add(order.map { $0 < 0 ? padTile : plan.qoTileIndices[$0] })
        kvTileIndices = add(order.map { $0 < 0 ? 0 : plan.kvTileIndices[$0] })
        let cap = graph?.capacity
        qoIndptr = add(padded(plan.qoIndptr, to: cap.map { $0.maxBatch + 1 }, with: plan.qoIndptr.last ?? 0))
        self.kvLens = add(padded(kvLens.map { Int32($0) }, to: cap?.maxBatch, with: 0))
        self.kvStarts = add(padded(kvStarts, to: cap?.maxBatch, with: 0))
        self.pageIndices = pageIndices.map { add(padded($0, to: cap?.maxPages, with: 0)) }
        oIndptr = plan.splitKV ? add(Array(plan.oIndptr.dropLast())) : nil
        mergeIndptr = plan.splitKV ? add(plan.mergeIndptr) : nil
        maskIndptr = mask.map { add($0.indptr) }
        items = graph?.maxItems ?? plan.workItems
        self.spec = spec
        self.hopper = hopper
        pageSize = plan.pageSize
        (pageDivM, pageDivL) = fastDivisor(plan.pageSize)
        // Graph mode never splits: one chunk covers any request, and the argument stays constant.
        kvChunk = graph != nil ? 1 << 30 : max(plan.chunkTokens, 1)
        totalQO = cap?.maxQORows ?? Int(plan.qoIndptr.last ?? 0)
        let partialRows = Int(plan.oIndptr.last ?? 0)
        let d = spec.headDim
        let device = stream.device
        (kernel, merge) = try FlashInferError.wrap { () throws(CUDAError) -> (Function, Function?) in
            let jit = try JIT.shared(for: device)
            if let hopper {
                let k = try jit.kernel(hopper).function
                try k.setMaxDynamicSharedMemory(hopper.sharedBytes)
                return (k, nil)
            }
            let k = try jit.kernel(spec).function
            try k.setMaxDynamicSharedMemory(spec.sharedBytes)
            return (k, plan.splitKV ? try jit.kernel(MergeSpec(kind: .varlen, dtype: spec.dtype)).function : nil)
        }
        maskBytes = try FlashInferError.wrap { () throws(CUDAError) -> DeviceBuffer? in
            guard let bytes = mask?.packed else { return nil }
            let buf = try device.allocate(byteCount: max(bytes.count, 1))
            if !bytes.isEmpty { try buf.copyFromHost(bytes, stream: stream) }  // ordered before the runs on `stream`
            return buf
        }
        (arrays, tmpO, tmpLSE) = try FlashInferError.wrap { () throws(CUDAError) in
            // Grow-only reuse: plan() allocates only when the schedule or workspace outgrows the last one.
            func buffer(_ bytes: Int, _ old: DeviceBuffer?) throws(CUDAError) -> DeviceBuffer {
                if let old, old.byteCount >= bytes { return old }
                return try device.allocate(byteCount: bytes)
            }
            let values = all.isEmpty ? [Int32(0)] : all
            let buf = try buffer(values.count * 4, previous?.arrays)
            try buf.copyFromHost(values, stream: stream)  // ordered after a previous run's reads
            guard plan.splitKV else { return (buf, previous?.tmpO, previous?.tmpLSE) }
            return (buf, try buffer(max(partialRows * numQOHeads * d * spec.dtype.byteSize, 16), previous?.tmpO),
                    try buffer(max(partialRows * numQOHeads * 4, 16), previous?.tmpLSE))
        }
    }

    /// The plan's work items grouped by request (as planned) with each request's q tiles in
    /// reverse order, kv chunks in order within a tile. The planner emits items by request, then
    /// q tile, then kv chunk, so this reverses the runs of equal q tile within each request: O(n).
    static func reversedTileOrder(_ plan: BatchPrefillPlan) -> [Int] {
        let n = plan.workItems
        var order: [Int] = []
        order.reserveCapacity(n)
        var start = 0
        while start < n {
            var end = start
            while end < n && plan.requestIndices[end] == plan.requestIndices[start] { end += 1 }
            // Runs of one q tile within [start, end), emitted last run first.
            var runEnd = end
            while runEnd > start {
                var runStart = runEnd - 1
                while runStart > start && plan.qoTileIndices[runStart - 1] == plan.qoTileIndices[runEnd - 1] { runStart -= 1 }
                order.append(contentsOf: runStart..<runEnd)
                runEnd = runStart
            }
            start = end
        }
        return order
    }

    /// CUDA-graph mode sizes: the capacity and the padded grid's work items.
    struct GraphLayout {
        var capacity: GraphCapacity
        var maxItems: Int
    }

    /// Whether this plan splits KV (writes partial states and merges them). `tmpO` / `tmpLSE` may be
    /// set without a split: kept from an earlier plan for reuse.
    var splits: Bool { oIndptr != nil }

    func address(_ offset: Int?) -> CUdeviceptr {
        offset.map { arrays.address + CUdeviceptr($0 * 4) } ?? 0
    }
}

/// `j / d` as `(umulhi(j, m) + j) >> l` for `0 ≤ j < 2^31` (Granlund–Montgomery, round-up
/// variant): `l = ⌈log2 d⌉`, `m = ⌊2^32·(2^l − d)/d⌋ + 1`. E.g. d = 16: l = 4, m = 1 (a shift);
/// d = 3: l = 2, m = 1431655766, so j = 5 → (1 + 5) >> 2 = 1.
func fastDivisor(_ d: Int) -> (m: UInt32, l: Int32) {
    precondition(d >= 1 && d < 1 << 31)
    var l = 0
    while (1 << l) < d { l += 1 }
    let m = (UInt64(1) << 32) * UInt64((1 << l) - d) / UInt64(d) + 1
    return (UInt32(m), Int32(l))
}

/// Launches the batch prefill kernel (grid: work items × kv heads) and, for a split plan, the
/// variable-length merge of the partial states into `out` / `lse`.
enum CUDABatchPrefill {
    /// K/V as the kernel reads them: ragged rows (strides of token and head), or a paged cache
    /// (strides of page, slot and head).
    struct KVView {
        var k: Tensor
        var v: Tensor
        /// (token or slot, head) strides in elements of K and of V.
        var kStrides: (Int64, Int64)
        var vStrides: (Int64, Int64)
        /// Page strides (paged only; 0 for ragged).
        var kPageStride: Int64 = 0
        var vPageStride: Int64 = 0
        /// Pages of the cache (paged) or rows of K/V (ragged): the Hopper tier's tensor-map extent.
        var rows: Int = 0
    }

    static func run(device dp: BatchPrefillDevicePlan, q: Tensor, kv: KVView, out: Tensor, lse: Tensor?,
                    options: AttentionOptions, numQOHeads: Int, numKVHeads: Int, stream: Stream) throws(FlashInferError) {
        guard dp.items > 0, dp.totalQO > 0 else { return }
        func st(_ t: Tensor, _ axis: Int) -> Int64 { t.shape[axis] > 1 ? Int64(t.strides[axis]) : 0 }
        let qs = (st(q, 0), st(q, 1)), os = (st(out, 0), st(out, 1))
        // cp.async and the output stores move 16-byte chunks: every row must start 16-byte aligned.
        // (One call per tensor, no arrays: this runs at every run().)
        func check(_ name: String, _ t: Tensor, _ s0: Int64, _ s1: Int64, _ s2: Int64 = 0) throws(FlashInferError) {
            guard t.count > 0 else { return }
            let es = Int64(t.dtype.byteSize)
            guard (s0 * es) % 16 == 0, (s1 * es) % 16 == 0, (s2 * es) % 16 == 0 else {
                throw .strides(tensor: name, strides: t.strides, rule: "page, token and head strides must be multiples of 16 bytes (8 elements of 16 bits, 16 of FP8)")
            }
            guard let addr = t.deviceAddress, addr % 16 == 0 else {
                throw .strides(tensor: name, strides: t.strides, rule: "the first element must be 16-byte aligned")
            }
        }
        try check("q", q, qs.0, qs.1)
        try check("k", kv.k, kv.kStrides.0, kv.kStrides.1, kv.kPageStride)
        try check("v", kv.v, kv.vStrides.0, kv.vStrides.1, kv.vPageStride)
        try check("out", out, os.0, os.1)
        let spec = dp.spec
        let d = spec.headDim
        try FlashInferError.wrap { () throws(CUDAError) in
            try stream.order(read: q.buffer, kv.k.buffer, kv.v.buffer, dp.arrays, dp.maskBytes,
                             write: out.buffer, lse?.buffer, dp.tmpO, dp.tmpLSE)
            var p = FIBatchPrefillParams(
                base: prefillParams(q: q, k: kv.k, v: kv.v, out: out, lse: lse, strides: (qs, kv.kStrides, kv.vStrides, os),
                                    options: options, headDim: d, qoLen: 0, kvLen: 0, numQOHeads: numQOHeads,
                                    numKVHeads: numKVHeads),
                request_indices: dp.address(dp.requestIndices), qo_tile_indices: dp.address(dp.qoTileIndices),
                kv_tile_indices: dp.address(dp.kvTileIndices), qo_indptr: dp.address(dp.qoIndptr),
                kv_lens: dp.address(dp.kvLens), kv_starts: dp.address(dp.kvStarts),
                o_indptr: dp.address(dp.oIndptr),
                // The partial-state workspace only when this plan splits: a plan that does not keeps the
                // previous plan's workspace for reuse, and the kernel takes a non-null tmp_o as "split"
                // (found by `check` "bsr re-plan": a split plan, then an unsplit one, read o_indptr = null).
                tmp_o: dp.splits ? dp.tmpO?.address ?? 0 : 0, tmp_lse: dp.splits ? dp.tmpLSE?.address ?? 0 : 0,
                pages: FIPageTable(page_indices: dp.address(dp.pageIndices), k_stride_page: kv.kPageStride,
                                   v_stride_page: kv.vPageStride, page_size: Int32(dp.pageSize), page_div_m: dp.pageDivM,
                                   page_div_l: dp.pageDivL, pad: 0),
                mask_indptr: dp.address(dp.maskIndptr), kv_chunk: Int32(dp.kvChunk), pad: 0)
            p.base.variant.custom_mask = dp.maskBytes?.address ?? 0
            if let hopper = dp.hopper {
                // The Hopper tier: tensor maps of this run's tensors after the parameters; no split, no merge.
                // Everything in `p` and the maps comes from the plan (fixed for `dp`) and the key's fields.
                let key = HopperArgumentsKey(q: q, kv: kv, out: out, lse: lse)
                let args: KernelArguments
                if let cached = dp.hopperArguments.withLock({ $0[key] }) {
                    args = cached
                } else {
                    let maps = try CUDAHopperBatchPrefill.tensorMaps(spec: hopper, q: q, kv: kv, numKVHeads: numKVHeads,
                                                                     groupSize: numQOHeads / numKVHeads, driver: stream.device.driver)
                    var built = KernelArguments(bytesOf: p)
                    for m in maps { built.append(tensorMap: m) }
                    dp.hopperArguments.withLock { table in
                        if table.count >= 256 { table.removeAll(keepingCapacity: true) }
                        table[key] = built
                    }
                    args = built
                }
                try dp.kernel.launch(grid: (dp.items, numKVHeads, 1), block: (HopperBatchPrefillSpec.threads, 1, 1),
                                     sharedBytes: hopper.sharedBytes, stream: stream, arguments: args)
                return
            }
            try dp.kernel.launch(grid: (dp.items, numKVHeads, 1), block: (spec.tile.threads, 1, 1),
                                       sharedBytes: spec.sharedBytes, stream: stream, parameter: p)
            guard dp.splits, let tmpO = dp.tmpO, let tmpLSE = dp.tmpLSE, let merge = dp.merge else { return }
            // Split: merge each query's partial states (rows mergeIndptr[t] ..< mergeIndptr[t+1]).
            let m = FIMergeVarlenParams(
                v: tmpO.address, s: tmpLSE.address, indptr: dp.address(dp.mergeIndptr), v_out: out.deviceAddress ?? 0,
                s_out: lse?.deviceAddress ?? 0, n: Int64(dp.totalQO), num_heads: Int32(numQOHeads), head_dim: Int32(d))
            let total = dp.totalQO * numQOHeads * d / 8
            let blocks = max(1, min((total + 255) / 256, stream.device.properties.multiprocessorCount * 16))
            try merge.launch(grid: (blocks, 1, 1), block: (256, 1, 1), stream: stream, parameter: m)
        }
    }
}

/// The batch prefill entries of `kernelCatalog()`: ragged and paged, both q tiles (128 and 64 rows),
/// f16 and bf16, each variant hook at least once.
func batchPrefillCatalog() -> [(name: String, spec: any KernelSpec)] {
    func spec(_ dtype: DType, _ d: Int, _ kv: PrefillSpec.KVSource, ctaQ: Int = 128, posEnc: PrefillSpec.PosEnc = .none,
              softCap: Bool = false, causal: Bool = false, window: Bool = false, kvDType: DType? = nil,
              customMask: Bool = false) -> PrefillSpec {
        var s = PrefillSpec(dtype: dtype, headDim: d, posEnc: posEnc, softCap: softCap, causal: causal, window: window, kvSource: kv,
                            kvDType: kvDType, customMask: customMask)
        s.tile = .batch(headDim: d, plain: s.plain, ctaQ: ctaQ)
        return s
    }
    var specs: [PrefillSpec] = []
    for kv in [PrefillSpec.KVSource.ragged, .paged] {
        for dtype in [DType.f16, .bf16] {
            for d in supportedHeadDims { specs.append(spec(dtype, d, kv, causal: true)) }
        }
        specs += [
            spec(.f16, 128, kv, ctaQ: 64),
            // The 16-row tile (tensor-core decode: 4 warps over the keys), plain and with hooks.
            spec(.f16, 128, kv, ctaQ: 16),
            spec(.bf16, 128, kv, ctaQ: 16, causal: true),
            spec(.f16, 128, kv, ctaQ: 16, posEnc: .alibi, softCap: true, window: true),
            spec(.bf16, 128, kv, ctaQ: 16, customMask: true),
            spec(.f16, 128, kv, ctaQ: 64, posEnc: .rope, causal: true),
            spec(.bf16, 128, kv, posEnc: .rope, causal: true),
            spec(.f16, 64, kv, ctaQ: 64, posEnc: .alibi, softCap: true, window: true),
            // Custom masks (block-sparse attention runs the paged one).
            spec(.f16, 128, kv, customMask: true),
            spec(.bf16, 128, kv, ctaQ: 64, softCap: true, customMask: true),
            // FP8 K/V: the tensor-core decode tile (64 rows) and the prefill tile, both formats.
            spec(.f16, 128, kv, ctaQ: 64, kvDType: .e4m3),
            spec(.bf16, 128, kv, ctaQ: 64, kvDType: .e5m2),
            spec(.f16, 128, kv, causal: true, kvDType: .e4m3),
            spec(.bf16, 64, kv, posEnc: .rope, causal: true, kvDType: .e4m3),
            spec(.f16, 256, kv, ctaQ: 64, window: true, kvDType: .e5m2),
            spec(.f16, 128, kv, ctaQ: 64, kvDType: .e4m3, customMask: true),
        ]
    }
    // Both 16-row forms of each 16-row entry (`.batch` gives the one FLASHINFER_PREFILL_TILE16 selects:
    // the single-buffered one unless it is 1).
    let forms = [PrefillTile(mmaQ: 1, ctaKV: 128, kvSub: 32, kvWarps: 4), PrefillTile(mmaQ: 1, ctaKV: 64, kvSub: 16, kvWarps: 4)]
    for var s in specs where s.tile.ctaQ == 16 {
        s.tile = s.tile == forms[0] ? forms[1] : forms[0]
        specs.append(s)
    }
    return specs.map { ("batch prefill \($0.name)", $0) }
}

/// What a Hopper batch-prefill launch's arguments depend on beyond the plan: every address,
/// extent and stride of q, K, V, out and the LSE that the parameters or the TMA descriptors take
/// (fixed-size fields: building and hashing a key allocates nothing).
struct HopperArgumentsKey: Hashable {
    let q: UInt64, qRows: Int, qStrides: (Int, Int)
    let k: UInt64, v: UInt64, kStrides: (Int64, Int64), vStrides: (Int64, Int64), kPage: Int64, vPage: Int64, kvRows: Int
    let out: UInt64, outStrides: (Int, Int), lse: UInt64

    init(q: Tensor, kv: CUDABatchPrefill.KVView, out: Tensor, lse: Tensor?) {
        self.q = q.deviceAddress ?? 0
        qRows = q.shape[0]
        qStrides = (q.strides[0], q.strides[1])
        k = kv.k.deviceAddress ?? 0
        v = kv.v.deviceAddress ?? 0
        (kStrides, vStrides, kPage, vPage, kvRows) = (kv.kStrides, kv.vStrides, kv.kPageStride, kv.vPageStride, kv.rows)
        self.out = out.deviceAddress ?? 0
        outStrides = (out.strides[0], out.strides[1])
        self.lse = lse?.deviceAddress ?? 0
    }

    static func == (a: Self, b: Self) -> Bool {
        a.q == b.q && a.qRows == b.qRows && a.qStrides == b.qStrides && a.k == b.k && a.v == b.v && a.kStrides == b.kStrides
            && a.vStrides == b.vStrides && a.kPage == b.kPage && a.vPage == b.vPage && a.kvRows == b.kvRows && a.out == b.out
            && a.outStrides == b.outStrides && a.lse == b.lse
    }

    func hash(into h: inout Hasher) {
        h.combine(q); h.combine(qRows); h.combine(qStrides.0); h.combine(qStrides.1)
        h.combine(k); h.combine(v); h.combine(kStrides.0); h.combine(kStrides.1); h.combine(vStrides.0); h.combine(vStrides.1)
        h.combine(kPage); h.combine(vPage); h.combine(kvRows)
        h.combine(out); h.combine(outStrides.0); h.combine(outStrides.1); h.combine(lse)
    }
}

