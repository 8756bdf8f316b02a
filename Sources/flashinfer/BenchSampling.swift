import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    struct SamplingBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sampling",
            abstract: "Workload S1 of bench/WORKLOADS.md: batch 128, vocab 128256, f32 probabilities (softmax of σ·normal logits) — top-p 0.9, top-k 50, min-p 0.05, joint and top-k-first top-k 50 / top-p 0.9; plus plain sampling, the renorms, softmax, sampling_from_logits (Gumbel-max) and top-k-first from logits. µs per call (median of CUDA-event timings after warm-up, input buffers rotated past L2), GB/s over the probabilities, and upstream FlashInfer 0.7.2 on an H200 for comparison.")

        @Option var batch = 128
        @Option var vocab = 128_256
        @Option(help: "σ of the normal logits the probabilities are the softmax of.") var sigma: Float = 1
        @Option(help: "Timed iterations.") var iterations = 100
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

            // (label, upstream H200 µs or nil (WORKLOADS.md), one call on input i)
            typealias Row = (String, Double?, (Int) throws -> Void)
            func sampler(_ f: SamplingFilter) -> (Int) throws -> Void {
                { i in try launchSampler(inputs[i % copies], filter: f, seed: 42, offset: UInt64(i) * 4096, samples: samples, valid: valid, stream: stream) }
            }
            func op(_ o: SamplingOp) -> (Int) throws -> Void {
                { i in try launchSamplingOp(o, inputs[i % copies], out: outputs[i % copies], stream: stream) }
            }
            let rows: [Row] = [
                ("top-p 0.9", 89, sampler(.topP(0.9))),
                ("top-k 50", 363, sampler(.topK(50))),
                ("min-p 0.05", 81, sampler(.minP(0.05))),
                ("joint top-k 50 top-p 0.9", 361, sampler(.topKTopP(topK: 50, topP: 0.9, order: .joint))),
                ("top-k-first top-k 50 top-p 0.9", 120, sampler(.topKTopP(topK: 50, topP: 0.9, order: .topKFirst))),
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
            for (label, upstream, call) in rows where filter.map({ label.contains($0) }) ?? true {
                let ms = median(try timeOnStream(stream, warmup: 10, iterations: iterations, call))
                let us = ms * 1e3
                let gbps = Double(bytes) / (ms * 1e-3) / 1e9
                var line = "\(pad(label, 32)) \(pad(fixed(us, 1), 8)) µs  \(pad(fixed(gbps, 0), 6)) GB/s (\(fixed(100 * gbps / (copy.tbps * 1e3), 1))% of copy)"
                if let upstream { line += "   upstream H200 \(fixed(upstream, 0)) µs: \(fixed(us / upstream, 2))× its time" }
                print(line)
                var fields: [(String, JSON)] = [("name", .string(label)), ("median_us", .number(us)), ("gbps", .number(gbps))]
                if let upstream { fields += [("upstream_h200_us", .number(upstream)), ("time_vs_upstream", .number(us / upstream))] }
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
    }
}
