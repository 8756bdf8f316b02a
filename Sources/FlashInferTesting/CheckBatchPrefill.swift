import Synchronization
import Dispatch
@_spi(Testing) import FlashInfer
import FlashInferCUDA

/// One batch prefill check: the requests, the options, and how K/V are stored.
struct BatchPrefillCheckConfig {
    var dtype: DType = .f16
    var headDim = 128
    var qoLens: [Int]
    var kvLens: [Int]
    var numKVHeads = 2
    var group = 4
    var layout: KVLayout = .nhd
    var paged = true
    var pageSize = 16
    var causal = true
    var posEnc: PositionEncoding = .none
    var softCap: Float = 0
    var window = -1
    /// The plan must (true) or must not (false) split KV on a 132-SM card; nil: either.
    var expectSplit: Bool? = nil
    /// Run through the allocating `run(q:kv:returnLSE:)` instead of caller buffers.
    var allocating = false
    /// FP8 K/V (e4m3 / e5m2) with these scales; nil: q's dtype.
    var kvDType: DType? = nil
    var kScale: Float = 1
    var vScale: Float = 1
    /// The kernel tier (`.fa2` for the FA2 sweep, so it keeps testing the FA2 kernels on an sm_90
    /// GPU; the Hopper sweep asks for `.hopper`, and the run must report the tier asked for).
    var tier: PrefillTier = .fa2

    var numQOHeads: Int { numKVHeads * group }
    var options: AttentionOptions {
        AttentionOptions(causal: causal, positionEncoding: posEnc, logitsSoftCap: softCap, windowLeft: window, layout: layout,
                         kScale: kScale, vScale: vScale, tier: tier)
    }
    var spec: PrefillSpec {
        BatchPrefillAttention.kernelSpec(qoLens: qoLens, groupSize: group, headDim: headDim, dtype: dtype, kvDType: kvDType,
                                         options: options, paged: paged)
    }
    /// The kernel the Hopper tier runs for this config.
    var hopperSpec: HopperBatchPrefillSpec {
        HopperBatchPrefillSpec(dtype: dtype, headDim: headDim, causal: causal, pageSize: paged ? pageSize : 0)
    }
    /// The kernel compiled up front for this config.
    var compiledSpec: any KernelSpec { tier == .hopper ? hopperSpec : spec }

    var name: String {
        var n = "batch-prefill \(tier == .fa2 ? "" : "\(tier) ")\(paged ? "paged page=\(pageSize)" : "ragged") \(dtype.rawValue) d\(headDim) B=\(qoLens.count)"
        n += " qo=\(qoLens.count <= 4 ? "\(qoLens)" : "\(qoLens.min()!)…\(qoLens.max()!)")"
        n += " kv=\(kvLens.count <= 4 ? "\(kvLens)" : "\(kvLens.min()!)…\(kvLens.max()!)")"
        n += " hq=\(numQOHeads) hkv=\(numKVHeads) \(layout.rawValue)"
        if posEnc != .none { n += " \(posEnc.name)" }
        if softCap > 0 { n += " cap=\(Int(softCap))" }
        if window >= 0 { n += " win=\(window)" }
        if causal { n += " causal" }
        if let s = expectSplit { n += s ? " split" : " no-split" }
        if allocating { n += " allocating" }
        if let kv = kvDType { n += " kv=\(kv.rawValue) k_scale=\(kScale) v_scale=\(vScale)" }
        return n
    }

    /// Multiply-adds of the Float64 reference, to keep the sweep's CPU time in check.
    var referenceCost: Int { zip(qoLens, kvLens).reduce(0) { $0 + $1.0 * $1.1 } * numQOHeads * headDim }
}

