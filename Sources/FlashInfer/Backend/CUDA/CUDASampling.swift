internal import CFlashInferParams
import FlashInferCUDA

/// The sampling kernels (`flashinfer/sampling/sampling.cuh`): which entry point a spec instantiates.
public enum SamplingKernelKind: String, Sendable, Hashable, CaseIterable {
    /// Samplers (`sample_row<T, VEC, Mode>`), one per filter.
    case all, topK = "top_k", topP = "top_p", minP = "min_p", joint, topKFirst = "top_k_first"
    /// `renorm_row<T, VEC, false / true>`.
    case topKRenorm = "top_k_renorm", topPRenorm = "top_p_renorm"
    /// `mask_logits_row<T, VEC>`, `softmax_row<T, VEC>`.
    case topKMaskLogits = "top_k_mask_logits", softmax
    /// The check's kernel: each row's first uniforms (f32; dtype and vec ignored).
    case philox
    /// `gumbel_row<T, VEC>`: sampling_from_logits (Gumbel-max).
    case fromLogits = "from_logits"
    /// `chain_speculative_row<T, VEC>` (its parameters: `FIChainSpeculativeParams`).
    case chainSpeculative = "chain_speculative"
    /// `philox::advance_offset`: a device generator's offset advanced after a call (one thread;
    /// `FIPhiloxAdvanceParams`; dtype and vec ignored).
    case philoxAdvance = "philox_advance"

    /// The sampler for a filter.
    init(_ filter: SamplingFilter) {
        switch filter {
        case .none: self = .all
        case .topK: self = .topK
        case .topP: self = .topP
        case .minP: self = .minP
        case .topKTopP(_, _, .joint): self = .joint
        case .topKTopP(_, _, .topKFirst): self = .topKFirst
        }
    }

    var isSampler: Bool { [.all, .topK, .topP, .minP, .joint, .topKFirst].contains(self) }

    /// The C++ `sampling::Mode` of a sampler.
    var mode: String {
        switch self {
        case .topK: "kTopK"
        case .topP: "kTopP"
        case .minP: "kMinP"
        case .joint: "kJoint"
        case .topKFirst: "kTopKFirst"
        default: "kAll"
        }
    }
}

/// A sampling kernel specialisation: the kind, the element type and the vector width (`vec`
/// elements per load: 16 bytes when every row starts 16-byte aligned, else 1).
public struct SamplingSpec: KernelSpec {
    public var kind: SamplingKernelKind
    public var dtype: DType
    public var vec: Int

    public init(kind: SamplingKernelKind, dtype: DType, vec: Int) {
        precondition(vec == 1 || vec * dtype.byteSize == 16, "vec is 1 or 16 bytes")
        self.kind = kind
        self.dtype = dtype
        self.vec = vec
    }

    /// The widest spec for `[batch, vocab]` rows `rowStride` elements apart at a 16-byte aligned
    /// address (every allocation is; a view's offset may not be).
    init(kind: SamplingKernelKind, dtype: DType, vocab: Int, rowStride: Int, aligned: Bool) {
        let wide = 16 / dtype.byteSize
        self.init(kind: kind, dtype: dtype, vec: aligned && vocab % wide == 0 && rowStride % wide == 0 ? wide : 1)
    }

    public var name: String {
        kind == .philox || kind == .philoxAdvance ? "sampling_\(kind.rawValue)" : "sampling_\(kind.rawValue)_\(dtype.rawValue)_v\(vec)"
    }
    public var entryPoint: String { "fi_" + name }

