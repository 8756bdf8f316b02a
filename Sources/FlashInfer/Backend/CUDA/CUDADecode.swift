internal import CFlashInferParams
import FlashInferCUDA

/// The JIT spec of the single-decode kernel (`attention/decode.cuh`): only what changes the code.
///
/// RoPE's scale and theta, the softmax scale, the cap value, the window, the group size (≤ the
/// CTA's `group`), the strides and every length are launch parameters.
public struct DecodeSpec: KernelSpec {
    /// Position-encoding code path (RoPE's scale and theta are runtime values).
    public typealias PosEnc = KernelPosEnc

    /// f16 or bf16: q and the output (and K/V unless `kvDType` says otherwise).
    public var dtype: DType
    /// K and V as stored: `dtype`, or FP8 (e4m3 / e5m2), converted to float as each key is read
    /// (`kScale` / `vScale` are launch parameters).
    public var kvDType: DType
    /// 64, 128 or 256.
    public var headDim: Int
    /// Query heads one CTA serves (1, 2, 4 or 8): the GQA group size rounded up to a power of two,
    /// capped at 8 (larger groups take several CTAs per KV head).
    public var group: Int
    public var posEnc: PosEnc
    /// Logits soft-cap on (its value is a launch parameter).
    public var softCap: Bool
    /// cp.async pipeline depth (shared-memory stages of one K tile and one V tile). Read-only in
    /// the public API: other depths are a measurement knob (`@_spi(Bench)` init).
    public internal(set) var stages: Int
    /// Keys each slot (headDim/8 lanes) takes per tile: 2, 4 or 8 (the tile is 128/(headDim/8) × this).
    public internal(set) var keysPerSlot: Int
    /// Batch decode over a paged cache (work items from `BatchDecodePlan`) instead of one request's
    /// contiguous K/V.
    public var paged: Bool
    /// Per-CTA timestamps (`DecodeParams::timeline`, bench `--timeline`): entry and exit
    /// %globaltimer and %smid. A measurement variant; never chosen by the library.
    @_spi(Bench) public var timeline = false
    /// The split-KV merge inside the kernel (`FUSED_MERGE`, decode.cuh): the build batch decode
    /// runs for split plans (`CUDABatchDecode.fusedMerge`).
    public var fusedMerge = false

    /// The pipeline depth and tile used unless a caller picks others (measured on the device:
    /// bench/NOTES.md).
    @_spi(Bench) public static let defaultStages = 4
    @_spi(Bench) public static let defaultKeysPerSlot = 4

    public init(dtype: DType, headDim: Int, group: Int, posEnc: PosEnc, softCap: Bool, paged: Bool = false,
                kvDType: DType? = nil) {
        self.init(dtype: dtype, headDim: headDim, group: group, posEnc: posEnc, softCap: softCap,
                  stages: DecodeSpec.defaultStages, keysPerSlot: DecodeSpec.defaultKeysPerSlot, paged: paged, kvDType: kvDType)
    }

    /// Another pipeline depth and tile than the library's (the bench and check compare them).
    @_spi(Bench) public init(dtype: DType, headDim: Int, group: Int, posEnc: PosEnc, softCap: Bool,
                             stages: Int, keysPerSlot: Int, paged: Bool = false, kvDType: DType? = nil) {
        self.paged = paged
        self.dtype = dtype
        self.kvDType = kvDType ?? dtype
        self.headDim = headDim
        self.group = group
        self.posEnc = posEnc
        self.softCap = softCap
        self.stages = stages
        self.keysPerSlot = keysPerSlot
    }

    public var name: String {
        "decode_\(dtype.rawValue)\(kvDType != dtype ? "_kv" + kvDType.rawValue : "")_d\(headDim)_g\(group)_\(posEnc.rawValue)\(softCap ? "_cap" : "")_s\(stages)_k\(keysPerSlot)\(paged ? "_paged" : "")\(timeline ? "_tl" : "")\(fusedMerge ? "_fm" : "")"
    }
    public var entryPoint: String { "fi_" + name }

    /// The kernel's `DecodeTraits` type. Its variant never masks by position: decode applies the
    /// sliding window by starting its key range at the window (decode.cuh).
    var traits: String {
        let variant = "flashinfer::AttentionVariant<\(posEnc.cudaName), \(softCap), false, false>"
        return "flashinfer::DecodeTraits<\(dtype.cudaTypeName), \(headDim), \(group), \(variant), \(stages), \(keysPerSlot), \(paged), \(timeline), \(kvDType.cudaTypeName), \(smemReduce)\(fusedMerge ? ", true" : "")>"
    }

