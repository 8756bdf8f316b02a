@_spi(Testing) import FlashInfer
import FlashInferCUDA

// GPU checks of block-sparse attention and custom masks (issue 12): each GPU result (written into
// NaN-poisoned buffers) against the Float64 reference on exactly the inputs the kernel read, under
// the shared prefill tolerance `Tolerance.attention(dtype:prefill: true, options:)` — f16 atol 1e-3
// / rtol 1e-3 (1e-2 / 1e-2 with a soft cap), bf16 1e-2 / 1e-2 — which is at least as strict as
// upstream's block-sparse test (rtol 1e-3, atol 1e-2) in every element. Queries that keep no key
// (an empty block row, a fully masked row) must be exactly 0 with LSE exactly −inf, never NaN.

/// FP8 K/V scales of the checks: the values `x / scale` stored (e4m3 saturates at 448: |x| > 4.48
/// is rare for normal inputs, and the reference reads the stored codes anyway).
private let fp8KScale: Float = 0.01, fp8VScale: Float = 0.02

/// Random normal K or V of `shape`: in `dtype`, or quantized to FP8 with `scale` (the reference
/// reads the stored codes, `toFloats()`, with `kScale` / `vScale`).
private func randomKV(_ shape: [Int], dtype: DType, kvDType: DType?, scale: Float, rng: inout SeededRNG) throws -> Tensor {
    let values = (0..<shape.reduce(1, *)).map { _ in rng.normal() }
    guard let kv = kvDType, kv.isFP8 else { return Tensor.host(values, shape: shape, dtype: dtype) }
    return try quantize(Tensor.host(values, shape: shape, dtype: .f32), to: kv, scale: scale)
}

/// nil when every query `empty(i)` says keeps no key has output exactly 0 and LSE exactly −inf
/// (rows of `hq` heads of `d` values), else the first offender.
private func checkEmptyRows(out: [Float], lse: [Float], rows: Int, hq: Int, d: Int, empty: (Int) -> Bool) -> String? {
    for i in 0..<rows where empty(i) {
        for h in 0..<hq {
            let l = lse[i * hq + h]
            guard l == -.infinity else { return "query \(i) head \(h) keeps no key: LSE \(l), expected exactly -inf" }
            let row = out[((i * hq + h) * d)..<((i * hq + h + 1) * d)]
            if let bad = row.first(where: { $0 != 0 }) { return "query \(i) head \(h) keeps no key: output \(bad), expected exactly 0" }
        }
    }
    return nil
}

// MARK: - Block-sparse attention

/// One block-sparse check: the BSR shape, the pattern's density, the in-block mask, dtypes, options.
struct BlockSparseCheckConfig {
    enum MaskForm: String { case none, blocks, packed }

    var dtype: DType = .f16
    var layout: KVLayout = .nhd
    var m: Int, n: Int, r: Int, c: Int
    var numKVHeads = 2
    var group = 1
    var headDim = 128
    /// Probability that a block is stored (block row 0 never stores one: every case has an empty
    /// block row, whose queries must give exactly 0 / −inf).
    var density = 0.5
    var mask: MaskForm = .none
    var kvDType: DType? = nil
    var softCap: Float = 0
    /// Run through the allocating `run(q:k:v:returnLSE:)` instead of caller buffers.
    var allocating = false
    /// The batch prefill plan must (true) or must not (false) split KV on a 132-SM card; nil: either.
    var expectSplit: Bool? = nil

    var numQOHeads: Int { numKVHeads * group }
    var fp8: Bool { kvDType?.isFP8 ?? false }
    var options: AttentionOptions {
        AttentionOptions(logitsSoftCap: softCap, layout: layout, kScale: fp8 ? fp8KScale : 1, vScale: fp8 ? fp8VScale : 1)
    }
    /// The queries of each block row (the batch prefill requests).
    var qoLens: [Int] { (0..<((m + r - 1) / r)).map { min(r, m - $0 * r) } }
    var spec: PrefillSpec {
        BatchPrefillAttention.kernelSpec(qoLens: qoLens, groupSize: group, headDim: headDim, dtype: dtype, kvDType: kvDType,
                                         options: options, paged: true, customMask: mask != .none)
    }