/// The batch prefill sweep: every value of every axis, not their product —
/// batch {1, 12, 17} × paged / ragged × causal on / off with the other axes cycled (dtype, group
/// {1, 4, 8}, page size {1, 8, 16}, layout, RoPE, query lengths {1, 17, 37, 127} mixed in a batch,
/// kv lengths 1…4096 mixed), then the cases that touch specific code: split-KV (few requests, long
/// kv) paged and ragged in both dtypes, a large batch that must not split, the 64-row tile
/// (decode-like queries), head dims 64 and 256, ALiBi + soft-cap + window, a page size that is not a
/// power of two, requests with no queries or no keys, and the allocating run.
func batchPrefillCheckConfigs() -> [BatchPrefillCheckConfig] {
    let kvPattern = [4096, 17, 300, 1, 2049, 129, 1000, 64, 3001, 37, 777, 128, 2500, 200, 1500, 513, 90]
    let qoChoices = [1, 17, 37, 127]
    /// Requests: kv lengths from the pattern (rotated), queries cycled; long kv gets short queries
    /// (qo·kv ≤ 70k keeps the reference cheap), causal keeps qo ≤ kv.
    func requests(_ b: Int, rotate: Int, causal: Bool) -> (qo: [Int], kv: [Int]) {
        var qo: [Int] = [], kv: [Int] = []
        for i in 0..<b {
            let k = kvPattern[(i + rotate) % kvPattern.count]
            var q = qoChoices[(i + rotate) % qoChoices.count]
            while q > 1 && q * k > 70_000 { q = qoChoices[qoChoices.firstIndex(of: q)! - 1] }
            if causal { q = min(q, k) }
            qo.append(q)
            kv.append(k)
        }
        return (qo, kv)
    }
    var out: [BatchPrefillCheckConfig] = []
    var idx = 0
    for b in [1, 12, 17] {
        for paged in [true, false] {
            for causal in [false, true] {
                let (qo, kv) = requests(b, rotate: idx * 3, causal: causal)
                var c = BatchPrefillCheckConfig(qoLens: qo, kvLens: kv)
                c.paged = paged
                c.causal = causal
                c.dtype = idx % 2 == 0 ? .f16 : .bf16
                c.group = [1, 4, 8][idx % 3]
                c.numKVHeads = c.group == 8 ? 1 : 2
                c.pageSize = [16, 1, 8][(idx / 2) % 3]
                c.layout = (idx / 3) % 2 == 0 ? .nhd : .hnd
                c.posEnc = idx % 4 == 1 || idx % 4 == 2 ? .ropeLlama() : .none
                if c.referenceCost > 150_000_000 { c.numKVHeads = 1 }
                out.append(c)
                idx += 1
            }
        }
    }
    func add(_ c: BatchPrefillCheckConfig, _ edit: (inout BatchPrefillCheckConfig) -> Void) {
        var c = c
        edit(&c)
        out.append(c)
    }
    let base = BatchPrefillCheckConfig(qoLens: [17], kvLens: [4096])
    // Split-KV: few requests with long kv cannot fill the GPU with q tiles alone.
    add(base) { $0.qoLens = [127]; $0.kvLens = [4096]; $0.expectSplit = true }
    add(base) { $0.paged = false; $0.dtype = .bf16; $0.group = 8; $0.numKVHeads = 1; $0.qoLens = [1]; $0.expectSplit = true }
    add(base) { $0.qoLens = [17, 1, 37]; $0.kvLens = [3001, 4096, 1000]; $0.pageSize = 1; $0.layout = .hnd; $0.posEnc = .ropeLlama(); $0.expectSplit = true }
    add(base) { $0.paged = false; $0.qoLens = [37, 17]; $0.kvLens = [2049, 4096]; $0.group = 1; $0.numKVHeads = 4; $0.causal = false; $0.expectSplit = true }
    add(base) { $0.dtype = .bf16; $0.qoLens = [127, 1]; $0.kvLens = [127, 4096]; $0.pageSize = 8; $0.posEnc = .ropeLlama(); $0.expectSplit = true }
    // No split: every kv fits the smallest chunk (128 keys), so the plan cannot split.
    let shortKV = [128, 100, 64, 1, 90, 127, 37, 128, 17, 77, 128, 5, 120, 64, 127, 33, 99]
    add(base) {
        $0.kvLens = shortKV; $0.qoLens = shortKV.enumerated().map { min(qoChoices[$0.offset % 4], $0.element) }
        $0.numKVHeads = 4; $0.group = 4; $0.expectSplit = false
    }
    add(base) {
        $0.paged = false; $0.dtype = .bf16; $0.layout = .hnd; $0.posEnc = .ropeLlama(); $0.causal = false
        $0.kvLens = shortKV; $0.qoLens = shortKV.map { _ in 127 }; $0.numKVHeads = 2; $0.group = 8; $0.expectSplit = false
    }
    add(base) { $0.pageSize = 8; $0.group = 1; $0.numKVHeads = 8; $0.kvLens = Array(shortKV.prefix(12)); $0.qoLens = Array(shortKV.prefix(12)); $0.expectSplit = false }
    // Decode-like queries: the 64-row tile.
    add(base) { $0.qoLens = [1, 1, 2, 1, 3, 1, 1, 1, 1, 2, 1, 1]; $0.kvLens = [1, 17, 300, 4096, 64, 65, 129, 2000, 5, 999, 16, 33]; $0.group = 8; $0.numKVHeads = 1 }
    add(base) { $0.paged = false; $0.causal = false; $0.qoLens = [3, 1, 5, 2]; $0.kvLens = [1, 300, 4096, 90]; $0.group = 4; $0.posEnc = .ropeLlama() }
    // Head dims 64 and 256.
    add(base) { $0.headDim = 64; $0.qoLens = [127, 37, 17, 1]; $0.kvLens = [127, 513, 2049, 1]; $0.pageSize = 8 }
    add(base) { $0.headDim = 256; $0.paged = false; $0.dtype = .bf16; $0.qoLens = [127, 37, 1]; $0.kvLens = [300, 37, 777]; $0.layout = .hnd }
    add(base) { $0.headDim = 256; $0.qoLens = [65, 17]; $0.kvLens = [129, 1000]; $0.pageSize = 16; $0.posEnc = .ropeLlama() }
    // ALiBi + soft-cap + window (outputs only under ALiBi), and a window alone.
    add(base) { $0.qoLens = [37, 127, 1]; $0.kvLens = [300, 127, 999]; $0.posEnc = .alibi; $0.softCap = 30; $0.window = 13 }
    add(base) { $0.paged = false; $0.qoLens = [127, 17]; $0.kvLens = [1000, 4096]; $0.window = 100; $0.expectSplit = true }
    // A page size that is not a power of two, pages shuffled (every paged case shuffles).
    add(base) { $0.pageSize = 3; $0.qoLens = [37, 1, 17]; $0.kvLens = [37, 100, 1001]; $0.group = 1; $0.numKVHeads = 4 }
    // Requests with no queries, and (not causal) with no keys: output 0, LSE −inf.
    add(base) { $0.causal = false; $0.qoLens = [5, 0, 17, 3]; $0.kvLens = [0, 300, 0, 129] }
    add(base) { $0.paged = false; $0.causal = false; $0.qoLens = [0, 37, 1]; $0.kvLens = [17, 0, 2000]; $0.layout = .hnd }
    // The allocating run (not poisoned; every other case writes into poisoned buffers).
    add(base) { $0.qoLens = [37, 17]; $0.kvLens = [500, 2000]; $0.allocating = true }
    // FP8 K/V (issue 12): paged and ragged, both formats, both q dtypes, split and not, the 64-row
    // tile, the variants, page sizes 1 and 16, head dims 64/128/256.
    func fp8(_ kvd: DType, _ edit: (inout BatchPrefillCheckConfig) -> Void) {
        add(base) { $0.kvDType = kvd; $0.kScale = 0.37; $0.vScale = 2.5; edit(&$0) }
    }
    for kvd in [DType.e4m3, .e5m2] {
        fp8(kvd) { $0.qoLens = [17, 1, 37, 127]; $0.kvLens = [300, 4096, 1000, 127] }
        fp8(kvd) { $0.paged = false; $0.dtype = .bf16; $0.qoLens = [127]; $0.kvLens = [4096]; $0.expectSplit = true; $0.layout = .hnd }
        fp8(kvd) { $0.pageSize = 1; $0.qoLens = [1, 1, 2, 1]; $0.kvLens = [1, 4096, 300, 17]; $0.group = 8; $0.numKVHeads = 1 }
        fp8(kvd) { $0.headDim = 64; $0.qoLens = [37, 17]; $0.kvLens = [513, 2049]; $0.posEnc = .ropeLlama(); $0.dtype = .bf16 }
        fp8(kvd) { $0.headDim = 256; $0.paged = false; $0.qoLens = [65, 17]; $0.kvLens = [129, 1000]; $0.causal = false; $0.window = 13 }
        fp8(kvd) { $0.qoLens = [37, 127, 1]; $0.kvLens = [300, 127, 999]; $0.posEnc = .alibi; $0.softCap = 30; $0.layout = .hnd; $0.kScale = 3; $0.vScale = 0.25 }
    }
    return out
}

