// Sampling through the C ABI (flashinfer_swift.h, "sampling"): the samplers (a token per row of a
// [batch, vocab] probs tensor, Philox streams from (seed, offset) as cuRAND's; the seed and offset
// by value, or read from tensors when the call runs, a generator's offset then advanced) and the row ops
// (top-k / top-p renorm, top-k logit mask, softmax). CUDA tensors: the kernels on the caller's
// stream, writing the caller's samples / valid / out buffers (no copy back, no synchronization).
// CPU tensors: the Float64 reference.
import CFlashInferABI
@_spi(Bench) import FlashInfer
import FlashInferCUDA

/// A per-row parameter: the scalar, `count` host values (the library checks `count` against the
/// batch), or the values of `tensor`, a compact `[batch]` float32 tensor on the call's device (CUDA:
/// read by the kernel when it runs, not here; CPU: read here).
func rowDoubles(_ p: UnsafePointer<flashinfer_swift_row_param>?, name: String, side: OpSide,
                batch: Int) throws(ABIFailure) -> RowParameter<Double> {
    guard let r = p?.pointee else { throw .invalid("\(name): NULL") }
    if let t = r.tensor {
        return try rowTensor(t, name: name, side: side, batch: batch, code: kDLFloat.rawValue, what: "float32") { a, i in
            Double(a.load(fromByteOffset: 4 * i, as: Float.self))
        }
    }
    guard let values = r.per_row else { return .scalar(r.value) }
    guard r.count >= 0 else { throw .invalid("\(name): count \(r.count) < 0") }
    return .perRow((0..<Int(r.count)).map { values[$0] })
}

/// `rowDoubles` for top-k: integer values; a tensor must be int32.
func rowInts(_ p: UnsafePointer<flashinfer_swift_row_param>?, name: String, side: OpSide,
             batch: Int) throws(ABIFailure) -> RowParameter<Int> {
    guard let r = p?.pointee else { throw .invalid("\(name): NULL") }
    if let t = r.tensor {
        return try rowTensor(t, name: name, side: side, batch: batch, code: kDLInt.rawValue, what: "int32") { a, i in
            Int(a.load(fromByteOffset: 4 * i, as: Int32.self))
        }
    }
    func int(_ v: Double) throws(ABIFailure) -> Int {
        guard let i = Int(exactly: v) else { throw .invalid("\(name) = \(v): must be an integer") }
        return i
    }
    guard let values = r.per_row else { return .scalar(try int(r.value)) }
    guard r.count >= 0 else { throw .invalid("\(name): count \(r.count) < 0") }
    var out: [Int] = []
    out.reserveCapacity(Int(r.count))
    for i in 0..<Int(r.count) { out.append(try int(values[i])) }
    return .perRow(out)
}

/// A row parameter's `[batch]` tensor of 4-byte values: on CUDA the caller's memory as it is
/// (`.device`, read by the kernel in the call's stream order); on the CPU its values.
private func rowTensor<V>(_ t: UnsafePointer<DLTensor>, name: String, side: OpSide, batch: Int, code: UInt32, what: String,
                          read: (UnsafeMutableRawPointer, Int) -> V) throws(ABIFailure) -> RowParameter<V> {
    let a = try indexBuffer(t, name: name, count: batch, bits: 32, codes: [code], what: what, device: side.device)
    guard batch > 0, let a else { return .perRow([]) }
    if let device = side.device {
        return .device(DeviceBuffer.borrowing(address: CUdeviceptr(UInt(bitPattern: a)), byteCount: 4 * batch, device: device))
    }
    return .perRow((0..<batch).map { read(a, $0) })
}

/// The address of a 1-D, compact index tensor of `count` elements of `bits` bits (`codes`: the
/// accepted DLPack type codes), on the call's device (nil: the CPU).
func indexBuffer(_ p: UnsafePointer<DLTensor>?, name: String, count: Int, bits: UInt8, codes: [UInt32], what: String,
                 device: Device?, countName: String = "batch_size") throws(ABIFailure) -> UnsafeMutableRawPointer? {
    try compactBuffer(p, name: name, shape: [count], bits: bits, codes: codes, what: what, device: device, shapeName: countName)
}

