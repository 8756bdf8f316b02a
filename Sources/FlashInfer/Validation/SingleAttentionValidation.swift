import FlashInferCUDA

/// Shapes of a single-request attention call, derived from validated tensors.
public struct SingleAttentionShape: Sendable, Hashable {
    public var qoLen: Int
    public var kvLen: Int
    public var numQOHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var groupSize: Int { numQOHeads / numKVHeads }
}

/// Head dimensions the GPU kernels are built for. Every other value is rejected before launch
/// (upstream crashed or returned garbage on unsupported head dims).
public let supportedHeadDims = [64, 128, 256]

/// A single-request attention call that passed validation: the one value the backends and the
/// launchers take, and check nothing of again.
///
/// Only `validateSingle` makes one (the initialiser is file-private), so holding a problem means
/// every rule held: shapes, dtypes, head dim, options, strides; every tensor where the backend
/// computes (`Placement`: host, or the stream's device); `out` and `lse`, when given, of the right
/// shape, dtype and contiguity; on a device, the alignment the kernels' 16-byte loads need.
struct SingleAttentionProblem: Sendable {
    let q: Tensor, k: Tensor, v: Tensor
    let shape: SingleAttentionShape
    /// Decode (`q` is `[Hq, D]`, one query) or prefill (`[qoLen, Hq, D]`).
    let decode: Bool
    let options: AttentionOptions
    /// The caller's output buffer (device only), or nil: the backend allocates one.
    let out: Tensor?
    /// The caller's LSE buffer (device only), or nil.
    let lse: Tensor?
    /// Prefill only: the request's custom mask (`qoLen × kvLen`, validated), which replaces `causal`.
    let customMask: CustomMask?
    var dtype: DType { q.dtype }
    /// The LSE's shape: `[Hq]` for decode, `[qoLen, Hq]` for prefill.
    var lseShape: [Int] { decode ? [shape.numQOHeads] : [shape.qoLen, shape.numQOHeads] }

    fileprivate init(q: Tensor, k: Tensor, v: Tensor, shape: SingleAttentionShape, decode: Bool, options: AttentionOptions,
                     out: Tensor?, lse: Tensor?, customMask: CustomMask?) {
        (self.q, self.k, self.v, self.shape, self.decode, self.options, self.out, self.lse) = (q, k, v, shape, decode, options, out, lse)
        self.customMask = customMask
    }
}

