import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

/// FLOPs of single-request attention: 4·qo·kv·Hq·D, counting only the (query, key) pairs a causal
/// mask keeps — exactly half when qo = kv (bench/WORKLOADS.md's convention), the exact bottom-right
/// triangle Σ_i min(kv, i + kv − qo + 1) for append.
func attentionFLOPs(qoLen: Int, kvLen: Int, numQOHeads: Int, headDim: Int, causal: Bool) -> Double {
    let perPair = 4.0 * Double(numQOHeads * headDim)
    guard causal else { return perPair * Double(qoLen) * Double(kvLen) }
    if qoLen == kvLen { return perPair * Double(qoLen) * Double(kvLen) / 2 }
    var pairs = 0
    for i in 0..<qoLen { pairs += min(kvLen, max(0, i + kvLen - qoLen + 1)) }
    return perPair * Double(pairs)
}

/// The ceiling prefill is compared against: the library has no GEMM to measure one with, so it is
/// the dense bf16 8192³ matrix product measured on the project's H100 with the upstream reference
/// stack (bench/WORKLOADS.md, 2026-11-25) — not a measurement of this run or this card.
let referenceGEMMPeakTFLOPS = 804.0

extension Bench {
    struct SinglePrefill: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "single-prefill",
            abstract: "Single-request prefill on tensor cores (P1/P2 of bench/WORKLOADS.md): median ms and TFLOP/s.",
            aliases: ["prefill"])

        @Option(help: "Workload preset: P1 (causal, qo = kv = 8192, 32/8 heads, D 128, f16) or P2 (the same, not causal). Other options override it.")
        var workload: String = "P1"
        @OptionGroup var problem: AttentionShapeOptions
        @Option(name: .customLong("mma-q"), help: "Tile override: m16 row tiles per warp (1 or 2).") var mmaQ: Int?
        @Option(name: .customLong("cta-kv"), help: "Tile override: keys per loaded kv tile.") var ctaKV: Int?
        @Option(name: .customLong("kv-sub"), help: "Tile override: keys per compute sub-tile.") var kvSub: Int?
        @Option(help: "Kernel tier: auto (the library default: hopper where supported), fa2 (mma.sync) or hopper (TMA + wgmma, sm_90 only).")
        var tier: String = "auto"
        @Option(help: "Timed iterations.") var iterations = 30
        @Option(help: "Untimed warm-up iterations.") var warmup = 5
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let preset: (causal: Bool, name: String)
            switch workload.uppercased() {
            case "P1": preset = (true, "P1")
            case "P2": preset = (false, "P2")
            default: throw ValidationError("--workload must be P1 or P2")
            }
            let qo = problem.qoLen ?? 8192, kv = problem.kvLen ?? (problem.qoLen ?? 8192)
            let hq = problem.numQOHeads ?? 32, hkv = problem.numKVHeads ?? 8, d = problem.headDim ?? 128
            let isCausal = problem.causal ?? preset.causal
            let dt = try problem.resolvedDType()
            let lay = try problem.resolvedLayout()
            let custom = problem.overridesPreset
            let label = custom ? "custom" : preset.name + (mmaQ != nil || ctaKV != nil || kvSub != nil ? " (tile override)" : "")

            let device = try Device.open()
            let stream = try device.makeStream()
            guard let tierChoice = PrefillTier(rawValue: tier.lowercased()) else { throw ValidationError("--tier must be fa2, hopper or auto") }
            let tileGiven = mmaQ != nil || ctaKV != nil || kvSub != nil
            if tileGiven && tierChoice == .hopper { throw ValidationError("--mma-q/--cta-kv/--kv-sub override the FA2 tile; not with --tier hopper") }
            let options = AttentionOptions(causal: isCausal, layout: lay, tier: tierChoice)
            let qShape = [qo, hq, d]
            let kvShape = lay == .nhd ? [kv, hkv, d] : [hkv, kv, d]
            // Rotate input copies when they would sit in L2 (50 MB on the H100).
            let bytes = (qShape.reduce(1, *) + 2 * kvShape.reduce(1, *)) * dt.byteSize
            let copies = max(1, min(8, (200 << 20) / max(bytes, 1)))
            var rng = SeededRNG(seed: 2026)
            func randn(_ shape: [Int]) throws -> Tensor {
                // Random normal on the host, uploaded once; big inputs reuse one random block.
                let n = shape.reduce(1, *)
                let block = (0..<min(n, 1 << 20)).map { _ in rng.normal() }
                let values = (0..<n).map { block[($0 &* 7919) % block.count] }
                return try Tensor.host(values, shape: shape, dtype: dt).toDevice(device)
            }
            var inputs: [(Tensor, Tensor, Tensor)] = []
            for _ in 0..<copies { inputs.append((try randn(qShape), try randn(kvShape), try randn(kvShape))) }
            let out = try Tensor.empty(shape: qShape, dtype: dt, device: device)
            let lseT = problem.lse ? try Tensor.empty(shape: [qo, hq], dtype: .f32, device: device) : nil

            var spec = PrefillSpec(dtype: dt, headDim: d, options: options)
            let tileOverride: PrefillTile? = mmaQ != nil || ctaKV != nil || kvSub != nil
                ? PrefillTile(mmaQ: mmaQ ?? spec.tile.mmaQ, ctaKV: ctaKV ?? spec.tile.ctaKV, kvSub: kvSub ?? spec.tile.kvSub) : nil
            if let t = tileOverride { spec.tile = t }
            // One untimed call tells the tier that runs (and compiles its kernel).
            let ranTier = try singlePrefill(q: inputs[0].0, k: inputs[0].1, v: inputs[0].2, options: options, out: out, lse: lseT,
                                            tile: tileOverride, stream: stream)
            let hopperSpec = HopperPrefillSpec(dtype: dt, headDim: d, causal: isCausal)
            let kernel = ranTier == .hopper ? try JIT.shared(for: device).kernel(hopperSpec) : try JIT.shared(for: device).kernel(spec)
            let kernelName = ranTier == .hopper ? hopperSpec.name : spec.name
            let times = try timeOnStream(stream, warmup: warmup, iterations: iterations) { i in
                let (q, k, v) = inputs[i % copies]
                try singlePrefill(q: q, k: k, v: v, options: options, out: out, lse: lseT, tile: tileOverride, stream: stream)
            }
            let ms = median(times)
            let flops = attentionFLOPs(qoLen: qo, kvLen: kv, numQOHeads: hq, headDim: d, causal: isCausal)
            let tflops = flops / (ms * 1e-3) / 1e12
            let frac = tflops / referenceGEMMPeakTFLOPS
            let attrs = kernel.function.attributes
            let report = kernel.compiled.resourceReport?.description
                ?? "\(attrs.registers) registers, \(attrs.localBytes) B local (from the driver; kernel loaded from the disk cache)"
            print("single-prefill \(label): qo \(qo), kv \(kv), heads \(hq)/\(hkv), D \(d), \(dt.rawValue), \(lay.rawValue), causal \(isCausal)\(problem.lse ? ", with LSE" : "")")
            print("  tier \(ranTier) (asked: \(tierChoice)); kernel \(kernelName): \(report)")
            print("  median \(fixed(ms, 3)) ms (min \(fixed(times.min() ?? .nan, 3)), \(iterations) runs, \(copies) input cop\(copies == 1 ? "y" : "ies")), \(fixed(tflops, 1)) TFLOP/s")
            print("  = \(fixed(frac * 100, 1)) % of \(Int(referenceGEMMPeakTFLOPS)) TFLOP/s, the upstream-reference dense bf16 GEMM peak of bench/WORKLOADS.md (project H100; not measured in this run)")
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("single-prefill")), ("workload", .string(label)),
                    ("qo_len", .int(qo)), ("kv_len", .int(kv)), ("num_qo_heads", .int(hq)), ("num_kv_heads", .int(hkv)),
                    ("head_dim", .int(d)), ("dtype", .string(dt.rawValue)), ("layout", .string(lay.rawValue)),
                    ("causal", .bool(isCausal)), ("lse", .bool(problem.lse)),
                    ("tier", .string(ranTier.rawValue)), ("kernel", .string(kernelName)),
                    ("tile", .string(ranTier == .hopper ? "q128kv128s\(hopperSpec.stages)" : spec.tile.description)), ("registers", .int(attrs.registers)), ("local_bytes", .int(attrs.localBytes)),
                    ("resources", .string(report)),
                    ("iterations", .int(iterations)), ("input_copies", .int(copies)),
                    ("median_ms", .number(ms)), ("min_ms", .number(times.min() ?? .nan)),
                    ("flops", .number(flops)), ("tflops", .number(tflops)),
                    ("ceiling_tflops", .number(referenceGEMMPeakTFLOPS)),
                    ("ceiling_source", .string("upstream-reference dense bf16 8192^3 GEMM peak, bench/WORKLOADS.md (project H100, 2026-11-25); not measured in this run")),
                    ("fraction_of_ceiling", .number(frac)),
                ]).write(to: json)
            }
        }
    }
}
