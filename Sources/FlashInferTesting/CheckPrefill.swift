import Synchronization
import Dispatch
import FlashInfer
import FlashInferCUDA

/// One single-prefill check: the problem and the options, and how K/V (and q) are laid out.
struct PrefillCheckConfig {
    var dtype: DType = .f16
    var headDim = 128
    var qoLen: Int
    var kvLen: Int
    var numKVHeads = 2
    var group = 1
    var layout: KVLayout = .nhd
    var posEnc: PositionEncoding = .none
    var softCap: Float = 0
    var window = -1
    var causal = false
    var smScale: Float? = nil
    /// q, k and v are views with padded rows into larger buffers (k and v interleaved in one).
    var strided = false
    /// FP8 K/V (e4m3 / e5m2) with these scales; nil: K/V in q's dtype.
    var kvDType: DType? = nil
    var kScale: Float = 1
    var vScale: Float = 1
    /// The kernel tier to ask for (`AttentionOptions.tier`); the check also requires that it ran.
    var tier: PrefillTier = .fa2

    var numQOHeads: Int { numKVHeads * group }
    var options: AttentionOptions {
        AttentionOptions(causal: causal, smScale: smScale, positionEncoding: posEnc, logitsSoftCap: softCap,
                         windowLeft: window, layout: layout, kScale: kScale, vScale: vScale, tier: tier)
    }
    var spec: PrefillSpec { PrefillSpec(dtype: dtype, headDim: headDim, options: options, kvDType: kvDType) }

    var name: String {
        let tierName = switch tier { case .fa2: ""; case .hopper: "hopper "; case .auto: "hopper tier=auto " }
        var n = "prefill \(tierName)\(dtype.rawValue) d\(headDim) qo=\(qoLen) kv=\(kvLen) hq=\(numQOHeads) hkv=\(numKVHeads) \(layout.rawValue)"
        if posEnc != .none { n += " \(posEnc.name)" }
        if case .ropeLlama(let s, let t) = posEnc, s != 1 || t != 1e4 { n += "(scale \(s), theta \(t))" }
        if softCap > 0 { n += " cap=\(Int(softCap))" }
        if window >= 0 { n += " win=\(window)" }
        if causal { n += " causal" }
        if let s = smScale { n += " scale=\(s)" }
        if strided { n += " strided" }
        if let kv = kvDType { n += " kv=\(kv.rawValue) k_scale=\(kScale) v_scale=\(vScale)" }
        return n
    }

    /// Multiply-adds of the Float64 reference, to keep the sweep's CPU time in check.
    var referenceCost: Int { qoLen * kvLen * numQOHeads * headDim }
}