/// The address of a compact (row-major) tensor of exactly `shape`, elements of `bits` bits (`codes`:
/// the accepted DLPack type codes), on the call's device (nil: the CPU).
func compactBuffer(_ p: UnsafePointer<DLTensor>?, name: String, shape expected: [Int], bits: UInt8, codes: [UInt32], what: String,
                   device: Device?, shapeName: String) throws(ABIFailure) -> UnsafeMutableRawPointer? {
    guard let t = p?.pointee else { throw .invalid("\(name): NULL tensor") }
    let isCUDA = UInt32(t.device.device_type.rawValue) == kDLCUDA.rawValue
    if let device {
        guard isCUDA, Int(t.device.device_id) == device.index else {
            throw .invalid("\(name): not on CUDA device \(device.index), where the call's input is")
        }
    } else {
        try requireCPU(t, name: name)
    }
    guard t.dtype.lanes == 1, t.dtype.bits == bits, codes.contains(UInt32(t.dtype.code)) else {
        throw .invalid("\(name): DLPack dtype (code \(t.dtype.code), bits \(t.dtype.bits)), expected \(what)")
    }
    let (shape, strides) = try layout(of: t, name: name)
    guard shape == expected else { throw .invalid("\(name): shape \(shape), expected \(expected) (\(shapeName))") }
    let compact = Tensor.contiguousStrides(shape)
    for i in shape.indices where shape[i] > 1 && strides[i] != compact[i] {
        throw .invalid("\(name): strides \(strides), expected a compact (row-major) tensor")
    }
    guard shape.contains(0) || t.data != nil else { throw .invalid("\(name): data is NULL") }
    return t.data.map { $0 + Int(t.byte_offset) }
}

/// What `flashinfer_swift_sampling` draws with: a probability sampler and its filter, or (`FROM_LOGITS`)
/// the one-pass Gumbel-max sampler over logits (`samplingFromLogits`).
enum ABISampler {
    case probs(SamplingFilter)
    case fromLogits
}

/// The row parameters of a sampler call, read once its side (CPU or CUDA device) and batch are known.
struct ABIRowParams {
    var topK, topP, minP: UnsafePointer<flashinfer_swift_row_param>?
}

/// The sampler of `flashinfer_swift_sampling`'s `filter` / `filter_apply_order` / row parameters.
func abiSampler(_ filterKind: Int32, _ order: Int32, _ rows: ABIRowParams, side: OpSide, batch: Int) throws(ABIFailure) -> ABISampler {
    if filterKind == Int32(FLASHINFER_SWIFT_FILTER_FROM_LOGITS) { return .fromLogits }
    return .probs(try samplingFilter(filterKind, order, rows, side: side, batch: batch))
}

/// The filter of `flashinfer_swift_sampling`'s `filter` / `filter_apply_order` / row parameters.
func samplingFilter(_ filterKind: Int32, _ order: Int32, _ rows: ABIRowParams, side: OpSide,
                    batch: Int) throws(ABIFailure) -> SamplingFilter {
    let (topK, topP, minP) = (rows.topK, rows.topP, rows.minP)
    switch filterKind {
    case Int32(FLASHINFER_SWIFT_FILTER_NONE): return .none
    case Int32(FLASHINFER_SWIFT_FILTER_TOP_K): return .topK(try rowInts(topK, name: "top_k", side: side, batch: batch))
    case Int32(FLASHINFER_SWIFT_FILTER_TOP_P): return .topP(try rowDoubles(topP, name: "top_p", side: side, batch: batch))
    case Int32(FLASHINFER_SWIFT_FILTER_MIN_P): return .minP(try rowDoubles(minP, name: "min_p", side: side, batch: batch))
    case Int32(FLASHINFER_SWIFT_FILTER_TOP_K_TOP_P):
        let o: FilterApplyOrder
        switch order {
        case Int32(FLASHINFER_SWIFT_ORDER_TOP_K_FIRST): o = .topKFirst
        case Int32(FLASHINFER_SWIFT_ORDER_JOINT): o = .joint
        default: throw .invalid("filter_apply_order \(order) is not one of TOP_K_FIRST (0), JOINT (1)")
        }
        return .topKTopP(topK: try rowInts(topK, name: "top_k", side: side, batch: batch),
                         topP: try rowDoubles(topP, name: "top_p", side: side, batch: batch), order: o)
    default: throw .invalid("filter \(filterKind) is not one of NONE (0), TOP_K (1), TOP_P (2), MIN_P (3), TOP_K_TOP_P (4), FROM_LOGITS (5)")
    }
}

