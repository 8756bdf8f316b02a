/// The CPU schedule of a batch prefill / append step (upstream `PrefillSplitQOKVIndptr`).
///
/// Queries are "packed": request `b`'s `qoLen_b · groupSize` rows (GQA heads fused into rows) are
/// cut into tiles of `ctaTileQ` rows; when the tiles alone cannot fill the GPU, each request's
/// KV is also cut into chunks of `chunkPages` pages. A work item is (request, q tile, kv chunk);
/// items of one q tile over several chunks are merged afterwards. Pure and deterministic.
public struct BatchPrefillPlan: Sendable, Hashable {
    public var pageSize: Int
    public var groupSize: Int
    public var numKVHeads: Int
    /// Packed query rows per CTA (16, 64 or 128).
    public var ctaTileQ: Int
    /// KV pages per chunk (the longest request's pages when not split).
    public var chunkPages: Int
    public var splitKV: Bool
    /// Per work item: request, q tile within the request, kv chunk within the request.
    public var requestIndices: [Int32]
    public var qoTileIndices: [Int32]
    public var kvTileIndices: [Int32]
    /// `[B + 1]` prefix sums of query tokens (the plan's input).
    public var qoIndptr: [Int32]
    /// `[totalQoTokens + 1]`: merge plan — query token `t`'s partial rows are
    /// `mergeIndptr[t] ..< mergeIndptr[t+1]` (one per KV chunk of its request).
    public var mergeIndptr: [Int32]
    /// `[B + 1]`: request `b`'s partial rows start at `oIndptr[b]` (qoLen_b × chunks_b rows).
    public var oIndptr: [Int32]

    public var workItems: Int { requestIndices.count }
    public var chunkTokens: Int { chunkPages * pageSize }

    /// Upstream's tile rule (`FA2DetermineCtaTileQ`): 128 rows when the average packed query
    /// length is over 64 and `headDim < 256`, else 64 when over 16, else 16.
    public static func ctaTileQ(averagePackedQoLen avg: Double, headDim: Int) -> Int {
        if avg > 64 && headDim < 256 { return 128 }
        if avg > 16 { return 64 }
        return 16
    }

    /// The tile of this library's tensor-core kernel (`PrefillTile.batch`): 4 warps of 32 rows
    /// (128) where upstream's rule picks 128; 16 rows shared by 4 warps that split the keys (16)
    /// where it picks 16, for head dim 128 without RoPE on the fly and with 16-bit K/V
    /// (`sixteenRowTile`), when `useSixteenRowTile` says so; else 4 warps of 16 rows (64).
    /// E.g. P4 (packed 512 per request) → 128; D 256 → 64; GQA-4 decode (packed 4) → 16 for D2's
    /// 256 requests × 8 KV heads, 64 for D1's 64.
    public static func kernelCtaTileQ(averagePackedQoLen avg: Double, headDim: Int, sixteenRowTile: Bool = false,
                                      ctas: Int? = nil, numSMs: Int? = nil) -> Int {
        switch ctaTileQ(averagePackedQoLen: avg, headDim: headDim) {
        case 128: 128
        case 16 where sixteenRowTile && headDim == 128 && useSixteenRowTile(ctas: ctas, numSMs: numSMs): 16
        default: 64
        }
    }

    /// Resident CTAs per SM of the 16-row tile (68 KiB of shared memory in either form, ≤ 168 registers).
    public static let sixteenRowTileCTAsPerSM = 3

    /// Whether a decode-like batch (≤ 16 packed rows per request) of `ctas` (request, KV head)
    /// pairs takes the 16-row tile: with `FLASHINFER_PREFILL_TILE16` unset, when the pairs fill at
    /// least `sixteenRowTileMinWaves` waves of the 64-row tile (2 CTAs per SM) unsplit. Measured on
    /// the H200 (bench/results/2026-12-04-decode-paths-tile-*-H200-00822a5.json, 32 shapes, groups
    /// 2–16): the single-buffered 16-row tile is 4–7 % faster from 128 requests × 8 heads up (D2
    /// 273.9 → 257.6 µs; 256 × kv 4096: 3–17 %; C1's plain decode 6.65 → 3.61 ms), 2–8 % slower at 16
    /// and 64 requests (D1 251 → 263 µs), where split plans fill the GPU with either tile and the
    /// 64-row tile's longer CTAs read faster.
    public static func useSixteenRowTile(ctas: Int?, numSMs: Int?) -> Bool {
        switch sixteenRowTileMode {
        case 0: return false
        case 1, 2: return true
        default:
            guard let ctas, let numSMs else { return false }
            return Double(ctas) >= sixteenRowTileMinWaves * Double(2 * numSMs)
        }
    }

