internal import CFlashInferParams
import FlashInferCUDA

/// The JIT spec of the Hopper (sm_90a) batch-prefill kernel (`attention/prefill_sm90_batch.cuh`):
/// the single Hopper kernel's warp specialisation (TMA, mbarrier K/V ring, one producer and two
/// wgmma consumer warpgroups) over the batch plan's work items, 128 packed query rows (the GQA
/// group folded into rows) of one kv head per CTA, K/V paged (one TMA box per page) or ragged.
public struct HopperBatchPrefillSpec: KernelSpec {
    public var dtype: DType
    public var headDim: Int
    public var causal: Bool
    /// Tokens per page (one of `pageSizes`), or 0 for ragged K/V.
    public var pageSize: Int

    /// Page sizes the paged kernel loads with one TMA box per page: powers of two from 8 (one
    /// 1024-byte swizzle atom) to 128 (the kv tile). Other page sizes run on the FA2 tier.
    public static let pageSizes = [8, 16, 32, 64, 128]
    public static let ctaQ = HopperPrefillSpec.ctaQ
    public static let threads = HopperPrefillSpec.threads
    public static let headDims = HopperPrefillSpec.headDims
    static let stages = 2

    public init(dtype: DType, headDim: Int, causal: Bool, pageSize: Int) {
        self.dtype = dtype
        self.headDim = headDim
        self.causal = causal
        self.pageSize = pageSize
    }

    public var name: String {
        "hopper_batch_prefill_\(dtype.rawValue)_d\(headDim)\(causal ? "_causal" : "")_\(pageSize > 0 ? "paged_p\(pageSize)" : "ragged")_s\(Self.stages)"
    }
    public var entryPoint: String { "fi_" + name }

    /// Dynamic shared memory: as the single Hopper kernel's (Q, the K/V ring, the mbarriers).
    public var sharedBytes: Int {
        HopperPrefillSpec(dtype: dtype, headDim: headDim, causal: causal, stages: Self.stages, overlap: true).sharedBytes
    }

    public func source() -> String {
        """
        #include <flashinfer/attention/prefill_sm90_batch.cuh>
        using Traits = flashinfer::HopperPrefillTraits<\(dtype.cudaTypeName), \(headDim), \(causal), \(Self.stages), true>;
        static_assert(Traits::SMEM_BYTES == \(sharedBytes), "shared memory size (Swift: HopperBatchPrefillSpec.sharedBytes)");
        extern "C" __global__ void __launch_bounds__(Traits::NUM_THREADS, 1)
        \(entryPoint)(const __grid_constant__ flashinfer::BatchPrefillParams p, const __grid_constant__ flashinfer::sm90::TensorMap tm_q,
                      const __grid_constant__ flashinfer::sm90::TensorMap tm_k, const __grid_constant__ flashinfer::sm90::TensorMap tm_v) {
          flashinfer::hopper_batch_prefill<Traits, \(pageSize)>(p, &tm_q, &tm_k, &tm_v);
        }
        """
    }
}

/// The Hopper tier of `BatchPrefillAttention`: which plans it takes, its tensor maps, its launch.
enum CUDAHopperBatchPrefill {
    /// What a batch plan asks of the kernel.
    struct Request {
        var dtype: DType
        var kvDType: DType
        var headDim: Int
        var groupSize: Int
        var options: AttentionOptions
        /// Tokens per page, nil for ragged K/V.
        var pageSize: Int?
        var customMask: Bool
        var graphMode: Bool
        /// The FA2 tier's q tile for these requests (64: decode-like queries).
        var fa2CtaQ: Int
    }

    /// Why the Hopper batch kernel cannot run this plan on this device, or nil when it can.
    static func unsupportedReason(_ r: Request, device: Device) -> String? {
        let props = device.properties
        if props.ccMajor != 9 { return "the Hopper prefill kernels need an sm_90 GPU (this one is sm_\(props.ccMajor)\(props.ccMinor))" }
        if !device.driver.hasTensorMaps { return "the CUDA driver has no cuTensorMapEncodeTiled (CUDA 12.0 or newer)" }
        if r.dtype != .f16 && r.dtype != .bf16 { return "q must be f16 or bf16" }
        if r.kvDType != r.dtype { return "K/V must have q's dtype (FP8 K/V runs on the FA2 tier)" }
        if !HopperBatchPrefillSpec.headDims.contains(r.headDim) { return "head dim \(r.headDim) (the Hopper tier has \(HopperBatchPrefillSpec.headDims))" }
        let o = r.options
        if o.positionEncoding != .none { return "position encoding \(o.positionEncoding.name) runs on the FA2 tier" }
        if o.logitsSoftCap > 0 { return "a logits soft cap runs on the FA2 tier" }
        if o.windowLeft >= 0 { return "a sliding window runs on the FA2 tier" }
        if r.customMask { return "a custom mask runs on the FA2 tier" }
        if r.graphMode { return "CUDA-graph mode (graphCapacity) runs on the FA2 tier" }
        if r.groupSize > 128 || r.groupSize & (r.groupSize - 1) != 0 {
            return "GQA group \(r.groupSize) (the Hopper batch kernel packs a power-of-two group ≤ 128 into its 128 rows)"
        }
        if let ps = r.pageSize, !HopperBatchPrefillSpec.pageSizes.contains(ps) {
            return "page size \(ps) (the Hopper batch kernel loads pages of \(HopperBatchPrefillSpec.pageSizes.map(String.init).joined(separator: ", ")) tokens)"
        }
        return nil
    }

