import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

// `bench norm|activation|rope`: the memory-bound ops against the copy ceiling. Figure = bytes the
// op must move (read + written, the weights and positions included) / time. Two timings per op:
//   per call  CUDA events around each call (after warm-up), median: what one isolated call costs,
//             launch and event overhead included (~2 µs, a large share of an 8 MB op);
//   queued    `calls` back-to-back calls between one event pair, launched while a spin kernel
//             holds the GPU, so the host's launch rate is out of it: the rate of a layer loop
//             (median per call over `reps` such runs).
//   queued, L2-warm  the same, every call on the first buffer set: its inputs stay in L2, as in a
//             model's layer loop where the op reads what the previous op has just written (8 MiB
//             of a 60 MB L2). Not a DRAM figure: "% of copy" above 100 % is possible.
// Inputs rotate over enough buffer sets that each call reads data not in L2 (4 × L2 in all).

/// One op's timings, in µs per call.
struct OpTiming {
    var perCall: Double
    var queued: Double
    /// Queued with every call on buffer set 0 (inputs L2-resident).
    var queuedWarm: Double
    /// The host took longer to queue the calls than the spin lasted (the queued figure is then an
    /// upper bound on the GPU's time).
    var hostBound: Bool
}

/// Times `body(i)` (call `i` uses buffer set `i % sets`) both ways.
func timeOp(device: Device, stream: Stream, iterations: Int, calls: Int, reps: Int, _ body: (Int) throws -> Void) throws -> OpTiming {
    let perCall = median(try timeOnStream(stream, warmup: 10, iterations: iterations) { i in try body(i) })
    let (queued, hostBound) = try timeQueued(device: device, stream: stream, calls: calls, reps: reps, body)
    let (warm, warmHostBound) = try timeQueued(device: device, stream: stream, calls: calls, reps: reps) { _ in try body(0) }
    return OpTiming(perCall: perCall * 1e3, queued: queued * 1e3, queuedWarm: warm * 1e3, hostBound: hostBound || warmHostBound)
}

/// `calls` back-to-back calls behind a spin kernel: the median ms per call over `reps` runs, and
/// whether the host was slower than the spin (then an upper bound).
func timeQueued(device: Device, stream: Stream, calls: Int, reps: Int, _ body: (Int) throws -> Void) throws -> (Double, Bool) {
    let spin = try JIT.shared(for: device).kernel(SpinProbeSpec()).function
    var spinNs: UInt64 = 2_000_000
    var hostBound = false
    var queued: [Double] = []
    for rep in 0...reps {
        let start = try device.makeEvent(), end = try device.makeEvent()
        var a = KernelArguments()
        a.append(spinNs)
        try spin.launch(grid: (1, 1, 1), block: (32, 1, 1), stream: stream, arguments: a)
        let t0 = nowSeconds()
        try start.record(on: stream)
        for i in 0..<calls { try body(rep * calls + i) }
        try end.record(on: stream)
        let host = nowSeconds() - t0
        try end.synchronize()
        // Rep 0 sizes the spin (twice the host's queueing time); it is not counted.
        if rep == 0 {
            spinNs = UInt64(max(2e-3, 2 * host) * 1e9)
            continue
        }
        if host * 1e9 > Double(spinNs) { hostBound = true }
        queued.append(Double(try end.elapsedMilliseconds(since: start)) / Double(calls))
    }
    return (median(queued), hostBound)
}

/// How many buffer sets of `bytes` each make the rotation 4 × L2 (at least 2, at most 64).
func rotatingSets(bytes: Int, device: Device) -> Int {
    max(2, min(64, (4 * device.properties.l2CacheSize + bytes - 1) / max(1, bytes)))
}

/// A device-to-device copy that moves `moved` bytes (half read, half written) over rotating buffers:
/// the achievable rate for an op of that size, fixed costs included (an 8 MiB op is ~2 µs at the
/// copy ceiling, so launch, first-load latency and write drain are a large share of it). Printed
/// next to the ops so "% of copy" can be read against what a copy of the same bytes reaches.
func sameSizeCopyCase(moved: Int, device: Device, stream: Stream) throws -> (label: String, bytes: Int, body: (Int) throws -> Void) {
    let half = max(16, moved / 2)
    let sets = rotatingSets(bytes: 2 * half, device: device)
    let src = try (0..<sets).map { _ in try device.allocate(byteCount: half) }
    let dst = try (0..<sets).map { _ in try device.allocate(byteCount: half) }
    for b in src { try b.fill(byte: 1, stream: stream) }
    try stream.synchronize()
    return ("reference: device copy of the same bytes (cuMemcpyDtoDAsync)", 2 * half, { i in
        try dst[i % sets].copy(from: src[i % sets], byteCount: half, stream: stream)
    })
}

