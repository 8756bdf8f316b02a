import ArgumentParser
import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    struct BatchPrefill: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "batch-prefill",
            abstract: "Batch prefill / append over a paged (or ragged) KV cache (P3/P4 of bench/WORKLOADS.md): median ms and TFLOP/s.")

        @Option(help: "Workload preset: P3 (16 requests, 2048 new tokens each, kv 2048, causal, paged) or P4 (32 requests append 128 tokens, kv 4096 in all including them, causal, paged); 32/8 heads, D 128, page 16, f16. Other options override it.")
        var workload: String = "P3"
        @Option(help: "Requests.") var batch: Int?
        @OptionGroup var problem: AttentionShapeOptions
        @Option(name: .customLong("page-size")) var pageSize: Int?
        @Flag(help: "Ragged K/V instead of the paged cache.") var ragged = false
        @Flag(name: .customLong("contiguous-pages"), help: "Keep each request's pages in order (the default scatters them over the cache with a fixed shuffle, as a serving engine leaves them).") var contiguousPages = false
        @Option(help: "Kernel tier: both (default: fa2, then auto = hopper where supported), fa2, hopper or auto.") var tier = "both"
        @Option(help: "Timed iterations.") var iterations = 30
        @Option(help: "Untimed warm-up iterations.") var warmup = 5
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let preset: (b: Int, qo: Int, kv: Int, name: String)
            switch workload.uppercased() {
            case "P3": preset = (16, 2048, 2048, "P3")
            case "P4": preset = (32, 128, 4096, "P4")  // kv 4096 in all, the 128 new tokens included (as upstream's bench)
            default: throw ValidationError("--workload must be P3 or P4")
            }
            let b = batch ?? preset.b, qo = problem.qoLen ?? preset.qo, kv = problem.kvLen ?? preset.kv
            let hq = problem.numQOHeads ?? 32, hkv = problem.numKVHeads ?? 8, d = problem.headDim ?? 128, ps = pageSize ?? 16
            let isCausal = problem.causal ?? true
            let dt = try problem.resolvedDType()
            let lay = try problem.resolvedLayout()
            guard qo <= kv || !isCausal else { throw ValidationError("causal needs qo-len <= kv-len") }
            let custom = problem.overridesPreset || batch != nil || pageSize != nil || ragged || contiguousPages
            let label = custom ? "custom" : preset.name

            let device = try Device.open()
            let stream = try device.makeStream()
            let tiers: [PrefillTier]
            switch tier.lowercased() {
            case "both": tiers = [.fa2, .auto]
            default:
                guard let t = PrefillTier(rawValue: tier.lowercased()) else { throw ValidationError("--tier must be both, fa2, hopper or auto") }
                tiers = [t]
            }
            var rng = SeededRNG(seed: 2026)
            func randn(_ shape: [Int]) throws -> Tensor {
                // Random normal on the host, uploaded once; big inputs reuse one random block.
                let n = shape.reduce(1, *)
                let block = (0..<min(n, 1 << 20)).map { _ in rng.normal() }
                let values = (0..<n).map { block[($0 &* 7919) % block.count] }
                return try Tensor.host(values, shape: shape, dtype: dt).toDevice(device)
            }
            let qoIndptr = (0...b).map { Int32($0 * qo) }
            let q = try randn([b * qo, hq, d])
            let out = try Tensor.empty(shape: [b * qo, hq, d], dtype: dt, device: device)
            let lseT = problem.lse ? try Tensor.empty(shape: [b * qo, hq], dtype: .f32, device: device) : nil
            let kvInput: BatchKV
            var table: PageTable? = nil
            var numPages = 0
            if ragged {
                let shape = lay == .nhd ? [b * kv, hkv, d] : [hkv, b * kv, d]
                kvInput = .ragged(k: try randn(shape), v: try randn(shape))
            } else {
                // Each request's pages scattered over the cache (a fixed shuffle), as a serving engine leaves them.
                var t = PageTable.contiguous(seqLens: Array(repeating: kv, count: b), pageSize: ps)
                numPages = t.indices.count
                var perm = Array(0..<numPages)
                if !contiguousPages {
                    for i in stride(from: numPages - 1, to: 0, by: -1) { perm.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                }
                t.indices = t.indices.map { Int32(perm[Int($0)]) }
                table = t
                let shape = lay == .nhd ? [numPages, ps, hkv, d] : [numPages, hkv, ps, d]
                kvInput = .paged(try PagedKVCache(k: try randn(shape), v: try randn(shape), layout: lay))
            }
            let flops = Double(b) * attentionFLOPs(qoLen: qo, kvLen: kv, numQOHeads: hq, headDim: d, causal: isCausal)
            print("batch-prefill \(label): \(b) requests, qo \(qo), kv \(kv) (the new tokens included), heads \(hq)/\(hkv), D \(d), \(dt.rawValue), \(lay.rawValue), \(ragged ? "ragged" : "paged, page \(ps)\(contiguousPages ? ", pages in order" : ", pages shuffled")"), causal \(isCausal)\(problem.lse ? ", with LSE" : "")")
            print("  FLOPs \(fixed(flops / 1e12, 4)) T (4 · Hq · D · (query, key) pairs; causal: qo·kv/2 when qo = kv, the exact bottom-right triangle for append)")
            var runs: [JSON] = []
            for asked in tiers {
                let options = AttentionOptions(causal: isCausal, layout: lay, tier: asked)
                let wrapper = BatchPrefillAttention(backend: .cuda(stream))
                if let table {
                    try wrapper.plan(qoIndptr: qoIndptr, table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: dt,
                                     options: options, numPagesInCache: numPages)
                } else {
                    try wrapper.plan(qoIndptr: qoIndptr, kvIndptr: (0...b).map { Int32($0 * kv) }, numQOHeads: hq, numKVHeads: hkv,
                                     headDim: d, dtype: dt, options: options)
                }
                let plan = wrapper.plan!
                let ran = wrapper.tier ?? .fa2
                let kernelName: String
                let report: String
                if ran == .hopper {
                    let spec = HopperBatchPrefillSpec(dtype: dt, headDim: d, causal: isCausal, pageSize: ragged ? 0 : ps)
                    let kernel = try JIT.shared(for: device).kernel(spec)
                    let attrs = kernel.function.attributes
                    kernelName = spec.name
                    report = kernel.compiled.resourceReport?.description
                        ?? "\(attrs.registers) registers, \(attrs.localBytes) B local (from the driver; kernel loaded from the disk cache)"
                } else {
                    let spec = BatchPrefillAttention.kernelSpec(qoLens: Array(repeating: qo, count: b), groupSize: hq / hkv, headDim: d,
                                                                dtype: dt, options: options, paged: !ragged)
                    let kernel = try JIT.shared(for: device).kernel(spec)
                    let attrs = kernel.function.attributes
                    kernelName = spec.name
                    report = kernel.compiled.resourceReport?.description
                        ?? "\(attrs.registers) registers, \(attrs.localBytes) B local (from the driver; kernel loaded from the disk cache)"
                }
                let times = try timeOnStream(stream, warmup: warmup, iterations: iterations) { _ in
                    try wrapper.run(q: q, kv: kvInput, out: out, lse: lseT)
                }
                let ms = median(times)
                let tflops = flops / (ms * 1e-3) / 1e12
                let frac = tflops / referenceGEMMPeakTFLOPS
                let planText = "\(plan.workItems) work items × \(hkv) kv heads, q tile \(plan.ctaTileQ), " + (plan.splitKV ? "split KV, chunk \(plan.chunkTokens) keys" : "no split")
                print("  tier \(ran) (asked: \(asked)\(wrapper.tierFallback.map { "; fell back: \($0)" } ?? ""))")
                print("    plan: \(planText)")
                print("    kernel \(kernelName): \(report)")
                print("    median \(fixed(ms, 3)) ms (min \(fixed(times.min() ?? .nan, 3)), \(iterations) runs), \(fixed(tflops, 1)) TFLOP/s = \(fixed(frac * 100, 1)) % of \(Int(referenceGEMMPeakTFLOPS)) (the upstream-reference dense bf16 GEMM peak of bench/WORKLOADS.md, project H100; not measured in this run)")
                runs.append(.object([
                    ("workload", .string("\(label) \(ran)")), ("tier", .string(ran.rawValue)), ("tier_asked", .string(asked.rawValue)),
                    ("tier_fallback", wrapper.tierFallback.map { .string($0) } ?? .null),
                    ("work_items", .int(plan.workItems)), ("cta_tile_q", .int(plan.ctaTileQ)), ("split_kv", .bool(plan.splitKV)),
                    ("kernel", .string(kernelName)), ("resources", .string(report)),
                    ("iterations", .int(iterations)), ("median_ms", .number(ms)), ("min_ms", .number(times.min() ?? .nan)),
                    ("tflops", .number(tflops)), ("fraction_of_ceiling", .number(frac)),
                ]))
            }
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("batch-prefill")), ("preset", .string(label)),
                    ("batch", .int(b)), ("qo_len", .int(qo)), ("kv_len", .int(kv)), ("num_qo_heads", .int(hq)), ("num_kv_heads", .int(hkv)),
                    ("head_dim", .int(d)), ("dtype", .string(dt.rawValue)), ("layout", .string(lay.rawValue)),
                    ("kv", .string(ragged ? "ragged" : contiguousPages ? "paged (pages in order)" : "paged (pages shuffled)")), ("page_size", .int(ragged ? 0 : ps)),
                    ("causal", .bool(isCausal)), ("lse", .bool(problem.lse)),
                    ("flops", .number(flops)), ("flops_rule", .string("4 · Hq · D · (query, key) pairs per request; causal: qo·kv/2 when qo = kv (bench/WORKLOADS.md), the exact bottom-right triangle for append")),
                    ("ceiling_tflops", .number(referenceGEMMPeakTFLOPS)),
                    ("ceiling_source", .string("upstream-reference dense bf16 8192^3 GEMM peak, bench/WORKLOADS.md (project H100, 2026-11-25); not measured in this run")),
                    ("runs", .array(runs)),
                ]).write(to: json)
            }
        }
    }
}