/// Where a sampler call through the ABI takes its seed and offset.
enum ABISeed {
    case values(seed: UInt64, offset: UInt64)
    /// Two 8-byte words (host pointers for CPU probs, device addresses for CUDA), advanced or not.
    case tensors(seed: UnsafeMutableRawPointer, offset: UnsafeMutableRawPointer, advance: Bool)

    /// Upstream's tensor form: the seed and offset 1-element int64 / uint64 tensors on the call's
    /// device (nil: the CPU), read when the call runs.
    static func tensors(_ seedArr: UnsafePointer<DLTensor>?, _ offsetArr: UnsafePointer<DLTensor>?, advance: Bool,
                        device: Device?) throws(ABIFailure) -> ABISeed {
        func word(_ p: UnsafePointer<DLTensor>?, _ name: String) throws(ABIFailure) -> UnsafeMutableRawPointer {
            let w = try indexBuffer(p, name: name, count: 1, bits: 64, codes: [kDLInt.rawValue, kDLUInt.rawValue],
                                    what: "int64 or uint64 (one element: per-request seeds and offsets are not supported)",
                                    device: device, countName: "one element")
            guard let w else { throw .invalid("\(name): data is NULL") }
            return w
        }
        return .tensors(seed: try word(seedArr, "seed"), offset: try word(offsetArr, "offset"), advance: advance)
    }
}

/// The generator over a `.tensors` seed's device words (the kernel reads them; `advance`: advanced after).
func deviceGenerator(seed sp: UnsafeMutableRawPointer, offset op: UnsafeMutableRawPointer, advance: Bool,
                     device: Device) -> SamplingGenerator {
    func word(_ p: UnsafeMutableRawPointer) -> DeviceBuffer {
        DeviceBuffer.borrowing(address: CUdeviceptr(UInt(bitPattern: p)), byteCount: 8, device: device)
    }
    return SamplingGenerator(seed: word(sp), offset: word(op), advances: advance)
}

/// A CPU call with a `.tensors` seed: `draw` from a host generator at the words' state, then the
/// offset word advanced when asked.
func withHostGenerator<R>(seed sp: UnsafeMutableRawPointer, offset op: UnsafeMutableRawPointer, advance: Bool,
                          _ draw: (SamplingGenerator) throws(FlashInferError) -> R) throws(FlashInferError) -> R {
    let g = SamplingGenerator(seed: sp.loadUnaligned(as: UInt64.self), offset: op.loadUnaligned(as: UInt64.self))
    let r = try draw(g)
    if advance { op.storeBytes(of: try g.state().offset, as: UInt64.self) }
    return r
}

