extension BatchDecodePlan {
    /// Checks the plan's invariants against the request lengths (tokens); returns the violations
    /// (empty when sound). Used by the tests and, in debug builds, by `plan()`.
    /// - every KV token of every request is covered by exactly one work item, in order;
    /// - every chunk has at most `chunkTokens` tokens;
    /// - each request has ≥ 1 work item, and `oIndptr` counts them;
    /// - a split plan fits the grid: `workItems · numKVHeads ≤ maxGridSize` (unless even one chunk
    ///   per request exceeds it, in which case there is no split), or it is a wave-aware split of a
    ///   batch that fills the grid unsplit, whose wave cost is below the unsplit plan's.
    public func violations(seqLens: [Int]) -> [String] {
        var out: [String] = []
        guard seqLens.count == batchSize else { return ["plan for \(batchSize) requests, given \(seqLens.count)"] }
        var covered = [Int](repeating: 0, count: batchSize)
        for w in 0..<workItems {
            let b = Int(requestIndices[w]), c = Int(chunkIndices[w])
            let start = c * chunkTokens, end = min(seqLens[b], start + chunkTokens)
            if seqLens[b] > 0 && start >= seqLens[b] { out.append("work item \(w) starts past request \(b)'s end") }
            if start != covered[b] && seqLens[b] > 0 { out.append("work item \(w) leaves a gap or overlap in request \(b)") }
            if end - start > chunkTokens { out.append("work item \(w) is longer than a chunk") }
            covered[b] = max(covered[b], end)
        }
        for b in 0..<batchSize {
            if covered[b] != seqLens[b] { out.append("request \(b): \(covered[b]) of \(seqLens[b]) tokens covered") }
            let n = Int(oIndptr[b + 1] - oIndptr[b])
            if n < 1 { out.append("request \(b) has no work item") }
            if requestIndices[Int(oIndptr[b])..<Int(oIndptr[b + 1])].contains(where: { Int($0) != b }) {
                out.append("oIndptr of request \(b) points at other requests' items")
            }
        }
        if splitKV && workItems * numKVHeads > maxGridSize && Int(chunkPages) > max(128 / pageSize, 1) {
            let pages = seqLens.map { ($0 + pageSize - 1) / pageSize }
            let unsplit = batchSize * numKVHeads
            let maxPages = max(pages.max() ?? 1, 1)
            func cost(_ c: Int, _ n: Int) -> Int {
                (n + maxGridSize - 1) / maxGridSize * (min(c, maxPages) * pageSize + Self.waveOverheadTokens)
                    + (c < maxPages ? Self.splitOverheadTokens : 0)
            }
            let waveSplit = unsplit >= maxGridSize && cost(chunkPages, workItems * numKVHeads) < cost(maxPages, unsplit)
            if !waveSplit { out.append("split plan has \(workItems * numKVHeads) CTAs > grid \(maxGridSize)") }
        }
        return out
    }
}
