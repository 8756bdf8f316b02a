import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    struct SamplingBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sampling",
            abstract: "Workload S1 of bench/WORKLOADS.md: batch 128, vocab 128256, f32 probabilities (softmax of σ·normal logits) — top-p 0.9, top-k 50, min-p 0.05, joint and top-k-first top-k 50 / top-p 0.9; plus plain sampling, the renorms, softmax, sampling_from_logits (Gumbel-max), top-k-first from logits and chain_speculative_sampling (--num-draft draft tokens per request, drafts drawn from the draft rows; GB/s over the rows it reads: the draft tokens' entries and one target and one draft row per request). µs per call (median of CUDA-event timings after warm-up, input buffers rotated past L2), GB/s over the probabilities, and upstream FlashInfer 0.7.2 on the same card (H100 or H200, bench/WORKLOADS.md) for comparison.")

        @Option var batch = 128
        @Option var vocab = 128_256
        @Option(help: "σ of the normal logits the probabilities are the softmax of.") var sigma: Float = 1
        @Option(help: "Timed iterations.") var iterations = 100
        @Option(name: .customLong("num-draft"), help: "Draft tokens per request (chain_speculative_sampling).") var numDraft = 4
        @Option(help: "Only rows whose name contains this text.") var filter: String?
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            var rng = SeededRNG(seed: 13)
            let host = Tensor.host(softmaxRows(batch: batch, vocab: vocab, sigma: sigma, rng: &rng), shape: [batch, vocab], dtype: .f32)
            let bytes = batch * vocab * 4
            // Enough copies that the rotation never finds a buffer in L2.
            let copies = max(2, (2 * device.properties.l2CacheSize + bytes - 1) / bytes + 1)
            let inputs = try (0..<copies).map { _ in try host.toDevice(device) }
            let outputs = try (0..<copies).map { _ in try Tensor.empty(shape: [batch, vocab], dtype: .f32, device: device) }
            let outputs2 = try (0..<copies).map { _ in try Tensor.empty(shape: [batch, vocab], dtype: .f32, device: device) }
            let samples = try device.allocate(byteCount: 4 * batch), valid = try device.allocate(byteCount: batch)
            print("S1 on \(device.properties.name): batch \(batch), vocab \(vocab), f32, softmax of \(sigma)·normal; \(copies) rotating inputs of \(formatBytes(bytes)); copy ceiling \(fixed(copy.tbps, 3)) TB/s")

            // (label, upstream's µs on this card or nil (WORKLOADS.md), one call on input i)
            typealias Row = (String, Double?, (Int) throws -> Void)
            let card = upstreamS1Card(device.properties.name)
            let up = { (h100: Double, h200: Double) -> Double? in card.map { $0 == "H100" ? h100 : h200 } }
            let chain = try chainSpeculativeRow(device: device, stream: stream, rng: &rng)
            func sampler(_ f: SamplingFilter) -> (Int) throws -> Void {
                { i in try launchSampler(inputs[i % copies], filter: f, seed: 42, offset: UInt64(i) * 4096, samples: samples, valid: valid, stream: stream) }
            }
            func op(_ o: SamplingOp) -> (Int) throws -> Void {
                { i in try launchSamplingOp(o, inputs[i % copies], out: outputs[i % copies], stream: stream) }
            }
            let rows: [Row] = [
                ("top-p 0.9", up(92, 89), sampler(.topP(0.9))),
                ("top-k 50", up(379, 363), sampler(.topK(50))),
                ("min-p 0.05", up(96, 81), sampler(.minP(0.05))),
                ("joint top-k 50 top-p 0.9", up(380, 361), sampler(.topKTopP(topK: 50, topP: 0.9, order: .joint))),
                ("top-k-first top-k 50 top-p 0.9", up(137, 120), sampler(.topKTopP(topK: 50, topP: 0.9, order: .topKFirst))),
                ("sampling_from_probs", nil, sampler(.none)),
                ("top_k_renorm_probs 50", nil, op(.topKRenorm(50))),
                ("top_p_renorm_probs 0.9", nil, op(.topPRenorm(0.9))),
                ("top_k_mask_logits 50", nil, op(.topKMaskLogits(50))),
                ("softmax T=1", nil, op(.softmax(.scalar(1.0)))),
                // The probabilities read as logits (the kernels' time does not depend on the values).
                ("sampling_from_logits (Gumbel)", nil, { i in
                    try launchSamplingFromLogits(inputs[i % copies], seed: 42, offset: UInt64(i) * UInt64(vocab), samples: samples, valid: valid, stream: stream)
                }),
                // Upstream's composition: top_k_mask_logits → softmax → top-p sampling.
                ("top-k-first from logits 50/0.9", nil, { i in
                    try launchSamplingOp(.topKMaskLogits(50), inputs[i % copies], out: outputs[i % copies], stream: stream)
                    try launchSamplingOp(.softmax(.scalar(1.0)), outputs[i % copies], out: outputs2[i % copies], stream: stream)
                    try launchSampler(outputs2[i % copies], filter: .topP(0.9), seed: 42, offset: UInt64(i) * 4096, samples: samples, valid: valid, stream: stream)
                }),
            ]
            var out: [JSON] = []
            let all = rows.map { ($0.0, $0.1, bytes, $0.2) } + [(chain.label, nil, chain.bytes, chain.call)]
            for (label, upstream, bytes, call) in all where filter.map({ label.contains($0) }) ?? true {
                let ms = median(try timeOnStream(stream, warmup: 10, iterations: iterations, call))
                let us = ms * 1e3
                let gbps = Double(bytes) / (ms * 1e-3) / 1e9
                var line = "\(pad(label, 32)) \(pad(fixed(us, 1), 8)) µs  \(pad(fixed(gbps, 0), 6)) GB/s (\(fixed(100 * gbps / (copy.tbps * 1e3), 1))% of copy)"
                if let upstream { line += "   upstream \(card ?? "") \(fixed(upstream, 0)) µs: \(fixed(us / upstream, 2))× its time" }
                print(line)
                var fields: [(String, JSON)] = [("name", .string(label)), ("median_us", .number(us)), ("gbps", .number(gbps))]
                if let upstream { fields += [("upstream_card", .string(card ?? "")), ("upstream_us", .number(upstream)), ("time_vs_upstream", .number(us / upstream))] }
                out.append(.object(fields))
            }
            try stream.synchronize()
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("sampling S1")), ("batch", .int(batch)), ("vocab", .int(vocab)), ("sigma", .number(Double(sigma))),
                    ("copy_tbps", .number(copy.tbps)), ("rows", .array(out)),
                ]).write(to: json)
            }
        }

        /// chain_speculative_sampling on `batch` requests of `numDraft` drafts: draft rows the softmax of
        /// σ·normal logits, target rows the draft rows squared and renormalized (most drafts pass),
        /// draft tokens drawn from the draft rows; two sets rotated (each is larger than L2). Bytes:
        /// per request the target's and draft's entries at the draft tokens plus one target and one
        /// draft row (the residual's).
        func chainSpeculativeRow(device: Device, stream: FlashInferCUDA.Stream, rng: inout SeededRNG) throws
            -> (label: String, bytes: Int, call: (Int) throws -> Void) {
            let n = numDraft
            let label = "chain_speculative n=\(n)"
            guard filter.map({ label.contains($0) }) ?? true else { return (label, 0, { _ in }) }
            let draft = softmaxRows(batch: batch * n, vocab: vocab, sigma: sigma, rng: &rng)
            var target = [Float](repeating: 0, count: batch * (n + 1) * vocab)
            var ids: [Int32] = []
            for r in 0..<(batch * (n + 1)) {
                let src = r % (batch * n)
                let row = draft[(src * vocab)..<((src + 1) * vocab)]
                let z = row.reduce(0.0) { $0 + Double($1) * Double($1) }
                for (j, x) in row.enumerated() { target[r * vocab + j] = Float(Double(x) * Double(x) / z) }
            }
            for r in 0..<(batch * n) {
                var u = Double(rng.uniform()), pick = vocab - 1
                for j in 0..<vocab {
                    u -= Double(draft[r * vocab + j])
                    if u < 0 { pick = j; break }
                }
                ids.append(Int32(pick))
            }
            let sets = 2
            let d = try (0..<sets).map { _ in try Tensor.host(draft, shape: [batch, n, vocab], dtype: .f32).toDevice(device) }
            let t = try (0..<sets).map { _ in try Tensor.host(target, shape: [batch, n + 1, vocab], dtype: .f32).toDevice(device) }
            let idBuffer = try device.upload(ids, stream: stream)
            let out = try device.allocate(byteCount: 4 * batch * (n + 1))
            let accepted = try device.allocate(byteCount: 4 * batch), emitted = try device.allocate(byteCount: 4 * batch)
            return (label, batch * (2 * n * 4 + 2 * vocab * 4), { i in
                try launchChainSpeculativeSampling(draftProbs: d[i % sets], draftTokenIds: idBuffer, targetProbs: t[i % sets], seed: 42,
                                                   offset: UInt64(i) * 4096, outputTokenIds: out, acceptedTokenNum: accepted,
                                                   emittedDraftTokenNum: emitted, stream: stream)
            })
        }
    }
}

/// "H100" or "H200" when the device is one of the cards WORKLOADS.md has upstream's S1 times for
/// (by the device's name, e.g. "NVIDIA H100 80GB HBM3"), else nil: no comparison is printed.
func upstreamS1Card(_ deviceName: String) -> String? {
    if deviceName.contains("H200") { return "H200" }
    if deviceName.contains("H100") { return "H100" }
    return nil
}