    public func source() -> String {
        let t = dtype.cudaTypeName, ns = "flashinfer::sampling"
        let body: String
        switch kind {
        case .philox: body = "\(ns)::philox_uniforms_row(p);"
        case .topKRenorm: body = "\(ns)::renorm_row<\(t), \(vec), false>(p);"
        case .topPRenorm: body = "\(ns)::renorm_row<\(t), \(vec), true>(p);"
        case .topKMaskLogits: body = "\(ns)::mask_logits_row<\(t), \(vec)>(p);"
        case .softmax: body = "\(ns)::softmax_row<\(t), \(vec)>(p);"
        case .fromLogits: body = "\(ns)::gumbel_row<\(t), \(vec)>(p);"
        case .chainSpeculative: body = "\(ns)::chain_speculative_row<\(t), \(vec)>(p);"
        case .philoxAdvance: body = "flashinfer::philox::advance_offset(p);"
        default: body = "\(ns)::sample_row<\(t), \(vec), \(ns)::Mode::\(kind.mode)>(p);"
        }
        let params = kind == .chainSpeculative ? "flashinfer::ChainSpeculativeParams"
            : kind == .philoxAdvance ? "FIPhiloxAdvanceParams" : "flashinfer::SamplingParams"
        return """
            #include <flashinfer/sampling/sampling.cuh>
            extern "C" __global__ void __launch_bounds__(\(ns)::kThreads, 1)
            \(entryPoint)(const __grid_constant__ \(params) p) {
              \(body)
            }
            """
    }

    /// The catalogue's entries: every kind in f32 (vector and scalar loads), and the f16/bf16
    /// vector forms of the samplers' and the ops' templates (one each, as their code paths differ
    /// only in the load and store).
    static var catalog: [(name: String, spec: any KernelSpec)] {
        var out: [(name: String, spec: any KernelSpec)] = [("sampling philox", SamplingSpec(kind: .philox, dtype: .f32, vec: 1)),
                                                           ("sampling philox_advance", SamplingSpec(kind: .philoxAdvance, dtype: .f32, vec: 1))]
        for kind in SamplingKernelKind.allCases where kind != .philox && kind != .philoxAdvance {
            for vec in [4, 1] { out.append(("sampling \(kind.rawValue) f32 v\(vec)", SamplingSpec(kind: kind, dtype: .f32, vec: vec))) }
        }
        for d in [DType.f16, .bf16] {
            for kind in [SamplingKernelKind.topKFirst, .topKRenorm, .topKMaskLogits, .softmax, .fromLogits] {
                out.append(("sampling \(kind.rawValue) \(d.rawValue) v8", SamplingSpec(kind: kind, dtype: d, vec: 8)))
            }
        }
        return out
    }
}

/// The device side of a sampling call: the parameter struct with the per-row values in device
/// memory — host arrays uploaded (in the stream's order; the buffers live until the kernel has read
/// them), or the caller's buffers as given. Nothing is allocated for scalar or device values.
struct CUDASamplingLaunch {
    var params = FISamplingParams()
    /// The per-row values the kernel reads besides its input: top-k's, and top-p's / min-p's /
    /// the temperature's (ordered as reads before the launch).
    var rowValues: (k: DeviceBuffer?, p: DeviceBuffer?) = (nil, nil)

    /// `x` is a validated `[batch, vocab]` device tensor with unit inner stride.
    init(input x: Tensor, stream: Stream) {
        params.input = x.deviceAddress!
        params.row_stride = Int64(x.shape[0] > 1 ? x.strides[0] : x.shape[1])
        params.vocab_size = Int32(x.shape[1])
        params.top_k = 1
        params.top_p = 1
        params.min_p = 0
        params.temperature = 1
    }

    /// The scalar (address 0), or the per-row values' device address: host values uploaded, device
    /// values as they are. The buffer goes to `buffer` for the ordering.
    static func set<V, T: BitwiseCopyable & Numeric>(_ p: RowParameter<V>, stream: Stream, buffer: inout DeviceBuffer?,
                                                      _ convert: (V) -> T) throws(CUDAError) -> (T, CUdeviceptr) {
        switch p {
        case .scalar(let v): return (convert(v), 0)
        case .perRow(let vs):
            let b = try stream.device.upload(vs.map(convert), stream: stream)
            buffer = b
            return (0, b.address)
        case .device(let b):
            buffer = b
            return (0, b.address)
        }
    }