    var name: String {
        var s = "bsr \(dtype.rawValue) d\(headDim) M=\(m) N=\(n) R=\(r) C=\(c) hq=\(numQOHeads) hkv=\(numKVHeads) \(layout.rawValue)"
        s += " density=\(density)"
        if mask != .none { s += " mask=\(mask.rawValue)" }
        if let kv = kvDType, kv.isFP8 { s += " kv-dtype=\(kv.rawValue) k_scale=\(fp8KScale) v_scale=\(fp8VScale)" }
        if softCap > 0 { s += " cap=\(Int(softCap))" }
        if let e = expectSplit { s += e ? " split" : " no-split" }
        if allocating { s += " allocating" }
        return s
    }

    /// A random pattern: each block of block rows 1... stored with probability `density`, the
    /// stored columns of a row in a shuffled order (the page table need not be sorted).
    func randomPattern(_ rng: inout SeededRNG) throws -> BlockSparsePattern {
        let mb = (m + r - 1) / r, nb = n / c
        var indptr: [Int32] = [0], indices: [Int32] = []
        for i in 0..<mb {
            var row = i == 0 ? [] : (0..<nb).filter { _ in Double(rng.uniform()) < density }.map(Int32.init)
            for a in stride(from: row.count - 1, to: 0, by: -1) { row.swapAt(a, Int(rng.next() % UInt64(a + 1))) }
            indices += row
            indptr.append(Int32(indices.count))
        }
        return try BlockSparsePattern(indptr: indptr, indices: indices, rows: m, columns: n, blockRows: r, blockColumns: c)
    }
}

/// The block-sparse sweep (every value of every axis, not their product): R × C in {16×16, 64×64,
/// 1×16, 3×8 with M % R ≠ 0}, f16 / bf16, NHD / HND, GQA groups 1 and 4, densities 10 % and 50 %;
/// then the in-block mask (both forms, R = 1 and 3 included, a fully masked query in each), FP8
/// K/V (e4m3, e5m2) with k/v scales, soft-cap, head dims 64 and 256, Llama heads (32/8), a pattern
/// with no block at all, a split-KV plan with a mask, and the allocating run. Every case has an
/// empty block row.
func blockSparseCheckConfigs() -> [BlockSparseCheckConfig] {
    typealias C = BlockSparseCheckConfig
    func make(_ m: Int, _ n: Int, _ r: Int, _ c: Int, _ dtype: DType, _ layout: KVLayout, group: Int, density: Double,
              _ edit: (inout C) -> Void = { _ in }) -> C {
        var x = C(dtype: dtype, layout: layout, m: m, n: n, r: r, c: c, group: group, density: density)
        edit(&x)
        return x
    }
    return [
        // Block shapes × dtype × layout × group × density.
        make(512, 512, 16, 16, .f16, .nhd, group: 1, density: 0.1),
        make(512, 512, 16, 16, .bf16, .hnd, group: 4, density: 0.5),
        make(1024, 1024, 64, 64, .bf16, .nhd, group: 4, density: 0.1),
        make(1024, 1024, 64, 64, .f16, .hnd, group: 1, density: 0.5),
        make(257, 512, 1, 16, .f16, .hnd, group: 4, density: 0.1),
        make(257, 512, 1, 16, .bf16, .nhd, group: 1, density: 0.5),
        make(100, 256, 3, 8, .f16, .nhd, group: 4, density: 0.5),
        make(100, 256, 3, 8, .bf16, .hnd, group: 1, density: 0.1),
        // In-block masks (M % R == 0), booleans and packed.
        make(512, 512, 16, 16, .f16, .nhd, group: 4, density: 0.5) { $0.mask = .blocks },
        make(1024, 1024, 64, 64, .bf16, .hnd, group: 1, density: 0.1) { $0.mask = .packed },
        make(256, 512, 1, 16, .f16, .nhd, group: 1, density: 0.5) { $0.mask = .packed },
        make(99, 256, 3, 8, .bf16, .nhd, group: 4, density: 0.5) { $0.mask = .blocks },
        // FP8 K/V with k_scale / v_scale.
        make(1024, 1024, 64, 64, .f16, .nhd, group: 4, density: 0.1) { $0.kvDType = .e4m3 },
        make(512, 512, 16, 16, .bf16, .hnd, group: 1, density: 0.5) { $0.kvDType = .e4m3; $0.mask = .blocks },
        make(100, 256, 3, 8, .f16, .hnd, group: 4, density: 0.5) { $0.kvDType = .e5m2 },
        // Soft-cap.
        make(512, 512, 16, 16, .f16, .nhd, group: 4, density: 0.5) { $0.softCap = 30 },
        make(1024, 1024, 64, 64, .bf16, .hnd, group: 1, density: 0.1) { $0.softCap = 30; $0.mask = .packed },
        // Head dims 64 and 256.
        make(512, 512, 16, 16, .f16, .nhd, group: 4, density: 0.5) { $0.headDim = 64 },
        make(256, 512, 16, 32, .bf16, .hnd, group: 1, density: 0.5) { $0.headDim = 256 },
        // Llama heads (32 / 8), the bench's block shape.
        make(256, 1024, 64, 64, .f16, .nhd, group: 4, density: 0.1) { $0.numKVHeads = 8 },
        // No block at all: every query gives 0 / −inf.
        make(128, 256, 16, 16, .f16, .nhd, group: 4, density: 0),
        // Two block rows of ~58 blocks each (64 keys): few q tiles, long kv, so the plan splits KV
        // and the mask is read across kv chunks.
        make(192, 4096, 64, 64, .f16, .nhd, group: 2, density: 0.9) { $0.numKVHeads = 1; $0.mask = .blocks; $0.expectSplit = true },
        // The allocating run.
        make(512, 512, 16, 16, .f16, .hnd, group: 4, density: 0.1) { $0.allocating = true },
    ]
}

