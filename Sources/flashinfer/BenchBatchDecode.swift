import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    struct BatchDecode: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "batch-decode",
            abstract: "Batch decode over a paged cache: workloads D1–D5 of bench/WORKLOADS.md (or one custom shape): median µs, effective TB/s over the K+V bytes (FP8: one byte each), fraction of the copy ceiling measured in the same run, and plan() time. With --kv-dtype e4m3|e5m2 the default run is D1 and D5 (D1 with that FP8 cache), side by side.")

        @Option(help: "Workloads to run: comma-separated from D1,D2,D3,D4,D5 (D5 = D1 with an FP8 cache), or 'custom' for the options below. Default: D1,D2,D3,D4; with an FP8 --kv-dtype, D1,D5.") var workloads: String?
        @Option(name: .customLong("kv-dtype"), help: "Cache dtype of D5 and 'custom': f16 (default), e4m3 or e5m2 (FP8, k_scale = v_scale = 1).") var kvDType = "f16"
        @Option var batch = 64
        @Option(name: .customLong("kv-len")) var kvLen = 4096
        @Option(name: .customLong("num-qo-heads")) var numQOHeads = 32
        @Option(name: .customLong("num-kv-heads")) var numKVHeads = 8
        @Option(name: .customLong("head-dim")) var headDim = 128
        @Option(name: .customLong("page-size")) var pageSize = 16
        @Option(help: "Timed iterations.") var iterations = 100
        @Flag(name: .customLong("tensor-cores"), help: "Force the tensor-core path (useTensorCores: true).") var tensorCores = false
        @Flag(name: .customLong("cuda-cores"), help: "Force the CUDA-core decode kernel (useTensorCores: false). Default: the wrapper's automatic choice.") var cudaCores = false
        @Option(help: "CUDA-core kernel: cp.async pipeline stages (measurement; default the library's).") var stages: Int?
        @Option(name: .customLong("keys-per-slot"), help: "CUDA-core kernel: keys per slot per tile, 2, 4 or 8 (measurement; default the library's).") var keysPerSlot: Int?
        @Option(help: "Write results as JSON to this file.") var json: String?

        struct Shape { var id: String, batch: Int, kvLen: Int, hq: Int, hkv: Int, kvDType: DType = .f16 }

        func run() throws {
            guard !(tensorCores && cudaCores) else { throw ValidationError("--tensor-cores and --cuda-cores exclude each other") }
            let force: Bool? = tensorCores ? true : cudaCores ? false : nil
            guard let cacheDType = DType(rawValue: kvDType), [DType.f16, .e4m3, .e5m2].contains(cacheDType) else {
                throw ValidationError("--kv-dtype must be f16, e4m3 or e5m2 (got \(kvDType))")
            }
            let d5DType = cacheDType.isFP8 ? cacheDType : DType.e4m3
            let workloads = self.workloads ?? (cacheDType.isFP8 ? "D1,D5" : "D1,D2,D3,D4")
            let device = try Device.open()
            let stream = try device.makeStream()
            let copy = try measureCopyBandwidth(device: device, stream: stream)
            print("copy ceiling \(fixed(copy.tbps, 3)) TB/s on \(device.properties.name)")
            var shapes: [Shape] = []
            for w in workloads.split(separator: ",") {
                switch w {
                case "D1": shapes.append(Shape(id: "D1", batch: 64, kvLen: 4096, hq: 32, hkv: 8))
                case "D2": shapes.append(Shape(id: "D2", batch: 256, kvLen: 1024, hq: 32, hkv: 8))
                case "D3": shapes.append(Shape(id: "D3", batch: 16, kvLen: 32768, hq: 32, hkv: 8))
                case "D4": shapes.append(Shape(id: "D4", batch: 64, kvLen: 4096, hq: 32, hkv: 32))
                case "D5": shapes.append(Shape(id: "D5", batch: 64, kvLen: 4096, hq: 32, hkv: 8, kvDType: d5DType))
                case "custom": shapes.append(Shape(id: "custom", batch: batch, kvLen: kvLen, hq: numQOHeads, hkv: numKVHeads, kvDType: cacheDType))
                default: throw ValidationError("unknown workload \(w)")
                }
            }
            var rows: [JSON] = []
            var rng = SeededRNG(seed: 7)
            for s in shapes {
                let d = headDim, ps = pageSize
                let table = PageTable.contiguous(seqLens: Array(repeating: s.kvLen, count: s.batch), pageSize: ps)
                let pages = Int(table.indptr.last!)
                // K+V of every request: > L2 for all of D1–D4 (≥ 1 GiB), so no buffer rotation is needed.
                let kv = try randomDeviceTensor(shape: [pages, 2, ps, s.hkv, d], dtype: s.kvDType, device: device, rng: &rng)
                let cache = try PagedKVCache(combined: kv)
                let q = try Tensor.host((0..<(s.batch * s.hq * d)).map { _ in rng.normal() }, shape: [s.batch, s.hq, d], dtype: .f16).toDevice(device)
                let out = try Tensor.empty(shape: q.shape, dtype: .f16, device: device)
                let w = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: force)
                if stages != nil || keysPerSlot != nil {
                    w.decodeKernelTuning = (stages ?? DecodeSpec.defaultStages, keysPerSlot ?? DecodeSpec.defaultKeysPerSlot)
                }
                // plan() time: median of 20 after the first (which also loads the kernel).
                try w.plan(table: table, numQOHeads: s.hq, numKVHeads: s.hkv, headDim: d, dtype: .f16, kvDType: s.kvDType, numPagesInCache: pages)
                var planTimes: [Double] = []
                for _ in 0..<20 {
                    let t0 = nowSeconds()
                    try w.plan(table: table, numQOHeads: s.hq, numKVHeads: s.hkv, headDim: d, dtype: .f16, kvDType: s.kvDType,
                               numPagesInCache: pages)
                    planTimes.append((nowSeconds() - t0) * 1e6)
                }
                let ms = median(try timeOnStream(stream, warmup: 10, iterations: iterations) { _ in
                    _ = try w.run(q: q, cache: cache, out: out)
                })
                let kvBytes = Double(s.batch * s.kvLen * s.hkv * d * 2 * s.kvDType.byteSize)
                let tbps = kvBytes / (ms * 1e-3) / 1e12
                let p = w.plan!
                print("\(pad(s.id, 7)) B=\(s.batch) kv=\(s.kvLen) \(s.hq)/\(s.hkv) \(s.kvDType.rawValue): \(fixed(ms * 1e3, 1)) µs, \(fixed(tbps, 3)) TB/s (\(fixed(100 * tbps / copy.tbps, 1))% of copy), \(w.usesTensorCores ? "tensor cores (\(w.tensorCoreTile.map { "\($0)" } ?? "?"))" : "CUDA cores, \(p.workItems) work items, split \(p.splitKV)"), plan() \(fixed(median(planTimes), 1)) µs")
                rows.append(.object([
                    ("workload", .string(s.id)), ("batch", .int(s.batch)), ("kv_len", .int(s.kvLen)), ("num_qo_heads", .int(s.hq)),
                    ("num_kv_heads", .int(s.hkv)), ("head_dim", .int(d)), ("page_size", .int(ps)), ("kv_dtype", .string(s.kvDType.rawValue)),
                    ("median_us", .number(ms * 1e3)),
                    ("tbps", .number(tbps)), ("fraction_of_copy", .number(tbps / copy.tbps)), ("work_items", .int(p.workItems)),
                    ("split_kv", .bool(p.splitKV)), ("stages", .int(stages ?? DecodeSpec.defaultStages)),
                    ("keys_per_slot", .int(keysPerSlot ?? DecodeSpec.defaultKeysPerSlot)), ("path", .string(w.usesTensorCores ? "tensor cores" : "CUDA cores")),
                    ("tile", .string(w.tensorCoreTile.map { "\($0)" } ?? "")), ("plan_us_median", .number(median(planTimes))),
                ]))
            }
            // plan() for B = 256 on the CPU alone (the scheduler, no upload).
            let lens = (0..<256).map { 1 + ($0 * 7919) % 8192 }
            var t: [Double] = []
            for _ in 0..<50 {
                let t0 = nowSeconds()
                _ = BatchDecodePlan.make(numPages: lens.map { ($0 + 15) / 16 }, pageSize: 16, numKVHeads: 8, maxGridSize: 2 * device.properties.multiprocessorCount)
                t.append((nowSeconds() - t0) * 1e6)
            }
            print("scheduler alone, B=256 mixed lengths: \(fixed(median(t), 1)) µs")
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("batch-decode")), ("copy_tbps", .number(copy.tbps)), ("results", .array(rows)),
                    ("scheduler_b256_us", .number(median(t))),
                ]).write(to: json)
            }
        }
    }
}
