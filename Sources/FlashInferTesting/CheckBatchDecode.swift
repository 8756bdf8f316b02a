@_spi(Testing) import FlashInfer
import FlashInferCUDA

/// One batch-decode check: random lengths, a shuffled page table, GPU vs the CPU path of the same
/// wrapper (per-request Float64 reference over the gathered pages).
struct BatchDecodeCase {
    var batch: Int
    var maxLen: Int
    var pageSize: Int
    var numQOHeads: Int
    var numKVHeads: Int
    var headDim: Int = 128
    var dtype: DType = .f16
    var layout: KVLayout = .nhd
    var options: AttentionOptions = AttentionOptions()
    var combined = true
    var tensorCores = false
    /// FP8 cache (e4m3 / e5m2); nil: q's dtype. Scales: `options.kScale` / `vScale`.
    var kvDType: DType? = nil

    var name: String {
        var pe = options.positionEncoding.name
        // Custom RoPE parameters are part of the name (as in the prefill cases), or the two RoPE
        // variants of the sweep would share a name, hence a seed and a --filter.
        if case .ropeLlama(let s, let t) = options.positionEncoding, s != 1 || t != 1e4 { pe += "(scale \(s), theta \(t))" }
        if options.logitsSoftCap > 0 { pe += " cap=\(Int(options.logitsSoftCap))" }
        if options.windowLeft >= 0 { pe += " window=\(options.windowLeft)" }
        return "batch-decode\(tensorCores ? " tensor-cores" : "") B=\(batch) len<=\(maxLen) page=\(pageSize) h=\(numQOHeads)/\(numKVHeads) d=\(headDim) \(dtype.rawValue) \(layout.rawValue) \(pe)\(combined ? "" : " two-tensors")\(kvDType.map { " kv=\($0.rawValue) k_scale=\(options.kScale) v_scale=\(options.vScale)" } ?? "")"
    }

    func run(device: Device, stream: Stream, rng: inout SeededRNG) throws -> String? {
        // Mixed lengths from 1 to maxLen, always including both ends.
        var lens = (0..<batch).map { _ in 1 + Int(rng.uniform() * Float(maxLen - 1)) }
        lens[0] = maxLen
        if batch > 1 { lens[1] = 1 }
        var table = PageTable.contiguous(seqLens: lens, pageSize: pageSize)
        // Shuffle page ids (Fisher–Yates) so pages of a request are scattered.
        for i in stride(from: table.indices.count - 1, to: 0, by: -1) {
            table.indices.swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
        let numPages = table.indices.count + 1
        let (hkv, d) = (numKVHeads, headDim)
        let pageShape = layout == .nhd ? [pageSize, hkv, d] : [hkv, pageSize, d]
        let n = numPages * pageShape.reduce(1, *)
        func randn(_ c: Int) -> [Float] { (0..<c).map { _ in rng.normal() } }
        let kvd = kvDType ?? dtype  // FP8: the normal values rounded to the format
        let hostCache: PagedKVCache, devCache: PagedKVCache
        if combined {
            let kv = Tensor.host(randn(2 * n), shape: [numPages, 2] + pageShape, dtype: kvd)
            hostCache = try PagedKVCache(combined: kv, layout: layout)
            devCache = try PagedKVCache(combined: kv.toDevice(device), layout: layout)
        } else {
            let k = Tensor.host(randn(n), shape: [numPages] + pageShape, dtype: kvd), v = Tensor.host(randn(n), shape: [numPages] + pageShape, dtype: kvd)
            hostCache = try PagedKVCache(k: k, v: v, layout: layout)
            devCache = try PagedKVCache(k: k.toDevice(device), v: v.toDevice(device), layout: layout)
        }
        let q = Tensor.host(randn(batch * numQOHeads * d), shape: [batch, numQOHeads, d], dtype: dtype)
        let gpu = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: tensorCores)
        try gpu.plan(table: table, numQOHeads: numQOHeads, numKVHeads: hkv, headDim: d, dtype: dtype, kvDType: kvd, options: options,
                     numPagesInCache: numPages)
        // The batches meant for the 16-row tile must run it (unless FLASHINFER_PREFILL_TILE16 overrides the rule).
        if tensorCores && batch * hkv >= 1024 && BatchPrefillPlan.sixteenRowTileMode == -1 && gpu.tensorCoreTile?.ctaQ != 16 {
            return "planned tile \(gpu.tensorCoreTile.map { "\($0)" } ?? "none"), expected the 16-row tile"
        }
        let cpu = BatchDecodeWithPagedKVCache(backend: .cpu)
        // The tensor-core path stores RoPE'd q/k in the dtype; the CUDA-core kernel keeps Float32.
        if gpu.usesTensorCores { cpu.referenceRotatedRounding = dtype }
        try cpu.plan(table: table, numQOHeads: numQOHeads, numKVHeads: hkv, headDim: d, dtype: dtype, kvDType: kvd, options: options,
                     numPagesInCache: numPages)
        let expected = try cpu.run(q: q, cache: hostCache, returnLSE: true)
        let out = try Tensor.empty(shape: q.shape, dtype: dtype, device: device)
        let lse = try Tensor.empty(shape: [batch, numQOHeads], dtype: .f32, device: device)
        try out.poison(stream: stream)
        try lse.poison(stream: stream)
        _ = try gpu.run(q: q.toDevice(device), cache: devCache, out: out, lseOut: lse)
        try stream.synchronize()
        let tol = Tolerance.attention(dtype: dtype, prefill: false, options: options)
        if let m = tol.compare(try out.toFloats(), try expected.output.toFloats()) {
            return "output: \(m) (plan: \(gpu.plan!.workItems) items, split \(gpu.plan!.splitKV))"
        }
        if options.positionEncoding != .alibi, let m = tol.compare(try lse.toFloats(), try expected.lse!.toFloats()) {
            return "lse: \(m)"
        }
        return nil
    }
}