/// The single-prefill sweep. Like upstream's tests, every value of every axis appears, and the
/// risky pairs are crossed on purpose, but not the full cross product:
/// - lengths: qo {1, 37, 127, 577} × kv {1, 17, 127, 999, 4096}, causal only where qo ≤ kv
///   (append is qo < kv), each with the other axes cycled (dtype, head dim, group, layout,
///   position encoding, soft-cap, window);
/// - the pairs that touch the same code: RoPE × causal append (query positions), window × causal,
///   ALiBi × window / soft-cap, soft-cap × RoPE, tile edges (qo, kv at 64/128 ± 1), qo > kv without
///   causal, every variant at once, Llama-shaped heads (32/8) over several q tiles;
/// - kv_len 0 (output 0, LSE −inf), strided q/K/V (NHD and HND), custom scale, custom RoPE.
func prefillCheckConfigs() -> [PrefillCheckConfig] {
    var out: [PrefillCheckConfig] = []
    // Length sweep with the other axes cycled.
    let dims = [128, 64, 256]
    let groups = [1, 4, 8]
    let encs: [PositionEncoding] = [.none, .ropeLlama(), .alibi]
    var idx = 0
    for qo in [1, 37, 127, 577] {
        for kv in [1, 17, 127, 999, 4096] {
            for causal in [false, true] where !causal || qo <= kv {
                var c = PrefillCheckConfig(qoLen: qo, kvLen: kv)
                c.causal = causal
                c.dtype = idx % 2 == 0 ? .f16 : .bf16
                c.headDim = dims[idx % 3]
                c.group = groups[(idx / 2) % 3]
                c.numKVHeads = c.group == 8 ? 1 : 2
                c.layout = (idx / 3) % 2 == 0 ? .nhd : .hnd
                c.posEnc = encs[(idx / 5) % 3]
                c.softCap = idx % 4 == 1 ? 30 : 0
                c.window = idx % 7 == 3 ? 13 : -1
                // Keep the Float64 reference cheap on the biggest shapes.
                if c.referenceCost > 150_000_000 { c.numKVHeads = 1 }
                out.append(c)
                idx += 1
            }
        }
    }
    // Risky pairs, one line each.
    func add(_ c: PrefillCheckConfig, _ edit: (inout PrefillCheckConfig) -> Void) {
        var c = c
        edit(&c)
        out.append(c)
    }
    let base = PrefillCheckConfig(qoLen: 127, kvLen: 999)
    add(base) { $0.qoLen = 127; $0.kvLen = 4096; $0.group = 8; $0.numKVHeads = 1; $0.posEnc = .ropeLlama(); $0.causal = true }
    add(base) { $0.dtype = .bf16; $0.headDim = 256; $0.qoLen = 37; $0.posEnc = .ropeLlama(); $0.window = 13; $0.causal = true }
    add(base) { $0.qoLen = 577; $0.group = 4; $0.posEnc = .alibi; $0.causal = true }
    add(base) { $0.headDim = 64; $0.qoLen = 127; $0.kvLen = 127; $0.posEnc = .alibi; $0.window = 13 }
    add(base) { $0.posEnc = .ropeLlama(); $0.softCap = 30; $0.causal = true }
    add(base) { $0.dtype = .bf16; $0.qoLen = 37; $0.kvLen = 127; $0.posEnc = .alibi; $0.softCap = 30; $0.group = 4 }
    add(base) { $0.qoLen = 577; $0.kvLen = 4096; $0.group = 8; $0.numKVHeads = 1; $0.layout = .hnd; $0.window = 13; $0.causal = true }
    add(base) { $0.headDim = 64; $0.qoLen = 577; $0.kvLen = 127; $0.window = 13 }
    add(base) { $0.dtype = .bf16; $0.headDim = 256; $0.qoLen = 577; $0.kvLen = 17; $0.group = 4 }
    add(base) { $0.dtype = .bf16; $0.headDim = 256; $0.layout = .hnd; $0.group = 4; $0.posEnc = .ropeLlama(); $0.softCap = 30; $0.window = 13; $0.causal = true }
    add(base) { $0.headDim = 64; $0.qoLen = 37; $0.group = 8; $0.numKVHeads = 1; $0.posEnc = .alibi; $0.softCap = 30; $0.window = 13; $0.causal = true }
    add(base) { $0.headDim = 64; $0.qoLen = 577; $0.group = 8; $0.numKVHeads = 1; $0.layout = .hnd; $0.posEnc = .ropeLlama() }
    add(base) { $0.dtype = .bf16; $0.headDim = 256; $0.qoLen = 577; $0.kvLen = 577; $0.group = 8; $0.numKVHeads = 1; $0.causal = true }
    // Llama-shaped heads over several q tiles (P1/P2 at a size the reference can afford).
    add(base) { $0.qoLen = 1024; $0.kvLen = 1024; $0.numKVHeads = 8; $0.group = 4; $0.causal = true }
    add(base) { $0.dtype = .bf16; $0.qoLen = 512; $0.kvLen = 1024; $0.numKVHeads = 8; $0.group = 4 }
    // Tile edges: CTA_Q 128 / CTA_KV 64 (D 128), 64 / 32 (D 256), 128 / 128 (D 64).
    add(base) { $0.qoLen = 128; $0.kvLen = 128; $0.causal = true }
    add(base) { $0.qoLen = 129; $0.kvLen = 193; $0.causal = true }
    add(base) { $0.qoLen = 65; $0.kvLen = 65; $0.headDim = 256; $0.causal = true }
    add(base) { $0.qoLen = 33; $0.kvLen = 129; $0.headDim = 64; $0.group = 4; $0.window = 64; $0.causal = true }
    // ALiBi with a head count that is not a power of two (the second slope formula).
    add(base) { $0.qoLen = 37; $0.kvLen = 127; $0.numKVHeads = 3; $0.group = 4; $0.posEnc = .alibi; $0.causal = true }
    // Custom scale and RoPE parameters.
    add(base) { $0.qoLen = 37; $0.smScale = 0.05; $0.group = 4 }
    add(base) { $0.qoLen = 37; $0.dtype = .bf16; $0.posEnc = .ropeLlama(scale: 2, theta: 5e5); $0.causal = true }
    // kv_len 0: every row is empty → output 0, LSE −inf.
    add(base) { $0.qoLen = 5; $0.kvLen = 0 }
    add(base) { $0.qoLen = 1; $0.kvLen = 0; $0.headDim = 64; $0.dtype = .bf16; $0.posEnc = .ropeLlama(); $0.window = 13 }
    // Strided views: q with padded rows, K and V interleaved in one buffer.
    add(base) { $0.qoLen = 37; $0.group = 4; $0.posEnc = .ropeLlama(); $0.causal = true; $0.strided = true }
    add(base) { $0.dtype = .bf16; $0.headDim = 64; $0.qoLen = 127; $0.kvLen = 127; $0.layout = .hnd; $0.causal = true; $0.strided = true }
    add(base) { $0.headDim = 256; $0.qoLen = 17; $0.kvLen = 4096; $0.numKVHeads = 1; $0.group = 8; $0.window = 13; $0.strided = true }
    // FP8 K/V (issue 12): both formats under both q dtypes, every head dim, scales, the variants,
    // tile edges and kv_len 0 and 1, group 1/4/8, both layouts.
    func fp8(_ kvd: DType, _ edit: (inout PrefillCheckConfig) -> Void) {
        add(base) { $0.kvDType = kvd; $0.kScale = 0.37; $0.vScale = 2.5; edit(&$0) }
    }
    for kvd in [DType.e4m3, .e5m2] {
        fp8(kvd) { $0.qoLen = 127; $0.kvLen = 999; $0.causal = true }
        fp8(kvd) { $0.dtype = .bf16; $0.headDim = 64; $0.qoLen = 37; $0.kvLen = 4096; $0.group = 4; $0.layout = .hnd }
        fp8(kvd) { $0.headDim = 256; $0.qoLen = 65; $0.kvLen = 129; $0.group = 8; $0.numKVHeads = 1; $0.causal = true }
        fp8(kvd) { $0.dtype = .bf16; $0.qoLen = 129; $0.kvLen = 193; $0.posEnc = .ropeLlama(); $0.causal = true; $0.layout = .hnd }
        fp8(kvd) { $0.qoLen = 37; $0.kvLen = 127; $0.group = 4; $0.posEnc = .alibi; $0.softCap = 30; $0.window = 13 }
        fp8(kvd) { $0.qoLen = 1; $0.kvLen = 1; $0.kScale = 1; $0.vScale = 1 }
        fp8(kvd) { $0.qoLen = 3; $0.kvLen = 0 }
    }
    fp8(.e4m3) { $0.qoLen = 17; $0.kvLen = 32768; $0.numKVHeads = 1; $0.group = 4; $0.kScale = 4; $0.vScale = 0.125 }
    fp8(.e4m3) { $0.qoLen = 37; $0.kvLen = 999; $0.group = 4; $0.posEnc = .ropeLlama(); $0.window = 64; $0.causal = true; $0.strided = true }
    return out
}

