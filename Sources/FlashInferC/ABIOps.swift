// Norms, gated activations and RoPE through the C ABI (flashinfer_swift.h, "norm / activation /
// RoPE"). CUDA tensors: the GPU kernels on the caller's stream, reading and writing the caller's
// memory in place. CPU tensors: the CPU reference on host copies, whose results are copied back into
// the caller's outputs (and, for the in-place ops, into the inputs).
import CFlashInferABI
import FlashInfer
import FlashInferCUDA

/// Where an op runs: the backend and how its tensors are read, from the device of its first tensor.
struct OpSide {
    let device: Device?
    let backend: Backend

    init(first: UnsafePointer<DLTensor>?, stream: UnsafeMutableRawPointer?) throws(ABIFailure) {
        if let d = try cudaDevice(first) {
            device = d
            backend = .cuda(Stream.external(stream.map { OpaquePointer($0) }, device: d))
        } else {
            device = nil
            backend = .cpu
        }
    }

    var isCUDA: Bool { device != nil }

    /// The caller's tensor: borrowed device memory (CUDA) or a host copy (CPU).
    func tensor(_ p: UnsafePointer<DLTensor>?, name: String) throws(ABIFailure) -> Tensor {
        if let device { return try deviceTensor(p, name: name, device: device) }
        return try hostTensor(p, name: name)
    }

    /// A result the library allocated (contiguous) copied into the caller's tensor of the same shape
    /// and dtype: on CUDA a device-to-device copy on the call's stream (the caller's tensor must be
    /// contiguous), on the CPU element by element through the caller's strides.
    func copyResult(_ r: Tensor, into p: UnsafePointer<DLTensor>?, name: String) throws(ABIFailure) {
        guard let device, case .cuda(let stream) = backend else { return try write(r, into: p, name: name) }
        let o = try deviceTensor(p, name: name, device: device)
        guard o.shape == r.shape, o.dtype == r.dtype else {
            throw .invalid("\(name): shape \(o.shape) \(o.dtype.rawValue), expected \(r.shape) \(r.dtype.rawValue)")
        }
        guard o.isContiguous else { throw .invalid("\(name): strides \(o.strides): a CUDA output must be contiguous") }
        let n = r.count * r.dtype.byteSize
        guard n > 0, let ob = o.buffer, let rb = r.buffer, let oa = o.deviceAddress, let ra = r.deviceAddress else { return }
        do throws(CUDAError) {
            try ob.copy(from: rb, byteCount: n, sourceOffset: Int(ra - rb.address), offset: Int(oa - ob.address), stream: stream)
        } catch { throw ABIFailure(.cuda(error)) }
    }

    /// CPU only: a result (a host tensor) copied into the caller's tensor. Nothing on CUDA, where
    /// the library wrote the caller's memory itself.
    func writeBack(_ t: Tensor, into p: UnsafePointer<DLTensor>?, name: String) throws(ABIFailure) {
        guard device == nil else { return }
        try write(t, into: p, name: name)
    }
}

// MARK: - norms

@_cdecl("flashinfer_swift_norm")
public func flashinfer_swift_norm(_ kind: Int32, _ input: UnsafePointer<DLTensor>?, _ residual: UnsafePointer<DLTensor>?,
                                  _ weight: UnsafePointer<DLTensor>?, _ bias: UnsafePointer<DLTensor>?,
                                  _ out: UnsafePointer<DLTensor>?, _ eps: Double, _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in
        let side = try OpSide(first: input, stream: stream)
        let x = try side.tensor(input, name: "input"), w = try side.tensor(weight, name: "weight")
        switch kind {
        case Int32(FLASHINFER_SWIFT_NORM_RMS), Int32(FLASHINFER_SWIFT_NORM_GEMMA_RMS):
            let gemma = kind == Int32(FLASHINFER_SWIFT_NORM_GEMMA_RMS)
            let o = side.isCUDA ? try side.tensor(out, name: "out") : nil
            let r = try library { () throws(FlashInferError) in
                gemma ? try gemmaRMSNorm(x, weight: w, eps: eps, out: o, backend: side.backend)
                    : try rmsnorm(x, weight: w, eps: eps, out: o, backend: side.backend)
            }
            try side.writeBack(r, into: out, name: "out")
        case Int32(FLASHINFER_SWIFT_NORM_FUSED_ADD_RMS), Int32(FLASHINFER_SWIFT_NORM_GEMMA_FUSED_ADD_RMS):
            let res = try side.tensor(residual, name: "residual")
            let gemma = kind == Int32(FLASHINFER_SWIFT_NORM_GEMMA_FUSED_ADD_RMS)
            try library { () throws(FlashInferError) in
                if gemma {
                    try gemmaFusedAddRMSNormInPlace(input: x, residual: res, weight: w, eps: eps, backend: side.backend)
                } else {
                    try fusedAddRMSNormInPlace(input: x, residual: res, weight: w, eps: eps, backend: side.backend)
                }
            }
            try side.writeBack(x, into: input, name: "input")
            try side.writeBack(res, into: residual, name: "residual")
        case Int32(FLASHINFER_SWIFT_NORM_LAYER):
            let b = try side.tensor(bias, name: "beta")
            let o = side.isCUDA ? try side.tensor(out, name: "out") : nil
            let r = try library { () throws(FlashInferError) in
                try layernorm(x, gamma: w, beta: b, eps: eps, out: o, backend: side.backend)
            }
            try side.writeBack(r, into: out, name: "out")
        default:
            throw .invalid("norm kind \(kind) is not one of RMS (0), GEMMA_RMS (1), FUSED_ADD_RMS (2), GEMMA_FUSED_ADD_RMS (3), LAYER (4)")
        }
    }
}

