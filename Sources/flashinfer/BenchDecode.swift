import ArgumentParser
@_spi(Bench) import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    struct SingleDecode: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "single-decode",
            abstract: "Single-request decode (defaults: workload D6 of bench/WORKLOADS.md, kv_len 32768, 32/8 heads, head_dim 128, f16): median µs, effective TB/s over the K+V bytes, and the fraction of the copy ceiling measured in the same run.")

        @Option(name: .customLong("kv-len")) var kvLen = 32768
        @Option(name: .customLong("num-qo-heads")) var numQOHeads = 32
        @Option(name: .customLong("num-kv-heads")) var numKVHeads = 8
        @Option(name: .customLong("head-dim")) var headDim = 128
        @Option(help: "f16 or bf16.") var dtype = "f16"
        @Option(help: "NHD or HND.") var layout = "NHD"
        @Option(help: "Timed iterations.") var iterations = 200
        @Option(help: "Untimed warm-up iterations.") var warmup = 20
        @Option(help: "Force the number of split-KV chunks (default: the planner's choice from the SM count).") var split: Int?
        @Option(help: "cp.async pipeline stages of the decode kernel (default: the library's).") var stages = DecodeSpec.defaultStages
        @Option(name: .customLong("keys-per-slot"), help: "Keys per slot per tile of the decode kernel (2, 4 or 8; default: the library's).") var keysPerSlot = DecodeSpec.defaultKeysPerSlot
        @Option(name: .customLong("sweep-keys"), help: "Also time these keys-per-slot values (comma-separated).") var sweepKeys: String?
        @Option(name: .customLong("sweep-splits"), help: "Also time these chunk counts (comma-separated, 0 = the planner's).") var sweepSplits: String?
        @Option(name: .customLong("sweep-stages"), help: "Also time these pipeline depths (comma-separated).") var sweepStages: String?
        @Flag(help: "Also launch the main configuration's timestamped variant once and print its per-CTA timeline (entry, exit, SM) and the merge's.") var timeline = false
        @Option(help: "Write results as JSON to this file.") var json: String?

        struct Measured {
            var launch: CUDADecodeLaunch
            var medianMs: Double
            var batchMeanMs: Double
            var decodeOnlyMs: Double
            var attributes: FunctionAttributes
        }

        func run() throws {
            guard let dt = DType(name: dtype), dt == .f16 || dt == .bf16 else { throw ValidationError("--dtype must be f16 or bf16") }
            guard let lay = KVLayout(rawValue: layout.uppercased()) else { throw ValidationError("--layout must be NHD or HND") }
            let device = try Device.open()
            let stream = try device.makeStream()
            let (hq, hkv, d) = (numQOHeads, numKVHeads, headDim)
            let copy = try measureCopyBandwidth(device: device, stream: stream)

            // Rotating K/V copies so that no call finds its inputs in L2: together > 4× L2.
            let kvShape = lay == .nhd ? [kvLen, hkv, d] : [hkv, kvLen, d]
            let elems = kvLen * hkv * d
            let bytesPerCall = 2 * elems * dt.byteSize  // K + V read once
            let l2 = device.properties.l2CacheSize
            let copies = max(2, (4 * l2 + bytesPerCall - 1) / max(bytesPerCall, 1))
            var rng = SeededRNG(seed: 2026)
            // Random normal data (never zeros): one random block, tiled with a different phase per tensor.
            let blockCount = min(max(elems, 1), 1 << 22)
            let block = dt.encode((0..<blockCount).map { _ in rng.normal() })
            func tiled(phase: Int) -> [UInt8] {
                var out = [UInt8]()
                out.reserveCapacity(elems * dt.byteSize)
                var i = (phase * 4099 % blockCount) * dt.byteSize
                while out.count < elems * dt.byteSize {
                    let n = min(block.count - i, elems * dt.byteSize - out.count)
                    out += block[i..<(i + n)]
                    i = 0
                }
                return out
            }
            var ks: [Tensor] = [], vs: [Tensor] = []
            for c in 0..<copies {
                for (phase, list) in [(2 * c, 0), (2 * c + 1, 1)] {
                    let buf = try device.allocate(byteCount: elems * dt.byteSize)
                    if elems > 0 { try buf.copyFromHostBlocking(tiled(phase: phase)) }
                    let t = Tensor(storage: .device(buf, byteOffset: 0), shape: kvShape, dtype: dt)
                    if list == 0 { ks.append(t) } else { vs.append(t) }
                }
            }
            let q = try Tensor.host((0..<(hq * d)).map { _ in rng.normal() }, shape: [hq, d], dtype: dt).toDevice(device)
            let out = try Tensor.empty(shape: [hq, d], dtype: dt, device: device)
            let options = AttentionOptions(layout: lay)

            func measure(split: Int?, stages: Int, keys: Int, iterations: Int) throws -> Measured {
                let launch = try CUDADecodeLaunch(q: q, k: ks[0], v: vs[0], options: options, device: device,
                                                  numChunks: split, stages: stages, keysPerSlot: keys)
                let ws = try launch.makeWorkspace(stream: stream)
                let prepared = try (0..<copies).map { i in
                    try launch.prepare(q: q, k: ks[i], v: vs[i], out: out, lse: nil, workspace: ws, stream: stream)
                }
                let times = try timeOnStream(stream, warmup: warmup, iterations: iterations) { i in
                    try prepared[i % copies].launch(on: stream)
                }
                // Back-to-back: one event pair around all iterations (no per-call event gaps).
                let batch = try timeOnStream(stream, warmup: 0, iterations: 1) { _ in
                    for i in 0..<iterations { try prepared[i % copies].launch(on: stream) }
                }
                let decodeOnly = try timeOnStream(stream, warmup: 2, iterations: iterations) { i in
                    try prepared[i % copies].launchDecodeOnly(on: stream)
                }
                try stream.synchronize()
                withExtendedLifetime(ws) {}
                return Measured(launch: launch, medianMs: median(times), batchMeanMs: batch[0] / Double(iterations),
                                decodeOnlyMs: median(decodeOnly), attributes: prepared[0].decodeAttributes)
            }
            func tbps(_ ms: Double) -> Double { Double(bytesPerCall) / (ms * 1e-3) / 1e12 }
            func row(_ m: Measured) -> [(String, JSON)] {
                [("kernel", .string(m.launch.spec.name)), ("stages", .int(m.launch.spec.stages)),
                 ("keys_per_slot", .int(m.launch.spec.keysPerSlot)), ("tile_keys", .int(m.launch.spec.tileKeys)),
                 ("num_chunks", .int(m.launch.split.numChunks)), ("chunk_size", .int(m.launch.split.chunkSize)),
                 ("ctas_per_sm", .int(m.launch.ctasPerSM)), ("registers", .int(m.attributes.registers)),
                 ("local_bytes", .int(m.attributes.localBytes)),
                 ("median_us", .number(m.medianMs * 1e3)), ("tbps", .number(tbps(m.medianMs))),
                 ("fraction_of_copy", .number(tbps(m.medianMs) / copy.tbps)),
                 ("batch_mean_us", .number(m.batchMeanMs * 1e3)), ("batch_tbps", .number(tbps(m.batchMeanMs))),
                 ("decode_only_median_us", .number(m.decodeOnlyMs * 1e3))]
            }
            func line(_ m: Measured) -> String {
                "\(pad(m.launch.spec.name, 34)) \(pad(m.launch.split.description, 24)) \(m.launch.ctasPerSM) CTA/SM  \(m.attributes.registers) regs \(m.attributes.localBytes) B local   median \(fixed(m.medianMs * 1e3, 1)) µs  \(fixed(tbps(m.medianMs), 3)) TB/s (\(fixed(100 * tbps(m.medianMs) / copy.tbps, 1))% of copy)   back-to-back \(fixed(m.batchMeanMs * 1e3, 1)) µs  decode-only \(fixed(m.decodeOnlyMs * 1e3, 1)) µs"
            }

            print("single-decode on \(device.properties.name): kv_len \(kvLen), \(hq)/\(hkv) heads, head_dim \(d), \(dt.rawValue), \(lay.rawValue); K+V \(formatBytes(bytesPerCall)) per call, \(copies) rotating copies (L2 \(formatBytes(l2)))")
            print("copy ceiling: \(fixed(copy.tbps, 3)) TB/s (read + written)")
            let main = try measure(split: split, stages: stages, keys: keysPerSlot, iterations: iterations)
            print(line(main))
            var timelineJSON: [(String, JSON)] = []
            if timeline {
                let launch = try CUDADecodeLaunch(q: q, k: ks[0], v: vs[0], options: options, device: device, numChunks: split,
                                                  stages: stages, keysPerSlot: keysPerSlot, timeline: true)
                let ws = try launch.makeWorkspace(stream: stream)
                let ctas = launch.split.numChunks * hkv * launch.headGroups
                let tDecode = try device.allocate(byteCount: 24 * ctas), tMerge = try device.allocate(byteCount: 24 * hq)
                let prepared = try (0..<copies).map { i in
                    try launch.prepare(q: q, k: ks[i], v: vs[i], out: out, lse: nil, workspace: ws, stream: stream,
                                       timeline: (tDecode.address, tMerge.address))
                }
                let times = try timeOnStream(stream, warmup: 5, iterations: 21) { i in try prepared[i % copies].launch(on: stream) }
                try stream.synchronize()
                let td = try tDecode.copyToHost(UInt64.self, count: 3 * ctas)
                let tm = try tMerge.copyToHost(UInt64.self, count: 3 * hq)
                print("timeline of the last of 21 calls of \(launch.spec.name) (median \(fixed(median(times) * 1e3, 1)) µs):")
                print("  decode " + timelineSummary(td, count: ctas))
                let t0 = (0..<ctas).map { td[3 * $0] }.min()!
                let decodeEnd = (0..<ctas).map { td[3 * $0 + 1] }.max()!
                if launch.split.isSplit {
                    let waits = (0..<hq).map { Double(Int64(bitPattern: tm[3 * $0] &- t0)) / 1e3 }
                    let exits = (0..<hq).map { Double(Int64(bitPattern: tm[3 * $0 + 1] &- t0)) / 1e3 }
                    print("  merge: released \(fixed(waits.min()!, 1))–\(fixed(waits.max()!, 1)) µs, last exit \(fixed(exits.max()!, 1)) µs (decode's last exit \(fixed(Double(decodeEnd - t0) / 1e3, 1)) µs)")
                    timelineJSON.append(("timeline_merge_release_us", .number(waits.min()!)))
                    timelineJSON.append(("timeline_merge_exit_us", .number(exits.max()!)))
                }
                // Per-SM busy time: the spread of the SMs' last exits shows the tail's imbalance.
                var smEnd: [UInt64: UInt64] = [:], smBytes: [UInt64: Int] = [:]
                for i in 0..<ctas { smEnd[td[3 * i + 2], default: 0] = max(smEnd[td[3 * i + 2], default: 0], td[3 * i + 1]); smBytes[td[3 * i + 2], default: 0] += 1 }
                let ends = smEnd.values.map { Double($0 - t0) / 1e3 }.sorted()
                print("  per-SM last exit: min \(fixed(ends.first!, 1)) median \(fixed(ends[ends.count / 2], 1)) max \(fixed(ends.last!, 1)) µs over \(ends.count) SMs; CTAs per SM \(Set(smBytes.values).sorted())")
                timelineJSON.append(("timeline_decode_last_exit_us", .number(Double(decodeEnd - t0) / 1e3)))
                timelineJSON.append(("timeline_sm_exit_min_us", .number(ends.first!)))
                timelineJSON.append(("timeline_sm_exit_median_us", .number(ends[ends.count / 2])))
                withExtendedLifetime(ws) {}
            }

            var sweep: [JSON] = []
            let splitList = (sweepSplits ?? "").split(separator: ",").compactMap { Int($0.trimmingCharacters()) }
            let stageList = (sweepStages ?? "").split(separator: ",").compactMap { Int($0.trimmingCharacters()) }
            let keyList = (sweepKeys ?? "").split(separator: ",").compactMap { Int($0.trimmingCharacters()) }
            if !splitList.isEmpty || !stageList.isEmpty || !keyList.isEmpty {
                print("sweep:")
                for kp in keyList.isEmpty ? [keysPerSlot] : keyList {
                    for st in stageList.isEmpty ? [stages] : stageList {
                        for sp in splitList.isEmpty ? [0] : splitList {
                            do {
                                let m = try measure(split: sp == 0 ? nil : sp, stages: st, keys: kp, iterations: max(50, iterations / 2))
                                print("  " + line(m))
                                sweep.append(.object(row(m)))
                            } catch {
                                print("  keys \(kp) stages \(st) split \(sp): \(error)")
                            }
                        }
                    }
                }
            }

            if let json {
                let isD6 = kvLen == 32768 && hq == 32 && hkv == 8 && d == 128 && dt == .f16
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("single-decode")), ("workload", .string(isD6 ? "D6" : "custom")),
                    ("kv_len", .int(kvLen)), ("num_qo_heads", .int(hq)), ("num_kv_heads", .int(hkv)), ("head_dim", .int(d)),
                    ("dtype", .string(dt.rawValue)), ("layout", .string(lay.rawValue)), ("iterations", .int(iterations)),
                    ("bytes_per_call", .int(bytesPerCall)), ("rotating_copies", .int(copies)), ("l2_bytes", .int(l2)),
                    ("copy_tbps", .number(copy.tbps)),
                ] + row(main) + timelineJSON + [("sweep", .array(sweep))]).write(to: json)
            }
        }
    }
}

extension Substring {
    func trimmingCharacters() -> String { String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}
