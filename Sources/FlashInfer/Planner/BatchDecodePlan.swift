/// The CPU schedule of a batch decode step (upstream `scheduler.cuh`,
/// `BatchDecodeWithPagedKVCacheWorkEstimationDispatched` + `DecodeSplitKVIndptr`).
///
/// A CTA handles one (work item, KV head); a work item is one KV chunk of one request. When the
/// batch alone cannot fill the GPU, long requests are cut into chunks of `chunkPages` pages so
/// that `workItems · numKVHeads ≤ maxGridSize`, and the partial states are merged afterwards
/// (base-2 LSE merge). A batch that already fills the GPU but leaves a short last wave (e.g. D1 on
/// an H200: 512 CTAs on 396 slots, 1.29 waves) is cut too, so that the grid ends near a whole
/// number of waves (`waveAwareChunkPages`). Pure and deterministic: no GPU calls.
public struct BatchDecodePlan: Sendable, Hashable {
    public var pageSize: Int
    public var numKVHeads: Int
    /// Resident CTAs the GPU holds at once: blocks per SM × SMs.
    public var maxGridSize: Int
    /// Pages per chunk (for an unsplit plan: the longest request's pages, at least 1).
    public var chunkPages: Int
    /// Whether any request is cut into more than one chunk (partials then need a merge).
    public var splitKV: Bool
    /// Per work item: its request.
    public var requestIndices: [Int32]
    /// Per work item: its chunk number within the request (KV tokens
    /// `[chunk · chunkPages · pageSize, min(seqLen, (chunk+1) · chunkPages · pageSize))`).
    public var chunkIndices: [Int32]
    /// `[B + 1]`: request `b`'s partial outputs are rows `oIndptr[b] ..< oIndptr[b+1]` (one per chunk).
    public var oIndptr: [Int32]

    public var workItems: Int { requestIndices.count }
    public var batchSize: Int { oIndptr.count - 1 }
    public var chunkTokens: Int { chunkPages * pageSize }

    /// Plans a batch.
    ///
    /// Worked example (workload D3 on an H100, 132 SMs, 2 CTAs per SM → `maxGridSize` 264):
    /// 16 requests × 32768 tokens, page 16 → 2048 pages each, 8 KV heads. 16 · 8 = 128 < 264, so
    /// split: the smallest chunk with `Σ ceil(2048 / c) · 8 ≤ 264`, i.e. `16 · ceil(2048/c) ≤ 33`,
    /// is `c = 1024` pages → 2 chunks per request, 32 work items, 256 CTAs.
    /// D1 (64 × 4096 tokens, 8 heads): 64 · 8 = 512 ≥ 264 → 1.94 waves, nearly whole: no split,
    /// 64 work items. D1 at 3 CTAs per SM (the 16-bit group-4 kernel's occupancy, 396 slots):
    /// 512 CTAs are 1.29 waves, so the wave-aware rule cuts each request in 3 chunks of 86 pages:
    /// 192 items, 1536 CTAs = 3.88 waves (`waveAwareChunkPages`).
    ///
    /// - Parameters:
    ///   - numPages: pages per request (`kv_indptr[b+1] − kv_indptr[b]`).
    ///   - fixedSplitPages: force this chunk size (batch-invariant results, upstream's `fixed_split_size`).
    ///   - disableSplit: never split (upstream's `disable_split_kv`).
    ///   - waveAware: also split a batch that fills the GPU when its grid would end in a short
    ///     last wave (`waveAwareChunkPages`). Off for CUDA-graph mode, whose padded grid holds at
    ///     most `maxGridSize / numKVHeads` items.
    public static func make(numPages: [Int], pageSize: Int, numKVHeads: Int, maxGridSize: Int,
                            fixedSplitPages: Int? = nil, disableSplit: Bool = false, waveAware: Bool = true) -> BatchDecodePlan {
        precondition(pageSize >= 1 && numKVHeads >= 1 && maxGridSize >= 1)
        let batch = numPages.count
        let maxPages = max(numPages.max() ?? 1, 1)
        let chunk: Int
        if let f = fixedSplitPages {
            chunk = max(f, 1)
        } else if disableSplit {
            chunk = maxPages
        } else if batch * numKVHeads >= maxGridSize {
            chunk = waveAware ? waveAwareChunkPages(numPages: numPages, pageSize: pageSize, numKVHeads: numKVHeads,
                                                    slots: maxGridSize, minChunk: max(128 / pageSize, 1), maxChunk: maxPages)
                              : maxPages
        } else {
            chunk = minChunkPages(numPages: numPages, numKVHeads: numKVHeads, maxGridSize: maxGridSize,
                                  minChunk: max(128 / pageSize, 1), maxChunk: maxPages)
        }
        var req: [Int32] = [], idx: [Int32] = [], indptr: [Int32] = [0]
        for (b, n) in numPages.enumerated() {
            let chunks = max((n + chunk - 1) / chunk, 1)
            for c in 0..<chunks {
                req.append(Int32(b))
                idx.append(Int32(c))
            }
            indptr.append(indptr.last! + Int32(chunks))
        }
        return BatchDecodePlan(pageSize: pageSize, numKVHeads: numKVHeads, maxGridSize: maxGridSize, chunkPages: chunk,
                               splitKV: req.count != batch, requestIndices: req, chunkIndices: idx, oIndptr: indptr)
    }