    mutating func setTopK(_ k: RowParameter<Int>, stream: Stream) throws(CUDAError) {
        (params.top_k, params.top_k_arr) = try Self.set(k, stream: stream, buffer: &rowValues.k) { Int32(clamping: $0) }
    }
    mutating func setTopP(_ p: RowParameter<Double>, stream: Stream) throws(CUDAError) {
        (params.top_p, params.top_p_arr) = try Self.set(p, stream: stream, buffer: &rowValues.p) { Float($0) }
    }
    mutating func setMinP(_ p: RowParameter<Double>, stream: Stream) throws(CUDAError) {
        (params.min_p, params.min_p_arr) = try Self.set(p, stream: stream, buffer: &rowValues.p) { Float($0) }
    }
    mutating func setTemperature(_ t: RowParameter<Double>, stream: Stream) throws(CUDAError) {
        (params.temperature, params.temperature_arr) = try Self.set(t, stream: stream, buffer: &rowValues.p) { Float($0) }
    }

    mutating func setFilter(_ filter: SamplingFilter, stream: Stream) throws(CUDAError) {
        switch filter {
        case .none: break
        case .topK(let k): try setTopK(k, stream: stream)
        case .topP(let p): try setTopP(p, stream: stream)
        case .minP(let m): try setMinP(m, stream: stream)
        case .topKTopP(let k, let p, _):
            try setTopK(k, stream: stream)
            try setTopP(p, stream: stream)
        }
    }

    /// One CTA of 1024 threads per row, on `stream`, after the last write of what it reads (its
    /// input `x`, the per-row values, `r0`: a generator's seed) and before the next use of what it
    /// writes (the output, or samples, validity and a generator's offset). No array is built (a
    /// per-step call).
    func launch(_ spec: SamplingSpec, rows: Int, stream: Stream, read x: Tensor, _ r0: DeviceBuffer? = nil,
                write w0: DeviceBuffer?, _ w1: DeviceBuffer? = nil, _ w2: DeviceBuffer? = nil) throws(CUDAError) {
        let k = try JIT.shared(for: stream.device).kernel(spec)
        try stream.order(read: x.buffer, rowValues.k, rowValues.p, r0, write: w0, w1, w2)
        try k.function.launch(grid: (rows, 1, 1), block: (1024, 1, 1), stream: stream, parameter: params)
    }
}

/// The layout the sampling kernels index: unit stride along the vocabulary, a non-negative row stride
/// of at least `vocab_size` elements (rows may be padded, not overlap), and a vocabulary below 2^31.
func validateSamplingRows(_ x: Tensor, name: String) throws(FlashInferError) {
    guard x.shape[1] <= 1 || x.strides[1] == 1, x.shape[0] <= 1 || x.strides[0] >= x.shape[1] else {
        throw .strides(tensor: name, strides: x.strides, rule: "rows must be contiguous (stride 1 along the vocabulary, row stride >= vocab_size)")
    }
    guard x.shape[1] < Int(Int32.max) else { throw .shape(tensor: name, axis: 1, name: "vocab_size", expected: "< 2^31", got: x.shape[1]) }
}

/// Whether `x`'s rows can be read by the 16-byte vector path: element 0 at a 16-byte boundary.
func sixteenByteAligned(_ x: Tensor) -> Bool { (x.deviceAddress ?? 1) % 16 == 0 }

/// The sampling entry points on the CUDA backend: validated `[batch, vocab]` device tensors, work
/// on the backend's stream.
extension CUDABackend {
    func requireSamplingLayout(_ x: Tensor, name: String) throws(FlashInferError) {
        try validateSamplingRows(x, name: name)
    }

    func sample(_ probs: Tensor, filter: SamplingFilter, philox: PhiloxSource, batch: Int, vocab: Int) throws(FlashInferError) -> SamplingOutput {
        try requireSamplingLayout(probs, name: "probs")
        return try drawRows(batch) { samples, valid throws(FlashInferError) in
            try launchSampler(probs, filter: filter, philox: philox, samples: samples, valid: valid)
        }
    }

