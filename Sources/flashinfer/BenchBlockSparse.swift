import ArgumentParser
import FlashInfer
import FlashInferCUDA
import FlashInferTesting

extension Bench {
    struct BlockSparse: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "block-sparse",
            abstract: "Block-sparse attention (BS1 of bench/WORKLOADS.md) against dense prefill of the same shape: median ms, TFLOP/s over the kept blocks, speedup.",
            discussion: """
                M = N = 8192 queries and keys, R = C = 64, 32/8 heads, head_dim 128, f16, NHD; a random \
                BSR pattern per density (each block kept with that probability, seeded; columns sorted \
                within a block row, as scipy's bsr_matrix), planned once and timed with run(q:k:v:out:lse:) \
                (the paged batch prefill kernel over K/V viewed as N/C pages of C keys). The same run \
                times dense prefill (singlePrefill, not causal) of the same q, k, v. FLOPs of block-sparse: \
                4 · Hq · D · kept (query, key) pairs = 4 · nnz · R · C · D · Hq (the last block row's \
                rows when M % R ≠ 0); dense: 4 · M · N · Hq · D. Speedup = dense ms / block-sparse ms \
                (the issue's target: ≥ 5× at 10 % density).
                """)

        @Option(help: "M: queries.") var rows = 8192
        @Option(help: "N: keys (default M; a multiple of C).") var columns: Int?
        @Option(name: .customLong("block-rows"), help: "R: rows per block.") var blockRows = 64
        @Option(name: .customLong("block-columns"), help: "C: columns per block.") var blockColumns = 64
        @Option(help: "Comma-separated block densities (fraction of the (M/R)·(N/C) blocks kept).") var densities = "0.1,0.5"
        @Option(name: .customLong("num-qo-heads")) var numQOHeads = 32
        @Option(name: .customLong("num-kv-heads")) var numKVHeads = 8
        @Option(name: .customLong("head-dim")) var headDim = 128
        @Option(help: "f16 or bf16.") var dtype = "f16"
        @Option(help: "K/V layout: NHD or HND.") var layout = "NHD"
        @Flag(help: "Also a random in-block mask (each element kept with probability 1/2; the custom-mask kernel variant).") var mask = false
        @Flag(help: "Also write the LSE.") var lse = false
        @Option(help: "Pattern and input seed.") var seed: UInt64 = 2026
        @Option(help: "Timed iterations.") var iterations = 30
        @Option(help: "Untimed warm-up iterations.") var warmup = 5
        @Option(help: "Write results as JSON to this file.") var json: String?

        func run() throws {
            let (m, r, c) = (rows, blockRows, blockColumns)
            let n = columns ?? rows
            let (hq, hkv, d) = (numQOHeads, numKVHeads, headDim)
            guard let dt = DType(name: dtype), dt == .f16 || dt == .bf16 else { throw ValidationError("--dtype must be f16 or bf16") }
            guard let lay = KVLayout(rawValue: layout.uppercased()) else { throw ValidationError("--layout must be NHD or HND") }
            guard m > 0, r > 0, c > 0, n > 0, n % c == 0 else { throw ValidationError("need M, N, R, C > 0 and N divisible by C") }
            guard !mask || m % r == 0 else { throw ValidationError("--mask needs M divisible by R") }
            let targets = try densities.split(separator: ",").map { s -> Double in
                guard let x = Double(s.filter { $0 != " " }), x >= 0, x <= 1 else {
                    throw ValidationError("--densities: \(s) is not in [0, 1]")
                }
                return x
            }
            let standard = m == 8192 && n == 8192 && r == 64 && c == 64 && hq == 32 && hkv == 8 && d == 128 && dt == .f16 && lay == .nhd && !mask
            let label = standard ? "BS1" : "custom"

            let device = try Device.open()
            let stream = try device.makeStream()
            var rng = SeededRNG(seed: seed)
            func randn(_ shape: [Int]) throws -> Tensor {
                // Random normal on the host, uploaded once; big inputs reuse one random block.
                let count = shape.reduce(1, *)
                let block = (0..<min(count, 1 << 20)).map { _ in rng.normal() }
                let values = (0..<count).map { block[($0 &* 7919) % block.count] }
                return try Tensor.host(values, shape: shape, dtype: dt).toDevice(device)
            }
            let kvShape = lay == .nhd ? [n, hkv, d] : [hkv, n, d]
            let q = try randn([m, hq, d]), k = try randn(kvShape), v = try randn(kvShape)
            let out = try Tensor.empty(shape: [m, hq, d], dtype: dt, device: device)
            let lseT = lse ? try Tensor.empty(shape: [m, hq], dtype: .f32, device: device) : nil

            // Dense prefill of the same shape (P2's kernel at M × N).
            let denseOptions = AttentionOptions(layout: lay)
            let denseSpec = PrefillSpec(dtype: dt, headDim: d, options: denseOptions)
            let denseTimes = try timeOnStream(stream, warmup: warmup, iterations: iterations) { _ in
                try singlePrefill(q: q, k: k, v: v, options: denseOptions, out: out, lse: lseT, stream: stream)
            }
            let denseMS = median(denseTimes)
            let denseFLOPs = 4.0 * Double(m) * Double(n) * Double(hq * d)
            let denseTFLOPS = denseFLOPs / (denseMS * 1e-3) / 1e12

            print("block-sparse \(label): M \(m), N \(n), R \(r), C \(c), heads \(hq)/\(hkv), D \(d), \(dt.rawValue), \(lay.rawValue)\(mask ? ", in-block mask (1/2 kept)" : "")\(lse ? ", with LSE" : ""), seed \(seed)")
            print("  dense prefill (not causal, \(denseSpec.name)): median \(fixed(denseMS, 3)) ms (min \(fixed(denseTimes.min() ?? .nan, 3)), \(iterations) runs), \(fixed(denseTFLOPS, 1)) TFLOP/s")
            print("  \(pad("density", 9)) \(pad("blocks kept", 18)) \(pad("median ms", 10)) \(pad("min ms", 9)) \(pad("TFLOP/s kept", 13)) \(pad("speedup", 9)) plan")

            let mb = (m + r - 1) / r, nb = n / c
            let wrapper = BlockSparseAttention(backend: .cuda(stream))
            var results: [JSON] = []
            var targetMet: Bool?
            for target in targets {
                // Each block kept with probability `target`; columns in order within a block row.
                var indptr: [Int32] = [0], indices: [Int32] = []
                for _ in 0..<mb {
                    for col in 0..<nb where Double(rng.uniform()) < target { indices.append(Int32(col)) }
                    indptr.append(Int32(indices.count))
                }
                let pattern = try BlockSparsePattern(indptr: indptr, indices: indices, rows: m, columns: n, blockRows: r, blockColumns: c)
                let inBlock: BlockSparseMask? = mask ? .blocks((0..<(pattern.nnz * r * c)).map { _ in rng.next() & 1 == 1 }) : nil
                try wrapper.plan(pattern: pattern, numQOHeads: hq, numKVHeads: hkv, headDim: d, qDType: dt, mask: inBlock,
                                 options: AttentionOptions(layout: lay))
                let plan = wrapper.batchPrefillPlan!
                let qoLens = (0..<mb).map { pattern.queryRange(blockRow: $0).count }
                let spec = BatchPrefillAttention.kernelSpec(qoLens: qoLens, groupSize: hq / hkv, headDim: d, dtype: dt,
                                                            options: AttentionOptions(layout: lay), paged: true, customMask: mask)
                let times = try timeOnStream(stream, warmup: warmup, iterations: iterations) { _ in
                    try wrapper.run(q: q, k: k, v: v, out: out, lse: lseT)
                }
                let ms = median(times)
                // Kept (query, key) pairs: each stored block of row i is rows_i × C.
                var pairs = 0
                for i in 0..<mb { pairs += qoLens[i] * Int(indptr[i + 1] - indptr[i]) * c }
                let flops = 4.0 * Double(pairs) * Double(hq * d)
                let tflops = flops / (ms * 1e-3) / 1e12
                let speedup = denseMS / ms
                let actual = Double(pattern.nnz) / Double(max(mb * nb, 1))
                let planText = "\(plan.workItems) items × \(hkv) kv heads, q tile \(plan.ctaTileQ), " + (plan.splitKV ? "split KV (chunk \(plan.chunkTokens))" : "no split")
                print("  \(pad(fixed(target * 100, 0) + " %", 9)) \(pad("\(pattern.nnz) (\(fixed(actual * 100, 1)) %)", 18)) \(pad(fixed(ms, 3), 10)) \(pad(fixed(times.min() ?? .nan, 3), 9)) \(pad(fixed(tflops, 1), 13)) \(pad(fixed(speedup, 2) + "×", 9)) \(planText)")
                if abs(target - 0.1) < 1e-9 { targetMet = speedup >= 5 }
                results.append(.object([
                    ("density_target", .number(target)), ("density", .number(actual)), ("nnz_blocks", .int(pattern.nnz)),
                    ("kept_pairs", .int(pairs)), ("kernel", .string(spec.name)), ("work_items", .int(plan.workItems)),
                    ("cta_tile_q", .int(plan.ctaTileQ)), ("split_kv", .bool(plan.splitKV)),
                    ("median_ms", .number(ms)), ("min_ms", .number(times.min() ?? .nan)), ("flops", .number(flops)),
                    ("tflops", .number(tflops)), ("speedup_vs_dense", .number(speedup)),
                ]))
            }
            print("  kernel \(BatchPrefillAttention.kernelSpec(qoLens: [r], groupSize: hq / hkv, headDim: d, dtype: dt, options: AttentionOptions(layout: lay), paged: true, customMask: mask).name) (paged batch prefill, page size C)")
            if let met = targetMet { print("  target (issue 12): ≥ 5× faster than dense at 10 % density: \(met ? "met" : "NOT met")") }
            if let json {
                try JSON.object(resultHeader(device: device.properties.name) + [
                    ("benchmark", .string("block-sparse")), ("workload", .string(label)),
                    ("rows", .int(m)), ("columns", .int(n)), ("block_rows", .int(r)), ("block_columns", .int(c)),
                    ("num_qo_heads", .int(hq)), ("num_kv_heads", .int(hkv)), ("head_dim", .int(d)), ("dtype", .string(dt.rawValue)),
                    ("layout", .string(lay.rawValue)), ("in_block_mask", .bool(mask)), ("lse", .bool(lse)), ("seed", .int(Int(seed))),
                    ("iterations", .int(iterations)),
                    ("dense", .object([
                        ("kernel", .string(denseSpec.name)), ("median_ms", .number(denseMS)), ("min_ms", .number(denseTimes.min() ?? .nan)),
                        ("flops", .number(denseFLOPs)), ("tflops", .number(denseTFLOPS)),
                    ])),
                    ("block_sparse", .array(results)),
                    ("flops_rule", .string("block-sparse: 4 · Hq · D · kept (query, key) pairs = 4 · nnz · R · C · D · Hq; dense: 4 · M · N · Hq · D")),
                    ("target", .string("speedup_vs_dense >= 5 at density 0.1 (issue 12)")),
                    ("target_met", targetMet.map { .bool($0) } ?? .null),
                ]).write(to: json)
            }
        }
    }
}