/// Runs a sampler on the ABI's tensors: CUDA into the caller's buffers on its stream; CPU on the
/// reference, written into the caller's arrays.
func abiSample(_ probs: UnsafePointer<DLTensor>?, side: OpSide, _ filterKind: Int32, _ order: Int32, _ rows: ABIRowParams,
               _ seed: ABISeed, _ samples: UnsafePointer<DLTensor>?, _ valid: UnsafePointer<DLTensor>?) throws(ABIFailure) {
    let inputName = filterKind == Int32(FLASHINFER_SWIFT_FILTER_FROM_LOGITS) ? "logits" : "probs"
    let x = try side.tensor(probs, name: inputName)
    guard x.rank == 2 else { throw ABIFailure(FlashInferError.rank(tensor: inputName, expected: 2, got: x.rank)) }
    let batch = x.shape[0]
    let sampler = try abiSampler(filterKind, order, rows, side: side, batch: batch)
    let s = try indexBuffer(samples, name: "samples", count: batch, bits: 32, codes: [kDLInt.rawValue], what: "int32",
                            device: side.device)
    let v = try valid.map { p throws(ABIFailure) in
        try indexBuffer(p, name: "valid", count: batch, bits: 8, codes: [kDLBool.rawValue, kDLUInt.rawValue, kDLInt.rawValue],
                        what: "bool or uint8", device: side.device)
    }
    if let device = side.device, case .cuda(let st) = side.backend {
        guard batch > 0 else { return }  // an empty batch launches nothing
        let sb = DeviceBuffer.borrowing(address: CUdeviceptr(UInt(bitPattern: s)), byteCount: 4 * batch, device: device)
        let vb = v.map { DeviceBuffer.borrowing(address: CUdeviceptr(UInt(bitPattern: $0)), byteCount: batch, device: device) }
        try library { () throws(FlashInferError) in
            switch (seed, sampler) {
            case (.values(let seed, let offset), .probs(let filter)):
                try launchSampler(x, filter: filter, seed: seed, offset: offset, samples: sb, valid: vb ?? nil, stream: st)
            case (.values(let seed, let offset), .fromLogits):
                try launchSamplingFromLogits(x, seed: seed, offset: offset, samples: sb, valid: vb ?? nil, stream: st)
            case (.tensors(let sp, let op, let advance), _):
                let g = deviceGenerator(seed: sp, offset: op, advance: advance, device: device)
                switch sampler {
                case .probs(let filter): try launchSampler(x, filter: filter, generator: g, samples: sb, valid: vb ?? nil, stream: st)
                case .fromLogits: try launchSamplingFromLogits(x, generator: g, samples: sb, valid: vb ?? nil, stream: st)
                }
            }
        }
        return
    }
    let r = try library { () throws(FlashInferError) in
        func draw(_ seed: UInt64, _ offset: UInt64) throws(FlashInferError) -> SamplingOutput {
            switch sampler {
            case .probs(let filter): try sample(x, filter: filter, seed: seed, offset: offset, backend: .cpu)
            case .fromLogits: try samplingFromLogits(x, seed: seed, offset: offset, backend: .cpu)
            }
        }
        switch seed {
        case .values(let seed, let offset): return try draw(seed, offset)
        case .tensors(let sp, let op, let advance):
            return try withHostGenerator(seed: sp, offset: op, advance: advance) { g throws(FlashInferError) in
                switch sampler {
                case .probs(let filter): try sample(x, filter: filter, generator: g, backend: .cpu)
                case .fromLogits: try samplingFromLogits(x, generator: g, backend: .cpu)
                }
            }
        }
    }
    for i in 0..<batch {
        s!.storeBytes(of: r.samples[i], toByteOffset: 4 * i, as: Int32.self)
        if let v = v ?? nil { v.storeBytes(of: r.valid[i] ? 1 : 0, toByteOffset: i, as: UInt8.self) }
    }
}

@_cdecl("flashinfer_swift_sampling")
public func flashinfer_swift_sampling(
    _ probs: UnsafePointer<DLTensor>?, _ filterKind: Int32, _ order: Int32, _ topK: UnsafePointer<flashinfer_swift_row_param>?,
    _ topP: UnsafePointer<flashinfer_swift_row_param>?, _ minP: UnsafePointer<flashinfer_swift_row_param>?, _ seed: UInt64,
    _ offset: UInt64, _ samples: UnsafePointer<DLTensor>?, _ valid: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let side = try OpSide(first: probs, stream: stream)
        try abiSample(probs, side: side, filterKind, order, ABIRowParams(topK: topK, topP: topP, minP: minP),
                      .values(seed: seed, offset: offset), samples, valid)
    }
}

@_cdecl("flashinfer_swift_sampling_seed_tensors")
public func flashinfer_swift_sampling_seed_tensors(
    _ probs: UnsafePointer<DLTensor>?, _ filterKind: Int32, _ order: Int32, _ topK: UnsafePointer<flashinfer_swift_row_param>?,
    _ topP: UnsafePointer<flashinfer_swift_row_param>?, _ minP: UnsafePointer<flashinfer_swift_row_param>?,
    _ seedArr: UnsafePointer<DLTensor>?, _ offsetArr: UnsafePointer<DLTensor>?, _ advance: Int32,
    _ samples: UnsafePointer<DLTensor>?, _ valid: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        let side = try OpSide(first: probs, stream: stream)
        let seed = try ABISeed.tensors(seedArr, offsetArr, advance: advance != 0, device: side.device)
        try abiSample(probs, side: side, filterKind, order, ABIRowParams(topK: topK, topP: topP, minP: minP), seed, samples, valid)
    }
}

