import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    /// The data issue 14's path-selection cost model is fitted to: batch decode timed on both
    /// paths (CUDA cores, tensor cores) over a grid of batch sizes, kv lengths and group sizes, with
    /// the choice the wrapper makes today beside them. One row per shape: both medians, the
    /// faster path, the automatic one, and what picking automatically costs against the faster.
    ///
    /// Each path is timed two ways: per call (CUDA events around one `run()`, host time included:
    /// the fields the model was first fitted to) and queued (`--calls` back-to-back runs behind a
    /// spin kernel, as `timeOp`; the K/V rotate over enough caches to exceed 4 × L2, so small
    /// shapes are read from DRAM, not L2). Beside them: `DecodePathModel`'s prediction of each path
    /// (per call) and its pick, the CUDA-core plan (work items, waves on its resident slots) and,
    /// where the wave-aware split changed that plan, the CUDA-core path without it.
    struct DecodePaths: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decode-paths",
            abstract: "Batch decode on both paths (CUDA cores, tensor cores) over a grid of batch × kv_len × group: median µs each, the faster, the automatic choice and its loss. The data for the path-selection cost model (issue 14).")

        @Option(help: "Batch sizes (comma-separated).") var batch = "1,4,16,64,256"
        @Option(name: .customLong("kv-len"), help: "KV lengths (comma-separated).") var kvLen = "512,4096,32768"
        @Option(help: "Query heads per KV head (comma-separated; 8 KV heads).") var group = "1,2,4,8,16"
        @Option(name: .customLong("head-dim")) var headDim = 128
        @Option(name: .customLong("page-size")) var pageSize = 16
        @Option(name: .customLong("max-cache-gib"), help: "Skip shapes whose K/V exceed this many GiB.") var maxCacheGiB = 8.0
        @Option(help: "Timed iterations per path.") var iterations = 30
        @Option(help: "Back-to-back calls per queued run (0: no queued timing).") var calls = 20
        @Option(help: "Queued runs (median).") var reps = 5
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
            let model = DecodePathModel(hardware: .init(smCount: device.properties.multiprocessorCount, copyTBps: copy.tbps))
            print("decode paths on \(device.properties.name): \(hkv) KV heads, D \(d), page \(ps), f16; copy ceiling \(fixed(copy.tbps, 3)) TB/s")
            print("times: per call (events around one run()) / queued (\(calls) back-to-back behind a spin, K/V rotated past L2); model: per call")
            var rng = SeededRNG(seed: 13)
            var rows: [JSON] = []
            for l in lens {
                for b in batches {
                    let table = PageTable.contiguous(seqLens: Array(repeating: l, count: b), pageSize: ps)
                    let pages = Int(table.indptr.last!)
                    let bytes = Double(b * l * hkv * d * 2 * 2)
                    guard bytes <= maxCacheGiB * Double(1 << 30) else { continue }
                    // Caches to rotate through in the queued timing (together > 4 × L2; the first is the per-call one).
                    let sets = calls > 0 ? rotatingSets(bytes: Int(bytes), device: device) : 1
                    let caches = try (0..<sets).map { _ in
                        try PagedKVCache(combined: try randomDeviceTensor(shape: [pages, 2, ps, hkv, d], device: device, rng: &rng))
                    }
                    let cache = caches[0]
                    for g in groups {
                        let hq = hkv * g
                        let q = try Tensor.host((0..<(b * hq * d)).map { _ in rng.normal() }, shape: [b, hq, d], dtype: .f16).toDevice(device)
                        let out = try Tensor.empty(shape: q.shape, dtype: .f16, device: device)
                        // Per call and queued µs of one configured wrapper.
                        func time(_ w: BatchDecodeWithPagedKVCache) throws -> (perCall: Double, queued: Double?, hostBound: Bool) {
                            try w.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: pages)
                            let perCall = 1e3 * median(try timeOnStream(stream, warmup: 5, iterations: iterations) { _ in
                                _ = try w.run(q: q, cache: cache, out: out)
                            })
                            guard calls > 0 else { return (perCall, nil, false) }
                            let t = try timeOp(device: device, stream: stream, iterations: 3, calls: calls, reps: reps) { i in
                                _ = try w.run(q: q, cache: caches[i % sets], out: out)
                            }
                            return (perCall, t.queued, t.hostBound)
                        }
                        let cudaCores = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: false)
                        let cc = try time(cudaCores)
                        let ccPlan = cudaCores.plan!, perSM = cudaCores.cudaCoreCTAsPerSM ?? 1
                        let tc = try time(BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: true))
                        // The CUDA-core path as planned before the wave-aware split, where that split changed the plan.
                        var unsplit: (perCall: Double, queued: Double?, hostBound: Bool)? = nil
                        var unsplitPlan: BatchDecodePlan? = nil
                        do {
                            let w = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: false)
                            w.waveAwareSplit = false
                            try w.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: pages)
                            if w.plan! != ccPlan {
                                unsplitPlan = w.plan
                                unsplit = try time(w)
                            }
                        }
                        let auto = BatchDecodeWithPagedKVCache.prefersTensorCores(
                            table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, kvDType: .f16, graphMode: false,
                            hardware: DecodePathModel.Hardware(properties: device.properties))
                        let shape = DecodePathModel.Shape(table: table, numKVHeads: hkv, groupSize: g, headDim: d)
                        let predCC = model.cudaCores(shape, plan: ccPlan, ctasPerSM: perSM)
                        let predTC = model.tensorCores(shape, plan: model.tensorCorePlan(shape))
                        let modelTC = predTC < predCC
                        let slots = perSM * device.properties.multiprocessorCount
                        let best = min(cc.perCall, tc.perCall), autoUs = auto ? tc.perCall : cc.perCall
                        let qd = { (v: Double?) in v.map { " / " + fixed($0, 1) } ?? "" }
                        var line = "B=\(pad(String(b), 4)) kv=\(pad(String(l), 6)) group \(pad(String(g), 2)): CUDA cores \(fixed(cc.perCall, 1))\(qd(cc.queued)) µs"
                        line += " (model \(fixed(predCC, 1)); \(ccPlan.workItems) items, \(fixed(ccPlan.waves(slots: slots), 2)) waves)"
                        if let unsplit, let unsplitPlan {
                            line += " [no wave split: \(fixed(unsplit.perCall, 1))\(qd(unsplit.queued)) µs, \(fixed(unsplitPlan.waves(slots: slots), 2)) waves]"
                        }
                        line += ", tensor cores \(fixed(tc.perCall, 1))\(qd(tc.queued)) µs (model \(fixed(predTC, 1)))"
                        line += "; faster: \(cc.perCall <= tc.perCall ? "CUDA cores" : "tensor cores"); auto: \(auto ? "tensor cores" : "CUDA cores")"
                        line += autoUs > best ? " (+\(fixed(100 * (autoUs / best - 1), 1)) %)" : ""
                        line += "; bound \(fixed(bytes / (copy.tbps * 1e12) * 1e6, 1)) µs\(cc.hostBound || tc.hostBound ? " [host-bound]" : "")"
                        print(line)
                        var fields: [(String, JSON)] = [
                            ("batch", .int(b)), ("kv_len", .int(l)), ("group", .int(g)), ("num_kv_heads", .int(hkv)),
                            ("cuda_cores_us", .number(cc.perCall)), ("tensor_cores_us", .number(tc.perCall)),
                            ("auto", .string(auto ? "tensor cores" : "CUDA cores")), ("bound_us", .number(bytes / (copy.tbps * 1e12) * 1e6)),
                            ("model_cuda_cores_us", .number(predCC)), ("model_tensor_cores_us", .number(predTC)),
                            ("model_pick", .string(modelTC ? "tensor cores" : "CUDA cores")),
                            ("cuda_cores_work_items", .int(ccPlan.workItems)), ("cuda_cores_ctas_per_sm", .int(perSM)),
                            ("cuda_cores_waves", .number(ccPlan.waves(slots: slots))),
                        ]
                        if let v = cc.queued { fields.append(("cuda_cores_queued_us", .number(v))) }
                        if let v = tc.queued { fields.append(("tensor_cores_queued_us", .number(v))) }
                        if cc.hostBound || tc.hostBound { fields.append(("queued_host_bound", .bool(true))) }
                        if let unsplit, let unsplitPlan {
                            fields.append(("cuda_cores_no_wave_split_us", .number(unsplit.perCall)))
                            if let v = unsplit.queued { fields.append(("cuda_cores_no_wave_split_queued_us", .number(v))) }
                            fields.append(("cuda_cores_no_wave_split_waves", .number(unsplitPlan.waves(slots: slots))))
                            fields.append(("model_cuda_cores_no_wave_split_us", .number(model.cudaCores(shape, plan: unsplitPlan, ctasPerSM: perSM))))
                        }
                        rows.append(.object(fields))
                    }
                }
            }
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("decode-paths")), ("copy_tbps", .number(copy.tbps)), ("head_dim", .int(d)),
                    ("page_size", .int(ps)), ("queued_calls", .int(calls)),
                    ("model", .string("DecodePathModel.Constants.h200 (scripts/fit-decode-path-model.py)")), ("results", .array(rows)),
                ]).write(to: json)
            }
        }
    }
}