public func prefillCases() -> [CheckCase] {
    let configs = prefillCheckConfigs()
    var cases: [CheckCase] = []
    // Compile every distinct kernel up front, in parallel (each case would otherwise wait for NVRTC).
    cases.append(compileUpFrontCase(name: "prefill jit: compile the sweep's kernels", specs: Array(Set(configs.map(\.spec)))))
    for c in configs {
        cases.append(CheckCase(name: c.name) { device, stream, rng in try runPrefillCheck(c, device: device, stream: stream, rng: &rng) })
    }
    return cases
}

/// The Hopper tier's sweep (`check --filter hopper`): f16/bf16 × causal/not, qo = kv and qo < kv,
/// lengths off the 128-row/128-key tiles (1, 77, 1000, 4133), groups 1/4/8, head dims 128 and 64,
/// both layouts, strided views, kv_len 0, non-causal qo > kv; then `.auto` (Hopper on sm_90).
func hopperPrefillCheckConfigs() -> [PrefillCheckConfig] {
    var out: [PrefillCheckConfig] = []
    var idx = 0
    // (qo, kv): equal lengths, then append (qo < kv), then qo > kv (non-causal only).
    let lengths = [(1, 1), (77, 77), (1000, 1000), (4133, 4133), (1, 1000), (77, 1000), (1000, 4133), (128, 4133), (129, 255),
                   (1000, 77)]
    for (qo, kv) in lengths {
        for causal in [false, true] where !causal || qo <= kv {
            for dtype in [DType.f16, .bf16] {
                var c = PrefillCheckConfig(qoLen: qo, kvLen: kv)
                c.tier = .hopper
                c.dtype = dtype
                c.causal = causal
                c.group = [1, 4, 8][idx % 3]
                c.numKVHeads = c.group == 8 ? 1 : 2
                // Keep the Float64 reference affordable on the longest shapes.
                if c.referenceCost > 400_000_000 { c.numKVHeads = 1; c.group = 1 }
                out.append(c)
                idx += 1
            }
        }
    }
    func add(_ edit: (inout PrefillCheckConfig) -> Void) {
        var c = PrefillCheckConfig(qoLen: 77, kvLen: 1000)
        c.tier = .hopper
        edit(&c)
        out.append(c)
    }
    // Tile edges: exactly one tile, one key / row past it.
    add { $0.qoLen = 128; $0.kvLen = 128; $0.causal = true }
    add { $0.qoLen = 129; $0.kvLen = 129; $0.causal = true; $0.dtype = .bf16; $0.group = 4 }
    add { $0.qoLen = 256; $0.kvLen = 384; $0.causal = true; $0.group = 8; $0.numKVHeads = 1 }
    // Llama-shaped heads (P1/P2 at a size the reference can afford).
    add { $0.qoLen = 1024; $0.kvLen = 1024; $0.numKVHeads = 8; $0.group = 4; $0.causal = true }
    add { $0.dtype = .bf16; $0.qoLen = 512; $0.kvLen = 1024; $0.numKVHeads = 8; $0.group = 4 }
    // Head dim 64.
    add { $0.headDim = 64; $0.qoLen = 1000; $0.kvLen = 1000; $0.causal = true; $0.group = 4 }
    add { $0.headDim = 64; $0.dtype = .bf16; $0.qoLen = 77; $0.kvLen = 4133; $0.group = 8; $0.numKVHeads = 1 }
    // HND K/V, strided views, a custom scale.
    add { $0.layout = .hnd; $0.qoLen = 1000; $0.kvLen = 1000; $0.causal = true; $0.group = 4 }
    add { $0.strided = true; $0.qoLen = 77; $0.kvLen = 1000; $0.causal = true; $0.group = 4 }
    add { $0.strided = true; $0.layout = .hnd; $0.dtype = .bf16; $0.qoLen = 300; $0.kvLen = 300 }
    add { $0.smScale = 0.05; $0.qoLen = 77; $0.kvLen = 1000 }
    // kv_len 0: every row is empty → output 0, LSE −inf.
    add { $0.qoLen = 5; $0.kvLen = 0 }
    // .auto: Hopper on an sm_90 GPU (the check requires it), FA2 elsewhere.
    add { $0.tier = .auto; $0.qoLen = 1000; $0.kvLen = 1000; $0.causal = true; $0.group = 4 }
    add { $0.tier = .auto; $0.dtype = .bf16; $0.qoLen = 77; $0.kvLen = 1000; $0.group = 8; $0.numKVHeads = 1 }
    return out
}