@_cdecl("flashinfer_swift_sampling_op")
public func flashinfer_swift_sampling_op(_ opKind: Int32, _ input: UnsafePointer<DLTensor>?,
                                         _ param: UnsafePointer<flashinfer_swift_row_param>?, _ out: UnsafePointer<DLTensor>?,
                                         _ stream: UnsafeMutableRawPointer?) -> Int32 {
    guarded { () throws(ABIFailure) in
        guard (0...3).contains(opKind) else {
            throw .invalid("sampling op \(opKind) is not one of TOP_K_RENORM (0), TOP_P_RENORM (1), TOP_K_MASK_LOGITS (2), SOFTMAX (3)")
        }
        let side = try OpSide(first: input, stream: stream)
        let x = try side.tensor(input, name: "input")
        guard x.rank == 2 else {  // named as the op's validation names its input
            let name = opKind <= Int32(FLASHINFER_SWIFT_OP_TOP_P_RENORM) ? "probs" : "logits"
            throw ABIFailure(FlashInferError.rank(tensor: name, expected: 2, got: x.rank))
        }
        let batch = x.shape[0]
        let op: SamplingOp
        switch opKind {
        case Int32(FLASHINFER_SWIFT_OP_TOP_K_RENORM): op = .topKRenorm(try rowInts(param, name: "top_k", side: side, batch: batch))
        case Int32(FLASHINFER_SWIFT_OP_TOP_P_RENORM): op = .topPRenorm(try rowDoubles(param, name: "top_p", side: side, batch: batch))
        case Int32(FLASHINFER_SWIFT_OP_TOP_K_MASK_LOGITS): op = .topKMaskLogits(try rowInts(param, name: "top_k", side: side, batch: batch))
        default:
            op = .softmax(param == nil ? .scalar(1) : try rowDoubles(param, name: "temperature", side: side, batch: batch))
        }
        if case .cuda(let st) = side.backend {
            let o = try side.tensor(out, name: "out")
            guard x.count > 0 else { return }
            try library { () throws(FlashInferError) in try launchSamplingOp(op, x, out: o, stream: st) }
            return
        }
        let r = try library { () throws(FlashInferError) in
            switch op {
            case .topKRenorm(let k): try topKRenormProbs(x, topK: k, backend: .cpu)
            case .topPRenorm(let p): try topPRenormProbs(x, topP: p, backend: .cpu)
            case .topKMaskLogits(let k): try topKMaskLogits(x, topK: k, backend: .cpu)
            case .softmax(let t): try softmax(x, temperature: t, backend: .cpu)
            }
        }
        try write(r, into: out, name: "out")
    }
}