/// The distinct kernels the custom-mask and block-sparse checks launch (the NVRTC tests compile
/// them without a GPU and require zero spills, as for the catalogue).
public func sparseCheckKernelSpecs() -> [PrefillSpec] {
    var seen = Set<PrefillSpec>()
    return (customMaskCheckConfigs().map(\.spec) + blockSparseCheckConfigs().map(\.spec)).filter { seen.insert($0).inserted }
}

public func blockSparseCases() -> [CheckCase] {
    let configs = blockSparseCheckConfigs()
    var cases: [CheckCase] = []
    cases.append(compileUpFrontCase(name: "bsr jit: compile the sweep's kernels", specs: Array(Set(configs.map(\.spec)))))
    for c in configs {
        cases.append(CheckCase(name: c.name) { device, stream, rng in try runBlockSparseCheck(c, device: device, stream: stream, rng: &rng) })
    }
    // One wrapper planned again and again (mask, no mask, another block shape, FP8): the batch
    // prefill plan inside is reused (its buffers grow or are reused), every run must match.
    cases.append(CheckCase(name: "bsr re-plan: one wrapper, four patterns") { device, stream, rng in
        let w = BlockSparseAttention(backend: .cuda(stream))
        let picks = [configs[8], configs[0], configs[6], configs[13]]
        for (i, c) in picks.enumerated() {
            if let r = try runBlockSparseCheck(c, device: device, stream: stream, rng: &rng, reusing: w) { return "plan \(i + 1) (\(c.name)): \(r)" }
        }
        return nil
    })
    return cases
}

