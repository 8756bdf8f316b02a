import FlashInferCUDA

/// Where an attention call runs.
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

    public var name: String {
        switch self {
        case .cpu: "cpu"
        case .cuda(let s): "cuda:\(s.device.index) (\(s.device.properties.name))"
        }
    }
}

extension Tensor {
    /// This tensor where `backend` computes: itself for the CPU (host tensors; a device tensor is
    /// copied back after its last write), a device copy for CUDA (unless it is already on that
    /// device), allocated and uploaded in the backend stream's order without a host wait.
    public func moved(to backend: Backend) throws(FlashInferError) -> Tensor {
        switch backend {
        case .cpu:
            if !isOnDevice { return self }
            let bytes = try FlashInferError.wrap { () throws(CUDAError) in try contiguousBytesChecked() }
            return Tensor(storage: .host(HostBuffer(bytes: bytes)), shape: shape, dtype: dtype)
        case .cuda(let stream):
            if let d = device, d === stream.device { return self }
            return try FlashInferError.wrap { () throws(CUDAError) in try toDevice(stream: stream) }
        }
    }
}

/// Output of an attention call: `output` has q's shape and dtype; `lse` (when asked for) is
/// Float32 `[.., Hq]`, base 2.
public struct AttentionOutput: Sendable {
    public var output: Tensor
    public var lse: Tensor?
}

/// Single-request decode attention: one query token per head against `kvLen` keys.
///
/// - Parameters:
///   - q: `[Hq, D]`, f16 or bf16.
///   - k, v: `[kvLen, Hkv, D]` (NHD) or `[Hkv, kvLen, D]` (HND), q's dtype; `Hq % Hkv == 0`.
///   - options: scale, position encoding, soft-cap, window, layout (`causal` is irrelevant).
///   - returnLSE: also return the base-2 log-sum-exp `[Hq]`.
///   - out: (CUDA) a contiguous device tensor of q's shape and dtype to write into; allocated when nil.
/// - Returns: output `[Hq, D]` (+ LSE). `kvLen == 0` gives output 0 and LSE −inf.
public func singleDecode(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions(),
                         returnLSE: Bool = false, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> AttentionOutput {
    let shape = try validateSingle(q: q, k: k, v: v, decode: true, options: options)
    return try runSingle(q: q, k: k, v: v, shape: shape, decode: true, options: options, returnLSE: returnLSE, out: out, backend: backend)
}

/// Single-request prefill or append attention: `qoLen` queries against `kvLen ≥ qoLen` keys
/// (causal masks aligned bottom-right, so append is `qoLen < kvLen`).
///
/// - Parameters:
///   - q: `[qoLen, Hq, D]`, f16 or bf16.
///   - k, v: `[kvLen, Hkv, D]` (NHD) or `[Hkv, kvLen, D]` (HND).
/// - Returns: output `[qoLen, Hq, D]` (+ LSE `[qoLen, Hq]`, base 2).
public func singlePrefill(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions(),
                          returnLSE: Bool = false, out: Tensor? = nil, backend: Backend = .cpu) throws(FlashInferError) -> AttentionOutput {
    let shape = try validateSingle(q: q, k: k, v: v, decode: false, options: options)
    return try runSingle(q: q, k: k, v: v, shape: shape, decode: false, options: options, returnLSE: returnLSE, out: out, backend: backend)
}

func runSingle(q: Tensor, k: Tensor, v: Tensor, shape: SingleAttentionShape, decode: Bool, options: AttentionOptions,
               returnLSE: Bool, out: Tensor? = nil, backend: Backend) throws(FlashInferError) -> AttentionOutput {
    try validateKVScales(options)
    switch backend {
    case .cpu:
        if out != nil { throw .backendMismatch(what: "out", rule: "the CPU backend returns new host tensors; out is for the CUDA backend") }
        for (n, t) in [("q", q), ("k", k), ("v", v)] where t.isOnDevice {
            throw .placement(tensor: n, expected: "host (the CPU backend)")
        }
        let r: ReferenceAttention.Result
        do {
            r = try ReferenceAttention.prefill(
                q: try q.toFloats(), k: try k.toFloats(), v: try v.toFloats(), qoLen: shape.qoLen, kvLen: shape.kvLen,
                numQOHeads: shape.numQOHeads, numKVHeads: shape.numKVHeads, headDim: shape.headDim,
                options: decode ? withoutCausal(options) : options)
        } catch let e as ReferenceError {
            throw .reference(e.description)
        } catch let e as CUDAError {
            throw .cuda(e)
        } catch {
            throw .reference("\(error)")
        }
        let out = Tensor.host(r.output, shape: q.shape, dtype: q.dtype)
        let lseShape = decode ? [shape.numQOHeads] : [shape.qoLen, shape.numQOHeads]
        return AttentionOutput(output: out, lse: returnLSE ? Tensor.host(r.lse, shape: lseShape, dtype: .f32) : nil)
    case .cuda(let stream):
        for (n, t) in [("q", q), ("k", k), ("v", v)] where !t.isOnDevice {
            throw .placement(tensor: n, expected: "device (the CUDA backend)")
        }
        return try CUDAAttention.single(q: q, k: k, v: v, shape: shape, decode: decode, options: options,
                                        returnLSE: returnLSE, out: out, stream: stream)
    }
}

private func withoutCausal(_ o: AttentionOptions) -> AttentionOptions {
    var o = o
    o.causal = false
    return o
}
