@_spi(Testing) import FlashInfer
import FlashInferCUDA

/// The Hopper tier of batch prefill (`HopperBatchPrefillSpec`) against the CPU reference: f16 and
/// bf16, causal or not, paged (page 8 / 16 / 32 / 128, NHD and HND, pages shuffled) and ragged,
/// mixed request lengths with requests of no queries or no keys, append shapes (qo < kv), GQA
/// groups 1 / 2 / 4 / 8 / 16, head dims 64 and 128, several q tiles per request.
func hopperBatchPrefillCheckConfigs() -> [BatchPrefillCheckConfig] {
    var out: [BatchPrefillCheckConfig] = []
    func add(_ qo: [Int], _ kv: [Int], _ edit: (inout BatchPrefillCheckConfig) -> Void) {
        var c = BatchPrefillCheckConfig(qoLens: qo, kvLens: kv)
        c.tier = .hopper
        edit(&c)
        out.append(c)
    }
    // Paged.
    add([37, 127, 1, 200], [300, 127, 4096, 200]) { _ in }
    add([65, 17, 64], [1000, 17, 513]) { $0.dtype = .bf16; $0.causal = false; $0.layout = .hnd; $0.group = 8; $0.numKVHeads = 1 }
    add([128, 1, 77], [128, 999, 2049]) { $0.pageSize = 8; $0.layout = .hnd; $0.group = 1; $0.numKVHeads = 4 }
    add([300, 5], [300, 1000]) { $0.dtype = .bf16; $0.pageSize = 32; $0.headDim = 64 }
    add([5, 0, 17, 3], [0, 300, 0, 129]) { $0.pageSize = 128; $0.causal = false }
    add([0, 37, 1, 0], [17, 300, 2000, 0]) { $0.layout = .hnd }
    // Append (P4-shaped, smaller): 128 new tokens onto longer caches, 4 q tiles per request.
    add([128, 128, 128, 128], [600, 129, 1000, 128]) { $0.group = 4; $0.numKVHeads = 1 }
    add([40, 9], [40, 700]) { $0.dtype = .bf16; $0.group = 16; $0.numKVHeads = 1 }
    // Ragged.
    add([37, 17, 127, 1], [37, 2049, 500, 1]) { $0.paged = false }
    add([0, 37, 1], [17, 0, 2000]) { $0.paged = false; $0.dtype = .bf16; $0.causal = false; $0.layout = .hnd; $0.headDim = 64; $0.group = 8; $0.numKVHeads = 1 }
    add([250, 3], [1000, 3]) { $0.paged = false; $0.group = 2; $0.numKVHeads = 4 }
    add([129, 16], [129, 4000]) { $0.paged = false; $0.dtype = .bf16; $0.layout = .hnd }
    // The allocating run reports the tier.
    add([37, 17], [500, 2000]) { $0.allocating = true }
    return out
}

public func hopperBatchPrefillCases() -> [CheckCase] {
    let configs = hopperBatchPrefillCheckConfigs()
    var cases: [CheckCase] = []
    var specs: [any KernelSpec] = []
    var seen = Set<String>()
    for c in configs where seen.insert(c.hopperSpec.name).inserted { specs.append(c.hopperSpec) }
    cases.append(compileUpFrontCase(name: "batch-prefill hopper jit: compile the Hopper batch kernels", specs: specs))
    for c in configs {
        cases.append(CheckCase(name: c.name) { device, stream, rng in try runBatchPrefillCheck(c, device: device, stream: stream, rng: &rng) })
    }
    // FA2 and Hopper on the same inputs, P3- and P4-shaped (32/8 heads, page 16, causal).
    let agreement: [(String, DType, [Int], [Int], Bool)] = [
        ("P3-shaped 4 × 1024", .f16, [1024, 1024, 1024, 1024], [1024, 1024, 1024, 1024], true),
        ("P4-shaped append 8 × 128 onto 2048", .bf16, Array(repeating: 128, count: 8), Array(repeating: 2048 + 128, count: 8), true),
        ("mixed, not causal", .f16, [300, 1, 0, 77], [3000, 129, 50, 77], false),
    ]
    for (label, dtype, qo, kv, causal) in agreement {
        cases.append(CheckCase(name: "batch-prefill hopper tier agreement \(label) \(dtype.rawValue) hq=32 hkv=8\(causal ? " causal" : "")") {
            device, stream, rng in
            try runBatchTierAgreement(dtype: dtype, qoLens: qo, kvLens: kv, causal: causal, device: device, stream: stream, rng: &rng)
        })
    }
    cases.append(CheckCase(name: "batch-prefill hopper tier fallback: auto reports fa2 for rope / page 1, 3 / group 3 / decode-like / too few CTAs, hopper refuses the unsupported") {
        device, stream, _ in try runBatchTierFallback(device: device, stream: stream)
    })
    return cases
}

