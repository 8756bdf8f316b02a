import Testing

@testable import FlashInfer

@Suite struct BatchDecodePlanTests {
    static let h100Grid = 132 * 2

    @Test func workloadD3SplitsEachRequestInTwo() {
        let p = BatchDecodePlan.make(numPages: Array(repeating: 2048, count: 16), pageSize: 16, numKVHeads: 8, maxGridSize: Self.h100Grid)
        #expect(p.splitKV)
        #expect(p.chunkPages == 1024)
        #expect(p.workItems == 32)
        #expect(p.violations(seqLens: Array(repeating: 32768, count: 16)).isEmpty)
    }

    @Test func workloadD1DoesNotSplit() {
        let p = BatchDecodePlan.make(numPages: Array(repeating: 256, count: 64), pageSize: 16, numKVHeads: 8, maxGridSize: Self.h100Grid)
        #expect(!p.splitKV)
        #expect(p.workItems == 64)
        #expect(p.chunkPages == 256)
    }

    /// D1 on an H200 at the group-4 kernel's 3 CTAs per SM (396 slots): unsplit, 512 CTAs are 1.29
    /// waves; the wave-aware split cuts each request in 3 chunks of 86 pages: 1536 CTAs = 3.88 waves.
    @Test func workloadD1WaveAwareSplitOnTheH200Grid() {
        let slots = 3 * 132
        let seqLens = Array(repeating: 4096, count: 64)
        let p = BatchDecodePlan.make(numPages: Array(repeating: 256, count: 64), pageSize: 16, numKVHeads: 8, maxGridSize: slots)
        #expect(p.splitKV)
        #expect(p.chunkPages == 86)
        #expect(p.workItems == 192)
        let waves = p.waves(slots: slots)
        #expect(waves > 3.85 && waves <= 4, "\(waves) waves")
        #expect(p.violations(seqLens: seqLens).isEmpty)
        #expect(p.oIndptr == (0...64).map { Int32(3 * $0) })
        #expect(p.chunkIndices == Array((0..<64).map { _ in [Int32(0), 1, 2] }.joined()))
        // Without the rule (CUDA-graph mode): unsplit, 1.29 waves.
        let old = BatchDecodePlan.make(numPages: Array(repeating: 256, count: 64), pageSize: 16, numKVHeads: 8, maxGridSize: slots,
                                       waveAware: false)
        #expect(!old.splitKV && abs(old.waves(slots: slots) - 1.293) < 0.01)
        // At 2 CTAs per SM (group 8) the unsplit 1.94 waves are left alone.
        let g8 = BatchDecodePlan.make(numPages: Array(repeating: 256, count: 64), pageSize: 16, numKVHeads: 8, maxGridSize: 264)
        #expect(!g8.splitKV)
    }

    /// Every wave-aware split fills its waves better than the unsplit grid did, to ≥ 85 % of
    /// `ceil(waves)` (or stays unsplit); grids of many waves and short requests are not cut.
    @Test func waveAwareSplitsLandNearWholeWaves() {
        for slots in [264, 396, 528] {
            for b in [33, 48, 64, 100, 128, 150] {
                for kv in [1024, 4096, 32768] {
                    let pages = Array(repeating: kv / 16, count: b)
                    let p = BatchDecodePlan.make(numPages: pages, pageSize: 16, numKVHeads: 8, maxGridSize: slots)
                    #expect(p.violations(seqLens: Array(repeating: kv, count: b)).isEmpty)
                    let w = p.waves(slots: slots)
                    if p.splitKV && b * 8 >= slots {  // (smaller batches: the one-wave split, as before)
                        let w0 = BatchDecodePlan.make(numPages: pages, pageSize: 16, numKVHeads: 8, maxGridSize: slots,
                                                      waveAware: false).waves(slots: slots)
                        #expect(w / w.rounded(.up) >= 0.85, "B=\(b) kv=\(kv) slots \(slots): \(w) waves")
                        #expect(w / w.rounded(.up) > w0 / w0.rounded(.up), "B=\(b) kv=\(kv) slots \(slots): \(w) waves, \(w0) unsplit")
                    }
                }
            }
        }
        // 256 × 4096 on 396 slots: 5.2 waves unsplit, left alone (measured at the bandwidth bound).
        #expect(!BatchDecodePlan.make(numPages: Array(repeating: 256, count: 256), pageSize: 16, numKVHeads: 8, maxGridSize: 396).splitKV)
        // 64 × 512: chunks would be shorter than the per-wave overheads pay for.
        #expect(!BatchDecodePlan.make(numPages: Array(repeating: 32, count: 64), pageSize: 16, numKVHeads: 8, maxGridSize: 396).splitKV)
    }

    @Test func fixedAndDisabledSplit() {
        let pages = [10, 300, 1]
        let f = BatchDecodePlan.make(numPages: pages, pageSize: 16, numKVHeads: 8, maxGridSize: Self.h100Grid, fixedSplitPages: 128)
        #expect(f.chunkPages == 128 && f.oIndptr == [0, 1, 4, 5])
        let d = BatchDecodePlan.make(numPages: pages, pageSize: 16, numKVHeads: 8, maxGridSize: Self.h100Grid, disableSplit: true)
        #expect(!d.splitKV && d.workItems == 3)
    }

    /// Properties on random batches: coverage exactly once, chunk bound, grid bound, determinism.
    @Test(arguments: 0..<40)
    func propertiesHoldOnRandomBatches(seed: Int) {
        var rng = TestRNG(seed: UInt64(seed) &* 7919 &+ 1)
        let pageSize = [1, 8, 16][Int(rng.next() % 3)]
        let batch = 1 + Int(rng.next() % 200)
        let seqLens = (0..<batch).map { _ in Int(rng.next() % 20000) }
        let pages = seqLens.map { ($0 + pageSize - 1) / pageSize }
        let heads = [1, 4, 8, 32][Int(rng.next() % 4)]
        let grid = [Self.h100Grid, 396][seed % 2]
        let p = BatchDecodePlan.make(numPages: pages, pageSize: pageSize, numKVHeads: heads, maxGridSize: grid)
        #expect(p.violations(seqLens: seqLens) == [], "seed \(seed)")
        #expect(p == BatchDecodePlan.make(numPages: pages, pageSize: pageSize, numKVHeads: heads, maxGridSize: grid))
        if p.splitKV { #expect(p.chunkPages >= max(128 / pageSize, 1)) }
        // Chunks in order within each request, the merge indptr counting them.
        for b in 0..<p.batchSize {
            let lo = Int(p.oIndptr[b]), hi = Int(p.oIndptr[b + 1])
            #expect(p.chunkIndices[lo..<hi].elementsEqual((0..<Int32(hi - lo))), "seed \(seed) request \(b)")
        }
        #expect(p.oIndptr.last.map(Int.init) == p.workItems)
    }

    @Test func violationsAreDetected() {
        var p = BatchDecodePlan.make(numPages: [4, 4], pageSize: 16, numKVHeads: 1, maxGridSize: 100, fixedSplitPages: 2)
        #expect(p.violations(seqLens: [64, 64]).isEmpty)
        p.chunkIndices[1] = 0  // request 0's second chunk duplicates the first
        #expect(!p.violations(seqLens: [64, 64]).isEmpty)
    }
}
