import FlashInfer
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

    var name: String {
        var pe = options.positionEncoding.name
        if options.logitsSoftCap > 0 { pe += " cap=\(Int(options.logitsSoftCap))" }
        if options.windowLeft >= 0 { pe += " window=\(options.windowLeft)" }
        return "batch-decode B=\(batch) len<=\(maxLen) page=\(pageSize) h=\(numQOHeads)/\(numKVHeads) d=\(headDim) \(dtype.rawValue) \(layout.rawValue) \(pe)\(combined ? "" : " two-tensors")"
    }

    func run(device: Device, stream: Stream, rng: inout DemoRNG) throws -> String? {
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
        let hostCache: PagedKVCache, devCache: PagedKVCache
        if combined {
            let kv = Tensor.host(randn(2 * n), shape: [numPages, 2] + pageShape, dtype: dtype)
            hostCache = try PagedKVCache(combined: kv, layout: layout)
            devCache = try PagedKVCache(combined: kv.toDevice(device), layout: layout)
        } else {
            let k = Tensor.host(randn(n), shape: [numPages] + pageShape, dtype: dtype), v = Tensor.host(randn(n), shape: [numPages] + pageShape, dtype: dtype)
            hostCache = try PagedKVCache(k: k, v: v, layout: layout)
            devCache = try PagedKVCache(k: k.toDevice(device), v: v.toDevice(device), layout: layout)
        }
        let q = Tensor.host(randn(batch * numQOHeads * d), shape: [batch, numQOHeads, d], dtype: dtype)
        let cpu = BatchDecodeWithPagedKVCache(backend: .cpu)
        try cpu.plan(table: table, numQOHeads: numQOHeads, numKVHeads: hkv, headDim: d, dtype: dtype, options: options, numPagesInCache: numPages)
        let expected = try cpu.run(q: q, cache: hostCache, returnLSE: true)
        let gpu = BatchDecodeWithPagedKVCache(backend: .cuda(stream))
        try gpu.plan(table: table, numQOHeads: numQOHeads, numKVHeads: hkv, headDim: d, dtype: dtype, options: options, numPagesInCache: numPages)
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
func batchDecodeCases() -> [CheckCase] {
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
    cs.append(BatchDecodeCase(batch: 12, maxLen: 2000, pageSize: 5, numQOHeads: 32, numKVHeads: 8, layout: .hnd, combined: false))
    return cs.map { c in CheckCase(name: c.name) { device, stream, rng in try c.run(device: device, stream: stream, rng: &rng) } }
}