    /// Waves of the 64-row tile (2 CTAs per SM) from which the 16-row tile is taken: between the
    /// 1.9 waves of 64 requests × 8 heads (64-row faster) and the 3.9 of 128 × 8 (16-row faster or even).
    public static let sixteenRowTileMinWaves = 3.5

    /// `FLASHINFER_PREFILL_TILE16`: unset (−1) the rule of `useSixteenRowTile`; 0 never the 16-row
    /// tile; 1 the 16-row tile over a 2-stage ring of 64-key tiles (16 keys per warp) wherever
    /// upstream's rule picks 16 rows; 2 the single-buffered 16-row tile over 128-key tiles (32 keys
    /// per warp, `PrefillTile.kvBuffers` 1) wherever upstream's rule picks 16 rows. The automatic
    /// choice takes the single-buffered form.
    public static let sixteenRowTileMode: Int = {
        switch FileSystem.environment("FLASHINFER_PREFILL_TILE16") {
        case "0": 0
        case "1": 1
        case "2": 2
        default: -1
        }
    }()

    /// Plans a batch.
    ///
    /// Worked example (workload P4 on an H100, 132 SMs): 32 requests appending 128 tokens onto
    /// 4096 (page 16 → 264 pages incl. the new tokens), group 4, 8 KV heads. Packed rows
    /// 512 per request → tile 128 → 4 tiles × 32 = 128 tiles; `maxBatchSizeIfSplit` =
    /// 2·132 / 8 = 33 < 128, so the binary search ends at the largest chunk: no split.
    ///
    /// - Parameters:
    ///   - qoLens / kvLens: tokens per request (kv includes the queries for append).
    ///   - windowLeft: sliding window (≥ 0) limits the effective KV length, as upstream.
    public static func make(qoLens: [Int], kvLens: [Int], pageSize: Int, groupSize: Int, numKVHeads: Int, headDim: Int,
                            numSMs: Int, windowLeft: Int = -1, ctaTileQ forcedTile: Int? = nil,
                            fixedSplitPages: Int? = nil, disableSplit: Bool = false) -> BatchPrefillPlan {
        precondition(qoLens.count == kvLens.count && pageSize >= 1 && groupSize >= 1 && numKVHeads >= 1)
        let batch = qoLens.count
        let packed = qoLens.map { $0 * groupSize }
        let avg = batch == 0 ? 0 : Double(packed.reduce(0, +)) / Double(batch)
        let tile = forcedTile ?? ctaTileQ(averagePackedQoLen: avg, headDim: headDim)
        var kvPages = kvLens.map { ($0 + pageSize - 1) / pageSize }
        if windowLeft >= 0 {
            let cap = (windowLeft + tile + pageSize - 1) / pageSize
            kvPages = kvPages.map { min($0, cap) }
        }
        let maxPages = max(kvPages.max() ?? 1, 1)
        let qTiles = packed.map { max(($0 + tile - 1) / tile, 1) }
        let maxBatchIfSplit = max((tile == 16 ? sixteenRowTileCTAsPerSM : 2) * numSMs / numKVHeads, 1)
        let chunk: Int
        if let f = fixedSplitPages {
            chunk = max(f, 1)
        } else if disableSplit {
            chunk = maxPages
        } else if tile == 16 && qTiles.allSatisfy({ $0 == 1 }) && qTiles.count * numKVHeads >= sixteenRowTileCTAsPerSM * numSMs {
            // The 16-row tile (3 CTAs per SM) over a batch that fills the GPU unsplit: cut so that
            // the grid ends near a whole number of waves, as the CUDA-core decode plan does (D1: 512
            // CTAs on 396 slots are 1.29 waves unsplit, the short last wave measured +26 %).
            chunk = BatchDecodePlan.waveAwareChunkPages(numPages: kvPages, pageSize: pageSize, numKVHeads: numKVHeads,
                                                        slots: sixteenRowTileCTAsPerSM * numSMs,
                                                        minChunk: min(max(128 / pageSize, 1), maxPages), maxChunk: maxPages)
        } else {
            func items(_ c: Int) -> Int { zip(qTiles, kvPages).reduce(0) { $0 + $1.0 * max(($1.1 + c - 1) / c, 1) } }
            var lo = min(max(128 / pageSize, 1), maxPages), hi = maxPages
            while lo < hi {
                let mid = (lo + hi) / 2
                if items(mid) > maxBatchIfSplit { lo = mid + 1 } else { hi = mid }
            }
            chunk = lo
        }
        // Real (unwindowed) KV is what the kernels walk: chunks cover the whole kv length.
        let chunksPer = kvLens.map { max(($0 + chunk * pageSize - 1) / (chunk * pageSize), 1) }
        var req: [Int32] = [], qt: [Int32] = [], kt: [Int32] = []
        var qoIndptr: [Int32] = [0], merge: [Int32] = [0], oIndptr: [Int32] = [0]
        for b in 0..<batch {
            for t in 0..<qTiles[b] {
                for c in 0..<chunksPer[b] {
                    req.append(Int32(b)); qt.append(Int32(t)); kt.append(Int32(c))
                }
            }
            qoIndptr.append(qoIndptr.last! + Int32(qoLens[b]))
            for _ in 0..<qoLens[b] { merge.append(merge.last! + Int32(chunksPer[b])) }
            oIndptr.append(oIndptr.last! + Int32(qoLens[b] * chunksPer[b]))
        }
        return BatchPrefillPlan(pageSize: pageSize, groupSize: groupSize, numKVHeads: numKVHeads, ctaTileQ: tile, chunkPages: chunk,
                                splitKV: chunksPer.contains { $0 > 1 }, requestIndices: req, qoTileIndices: qt, kvTileIndices: kt,
                                qoIndptr: qoIndptr, mergeIndptr: merge, oIndptr: oIndptr)
    }

