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
        let p = BatchDecodePlan.make(numPages: pages, pageSize: pageSize, numKVHeads: heads, maxGridSize: Self.h100Grid)
        #expect(p.violations(seqLens: seqLens) == [], "seed \(seed)")
        #expect(p == BatchDecodePlan.make(numPages: pages, pageSize: pageSize, numKVHeads: heads, maxGridSize: Self.h100Grid))
        if p.splitKV { #expect(p.chunkPages >= max(128 / pageSize, 1)) }
    }

    @Test func violationsAreDetected() {
        var p = BatchDecodePlan.make(numPages: [4, 4], pageSize: 16, numKVHeads: 1, maxGridSize: 100, fixedSplitPages: 2)
        #expect(p.violations(seqLens: [64, 64]).isEmpty)
        p.chunkIndices[1] = 0  // request 0's second chunk duplicates the first
        #expect(!p.violations(seqLens: [64, 64]).isEmpty)
    }
}
