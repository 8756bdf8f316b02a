internal import CFlashInferParams
import FlashInferCUDA

/// Tile geometry of the prefill kernel: 4 warps, each owning `16·mmaQ` packed query rows; keys
/// are loaded in tiles of `ctaKV` (a double-buffered K/V ring in shared memory) and computed in
/// sub-tiles of `kvSub` (S = Q·Kᵀ, softmax, O += P·V per sub-tile).
public struct PrefillTile: Hashable, Sendable, CustomStringConvertible {
    /// m16 row tiles per warp (1 or 2).
    public var mmaQ: Int
    /// Keys per loaded kv tile (a multiple of `kvSub`).
    public var ctaKV: Int
    /// Keys per compute sub-tile (a multiple of 16).
    public var kvSub: Int
    /// Warps sharing one set of rows (PrefillTraits::KV_WARPS): 1, or 4 for the 16-row decode tile
    /// (every warp on the same 16 rows, each on every 4th sub-tile; merged at the end).
    public var kvWarps: Int = 1

    public static let warps = 4
    public static let stages = 2

    /// Packed query rows per CTA.
    public var ctaQ: Int { Self.warps / kvWarps * 16 * mmaQ }
    public var threads: Int { Self.warps * 32 }

    /// The tile for a head dimension and variant, for Hopper with mma.sync (registers from ptxas,
    /// sm_90a, `__launch_bounds__(128, 2)`):
    /// - D 128: 32 rows per warp (CTA_Q 128) so each K/V fragment read from shared memory feeds two
    ///   mma (with 16 rows per warp ldmatrix, not the tensor cores, would be the limit). O takes
    ///   2·16·4 = 128 floats per thread. Keys are loaded 64 at a time; the plain variants (no
    ///   RoPE, ALiBi or window) also compute 64 at a time (S: 64 floats, 255 registers, no spills),
    ///   the others 32 at a time (S: 32 floats, ~230–245 registers) because their extra state
    ///   would spill at 64. Shared memory (128 + 4·64)·128·2 B = 96 KiB: 2 CTAs per SM.
    /// - D 64: the same rows; O is only 64 floats, so S covers 64 keys and loads 128:
    ///   (128 + 4·128)·64·2 B = 80 KiB.
    /// - D 256: 16 rows per warp (CTA_Q 64): O is already 128 floats; kv tile 32:
    ///   (64 + 4·32)·256·2 B = 96 KiB.
    public static func `default`(headDim: Int, plain: Bool = false) -> PrefillTile {
        switch headDim {
        case ...64: PrefillTile(mmaQ: 2, ctaKV: 128, kvSub: 64)
        case 65...128: PrefillTile(mmaQ: 2, ctaKV: 64, kvSub: plain ? 64 : 32)
        default: PrefillTile(mmaQ: 1, ctaKV: 32, kvSub: 32)
        }
    }

    /// The batch kernel's tile: the single-request geometry with `ctaQ` packed rows per CTA (128:
    /// 32 rows per warp, 64: 16), the plan's `ctaTileQ` (`BatchPrefillPlan.kernelCtaTileQ`).
    public static func batch(headDim: Int, plain: Bool, ctaQ: Int) -> PrefillTile {
        // The 16-row tile (BatchPrefillPlan.kernelCtaTileQ gives it for D 128 only), first form: 64
        // keys per tile, 4 sub-tiles of 16, one per warp. (16 + 4·64)·128·2 B = 68 KiB: 3 CTAs per SM.
        // The single-buffered form (the default): 128 keys per tile, 32 per warp, one K and one V
        // tile: (16 + 2·128)·128·2 B = 68 KiB, the same 3 CTAs per SM. `FLASHINFER_PREFILL_TILE16=1`
        // takes the first form.
        if ctaQ == 16 {
            return BatchPrefillPlan.sixteenRowTileMode == 1
                ? PrefillTile(mmaQ: 1, ctaKV: 64, kvSub: 16, kvWarps: 4) : PrefillTile(mmaQ: 1, ctaKV: 128, kvSub: 32, kvWarps: 4)
        }
        var t = PrefillTile.default(headDim: headDim, plain: plain)
        t.mmaQ = ctaQ >= 128 && headDim <= 128 ? 2 : 1  // D 256: O alone is 128 floats at 16 rows per warp
        return t
    }