private func runBlockSparseCheck(_ c: BlockSparseCheckConfig, device: Device, stream: Stream, rng: inout SeededRNG,
                                 reusing wrapper: BlockSparseAttention? = nil) throws -> String? {
    let (hq, hkv, d) = (c.numQOHeads, c.numKVHeads, c.headDim)
    let pattern = try c.randomPattern(&rng)
    var blocks: [Bool] = []
    if c.mask != .none {
        blocks = (0..<(pattern.nnz * c.r * c.c)).map { _ in rng.uniform() < 0.6 }
        // The first query of the first block row that stores blocks sees none of their columns.
        if let i = (0..<pattern.numBlockRows).first(where: { pattern.indptr[$0 + 1] > pattern.indptr[$0] }) {
            for p in Int(pattern.indptr[i])..<Int(pattern.indptr[i + 1]) {
                for col in 0..<c.c { blocks[p * c.r * c.c + col] = false }
            }
        }
    }
    let mask: BlockSparseMask?
    switch c.mask {
    case .none: mask = nil
    case .blocks: mask = .blocks(blocks)
    case .packed: mask = .packed(try pattern.packedMask(blocks).packed)
    }
    let qShape = [c.m, hq, d]
    let kvShape = c.layout == .nhd ? [c.n, hkv, d] : [hkv, c.n, d]
    let qHost = Tensor.host((0..<qShape.reduce(1, *)).map { _ in rng.normal() }, shape: qShape, dtype: c.dtype)
    let kHost = try randomKV(kvShape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8KScale, rng: &rng)
    let vHost = try randomKV(kvShape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8VScale, rng: &rng)

    let gpu = wrapper ?? BlockSparseAttention(backend: .cuda(stream))
    try gpu.plan(pattern: pattern, numQOHeads: hq, numKVHeads: hkv, headDim: d, qDType: c.dtype, kvDType: c.kvDType, mask: mask,
                 options: c.options)
    guard let plan = gpu.batchPrefillPlan else { return "no batch prefill plan on the CUDA backend" }
    let planNote = "plan: \(plan.workItems) items, tile \(plan.ctaTileQ), \(plan.splitKV ? "split, chunk \(plan.chunkTokens)" : "no split")"
    if let e = c.expectSplit, plan.splitKV != e { return "\(planNote); expected \(e ? "a split" : "no split")" }
    let (q, k, v) = (try qHost.toDevice(device), try kHost.toDevice(device), try vHost.toDevice(device))
    let got: (out: [Float], lse: [Float])
    if c.allocating {
        let r = try gpu.run(q: q, k: k, v: v, returnLSE: true)
        try stream.synchronize()
        got = (try r.output.toFloats(), try r.lse!.toFloats())
    } else {
        let out = try Tensor.empty(shape: qShape, dtype: c.dtype, device: device)
        let lse = try Tensor.empty(shape: [c.m, hq], dtype: .f32, device: device)
        try out.poison(stream: stream)
        try lse.poison(stream: stream)
        try gpu.run(q: q, k: k, v: v, out: out, lse: lse)
        try stream.synchronize()
        got = (try out.toFloats(), try lse.toFloats())
    }
    // The reference: dense attention of the M queries over the N keys under the pattern's mask.
    let ref = try ReferenceAttention.blockSparse(q: try qHost.toFloats(), k: try kHost.toFloats(), v: try vHost.toFloats(),
                                                 pattern: pattern, mask: mask, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                                 options: c.options)
    let dense = try pattern.denseMask(mask)
    if let e = checkEmptyRows(out: got.out, lse: got.lse, rows: c.m, hq: hq, d: d, empty: { i in
        !dense[(i * c.n)..<((i + 1) * c.n)].contains(true)
    }) { return "\(e) [\(planNote)]" }
    let tol = Tolerance.attention(dtype: c.dtype, prefill: true, options: c.options)
    if let m = tol.compare(got.out, ref.output) { return "output (\(tol)) [\(planNote)]: \(m)" }
    if let m = tol.compare(got.lse, ref.lse) { return "lse (\(tol)) [\(planNote)]: \(m)" }
    return nil
}

// MARK: - Custom masks (single and batch prefill)

/// One custom-mask check: a single prefill (`batch == false`, the first request) or a batch prefill
/// over a paged cache or ragged K/V, with random masks and the options the mask combines with.
struct CustomMaskCheckConfig {
    enum Form: String { case bools, packed }

    var batch = true
    var paged = true
    var dtype: DType = .f16
    var headDim = 128
    var qoLens: [Int]
    var kvLens: [Int]
    var numKVHeads = 2
    var group = 1
    var layout: KVLayout = .nhd
    var pageSize = 16
    var form: Form = .bools
    /// Probability that the mask keeps a key.
    var density = 0.5
    /// Every 7th query (3, 10, …) of each request keeps no key: exactly 0 / −inf.
    var maskedRows = false
    var window = -1
    /// `causal: true` in the options: the mask must win (the reference runs without causal).
    var causal = false
    var softCap: Float = 0
    var posEnc: PositionEncoding = .none
    var kvDType: DType? = nil
    var expectSplit: Bool? = nil

