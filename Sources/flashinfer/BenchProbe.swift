import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA

/// Summary of a per-CTA timeline (ns, relative to the earliest start): start spread and the
/// end distribution; `smBusy` is each SM's busy span.
func timelineSummary(_ t: [UInt64], count: Int) -> String {
    guard count > 0 else { return "" }
    let starts = (0..<count).map { t[3 * $0] }, ends = (0..<count).map { t[3 * $0 + 1] }
    let t0 = starts.min()!
    let s = starts.map { Double($0 - t0) / 1e3 }.sorted(), e = ends.map { Double($0 - t0) / 1e3 }.sorted()
    func pct(_ xs: [Double], _ p: Double) -> Double { xs[min(xs.count - 1, Int(p * Double(xs.count - 1) + 0.5))] }
    let sms = Set((0..<count).map { t[3 * $0 + 2] }).count
    return "timeline (µs from the first CTA start; \(count) CTAs on \(sms) SMs): start max \(fixed(s.last!, 1)); end min \(fixed(e.first!, 1)) p10 \(fixed(pct(e, 0.1), 1)) p50 \(fixed(pct(e, 0.5), 1)) p90 \(fixed(pct(e, 0.9), 1)) max \(fixed(e.last!, 1))"
}

extension Bench {
    struct ReadProbe: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "read-probe",
            abstract: "Streaming-read probe: one kernel reads N bytes once (static equal ranges or dynamically claimed 32 KiB units), per-call median µs, TB/s and a per-CTA timeline; plus the event-timed empty kernel.")
        @Option(help: "Bytes read per call.") var bytes = 128 << 20
        @Option(help: "Grid sizes (comma-separated).") var grids = "132,264,396,528"
        @Option(help: "Timed iterations.") var iterations = 200
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            let units = bytes / 32768
            let copies = max(2, (4 * device.properties.l2CacheSize + bytes - 1) / bytes)
            let bufs = try (0..<copies).map { _ in try device.allocate(byteCount: units * 32768) }
            for (i, b) in bufs.enumerated() { try b.fill(byte: UInt8(17 + i), stream: stream) }
            let counter = try device.allocate(byteCount: 4)
            try counter.fill(byte: 0, stream: stream)
            let sink = try device.allocate(byteCount: 4)
            let timeline = try device.allocate(byteCount: 3 * 8 * 4096)
            let jit = try JIT.shared(for: device)
            let f = try jit.kernel(ReadProbeSpec()).function
            let empty = try jit.kernel(EmptyProbeSpec()).function
            print("read-probe on \(device.properties.name): \(formatBytes(units * 32768)) per call, \(copies) rotating buffers; copy ceiling \(fixed(copy.tbps, 3)) TB/s")
            let emptyMs = median(try timeOnStream(stream, warmup: 10, iterations: iterations) { _ in
                try empty.launch(grid: (1, 1, 1), block: (32, 1, 1), stream: stream, arguments: KernelArguments())
            })
            print("empty kernel, event-timed: \(fixed(emptyMs * 1e3, 2)) µs")
            var base: Int32 = 0
            var rows: [JSON] = []
            for g in grids.split(separator: ",").compactMap({ Int($0.trimmingCharacters()) }) where g > 0 && g <= 4096 && g <= units {
                for dynamic in [0, 1] {
                    func args(_ i: Int, _ tl: Bool) -> KernelArguments {
                        var a = KernelArguments()
                        a.append(bufs[i % copies].address)
                        a.append(Int32(units)); a.append(Int32(dynamic)); a.append(counter.address); a.append(base)
                        a.append(tl ? timeline.address : CUdeviceptr(0)); a.append(sink.address)
                        a.pad(toAlignment: 8)
                        return a
                    }
                    // Each dynamic launch advances the counter by exactly `units` (every CTA's
                    // claims, its last failing one included).
                    func launch(_ i: Int, _ tl: Bool = false) throws {
                        try f.launch(grid: (g, 1, 1), block: (256, 1, 1), stream: stream, arguments: args(i, tl))
                        if dynamic != 0 { base &+= Int32(units - g) + Int32(g) }
                    }
                    let times = try timeOnStream(stream, warmup: 10, iterations: iterations) { i in try launch(i) }
                    try launch(0, true)
                    try stream.synchronize()
                    let tl = try timeline.copyToHost(UInt64.self, count: 3 * g)
                    let ms = median(times)
                    let tbps = Double(units * 32768) / (ms * 1e-3) / 1e12
                    print("grid \(pad(String(g), 5)) \(dynamic != 0 ? "dynamic" : "static ")  median \(fixed(ms * 1e3, 1)) µs  \(fixed(tbps, 3)) TB/s (\(fixed(100 * tbps / copy.tbps, 1))% of copy)")
                    print("   " + timelineSummary(tl, count: g))
                    rows.append(.object([("grid", .int(g)), ("dynamic", .bool(dynamic != 0)), ("median_us", .number(ms * 1e3)),
                                         ("tbps", .number(tbps))]))
                }
            }
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("read-probe")), ("bytes", .int(units * 32768)), ("copy_tbps", .number(copy.tbps)),
                    ("empty_kernel_us", .number(emptyMs * 1e3)), ("rows", .array(rows)),
                ]).write(to: json)
            }
        }
    }
}
