import ArgumentParser
import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    /// The data issue 14's path-selection cost model is fitted to: batch decode timed on both
    /// paths (CUDA cores, tensor cores) over a grid of batch sizes, kv lengths and group sizes, with
    /// the choice the wrapper makes today beside them. One row per shape: both medians, the
    /// faster path, the automatic one, and what picking automatically costs against the faster.
    struct DecodePaths: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decode-paths",
            abstract: "Batch decode on both paths (CUDA cores, tensor cores) over a grid of batch × kv_len × group: median µs each, the faster, the automatic choice and its loss. The data for the path-selection cost model (issue 14).")

        @Option(help: "Batch sizes (comma-separated).") var batch = "1,4,16,64,256"
        @Option(name: .customLong("kv-len"), help: "KV lengths (comma-separated).") var kvLen = "512,4096,32768"
        @Option(help: "Query heads per KV head (comma-separated; 8 KV heads).") var group = "1,4,8"
        @Option(name: .customLong("head-dim")) var headDim = 128
        @Option(name: .customLong("page-size")) var pageSize = 16
        @Option(name: .customLong("max-cache-gib"), help: "Skip shapes whose K/V exceed this many GiB.") var maxCacheGiB = 8.0
        @Option(help: "Timed iterations per path.") var iterations = 30
        @Option(help: "Write results as JSON to this file.") var json: String?

        func ints(_ s: String, _ name: String) throws -> [Int] {
            try s.split(separator: ",").map { t -> Int in
                guard let v = Int(t), v >= 1 else { throw ValidationError("--\(name): positive integers, got \(t)") }
                return v
            }
        }

        func run() throws {
            let (batches, lens, groups) = (try ints(batch, "batch"), try ints(kvLen, "kv-len"), try ints(group, "group"))
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            let hkv = 8, d = headDim, ps = pageSize
            print("decode paths on \(device.properties.name): \(hkv) KV heads, D \(d), page \(ps), f16; copy ceiling \(fixed(copy.tbps, 3)) TB/s")
            var rng = SeededRNG(seed: 13)
            var rows: [JSON] = []
            for l in lens {
                for b in batches {
                    let table = PageTable.contiguous(seqLens: Array(repeating: l, count: b), pageSize: ps)
                    let pages = Int(table.indptr.last!)
                    let bytes = Double(b * l * hkv * d * 2 * 2)
                    guard bytes <= maxCacheGiB * Double(1 << 30) else { continue }
                    let cache = try PagedKVCache(combined: try randomDeviceTensor(shape: [pages, 2, ps, hkv, d], device: device, rng: &rng))
                    for g in groups {
                        let hq = hkv * g
                        let q = try Tensor.host((0..<(b * hq * d)).map { _ in rng.normal() }, shape: [b, hq, d], dtype: .f16).toDevice(device)
                        let out = try Tensor.empty(shape: q.shape, dtype: .f16, device: device)
                        var us: [Bool: Double] = [:]
                        var auto = false
                        for tc in [false, true] {
                            let w = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: tc)
                            try w.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: pages)
                            us[tc] = 1e3 * median(try timeOnStream(stream, warmup: 5, iterations: iterations) { _ in
                                _ = try w.run(q: q, cache: cache, out: out)
                            })
                        }
                        auto = BatchDecodeWithPagedKVCache.prefersTensorCores(groupSize: g, graphMode: false)
                        let cc = us[false]!, tcu = us[true]!
                        let best = min(cc, tcu), autoUs = auto ? tcu : cc
                        print("B=\(pad(String(b), 4)) kv=\(pad(String(l), 6)) group \(pad(String(g), 2)): CUDA cores \(fixed(cc, 1)) µs, tensor cores \(fixed(tcu, 1)) µs; faster: \(cc <= tcu ? "CUDA cores" : "tensor cores"); auto: \(auto ? "tensor cores" : "CUDA cores")\(autoUs > best ? " (+\(fixed(100 * (autoUs / best - 1), 1)) %)" : ""); bound \(fixed(bytes / (copy.tbps * 1e12) * 1e6, 1)) µs")
                        rows.append(.object([
                            ("batch", .int(b)), ("kv_len", .int(l)), ("group", .int(g)), ("num_kv_heads", .int(hkv)),
                            ("cuda_cores_us", .number(cc)), ("tensor_cores_us", .number(tcu)),
                            ("auto", .string(auto ? "tensor cores" : "CUDA cores")), ("bound_us", .number(bytes / (copy.tbps * 1e12) * 1e6)),
                        ]))
                    }
                }
            }
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("decode-paths")), ("copy_tbps", .number(copy.tbps)), ("head_dim", .int(d)),
                    ("page_size", .int(ps)), ("results", .array(rows)),
                ]).write(to: json)
            }
        }
    }
}
