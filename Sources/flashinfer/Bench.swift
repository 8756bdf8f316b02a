import ArgumentParser
import FlashInfer
import FlashInferCUDA
import FlashInferTesting

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks on the GPU (CUDA events, warm-up, median of many runs).",
        discussion: """
            Each bench runs one of the project's standard workloads, defined in bench/WORKLOADS.md \
            (shapes, dtype, what the figure counts): D1–D4 (batch decode, paged: batch-decode), D6 \
            (single decode, kv_len 32768: single-decode), P1/P2 (single prefill 8192, causal / not: \
            single-prefill), P3/P4 (batch prefill and append, paged: batch-prefill), C1 (cascade \
            decode over a 32768-token shared prefix: cascade), BS1 (block-sparse M = N = 8192, \
            R = C = 64, 10 % and 50 % density, against dense prefill: block-sparse), S1 (sampling: batch 128, vocab 128256: sampling), J1 (JIT cold \
            compile and warm load: jit). Heads 32 query / 8 KV (D4: 32/32), head_dim 128, f16, page 16.
            """,
        subcommands: [Copy.self, JITBench.self, SingleDecode.self, SinglePrefill.self, BatchDecode.self, BatchPrefill.self, CascadeBench.self, BlockSparse.self, SamplingBench.self, ReadProbe.self, API.self, NormBench.self, ActivationBench.self, RopeBench.self, DecodeStep.self, DecodePaths.self])
}

/// Times `body` with CUDA events: `warmup` untimed runs, then `iterations` timed ones; returns ms each.
func timeOnStream(_ stream: Stream, warmup: Int, iterations: Int, _ body: (Int) throws -> Void) throws -> [Double] {
    for i in 0..<warmup { try body(i) }
    try stream.synchronize()
    let dev = stream.device
    let starts = try (0..<iterations).map { _ in try dev.makeEvent() }
    let ends = try (0..<iterations).map { _ in try dev.makeEvent() }
    for i in 0..<iterations {
        try starts[i].record(on: stream)
        try body(warmup + i)
        try ends[i].record(on: stream)
    }
    try ends.last?.synchronize()
    return try (0..<iterations).map { Double(try ends[$0].elapsedMilliseconds(since: starts[$0])) }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return .nan }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Measures the copy-bandwidth ceiling: a large device-to-device copy, bytes read + written.
func measureCopyBandwidth(device: Device, stream: Stream, bytes: Int = 1 << 30, iterations: Int = 20) throws -> (tbps: Double, ms: Double) {
    let a = try device.allocate(byteCount: bytes), b = try device.allocate(byteCount: bytes)
    try a.fill(byte: 1, stream: stream)
    let ms = median(try timeOnStream(stream, warmup: 3, iterations: iterations) { _ in
        try b.copy(from: a, byteCount: bytes, stream: stream)
    })
    return (2 * Double(bytes) / (ms * 1e-3) / 1e12, ms)
}

extension Bench {
    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Device-to-device copy bandwidth (the ceiling for memory-bound kernels).")
        @Option(help: "Bytes per copy.") var bytes = 1 << 30
        @Option(help: "Timed iterations.") var iterations = 30
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let device = try Device.open()
            let stream = try device.makeStream()
            let r = try measureCopyBandwidth(device: device, stream: stream, bytes: bytes, iterations: iterations)
            print("copy \(formatBytes(bytes)) d2d: median \(fixed(r.ms, 3)) ms, \(fixed(r.tbps, 3)) TB/s (read + written)")
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("copy")), ("bytes", .int(bytes)), ("median_ms", .number(r.ms)), ("tbps", .number(r.tbps)),
                ]).write(to: json)
            }
        }
    }

    struct JITBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "jit",
            abstract: "JIT latency (J1 of bench/WORKLOADS.md): cold NVRTC compile into an empty cache, then warm loads from the disk cache.")
        @Option(help: "Warm-load repetitions.") var iterations = 20
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let device = try Device.open()
            let dir = "/tmp/flashinfer-jit-bench-\(UInt64(nowSeconds() * 1e6))"
            let cache = KernelCache(directory: dir)
            var rows: [(String, JSON)] = []
            var table: [String] = []
            for (label, spec) in benchKernelSpecs() {
                cache.clear()
                // Cold: NVRTC compile + write to the disk cache + module load.
                let cold = try JIT(device: device, cache: cache).kernel(spec)
                // Warm: a fresh JIT (empty memory cache) loading from disk + module load.
                var warm: [Double] = []
                for _ in 0..<iterations {
                    let t0 = nowSeconds()
                    let k = try JIT(device: device, cache: cache).kernel(spec)
                    warm.append(nowSeconds() - t0)
                    precondition(k.compiled.origin == .diskCache, "warm load did not hit the disk cache")
                }
                let a = cold.function.attributes
                let report = cold.compiled.resourceReport?.description
                    ?? "\(a.registers) registers, \(a.localBytes) B local (driver attributes), \(a.staticSharedBytes) B static smem"
                table.append("\(pad(label, 28)) cold \(fixed(cold.seconds, 3)) s (NVRTC \(fixed(cold.compiled.seconds, 3)) s)   warm median \(fixed(median(warm) * 1e3, 2)) ms   \(report)")
                rows.append((label, .object([
                    ("cold_seconds", .number(cold.seconds)), ("nvrtc_seconds", .number(cold.compiled.seconds)),
                    ("warm_median_ms", .number(median(warm) * 1e3)), ("warm_min_ms", .number((warm.min() ?? .nan) * 1e3)),
                    ("cubin_bytes", .int(cold.compiled.cubin.count)), ("resources", .string(report)),
                ])))
            }
            cache.clear()
            for t in table { print(t) }
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("jit")), ("nvrtc", .string(try NVRTC.shared().version.major.description + "." + NVRTC.shared().version.minor.description)),
                    ("kernels", .object(rows)),
                ]).write(to: json)
            }
        }
    }
}

/// The kernels J1 times: the largest one available (the D1 decode kernel once it exists).
func benchKernelSpecs() -> [(String, any KernelSpec)] {
    [("J1 batch decode (D1 kernel)", DecodeSpec(dtype: .f16, headDim: 128, group: 4, posEnc: .none, softCap: false, paged: true)),
     ("single prefill causal (P1 kernel)", PrefillSpec(dtype: .f16, headDim: 128, causal: true)),
     ("single decode (D6 kernel)", DecodeSpec(dtype: .f16, headDim: 128, group: 4, posEnc: .none, softCap: false)),
     ("axpby f16 (smallest)", kernelCatalog().first { $0.name == "axpby f16" }!.spec)]
}

/// A large f16 device tensor of random normal values (never zeros): one 1M-element random block
/// tiled over the buffer, so gigabytes fill in seconds. Bandwidth benches only (values repeat).
func randomDeviceTensor(shape: [Int], dtype: DType = .f16, device: Device, rng: inout SeededRNG) throws -> Tensor {
    let bytes = shape.reduce(1, *) * dtype.byteSize
    let block = dtype.encode((0..<(1 << 20)).map { _ in rng.normal() })
    let buf = try device.allocate(byteCount: bytes)
    var off = 0
    while off < bytes {
        let n = min(block.count, bytes - off)
        try buf.copyFromHostBlocking(Array(block.prefix(n)), offset: off)
        off += n
    }
    return Tensor(storage: .device(buf, byteOffset: 0), shape: shape, dtype: dtype)
}