    /// Dynamic shared memory of one CTA: Q tile + STAGES K tiles + STAGES V tiles; with FP8 K/V
    /// (`kvElementBytes` 1), Q + one converted K and V tile + `fp8Stages` fp8 K and V staging tiles.
    public func sharedBytes(headDim: Int, elementBytes: Int = 2, kvElementBytes: Int? = nil) -> Int {
        let kvBytes = kvElementBytes ?? elementBytes
        if kvBytes == elementBytes { return (ctaQ + 2 * kvBuffers * ctaKV) * headDim * elementBytes }
        return (ctaQ + 2 * ctaKV) * headDim * elementBytes + 2 * fp8Stages * ctaKV * headDim * kvBytes
    }

    /// K (and V) tiles of the 16-bit kernel in shared memory (PrefillTraits::KV_BUFS): the ring's
    /// 2 stages, or 1 for the single-buffered 16-row tile (4 warps over a 128-key tile).
    public var kvBuffers: Int { kvWarps > 1 && ctaKV > 64 ? 1 : Self.stages }

    /// Depth of the FP8 staging ring (PrefillTraits::KV_STAGES): 3 for the 64-row tile, 2 for 128.
    public var fp8Stages: Int { ctaQ <= 64 ? 3 : 2
    }

    public init(mmaQ: Int, ctaKV: Int, kvSub: Int, kvWarps: Int = 1) {
        self.mmaQ = mmaQ
        self.ctaKV = ctaKV
        self.kvSub = kvSub
        self.kvWarps = kvWarps
    }

    public var description: String { "q\(ctaQ)kv\(ctaKV)s\(kvSub)\(kvWarps > 1 ? "w\(kvWarps)" : "")" }
}

/// The JIT spec of the single-request prefill kernel: everything that changes its code, nothing
/// about problem size (lengths, heads, strides, scale and window width are run-time parameters).
public struct PrefillSpec: KernelSpec {
    public typealias PosEnc = KernelPosEnc

    /// Where K/V come from: one request's contiguous rows (`singlePrefill`), or a batch's ragged
    /// rows or paged cache (`BatchPrefillAttention`, grid over the plan's work items).
    public enum KVSource: String, Sendable, Hashable, CaseIterable {
        case single, ragged, paged
    }

    public var dtype: DType
    public var headDim: Int
    public var posEnc: PosEnc
    public var softCap: Bool
    public var causal: Bool
    public var window: Bool
    public var tile: PrefillTile
    public var kvSource: KVSource
    /// K and V as stored: `dtype`, or FP8 (e4m3 / e5m2): tiles land in fp8 staging buffers and are
    /// converted to `dtype` in shared memory (prefill_traits.cuh).
    public var kvDType: DType
    /// A packed custom mask per request (`VariantParams::custom_mask`): replaces `causal`.
    public var customMask: Bool

    public init(dtype: DType, headDim: Int, posEnc: PosEnc = .none, softCap: Bool = false, causal: Bool = false,
                window: Bool = false, tile: PrefillTile? = nil, kvSource: KVSource = .single, kvDType: DType? = nil,
                customMask: Bool = false) {
        self.dtype = dtype
        self.kvDType = kvDType ?? dtype
        self.customMask = customMask
        self.headDim = headDim
        self.posEnc = posEnc
        self.softCap = softCap
        self.causal = causal && !customMask  // the mask replaces the causal mask
        self.window = window
        self.tile = tile ?? .default(headDim: headDim, plain: posEnc == .none && !window && !self.kvDType.isFP8 && !customMask)
        self.kvSource = kvSource
    }

    /// The spec a call with these options needs.
    /// (With `customMask` the causal flag is dropped: the mask replaces it, as upstream's mask modes.)
    public init(dtype: DType, headDim: Int, options: AttentionOptions, kvSource: KVSource = .single, kvDType: DType? = nil,
                customMask: Bool = false) {
        self.init(dtype: dtype, headDim: headDim, posEnc: PosEnc(options.positionEncoding), softCap: options.logitsSoftCap > 0,
                  causal: options.causal && !customMask, window: options.windowLeft >= 0, kvSource: kvSource, kvDType: kvDType,
                  customMask: customMask)
    }

    /// Whether the variant is the plain one (no RoPE, ALiBi or window; 16-bit K/V, no custom mask),
    /// which gets the wider sub-tile (the FP8 conversion and the mask reads spill at 64 keys, D 128).
    public var plain: Bool { posEnc == .none && !window && !kvDType.isFP8 && !customMask }

    public var name: String {
        var n = (kvSource == .single ? "prefill_" : "batch_prefill_\(kvSource.rawValue)_") + "\(dtype.rawValue)"
        if kvDType != dtype { n += "_kv\(kvDType.rawValue)" }
        n += "_d\(headDim)_\(posEnc.rawValue)"
        if softCap { n += "_cap" }
        if causal { n += "_causal" }
        if customMask { n += "_mask" }
        if window { n += "_win" }
        return n + "_\(tile)"
    }

