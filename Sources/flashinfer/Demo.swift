import ArgumentParser
import FlashInfer
import FlashInferCUDA

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run attention on a small model-shaped workload through the public API (GPU when present, else the CPU reference).")

    @Option(help: "cpu, cuda, or auto (cuda when a device and the GPU kernels are present).")
    var backend: String = "auto"
    @Option(name: .customLong("kv-len"), help: "Keys per request.") var kvLen = 1024
    @Option(name: .customLong("qo-len"), help: "New tokens for the append step.") var qoLen = 16
    @Option(name: .customLong("num-qo-heads")) var numQOHeads = 32
    @Option(name: .customLong("num-kv-heads")) var numKVHeads = 8
    @Option(name: .customLong("head-dim")) var headDim = 128

    func run() throws {
        let useCUDA: Bool
        switch backend {
        case "cpu": useCUDA = false
        case "cuda": useCUDA = true
        case "auto": useCUDA = CUDAAttentionAvailability.available
        default: throw ValidationError("--backend must be cpu, cuda or auto")
        }
        var rng = DemoRNG(seed: 2026)
        let d = headDim
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
        print("demo: Llama-shaped attention, \(numQOHeads) query heads / \(numKVHeads) KV heads (GQA group \(numQOHeads / max(numKVHeads, 1))), head_dim \(d), f16")
        let qDec = Tensor.host(randn(numQOHeads * d), shape: [numQOHeads, d], dtype: .f16)
        let qApp = Tensor.host(randn(qoLen * numQOHeads * d), shape: [qoLen, numQOHeads, d], dtype: .f16)
        let k = Tensor.host(randn(kvLen * numKVHeads * d), shape: [kvLen, numKVHeads, d], dtype: .f16)
        let v = Tensor.host(randn(kvLen * numKVHeads * d), shape: [kvLen, numKVHeads, d], dtype: .f16)
        let rope = AttentionOptions(causal: true, positionEncoding: .ropeLlama(scale: 1, theta: 5e5))

        let be: Backend
        var inputs = (qDec, qApp, k, v)
        if useCUDA {
            let dev = try Device.open()
            be = .cuda(try dev.makeStream())
            inputs = (try qDec.toDevice(dev), try qApp.toDevice(dev), try k.toDevice(dev), try v.toDevice(dev))
        } else {
            be = .cpu
        }
        print("backend: \(be.name)")
        let t0 = nowSeconds()
        let dec = try singleDecode(q: inputs.0, k: inputs.2, v: inputs.3, options: rope, returnLSE: true, backend: be)
        let t1 = nowSeconds()
        let app = try singlePrefill(q: inputs.1, k: inputs.2, v: inputs.3, options: rope, returnLSE: true, backend: be)
        let t2 = nowSeconds()
        if case .cuda(let s) = be { try s.synchronize() }
        let decOut = try dec.output.toFloats(), decLSE = try dec.lse!.toFloats()
        let appOut = try app.output.toFloats()
        print("decode : q \(qDec.shape) x kv_len \(kvLen), RoPE (theta 5e5) -> output \(dec.output.shape), LSE[0] = \(fixed(Double(decLSE[0]), 4)) (base 2), out[0][0..3] = \(decOut.prefix(4).map { fixed(Double($0), 4) }), \(fixed((t1 - t0) * 1e3, 2)) ms")
        print("append : q \(qApp.shape) x kv_len \(kvLen), causal bottom-right, RoPE -> output \(app.output.shape), out[0][0..3] = \(appOut.prefix(4).map { fixed(Double($0), 4) }), \(fixed((t2 - t1) * 1e3, 2)) ms")
        // The decode row equals the last append row when the query is the same token: a consistency check.
        let nonFinite = (decOut + appOut).filter { !$0.isFinite }.count
        print(nonFinite == 0 ? "all outputs finite" : "WARNING: \(nonFinite) non-finite outputs")
    }
}

/// Whether the GPU attention path can be used (driver, device and kernels present).
enum CUDAAttentionAvailability {
    static var available: Bool {
        guard (try? Device.open()) != nil else { return false }
        return FlashInfer.gpuAttentionKernelsAvailable
    }
}

/// SplitMix64 + Box–Muller: reproducible normal inputs for the demo, checks and benches.
struct DemoRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func normal() -> Float {
        let u1 = max(uniform(), 1e-7), u2 = uniform()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * Float.pi * u2)
    }
}

#if canImport(Glibc)
import Glibc
#endif