public func batchPrefillCases() -> [CheckCase] {
    let configs = batchPrefillCheckConfigs()
    var cases: [CheckCase] = []
    // Compile every distinct kernel up front, in parallel (each case would otherwise wait for NVRTC).
    cases.append(compileUpFrontCase(name: "batch-prefill jit: compile the sweep's kernels",
                                    specs: Array(Set(configs.map(\.spec))).map { $0 as any KernelSpec } + [DType.f16, .bf16].map { batchMergeSpec($0) }))
    for c in configs {
        cases.append(CheckCase(name: c.name) { device, stream, rng in try runBatchPrefillCheck(c, device: device, stream: stream, rng: &rng) })
    }
    // One wrapper planned again and again: plan() reuses its device buffers when they are large
    // enough and grows them otherwise; every run must still match (small → large → small → large).
    cases.append(CheckCase(name: "batch-prefill re-plan: one wrapper, buffers reused and grown") { device, stream, rng in
        let gpu = BatchPrefillAttention(backend: .cuda(stream))
        let small = BatchPrefillCheckConfig(qoLens: [127], kvLens: [4096], expectSplit: true)
        var large = BatchPrefillCheckConfig(qoLens: [17, 1, 37, 5, 127, 1, 1, 64], kvLens: [3001, 4096, 1000, 17, 2000, 1, 999, 4096])
        large.numKVHeads = 4
        var ragged = small
        ragged.paged = false
        ragged.qoLens = [37, 17]
        ragged.kvLens = [2049, 4096]
        for (i, c) in [small, large, ragged, large].enumerated() {
            if let r = try runBatchPrefillCheck(c, device: device, stream: stream, rng: &rng, reusing: gpu) { return "plan \(i + 1): \(r)" }
        }
        return nil
    })
    return cases + hopperBatchPrefillCases()
}