    /// One token per row: `launch` writes `batch` Int32 samples and validity bytes into stream-ordered
    /// buffers, read back on the same stream.
    func drawRows(_ batch: Int, _ launch: (DeviceBuffer, DeviceBuffer) throws(FlashInferError) -> Void) throws(FlashInferError) -> SamplingOutput {
        guard batch > 0 else { return SamplingOutput(samples: [], valid: []) }
        let (samples, valid) = try FlashInferError.wrap { () throws(CUDAError) in
            (try stream.allocate(byteCount: 4 * batch), try stream.allocate(byteCount: batch))
        }
        try launch(samples, valid)
        return try FlashInferError.wrap { () throws(CUDAError) in
            let s: [Int32] = try samples.copyToHost(Int32.self, count: batch, stream: stream)
            let v: [UInt8] = try valid.copyToHost(UInt8.self, count: batch, stream: stream)
            return SamplingOutput(samples: s, valid: v.map { $0 != 0 })
        }
    }

    /// `samplingFromLogits` (Gumbel-max) on validated logits.
    func samplingFromLogits(_ logits: Tensor, philox: PhiloxSource, batch: Int, vocab: Int) throws(FlashInferError) -> SamplingOutput {
        try requireSamplingLayout(logits, name: "logits")
        return try drawRows(batch) { samples, valid throws(FlashInferError) in
            try launchSampler(logits, filter: .none, kind: .fromLogits, philox: philox, samples: samples, valid: valid)
        }
    }

    /// `chainSpeculativeSampling` of a validated call: contiguous `[batch, n, vocab]` draft and
    /// `[batch, n + 1, vocab]` target probabilities; the draft ids uploaded in the stream's order,
    /// the counts zeroed there (the kernel adds into them), the results copied back.
    func chainSpeculativeSampling(_ call: ChainSpeculativeCall) throws(FlashInferError) -> ChainSpeculativeOutput {
        let (batch, n) = (call.batch, call.numDraft)
        try requireChainSpeculativeLayout(call.draftProbs, call.targetProbs)
        guard batch > 0 else { return ChainSpeculativeOutput(outputTokenIds: [], acceptedTokenNum: [], emittedDraftTokenNum: []) }
        let (ids, out, accepted, emitted) = try FlashInferError.wrap { () throws(CUDAError) in
            let ids = try stream.device.upload(call.draftTokenIds, stream: stream)
            let out = try stream.allocate(byteCount: 4 * batch * (n + 1))
            let (accepted, emitted) = (try stream.allocate(byteCount: 4 * batch), try stream.allocate(byteCount: 4 * batch))
            try accepted.fill(byte: 0, stream: stream)
            try emitted.fill(byte: 0, stream: stream)
            return (ids, out, accepted, emitted)
        }
        try launchChainSpeculative(call.draftProbs, call.targetProbs, ids: ids, philox: call.philox, out: out,
                                   accepted: accepted, emitted: emitted, vocab: call.vocab)
        return try FlashInferError.wrap { () throws(CUDAError) in
            ChainSpeculativeOutput(outputTokenIds: try out.copyToHost(Int32.self, count: batch * (n + 1), stream: stream),
                                   acceptedTokenNum: try accepted.copyToHost(Int32.self, count: batch, stream: stream),
                                   emittedDraftTokenNum: try emitted.copyToHost(Int32.self, count: batch, stream: stream))
        }
    }

    /// The chain speculative kernels' layout: both probability tensors contiguous.
    func requireChainSpeculativeLayout(_ draftProbs: Tensor, _ targetProbs: Tensor) throws(FlashInferError) {
        guard draftProbs.isContiguous else { throw .strides(tensor: "draft_probs", strides: draftProbs.strides, rule: "must be contiguous") }
        guard targetProbs.isContiguous else { throw .strides(tensor: "target_probs", strides: targetProbs.strides, rule: "must be contiguous") }
    }

