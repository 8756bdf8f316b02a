internal import CFlashInferParams
import FlashInferCUDA

/// The device side of a planned batch decode: the paged decode kernel (`decode.cuh` with
/// `PAGED`), the plan's arrays on the device, and the split-KV workspace — all made in `plan()`,
/// so `run()` only packs arguments and launches (no allocation but the output, no host sync).
final class CUDABatchDecode: @unchecked Sendable {
    /// Fixed-capacity device buffers for CUDA-graph mode, kept across plans so that a captured
    /// run replays correctly after a new plan (same addresses, new contents).
    final class GraphBuffers: @unchecked Sendable {
        let capacity: GraphCapacity
        let maxItems: Int
        let arrays: DeviceBuffer
        let workspace: DeviceBuffer
        init(capacity: GraphCapacity, maxItems: Int, numQOHeads: Int, headDim: Int, device: Device) throws(CUDAError) {
            self.capacity = capacity
            self.maxItems = maxItems
            let ints = 2 * maxItems + (capacity.maxBatch + 1) + capacity.maxPages + capacity.maxBatch + (capacity.maxBatch + 1) + 1
            arrays = try device.allocate(byteCount: ints * 4)
            workspace = try device.allocate(byteCount: maxItems * numQOHeads * (headDim + 1) * 4)
        }
    }

    let spec: DecodeSpec
    let mergeSpec: DecodeMergeSpec
    let plan: BatchDecodePlan
    /// Resident CTAs per SM of the decode kernel (the driver's occupancy), which sized the plan's grid.
    let ctasPerSM: Int
    let headGroups: Int
    let decode: Function
    let merge: Function?
    /// request_indices | chunk_indices | kv_indptr | kv_indices | kv_last_page_len | o_indptr (int32).
    let arrays: DeviceBuffer
    let offsets: [Int]
    /// Partial outputs [workItems, Hq, D] fp32, partial LSEs [workItems, Hq], then (fused merge)
    /// the merge counters, int32 [B, KV heads × head groups], zero between launches (split plans only).
    let workspace: DeviceBuffer?
    /// The split-KV merge runs inside the decode kernel (its last CTA per request and head: one
    /// launch per run) rather than as a second launch (`decode_merge.cuh`).
    /// `FLASHINFER_DECODE_FUSED_MERGE=0` selects the separate launch (A/B on a GPU). Not in
    /// CUDA-graph mode (see init).
    let fusedMerge: Bool
    static let fusedMergeDefault: Bool = FileSystem.environment("FLASHINFER_DECODE_FUSED_MERGE") != "0"
    let numQOHeads: Int
    let headDim: Int
    /// Graph mode: the fixed buffers; grids are padded to their capacity and the chunk size is read
    /// from device memory.
    let graph: GraphBuffers?

