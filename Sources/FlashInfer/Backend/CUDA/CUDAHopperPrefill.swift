internal import CFlashInferParams
import FlashInferCUDA

/// The JIT spec of the Hopper (sm_90a) single-prefill kernel (`attention/prefill_sm90.cuh`): TMA
/// loads, an mbarrier K/V ring, a producer warpgroup and two wgmma consumer warpgroups, 128 query
/// rows of one query head per CTA, 128 keys per tile.
public struct HopperPrefillSpec: KernelSpec {
    public var dtype: DType
    public var headDim: Int
    public var causal: Bool
    /// Depth of the K/V ring (each stage holds one K and one V tile).
    public var stages: Int
    /// FA3's intra-warpgroup overlap: S[j+1] = Q·K[j+1]ᵀ and O += P[j]·V[j] in flight together, the
    /// softmax of S[j+1] under the PV GEMM. false: each tile's GEMMs and softmax in turn (simpler;
    /// `FLASHINFER_HOPPER_OVERLAP=0` selects it, for bisecting on a GPU).
    public var overlap: Bool

    public static let ctaQ = 128
    public static let ctaKV = 128
    public static let threads = 384
    /// Head dimensions the kernel is built for.
    public static let headDims = [64, 128]

    public init(dtype: DType, headDim: Int, causal: Bool, stages: Int = 2, overlap: Bool = HopperPrefillSpec.defaultOverlap) {
        self.overlap = overlap
        self.dtype = dtype
        self.headDim = headDim
        self.causal = causal
        self.stages = stages
    }

    /// The process's default for `overlap`: true unless the environment sets `FLASHINFER_HOPPER_OVERLAP=0`.
    public static let defaultOverlap: Bool = FileSystem.environment("FLASHINFER_HOPPER_OVERLAP") != "0"

    public var name: String { "hopper_prefill_\(dtype.rawValue)_d\(headDim)\(causal ? "_causal" : "")_s\(stages)\(overlap ? "" : "_seq")" }
    public var entryPoint: String { "fi_" + name }

    /// Dynamic shared memory: 1024 bytes of alignment slack, Q, `stages` K and V tiles, the mbarriers
    /// (HopperPrefillTraits::SMEM_BYTES).
    public var sharedBytes: Int {
        1024 + Self.ctaQ * headDim * 2 + 2 * stages * Self.ctaKV * headDim * 2 + 8 * (1 + 4 * stages)
    }

    public func source() -> String {
        """
        #include <flashinfer/attention/prefill_sm90.cuh>
        using Traits = flashinfer::HopperPrefillTraits<\(dtype.cudaTypeName), \(headDim), \(causal), \(stages), \(overlap)>;
        static_assert(Traits::SMEM_BYTES == \(sharedBytes), "shared memory size (Swift: HopperPrefillSpec.sharedBytes)");
        extern "C" __global__ void __launch_bounds__(Traits::NUM_THREADS, 1)
        \(entryPoint)(const __grid_constant__ flashinfer::PrefillParams p, const __grid_constant__ flashinfer::sm90::TensorMap tm_q,
                      const __grid_constant__ flashinfer::sm90::TensorMap tm_k, const __grid_constant__ flashinfer::sm90::TensorMap tm_v) {
          flashinfer::hopper_single_prefill<Traits>(p, &tm_q, &tm_k, &tm_v);
        }
        """
    }
}

/// Launches the Hopper single-prefill kernel.
enum CUDAHopperPrefill {
    /// Why the Hopper tier cannot run this problem on this device, or nil when it can.
    static func unsupportedReason(_ problem: SingleAttentionProblem, device: Device, tile: PrefillTile?) -> String? {
        let (q, k, shape, o) = (problem.q, problem.k, problem.shape, problem.options)
        let props = device.properties
        if props.ccMajor != 9 { return "the Hopper prefill kernels need an sm_90 GPU (this one is sm_\(props.ccMajor)\(props.ccMinor))" }
        if !device.driver.hasTensorMaps { return "the CUDA driver has no cuTensorMapEncodeTiled (CUDA 12.0 or newer)" }
        if q.dtype != .f16 && q.dtype != .bf16 { return "q must be f16 or bf16" }
        if k.dtype != q.dtype { return "K/V must have q's dtype (FP8 K/V runs on the FA2 tier)" }
        if !HopperPrefillSpec.headDims.contains(shape.headDim) { return "head dim \(shape.headDim) (the Hopper tier has \(HopperPrefillSpec.headDims))" }
        if o.positionEncoding != .none { return "position encoding \(o.positionEncoding.name) runs on the FA2 tier" }
        if o.logitsSoftCap > 0 { return "a logits soft cap runs on the FA2 tier" }
        if o.windowLeft >= 0 { return "a sliding window runs on the FA2 tier" }
        if problem.customMask != nil { return "a custom mask runs on the FA2 tier" }
        if tile != nil { return "an FA2 tile override was given" }
        if shape.qoLen >= Int(Int32.max) - HopperPrefillSpec.ctaQ || shape.kvLen >= Int(Int32.max) - HopperPrefillSpec.ctaKV {
            return "lengths must stay below 2^31"
        }
        return nil
    }

    /// The tier a problem runs on: `requested`, resolved (`.auto` → Hopper when supported), or a
    /// refusal when `.hopper` was asked for and does not apply.
    static func resolveTier(_ problem: SingleAttentionProblem, device: Device, tile: PrefillTile?) throws(FlashInferError) -> PrefillTier {
        switch problem.options.tier {
        case .fa2: return .fa2
        case .auto: return unsupportedReason(problem, device: device, tile: tile) == nil ? .hopper : .fa2
        case .hopper:
            if let why = unsupportedReason(problem, device: device, tile: tile) {
                throw .unsupportedCombination("prefill tier hopper: \(why)")
            }
            return .hopper
        }
    }