    public var entryPoint: String { "fi_" + name }

    public var sharedBytes: Int { tile.sharedBytes(headDim: headDim, elementBytes: dtype.byteSize, kvElementBytes: kvDType.byteSize) }

    public func source() -> String {
        let (header, params, body) = switch kvSource {
        case .single: ("prefill.cuh", "PrefillParams", "flashinfer::single_prefill<Traits>(p)")
        case .ragged: ("prefill_batch.cuh", "BatchPrefillParams", "flashinfer::batch_prefill<Traits, false>(p)")
        case .paged: ("prefill_batch.cuh", "BatchPrefillParams", "flashinfer::batch_prefill<Traits, true>(p)")
        }
        return """
        #include <flashinfer/attention/\(header)>
        using Variant = flashinfer::AttentionVariant<\(posEnc.cudaName), \(softCap), \(causal), \(window), \(customMask)>;
        using Traits = flashinfer::PrefillTraits<\(dtype.cudaTypeName), \(headDim), \(tile.mmaQ), \(tile.ctaKV), \(tile.kvSub), Variant, \(kvDType.cudaTypeName)\(tile.kvWarps > 1 ? ", \(tile.kvWarps)" : "")>;
        extern "C" __global__ void __launch_bounds__(Traits::NUM_THREADS, 2)
        \(entryPoint)(const __grid_constant__ flashinfer::\(params) p) {
          \(body);
        }
        """
    }
}

/// Single-request prefill/append on tensor cores: grid (query tiles of `CTA_Q` packed rows,
/// kv heads), 128 threads, dynamic shared memory from the tile (above 48 KiB).
enum CUDAPrefill {
    /// Launches a validated problem (`validateSingle`: nothing is checked again) into `out` and
    /// `lse` (the problem's buffers, or the ones the backend allocated for it), on the tier its
    /// options ask for (`AttentionOptions.tier`, resolved by `CUDAHopperPrefill.resolveTier`).
    /// Returns the tier that ran.
    @discardableResult
    static func run(_ problem: SingleAttentionProblem, out: Tensor, lse: Tensor?, tile: PrefillTile? = nil,
                    stream: Stream) throws(FlashInferError) -> PrefillTier {
        try requireCUDASupport(problem.options, entry: "single prefill")
        if try CUDAHopperPrefill.resolveTier(problem, device: stream.device, tile: tile) == .hopper {
            try CUDAHopperPrefill.run(problem, out: out, lse: lse, stream: stream)
            return .hopper
        }
        try runFA2(problem, out: out, lse: lse, tile: tile, stream: stream)
        return .fa2
    }

    /// The FA2-tier launch (`PrefillSpec`).
    static func runFA2(_ problem: SingleAttentionProblem, out: Tensor, lse: Tensor?, tile: PrefillTile?,
                       stream: Stream) throws(FlashInferError) {
        let (q, k, v, shape, options) = (problem.q, problem.k, problem.v, problem.shape, problem.options)
        guard shape.qoLen > 0 else { return }
        // The plan (kernel, query tiles) from the plan cache: looked up once per shape class.
        let planned = try SinglePrefillPlan.planned(shape: shape, dtype: q.dtype, kvDType: k.dtype, options: options, tile: tile,
                                                    customMask: problem.customMask != nil, device: stream.device)
        let spec = planned.plan.spec, qTiles = planned.plan.qTiles

        // Strides in elements: (token, head) for each tensor. An axis of extent 1 has no stride.
        func st(_ t: Tensor, _ axis: Int) -> Int64 { t.shape[axis] > 1 ? Int64(t.strides[axis]) : 0 }
        let (kn, kh) = options.layout == .nhd ? (0, 1) : (1, 0)
        let strides: [(String, Tensor, Int64, Int64)] = [
            ("q", q, st(q, 0), st(q, 1)), ("k", k, st(k, kn), st(k, kh)), ("v", v, st(v, kn), st(v, kh)),
            ("out", out, st(out, 0), st(out, 1)),
        ]

        try FlashInferError.wrap { () throws(CUDAError) in
            let kernel = planned.kernel
            // The packed mask, uploaded in the stream's order (freed in that order after the kernel).
            var maskBuffer: DeviceBuffer? = nil
            if let mask = problem.customMask?.packed {
                let buf = try stream.allocate(byteCount: max(mask.count, 1))
                if !mask.isEmpty { try buf.copyFromHost(mask, stream: stream) }
                maskBuffer = buf
            }
            try stream.order(reading: [q, k, v], writing: [out, lse])
            var p = prefillParams(q: q, k: k, v: v, out: out, lse: lse, strides: strides.map { ($0.2, $0.3) }, options: options,
                                  headDim: shape.headDim, qoLen: shape.qoLen, kvLen: shape.kvLen, numQOHeads: shape.numQOHeads,
                                  numKVHeads: shape.numKVHeads)
            p.variant.custom_mask = maskBuffer?.address ?? 0
            try kernel.function.launch(grid: (qTiles, shape.numKVHeads, 1), block: (spec.tile.threads, 1, 1),
                                       sharedBytes: spec.sharedBytes, stream: stream, parameter: p)
        }
    }