    /// One CTA per request: reads `ids` (`batch · n` Int32), writes `out` (`batch · (n + 1)` Int32)
    /// and adds the counts into `accepted` / `emitted` (`batch` Int32 each); then advances a generator.
    func launchChainSpeculative(_ draftProbs: Tensor, _ targetProbs: Tensor, ids: DeviceBuffer, philox: PhiloxSource,
                                out: DeviceBuffer, accepted: DeviceBuffer, emitted: DeviceBuffer, vocab: Int) throws(FlashInferError) {
        let (batch, n) = (draftProbs.shape[0], draftProbs.shape[1])
        let aligned = sixteenByteAligned(draftProbs) && sixteenByteAligned(targetProbs)
        let spec = SamplingSpec(kind: .chainSpeculative, dtype: draftProbs.dtype, vocab: vocab, rowStride: vocab, aligned: aligned)
        try FlashInferError.wrap { () throws(CUDAError) in
            var p = FIChainSpeculativeParams()
            p.draft_probs = draftProbs.deviceAddress!
            p.draft_token_ids = ids.address
            p.target_probs = targetProbs.deviceAddress!
            p.output_token_ids = out.address
            p.accepted = accepted.address
            p.emitted = emitted.address
            let state = philox.set(seed: &p.seed, offset: &p.offset, seedArr: &p.seed_arr, offsetArr: &p.offset_arr)
            p.num_draft = Int32(n)
            p.vocab_size = Int32(vocab)
            let k = try JIT.shared(for: stream.device).kernel(spec)
            try stream.order(read: draftProbs.buffer, targetProbs.buffer, ids, state.read,
                             write: out, accepted, emitted, state.write)
            try k.function.launch(grid: (batch, 1, 1), block: (1024, 1, 1), stream: stream, parameter: p)
            try philox.advance(stream: stream)
        }
    }

    /// The sampler into caller buffers (`samples`: `batch` Int32, `valid`: `batch` bytes), no copy back.
    func launchSampler(_ probs: Tensor, filter: SamplingFilter, kind: SamplingKernelKind? = nil, philox: PhiloxSource,
                       samples: DeviceBuffer, valid: DeviceBuffer?) throws(FlashInferError) {
        let spec = SamplingSpec(kind: kind ?? SamplingKernelKind(filter), dtype: probs.dtype, vocab: probs.shape[1],
                                rowStride: probs.shape[0] > 1 ? probs.strides[0] : probs.shape[1], aligned: sixteenByteAligned(probs))
        try FlashInferError.wrap { () throws(CUDAError) in
            var l = CUDASamplingLaunch(input: probs, stream: stream)
            try l.setFilter(filter, stream: stream)
            let state = philox.set(seed: &l.params.seed, offset: &l.params.offset, seedArr: &l.params.seed_arr, offsetArr: &l.params.offset_arr)
            l.params.samples = samples.address
            l.params.valid = valid?.address ?? 0
            try l.launch(spec, rows: probs.shape[0], stream: stream, read: probs, state.read, write: samples, valid, state.write)
            try philox.advance(stream: stream)
        }
    }

    func samplingOp(_ op: SamplingOp, _ x: Tensor, batch: Int, vocab: Int) throws(FlashInferError) -> Tensor {
        try requireSamplingLayout(x, name: op.inputName)
        let out = try FlashInferError.wrap { () throws(CUDAError) in try Tensor.empty(shape: x.shape, dtype: x.dtype, stream: stream) }
        guard batch > 0 else { return out }
        try launchSamplingOp(op, x, out: out)
        return out
    }

    /// A renorm / mask / softmax from `x` into `out` (same shape and dtype, contiguous rows).
    func launchSamplingOp(_ op: SamplingOp, _ x: Tensor, out: Tensor) throws(FlashInferError) {
        let rowStride = x.shape[0] > 1 ? x.strides[0] : x.shape[1]
        let outStride = out.shape[0] > 1 ? out.strides[0] : out.shape[1]
        guard rowStride == outStride else {
            throw .strides(tensor: "out", strides: out.strides, rule: "the row stride must equal the input's (\(rowStride))")
        }
        let spec = SamplingSpec(kind: op.kind, dtype: x.dtype, vocab: x.shape[1], rowStride: rowStride,
                                aligned: sixteenByteAligned(x) && sixteenByteAligned(out))
        try FlashInferError.wrap { () throws(CUDAError) in
            var l = CUDASamplingLaunch(input: x, stream: stream)
            l.params.output = out.deviceAddress!
            switch op {
            case .topKRenorm(let k), .topKMaskLogits(let k): try l.setTopK(k, stream: stream)
            case .topPRenorm(let p): try l.setTopP(p, stream: stream)
            case .softmax(let t): try l.setTemperature(t, stream: stream)
            }
            try l.launch(spec, rows: x.shape[0], stream: stream, read: x, write: out.buffer)
        }
    }
}