/// `chainSpeculativeSampling` on the ABI's tensors: CUDA tensors on the caller's stream (no copy
/// back, no synchronization; graph-capturable); CPU tensors on the reference. Either way the tokens
/// are written and the counts added into the caller's `accepted` / `emitted`.
func abiChainSpeculative(_ draftProbs: UnsafePointer<DLTensor>?, _ draftTokenIds: UnsafePointer<DLTensor>?,
                         _ targetProbs: UnsafePointer<DLTensor>?, _ seed: (Device?) throws(ABIFailure) -> ABISeed,
                         _ outputTokenIds: UnsafePointer<DLTensor>?, _ accepted: UnsafePointer<DLTensor>?,
                         _ emitted: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?) throws(ABIFailure) {
    let side = try OpSide(first: draftProbs, stream: stream)
    let d = try side.tensor(draftProbs, name: "draft_probs")
    let t = try side.tensor(targetProbs, name: "target_probs")
    guard d.rank == 3 else { throw ABIFailure(FlashInferError.rank(tensor: "draft_probs", expected: 3, got: d.rank)) }
    let (batch, n) = (d.shape[0], d.shape[1])
    func int32s(_ p: UnsafePointer<DLTensor>?, _ name: String, _ shape: [Int], _ shapeName: String) throws(ABIFailure) -> UnsafeMutableRawPointer? {
        try compactBuffer(p, name: name, shape: shape, bits: 32, codes: [kDLInt.rawValue], what: "int32", device: side.device,
                          shapeName: shapeName)
    }
    let ids = try int32s(draftTokenIds, "draft_token_ids", [batch, n], "batch_size, num_speculate_tokens")
    let out = try int32s(outputTokenIds, "output_token_ids", [batch, n + 1], "batch_size, num_speculate_tokens + 1")
    let acc = try int32s(accepted, "output_accepted_token_num", [batch], "batch_size")
    let emi = try int32s(emitted, "output_emitted_draft_token_num", [batch], "batch_size")
    let seed = try seed(side.device)
    if let device = side.device, case .cuda(let st) = side.backend {
        func buffer(_ p: UnsafeMutableRawPointer?, _ count: Int) -> DeviceBuffer {
            DeviceBuffer.borrowing(address: CUdeviceptr(UInt(bitPattern: p)), byteCount: 4 * count, device: device)
        }
        let (bi, bo, ba, be) = (buffer(ids, batch * n), buffer(out, batch * (n + 1)), buffer(acc, batch), buffer(emi, batch))
        try library { () throws(FlashInferError) in
            switch seed {
            case .values(let s, let o):
                try launchChainSpeculativeSampling(draftProbs: d, draftTokenIds: bi, targetProbs: t, seed: s, offset: o, outputTokenIds: bo,
                                                   acceptedTokenNum: ba, emittedDraftTokenNum: be, stream: st)
            case .tensors(let sp, let op, let advance):
                try launchChainSpeculativeSampling(draftProbs: d, draftTokenIds: bi, targetProbs: t,
                                                   generator: deviceGenerator(seed: sp, offset: op, advance: advance, device: device),
                                                   outputTokenIds: bo, acceptedTokenNum: ba, emittedDraftTokenNum: be, stream: st)
            }
        }
        return
    }
    let hostIds = (0..<(batch * n)).map { ids!.load(fromByteOffset: 4 * $0, as: Int32.self) }
    let r = try library { () throws(FlashInferError) in
        switch seed {
        case .values(let s, let o):
            return try chainSpeculativeSampling(draftProbs: d, draftTokenIds: hostIds, targetProbs: t, seed: s, offset: o, backend: .cpu)
        case .tensors(let sp, let op, let advance):
            return try withHostGenerator(seed: sp, offset: op, advance: advance) { g throws(FlashInferError) in
                try chainSpeculativeSampling(draftProbs: d, draftTokenIds: hostIds, targetProbs: t, generator: g, backend: .cpu)
            }
        }
    }
    for (i, x) in r.outputTokenIds.enumerated() { out!.storeBytes(of: x, toByteOffset: 4 * i, as: Int32.self) }
    for i in 0..<batch {
        acc!.storeBytes(of: acc!.load(fromByteOffset: 4 * i, as: Int32.self) &+ r.acceptedTokenNum[i], toByteOffset: 4 * i, as: Int32.self)
        emi!.storeBytes(of: emi!.load(fromByteOffset: 4 * i, as: Int32.self) &+ r.emittedDraftTokenNum[i], toByteOffset: 4 * i, as: Int32.self)
    }
}

@_cdecl("flashinfer_swift_chain_speculative_sampling")
public func flashinfer_swift_chain_speculative_sampling(
    _ draftProbs: UnsafePointer<DLTensor>?, _ draftTokenIds: UnsafePointer<DLTensor>?, _ targetProbs: UnsafePointer<DLTensor>?,
    _ seed: UInt64, _ offset: UInt64, _ outputTokenIds: UnsafePointer<DLTensor>?, _ accepted: UnsafePointer<DLTensor>?,
    _ emitted: UnsafePointer<DLTensor>?, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        try abiChainSpeculative(draftProbs, draftTokenIds, targetProbs, { _ in .values(seed: seed, offset: offset) },
                                outputTokenIds, accepted, emitted, stream)
    }
}

@_cdecl("flashinfer_swift_chain_speculative_sampling_seed_tensors")
public func flashinfer_swift_chain_speculative_sampling_seed_tensors(
    _ draftProbs: UnsafePointer<DLTensor>?, _ draftTokenIds: UnsafePointer<DLTensor>?, _ targetProbs: UnsafePointer<DLTensor>?,
    _ seedArr: UnsafePointer<DLTensor>?, _ offsetArr: UnsafePointer<DLTensor>?, _ advance: Int32,
    _ outputTokenIds: UnsafePointer<DLTensor>?, _ accepted: UnsafePointer<DLTensor>?, _ emitted: UnsafePointer<DLTensor>?,
    _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    guarded { () throws(ABIFailure) in
        try abiChainSpeculative(draftProbs, draftTokenIds, targetProbs,
                                { device throws(ABIFailure) in try ABISeed.tensors(seedArr, offsetArr, advance: advance != 0, device: device) },
                                outputTokenIds, accepted, emitted, stream)
    }
}