    /// The kernel's rule for device tensors (checked by `validateSingle`): cp.async and the output
    /// stores move 16-byte chunks, so every row starts 16-byte aligned: token and head strides (of
    /// axes longer than 1) are multiples of 8 elements and each base address is 16-byte aligned.
    static func checkRowsAligned(q: Tensor, k: Tensor, v: Tensor, out: Tensor?, layout: KVLayout) throws(FlashInferError) {
        func st(_ t: Tensor, _ axis: Int) -> Int64 { t.shape[axis] > 1 ? Int64(t.strides[axis]) : 0 }
        let (kn, kh) = layout == .nhd ? (0, 1) : (1, 0)
        var strides: [(String, Tensor, Int64, Int64)] = [("q", q, st(q, 0), st(q, 1)), ("k", k, st(k, kn), st(k, kh)), ("v", v, st(v, kn), st(v, kh))]
        if let out { strides.append(("out", out, st(out, 0), st(out, 1))) }
        for (name, t, sn, sh) in strides where t.count > 0 {
            let es = Int64(t.dtype.byteSize)
            guard (sn * es) % 16 == 0, (sh * es) % 16 == 0 else {
                throw .strides(tensor: name, strides: t.strides, rule: "token and head strides must be multiples of 16 bytes (8 elements of 16 bits, 16 of FP8)")
            }
            guard let addr = t.deviceAddress, addr % 16 == 0 else {
                throw .strides(tensor: name, strides: t.strides, rule: "the first element must be 16-byte aligned")
            }
        }
    }
}

/// The `PrefillParams` (flashinfer/params.h) of a launch, single or (as `FIBatchPrefillParams.base`)
/// batch: `strides` are the (token, head) element strides of q, k, v and out.
func prefillParams(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, strides: [(Int64, Int64)],
                   options: AttentionOptions, headDim: Int, qoLen: Int, kvLen: Int, numQOHeads: Int,
                   numKVHeads: Int) -> FIPrefillParams {
    precondition(strides.count == 4, "q, k, v, out strides")
    return prefillParams(q: q, k: k, v: v, out: out, lse: lse, strides: (strides[0], strides[1], strides[2], strides[3]), options: options,
                         headDim: headDim, qoLen: qoLen, kvLen: kvLen, numQOHeads: numQOHeads, numKVHeads: numKVHeads)
}

/// `prefillParams` with the (token, head) strides of q, k, v and out as a tuple: no array (run() paths).
func prefillParams(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?,
                   strides: ((Int64, Int64), (Int64, Int64), (Int64, Int64), (Int64, Int64)),
                   options: AttentionOptions, headDim: Int, qoLen: Int, kvLen: Int, numQOHeads: Int,
                   numKVHeads: Int) -> FIPrefillParams {
    let (qs, ks, vs, os) = strides
    return FIPrefillParams(
        q: q.deviceAddress ?? 0, o: out.deviceAddress ?? 0, lse: lse?.deviceAddress ?? 0,
        q_stride_n: qs.0, q_stride_h: qs.1, o_stride_n: os.0, o_stride_h: os.1,
        kv: FIKVTensors(k: k.deviceAddress ?? 0, v: v.deviceAddress ?? 0, k_stride_n: ks.0, k_stride_h: ks.1,
                        v_stride_n: vs.0, v_stride_h: vs.1),
        variant: FIVariantParams(options: options, headDim: headDim, qoLen: qoLen, kvLen: kvLen, numQOHeads: numQOHeads),
        num_kv_heads: Int32(numKVHeads), group_size: Int32(numQOHeads / numKVHeads))
}