    /// Invariant violations for the inputs the plan was made from (empty when sound): every
    /// (packed query row, KV token) pair is covered by exactly one work item; chunks ≤ `chunkTokens`;
    /// the merge plan counts each query's chunks.
    public func violations(qoLens: [Int], kvLens: [Int]) -> [String] {
        var out: [String] = []
        var tilesSeen = [Set<Int>](repeating: [], count: qoLens.count)
        var coverage = [[Int: Int]](repeating: [:], count: qoLens.count)  // tile → covered kv tokens
        for w in 0..<workItems {
            let b = Int(requestIndices[w]), t = Int(qoTileIndices[w]), c = Int(kvTileIndices[w])
            let rows = qoLens[b] * groupSize
            if t * ctaTileQ >= max(rows, 1) { out.append("item \(w): q tile \(t) past request \(b)'s \(rows) rows") }
            let start = c * chunkTokens, end = min(kvLens[b], start + chunkTokens)
            if kvLens[b] > 0 && start >= kvLens[b] { out.append("item \(w): chunk \(c) past request \(b)'s kv") }
            if coverage[b][t, default: 0] != start && kvLens[b] > 0 { out.append("item \(w): gap/overlap in request \(b) tile \(t)") }
            coverage[b][t] = max(end, 0)
            tilesSeen[b].insert(t)
        }
        for b in 0..<qoLens.count {
            let tiles = max((qoLens[b] * groupSize + ctaTileQ - 1) / ctaTileQ, 1)
            if tilesSeen[b].count != tiles { out.append("request \(b): \(tilesSeen[b].count) of \(tiles) q tiles") }
            for t in 0..<tiles where coverage[b][t, default: 0] != kvLens[b] {
                out.append("request \(b) tile \(t): kv covered to \(coverage[b][t, default: 0]) of \(kvLens[b])")
            }
        }
        if mergeIndptr.count != qoLens.reduce(0, +) + 1 { out.append("mergeIndptr has \(mergeIndptr.count) entries") }
        return out
    }
}