    var numQOHeads: Int { numKVHeads * group }
    var fp8: Bool { kvDType?.isFP8 ?? false }
    var options: AttentionOptions {
        AttentionOptions(causal: causal, positionEncoding: posEnc, logitsSoftCap: softCap, windowLeft: window, layout: layout,
                         kScale: fp8 ? fp8KScale : 1, vScale: fp8 ? fp8VScale : 1)
    }
    /// What the kernel must compute: the mask replaces the causal mask.
    var referenceOptions: AttentionOptions {
        var o = options
        o.causal = false
        return o
    }
    var spec: PrefillSpec {
        batch
            ? BatchPrefillAttention.kernelSpec(qoLens: qoLens, groupSize: group, headDim: headDim, dtype: dtype, kvDType: kvDType,
                                               options: options, paged: paged, customMask: true)
            : PrefillSpec(dtype: dtype, headDim: headDim, options: options, kvDType: kvDType, customMask: true)
    }

    var name: String {
        var n = batch ? "mask batch-prefill \(paged ? "paged page=\(pageSize)" : "ragged")" : "mask prefill"
        n += " \(dtype.rawValue) d\(headDim)"
        n += batch ? " qo=\(qoLens) kv=\(kvLens)" : " qo=\(qoLens[0]) kv=\(kvLens[0])"
        n += " hq=\(numQOHeads) hkv=\(numKVHeads) \(layout.rawValue) \(form.rawValue) density=\(density)"
        if maskedRows { n += " masked-rows" }
        if let kv = kvDType, kv.isFP8 { n += " kv-dtype=\(kv.rawValue) k_scale=\(fp8KScale) v_scale=\(fp8VScale)" }
        if posEnc != .none { n += " \(posEnc.name)" }
        if softCap > 0 { n += " cap=\(Int(softCap))" }
        if window >= 0 { n += " win=\(window)" }
        if causal { n += " causal(mask wins)" }
        if let s = expectSplit { n += s ? " split" : " no-split" }
        return n
    }

    /// Request `b`'s random `qo × kv` mask.
    func randomMask(_ b: Int, _ rng: inout SeededRNG) -> [Bool] {
        let (qo, kv) = (qoLens[b], kvLens[b])
        var m = (0..<(qo * kv)).map { _ in Double(rng.uniform()) < density }
        if maskedRows {
            for i in stride(from: 3, to: qo, by: 7) { for j in 0..<kv { m[i * kv + j] = false } }
        }
        return m
    }
}