/// The Hopper tier's cases: the sweep against the reference, the kernels' compile (spills fail it),
/// tier agreement (FA2 and Hopper on the same inputs), and what `.auto` falls back on.
public func hopperPrefillCases() -> [CheckCase] {
    let configs = hopperPrefillCheckConfigs()
    var cases: [CheckCase] = []
    cases.append(compileUpFrontCase(name: "prefill hopper jit: compile the Hopper kernels",
                                    specs: hopperPrefillCatalogSpecs()))
    for c in configs {
        cases.append(CheckCase(name: c.name) { device, stream, rng in try runPrefillCheck(c, device: device, stream: stream, rng: &rng) })
    }
    for (dtype, causal, qo, kv) in [(DType.f16, true, 2048, 2048), (DType.bf16, false, 1000, 3000), (DType.f16, true, 333, 4133)] {
        let name = "prefill hopper tier agreement \(dtype.rawValue) qo=\(qo) kv=\(kv) hq=32 hkv=8\(causal ? " causal" : "")"
        cases.append(CheckCase(name: name) { device, stream, rng in
            try runTierAgreement(dtype: dtype, causal: causal, qoLen: qo, kvLen: kv, device: device, stream: stream, rng: &rng)
        })
    }
    // `.auto` falls back to FA2 for what the Hopper kernels do not implement; `.hopper` refuses it.
    cases.append(CheckCase(name: "prefill hopper tier fallback: auto runs rope on fa2, hopper refuses it") { device, stream, rng in
        let q = try Tensor.host((0..<(37 * 4 * 128)).map { _ in rng.normal() }, shape: [37, 4, 128], dtype: .f16).toDevice(device)
        let k = try Tensor.host((0..<(99 * 128)).map { _ in rng.normal() }, shape: [99, 1, 128], dtype: .f16).toDevice(device)
        let out = try Tensor.empty(shape: [37, 4, 128], dtype: .f16, device: device)
        var o = AttentionOptions(causal: true, positionEncoding: .ropeLlama(), tier: .auto)
        let ran = try singlePrefill(q: q, k: k, v: k, options: o, out: out, lse: nil, stream: stream)
        try stream.synchronize()
        if ran != .fa2 { return "auto with RoPE ran on \(ran)" }
        o.tier = .hopper
        do {
            try singlePrefill(q: q, k: k, v: k, options: o, out: out, lse: nil, stream: stream)
            return "tier hopper with RoPE was not refused"
        } catch let e as FlashInferError {
            guard case .unsupportedCombination = e else { return "tier hopper with RoPE: \(e)" }
        }
        return nil
    })
    return cases
}