/// The same paged inputs through both tiers: outputs and LSEs within twice the prefill tolerance.
private func runBatchTierAgreement(dtype: DType, qoLens: [Int], kvLens: [Int], causal: Bool, device: Device, stream: Stream,
                                   rng: inout SeededRNG) throws -> String? {
    let (hq, hkv, d, ps) = (32, 8, 128, 16)
    let qoIndptr = qoLens.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1)) }
    let total = Int(qoIndptr.last!)
    var table = PageTable.contiguous(seqLens: kvLens, pageSize: ps)
    let numPages = max(table.indices.count, 1)
    var perm = Array(0..<numPages)
    for i in stride(from: numPages - 1, to: 0, by: -1) { perm.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    table.indices = table.indices.map { Int32(perm[Int($0)]) }
    func randn(_ shape: [Int]) throws -> Tensor {
        try Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: dtype).toDevice(device)
    }
    let q = try randn([total, hq, d])
    let cache = try PagedKVCache(k: try randn([numPages, ps, hkv, d]), v: try randn([numPages, ps, hkv, d]))
    var results: [(out: [Float], lse: [Float])] = []
    for tier in [PrefillTier.fa2, .hopper] {
        let w = BatchPrefillAttention(backend: .cuda(stream))
        try w.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: dtype,
                   options: AttentionOptions(causal: causal, tier: tier), numPagesInCache: numPages)
        if w.tier != tier { return "asked for \(tier), planned \(w.tier.map { "\($0)" } ?? "nil")" }
        let out = try Tensor.empty(shape: [total, hq, d], dtype: dtype, device: device)
        let lse = try Tensor.empty(shape: [total, hq], dtype: .f32, device: device)
        try out.poison(stream: stream)
        try lse.poison(stream: stream)
        try w.run(q: q, kv: .paged(cache), out: out, lse: lse)
        try stream.synchronize()
        results.append((try out.toFloats(), try lse.toFloats()))
    }
    var tol = Tolerance.attention(dtype: dtype, prefill: true, options: AttentionOptions(causal: causal))
    (tol.atol, tol.rtol) = (2 * tol.atol, 2 * tol.rtol)
    if let m = tol.compare(results[1].out, results[0].out) { return "output hopper vs fa2 (\(tol)): \(m)" }
    if let m = tol.compare(results[1].lse, results[0].lse) { return "lse hopper vs fa2 (\(tol)): \(m)" }
    return nil
}

/// `.auto` plans FA2 (and says why) for what the Hopper batch kernel does not take, Hopper for a
/// plain paged prefill; `.hopper` refuses the unsupported ones with `unsupportedCombination`.
private func runBatchTierFallback(device: Device, stream: Stream) throws -> String? {
    struct Case {
        var what: String; var pageSize = 16; var group = 4; var qo = 1024; var kv = [1024, 2048]; var hkv = 8; var rope = false
        var expected: PrefillTier
        /// `.hopper` runs it (only `.auto` does not choose it): decode-like and too-few-CTA batches.
        var hopperRuns = false
    }
    let cases = [
        Case(what: "plain paged prefill (512 CTAs)", expected: .hopper),
        Case(what: "RoPE", rope: true, expected: .fa2),
        Case(what: "page size 1", pageSize: 1, expected: .fa2),
        Case(what: "page size 3", pageSize: 3, expected: .fa2),
        Case(what: "group 3", group: 3, expected: .fa2),
        Case(what: "decode-like (one query per request)", qo: 1, expected: .fa2, hopperRuns: true),
        Case(what: "16 CTAs where FA2 splits KV", qo: 128, kv: [300, 1000], hkv: 2, expected: .fa2, hopperRuns: true),
    ]
    for c in cases {
        let (hkv, kv) = (c.hkv, c.kv)
        let table = PageTable.contiguous(seqLens: kv, pageSize: c.pageSize)
        let qoIndptr: [Int32] = [0, Int32(c.qo), Int32(2 * c.qo)]
        var o = AttentionOptions(causal: true, positionEncoding: c.rope ? .ropeLlama() : .none, tier: .auto)
        let w = BatchPrefillAttention(backend: .cuda(stream))
        try w.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hkv * c.group, numKVHeads: hkv, headDim: 128, dtype: .f16, options: o,
                   numPagesInCache: table.indices.count)
        if w.tier != c.expected { return "auto, \(c.what): planned \(w.tier.map { "\($0)" } ?? "nil"), expected \(c.expected)" }
        if c.expected == .fa2 && w.tierFallback == nil { return "auto, \(c.what): FA2 without a reason" }
        if c.expected == .hopper && w.tierFallback != nil { return "auto, \(c.what): Hopper with a fallback reason" }
        o.tier = .hopper
        var refusal: FlashInferError? = nil
        do {
            try w.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hkv * c.group, numKVHeads: hkv, headDim: 128, dtype: .f16, options: o,
                       numPagesInCache: table.indices.count)
        } catch {
            refusal = error
        }
        let mustRefuse = c.expected == .fa2 && !c.hopperRuns
        if let refusal {
            guard mustRefuse, case .unsupportedCombination = refusal else { return "tier hopper, \(c.what): \(refusal)" }
        } else {
            if mustRefuse { return "tier hopper, \(c.what): not refused" }
            if w.tier != .hopper { return "tier hopper, \(c.what): planned \(w.tier.map { "\($0)" } ?? "nil")" }
        }
    }
    return nil
}
