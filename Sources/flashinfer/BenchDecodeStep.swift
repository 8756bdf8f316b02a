import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    /// Issue 14's per-call cost: one decode step of a whole model — the plan made once, then `layers`
    /// runs, each over its own layer's paged cache (distinct memory, as in a model: no layer reads
    /// another's K/V from L2) — timed plain (the runs enqueued back to back) and as one CUDA graph
    /// replay, against the bandwidth bound of the K/V bytes.
    struct DecodeStep: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decode-step",
            abstract: "A model's decode step: plan once, run one batch decode per layer (each layer its own paged cache), plain and as a CUDA graph; µs per layer against the K/V bytes at the copy ceiling.")

        @Option(help: "Batch sizes (comma-separated).") var batch = "1,16,64"
        @Option(name: .customLong("kv-len")) var kvLen = 4096
        @Option var layers = 32
        @Option(name: .customLong("num-qo-heads")) var numQOHeads = 32
        @Option(name: .customLong("num-kv-heads")) var numKVHeads = 8
        @Option(name: .customLong("head-dim")) var headDim = 128
        @Option(name: .customLong("page-size")) var pageSize = 16
        @Flag(name: .customLong("tensor-cores"), help: "Force the tensor-core path.") var tensorCores = false
        @Flag(name: .customLong("cuda-cores"), help: "Force the CUDA-core kernel. Default: the wrapper's automatic choice.") var cudaCores = false
        @Option(help: "Timed steps (median).") var iterations = 20
        @Flag(name: .customLong("capture-after-runs"), help: "Capture the graph after the plain timing runs instead of right after plan().")
        var captureAfterRuns = false
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            guard !(tensorCores && cudaCores) else { throw ValidationError("--tensor-cores and --cuda-cores exclude each other") }
            let batches = try batch.split(separator: ",").map { s -> Int in
                guard let b = Int(s), b >= 1 else { throw ValidationError("--batch: positive integers, got \(s)") }
                return b
            }
            guard layers >= 1 else { throw ValidationError("--layers must be at least 1") }
            let force: Bool? = tensorCores ? true : cudaCores ? false : nil
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            print("decode step on \(device.properties.name): \(layers) layers, kv_len \(kvLen), \(numQOHeads)/\(numKVHeads) heads, D \(headDim), page \(pageSize); copy ceiling \(fixed(copy.tbps, 3)) TB/s")
            // What the driver alone costs the host, for reading "host µs per run()" (a run is one
            // or two launches: the decode or prefill kernel, and the merge when split).
            do {
                let spin = try JIT.shared(for: device).kernel(SpinProbeSpec()).function
                var a = KernelArguments()
                a.append(UInt64(0))
                func hostUs(_ n: Int, _ body: () throws -> Void) throws -> Double {
                    var ts: [Double] = []
                    for _ in 0..<5 {
                        try stream.synchronize()
                        let t0 = nowSeconds()
                        for _ in 0..<n { try body() }
                        ts.append((nowSeconds() - t0) * 1e6 / Double(n))
                    }
                    try stream.synchronize()
                    return median(ts)
                }
                let plain = try hostUs(200) { try spin.launch(grid: (1, 1, 1), block: (32, 1, 1), stream: stream, arguments: a) }
                let pdl = try hostUs(200) {
                    try spin.launch(grid: (1, 1, 1), block: (32, 1, 1), stream: stream, arguments: a, programmaticDependency: true)
                }
                let capturing = try hostUs(1000) { _ = stream.isCapturing }
                print("host µs per call: empty kernel launch \(fixed(plain, 2)) (cuLaunchKernel), \(fixed(pdl, 2)) (cuLaunchKernelEx + PDL); cuStreamIsCapturing \(fixed(capturing, 2))")
            }
            var rng = SeededRNG(seed: 11)
            var rows: [JSON] = []
            for b in batches {
                let table = PageTable.contiguous(seqLens: Array(repeating: kvLen, count: b), pageSize: pageSize)
                let pages = Int(table.indptr.last!)
                let caches = try (0..<layers).map { _ in
                    try PagedKVCache(combined: try randomDeviceTensor(shape: [pages, 2, pageSize, numKVHeads, headDim], dtype: .f16,
                                                                     device: device, rng: &rng))
                }
                let q = try Tensor.host((0..<(b * numQOHeads * headDim)).map { _ in rng.normal() }, shape: [b, numQOHeads, headDim],
                                        dtype: .f16).toDevice(device)
                let out = try Tensor.empty(shape: q.shape, dtype: .f16, device: device)
                let w = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: force)
                try w.plan(table: table, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, dtype: .f16, numPagesInCache: pages)
                func step() throws {
                    for c in caches { _ = try w.run(q: q, cache: c, out: out) }
                }
                // The graph: captured right after plan(), or after the plain runs with
                // --capture-after-runs (both replay the same; the graph keeps the caches alive).
                var graph: Graph?
                var graphNote = ""
                func capture() {
                    do { graph = try Graph.capture(on: stream) { try step() } } catch { graphNote = " (graph capture failed: \(error))" }
                }
                if !captureAfterRuns { capture() }
                let plainMs = median(try timeOnStream(stream, warmup: 2, iterations: iterations) { _ in try step() })
                // Host time to enqueue one step (no synchronisation inside): µs per run() from Swift.
                var hostTimes: [Double] = []
                for _ in 0..<iterations {
                    try stream.synchronize()
                    let t0 = nowSeconds()
                    try step()
                    hostTimes.append((nowSeconds() - t0) * 1e6 / Double(layers))
                }
                try stream.synchronize()
                let hostUs = median(hostTimes)
                if captureAfterRuns { capture() }
                var graphMs: Double?
                if let g = graph {
                    do {
                        graphMs = median(try timeOnStream(stream, warmup: 2, iterations: iterations) { _ in try g.launch(on: stream) })
                    } catch {
                        graphNote = " (graph replay failed: \(error))"
                    }
                }
                let bytesPerLayer = Double(b * kvLen * numKVHeads * headDim * 2 * 2)
                let boundUs = bytesPerLayer / (copy.tbps * 1e12) * 1e6
                let plainUs = plainMs * 1e3 / Double(layers)
                let graphUs = graphMs.map { $0 * 1e3 / Double(layers) }
                let path = w.usesTensorCores ? "tensor cores" : "CUDA cores"
                print("B=\(pad(String(b), 4)) \(path): host \(fixed(hostUs, 1)) µs per run(); per layer plain \(fixed(plainUs, 1)) µs, graph \(graphUs.map { fixed($0, 1) } ?? "—") µs; bound \(fixed(boundUs, 1)) µs (K/V \(formatBytes(Int(bytesPerLayer))) at the copy ceiling): plain \(fixed(plainUs / boundUs, 2))×, graph \(graphUs.map { fixed($0 / boundUs, 2) } ?? "—")×\(graphNote)")
                var row: [(String, JSON)] = [
                    ("batch", .int(b)), ("kv_len", .int(kvLen)), ("layers", .int(layers)), ("path", .string(path)),
                    ("plain_us_per_layer", .number(plainUs)), ("host_us_per_run", .number(hostUs)), ("bound_us_per_layer", .number(boundUs)),
                ]
                if let graphUs { row.append(("graph_us_per_layer", .number(graphUs))) }
                rows.append(.object(row))
            }
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("decode-step")), ("copy_tbps", .number(copy.tbps)), ("num_qo_heads", .int(numQOHeads)),
                    ("num_kv_heads", .int(numKVHeads)), ("head_dim", .int(headDim)), ("page_size", .int(pageSize)), ("results", .array(rows)),
                ]).write(to: json)
            }
        }
    }
}