    /// The spec a supported problem needs.
    static func spec(_ problem: SingleAttentionProblem) -> HopperPrefillSpec {
        HopperPrefillSpec(dtype: problem.q.dtype, headDim: problem.shape.headDim, causal: problem.options.causal)
    }

    /// The three tensor maps: Q [qoLen, Hq, D], K and V [kvLen, Hkv, D] (NHD) or [Hkv, kvLen, D]
    /// (HND), each as a rank-3 map (D, tokens, heads) with the tensor's own byte strides and a box of
    /// (64, 128, 1): 128 rows of 64 elements (128 bytes), swizzled 128B.
    static func tensorMaps(_ problem: SingleAttentionProblem, driver: CUDADriver) throws(CUDAError) -> [TensorMap] {
        let (q, k, v, shape, layout) = (problem.q, problem.k, problem.v, problem.shape, problem.options.layout)
        let es = UInt64(q.dtype.byteSize)
        let dataType: TensorMap.DataType = q.dtype == .bf16 ? .bfloat16 : .float16
        let d = UInt64(shape.headDim)
        // Byte stride of an axis; an axis of extent 1 is never stepped, so any valid stride will do.
        func stride(_ t: Tensor, _ axis: Int) -> UInt64 {
            t.shape[axis] > 1 ? UInt64(t.strides[axis]) * es : d * es
        }
        func map(_ t: Tensor, tokens: Int, heads: Int, tokenAxis: Int, headAxis: Int, rows: Int) throws(CUDAError) -> TensorMap {
            try TensorMap.encodeTiled(
                driver: driver, dataType: dataType, address: t.deviceAddress ?? 0,
                dims: [d, UInt64(max(tokens, 1)), UInt64(heads)], strides: [stride(t, tokenAxis), stride(t, headAxis)],
                box: [64, UInt32(rows), 1], swizzle: .bytes128)
        }
        let (kn, kh) = layout == .nhd ? (0, 1) : (1, 0)
        let qMap = try map(q, tokens: shape.qoLen, heads: shape.numQOHeads, tokenAxis: 0, headAxis: 1, rows: HopperPrefillSpec.ctaQ)
        // kv_len 0: the kernel loads no K/V tile, but the parameters must still be valid maps (of q).
        guard shape.kvLen > 0 else { return [qMap, qMap, qMap] }
        return [
            qMap,
            try map(k, tokens: shape.kvLen, heads: shape.numKVHeads, tokenAxis: kn, headAxis: kh, rows: HopperPrefillSpec.ctaKV),
            try map(v, tokens: shape.kvLen, heads: shape.numKVHeads, tokenAxis: kn, headAxis: kh, rows: HopperPrefillSpec.ctaKV),
        ]
    }

    /// Launches a validated, supported problem (`resolveTier` said `.hopper`) into `out` and `lse`.
    static func run(_ problem: SingleAttentionProblem, out: Tensor, lse: Tensor?, stream: Stream) throws(FlashInferError) {
        let (q, k, v, shape, options) = (problem.q, problem.k, problem.v, problem.shape, problem.options)
        guard shape.qoLen > 0 else { return }
        let spec = spec(problem)
        func st(_ t: Tensor, _ axis: Int) -> Int64 { t.shape[axis] > 1 ? Int64(t.strides[axis]) : 0 }
        let (kn, kh) = options.layout == .nhd ? (0, 1) : (1, 0)
        let strides: [(Int64, Int64)] = [(st(q, 0), st(q, 1)), (st(k, kn), st(k, kh)), (st(v, kn), st(v, kh)), (st(out, 0), st(out, 1))]
        let qTiles = (shape.qoLen + HopperPrefillSpec.ctaQ - 1) / HopperPrefillSpec.ctaQ
        try FlashInferError.wrap { () throws(CUDAError) in
            let kernel = try JIT.shared(for: stream.device).kernel(spec)
            let maps = try tensorMaps(problem, driver: stream.device.driver)
            try stream.order(reading: [q, k, v], writing: [out, lse])
            let p = prefillParams(q: q, k: k, v: v, out: out, lse: lse, strides: strides, options: options, headDim: shape.headDim,
                                  qoLen: shape.qoLen, kvLen: shape.kvLen, numQOHeads: shape.numQOHeads, numKVHeads: shape.numKVHeads)
            var args = KernelArguments(bytesOf: p)
            for m in maps { args.append(tensorMap: m) }
            try kernel.function.launch(grid: (qTiles, shape.numQOHeads, 1), block: (HopperPrefillSpec.threads, 1, 1),
                                       sharedBytes: spec.sharedBytes, stream: stream, arguments: args)
        }
    }
}

/// The Hopper prefill entries of `kernelCatalog()`: both dtypes × head dims × causal, overlapped
/// (the default), and the sequential form at D 128.
func hopperPrefillCatalog() -> [(name: String, spec: any KernelSpec)] {
    var specs: [HopperPrefillSpec] = []
    for dtype in [DType.f16, .bf16] {
        for d in HopperPrefillSpec.headDims {
            for causal in [false, true] { specs.append(HopperPrefillSpec(dtype: dtype, headDim: d, causal: causal, overlap: true)) }
        }
        specs.append(HopperPrefillSpec(dtype: dtype, headDim: 128, causal: true, overlap: false))
    }
    return specs.map { ("prefill \($0.name)", $0) }
}