/// The prefill entries of `kernelCatalog()`: every dtype × head dim of the plain kernel, and each
/// variant hook (RoPE, ALiBi, soft-cap, causal, window) on at least one, plus all of them at once.
func prefillCatalog() -> [(name: String, spec: any KernelSpec)] {
    var specs: [PrefillSpec] = []
    for dtype in [DType.f16, .bf16] {
        for d in supportedHeadDims { specs.append(PrefillSpec(dtype: dtype, headDim: d)) }
    }
    specs += [
        PrefillSpec(dtype: .f16, headDim: 128, causal: true),
        PrefillSpec(dtype: .f16, headDim: 128, posEnc: .rope, causal: true),
        PrefillSpec(dtype: .bf16, headDim: 128, posEnc: .alibi, causal: true),
        PrefillSpec(dtype: .f16, headDim: 128, softCap: true),
        PrefillSpec(dtype: .bf16, headDim: 128, softCap: true, causal: true),
        PrefillSpec(dtype: .f16, headDim: 128, causal: true, window: true),
        PrefillSpec(dtype: .f16, headDim: 64, posEnc: .alibi, softCap: true, window: true),
        PrefillSpec(dtype: .bf16, headDim: 256, posEnc: .rope, softCap: true, causal: true, window: true),
        // Custom masks: plain, and with the window and a soft cap.
        PrefillSpec(dtype: .f16, headDim: 128, customMask: true),
        PrefillSpec(dtype: .bf16, headDim: 64, softCap: true, window: true, customMask: true),
    ]
    // FP8 K/V: both formats under both q dtypes at every head dim (plain and causal), RoPE once.
    for kv in [DType.e4m3, .e5m2] {
        for dtype in [DType.f16, .bf16] {
            for d in supportedHeadDims { specs.append(PrefillSpec(dtype: dtype, headDim: d, causal: d == 128, kvDType: kv)) }
        }
    }
    specs += [
        PrefillSpec(dtype: .f16, headDim: 128, posEnc: .rope, causal: true, kvDType: .e4m3),
        PrefillSpec(dtype: .bf16, headDim: 128, posEnc: .alibi, softCap: true, window: true, kvDType: .e5m2, customMask: true),
    ]
    return specs.map { ("prefill \($0.name)", $0) }
}

/// Single-request prefill/append on the GPU into caller-provided buffers: no allocation, so it
/// can be timed and its outputs poisoned first (`flashinfer check`, `flashinfer bench`).
///
/// - Parameters:
///   - q: `[qoLen, Hq, D]` on the stream's device, f16 or bf16; k, v: `[kvLen, Hkv, D]` (NHD) or
///     `[Hkv, kvLen, D]` (HND). Strides are free except that the last axis is contiguous and the
///     token/head strides are multiples of 8 elements (16-byte rows).
///   - out: contiguous `[qoLen, Hq, D]`, q's dtype.
///   - lse: nil, or contiguous Float32 `[qoLen, Hq]` (base 2).
/// Runs asynchronously on `stream`. Returns the kernel tier that ran (`options.tier` resolved).
@discardableResult
public func singlePrefill(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions(),
                          customMask: CustomMask? = nil, out: Tensor, lse: Tensor?, stream: Stream) throws(FlashInferError) -> PrefillTier {
    try singlePrefill(q: q, k: k, v: v, options: options, customMask: customMask, out: out, lse: lse, tile: nil, stream: stream)
}

/// Single-request decode on the GPU into caller-provided buffers (the C ABI's CUDA path): `out`
/// contiguous `[Hq, D]` in q's dtype, `lse` nil or contiguous Float32 `[Hq]`. Runs asynchronously
/// on `stream` (the split-KV workspace, when the plan splits, is allocated and freed in its order).
public func singleDecode(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions(),
                         out: Tensor, lse: Tensor?, stream: Stream) throws(FlashInferError) {
    let problem = try validateSingle(q: q, k: k, v: v, decode: true, options: options, placement: .device(stream.device),
                                     out: out, lse: lse)
    try CUDADecode.run(problem, out: out, lse: lse, stream: stream)
}

/// `singlePrefill` with `tile`, an override of the kernel's tile geometry (benchmarks and tuning);
/// nil = the default for the head dimension and variant.
@discardableResult
@_spi(Bench) public func singlePrefill(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions(),
                                       customMask: CustomMask? = nil, out: Tensor, lse: Tensor?, tile: PrefillTile?,
                                       stream: Stream) throws(FlashInferError) -> PrefillTier {
    let problem = try validateSingle(q: q, k: k, v: v, decode: false, options: options, placement: .device(stream.device),
                                     out: out, lse: lse, customMask: customMask)
    return try CUDAPrefill.run(problem, out: out, lse: lse, tile: tile, stream: stream)
}