    public func source() -> String {
        """
        #include <flashinfer/attention/decode.cuh>
        using KT = \(traits);
        extern "C" __global__ void __launch_bounds__(KT::THREADS\(minBlocksHint)) \(entryPoint)(const __grid_constant__ flashinfer::DecodeParams p) {
          flashinfer::decode_kernel<KT>(p);
        }
        """
    }

    /// A `__launch_bounds__` minimum-blocks hint for the small-group paged kernels: without it
    /// ptxas (13.0, the device's) picks ~72 registers for group 2 and spills 4 bytes; with it,
    /// zero spills. Group ≥ 4 kernels (the measured D1–D4 paths) are left as they were.
    /// FP8 K/V kernels with f16 q, head_dim ≤ 128 and group ≤ 4 (D5's) sum their partial dots
    /// through shared memory (`SMEM_REDUCE`, decode.cuh) and are bounded to 4 CTAs per SM (128
    /// registers; 159 unbounded, which leaves D5's 512 CTAs 1.3 waves): 0 spills under NVRTC 13.0.
    /// The others (bf16 q spills 20+ bytes under the bound, group 8 ~690) keep the shuffle reduce.
    var smemReduce: Bool { kvDType.byteSize == 1 && dtype == .f16 && headDim <= 128 && group <= 4 && (keysPerSlot * group) % 4 == 0 }
    var minBlocksHint: String { smemReduce ? ", 4" : paged && group <= 2 ? ", 2" : "" }

    // Mirrors of DecodeTraits (decode.cuh); the kernel traps if the shared size disagrees.
    static let threads = 128
    /// Lanes sharing one key (one 16-byte chunk each).
    var lanes: Int { headDim / 8 }  // 8 elements per lane whatever the K/V dtype
    /// Key slots per CTA (threads / lanes).
    var slots: Int { Self.threads / lanes }
    /// Keys per pipeline stage: slots × keysPerSlot.
    public var tileKeys: Int { slots * keysPerSlot }
    /// The cp.async pipeline's bytes (stages × K and V tiles).
    var pipelineBytes: Int { stages * 2 * tileKeys * headDim * kvDType.byteSize }
    /// The epilogue's per-slot o buffer (fp32), which reuses the pipeline buffers.
    var epilogueBytes: Int { slots * group * headDim * 4 }
    /// Dynamic shared memory: the pipeline (or the epilogue's o buffer, if larger), the per-slot
    /// scores and the per-slot maxima.
    public var sharedBytes: Int {
        max(pipelineBytes, epilogueBytes) + slots * keysPerSlot * group * 4 + slots * group * 4 + reduceBytes
    }
    /// The slots' [lanes][scores] buffers (+16 floats each) of the shared-memory reduce (`smemReduce`).
    var reduceBytes: Int {
        let scores = keysPerSlot * group
        return smemReduce ? slots * (lanes * scores + 16) * 4 : 0
    }
}

/// The JIT spec of the split-KV merge (`attention/decode_merge.cuh`).
public struct DecodeMergeSpec: KernelSpec {
    public var dtype: DType
    public var headDim: Int
    public init(dtype: DType, headDim: Int) {
        self.dtype = dtype
        self.headDim = headDim
    }
    public var name: String { "decode_merge_\(dtype.rawValue)_d\(headDim)" }
    public var entryPoint: String { "fi_" + name }
    public func source() -> String {
        """
        #include <flashinfer/attention/decode_merge.cuh>
        extern "C" __global__ void __launch_bounds__(128) \(entryPoint)(const __grid_constant__ flashinfer::DecodeMergeParams p) {
          flashinfer::decode_merge<\(dtype.cudaTypeName), \(headDim)>(p);
        }
        """
    }
}