/// A sampler into caller buffers on the stream, validated as the public entry points are, without
/// the copy back (`flashinfer bench sampling`, the C ABI, graph capture): `samples` holds `batch`
/// Int32, `valid` `batch` bytes. Nothing here synchronizes or allocates (with scalar filter
/// parameters), so the launch can be captured into a CUDA graph.
@_spi(Bench)
public func launchSampler(_ probs: Tensor, filter: SamplingFilter, seed: UInt64, offset: UInt64, samples: DeviceBuffer,
                          valid: DeviceBuffer?, stream: Stream) throws(FlashInferError) {
    try launchSampler(probs, filter: filter, .fixed(seed: seed, offset: offset), samples: samples, valid: valid, stream: stream)
}

/// `launchSampler` drawing from a device `generator`: the kernel reads its state, and a one-thread
/// kernel after it (same stream) advances the offset by `SamplingGenerator.increment(filter:batch:)`.
@_spi(Bench)
public func launchSampler(_ probs: Tensor, filter: SamplingFilter, generator: SamplingGenerator, samples: DeviceBuffer,
                          valid: DeviceBuffer?, stream: Stream) throws(FlashInferError) {
    try launchSampler(probs, filter: filter, .generator(generator), samples: samples, valid: valid, stream: stream)
}

func launchSampler(_ probs: Tensor, filter: SamplingFilter, _ seed: SamplingSeed, samples: DeviceBuffer,
                   valid: DeviceBuffer?, stream: Stream) throws(FlashInferError) {
    let (batch, _) = try validateSamplingInput(probs, name: "probs", entry: "launchSampler", backend: .cuda(stream))
    try validateFilter(filter, batch: batch, placement: .device(stream.device))
    guard samples.byteCount >= 4 * batch, (valid?.byteCount ?? batch) >= batch else {
        throw .shape(tensor: "samples", axis: 0, name: "batch_size", expected: "\(batch)", got: samples.byteCount / 4)
    }
    let philox = seed.source(increment: SamplingGenerator.increment(filter: filter, batch: batch))
    try philox.validate(.cuda(stream))
    let be = CUDABackend(stream: stream)
    try be.requireSamplingLayout(probs, name: "probs")
    guard batch > 0 else { return }
    try be.launchSampler(probs, filter: filter, philox: philox, samples: samples, valid: valid)
}

/// `samplingFromLogits` into caller buffers on the stream, validated, without the copy back (the bench).
@_spi(Bench)
public func launchSamplingFromLogits(_ logits: Tensor, seed: UInt64, offset: UInt64, samples: DeviceBuffer, valid: DeviceBuffer?,
                                     stream: Stream) throws(FlashInferError) {
    try launchSamplingFromLogits(logits, .fixed(seed: seed, offset: offset), samples: samples, valid: valid, stream: stream)
}

/// `launchSamplingFromLogits` drawing from a device `generator` (advanced by
/// `SamplingGenerator.incrementFromLogits(batch:vocab:)` after the kernel, on the stream).
@_spi(Bench)
public func launchSamplingFromLogits(_ logits: Tensor, generator: SamplingGenerator, samples: DeviceBuffer, valid: DeviceBuffer?,
                                     stream: Stream) throws(FlashInferError) {
    try launchSamplingFromLogits(logits, .generator(generator), samples: samples, valid: valid, stream: stream)
}

