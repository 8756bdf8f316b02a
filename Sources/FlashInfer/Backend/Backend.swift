import FlashInferCUDA

/// Where an attention call runs.
///
/// A closed choice the caller writes at a call site (`.cpu`, `.cuda(stream)`,
/// `Backend.automatic()`). The library reaches the chosen backend through `implementation`, an
/// internal `BackendImplementation`: the only place this enum is switched on.
public enum Backend: Sendable {
    /// The CPU reference (host tensors in, host tensors out). Always available.
    case cpu
    /// The GPU, on this stream (device tensors in and out).
    case cuda(Stream)

    /// The GPU when a CUDA device is present, on the device's library stream (non-blocking,
    /// shared: `Device.libraryStream()`), else the CPU.
    public static func automatic() -> Backend {
        if let d = try? Device.open(), let s = try? d.libraryStream() { return .cuda(s) }
        return .cpu
    }

    /// This backend moved to `stream` (a wrapper's `rebind(stream:)`): `.cuda(stream)` when this is
    /// CUDA on the same device; the CPU backend has no stream to move to.
    func rebound(to stream: Stream) throws(FlashInferError) -> Backend {
        // Through the implementation's placement (this enum is switched on in one place only).
        guard case .device(let device) = implementation.placement else {
            throw .backendMismatch(what: "rebind(stream:)", rule: "moves a CUDA wrapper to another stream; this wrapper runs on the CPU")
        }
        guard device === stream.device else { throw .deviceMismatch(tensor: "stream (rebind: the plan's device)") }
        return .cuda(stream)
    }

    /// "cpu", or "cuda:INDEX (DEVICE NAME)".
    public var name: String { implementation.name }

    /// The backend's implementation: the one dispatch point of the library.
    var implementation: any BackendImplementation {
        switch self {
        case .cpu: CPUBackend()
        case .cuda(let stream): CUDABackend(stream: stream)
        }
    }
}

/// What a backend does for the API: one implementation per backend, `CPUBackend`
/// (`Backend/CPU/`, the Float64 reference) and `CUDABackend` (`Backend/CUDA/`, the kernels on a
/// stream). The public functions and wrappers validate their inputs (once, for the backend's
/// `placement`) and then call through `Backend.implementation`, so a backend's code (where its
/// tensors live, how it allocates, plans on the device and launches) is in its own type, not in a
/// `switch` in every entry point.
///
/// Why an internal protocol behind the public enum, rather than a public protocol or the enum alone:
/// - The enum stays the user-facing value. It is what the README and callers write
///   (`backend: .cuda(stream)`), it is `Sendable` and cheap to pass, and its set is closed: a backend
///   needs the kernels and the reference that live in this module, so users do not add backends.
/// - Switching on the enum in each entry point (17 sites before issue 11) spread each backend over
///   every API file; a protocol puts each backend's side of every operation in one type, and a new
///   backend is one type and one `case`, with the compiler listing what it must implement.
/// - A public protocol would make the requirements public: the validated problem, the wrappers'
///   device plans and the kernel launchers would become API. Internal, they can change freely.
protocol BackendImplementation: Sendable {
    /// For logs and reports: "cpu", "cuda:0 (NVIDIA H200)".
    var name: String { get }
    /// Where every tensor of a call must be: validation checks it, once.
    var placement: Placement { get }
    /// The SM count the batch planners size their grids for. The CPU plans as for an H100, so its
    /// schedules (which the tests compare with the GPU's) have the GPU's shape.
    var multiprocessorCount: Int { get }
    /// Whether the backend runs CUDA-graph mode: the wrappers' fixed capacities and padded grids
    /// apply (the CPU ignores a wrapper's `graphCapacity`).
    var runsCUDAGraphs: Bool { get }
    /// The device as batch decode's path model sees it (`DecodePathModel`); nil where there is no
    /// choice to make (the CPU).
    var decodePathHardware: DecodePathModel.Hardware? { get }