/// Validates a single-request call, once, for the backend that will run it. `q` is `[Hq, D]` for
/// decode or `[qoLen, Hq, D]` for prefill; k and v are `[kvLen, Hkv, D]` (NHD) or
/// `[Hkv, kvLen, D]` (HND); `out` (q's shape and dtype, contiguous) and `lse` (f32
/// `SingleAttentionProblem.lseShape`, contiguous) are caller buffers, device only.
/// Pure: no launches; every rule is a specific `FlashInferError`, thrown before anything runs.
func validateSingle(q: Tensor, k: Tensor, v: Tensor, decode: Bool, options: AttentionOptions, placement: Placement,
                    out: Tensor? = nil, lse: Tensor? = nil, customMask: CustomMask? = nil) throws(FlashInferError) -> SingleAttentionProblem {
    let qRank = decode ? 2 : 3
    guard q.rank == qRank else { throw .rank(tensor: "q", expected: qRank, got: q.rank) }
    guard k.rank == 3 else { throw .rank(tensor: "k", expected: 3, got: k.rank) }
    guard v.rank == 3 else { throw .rank(tensor: "v", expected: 3, got: v.rank) }
    let qoLen = decode ? 1 : q.shape[0]
    let numQOHeads = q.shape[qRank - 2]
    let headDim = q.shape[qRank - 1]
    let (seqAxis, headAxis) = options.layout == .nhd ? (0, 1) : (1, 0)
    let axisNames = options.layout == .nhd ? ["kv_len", "num_kv_heads"] : ["num_kv_heads", "kv_len"]
    let kvLen = k.shape[seqAxis]
    let numKVHeads = k.shape[headAxis]
    // head_dim: when q disagrees with k and v, which agree with each other, q is the odd one out
    // and is named (unless q's value is a supported one and theirs is not); otherwise k is.
    if k.shape[2] != headDim {
        let kvAgree = v.shape[2] == k.shape[2]
        if kvAgree && (supportedHeadDims.contains(k.shape[2]) || !supportedHeadDims.contains(headDim)) {
            throw .shape(tensor: "q", axis: qRank - 1, name: "head_dim", expected: "\(k.shape[2]) (k's and v's head_dim)", got: headDim)
        }
        throw .shape(tensor: "k", axis: 2, name: "head_dim", expected: "\(headDim) (q's head_dim)", got: k.shape[2])
    }
    guard supportedHeadDims.contains(headDim) else { throw .unsupportedHeadDim(headDim, supported: supportedHeadDims) }
    guard numQOHeads > 0 else { throw .shape(tensor: "q", axis: qRank - 2, name: "num_qo_heads", expected: "> 0", got: numQOHeads) }
    guard numKVHeads > 0 else { throw .shape(tensor: "k", axis: headAxis, name: "num_kv_heads", expected: "> 0", got: numKVHeads) }
    for axis in 0..<3 where v.shape[axis] != k.shape[axis] {
        let name = axis == 2 ? "head_dim" : axisNames[axis]
        throw .shape(tensor: "v", axis: axis, name: name, expected: "\(k.shape[axis]) (k's)", got: v.shape[axis])
    }
    guard numQOHeads % numKVHeads == 0 else { throw .groupSize(numQOHeads: numQOHeads, numKVHeads: numKVHeads) }
    try validateQKVDTypes(q: q.dtype, kv: k.dtype)  // K/V: q's dtype, or FP8 (e4m3 / e5m2) with kScale / vScale
    guard v.dtype == k.dtype else { throw .dtype(tensor: "v", expected: k.dtype.rawValue + " (k's dtype)", got: v.dtype) }
    if let customMask {
        guard !decode else { throw .unsupportedCombination("a custom mask in decode (single prefill and batch prefill take one)") }
        try validateCustomMask(customMask, qoLen: qoLen, kvLen: kvLen)
    } else if !decode && options.causal && qoLen > kvLen {
        throw .causalQueryLongerThanKV(qoLen: qoLen, kvLen: kvLen)
    }
    guard options.windowLeft >= -1 else { throw .option(name: "window_left", value: "\(options.windowLeft)", rule: "must be >= 0, or -1 for no window") }
    try validateKVScales(options)
    guard options.logitsSoftCap >= 0, options.logitsSoftCap.isFinite else {
        throw .option(name: "logits_soft_cap", value: "\(options.logitsSoftCap)", rule: "must be finite and >= 0 (0 disables it)")
    }
    if let s = options.smScale, !(s.isFinite && s > 0) { throw .option(name: "sm_scale", value: "\(s)", rule: "must be finite and > 0") }
    if case .ropeLlama(let scale, let theta) = options.positionEncoding, !(scale > 0 && theta > 0 && scale.isFinite && theta.isFinite) {
        throw .option(name: "rope", value: "scale \(scale), theta \(theta)", rule: "rope_scale and rope_theta must be finite and > 0")
    }
    // The last axis must be contiguous (16-byte vector loads); other strides are free.
    for (n, t) in [("q", q), ("k", k), ("v", v)] where t.strides.last != 1 && t.shape.last! > 1 {
        throw .strides(tensor: n, strides: t.strides, rule: "the head_dim axis must have stride 1")
    }
    let shape = SingleAttentionShape(qoLen: qoLen, kvLen: kvLen, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim)
    let lseShape = decode ? [numQOHeads] : [qoLen, numQOHeads]
    try checkPlacement([("q", q), ("k", k), ("v", v)], placement)
    switch placement {
    case .host:
        if out != nil || lse != nil {
            throw .backendMismatch(what: out != nil ? "out" : "lse", rule: "the CPU backend returns new host tensors; out is for the CUDA backend")
        }
    case .device:
        try checkPlacement((out.map { [("out", $0)] } ?? []) + (lse.map { [("lse", $0)] } ?? []), placement)
        if let out {
            guard out.shape == q.shape else {
                throw .shape(tensor: "out", axis: 0, name: "shape \(out.shape)", expected: "q's shape \(q.shape)", got: out.shape.first ?? 0)
            }
            guard out.dtype == q.dtype else { throw .dtype(tensor: "out", expected: q.dtype.rawValue, got: out.dtype) }
            guard out.isContiguous else { throw .strides(tensor: "out", strides: out.strides, rule: "must be contiguous") }
        }
        if let lse {
            guard lse.dtype == .f32 else { throw .dtype(tensor: "lse", expected: "f32", got: lse.dtype) }
            guard lse.shape == lseShape, lse.isContiguous else {
                throw .shape(tensor: "lse", axis: 0, name: "shape \(lse.shape)", expected: "contiguous f32 \(lseShape)", got: lse.shape.first ?? 0)
            }
        }
        // The kernels' 16-byte vector loads (each kernel's rule lives with its launcher).
        if decode {
            try CUDADecodeLaunch.checkVectorAligned(q: q, k: k, v: v)
        } else {
            try CUDAPrefill.checkRowsAligned(q: q, k: k, v: v, out: out, layout: options.layout)
        }
    }
    // A custom mask replaces the causal mask (upstream's mask modes are exclusive).
    var resolved = options
    if customMask != nil { resolved.causal = false }
    return SingleAttentionProblem(q: q, k: k, v: v, shape: shape, decode: decode, options: resolved, out: out, lse: lse,
                                  customMask: customMask)
}