/// An empty kernel of `ctas` CTAs × 256 threads launched as the ops are (PDL: it lets the next
/// launch in and waits for the previous grid), reported with the op's `bytes`: its "% of copy" is
/// the most any kernel of that size could show when launched back to back this way (the floor of
/// a call: launch gap, CTA start, grid completion and flush, with no memory traffic at all).
func emptyKernelFloorCase(ctas: Int, bytes: Int, device: Device, stream: Stream) throws -> (label: String, bytes: Int, body: (Int) throws -> Void) {
    let f = try JIT.shared(for: device).kernel(PDLEmptyProbeSpec()).function
    return ("floor: empty kernel, \(ctas) CTAs × 256 threads (PDL)", bytes, { _ in
        try f.launch(grid: (ctas, 1, 1), block: (256, 1, 1), stream: stream, arguments: KernelArguments(), programmaticDependency: true)
    })
}

/// The table line and the JSON row of one measured op.
func opReport(_ label: String, bytes: Int, timing t: OpTiming, copyTBps: Double) -> (String, JSON) {
    let gbps = { (us: Double) in Double(bytes) / (us * 1e-6) / 1e9 }
    let line = "\(pad(label, 58)) \(pad(formatBytes(bytes), 9))  per call \(pad(fixed(t.perCall, 2), 7)) µs \(pad(fixed(gbps(t.perCall), 0), 5)) GB/s (\(fixed(100 * gbps(t.perCall) / (copyTBps * 1e3), 1))%)   queued \(pad(fixed(t.queued, 2), 7)) µs \(pad(fixed(gbps(t.queued), 0), 5)) GB/s (\(fixed(100 * gbps(t.queued) / (copyTBps * 1e3), 1))% of copy)   L2-warm \(pad(fixed(t.queuedWarm, 2), 6)) µs (\(fixed(100 * gbps(t.queuedWarm) / (copyTBps * 1e3), 1))%)\(t.hostBound ? "  [host-bound]" : "")"
    let row = JSON.object([
        ("op", .string(label)), ("bytes", .int(bytes)),
        ("per_call_us", .number(t.perCall)), ("per_call_gbps", .number(gbps(t.perCall))),
        ("per_call_fraction_of_copy", .number(gbps(t.perCall) / (copyTBps * 1e3))),
        ("queued_us", .number(t.queued)), ("queued_gbps", .number(gbps(t.queued))),
        ("queued_fraction_of_copy", .number(gbps(t.queued) / (copyTBps * 1e3))),
        ("queued_l2_warm_us", .number(t.queuedWarm)), ("queued_l2_warm_fraction_of_copy", .number(gbps(t.queuedWarm) / (copyTBps * 1e3))), ("host_bound", .bool(t.hostBound)),
    ])
    return (line, row)
}

/// Comma-separated positive integers.
func intList(_ s: String, _ name: String) throws -> [Int] {
    let v = s.split(separator: ",").compactMap { Int($0.trimmingCharacters()) }
    guard !v.isEmpty, v.allSatisfy({ $0 > 0 }) else { throw ValidationError("--\(name) must be positive integers, comma-separated") }
    return v
}

/// The options every op bench shares.
struct OpBenchOptions: ParsableArguments {
    @Option(help: "Element dtype: f16 or bf16.") var dtype = "f16"
    @Option(help: "Event-timed single calls (per-call median).") var iterations = 200
    @Option(help: "Back-to-back calls per queued run.") var calls = 100
    @Option(help: "Queued runs (median).") var reps = 20
    @Option(help: "Write results as JSON to this file.") var json: String?

    func parsedDType() throws -> DType {
        guard let d = DType(name: dtype), d == .f16 || d == .bf16 else { throw ValidationError("--dtype must be f16 or bf16") }
        return d
    }
}

/// Runs `rows` of `(label, bytes, body)` and prints / writes them.
func runOpBench(name: String, workload: String, options o: OpBenchOptions, device: Device, stream: Stream, copyTBps: Double,
                cases: [(label: String, bytes: Int, body: (Int) throws -> Void)]) throws {
    print("\(name) on \(device.properties.name): \(workload); copy ceiling \(fixed(copyTBps, 3)) TB/s (read + written)")
    var rows: [JSON] = []
    for c in cases {
        let t = try timeOp(device: device, stream: stream, iterations: o.iterations, calls: o.calls, reps: o.reps, c.body)
        let (line, row) = opReport(c.label, bytes: c.bytes, timing: t, copyTBps: copyTBps)
        print(line)
        rows.append(row)
    }
    if let json = o.json {
        try JSON.object(resultHeader(device: device.properties.name) + [
            ("benchmark", .string(name)), ("workload", .string(workload)), ("copy_tbps", .number(copyTBps)), ("rows", .array(rows)),
        ]).write(to: json)
    }
}