    /// `tensor` where this backend computes (`Tensor.moved(to:)`).
    func move(_ tensor: Tensor) throws(FlashInferError) -> Tensor

    /// Single decode or prefill of a validated problem.
    func singleAttention(_ problem: SingleAttentionProblem, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput

    /// The state merges, on validated `[n, h, d]` states (`mergeStates`: `[n, states, h, d]`).
    func mergeState(va: Tensor, sa: Tensor, vb: Tensor, sb: Tensor, n: Int, h: Int, d: Int) throws(FlashInferError) -> (v: Tensor, s: Tensor)
    func mergeStateInPlace(v: Tensor, s: Tensor, vOther: Tensor, sOther: Tensor, mask: [UInt8]?, n: Int, h: Int, d: Int) throws(FlashInferError)
    func mergeStates(v: Tensor, s: Tensor, n: Int, states: Int, h: Int, d: Int) throws(FlashInferError) -> (v: Tensor, s: Tensor)

    /// Writes validated appended keys and values into the cache.
    /// Refuses, by name, the options this backend's kernels do not implement yet (the CPU
    /// reference implements them all). Called by validation before any work.
    func requireSupport(_ options: AttentionOptions, entry: String) throws(FlashInferError)

    /// Block-sparse attention: the plan of a validated pattern (the CUDA backend plans the batch
    /// prefill it runs as and returns it; the CPU has nothing to plan, nil).
    func planBlockSparse(_ wrapper: BlockSparseAttention, pattern: BlockSparsePattern, mask: BlockSparseMask?, numQOHeads: Int,
                         numKVHeads: Int, headDim: Int, qDType: DType, kvDType: DType,
                         options: AttentionOptions) throws(FlashInferError) -> BatchPrefillAttention?
    /// Block-sparse attention of the wrapper's planned pattern on validated tensors, new output tensors.
    func blockSparseAttention(_ wrapper: BlockSparseAttention, q: Tensor, k: Tensor, v: Tensor, pattern: BlockSparsePattern,
                              numQOHeads: Int, numKVHeads: Int, headDim: Int, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput
    /// Block-sparse attention into validated caller buffers (device only).
    func runBlockSparse(_ wrapper: BlockSparseAttention, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?) throws(FlashInferError)

    /// Appends validated K/V: a copy when they have the cache's dtype (scales 1), else quantized
    /// into the FP8 cache as `quantize(_:to:scale:)` does.
    func appendPagedKVCache(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache,
                            table: PageTable, kScale: Float, vScale: Float) throws(FlashInferError)

    /// Batch decode: the schedule and the device side of a validated plan (the wrapper holds the
    /// previous one, which the CUDA backend reuses).
    func planBatchDecode(_ wrapper: BatchDecodeWithPagedKVCache, table: PageTable, numQOHeads: Int, numKVHeads: Int,
                         headDim: Int, dtype: DType, kvDType: DType, options: AttentionOptions, numPagesInCache: Int?,
                         tensorCores: Bool) throws(FlashInferError) -> BatchDecodeExecution
    /// Batch decode: runs the wrapper's plan on validated inputs.
    func runBatchDecode(_ wrapper: BatchDecodeWithPagedKVCache, q: Tensor, cache: PagedKVCache, table: PageTable,
                        returnLSE: Bool, out: Tensor?, lseOut: Tensor?, rows: Int) throws(FlashInferError) -> AttentionOutput

    /// Batch prefill: the device side of a validated schedule (nil on the host).
    func uploadBatchPrefillPlan(_ plan: BatchPrefillPlan, kvLens: [Int], kvStarts: [Int32], pageIndices: [Int32]?,
                                mask: (packed: [UInt8], indptr: [Int32])?,
                                spec: PrefillSpec, hopper: HopperBatchPrefillSpec?, numQOHeads: Int, packedRows: Int,
                                previous: BatchPrefillDevicePlan?,
                                graph: BatchPrefillDevicePlan.GraphLayout?) throws(FlashInferError) -> BatchPrefillDevicePlan?
    /// Batch prefill: runs the wrapper's plan, returning new tensors.
    func runBatchPrefill(_ wrapper: BatchPrefillAttention, q: Tensor, kv: BatchKV, returnLSE: Bool) throws(FlashInferError) -> AttentionOutput
    /// Batch prefill: runs the wrapper's plan into caller buffers (device only).
    func runBatchPrefill(_ wrapper: BatchPrefillAttention, q: Tensor, kv: BatchKV, out: Tensor, lse: Tensor?) throws(FlashInferError)

    /// Cascade: the per-level output and LSE buffers of every level but the last (none on the host).
    func cascadeScratch(levels: Int, totalQueries: Int, numQOHeads: Int, headDim: Int,
                        dtype: DType) throws(FlashInferError) -> (levels: [(o: Tensor, lse: Tensor)], lse: Tensor?)
    /// Cascade: runs every planned level and merges the states.
    func runCascade(_ wrapper: MultiLevelCascadeAttention, q: Tensor, cache: PagedKVCache, returnLSE: Bool, out: Tensor?,
                    lse: Tensor?) throws(FlashInferError) -> AttentionOutput

    // MARK: Norms, RoPE, activations (Ops/)

    /// A new contiguous tensor where this backend computes (an op's output; contents unspecified).
    func allocate(shape: [Int], dtype: DType) throws(FlashInferError) -> Tensor
    /// RMSNorm (plain, fused-add, Gemma) or LayerNorm of a validated call, into its outputs.
    func norm(_ call: NormCall) throws(FlashInferError)
    /// A gated activation of a validated call, into its output.
    func gatedActivation(_ call: ActivationCall) throws(FlashInferError)
    /// RoPE of a validated call, into its outputs (which may be its inputs).
    func rope(_ call: RopeCall) throws(FlashInferError)

    /// Sampling (`Sampling.swift`): one token per row of a validated `[batch, vocab]` input, from the
    /// distribution `filter` leaves (`Backend/CPU/CPUSampling.swift`, `Backend/CUDA/CUDASampling.swift`).
    /// `philox`: by value, or a generator (validated to live where the backend computes) read when
    /// the call runs and advanced by its increment after.
    func sample(_ probs: Tensor, filter: SamplingFilter, philox: PhiloxSource, batch: Int, vocab: Int) throws(FlashInferError) -> SamplingOutput
    /// A renorm, mask or softmax of a validated `[batch, vocab]` input: a new tensor of its shape and dtype.
    func samplingOp(_ op: SamplingOp, _ x: Tensor, batch: Int, vocab: Int) throws(FlashInferError) -> Tensor
    /// Gumbel-max sampling from validated `[batch, vocab]` logits (`SamplingFromLogits.swift`).
    func samplingFromLogits(_ logits: Tensor, philox: PhiloxSource, batch: Int, vocab: Int) throws(FlashInferError) -> SamplingOutput
    /// Chain speculative sampling of a validated call (`ChainSpeculative.swift`).
    func chainSpeculativeSampling(_ call: ChainSpeculativeCall) throws(FlashInferError) -> ChainSpeculativeOutput
}

/// A batch decode plan as a backend made it: the schedule, and the device side of the path it
/// takes (the CUDA-core kernel's `CUDABatchDecode`, or the tensor-core path's prefill wrapper).
struct BatchDecodeExecution {
    var plan: BatchDecodePlan
    var device: CUDABatchDecode? = nil
    var tensorCorePath: BatchPrefillAttention? = nil
}

extension Tensor {
    /// This tensor where `backend` computes: itself for the CPU (host tensors; a device tensor is
    /// copied back after its last write), a device copy for CUDA (unless it is already on that
    /// device), allocated and uploaded in the backend stream's order without a host wait.
    public func moved(to backend: Backend) throws(FlashInferError) -> Tensor {
        try backend.implementation.move(self)
    }
}