/// The custom-mask sweep: single prefill (bools and packed, random masks at 10 % and 50 %, fully
/// masked rows, mask + window, mask with causal on (the mask wins), FP8 e4m3 / e5m2 K/V, soft-cap,
/// RoPE, head dims 64 and 256, kv_len 0), then batch prefill paged and ragged (empty requests, fully
/// masked rows, window, causal, FP8, split-KV plans reading the mask across kv chunks, the 64-row tile).
func customMaskCheckConfigs() -> [CustomMaskCheckConfig] {
    typealias C = CustomMaskCheckConfig
    func single(_ qo: Int, _ kv: Int, _ edit: (inout C) -> Void) -> C {
        var c = C(batch: false, qoLens: [qo], kvLens: [kv])
        edit(&c)
        return c
    }
    func batch(_ qo: [Int], _ kv: [Int], paged: Bool, _ edit: (inout C) -> Void) -> C {
        var c = C(batch: true, paged: paged, qoLens: qo, kvLens: kv)
        edit(&c)
        return c
    }
    return [
        single(127, 999) { $0.group = 4 },
        single(37, 4096) { $0.dtype = .bf16; $0.layout = .hnd; $0.form = .packed; $0.density = 0.1 },
        single(64, 300) { $0.group = 4; $0.maskedRows = true },
        single(127, 999) { $0.form = .packed; $0.window = 64; $0.maskedRows = true },
        single(37, 500) { $0.dtype = .bf16; $0.causal = true; $0.group = 4 },
        single(65, 257) { $0.layout = .hnd; $0.form = .packed; $0.kvDType = .e4m3; $0.group = 4 },
        single(33, 129) { $0.dtype = .bf16; $0.kvDType = .e5m2; $0.maskedRows = true },
        single(127, 300) { $0.headDim = 64; $0.softCap = 30; $0.group = 8; $0.numKVHeads = 1 },
        single(65, 129) { $0.headDim = 256; $0.dtype = .bf16; $0.posEnc = .ropeLlama(); $0.causal = true },
        single(5, 0) { $0.group = 4 },
        batch([17, 1, 37, 0], [300, 17, 2000, 50], paged: true) { $0.group = 4 },
        batch([37, 127, 5], [129, 600, 0], paged: false) { $0.dtype = .bf16; $0.layout = .hnd; $0.form = .packed; $0.density = 0.1 },
        batch([37, 17, 64], [37, 100, 1001], paged: true) { $0.pageSize = 3; $0.layout = .hnd; $0.maskedRows = true; $0.window = 13 },
        batch([64, 17], [100, 17], paged: false) { $0.causal = true; $0.group = 4; $0.maskedRows = true },
        batch([17, 37, 5], [300, 999, 64], paged: true) { $0.dtype = .bf16; $0.kvDType = .e4m3; $0.form = .packed; $0.group = 4 },
        batch([17, 1, 37], [129, 300, 77], paged: false) { $0.layout = .hnd; $0.kvDType = .e5m2; $0.maskedRows = true },
        batch([127], [4096], paged: true) { $0.group = 4; $0.numKVHeads = 1; $0.maskedRows = true; $0.expectSplit = true },
        batch([37, 17], [2049, 4096], paged: false) { $0.dtype = .bf16; $0.form = .packed; $0.density = 0.1; $0.expectSplit = true },
        batch([37, 127, 1], [300, 127, 999], paged: true) { $0.headDim = 64; $0.pageSize = 8; $0.softCap = 30; $0.group = 8; $0.numKVHeads = 1 },
        batch([1, 1, 2, 3], [17, 4096, 300, 65], paged: true) { $0.group = 8; $0.numKVHeads = 1; $0.pageSize = 1 },
    ]
}

public func customMaskCases() -> [CheckCase] {
    let configs = customMaskCheckConfigs()
    var cases: [CheckCase] = []
    cases.append(compileUpFrontCase(name: "mask jit: compile the sweep's kernels", specs: Array(Set(configs.map(\.spec)))))
    for c in configs {
        cases.append(CheckCase(name: c.name) { device, stream, rng in try runCustomMaskCheck(c, device: device, stream: stream, rng: &rng) })
    }
    return cases
}