/// The decode specs the catalogue compiles: every (dtype, head dim, position encoding, soft-cap)
/// at the largest CTA group (8), plus the smaller groups on the plain path, plus the merges.
func decodeCatalog() -> [(name: String, spec: any KernelSpec)] {
    var out: [(name: String, spec: any KernelSpec)] = []
    for dtype in [DType.f16, .bf16] {
        for d in supportedHeadDims {
            for pe in DecodeSpec.PosEnc.allCases {
                for cap in [false, true] {
                    let s = DecodeSpec(dtype: dtype, headDim: d, group: 8, posEnc: pe, softCap: cap)
                    out.append((s.name, s))
                }
            }
            for g in [1, 2, 4] {
                let s = DecodeSpec(dtype: dtype, headDim: d, group: g, posEnc: .none, softCap: false)
                out.append((s.name, s))
            }
            let m = DecodeMergeSpec(dtype: dtype, headDim: d)
            out.append((m.name, m))
            // Batch decode over pages: every group size on the plain path, every variant at group 4.
            for g in [1, 2, 4, 8] {
                var s = DecodeSpec(dtype: dtype, headDim: d, group: g, posEnc: .none, softCap: false, paged: true)
                out.append((s.name, s))
                s.fusedMerge = true  // the split plans' build
                out.append((s.name, s))
            }
            for pe in DecodeSpec.PosEnc.allCases {
                for cap in [false, true] where pe != .none || cap {
                    let s = DecodeSpec(dtype: dtype, headDim: d, group: 4, posEnc: pe, softCap: cap, paged: true)
                    out.append((s.name, s))
                }
            }
            // FP8 K/V (e4m3 / e5m2) under q in this dtype: single and paged, the plain path at every
            // head dim, each hook once at head dim 128.
            for kv in [DType.e4m3, .e5m2] {
                out.append(contentsOf: [
                    DecodeSpec(dtype: dtype, headDim: d, group: 4, posEnc: .none, softCap: false, kvDType: kv),
                    DecodeSpec(dtype: dtype, headDim: d, group: 4, posEnc: .none, softCap: false, paged: true, kvDType: kv),
                ].map { ($0.name, $0) })
            }
            if d == 128 {
                out.append(contentsOf: [
                    DecodeSpec(dtype: dtype, headDim: d, group: 8, posEnc: .rope, softCap: true, kvDType: .e4m3),
                    DecodeSpec(dtype: dtype, headDim: d, group: 1, posEnc: .alibi, softCap: false, paged: true, kvDType: .e5m2),
                    DecodeSpec(dtype: dtype, headDim: d, group: 8, posEnc: .rope, softCap: false, paged: true, kvDType: .e4m3),
                ].map { ($0.name, $0) })
            }
            // The timestamped variant `bench single-decode --timeline` uses.
            var tl = DecodeSpec(dtype: dtype, headDim: d, group: 4, posEnc: .none, softCap: false)
            tl.timeline = true
            out.append((tl.name, tl))
        }
    }
    return out
}

/// A planned single decode: kernel, grid, split-KV chunking and workspace size for one problem
/// shape on one device. Plan once and `run` many times (the bench does, with one workspace);
/// `singleDecode(..., backend: .cuda)` makes one per call from the plan cache
/// (`SingleDecodePlan`: the device is asked once per shape class).
///
/// Launches: the decode kernel on grid (chunks, KV heads, head groups) × 128 threads; when the
/// KV range is split, it writes fp32 partials (o, base-2 LSE) to the workspace and the merge
/// kernel (grid Hq × 128 threads) combines them into `out` and `lse` with the exact base-2
/// state merge.
public struct CUDADecodeLaunch: Sendable {
    public let spec: DecodeSpec
    public let mergeSpec: DecodeMergeSpec
    public let split: DecodeSplit
    /// Resident decode CTAs per SM (driver occupancy for the kernel's registers and shared memory).
    public let ctasPerSM: Int
    /// CTAs per KV head along the group (groups above 8 query heads take several).
    public let headGroups: Int
    /// Keys attended: the last `windowLeft + 1` with a window, else all.
    public let kvBegin: Int
    public let shape: SingleAttentionShape
    public let options: AttentionOptions
    /// The device planned for, and its kernels (looked up once here; `prepare` only packs).
    let device: Device
    let decodeFunction: Function
    let mergeFunction: Function?
    /// Bytes of workspace `run` needs (0 without a split): partial outputs, then partial LSEs.
    public var workspaceBytes: Int {
        split.isSplit ? partialLSEOffset + split.numChunks * shape.numQOHeads * 4 : 0
    }
    var partialLSEOffset: Int { split.numChunks * shape.numQOHeads * shape.headDim * 4 }

