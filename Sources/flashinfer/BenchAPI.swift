import ArgumentParser
import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    /// The public entry points called in a loop the way a caller would (plan, allocate, launch per
    /// call): host time per call, and GPU time per call from one event pair around the loop. A call
    /// that waits for the device (e.g. a synchronous free) shows as host time ≥ GPU time.
    struct API: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "api",
            abstract: "Public entry points in a loop: host µs per call and GPU µs per call for singleDecode (D6 shape, caller's out), appendPagedKVCache (B requests × T tokens; host indices, then device indices) and applyRope in place on those tokens (host, then device int64 positions). Compare with FLASHINFER_STREAM_ORDERED_ALLOC=0.")
        @Option(help: "Calls per loop.") var iterations = 200
        @Option(name: .customLong("append-batch"), help: "Requests per append.") var appendBatch = 32
        @Option(name: .customLong("append-tokens"), help: "Tokens per request per append.") var appendTokens = 8
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let device = try Device.open()
            let stream = try device.makeStream()
            var rng = SeededRNG(seed: 7)
            func randn(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
            // (host µs per call, GPU µs per call) over `iterations` calls after 10 warm-up calls.
            func loop(_ body: () throws -> Void) throws -> (host: Double, gpu: Double) {
                for _ in 0..<10 { try body() }
                try stream.synchronize()
                let start = try device.makeEvent(), end = try device.makeEvent()
                try start.record(on: stream)
                let t0 = nowSeconds()
                for _ in 0..<iterations { try body() }
                let host = (nowSeconds() - t0) / Double(iterations) * 1e6
                try end.record(on: stream)
                try end.synchronize()
                return (host, Double(try end.elapsedMilliseconds(since: start)) * 1e3 / Double(iterations))
            }
            let ordered = device.streamOrderedAllocation
            print("api on \(device.properties.name); stream-ordered allocation \(ordered ? "on" : "off (FLASHINFER_STREAM_ORDERED_ALLOC=0)")")

            // singleDecode, D6 shape: plan + workspace + launches per call, into the caller's out.
            let (hq, hkv, d, kv) = (32, 8, 128, 32768)
            let q = try Tensor.host(randn(hq * d), shape: [hq, d], dtype: .f16).toDevice(device)
            let k = try Tensor.host(randn(kv * hkv * d), shape: [kv, hkv, d], dtype: .f16).toDevice(device)
            let v = try Tensor.host(randn(kv * hkv * d), shape: [kv, hkv, d], dtype: .f16).toDevice(device)
            let out = try Tensor.empty(shape: [hq, d], dtype: .f16, device: device)
            let dec = try loop { _ = try singleDecode(q: q, k: k, v: v, out: out, backend: .cuda(stream)) }
            print("singleDecode D6 (kv 32768, 32/8, f16)   host \(fixed(dec.host, 1)) µs/call   GPU \(fixed(dec.gpu, 1)) µs/call")

            // appendPagedKVCache: B requests × T tokens into a page-16 cache (indices uploaded per call).
            let (b, t, ps) = (appendBatch, appendTokens, 16)
            let lens = [Int](repeating: 1024, count: b)
            let table = PageTable.contiguous(seqLens: lens, pageSize: ps)
            let numPages = table.indices.count
            let cache = try PagedKVCache(combined: Tensor.empty(shape: [numPages, 2, ps, hkv, d], dtype: .f16, device: device))
            let nnz = b * t
            let newK = try Tensor.host(randn(nnz * hkv * d), shape: [nnz, hkv, d], dtype: .f16).toDevice(device)
            let newV = try Tensor.host(randn(nnz * hkv * d), shape: [nnz, hkv, d], dtype: .f16).toDevice(device)
            let batch = (0..<nnz).map { Int32($0 / t) }, pos = (0..<nnz).map { Int32(1024 - t + $0 % t) }
            let indices = AppendIndices(batchIndices: batch, positions: pos)
            let app = try loop {
                try appendPagedKVCache(appendK: newK, appendV: newV, indices: indices, cache: cache, table: table, stream: stream)
            }
            print("appendPagedKVCache \(b)×\(t) tokens, page 16   host \(fixed(app.host, 1)) µs/call   GPU \(fixed(app.gpu, 1)) µs/call")
            // The same append with the index arrays in device memory (DeviceAppendIndices: no upload).
            let di = DeviceAppendIndices(batchIndices: try device.upload(batch), positions: try device.upload(pos),
                                         kvIndices: try device.upload(table.indices), kvIndptr: try device.upload(table.indptr),
                                         nnz: nnz, batchSize: b, numIndices: table.indices.count)
            let appDev = try loop {
                try appendPagedKVCache(appendK: newK, appendV: newV, deviceIndices: di, cache: cache, stream: stream)
            }
            print("appendPagedKVCache \(b)×\(t) tokens, device indices   host \(fixed(appDev.host, 1)) µs/call   GPU \(fixed(appDev.gpu, 1)) µs/call")
            // RoPE in place on the appended tokens' q [nnz, 32, 128] and k [nnz, 8, 128]: host positions
            // (uploaded per call) against Int64 positions in device memory.
            let rq = try Tensor.host(randn(nnz * hq * d), shape: [nnz, hq, d], dtype: .f16).toDevice(device)
            let rk = try Tensor.host(randn(nnz * hkv * d), shape: [nnz, hkv, d], dtype: .f16).toDevice(device)
            let ropeHost = try loop { try applyRopePosIdsInPlace(q: rq, k: rk, posIds: pos, backend: .cuda(stream)) }
            let pos64 = DevicePositions.perRow(try device.upload(pos.map(Int64.init)), int64: true)
            let ropeDev = try loop { try applyRopeInPlace(q: rq, k: rk, positions: pos64, backend: .cuda(stream)) }
            print("applyRope \(nnz) rows, 32/8 heads, host positions   host \(fixed(ropeHost.host, 1)) µs/call   GPU \(fixed(ropeHost.gpu, 1)) µs/call")
            print("applyRope \(nnz) rows, 32/8 heads, device int64 positions   host \(fixed(ropeDev.host, 1)) µs/call   GPU \(fixed(ropeDev.gpu, 1)) µs/call")
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("api")), ("stream_ordered_allocation", .bool(ordered)), ("iterations", .int(iterations)),
                    ("single_decode_host_us", .number(dec.host)), ("single_decode_gpu_us", .number(dec.gpu)),
                    ("append_batch", .int(b)), ("append_tokens", .int(t)),
                    ("append_host_us", .number(app.host)), ("append_gpu_us", .number(app.gpu)),
                    ("append_device_indices_host_us", .number(appDev.host)), ("append_device_indices_gpu_us", .number(appDev.gpu)),
                    ("rope_host_positions_host_us", .number(ropeHost.host)), ("rope_host_positions_gpu_us", .number(ropeHost.gpu)),
                    ("rope_device_positions_host_us", .number(ropeDev.host)), ("rope_device_positions_gpu_us", .number(ropeDev.gpu)),
                ]).write(to: json)
            }
        }
    }
}