    /// Smallest chunk (in `minChunk...maxChunk`) with `Σ max(ceil(pages_i / chunk), 1) · heads ≤ maxGridSize`;
    /// `maxChunk` when none fits (then every request is one chunk).
    static func minChunkPages(numPages: [Int], numKVHeads: Int, maxGridSize: Int, minChunk: Int, maxChunk: Int) -> Int {
        func items(_ c: Int) -> Int { numPages.reduce(0) { $0 + max(($1 + c - 1) / c, 1) } * numKVHeads }
        var lo = min(minChunk, maxChunk), hi = maxChunk
        while lo < hi {
            let mid = (lo + hi) / 2
            if items(mid) > maxGridSize { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Tokens of fixed cost per wave (CTA start-up and drain on the critical path) in the
    /// wave-aware objective: ~3 µs at an H200's per-slot streaming rate (`DecodePathModel`'s
    /// `waveFixedMicros`, ~44 ns per token per CTA with 396 CTAs resident).
    public static let waveOverheadTokens = 128
    /// Tokens of fixed cost for splitting at all (the merge launch and the partials' round trip):
    /// ~4 µs at the same rate (`DecodePathModel`'s `cudaCoreMergeMicros`), doubled to prefer
    /// not splitting on near-ties.
    public static let splitOverheadTokens = 256
    /// Grids of more waves than this are left unsplit: later waves drift apart and hide the last
    /// one's tail (H200: B = 256, kv 4096, 5.2 waves, ran at the bandwidth bound).
    public static let maxWavesForWaveSplit = 4

    /// The wave-aware chunk for a batch whose unsplit grid (`Σ 1 · heads ≥ slots`) already fills
    /// the GPU: among `c = ceil(maxChunk / k)`, `k = 1, 2, …` (down to `minChunk`), the one with
    /// the least
    ///
    ///     cost(c) = ceil(CTAs(c) / slots) · (longest chunk's tokens + waveOverheadTokens)
    ///               + (c < maxChunk ? splitOverheadTokens : 0),    CTAs(c) = Σ ceil(pages_i / c) · heads
    ///
    /// — waves treated as synchronised, each as long as its longest CTA. Ties keep the larger
    /// chunk; grids of more than `maxWavesForWaveSplit` waves unsplit are not cut.
    ///
    /// Worked example (D1 on an H200: 64 × 256 pages of 16, 8 KV heads, 396 slots):
    /// unsplit 512 CTAs → 2 waves · (4096 + 128) = 8448; k = 2 (128 pages): 1024 CTAs, 3 waves ·
    /// 2176 + 256 = 6784; k = 3 (86 pages): 1536 CTAs, 4 waves · 1504 + 256 = 6272 (the least);
    /// k = 4: 2048 CTAs, 6 · 1152 + 256 = 7168. → 86 pages, 3.88 waves.
    static func waveAwareChunkPages(numPages: [Int], pageSize: Int, numKVHeads: Int, slots: Int, minChunk: Int,
                                    maxChunk: Int) -> Int {
        func ctas(_ c: Int) -> Int { numPages.reduce(0) { $0 + max(($1 + c - 1) / c, 1) } * numKVHeads }
        func cost(_ c: Int, _ n: Int) -> Int {
            (n + slots - 1) / slots * (min(c, maxChunk) * pageSize + waveOverheadTokens) + (c < maxChunk ? splitOverheadTokens : 0)
        }
        let n0 = ctas(maxChunk)
        guard n0 <= maxWavesForWaveSplit * slots else { return maxChunk }
        var best = maxChunk, bestCost = cost(maxChunk, n0)
        var k = 2
        while true {
            let c = (maxChunk + k - 1) / k
            guard c >= minChunk else { break }
            let n = ctas(c)
            guard n <= 4 * maxWavesForWaveSplit * slots else { break }
            let v = cost(c, n)
            if v < bestCost { (best, bestCost) = (c, v) }
            k += 1
        }
        return best
    }

    /// Waves of the plan's grid on `slots` resident CTAs (`workItems · numKVHeads / slots`).
    public func waves(slots: Int) -> Double { Double(workItems * numKVHeads) / Double(max(slots, 1)) }
}