    /// A workspace for this launch on `stream`'s device (nil when none is needed), allocated in
    /// `stream`'s order (`Stream.allocate`): use it on `stream` only; releasing it waits for nothing.
    public func makeWorkspace(stream: Stream) throws(FlashInferError) -> DeviceBuffer? {
        guard workspaceBytes > 0 else { return nil }
        let n = workspaceBytes
        return try FlashInferError.wrap { () throws(CUDAError) -> DeviceBuffer in try stream.allocate(byteCount: n) }
    }

    /// Plans the call with the library's choices (split from `singleDecodeSplit`, the default kernel).
    public init(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions, device: Device) throws(FlashInferError) {
        try self.init(q: q, k: k, v: v, options: options, device: device, numChunks: nil)
    }

    /// Measurement overrides: `numChunks` forces the split (nil: `singleDecodeSplit`); `stages` and
    /// `keysPerSlot` pick the kernel variant; `timeline` the timestamped variant (see
    /// `prepare(timeline:)`).
    @_spi(Bench) public init(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions, device: Device,
                             numChunks: Int?, stages: Int = DecodeSpec.defaultStages,
                             keysPerSlot: Int = DecodeSpec.defaultKeysPerSlot, timeline: Bool = false) throws(FlashInferError) {
        let problem = try validateSingle(q: q, k: k, v: v, decode: true, options: options, placement: .device(device))
        try self.init(shape: problem.shape, dtype: problem.dtype, kvDType: problem.k.dtype, options: options, device: device,
                      numChunks: numChunks, stages: stages, keysPerSlot: keysPerSlot, timeline: timeline)
    }

    /// The plan of a validated problem, from the plan cache (`SingleDecodePlan.planned`: the device
    /// is asked once per shape class), with this call's shape and window start.
    init(shape: SingleAttentionShape, dtype: DType, kvDType: DType? = nil, options: AttentionOptions, device: Device,
         numChunks: Int?, stages: Int = DecodeSpec.defaultStages,
         keysPerSlot: Int = DecodeSpec.defaultKeysPerSlot, timeline: Bool = false) throws(FlashInferError) {
        try requireCUDASupport(options, entry: "single decode")
        let planned = try SingleDecodePlan.planned(shape: shape, dtype: dtype, kvDType: kvDType ?? dtype, options: options, device: device,
                                                   numChunks: numChunks,
                                                   stages: stages, keysPerSlot: keysPerSlot, timeline: timeline)
        let plan = planned.plan
        spec = plan.spec
        mergeSpec = plan.mergeSpec
        split = plan.split
        ctasPerSM = plan.ctasPerSM
        headGroups = plan.headGroups
        self.shape = shape
        self.options = options
        kvBegin = SingleDecodePlan.kvBegin(shape: shape, options: options)
        self.device = device
        decodeFunction = planned.decode
        mergeFunction = planned.merge
    }

    /// Launches on `stream`. `out` is `[Hq, D]` contiguous in q's dtype; `lse` (optional) is
    /// Float32 `[Hq]`; `workspace` must hold `workspaceBytes` (it may be nil when 0).
    public func run(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, workspace: DeviceBuffer?,
                    stream: Stream) throws(FlashInferError) {
        let problem = try validateSingle(q: q, k: k, v: v, decode: true, options: options, placement: .device(stream.device),
                                         out: out, lse: lse)
        try run(problem, out: out, lse: lse, workspace: workspace, stream: stream)
    }

    /// `run` for a validated problem (`validateSingle`): nothing is checked again but that the
    /// problem is the planned one and the workspace is large enough.
    func run(_ problem: SingleAttentionProblem, out: Tensor, lse: Tensor?, workspace: DeviceBuffer?,
             stream: Stream) throws(FlashInferError) {
        let prepared = try prepare(problem, out: out, lse: lse, workspace: workspace, stream: stream, timeline: nil)
        try FlashInferError.wrap { () throws(CUDAError) in
            try stream.order(reading: [problem.q, problem.k, problem.v], writing: [out, lse], writingBuffers: [workspace])
        }
        try prepared.launch(on: stream)
    }

    /// The launches of one call with every argument checked and packed, for callers that repeat
    /// the same call (the bench): `launch(on:)` then only enqueues the kernels. It does no
    /// cross-stream ordering (`run` does): launch on the stream the tensors were made and written on.
    public struct Prepared: Sendable {
        let decode: Function
        let merge: Function?
        let decodeArguments: KernelArguments
        let mergeArguments: KernelArguments
        let grid: (Int, Int, Int)
        let mergeGrid: Int
        let sharedBytes: Int