/// The Hopper catalogue's specs (the kernels `hopperPrefillCases` compiles up front).
func hopperPrefillCatalogSpecs() -> [any KernelSpec] {
    kernelCatalog().filter { $0.spec is HopperPrefillSpec }.map(\.spec)
}

/// FA2 and Hopper on the same inputs (Llama-shaped heads, 32/8): outputs and LSEs within twice the
/// prefill tolerance of each other (each is within the tolerance of the exact result).
private func runTierAgreement(dtype: DType, causal: Bool, qoLen: Int, kvLen: Int, device: Device, stream: Stream,
                              rng: inout SeededRNG) throws -> String? {
    let (hq, hkv, d) = (32, 8, 128)
    func randn(_ shape: [Int]) throws -> Tensor {
        try Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: dtype).toDevice(device)
    }
    let q = try randn([qoLen, hq, d]), k = try randn([kvLen, hkv, d]), v = try randn([kvLen, hkv, d])
    var results: [(out: [Float], lse: [Float])] = []
    for tier in [PrefillTier.fa2, .hopper] {
        let out = try Tensor.empty(shape: [qoLen, hq, d], dtype: dtype, device: device)
        let lse = try Tensor.empty(shape: [qoLen, hq], dtype: .f32, device: device)
        try out.poison(stream: stream)
        try lse.poison(stream: stream)
        let ran = try singlePrefill(q: q, k: k, v: v, options: AttentionOptions(causal: causal, tier: tier), out: out, lse: lse, stream: stream)
        try stream.synchronize()
        if ran != tier { return "asked for \(tier), ran \(ran)" }
        results.append((try out.toFloats(), try lse.toFloats()))
    }
    var tol = Tolerance.attention(dtype: dtype, prefill: true, options: AttentionOptions(causal: causal))
    (tol.atol, tol.rtol) = (2 * tol.atol, 2 * tol.rtol)
    if let m = tol.compare(results[1].out, results[0].out) { return "output hopper vs fa2 (\(tol)): \(m)" }
    if let m = tol.compare(results[1].lse, results[0].lse) { return "lse hopper vs fa2 (\(tol)): \(m)" }
    return nil
}

/// A device tensor of `shape` whose rows (last axis) are padded to `rowPad` elements and whose
/// outer axes are interleaved with `copies` siblings: the views share one buffer. Returns the views
/// (`copies` of them) filled with `values[i]`.
private func stridedViews(_ values: [[Float]], shape: [Int], rowPad: Int, dtype: DType, device: Device) throws -> [Tensor] {
    // Buffer [shape[0], copies, shape[1], shape[2] + rowPad]; view i at offset i·shape[1]·(D + pad).
    let copies = values.count
    let (a, b, d) = (shape[0], shape[1], shape[2])
    let dp = d + rowPad
    var buf = [Float](repeating: .nan, count: a * copies * b * dp)
    for (ci, vals) in values.enumerated() {
        for x in 0..<a {
            for y in 0..<b {
                for z in 0..<d { buf[((x * copies + ci) * b + y) * dp + z] = vals[(x * b + y) * d + z] }
            }
        }
    }
    let dev = try Tensor.host(buf, shape: [a, copies, b, dp], dtype: dtype).toDevice(device)
    guard case .device(let storage, let off) = dev.storage else { fatalError("device tensor expected") }
    return (0..<copies).map { ci in
        Tensor(storage: .device(storage, byteOffset: off + ci * b * dp * dtype.byteSize),
               shape: shape, strides: [copies * b * dp, dp, 1], dtype: dtype)
    }
}