private func runCustomMaskCheck(_ c: CustomMaskCheckConfig, device: Device, stream: Stream, rng: inout SeededRNG) throws -> String? {
    let (hq, hkv, d) = (c.numQOHeads, c.numKVHeads, c.headDim)
    let b = c.batch ? c.qoLens.count : 1
    let masks = (0..<b).map { c.randomMask($0, &rng) }
    let qoLens = Array(c.qoLens.prefix(b)), kvLens = Array(c.kvLens.prefix(b))
    let total = qoLens.reduce(0, +)
    let qHost = Tensor.host((0..<(total * hq * d)).map { _ in rng.normal() }, shape: [total, hq, d], dtype: c.dtype)
    let out = try Tensor.empty(shape: [total, hq, d], dtype: c.dtype, device: device)
    let lse = try Tensor.empty(shape: [total, hq], dtype: .f32, device: device)
    try out.poison(stream: stream)
    try lse.poison(stream: stream)
    let q = try qHost.toDevice(device)
    let expected: (out: [Float], lse: [Float])
    var planNote = ""

    if !c.batch {
        let (qo, kv) = (qoLens[0], kvLens[0])
        let kvShape = c.layout == .nhd ? [kv, hkv, d] : [hkv, kv, d]
        let kHost = try randomKV(kvShape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8KScale, rng: &rng)
        let vHost = try randomKV(kvShape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8VScale, rng: &rng)
        let mask: CustomMask = c.form == .bools ? .bools(masks[0]) : .packed(packbits(masks[0], bitOrder: .little))
        try singlePrefill(q: q, k: try kHost.toDevice(device), v: try vHost.toDevice(device), options: c.options, customMask: mask,
                          out: out, lse: lse, stream: stream)
        let r = try ReferenceAttention.prefill(q: try qHost.toFloats(), k: try kHost.toFloats(), v: try vHost.toFloats(), qoLen: qo,
                                               kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d, options: c.referenceOptions,
                                               rotatedRounding: c.dtype, customMask: mask)
        expected = (r.output, r.lse)
    } else {
        let gpu = BatchPrefillAttention(backend: .cuda(stream)), cpu = BatchPrefillAttention(backend: .cpu)
        cpu.referenceRotatedRounding = c.dtype  // the tensor-core kernel stores RoPE'd q/k in the dtype
        let flat = masks.flatMap { $0 }
        let mask: BatchCustomMask
        switch c.form {
        case .bools: mask = .bools(flat)
        case .packed:
            let p = try packCustomMasks(flat, qoLens: qoLens, kvLens: kvLens)
            mask = .packed(p.packed, indptr: p.indptr)
        }
        let qoIndptr = qoLens.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1)) }
        let kvHost: BatchKV, kvDevice: BatchKV
        if c.paged {
            // Pages of each request shuffled over a cache with a few unused pages.
            var table = PageTable.contiguous(seqLens: kvLens, pageSize: c.pageSize)
            let numPages = table.indices.count + 5
            var perm = Array(0..<numPages)
            for i in stride(from: numPages - 1, to: 0, by: -1) { perm.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            table.indices = table.indices.map { Int32(perm[Int($0)]) }
            let shape = c.layout == .nhd ? [numPages, c.pageSize, hkv, d] : [numPages, hkv, c.pageSize, d]
            let k = try randomKV(shape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8KScale, rng: &rng)
            let v = try randomKV(shape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8VScale, rng: &rng)
            kvHost = .paged(try PagedKVCache(k: k, v: v, layout: c.layout))
            kvDevice = .paged(try PagedKVCache(k: try k.toDevice(device), v: try v.toDevice(device), layout: c.layout))
            try gpu.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: c.dtype,
                         kvDType: c.kvDType, options: c.options, customMask: mask, numPagesInCache: numPages)
            try cpu.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: c.dtype,
                         kvDType: c.kvDType, options: c.referenceOptions, customMask: mask, numPagesInCache: numPages)
        } else {
            let kvIndptr = kvLens.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1)) }
            let nkv = Int(kvIndptr.last!)
            let shape = c.layout == .nhd ? [nkv, hkv, d] : [hkv, nkv, d]
            let k = try randomKV(shape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8KScale, rng: &rng)
            let v = try randomKV(shape, dtype: c.dtype, kvDType: c.kvDType, scale: fp8VScale, rng: &rng)
            kvHost = .ragged(k: k, v: v)
            kvDevice = .ragged(k: try k.toDevice(device), v: try v.toDevice(device))
            try gpu.plan(qoIndptr: qoIndptr, kvIndptr: kvIndptr, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: c.dtype,
                         kvDType: c.kvDType, options: c.options, customMask: mask)
            try cpu.plan(qoIndptr: qoIndptr, kvIndptr: kvIndptr, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: c.dtype,
                         kvDType: c.kvDType, options: c.referenceOptions, customMask: mask)
        }
        let plan = gpu.plan!
        planNote = " [plan: \(plan.workItems) items, tile \(plan.ctaTileQ), \(plan.splitKV ? "split, chunk \(plan.chunkTokens)" : "no split")]"
        if let e = c.expectSplit, plan.splitKV != e { return "\(planNote); expected \(e ? "a split" : "no split")" }
        try gpu.run(q: q, kv: kvDevice, out: out, lse: lse)
        let r = try cpu.run(q: qHost, kv: kvHost, returnLSE: true)
        expected = (try r.output.toFloats(), try r.lse!.toFloats())
    }
    try stream.synchronize()
    let got = (out: try out.toFloats(), lse: try lse.toFloats())

    // Queries that keep no key (mask, window, or no keys at all): exactly 0 and −inf.
    var empty: [Bool] = []
    for (r, m) in masks.enumerated() {
        let (qo, kv) = (qoLens[r], kvLens[r])
        for i in 0..<qo {
            let lo = c.window >= 0 ? max(0, i + kv - qo - c.window) : 0
            empty.append(!(lo..<max(lo, kv)).contains { m[i * kv + $0] })
        }
    }
    if let e = checkEmptyRows(out: got.out, lse: got.lse, rows: total, hq: hq, d: d, empty: { empty[$0] }) { return e + planNote }
    let tol = Tolerance.attention(dtype: c.dtype, prefill: true, options: c.options)
    if let m = tol.compare(got.out, expected.out) { return "output (\(tol))\(planNote): \(m)" }
    if let m = tol.compare(got.lse, expected.lse) { return "lse (\(tol))\(planNote): \(m)" }
    return nil
}