        /// Enqueues the decode kernel and, when split, the merge.
        public func launch(on stream: Stream) throws(FlashInferError) {
            try FlashInferError.wrap { () throws(CUDAError) in
                try decode.launch(grid: grid, block: (DecodeSpec.threads, 1, 1), sharedBytes: sharedBytes,
                                  stream: stream, arguments: decodeArguments)
                if let merge {
                    try merge.launch(grid: (mergeGrid, 1, 1), block: (128, 1, 1), stream: stream, arguments: mergeArguments,
                                     programmaticDependency: true)
                }
            }
        }

        /// Enqueues the decode kernel alone (its partials are left in the workspace when split): the
        /// bench times it apart from the merge.
        @_spi(Bench) public func launchDecodeOnly(on stream: Stream) throws(FlashInferError) {
            try FlashInferError.wrap { () throws(CUDAError) in
                try decode.launch(grid: grid, block: (DecodeSpec.threads, 1, 1), sharedBytes: sharedBytes,
                                  stream: stream, arguments: decodeArguments)
            }
        }

        /// Registers and local (spill) bytes per thread of the decode kernel, from the driver.
        public var decodeAttributes: FunctionAttributes { decode.attributes }
    }

    /// Checks and packs one call (see `run`).
    public func prepare(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, workspace: DeviceBuffer?,
                        stream: Stream) throws(FlashInferError) -> Prepared {
        try prepare(q: q, k: k, v: v, out: out, lse: lse, workspace: workspace, stream: stream, timeline: nil)
    }

    /// `prepare` with timestamps. `timeline` (a launch with `timeline: true` only): device buffers
    /// for the decode CTAs' and the merge CTAs' timestamps, three UInt64 per CTA
    /// (`DecodeParams::timeline`).
    @_spi(Bench) public func prepare(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, workspace: DeviceBuffer?,
                                     stream: Stream, timeline: (decode: CUdeviceptr, merge: CUdeviceptr)?) throws(FlashInferError) -> Prepared {
        let problem = try validateSingle(q: q, k: k, v: v, decode: true, options: options, placement: .device(stream.device),
                                         out: out, lse: lse)
        return try prepare(problem, out: out, lse: lse, workspace: workspace, stream: stream, timeline: timeline)
    }

    /// `prepare` for a validated problem (`validateSingle`); `out` and `lse` are its buffers or
    /// the ones the backend allocated for it.
    func prepare(_ problem: SingleAttentionProblem, out: Tensor, lse: Tensor?, workspace: DeviceBuffer?, stream: Stream,
                 timeline: (decode: CUdeviceptr, merge: CUdeviceptr)?) throws(FlashInferError) -> Prepared {
        let (q, k, v) = (problem.q, problem.k, problem.v)
        guard problem.shape == shape, problem.dtype == spec.dtype, problem.k.dtype == spec.kvDType else {
            throw .planMismatch(what: "decode launch", planned: "\(shape) \(spec.dtype.rawValue) K/V \(spec.kvDType.rawValue)",
                                got: "\(problem.shape) \(problem.dtype.rawValue) K/V \(problem.k.dtype.rawValue)")
        }
        guard stream.device === device else { throw .deviceMismatch(tensor: "stream") }
        let needed = workspaceBytes
        if needed > 0 {
            guard let workspace, workspace.byteCount >= needed else {
                throw .workspaceTooSmall(bytes: workspace?.byteCount ?? 0, needed: needed)
            }
            guard workspace.device === stream.device else { throw .deviceMismatch(tensor: "workspace") }
        }
        let (qStride, kSeq, kHead, vSeq, vHead) = Self.strides(q: q, k: k, v: v, layout: options.layout)
        let split = split
        let ws = needed > 0 ? workspace!.address : 0
        let outAddress = out.deviceAddress!
        let lseAddress = lse?.deviceAddress ?? 0

        var a = FIDecodeParams(
            q: q.deviceAddress!,
            // Split launches write partials (the merge writes out / lse).
            o: split.isSplit ? 0 : outAddress,
            lse: split.isSplit ? 0 : lseAddress,
            partial_o: needed > 0 ? ws : 0, partial_lse: needed > 0 ? ws + CUdeviceptr(partialLSEOffset) : 0,
            q_stride_head: Int64(qStride),
            kv: FIKVTensors(k: k.deviceAddress!, v: v.deviceAddress!, k_stride_n: Int64(kSeq), k_stride_h: Int64(kHead),
                            v_stride_n: Int64(vSeq), v_stride_h: Int64(vHead)),
            variant: FIVariantParams(options: options, headDim: shape.headDim, qoLen: 1, kvLen: shape.kvLen,
                                     numQOHeads: shape.numQOHeads),
            num_kv_heads: Int32(shape.numKVHeads), group_size: Int32(shape.groupSize), kv_begin: Int32(kvBegin),
            chunk_size: Int32(split.chunkSize), split: split.isSplit ? 1 : 0,
            // Batch decode over pages only.
            request_indices: 0, chunk_indices: 0, kv_indptr: 0, kv_last_page_len: 0, q_stride_batch: 0,
            pages: FIPageTable(), chunk_size_ptr: 0, timeline: 0,
            // The merge is its own launch here (the workspace is the caller's: no counters).
            merge_counters: 0, o_indptr: 0
        )
        var m = FIDecodeMergeParams(
            partial_o: ws, partial_lse: ws + CUdeviceptr(partialLSEOffset), o: outAddress, lse: lseAddress,
            num_qo_heads: Int32(shape.numQOHeads), num_chunks: Int32(split.numChunks), o_indptr: 0, timeline: 0
        )
        if let timeline {
            guard spec.timeline else { throw .benchOverride(name: "timeline", value: "buffers", rule: "needs a launch planned with timeline: true") }
            a.timeline = timeline.decode
            m.timeline = timeline.merge
        }

        return Prepared(decode: decodeFunction, merge: mergeFunction,
                        decodeArguments: KernelArguments(bytesOf: a), mergeArguments: KernelArguments(bytesOf: m),
                        grid: (split.numChunks, shape.numKVHeads, headGroups), mergeGrid: shape.numQOHeads,
                        sharedBytes: spec.sharedBytes)
    }

