import ArgumentParser
import FlashInfer
import FlashInferCUDA
import FlashInferTesting

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One decode step of a Llama-shaped model through the public API: append each request's new token to a paged KV cache, plan once, run batch decode for every layer (GPU when present, else the CPU reference).")

    @Option(help: "cpu, cuda, or auto (cuda when a device and the GPU kernels are present).")
    var backend: BackendChoice = .auto
    @Option(help: "Requests in the batch.") var batch = 8
    @Option(help: "Layers.") var layers = 4
    @Option(name: .customLong("max-context"), help: "Longest cached context (requests get random lengths up to this).") var maxContext = 1024
    @Option(name: .customLong("num-qo-heads")) var numQOHeads = 32
    @Option(name: .customLong("num-kv-heads")) var numKVHeads = 8
    @Option(name: .customLong("head-dim")) var headDim = 128
    @Option(name: .customLong("page-size")) var pageSize = 16

    func run() throws {
        let be = try backend.resolve()
        let useCUDA = if case .cuda = be { true } else { false }
        var rng = SeededRNG(seed: 2026)
        let (hq, hkv, d, ps) = (numQOHeads, numKVHeads, headDim, pageSize)
        print("demo: decode step, \(layers) layers × \(hq) query / \(hkv) KV heads (GQA \(hq / max(hkv, 1))), head_dim \(d), f16, page \(ps), batch \(batch)")
        print("backend: \(be.name)")

        // Context lengths before this step; the step appends one token per request.
        let before = (0..<batch).map { _ in 1 + Int(rng.uniform() * Float(maxContext - 1)) }
        let after = before.map { $0 + 1 }
        let table = PageTable.contiguous(seqLens: after, pageSize: ps)
        let numPages = Int(table.indptr.last!)
        let (batchIdx, positions) = try getBatchIndicesPositions(appendIndptr: (0...batch).map(Int32.init), seqLens: after)
        print("context lengths \(before.prefix(8))\(batch > 8 ? "…" : "") → +1 token each, \(numPages) pages of \(ps)")

        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
        let cacheShape = [numPages, 2, ps, hkv, d]
        // Progress before every step that can take more than a moment, so a first run is never silent.
        print("filling \(layers) paged KV caches with random values: \(layers) × \(cacheShape) f16 (\(formatBytes(layers * cacheShape.reduce(1, *) * 2)))…")
        var caches: [PagedKVCache] = []
        for _ in 0..<layers {
            caches.append(try PagedKVCache(combined: Tensor.host(randn(cacheShape.reduce(1, *)), shape: cacheShape, dtype: .f16).moved(to: be)))
        }
        if useCUDA {
            print("loading the kernels: the first use of each compiles it with NVRTC (seconds), later runs load it from \(KernelCache().directory ?? "the kernel cache")…")
        } else {
            print("running each layer on the CPU reference (Float64): \(batch) requests × \(hq) heads × up to \(after.max() ?? 0) keys, head_dim \(d)…")
        }
        let t0 = nowSeconds()
        let decode = BatchDecodeWithPagedKVCache(backend: be)
        let options = AttentionOptions(positionEncoding: .ropeLlama(scale: 1, theta: 5e5))
        try decode.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, options: options, numPagesInCache: numPages)
        let tPlan = nowSeconds()
        print("plan: \(decode.plan!.workItems) work items, split-KV \(decode.plan!.splitKV ? "on, \(decode.plan!.chunkPages) pages per chunk" : "off") (\(fixed((tPlan - t0) * 1e6, 0)) µs)")
        var firstLayer: (q: Tensor, out: [Float])?
        for layer in 0..<layers {
            let newK = try Tensor.host(randn(batch * hkv * d), shape: [batch, hkv, d], dtype: .f16).moved(to: be)
            let newV = try Tensor.host(randn(batch * hkv * d), shape: [batch, hkv, d], dtype: .f16).moved(to: be)
            let stream: Stream? = if case .cuda(let s) = be { s } else { nil }
            try appendPagedKVCache(appendK: newK, appendV: newV, indices: AppendIndices(batchIndices: batchIdx, positions: positions),
                                   cache: caches[layer], table: table, stream: stream)
            let q = try Tensor.host(randn(batch * hq * d), shape: [batch, hq, d], dtype: .f16).moved(to: be)
            let ts = nowSeconds()
            let r = try decode.run(q: q, cache: caches[layer])
            if let stream { try stream.synchronize() }
            let out = try r.output.toFloats()
            if layer == 0 { firstLayer = (q, out) }
            let nonFinite = out.filter { !$0.isFinite }.count
            print("layer \(layer): appended \(batch) tokens, decode → \(r.output.shape), \(fixed((nowSeconds() - ts) * 1e3, 2)) ms, mean |out| \(fixed(Double(out.map { abs($0) }.reduce(0, +)) / Double(out.count), 4))\(nonFinite > 0 ? ", \(nonFinite) NON-FINITE" : "")")
        }
        // Cross-check request 0 of layer 0 against single-request decode on its gathered K/V.
        if let (q, out) = firstLayer {
            print("computing the CPU reference (Float64) for request 0 of layer 0: single decode, kv_len \(after[0]), \(hq)/\(hkv) heads, head_dim \(d)…")
            let hostCache = try PagedKVCache(k: caches[0].k.moved(to: .cpu), v: caches[0].v.moved(to: .cpu))
            let (k0, v0) = try hostCache.gather(request: 0, table: table)
            let single = try singleDecode(q: q.moved(to: .cpu).select(axis: 0, index: 0), k: Tensor.host(k0, shape: [after[0], hkv, d], dtype: .f16),
                                          v: Tensor.host(v0, shape: [after[0], hkv, d], dtype: .f16), options: options)
            let mismatch = Tolerance.f16.compare(Array(out[0..<(hq * d)]), try single.output.toFloats())
            print("check: request 0 of layer 0 vs single decode on the CPU reference: \(mismatch.map { "MISMATCH \($0)" } ?? "match (\(Tolerance.f16))")")
            if mismatch != nil { throw ExitCode(1) }
        }
    }
}

/// `--backend`. An enum parsed by ArgumentParser (not a string checked in `run()`), so a bad value
/// is reported with the subcommand's usage rather than the top-level one.
enum BackendChoice: String, ExpressibleByArgument, CaseIterable {
    case cpu, cuda, auto

    /// Whether to run on the GPU: `auto` means when a device and the GPU kernels are present.
    var usesCUDA: Bool {
        switch self {
        case .cpu: false
        case .cuda: true
        case .auto: CUDAAttentionAvailability.available
        }
    }

    func resolve() throws -> Backend {
        usesCUDA ? .cuda(try Device.open().makeStream()) : .cpu
    }
}

/// Whether the GPU attention path can be used (driver, device and kernels present).
enum CUDAAttentionAvailability {
    static var available: Bool {
        guard (try? Device.open()) != nil else { return false }
        return FlashInfer.gpuAttentionKernelsAvailable
    }
}