func launchSamplingFromLogits(_ logits: Tensor, _ seed: SamplingSeed, samples: DeviceBuffer, valid: DeviceBuffer?,
                              stream: Stream) throws(FlashInferError) {
    let (batch, vocab) = try validateSamplingInput(logits, name: "logits", entry: "launchSamplingFromLogits", backend: .cuda(stream))
    guard samples.byteCount >= 4 * batch, (valid?.byteCount ?? batch) >= batch else {
        throw .shape(tensor: "samples", axis: 0, name: "batch_size", expected: "\(batch)", got: samples.byteCount / 4)
    }
    let philox = seed.source(increment: SamplingGenerator.incrementFromLogits(batch: batch, vocab: vocab))
    try philox.validate(.cuda(stream))
    let be = CUDABackend(stream: stream)
    try be.requireSamplingLayout(logits, name: "logits")
    guard batch > 0 else { return }
    try be.launchSampler(logits, filter: .none, kind: .fromLogits, philox: philox, samples: samples, valid: valid)
}

/// `chainSpeculativeSampling` on device buffers, validated as the public entry points are, on the
/// stream with no copy back and no synchronization (the C ABI, CUDA graphs). `draftTokenIds` holds
/// `batch · n` Int32 (row-major), `outputTokenIds` receives `batch · (n + 1)` Int32, and this call's
/// counts are **added** into `acceptedTokenNum` / `emittedDraftTokenNum` (`batch` Int32 each), as
/// upstream adds into `output_accepted_token_num` / `output_emitted_draft_token_num`: zero them first
/// for one call's counts. The buffers must be on the stream's device.
@_spi(Bench)
public func launchChainSpeculativeSampling(draftProbs: Tensor, draftTokenIds: DeviceBuffer, targetProbs: Tensor, seed: UInt64,
                                           offset: UInt64, outputTokenIds: DeviceBuffer, acceptedTokenNum: DeviceBuffer,
                                           emittedDraftTokenNum: DeviceBuffer, stream: Stream) throws(FlashInferError) {
    try launchChainSpeculativeSampling(draftProbs, draftTokenIds, targetProbs, .fixed(seed: seed, offset: offset),
                                       outputTokenIds, acceptedTokenNum, emittedDraftTokenNum, stream: stream)
}

/// `launchChainSpeculativeSampling` drawing from a device `generator` (read by the kernel, then
/// advanced by `SamplingGenerator.incrementChainSpeculative(batch:numDraft:)` on the stream).
@_spi(Bench)
public func launchChainSpeculativeSampling(draftProbs: Tensor, draftTokenIds: DeviceBuffer, targetProbs: Tensor,
                                           generator: SamplingGenerator, outputTokenIds: DeviceBuffer, acceptedTokenNum: DeviceBuffer,
                                           emittedDraftTokenNum: DeviceBuffer, stream: Stream) throws(FlashInferError) {
    try launchChainSpeculativeSampling(draftProbs, draftTokenIds, targetProbs, .generator(generator),
                                       outputTokenIds, acceptedTokenNum, emittedDraftTokenNum, stream: stream)
}

func launchChainSpeculativeSampling(_ draftProbs: Tensor, _ ids: DeviceBuffer, _ targetProbs: Tensor, _ seed: SamplingSeed,
                                    _ out: DeviceBuffer, _ accepted: DeviceBuffer, _ emitted: DeviceBuffer,
                                    stream: Stream) throws(FlashInferError) {
    let be = Backend.cuda(stream)
    let (batch, n, vocab) = try validateChainSpeculativeShapes(draftProbs: draftProbs, targetProbs: targetProbs, numIds: nil, backend: be)
    func check(_ name: String, _ b: DeviceBuffer, _ count: Int) throws(FlashInferError) {  // no array: a per-step call
        guard b.device === stream.device else { throw .deviceMismatch(tensor: name) }
        guard b.byteCount >= 4 * count else {
            throw .shape(tensor: name, axis: 0, name: "int32 elements", expected: ">= \(count)", got: b.byteCount / 4)
        }
    }
    try check("draft_token_ids", ids, batch * n)
    try check("output_token_ids", out, batch * (n + 1))
    try check("output_accepted_token_num", accepted, batch)
    try check("output_emitted_draft_token_num", emitted, batch)
    let philox = seed.source(increment: SamplingGenerator.incrementChainSpeculative(batch: batch, numDraft: n))
    try philox.validate(be)
    let cuda = CUDABackend(stream: stream)
    try cuda.requireChainSpeculativeLayout(draftProbs, targetProbs)
    guard batch > 0 else { return }
    try cuda.launchChainSpeculative(draftProbs, targetProbs, ids: ids, philox: philox, out: out, accepted: accepted,
                                    emitted: emitted, vocab: vocab)
}