private func runPrefillCheck(_ c: PrefillCheckConfig, device: Device, stream: Stream, rng: inout SeededRNG) throws -> String? {
    let d = c.headDim
    let qShape = [c.qoLen, c.numQOHeads, d]
    let kvShape = c.layout == .nhd ? [c.kvLen, c.numKVHeads, d] : [c.numKVHeads, c.kvLen, d]
    func randn(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
    let qv = randn(qShape.reduce(1, *)), kv = randn(kvShape.reduce(1, *)), vv = randn(kvShape.reduce(1, *))
    let kvd = c.kvDType ?? c.dtype  // FP8: the normal values rounded to the format (scale 1 codes)
    let q, k, v: Tensor
    if c.strided {
        q = try stridedViews([qv], shape: qShape, rowPad: 8, dtype: c.dtype, device: device)[0]
        let kvViews = try stridedViews([kv, vv], shape: kvShape, rowPad: 16, dtype: kvd, device: device)
        (k, v) = (kvViews[0], kvViews[1])
    } else {
        q = try Tensor.host(qv, shape: qShape, dtype: c.dtype).toDevice(device)
        k = try Tensor.host(kv, shape: kvShape, dtype: kvd).toDevice(device)
        v = try Tensor.host(vv, shape: kvShape, dtype: kvd).toDevice(device)
    }
    let out = try Tensor.empty(shape: qShape, dtype: c.dtype, device: device)
    let lse = try Tensor.empty(shape: [c.qoLen, c.numQOHeads], dtype: .f32, device: device)
    try out.poison(stream: stream)
    try lse.poison(stream: stream)
    let ran = try singlePrefill(q: q, k: k, v: v, options: c.options, out: out, lse: lse, stream: stream)
    try stream.synchronize()
    // The tier asked for is the one that ran (auto: Hopper on an sm_90 GPU, FA2 elsewhere).
    let expected: PrefillTier = c.tier == .auto ? (device.properties.ccMajor == 9 ? .hopper : .fa2) : c.tier
    if ran != expected { return "ran on the \(ran) tier, expected \(expected)" }

    // The reference reads exactly what the kernel read (rounded to the dtype, gathered from views).
    let ref = try ReferenceAttention.prefill(
        q: try q.toFloats(), k: try k.toFloats(), v: try v.toFloats(), qoLen: c.qoLen, kvLen: c.kvLen,
        numQOHeads: c.numQOHeads, numKVHeads: c.numKVHeads, headDim: d, options: c.options,
        rotatedRounding: c.dtype)  // the tensor-core kernel stores RoPE'd q/k in the dtype
    let tol = Tolerance.attention(dtype: c.dtype, prefill: true, options: c.options)
    if let m = tol.compare(try out.toFloats(), ref.output) { return "output (\(tol)): \(m)" }
    // Under ALiBi the LSE is defined up to a per-row constant (ReferenceAttention's doc): outputs only.
    if c.posEnc != .alibi, let m = tol.compare(try lse.toFloats(), ref.lse) { return "lse (\(tol)): \(m)" }
    return nil
}

/// A check case that compiles a sweep's distinct kernels up front, in parallel (each case would
/// otherwise wait for NVRTC), failing on compile errors and on any spill.
public func compileUpFrontCase(name: String, specs: [any KernelSpec]) -> CheckCase {
    CheckCase(name: name) { device, _, _ in
        let jit = try JIT.shared(for: device)
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: specs.count) { i in
            do {
                let k = try jit.kernel(specs[i])
                if let r = k.compiled.resourceReport, r.spillStores > 0 || r.spillLoads > 0 {
                    failures.withLock { $0.append("\(specs[i].name) spills: \(r)") }
                }
            } catch {
                failures.withLock { $0.append("\(specs[i].name): \(error)") }
            }
        }
        let f = failures.withLock { $0 }
        return f.isEmpty ? nil : f.joined(separator: "; ")
    }
}
