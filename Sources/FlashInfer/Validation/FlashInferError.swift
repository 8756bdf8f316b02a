import FlashInferCUDA

/// Every error the library throws for bad input, before any launch; CUDA failures are wrapped.
///
/// Messages name the tensor, the axis and the rule, e.g.
/// `k: axis 1 (num_kv_heads) is 3, but q's 32 heads are not divisible by it`.
public enum FlashInferError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A tensor has the wrong number of dimensions.
    case rank(tensor: String, expected: Int, got: Int)
    /// A dimension disagrees with what another tensor or the rule requires.
    case shape(tensor: String, axis: Int, name: String, expected: String, got: Int)
    /// Two tensors that must share a dtype do not, or a dtype is not supported here.
    case dtype(tensor: String, expected: String, got: DType)
    /// A head dimension the kernels are not built for.
    case unsupportedHeadDim(Int, supported: [Int])
    /// Query heads not a multiple of KV heads.
    case groupSize(numQOHeads: Int, numKVHeads: Int)
    /// A tensor that must be on the GPU is on the host (or the reverse).
    case placement(tensor: String, expected: String)
    /// A tensor (or the stream, or a workspace) on another device than the call's: the backend
    /// stream's device, which every tensor of the call must share.
    case deviceMismatch(tensor: String)
    /// A stride pattern the kernel does not support (e.g. the last axis not contiguous).
    case strides(tensor: String, strides: [Int], rule: String)
    /// A scalar option out of its range (`window_left`, `sm_scale`, `page_size`, …): a value the
    /// caller chose in `AttentionOptions` or an API argument. Not for the library's own limits
    /// (those are `capacityExceeded`, `kernelDoesNotFit`, `planMismatch`, `workspaceTooSmall`)
    /// or for measurement overrides (`benchOverride`).
    case option(name: String, value: String, rule: String)
    /// `run()` on a wrapper that has no plan yet.
    case notPlanned(wrapper: String)
    /// A plan does not fit a CUDA-graph-mode wrapper's fixed capacity (or its fixed kernel).
    case capacityExceeded(what: String, value: String, capacity: String)
    /// An object used with another backend than the one it was made or planned for (e.g. `out`
    /// on the CPU backend, a CPU plan run on device buffers), or a missing stream.
    case backendMismatch(what: String, rule: String)
    /// A kernel the plan needs cannot run on this device: with its shared memory (and registers)
    /// no CTA is resident on an SM.
    case kernelDoesNotFit(kernel: String, device: String, reason: String)
    /// A planned launch (`CUDADecodeLaunch`) run on tensors other than the problem it was planned
    /// for: another shape or dtype.
    case planMismatch(what: String, planned: String, got: String)
    /// A caller-provided workspace smaller than the planned launch needs.
    case workspaceTooSmall(bytes: Int, needed: Int)
    /// A measurement override (`@_spi(Bench)`: a forced split, the decode pipeline's stages and
    /// keys per slot, a prefill tile, timeline buffers) outside what the kernels are built for.
    case benchOverride(name: String, value: String, rule: String)
    /// Options that are valid alone but not together, or an input that does not match the plan's
    /// kind (a paged cache for a ragged plan).
    case unsupportedCombination(String)
    /// The CPU reference rejected the problem (its message).
    case reference(String)
    /// Causal attention with more queries than keys (bottom-right alignment would mask rows with no keys
    /// in a way upstream does not define).
    case causalQueryLongerThanKV(qoLen: Int, kvLen: Int)
    /// An index array problem (indptr not starting at 0, not monotonic, index out of range...).
    case indices(array: String, position: Int, rule: String)
    /// A CUDA or NVRTC failure.
    case cuda(CUDAError)

    public var description: String {
        switch self {
        case .rank(let t, let e, let g): "\(t): expected \(e) dimensions, got \(g)"
        case .shape(let t, let axis, let name, let e, let g): "\(t): axis \(axis) (\(name)) is \(g), expected \(e)"
        case .dtype(let t, let e, let g): "\(t): dtype \(g.rawValue), expected \(e)"
        case .unsupportedHeadDim(let d, let s): "head_dim \(d) is not supported (supported: \(s.map(String.init).joined(separator: ", ")))"
        case .groupSize(let q, let k): "num_qo_heads \(q) is not divisible by num_kv_heads \(k)"
        case .placement(let t, let e): "\(t): must be in \(e) memory"
        case .deviceMismatch(let t): "\(t): on another device than the call's (the stream's and the other tensors')"
        case .strides(let t, let s, let r): "\(t): strides \(s) not supported: \(r)"
        case .option(let n, let v, let r): "\(n) = \(v): \(r)"
        case .notPlanned(let w): "\(w): call plan() before run()"
        case .capacityExceeded(let what, let v, let c): "\(what) \(v) exceeds the CUDA-graph capacity of \(c)"
        case .backendMismatch(let what, let r): "\(what): \(r)"
        case .kernelDoesNotFit(let k, let d, let r): "kernel \(k) does not fit on \(d): \(r)"
        case .planMismatch(let what, let p, let g): "\(what): planned for \(p), got \(g)"
        case .workspaceTooSmall(let b, let n): "workspace: \(b) bytes on the stream's device, the launch needs \(n)"
        case .benchOverride(let n, let v, let r): "\(n) = \(v) (a measurement override): \(r)"
        case .unsupportedCombination(let r): "unsupported combination: \(r)"
        case .reference(let r): "the CPU reference rejected the problem: \(r)"
        case .causalQueryLongerThanKV(let q, let k): "causal attention needs qo_len (\(q)) <= kv_len (\(k))"
        case .indices(let a, let p, let r): "\(a)[\(p)]: \(r)"
        case .cuda(let e): e.description
        }
    }
}

extension FlashInferError {
    /// Runs `body`, turning CUDA errors into `.cuda`.
    static func wrap<T>(_ body: () throws(CUDAError) -> T) throws(FlashInferError) -> T {
        do { return try body() } catch { throw .cuda(error) }
    }
}