/// The batch-decode sweep: every value of every axis (B, lengths, page size, group, layout, dtype,
/// head dim, position encoding, soft-cap, window, cache form) with the risky pairs, not the cross product.
public func batchDecodeCases() -> [CheckCase] {
    var cs: [BatchDecodeCase] = []
    for (b, len) in [(1, 16384), (12, 4096), (17, 999), (128, 2048)] {
        for ps in [1, 8, 16] {
            cs.append(BatchDecodeCase(batch: b, maxLen: len, pageSize: ps, numQOHeads: 32, numKVHeads: 8))
        }
    }
    for (hq, hkv) in [(4, 4), (16, 4), (32, 4), (96, 8)] {
        cs.append(BatchDecodeCase(batch: 17, maxLen: 1000, pageSize: 16, numQOHeads: hq, numKVHeads: hkv))
    }
    for d in [64, 256] {
        for dtype in [DType.f16, .bf16] {
            cs.append(BatchDecodeCase(batch: 12, maxLen: 3000, pageSize: 16, numQOHeads: 16, numKVHeads: 4, headDim: d, dtype: dtype))
        }
    }
    for layout in [KVLayout.hnd] {
        for ps in [1, 16] {
            cs.append(BatchDecodeCase(batch: 12, maxLen: 2000, pageSize: ps, numQOHeads: 32, numKVHeads: 8, layout: layout))
            cs.append(BatchDecodeCase(batch: 12, maxLen: 2000, pageSize: ps, numQOHeads: 32, numKVHeads: 8, dtype: .bf16, layout: layout,
                                      options: AttentionOptions(positionEncoding: .ropeLlama(scale: 1, theta: 1e4), layout: layout)))
        }
    }
    let variants: [AttentionOptions] = [
        AttentionOptions(positionEncoding: .ropeLlama(scale: 1, theta: 1e4)),
        AttentionOptions(positionEncoding: .ropeLlama(scale: 2, theta: 5e5)),
        AttentionOptions(positionEncoding: .alibi),
        AttentionOptions(logitsSoftCap: 30),
        AttentionOptions(windowLeft: 13),
        AttentionOptions(positionEncoding: .ropeLlama(scale: 1, theta: 1e4), logitsSoftCap: 30, windowLeft: 100),
        AttentionOptions(smScale: 0.05),
    ]
    for o in variants {
        cs.append(BatchDecodeCase(batch: 17, maxLen: 4096, pageSize: 16, numQOHeads: 32, numKVHeads: 8, options: o))
        cs.append(BatchDecodeCase(batch: 3, maxLen: 20000, pageSize: 8, numQOHeads: 8, numKVHeads: 8, headDim: 64, options: o))
    }
    cs.append(BatchDecodeCase(batch: 12, maxLen: 2000, pageSize: 16, numQOHeads: 32, numKVHeads: 8, combined: false))
    // The tensor-core path (prefill kernel with the group packed into rows).
    for (hq, hkv, ps) in [(32, 8, 16), (64, 8, 1), (32, 32, 8)] {
        cs.append(BatchDecodeCase(batch: 17, maxLen: 3000, pageSize: ps, numQOHeads: hq, numKVHeads: hkv, tensorCores: true))
    }
    // Batches of ≥ 3.5 waves of (request, KV head) pairs: the single-buffered 16-row tile
    // (BatchPrefillPlan.useSixteenRowTile), groups 4 and 8, page sizes 16 and 1.
    cs.append(BatchDecodeCase(batch: 160, maxLen: 600, pageSize: 16, numQOHeads: 32, numKVHeads: 8, tensorCores: true))
    cs.append(BatchDecodeCase(batch: 160, maxLen: 400, pageSize: 1, numQOHeads: 64, numKVHeads: 8, dtype: .bf16, tensorCores: true))
    cs.append(BatchDecodeCase(batch: 12, maxLen: 2000, pageSize: 16, numQOHeads: 32, numKVHeads: 8, dtype: .bf16, layout: .hnd,
                              options: AttentionOptions(positionEncoding: .ropeLlama(scale: 1, theta: 1e4)), tensorCores: true))
    cs.append(BatchDecodeCase(batch: 12, maxLen: 2000, pageSize: 5, numQOHeads: 32, numKVHeads: 8, layout: .hnd, combined: false))
    // FP8 caches (issue 12) on both paths: both formats, both layouts, page sizes 1 and 16, groups
    // 1 / 4 / 8, the position encodings, soft-cap, window, scales, lengths 1 … 32k.
    let scaled = AttentionOptions(kScale: 0.37, vScale: 2.5)
    for kvd in [DType.e4m3, .e5m2] {
        for tc in [false, true] {
            cs.append(BatchDecodeCase(batch: 17, maxLen: 4096, pageSize: 16, numQOHeads: 32, numKVHeads: 8, options: scaled,
                                      tensorCores: tc, kvDType: kvd))
            cs.append(BatchDecodeCase(batch: 12, maxLen: 2000, pageSize: 1, numQOHeads: 32, numKVHeads: 4, dtype: .bf16, layout: .hnd,
                                      options: AttentionOptions(positionEncoding: .ropeLlama(), layout: .hnd, kScale: 2, vScale: 0.5),
                                      tensorCores: tc, kvDType: kvd))
            cs.append(BatchDecodeCase(batch: 3, maxLen: 32768, pageSize: 16, numQOHeads: 8, numKVHeads: 8, headDim: 64,
                                      options: AttentionOptions(logitsSoftCap: 30, windowLeft: 100, kScale: 0.37, vScale: 2.5),
                                      tensorCores: tc, kvDType: kvd))
        }
        cs.append(BatchDecodeCase(batch: 17, maxLen: 999, pageSize: 16, numQOHeads: 64, numKVHeads: 8, headDim: 256,
                                  options: AttentionOptions(positionEncoding: .alibi, kScale: 0.37, vScale: 2.5), kvDType: kvd))
        cs.append(BatchDecodeCase(batch: 17, maxLen: 999, pageSize: 8, numQOHeads: 64, numKVHeads: 8, headDim: 128, dtype: .bf16,
                                  options: scaled, combined: false, tensorCores: true, kvDType: kvd))
    }
    return cs.map { c in CheckCase(name: c.name) { device, stream, rng in try c.run(device: device, stream: stream, rng: &rng) } }
}

