import ArgumentParser
import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    struct CascadeBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cascade",
            abstract: "Workload C1 of bench/WORKLOADS.md: shared prefix (32768 tokens) + per-request unique pages (256 each), batch 256, 32/8 heads — two-level cascade vs plain paged decode of the same sequences (each request's page list referencing the shared pages).")

        @Option var shared = 32768
        @Option var unique = 256
        @Option var batch = 256
        @Option(name: .customLong("page-size")) var pageSize = 16
        @Option(help: "Timed iterations.") var iterations = 30
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let device = try Device.open()
            let stream = try device.makeStream()
            let (hq, hkv, d, ps) = (32, 8, 128, pageSize)
            let sharedPages = (shared + ps - 1) / ps, uniquePages = (unique + ps - 1) / ps
            precondition(shared % ps == 0, "the plain layout appends unique pages after whole shared pages")
            let numPages = sharedPages + batch * uniquePages
            var rng = SeededRNG(seed: 5)
            let cache = try PagedKVCache(combined: randomDeviceTensor(shape: [numPages, 2, ps, hkv, d], device: device, rng: &rng))
            let q = try Tensor.host((0..<(batch * hq * d)).map { _ in rng.normal() }, shape: [batch, hq, d], dtype: .f16).toDevice(device)
            let out = try Tensor.empty(shape: q.shape, dtype: .f16, device: device)
            let lastLen = Int32(unique - (uniquePages - 1) * ps)
            // Cascade: level 0 = all queries × shared pages; level 1 = each request × its pages.
            let sharedTable = PageTable(indptr: [0, Int32(sharedPages)], indices: (0..<Int32(sharedPages)).map { $0 }, lastPageLen: [Int32(ps)], pageSize: ps)
            var uIdx: [Int32] = [], uPtr: [Int32] = [0]
            for b in 0..<batch {
                uIdx += (0..<Int32(uniquePages)).map { Int32(sharedPages + b * uniquePages) + $0 }
                uPtr.append(Int32(uIdx.count))
            }
            let uniqueTable = PageTable(indptr: uPtr, indices: uIdx, lastPageLen: Array(repeating: lastLen, count: batch), pageSize: ps)
            let cascade = MultiLevelCascadeAttention(backend: .cuda(stream))
            try cascade.plan(levels: [CascadeLevel(qoIndptr: [0, Int32(batch)], table: sharedTable),
                                      CascadeLevel(qoIndptr: (0...batch).map(Int32.init), table: uniqueTable)],
                             numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
            let cascadeMs = median(try timeOnStream(stream, warmup: 5, iterations: iterations) { _ in
                _ = try cascade.run(q: q, cache: cache, out: out)
            })
            let cascadeOut = try out.toFloats()
            // Plain: each request's pages = the shared pages, then its own.
            var pIdx: [Int32] = [], pPtr: [Int32] = [0]
            for b in 0..<batch {
                pIdx += (0..<Int32(sharedPages)).map { $0 }
                pIdx += uIdx[Int(uPtr[b])..<Int(uPtr[b + 1])]
                pPtr.append(Int32(pIdx.count))
            }
            let plainTable = PageTable(indptr: pPtr, indices: pIdx, lastPageLen: Array(repeating: lastLen, count: batch), pageSize: ps)
            // The automatic choice, then each path forced (issue 14: C1's plain decode is where the
            // shared pages' L2 reuse decides which path is faster).
            var plainMs = 0.0, plainPath = "", forced: [(String, Double)] = [], agree: String? = nil
            for force in [nil, false, true] as [Bool?] {
                let plain = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: force)
                try plain.plan(table: plainTable, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16, numPagesInCache: numPages)
                let ms = median(try timeOnStream(stream, warmup: 3, iterations: iterations) { _ in
                    _ = try plain.run(q: q, cache: cache, out: out)
                })
                let path = plain.usesTensorCores ? "tensor cores (\(plain.tensorCoreTile.map { "\($0)" } ?? "?"))" : "CUDA cores"
                if let e = Tolerance.f16.compare(cascadeOut, try out.toFloats()) { agree = agree ?? "\(path): \(e)" }
                if force == nil { (plainMs, plainPath) = (ms, path) } else { forced.append((path, ms)) }
            }
            print("C1 on \(device.properties.name): shared \(shared), unique \(unique), batch \(batch), \(hq)/\(hkv) heads, page \(ps)")
            print("  cascade (2 levels)        \(fixed(cascadeMs, 3)) ms")
            print("  plain paged decode        \(fixed(plainMs, 3)) ms (shared pages referenced by every request; auto: \(plainPath))")
            for (path, ms) in forced { print("    forced \(pad(path, 16)) \(fixed(ms, 3)) ms") }
            print("  speedup                   \(fixed(plainMs / cascadeMs, 2))×")
            print("  outputs agree (f16 tol):  \(agree.map { "NO: \($0)" } ?? "yes")")
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("cascade C1")), ("shared", .int(shared)), ("unique", .int(unique)), ("batch", .int(batch)),
                    ("cascade_ms", .number(cascadeMs)), ("plain_decode_ms", .number(plainMs)), ("speedup", .number(plainMs / cascadeMs)),
                    ("plain_path", .string(plainPath)),
                    ("plain_cuda_cores_ms", .number(forced[0].1)), ("plain_tensor_cores_ms", .number(forced[1].1)),
                    ("outputs_agree", .bool(agree == nil)),
                ]).write(to: json)
            }
        }
    }
}