extension Bench {
    struct NormBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "norm",
            abstract: "RMSNorm, Gemma RMSNorm, fused add + RMSNorm (in place) and LayerNorm: GB/s (read + written) against the copy ceiling; issue 13's target is ≥ 80 % at batch 256, hidden 8192.")
        @Option(help: "Rows (comma-separated).") var batch = "256"
        @Option(help: "Hidden sizes (comma-separated).") var hidden = "8192"
        @OptionGroup var options: OpBenchOptions

        func run() throws {
            let dtype = try options.parsedDType()
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            var rng = SeededRNG(seed: 13)
            let be = Backend.cuda(stream)
            var cases: [(label: String, bytes: Int, body: (Int) throws -> Void)] = []
            for rows in try intList(batch, "batch") {
                for h in try intList(hidden, "hidden") {
                    let es = dtype.byteSize, tensorBytes = rows * h * es
                    let sets = rotatingSets(bytes: 4 * tensorBytes, device: device)
                    func tensors() throws -> [Tensor] {
                        try (0..<sets).map { _ in try randomDeviceTensor(shape: [rows, h], dtype: dtype, device: device, rng: &rng) }
                    }
                    let x = try tensors(), r = try tensors(), out = try tensors()
                    let w = try randomDeviceTensor(shape: [h], dtype: dtype, device: device, rng: &rng)
                    let g = try Tensor.host((0..<h).map { _ in rng.normal() }, shape: [h], dtype: .f32).toDevice(device)
                    let b = try Tensor.host((0..<h).map { _ in rng.normal() }, shape: [h], dtype: .f32).toDevice(device)
                    let shape = "\(dtype.rawValue) [\(rows), \(h)]"
                    cases.append(try sameSizeCopyCase(moved: 2 * tensorBytes, device: device, stream: stream))
                    cases.append(try emptyKernelFloorCase(ctas: rows, bytes: 2 * tensorBytes, device: device, stream: stream))
                    cases.append(("rmsnorm \(shape)", 2 * tensorBytes + h * es, { i in
                        try rmsnorm(x[i % sets], weight: w, out: out[i % sets], backend: be)
                    }))
                    cases.append(("gemma_rmsnorm \(shape)", 2 * tensorBytes + h * es, { i in
                        try gemmaRMSNorm(x[i % sets], weight: w, out: out[i % sets], backend: be)
                    }))
                    // In place, as upstream: residual ← x + residual, x ← rmsnorm (values drift; timing only).
                    cases.append(("fused_add_rmsnorm (in place) \(shape)", 4 * tensorBytes + h * es, { i in
                        try fusedAddRMSNormInPlace(input: x[i % sets], residual: r[i % sets], weight: w, backend: be)
                    }))
                    cases.append(("layernorm (f32 gamma, beta) \(shape)", 2 * tensorBytes + 2 * h * 4, { i in
                        try layernorm(x[i % sets], gamma: g, beta: b, out: out[i % sets], backend: be)
                    }))
                }
            }
            try runOpBench(name: "norm", workload: "batch \(batch), hidden \(hidden), \(dtype.rawValue)", options: options, device: device,
                           stream: stream, copyTBps: copy.tbps, cases: cases)
        }
    }

    struct ActivationBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "activation",
            abstract: "silu/gelu/gelu_tanh_and_mul ([rows, 2d] → [rows, d]): GB/s (read + written) against the copy ceiling; issue 13's target is ≥ 80 % at batch 256, d 8192.")
        @Option(help: "Rows (comma-separated).") var batch = "256"
        @Option(help: "Output widths d (comma-separated; the input is 2·d).") var d = "8192"
        @OptionGroup var options: OpBenchOptions

        func run() throws {
            let dtype = try options.parsedDType()
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            var rng = SeededRNG(seed: 14)
            let be = Backend.cuda(stream)
            var cases: [(label: String, bytes: Int, body: (Int) throws -> Void)] = []
            for rows in try intList(batch, "batch") {
                for width in try intList(d, "d") {
                    let bytes = 3 * rows * width * dtype.byteSize
                    let sets = rotatingSets(bytes: bytes, device: device)
                    let x = try (0..<sets).map { _ in try randomDeviceTensor(shape: [rows, 2 * width], dtype: dtype, device: device, rng: &rng) }
                    let out = try (0..<sets).map { _ in try Tensor.empty(shape: [rows, width], dtype: dtype, device: device) }
                    cases.append(try sameSizeCopyCase(moved: bytes, device: device, stream: stream))
                    cases.append(try emptyKernelFloorCase(ctas: rows, bytes: bytes, device: device, stream: stream))
                    for act in GatedActivation.allCases {
                        cases.append(("\(act.rawValue)_and_mul \(dtype.rawValue) [\(rows), \(2 * width)] → [\(rows), \(width)]", bytes, { i in
                            try gatedActivationAndMul(x[i % sets], activation: act, out: out[i % sets], backend: be)
                        }))
                    }
                }
            }
            try runOpBench(name: "activation", workload: "batch \(batch), d \(d), \(dtype.rawValue)", options: options, device: device,
                           stream: stream, copyTBps: copy.tbps, cases: cases)
        }
    }

    struct RopeBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rope",
            abstract: "RoPE on q [nnz, Hq, D] and k [nnz, Hk, D] (rotate-half, interleaved, Llama 3.1, cos/sin cache; out of place and in place): GB/s (q and k read + written, positions included) against the copy ceiling. Each call uploads its positions (part of the op's cost).")
        @Option(help: "Rows (tokens; comma-separated).") var nnz = "256,8192"
        @Option(help: "Query heads.") var qoHeads = 32
        @Option(help: "Key heads.") var kvHeads = 8
        @Option(help: "Head dim.") var headDim = 128
        @OptionGroup var options: OpBenchOptions

        func run() throws {
            let dtype = try options.parsedDType()
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            var rng = SeededRNG(seed: 15)
            let be = Backend.cuda(stream)
            var cases: [(label: String, bytes: Int, body: (Int) throws -> Void)] = []
            let (hq, hk, dd) = (qoHeads, kvHeads, headDim)
            for n in try intList(nnz, "nnz") {
                let qkBytes = n * (hq + hk) * dd * dtype.byteSize
                let sets = rotatingSets(bytes: 2 * qkBytes, device: device)
                let q = try (0..<sets).map { _ in try randomDeviceTensor(shape: [n, hq, dd], dtype: dtype, device: device, rng: &rng) }
                let k = try (0..<sets).map { _ in try randomDeviceTensor(shape: [n, hk, dd], dtype: dtype, device: device, rng: &rng) }
                let qo = try (0..<sets).map { _ in try Tensor.empty(shape: [n, hq, dd], dtype: dtype, device: device) }
                let ko = try (0..<sets).map { _ in try Tensor.empty(shape: [n, hk, dd], dtype: dtype, device: device) }
                let pos = (0..<n).map { Int32($0 % 4096) }
                let cache = try Tensor.host((0..<(4096 * dd)).map { _ in rng.normal() }, shape: [4096, dd], dtype: .f32).toDevice(device)
                let shape = "\(dtype.rawValue) nnz \(n), \(hq)/\(hk) heads, D \(dd)"
                let bytes = 2 * qkBytes + 4 * n, freqBytes = 4 * dd / 2
                let variants: [(String, RopeOptions)] = [
                    ("rope", RopeOptions()), ("rope interleave", RopeOptions(interleave: true)),
                    ("llama31 rope", RopeOptions(theta: 5e5, scaling: .llama31Default)),
                ]
                for (label, opts) in variants {
                    cases.append(("\(label) \(shape)", bytes + freqBytes, { i in
                        try applyRopePosIds(q: q[i % sets], k: k[i % sets], posIds: pos, options: opts, out: (qo[i % sets], ko[i % sets]), backend: be)
                    }))
                }
                cases.append(("rope in place \(shape)", bytes + freqBytes, { i in
                    try applyRopePosIdsInPlace(q: q[i % sets], k: k[i % sets], posIds: pos, backend: be)
                }))
                // The cache reads nnz rows of D floats (cos | sin); counted once per row.
                cases.append(("rope cos_sin_cache in place \(shape)", bytes + 4 * n * dd, { i in
                    try applyRopeWithCosSinCacheInPlace(positions: pos, query: q[i % sets].reshaped([n, hq * dd]),
                                                        key: k[i % sets].reshaped([n, hk * dd]), headSize: dd, cosSinCache: cache, backend: be)
                }))
            }
            try runOpBench(name: "rope", workload: "nnz \(nnz), heads \(hq)/\(hk), head_dim \(dd), \(dtype.rawValue)", options: options,
                           device: device, stream: stream, copyTBps: copy.tbps, cases: cases)
        }
    }
}