    /// Element strides (q head; k seq, k head; v seq, v head) for the layout.
    static func strides(q: Tensor, k: Tensor, v: Tensor, layout: KVLayout) -> (Int, Int, Int, Int, Int) {
        let (seq, head) = layout == .nhd ? (0, 1) : (1, 0)
        return (q.strides[0], k.strides[seq], k.strides[head], v.strides[seq], v.strides[head])
    }

    /// The kernel's rule for device tensors (checked by `validateSingle`): it reads 16-byte
    /// vectors, so every tensor's base address must be 16-byte aligned and every stride (of an axis
    /// longer than 1) a multiple of 8 elements.
    static func checkVectorAligned(q: Tensor, k: Tensor, v: Tensor) throws(FlashInferError) {
        for (n, t) in [("q", q), ("k", k), ("v", v)] {
            let misaligned = t.count > 0 && (t.deviceAddress ?? 0) % 16 != 0
            let badStride = zip(t.shape.dropLast(), t.strides.dropLast()).contains {
                $0.0 > 1 && (($0.1 * t.dtype.byteSize) % 16 != 0 || abs($0.1) * t.dtype.byteSize > Int(Int32.max))
            }
            if misaligned || badStride {
                throw .strides(tensor: n, strides: t.strides, rule: "the decode kernel needs a 16-byte aligned base and strides that are multiples of 16 bytes, below 2^31 bytes")
            }
        }
    }
}

/// Single-request decode on CUDA cores: plans (split-KV from the SM count), allocates the
/// split workspace for this call, launches the decode kernel and, when split, the merge.
enum CUDADecode {
    /// Launches a validated problem (`validateSingle`: nothing is checked again) into `out` and
    /// `lse` (the problem's buffers, or the ones the backend allocated for it).
    static func run(_ problem: SingleAttentionProblem, out: Tensor, lse: Tensor?, stream: Stream) throws(FlashInferError) {
        let launch = try CUDADecodeLaunch(shape: problem.shape, dtype: problem.dtype, kvDType: problem.k.dtype, options: problem.options,
                                          device: stream.device,
                                          numChunks: nil)
        let workspace = try launch.makeWorkspace(stream: stream)
        try launch.run(problem, out: out, lse: lse, workspace: workspace, stream: stream)
        // The workspace is released when this returns: freed in the stream's order after the
        // launches that use it (cuMemFreeAsync), so the call does not wait for the device.
        withExtendedLifetime(workspace) {}
    }
}