    init(table: PageTable, numQOHeads: Int, numKVHeads: Int, headDim: Int, dtype: DType, kvDType: DType? = nil,
         tuning: (stages: Int, keysPerSlot: Int)? = nil, waveAware: Bool = true, options: AttentionOptions,
         stream: Stream, capacity: GraphCapacity? = nil, reuse: GraphBuffers? = nil) throws(FlashInferError) {
        try requireCUDASupport(options, entry: "BatchDecodeWithPagedKVCache")
        let device = stream.device
        let group = numQOHeads / numKVHeads
        var cta = 1
        while cta < min(group, 8) { cta *= 2 }
        let spec = DecodeSpec(dtype: dtype, headDim: headDim, group: cta, posEnc: .init(options.positionEncoding),
                              softCap: options.logitsSoftCap > 0, stages: tuning?.stages ?? DecodeSpec.defaultStages,
                              keysPerSlot: tuning?.keysPerSlot ?? DecodeSpec.defaultKeysPerSlot, paged: true, kvDType: kvDType)
        mergeSpec = DecodeMergeSpec(dtype: dtype, headDim: headDim)
        headGroups = (group + cta - 1) / cta
        self.numQOHeads = numQOHeads
        self.headDim = headDim
        let mergeSpec = mergeSpec
        // A decode build, ready to launch, and its resident CTAs per SM.
        func load(_ s: DecodeSpec) throws(FlashInferError) -> (Function, Int) {
            try FlashInferError.wrap { () throws(CUDAError) -> (Function, Int) in
                let f = try JIT.shared(for: device).kernel(s).function
                try f.setMaxDynamicSharedMemory(s.sharedBytes)
                return (f, try f.maxActiveBlocksPerSM(blockSize: DecodeSpec.threads, dynamicSharedBytes: s.sharedBytes))
            }
        }
        let (fn, occupancy) = try load(spec)
        guard occupancy > 0 else {
            throw .kernelDoesNotFit(kernel: spec.name, device: device.properties.name,
                                    reason: "no CTA is resident with \(spec.sharedBytes) B of shared memory")
        }
        ctasPerSM = occupancy
        let pages = (0..<table.batchSize).map(table.numPages)
        let gdy = numKVHeads * headGroups
        let gridCTAs = occupancy * device.properties.multiprocessorCount
        guard let capacity else {
            let plan = BatchDecodePlan.make(numPages: pages, pageSize: table.pageSize, numKVHeads: gdy, maxGridSize: gridCTAs,
                                            waveAware: waveAware)
            self.plan = plan
            self.graph = nil
            // Split plans run the kernel's fused-merge build when it is as resident as the plain
            // one (the plan's grid was sized with that occupancy); else the merge launch.
            var (chosenSpec, chosenFn, fused) = (spec, fn, false)
            if plan.splitKV && Self.fusedMergeDefault {
                var fs = spec
                fs.fusedMerge = true
                let (ff, occ) = try load(fs)
                if occ >= occupancy { (chosenSpec, chosenFn, fused) = (fs, ff, true) }
            }
            self.spec = chosenSpec
            decode = chosenFn
            fusedMerge = fused
            merge = plan.splitKV && !fusedMerge
                ? try FlashInferError.wrap { () throws(CUDAError) in try JIT.shared(for: device).kernel(mergeSpec).function } : nil
            let parts: [[Int32]] = [plan.requestIndices, plan.chunkIndices, table.indptr, table.indices, table.lastPageLen, plan.oIndptr]
            var offs: [Int] = [], packed: [Int32] = []
            for p in parts {
                offs.append(packed.count * 4)
                packed += p
            }
            offsets = offs
            // Stream-ordered upload: no host wait; run() enqueues on the same stream.
            arrays = try FlashInferError.wrap { () throws(CUDAError) in try device.upload(packed.isEmpty ? [0] : packed, stream: stream) }
            let ws = plan.workItems * numQOHeads * (headDim + 1) * 4
            let counters = fusedMerge ? table.batchSize * gdy * 4 : 0
            workspace = plan.splitKV ? try FlashInferError.wrap { () throws(CUDAError) in
                let w = try stream.allocate(byteCount: ws + counters)
                if counters > 0 { try w.fill(byte: 0, count: counters, offset: ws, stream: stream) }
                return w
            } : nil
            return
        }
        // Graph mode: fixed buffers, fixed grids, always the split path (partials + merge). It keeps
        // the merge launch: the merge also writes the zero rows past the batch (up to the
        // capacity), which no decode CTA owns.
        self.spec = spec
        decode = fn
        fusedMerge = false
        try capacity.check(batchSize: table.batchSize, pages: table.indices.count)
        let maxItems = reuse?.maxItems ?? max(capacity.maxBatch, gridCTAs / gdy)
        let buffers: GraphBuffers
        if let reuse { buffers = reuse } else {
            buffers = try FlashInferError.wrap { () throws(CUDAError) in
                try GraphBuffers(capacity: capacity, maxItems: maxItems, numQOHeads: numQOHeads, headDim: headDim, device: device)
            }
        }
        var plan = BatchDecodePlan.make(numPages: pages, pageSize: table.pageSize, numKVHeads: gdy, maxGridSize: maxItems * gdy,
                                        waveAware: false)
        plan.splitKV = true
        try GraphCapacity.check(workItems: plan.workItems, maxItems: maxItems)
        self.plan = plan
        self.graph = buffers
        merge = try FlashInferError.wrap { () throws(CUDAError) in try JIT.shared(for: device).kernel(mergeSpec).function }
        let pad = maxItems - plan.workItems, b = table.batchSize, mb = capacity.maxBatch
        let parts: [[Int32]] = [
            plan.requestIndices + Array(repeating: -1, count: pad),
            plan.chunkIndices + Array(repeating: 0, count: pad),
            table.indptr + Array(repeating: table.indptr.last!, count: mb - b),
            table.indices + Array(repeating: 0, count: capacity.maxPages - table.indices.count),
            table.lastPageLen + Array(repeating: 1, count: mb - b),
            plan.oIndptr + Array(repeating: plan.oIndptr.last!, count: mb - b),
            [Int32(plan.chunkTokens)],
        ]
        var offs: [Int] = [], packed: [Int32] = []
        for p in parts {
            offs.append(packed.count * 4)
            packed += p
        }
        offsets = offs
        arrays = buffers.arrays
        workspace = buffers.workspace
        // Ordered on the stream after the previous plan's runs (same buffers, new contents).
        try FlashInferError.wrap { () throws(CUDAError) in try buffers.arrays.copyFromHost(packed, stream: stream) }
    }