// MARK: - gated activations

@_cdecl("flashinfer_swift_activation")
public func flashinfer_swift_activation(_ kind: Int32, _ input: UnsafePointer<DLTensor>?, _ out: UnsafePointer<DLTensor>?,
                                        _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in
        let act: GatedActivation
        switch kind {
        case Int32(FLASHINFER_SWIFT_ACT_SILU): act = .silu
        case Int32(FLASHINFER_SWIFT_ACT_GELU): act = .gelu
        case Int32(FLASHINFER_SWIFT_ACT_GELU_TANH): act = .geluTanh
        default: throw .invalid("activation kind \(kind) is not one of SILU (0), GELU (1), GELU_TANH (2)")
        }
        let side = try OpSide(first: input, stream: stream)
        let x = try side.tensor(input, name: "input")
        let o = side.isCUDA ? try side.tensor(out, name: "out") : nil
        let r = try library { () throws(FlashInferError) in
            try gatedActivationAndMul(x, activation: act, out: o, backend: side.backend)
        }
        try side.writeBack(r, into: out, name: "out")
    }
}

// MARK: - RoPE

func ropeOptions(_ p: UnsafePointer<flashinfer_swift_rope_options>?) throws(ABIFailure) -> RopeOptions {
    guard let o = p?.pointee else { return RopeOptions() }
    guard o.rotary_dim >= 0 else { throw .invalid("rotary_dim = \(o.rotary_dim): must be > 0 (0: head_dim)") }
    let scaling: RopeScaling = o.llama31 != 0
        ? .llama31(scale: o.rope_scale, lowFreqFactor: o.low_freq_factor, highFreqFactor: o.high_freq_factor,
                   oldContextLength: o.old_context_len)
        : .linear(scale: o.rope_scale)
    return RopeOptions(rotaryDim: o.rotary_dim > 0 ? Int(o.rotary_dim) : nil, interleave: o.interleave != 0, theta: o.rope_theta,
                       scaling: scaling)
}

@_cdecl("flashinfer_swift_rope")
public func flashinfer_swift_rope(
    _ q: UnsafePointer<DLTensor>?, _ k: UnsafePointer<DLTensor>?, _ qOut: UnsafePointer<DLTensor>?, _ kOut: UnsafePointer<DLTensor>?,
    _ indptr: UnsafePointer<Int32>?, _ offsets: UnsafePointer<Int32>?, _ batchSize: Int32, _ posIds: UnsafePointer<Int32>?,
    _ nnz: Int32, _ options: UnsafePointer<flashinfer_swift_rope_options>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        try abiRope(q, k, qOut, kOut, side: try OpSide(first: q, stream: stream), positions: { _ throws(ABIFailure) in
            if indptr != nil {
                guard batchSize >= 0 else { throw .invalid("batch_size \(batchSize) < 0") }
                return .ragged(try int32s(indptr, Int(batchSize) + 1, name: "indptr"), try int32s(offsets, Int(batchSize), name: "offsets"))
            }
            guard nnz >= 0 else { throw .invalid("nnz \(nnz) < 0") }
            return .posIds(try int32s(posIds, Int(nnz), name: "pos_ids"))
        }, options: options)
    }
}

@_cdecl("flashinfer_swift_rope_cos_sin_cache")
public func flashinfer_swift_rope_cos_sin_cache(
    _ positions: UnsafePointer<Int32>?, _ nnz: Int32, _ query: UnsafePointer<DLTensor>?, _ key: UnsafePointer<DLTensor>?,
    _ headSize: Int32, _ cosSinCache: UnsafePointer<DLTensor>?, _ isNeox: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard nnz >= 0 else { throw .invalid("nnz \(nnz) < 0") }
        let pos = try int32s(positions, Int(nnz), name: "positions")
        let side = try OpSide(first: query, stream: stream)
        let qt = try side.tensor(query, name: "query"), kt = try side.tensor(key, name: "key")
        let cache = try side.tensor(cosSinCache, name: "cos_sin_cache")
        try library { () throws(FlashInferError) in
            try applyRopeWithCosSinCacheInPlace(positions: pos, query: qt, key: kt, headSize: Int(headSize), cosSinCache: cache,
                                                isNeox: isNeox != 0, backend: side.backend)
        }
        try side.writeBack(qt, into: query, name: "query")
        try side.writeBack(kt, into: key, name: "key")
    }
}