/// CUDA-graph mode: a run captured once replays correctly after new plans of the same capacity
/// (different batch sizes, lengths and split decisions), with new q written into the same buffer.
public func batchDecodeGraphCases() -> [CheckCase] {
    [CheckCase(name: "batch-decode cuda-graph replay after re-plan") { device, stream, rng in
        let (hq, hkv, d, ps) = (32, 8, 128, 16)
        let cap = GraphCapacity(maxBatch: 32, maxPages: 2048)
        let numPages = cap.maxPages
        let kv = Tensor.host((0..<(numPages * 2 * ps * hkv * d)).map { _ in rng.normal() }, shape: [numPages, 2, ps, hkv, d], dtype: .f16)
        let hostCache = try PagedKVCache(combined: kv)
        let devCache = try PagedKVCache(combined: kv.toDevice(device))
        let q = try Tensor.empty(shape: [cap.maxBatch, hq, d], dtype: .f16, device: device)
        let out = try Tensor.empty(shape: [cap.maxBatch, hq, d], dtype: .f16, device: device)
        let lse = try Tensor.empty(shape: [cap.maxBatch, hq], dtype: .f32, device: device)
        guard case .device(let qBuf, _) = q.storage else { return "q not on the device" }
        let wrapper = BatchDecodeWithPagedKVCache(backend: .cuda(stream), graphCapacity: cap)
        var graph: Graph?
        // Steps: (batch, max length) — the second and third differ in batch and split.
        for (step, (batch, maxLen)) in [(17, 1500), (9, 200), (2, 4096)].enumerated() {
            var lens = (0..<batch).map { _ in 1 + Int(rng.uniform() * Float(maxLen - 1)) }
            lens[0] = maxLen
            var table = PageTable.contiguous(seqLens: lens, pageSize: ps)
            for i in stride(from: table.indices.count - 1, to: 0, by: -1) { table.indices.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            let qHost = (0..<(cap.maxBatch * hq * d)).map { _ in rng.normal() }
            try qBuf.copyFromHost(DType.f16.encode(qHost), stream: stream)
            try out.poison(stream: stream)
            try wrapper.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            if graph == nil {
                graph = try Graph.capture(on: stream) { _ = try wrapper.run(q: q, cache: devCache, out: out, lseOut: lse) }
            }
            try graph!.launch(on: stream)
            try stream.synchronize()
            let cpu = BatchDecodeWithPagedKVCache(backend: .cpu)
            try cpu.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            let qRows = Tensor.host(Array(qHost[0..<(batch * hq * d)]), shape: [batch, hq, d], dtype: .f16)
            let expected = try cpu.run(q: qRows, cache: hostCache, returnLSE: true)
            let got = try out.toFloats()
            if let m = Tolerance.f16.compare(Array(got[0..<(batch * hq * d)]), try expected.output.toFloats()) {
                return "step \(step) (B=\(batch), \(wrapper.plan!.workItems) items, split \(wrapper.plan!.splitKV)): \(m)"
            }
            if let m = Tolerance.f16.compare(Array(try lse.toFloats()[0..<(batch * hq)]), try expected.lse!.toFloats()) {
                return "step \(step) lse: \(m)"
            }
            if got[(batch * hq * d)...].contains(where: { $0 != 0 }) { return "step \(step): rows past the batch are not 0" }
        }
        // Plans beyond the capacity are errors, before any launch.
        do {
            try wrapper.plan(table: PageTable.contiguous(seqLens: Array(repeating: 16, count: 33), pageSize: ps), numQOHeads: hq,
                             numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            return "a batch of 33 was accepted by a capacity of 32"
        } catch {}
        do {
            try wrapper.plan(table: PageTable.contiguous(seqLens: [2049 * ps], pageSize: ps), numQOHeads: hq,
                             numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: 4096)
            return "2049 pages were accepted by a capacity of 2048"
        } catch {}
        return nil
    }]
}

/// A whole decode step captured into one CUDA graph from a plain (not graph-mode) wrapper, as
/// `torch.cuda.graph` or `bench decode-step` capture it: plan once, then one run per layer, each
/// over its own cache into its own output, on both paths (split and not). The graph is replayed
/// twice after the host heap has churned (launch parameters must have been copied at capture:
/// the H200 showed CUDA_ERROR_ILLEGAL_ADDRESS when they were not), each output poisoned before
/// the replay and compared with the CPU reference of its layer.
public func batchDecodeStepCaptureCases() -> [CheckCase] {
    /// Where plain runs of the same step fall relative to the capture.
    enum PlainRuns: String { case none = "", before = " after plain runs", between = " with plain runs before the replay" }
    // `.before`: the step also runs plainly (twice) before the capture, as a serving loop does.
    // `.between`: captured first, then run plainly, then replayed, as `bench decode-step` does; then
    // the case also drops its own references to the device caches before the replay: the graph
    // must keep them alive (`Graph.retained`). The bench's replay faulted with
    // CUDA_ERROR_ILLEGAL_ADDRESS on the H200 (7eec33e) because Swift released its caches after
    // their last use in the source, before the replay, and nothing else held them.
    let shapes: [(Bool, Int, Int, PlainRuns, Int)] = [
        (false, 1, 3000, .none, 4), (false, 9, 700, .none, 4), (true, 1, 3000, .none, 4), (true, 9, 700, .none, 4),
        (false, 1, 4096, .none, 4), (true, 1, 4096, .none, 4), (false, 1, 4096, .before, 4), (false, 16, 4096, .before, 4),
        (true, 1, 4096, .before, 4), (false, 1, 4096, .between, 4), (true, 1, 4096, .between, 4), (true, 1, 4096, .between, 32),
        (false, 16, 2048, .between, 8),
    ]
    return shapes.map { tc, batch, maxLen, plainRuns, layers in
        CheckCase(name: "batch-decode\(tc ? " tensor-cores" : "") graph capture of a \(layers)-layer step B=\(batch) len<=\(maxLen)\(plainRuns.rawValue)") { device, stream, rng in
            let (hq, hkv, d, ps) = (32, 8, 128, 16)
            var lens = (0..<batch).map { _ in 1 + Int(rng.uniform() * Float(maxLen - 1)) }
            lens[0] = maxLen
            var table = PageTable.contiguous(seqLens: lens, pageSize: ps)
            for i in stride(from: table.indices.count - 1, to: 0, by: -1) { table.indices.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            let numPages = table.indices.count
            var host: [PagedKVCache] = [], dev: [PagedKVCache] = [], outs: [Tensor] = []
            for _ in 0..<layers {
                let kv = Tensor.host((0..<(numPages * 2 * ps * hkv * d)).map { _ in rng.normal() }, shape: [numPages, 2, ps, hkv, d], dtype: .f16)
                host.append(try PagedKVCache(combined: kv))
                dev.append(try PagedKVCache(combined: kv.toDevice(device)))
                outs.append(try Tensor.empty(shape: [batch, hq, d], dtype: .f16, device: device))
            }
            let qHost = Tensor.host((0..<(batch * hq * d)).map { _ in rng.normal() }, shape: [batch, hq, d], dtype: .f16)
            let q = try qHost.toDevice(device)
            let gpu = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: tc)
            try gpu.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            func plainStep() throws {
                for _ in 0..<2 { for l in 0..<layers { _ = try gpu.run(q: q, cache: dev[l], out: outs[l]) } }
                try stream.synchronize()
            }
            if plainRuns == .before { try plainStep() }
            let graph = try Graph.capture(on: stream) {
                for l in 0..<layers { _ = try gpu.run(q: q, cache: dev[l], out: outs[l]) }
            }
            if plainRuns == .between {
                try plainStep()
                dev.removeAll()  // the graph's references are the only ones left
            }
            let cpu = BatchDecodeWithPagedKVCache(backend: .cpu)
            if gpu.usesTensorCores { cpu.referenceRotatedRounding = .f16 }
            try cpu.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            let expected = try (0..<layers).map { try cpu.run(q: qHost, cache: host[$0]).output.toFloats() }
            for replay in 0..<2 {
                // Churn the host heap (what reuses a freed parameter buffer), then poison and replay.
                var junk: [[UInt8]] = []
                for i in 0..<256 { junk.append([UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 64 + i)) }
                _ = junk.count
                for o in outs { try o.poison(stream: stream) }
                try graph.launch(on: stream)
                try stream.synchronize()
                for l in 0..<layers {
                    if let m = Tolerance.f16.compare(try outs[l].toFloats(), expected[l]) {
                        return "replay \(replay), layer \(l) (\(gpu.usesTensorCores ? "tensor cores" : "CUDA cores, split \(gpu.plan!.splitKV)")): \(m)"
                    }
                }
            }
            return nil
        }
    }
}