    func run(q: Tensor, cache: PagedKVCache, out: Tensor, lse: Tensor?, options: AttentionOptions, stream: Stream) throws(FlashInferError) {
        // Placement was validated (`checkPlacement` in the wrapper's run); the kernel's 16-byte loads:
        try requireVectorAligned(q, "q")
        try requireVectorAligned(cache.k, "k_cache")
        try requireVectorAligned(cache.v, "v_cache")
        try requireVectorAligned(out, "out")
        guard out.isContiguous else { throw .strides(tensor: "out", strides: out.strides, rule: "must be contiguous") }
        if let graph {
            let rows = graph.capacity.maxBatch
            guard q.shape[0] == rows, out.shape[0] == rows else {
                throw .shape(tensor: "q", axis: 0, name: "batch (CUDA-graph capacity)", expected: "\(rows) (q and out are sized to the capacity)", got: q.shape[0])
            }
        } else if plan.workItems == 0 {
            return
        }
        let ks = cache.strides(of: cache.k), vs = cache.strides(of: cache.v)
        let split = plan.splitKV
        let ws = workspace?.address ?? 0
        let lseOffset = CUdeviceptr((graph?.maxItems ?? plan.workItems) * numQOHeads * headDim * 4)
        let counterOffset = CUdeviceptr((graph?.maxItems ?? plan.workItems) * numQOHeads * (headDim + 1) * 4)
        let fused = split && fusedMerge
        let base = arrays.address
        func at(_ i: Int) -> CUdeviceptr { base + CUdeviceptr(offsets[i]) }
        let (divM, divL) = fastDivisor(plan.pageSize)
        let a = FIDecodeParams(
            q: q.deviceAddress!,
            o: split && !fused ? 0 : out.deviceAddress!, lse: split && !fused ? 0 : (lse?.deviceAddress ?? 0),
            partial_o: split ? ws : 0, partial_lse: split ? ws + lseOffset : 0,
            q_stride_head: Int64(q.strides[1]),
            kv: FIKVTensors(k: cache.k.deviceAddress!, v: cache.v.deviceAddress!, k_stride_n: Int64(ks.token),
                            k_stride_h: Int64(ks.head), v_stride_n: Int64(vs.token), v_stride_h: Int64(vs.head)),
            variant: FIVariantParams(options: options, headDim: headDim, qoLen: 1, kvLen: 0, numQOHeads: numQOHeads),
            num_kv_heads: Int32(cache.numKVHeads), group_size: Int32(numQOHeads / cache.numKVHeads), kv_begin: 0,
            chunk_size: Int32(plan.chunkTokens), split: split ? 1 : 0,
            request_indices: at(0), chunk_indices: at(1), kv_indptr: at(2), kv_last_page_len: at(4),
            q_stride_batch: Int64(q.strides[0]),
            pages: FIPageTable(page_indices: at(3), k_stride_page: Int64(ks.page), v_stride_page: Int64(vs.page),
                               page_size: Int32(plan.pageSize), page_div_m: divM, page_div_l: divL, pad: 0),
            chunk_size_ptr: graph != nil ? at(6) : 0, timeline: 0,
            merge_counters: fused ? ws + counterOffset : 0, o_indptr: fused ? at(5) : 0
        )
        let items = graph?.maxItems ?? plan.workItems
        let mergeRows = graph?.capacity.maxBatch ?? plan.batchSize
        try FlashInferError.wrap { () throws(CUDAError) in
            try stream.order(reading: q, cache.k, cache.v, writing: out, lse, readingBuffer: arrays, writingBuffer: workspace)
            try decode.launch(grid: (items, cache.numKVHeads, headGroups), block: (DecodeSpec.threads, 1, 1),
                              sharedBytes: spec.sharedBytes, stream: stream, parameter: a)
            if split, let merge {
                let m = FIDecodeMergeParams(partial_o: ws, partial_lse: ws + lseOffset, o: out.deviceAddress!,
                                            lse: lse?.deviceAddress ?? 0, num_qo_heads: Int32(numQOHeads), num_chunks: 0,
                                            o_indptr: at(5), timeline: 0)
                // PDL (the merge's launch overlaps the decode's tail), except under CUDA-graph capture
                // (graph mode keeps plain launches: its replay test ran with them).
                try merge.launch(grid: (numQOHeads, mergeRows, 1), block: (128, 1, 1), stream: stream,
                                 parameter: m, programmaticDependency: graph == nil)
            }
        }
    }
}

/// The decode kernels' 16-byte vector loads and stores: a 16-byte aligned base and 16-byte multiple
/// strides on every axis but the innermost (axes of extent 1 excepted). No allocation (run() paths).
func requireVectorAligned(_ t: Tensor, _ name: String) throws(FlashInferError) {
    var aligned = (t.deviceAddress ?? 0) % 16 == 0
    for i in 0..<max(t.rank - 1, 0) where t.shape[i] > 1 && (t.strides[i] * t.dtype.byteSize) % 16 != 0 { aligned = false }
    guard aligned else { throw .strides(tensor: name, strides: t.strides, rule: "needs a 16-byte aligned base and 16-byte multiple strides") }
}

#if canImport(Glibc)
import Glibc
#endif