/// A renorm, mask or softmax into `out` (the input's shape and dtype, on its device), validated.
@_spi(Bench)
public func launchSamplingOp(_ op: SamplingOp, _ x: Tensor, out: Tensor, stream: Stream) throws(FlashInferError) {
    let be = Backend.cuda(stream)
    let (batch, _) = try validateSamplingInput(x, name: op.inputName, entry: "launchSamplingOp", backend: be)
    try validateOp(op, batch: batch, placement: .device(stream.device))
    try checkPlacement("out", out, .device(stream.device))
    guard out.shape == x.shape, out.dtype == x.dtype else { throw .dtype(tensor: "out", expected: "the input's shape and dtype", got: out.dtype) }
    let cuda = CUDABackend(stream: stream)
    try cuda.requireSamplingLayout(x, name: op.inputName)
    try cuda.requireSamplingLayout(out, name: "out")
    try cuda.launchSamplingOp(op, x, out: out)
}

/// The first `count` uniforms of each of `rows` rows' Philox streams (subsequence = row), drawn on
/// the device: the check compares them with `PhiloxStream`. `[rows, count]` f32.
@_spi(Bench)
public func devicePhiloxUniforms(rows: Int, count: Int, seed: UInt64, offset: UInt64, stream: Stream) throws(FlashInferError) -> [Float] {
    try FlashInferError.wrap { () throws(CUDAError) in
        let out = try Tensor.empty(shape: [rows, count], dtype: .f32, stream: stream)
        var p = FISamplingParams()
        p.output = out.deviceAddress!
        p.row_stride = Int64(count)
        p.vocab_size = Int32(count)
        p.seed = seed
        p.offset = offset
        let k = try JIT.shared(for: stream.device).kernel(SamplingSpec(kind: .philox, dtype: .f32, vec: 1))
        try stream.order(reading: [], writing: [out])
        try k.function.launch(grid: (rows, 1, 1), block: (32, 1, 1), stream: stream, parameter: p)
        return try out.toFloats(stream: stream)
    }
}

/// The device side of a call's randomness.
extension PhiloxSource {
    /// Fills a parameter struct's Philox fields: the values (by value), or the device generator's
    /// addresses (the values then unused). Returns the generator's buffers for the stream
    /// ordering: the seed's, read (nil when it shares the offset's buffer), and the offset's,
    /// read and (advancing) written.
    func set(seed: inout UInt64, offset: inout UInt64, seedArr: inout CUdeviceptr,
             offsetArr: inout CUdeviceptr) -> (read: DeviceBuffer?, write: DeviceBuffer?) {
        switch self {
        case .fixed(let s, let o):
            (seed, offset) = (s, o)
            return (nil, nil)
        case .generator(let g, _):
            let d = g.deviceState!  // validated: a device generator on the call's device
            (seedArr, offsetArr) = (d.seedAddress, d.offsetAddress)
            return (d.seedBuffer === d.offsetBuffer ? nil : d.seedBuffer, d.offsetBuffer)
        }
    }

    /// After the sampling kernel, on its stream: an advancing generator's offset += the call's
    /// increment (`philox::advance_offset`, one thread). Every block of the sampling kernel has
    /// read the old offset by then (stream order); in a graph capture both launches are captured,
    /// in order, so each replay reads the offset the previous replay left.
    func advance(stream: Stream) throws(CUDAError) {
        guard case .generator(let g, let increment) = self, g.advances, increment > 0, let d = g.deviceState else { return }
        var p = FIPhiloxAdvanceParams()
        p.offset = d.offsetAddress
        p.increment = increment
        let k = try JIT.shared(for: stream.device).kernel(SamplingSpec(kind: .philoxAdvance, dtype: .f32, vec: 1))
        try k.function.launch(grid: (1, 1, 1), block: (1, 1, 1), stream: stream, parameter: p)
    }
}