/// The split-KV merge kernel's spec (for the up-front compile).
private func batchMergeSpec(_ dtype: DType) -> any KernelSpec {
    kernelCatalog().first { $0.spec.name == "merge_states_varlen_\(dtype.rawValue)" }!.spec
}

func runBatchPrefillCheck(_ c: BatchPrefillCheckConfig, device: Device, stream: Stream, rng: inout SeededRNG,
                                  reusing wrapper: BatchPrefillAttention? = nil) throws -> String? {
    let (hq, hkv, d) = (c.numQOHeads, c.numKVHeads, c.headDim)
    func randn(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
    var qoIndptr: [Int32] = [0]
    for n in c.qoLens { qoIndptr.append(qoIndptr.last! + Int32(n)) }
    let total = Int(qoIndptr.last!)
    let qHost = Tensor.host(randn(total * hq * d), shape: [total, hq, d], dtype: c.dtype)
    let gpu = wrapper ?? BatchPrefillAttention(backend: .cuda(stream)), cpu = BatchPrefillAttention(backend: .cpu)
    cpu.referenceRotatedRounding = c.dtype  // the tensor-core kernel stores RoPE'd q/k in the dtype
    let kvHost: BatchKV, kvDevice: BatchKV
    if c.paged {
        // Pages of each request shuffled over a cache with a few unused pages.
        var table = PageTable.contiguous(seqLens: c.kvLens, pageSize: c.pageSize)
        let numPages = table.indices.count + 5
        var perm = Array(0..<numPages)
        for i in stride(from: numPages - 1, to: 0, by: -1) { perm.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        table.indices = table.indices.map { Int32(perm[Int($0)]) }
        // One [pages, 2, ...] tensor: K and V interleaved per page (a page stride of two pages).
        let shape = c.layout == .nhd ? [numPages, 2, c.pageSize, hkv, d] : [numPages, 2, hkv, c.pageSize, d]
        let values = randn(shape.reduce(1, *))
        let host = Tensor.host(values, shape: shape, dtype: c.kvDType ?? c.dtype)
        kvHost = .paged(try PagedKVCache(combined: host, layout: c.layout))
        kvDevice = .paged(try PagedKVCache(combined: try host.toDevice(device), layout: c.layout))
        for w in [gpu, cpu] {
            try w.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: c.dtype,
                       kvDType: c.kvDType, options: c.options, numPagesInCache: numPages)
        }
    } else {
        var kvIndptr: [Int32] = [0]
        for n in c.kvLens { kvIndptr.append(kvIndptr.last! + Int32(n)) }
        let nkv = Int(kvIndptr.last!)
        let shape = c.layout == .nhd ? [nkv, hkv, d] : [hkv, nkv, d]
        let k = Tensor.host(randn(shape.reduce(1, *)), shape: shape, dtype: c.kvDType ?? c.dtype)
        let v = Tensor.host(randn(shape.reduce(1, *)), shape: shape, dtype: c.kvDType ?? c.dtype)
        kvHost = .ragged(k: k, v: v)
        kvDevice = .ragged(k: try k.toDevice(device), v: try v.toDevice(device))
        for w in [gpu, cpu] {
            try w.plan(qoIndptr: qoIndptr, kvIndptr: kvIndptr, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: c.dtype,
                       kvDType: c.kvDType, options: c.options)
        }
    }
    let plan = gpu.plan!
    let planNote = "plan: \(gpu.tier.map { "\($0) tier, " } ?? "")\(plan.workItems) items, tile \(plan.ctaTileQ), \(plan.splitKV ? "split, chunk \(plan.chunkTokens)" : "no split")"
    if c.tier != .auto, gpu.tier != c.tier { return "\(planNote); asked for tier \(c.tier)\(gpu.tierFallback.map { " (\($0))" } ?? "")" }
    if let e = c.expectSplit, plan.splitKV != e { return "\(planNote); expected \(e ? "a split" : "no split")" }
    let qDevice = try qHost.toDevice(device)
    let got: (out: [Float], lse: [Float])
    if c.allocating {
        let r = try gpu.run(q: qDevice, kv: kvDevice, returnLSE: true)
        try stream.synchronize()
        if r.prefillTier != gpu.tier { return "the allocating run reported tier \(r.prefillTier.map { "\($0)" } ?? "nil"), the plan \(gpu.tier.map { "\($0)" } ?? "nil")" }
        got = (try r.output.toFloats(), try r.lse!.toFloats())
    } else {
        let out = try Tensor.empty(shape: [total, hq, d], dtype: c.dtype, device: device)
        let lse = try Tensor.empty(shape: [total, hq], dtype: .f32, device: device)
        try out.poison(stream: stream)
        try lse.poison(stream: stream)
        try gpu.run(q: qDevice, kv: kvDevice, out: out, lse: lse)
        try stream.synchronize()
        got = (try out.toFloats(), try lse.toFloats())
    }
    // The CPU path of the same wrapper: per-request Float64 reference on exactly the rounded inputs.
    let ref = try cpu.run(q: qHost, kv: kvHost, returnLSE: true)
    let tol = Tolerance.attention(dtype: c.dtype, prefill: true, options: c.options)
    if let m = tol.compare(got.out, try ref.output.toFloats()) { return "output (\(tol)) [\(planNote)]: \(m)" }
    // Under ALiBi the LSE is defined up to a per-row constant (ReferenceAttention's doc): outputs only.
    if c.posEnc != .alibi, let m = tol.compare(got.lse, try ref.lse!.toFloats()) { return "lse (\(tol)) [\(planNote)]: \(m)" }
    return nil
}

/// CUDA-graph mode: one capture after the first plan, replayed after later plans of other batch
/// sizes and lengths within the capacity (and after plans refused for exceeding it or for needing
/// another kernel), each replay compared with the CPU reference on the planned rows.
public func batchPrefillGraphCases() -> [CheckCase] {
    [CheckCase(name: "batch-prefill cuda-graph replay after re-plan") { device, stream, rng in
        let (hkv, group, d, ps) = (4, 4, 128, 16)
        let hq = hkv * group
        let cap = GraphCapacity(maxBatch: 8, maxPages: 768, maxQORows: 600)
        let options = AttentionOptions(causal: true)
        let numPages = cap.maxPages
        let shape = [numPages, 2, ps, hkv, d]
        let kvHost = Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: .f16)
        let hostCache = try PagedKVCache(combined: kvHost)
        let devCache = try PagedKVCache(combined: kvHost.toDevice(device))
        let q = try Tensor.empty(shape: [cap.maxQORows, hq, d], dtype: .f16, device: device)
        let out = try Tensor.empty(shape: [cap.maxQORows, hq, d], dtype: .f16, device: device)
        let lse = try Tensor.empty(shape: [cap.maxQORows, hq], dtype: .f32, device: device)
        guard case .device(let qBuf, _) = q.storage else { return "q not on the device" }
        let wrapper = BatchPrefillAttention(backend: .cuda(stream), graphCapacity: cap)
        var graph: Graph?
        func table(_ kvLens: [Int]) -> PageTable {
            var t = PageTable.contiguous(seqLens: kvLens, pageSize: ps)
            for i in stride(from: t.indices.count - 1, to: 0, by: -1) { t.indices.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            return t
        }
        func indptr(_ lens: [Int]) -> [Int32] { lens.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1)) } }
        // Steps: (queries, keys) per request; batch, lengths and tile count all change.
        let steps: [([Int], [Int])] = [
            ([100, 1, 37, 200, 17], [500, 300, 37, 2000, 17]),
            ([5, 64, 1, 1, 300, 2, 90, 7], [5, 1000, 4000, 1, 300, 129, 900, 2500]),
            ([600], [3000]),
            ([1, 1], [1, 7]),
        ]
        for (step, (qo, kv)) in steps.enumerated() {
            let t = table(kv)
            let qi = indptr(qo)
            let total = Int(qi.last!)
            let qHost = (0..<(cap.maxQORows * hq * d)).map { _ in rng.normal() }
            try qBuf.copyFromHost(DType.f16.encode(qHost), stream: stream)
            try out.poison(stream: stream)
            try lse.poison(stream: stream)
            try wrapper.plan(qoIndptr: qi, table: t, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: options,
                             numPagesInCache: numPages)
            if graph == nil {
                graph = try Graph.capture(on: stream) { try wrapper.run(q: q, kv: .paged(devCache), out: out, lse: lse) }
            }
            try graph!.launch(on: stream)
            try stream.synchronize()
            let cpu = BatchPrefillAttention(backend: .cpu)
            cpu.referenceRotatedRounding = .f16  // the tensor-core kernel stores RoPE'd q/k in the dtype
            try cpu.plan(qoIndptr: qi, table: t, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: options,
                         numPagesInCache: numPages)
            let expected = try cpu.run(q: Tensor.host(Array(qHost[0..<(total * hq * d)]), shape: [total, hq, d], dtype: .f16),
                                       kv: .paged(hostCache), returnLSE: true)
            if let m = Tolerance.f16.compare(Array(try out.toFloats()[0..<(total * hq * d)]), try expected.output.toFloats()) {
                return "step \(step) (B=\(qo.count), \(wrapper.plan!.workItems) items): \(m)"
            }
            if let m = Tolerance.f16.compare(Array(try lse.toFloats()[0..<(total * hq)]), try expected.lse!.toFloats()) {
                return "step \(step) lse: \(m)"
            }
            // Refused plans (capacity, another kernel) between the steps leave the graph replayable.
            if step == 1 {
                let refused: [(String, [Int32], PageTable, AttentionOptions)] = [
                    ("9 requests", indptr(Array(repeating: 1, count: 9)), table(Array(repeating: 16, count: 9)), options),
                    ("601 query rows", indptr([601]), table([700]), options),
                    ("a non-causal plan", indptr([5]), table([50]), AttentionOptions()),
                ]
                for (what, qi, t, o) in refused {
                    do {
                        try wrapper.plan(qoIndptr: qi, table: t, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: o,
                                         numPagesInCache: numPages)
                        return "graph mode accepted \(what)"
                    } catch {}
                }
            }
        }
        return nil
    }]
}