    /// The Hopper spec the plan runs, nil for FA2, with the reason `.auto` chose FA2 (nil when it
    /// did not); `.hopper` on a plan the kernel does not take is `unsupportedCombination`.
    /// `.auto` also keeps decode-like batches (the FA2 tier's 64-row tile: average packed query
    /// rows ≤ 64, e.g. the tensor-core decode path) on FA2, where a 128-row tile would idle.
    static func resolve(_ r: Request, device: Device) throws(FlashInferError) -> (spec: HopperBatchPrefillSpec?, fallback: String?) {
        let why = unsupportedReason(r, device: device)
        let spec = HopperBatchPrefillSpec(dtype: r.dtype, headDim: r.headDim, causal: r.options.causal, pageSize: r.pageSize ?? 0)
        switch r.options.tier {
        case .fa2: return (nil, nil)
        case .hopper:
            if let why { throw .unsupportedCombination("batch prefill tier hopper: \(why)") }
            return (spec, nil)
        case .auto:
            if let why { return (nil, why) }
            if r.fa2CtaQ < HopperBatchPrefillSpec.ctaQ {
                return (nil, "decode-like queries (average packed query rows ≤ 64) run on the FA2 tier's 64-row tile")
            }
            return (spec, nil)
        }
    }

    /// The tensor maps: Q as (D, G, Hkv, total_q) with box (64, G, 1, 128 / G) — 128 packed rows —
    /// and K / V as (D, page_size, Hkv, pages) with box (64, page_size, 1, 1) (paged) or (D, rows,
    /// Hkv) with box (64, 128, 1) (ragged); the tensors' own byte strides (an axis of extent 1 is
    /// never stepped: it gets D·2), SWIZZLE_128B, zero fill.
    static func tensorMaps(spec: HopperBatchPrefillSpec, q: Tensor, kv: CUDABatchPrefill.KVView, numKVHeads: Int,
                           groupSize: Int, driver: CUDADriver) throws(CUDAError) -> [TensorMap] {
        let es = UInt64(q.dtype.byteSize)
        let dataType: TensorMap.DataType = q.dtype == .bf16 ? .bfloat16 : .float16
        let d = UInt64(spec.headDim)
        func bytes(_ strideElements: Int64, extent: Int) -> UInt64 { extent > 1 && strideElements > 0 ? UInt64(strideElements) * es : d * es }
        let total = q.shape[0]
        let qsn = q.shape[0] > 1 ? Int64(q.strides[0]) : 0, qsh = q.shape[1] > 1 ? Int64(q.strides[1]) : 0
        let g = groupSize, hkv = numKVHeads
        let qMap = try TensorMap.encodeTiled(
            driver: driver, dataType: dataType, address: q.deviceAddress ?? 0,
            dims: [d, UInt64(g), UInt64(hkv), UInt64(max(total, 1))],
            strides: [bytes(qsh, extent: g), bytes(qsh * Int64(g), extent: hkv), bytes(qsn, extent: total)],
            box: [64, UInt32(g), 1, UInt32(HopperBatchPrefillSpec.ctaQ / g)], swizzle: .bytes128)
        guard kv.rows > 0 else { return [qMap, qMap, qMap] }  // no key anywhere: no K/V tile is loaded
        func kvMap(_ t: Tensor, _ strides: (Int64, Int64), _ pageStride: Int64) throws(CUDAError) -> TensorMap {
            if spec.pageSize > 0 {
                return try TensorMap.encodeTiled(
                    driver: driver, dataType: dataType, address: t.deviceAddress ?? 0,
                    dims: [d, UInt64(spec.pageSize), UInt64(hkv), UInt64(kv.rows)],
                    strides: [bytes(strides.0, extent: spec.pageSize), bytes(strides.1, extent: hkv), bytes(pageStride, extent: kv.rows)],
                    box: [64, UInt32(spec.pageSize), 1, 1], swizzle: .bytes128)
            }
            return try TensorMap.encodeTiled(
                driver: driver, dataType: dataType, address: t.deviceAddress ?? 0,
                dims: [d, UInt64(kv.rows), UInt64(hkv)], strides: [bytes(strides.0, extent: kv.rows), bytes(strides.1, extent: hkv)],
                box: [64, UInt32(HopperPrefillSpec.ctaKV), 1], swizzle: .bytes128)
        }
        return [qMap, try kvMap(kv.k, kv.kStrides, kv.kPageStride), try kvMap(kv.v, kv.vStrides, kv.vPageStride)]
    }
}

/// The Hopper batch-prefill entries of `kernelCatalog()` (compiled for sm_90a only, like every
/// catalogue kernel): both dtypes × head dims × causal, paged at page 16 and ragged, and the other
/// page sizes at f16 D 128 causal.
func hopperBatchPrefillCatalog() -> [(name: String, spec: any KernelSpec)] {
    var specs: [HopperBatchPrefillSpec] = []
    for dtype in [DType.f16, .bf16] {
        for d in HopperBatchPrefillSpec.headDims {
            for causal in [false, true] {
                for ps in [16, 0] { specs.append(HopperBatchPrefillSpec(dtype: dtype, headDim: d, causal: causal, pageSize: ps)) }
            }
        }
    }
    for ps in HopperBatchPrefillSpec.pageSizes where ps != 16 {
        specs.append(HopperBatchPrefillSpec(dtype: .f16, headDim: 128, causal: true, pageSize: ps))
    }
    return specs.map { ("batch prefill \($0.name)", $0) }
}
