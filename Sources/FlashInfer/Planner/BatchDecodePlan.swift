/// The CPU schedule of a batch decode step (upstream `scheduler.cuh`,
/// `BatchDecodeWithPagedKVCacheWorkEstimationDispatched` + `DecodeSplitKVIndptr`).
///
/// A CTA handles one (work item, KV head); a work item is one KV chunk of one request. When the
/// batch alone cannot fill the GPU, long requests are cut into chunks of `chunkPages` pages so
/// that `workItems · numKVHeads ≤ maxGridSize`, and the partial states are merged afterwards
/// (base-2 LSE merge). Pure and deterministic: no GPU calls.
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
    /// D1 (64 × 4096 tokens, 8 heads): 64 · 8 = 512 ≥ 264 → no split, 64 work items.
    ///
    /// - Parameters:
    ///   - numPages: pages per request (`kv_indptr[b+1] − kv_indptr[b]`).
    ///   - fixedSplitPages: force this chunk size (batch-invariant results, upstream's `fixed_split_size`).
    ///   - disableSplit: never split (upstream's `disable_split_kv`).
    public static func make(numPages: [Int], pageSize: Int, numKVHeads: Int, maxGridSize: Int,
                            fixedSplitPages: Int? = nil, disableSplit: Bool = false) -> BatchDecodePlan {
        precondition(pageSize >= 1 && numKVHeads >= 1 && maxGridSize >= 1)
        let batch = numPages.count
        let maxPages = max(numPages.max() ?? 1, 1)
        let chunk: Int
        if let f = fixedSplitPages {
            chunk = max(f, 1)
        } else if disableSplit || batch * numKVHeads >= maxGridSize {
            chunk = maxPages
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
}