// MARK: - Refusals

/// The CUDA backend's refusals of sparse inputs (in `rejectionCases()`): a custom mask or in-block
/// mask of the wrong size, a block column out of range, `N` not divisible by `C`. Each must throw
/// its typed error before any launch.
func sparseRejectionCases(expect: @escaping (String, (FlashInferError) -> Bool, () throws -> Void) -> String?) -> [CheckCase] {
    let (h, d) = (2, 128)
    func dev(_ shape: [Int], _ device: Device, _ rng: inout SeededRNG) throws -> Tensor {
        try Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: .f16).toDevice(device)
    }
    func isShape(_ name: String) -> (FlashInferError) -> Bool { { if case .shape(tensor: name, _, _, _, _) = $0 { true } else { false } } }
    return [
        CheckCase(name: "rejects a custom mask of the wrong size for prefill") { device, stream, rng in
            let q = try dev([16, h, d], device, &rng), k = try dev([100, h, d], device, &rng)
            let out = try Tensor.empty(shape: [16, h, d], dtype: .f16, device: device)
            return expect("singlePrefill(custom_mask 16·100 − 1)", isShape("custom_mask")) {
                try singlePrefill(q: q, k: k, v: k, customMask: .bools(Array(repeating: true, count: 16 * 100 - 1)), out: out, lse: nil,
                                  stream: stream)
            }
        },
        CheckCase(name: "rejects a block-sparse mask of the wrong size") { _, stream, _ in
            expect("BlockSparseAttention.plan(mask nnz·R·C + 1)", isShape("mask")) {
                try BlockSparseAttention(backend: .cuda(stream)).plan(
                    indptr: [0, 1], indices: [0], rows: 16, columns: 64, blockRows: 16, blockColumns: 16, numQOHeads: h,
                    numKVHeads: h, headDim: d, mask: .blocks(Array(repeating: true, count: 16 * 16 + 1)))
            }
        },
        CheckCase(name: "rejects a block-sparse column out of range") { _, stream, _ in
            expect("BlockSparseAttention.plan(indices [4], N / C = 4)", { if case .indices(array: "indices", position: 0, _) = $0 { true } else { false } }) {
                try BlockSparseAttention(backend: .cuda(stream)).plan(
                    indptr: [0, 1], indices: [4], rows: 16, columns: 64, blockRows: 16, blockColumns: 16, numQOHeads: h,
                    numKVHeads: h, headDim: d)
            }
        },
        CheckCase(name: "rejects block-sparse N not divisible by C") { _, stream, _ in
            expect("BlockSparseAttention.plan(N 60, C 16)", { if case .option(name: "N (columns)", _, _) = $0 { true } else { false } }) {
                try BlockSparseAttention(backend: .cuda(stream)).plan(
                    indptr: [0, 1], indices: [0], rows: 16, columns: 60, blockRows: 16, blockColumns: 16, numQOHeads: h,
                    numKVHeads: h, headDim: d)
            }
        },
    ]
}
