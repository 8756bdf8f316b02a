import Testing

@testable import FlashInfer

@Suite struct BatchPrefillPlanTests {
    /// Graph mode's padded grid holds any plan within the capacity: each request takes
    /// ceil(packed rows / tile) items (at least one), so Σ ≤ maxQORows·group/tile + maxBatch.
    @Test func graphModeGridHoldsEveryPlanWithinTheCapacity() {
        let cap = GraphCapacity(maxBatch: 8, maxPages: 768, maxQORows: 600)
        #expect(GraphCapacity(maxBatch: 4, maxPages: 9).maxQORows == 4)
        let maxItems = BatchPrefillAttention.graphItems(cap, groupSize: 4, ctaQ: 128)
        #expect(maxItems == 19 + 8)
        var rng = TestRNG(seed: 77)
        for _ in 0..<200 {
            let b = 1 + Int(rng.unit() * 8)
            var qo = (0..<b).map { _ in Int(rng.unit() * 100) }
            let scale = Double(cap.maxQORows) / Double(max(qo.reduce(0, +), 1))
            if scale < 1 { qo = qo.map { Int(Double($0) * scale) } }
            let plan = BatchPrefillPlan.make(qoLens: qo, kvLens: qo.map { $0 + 50 }, pageSize: 16, groupSize: 4, numKVHeads: 4,
                                             headDim: 128, numSMs: 132, ctaTileQ: 128, disableSplit: true)
            #expect(plan.workItems <= maxItems && !plan.splitKV)
        }
    }

    /// The upload order (each request's q tiles last-first, chunks in order) built in O(n) equals
    /// the order a full sort by (request, q tile descending, chunk) gives, split and unsplit.
    @Test(arguments: [false, true])
    func reversedTileOrderEqualsTheSortedOrder(split: Bool) {
        var rng = TestRNG(seed: split ? 5 : 6)
        let batch = 23
        let qo = (0..<batch).map { _ in 1 + Int(rng.unit() * 700) }
        let kv = qo.map { $0 + Int(rng.unit() * 9000) }
        let plan = BatchPrefillPlan.make(qoLens: qo, kvLens: kv, pageSize: 16, groupSize: 4, numKVHeads: 8, headDim: 128,
                                         numSMs: 132, fixedSplitPages: split ? 64 : nil, disableSplit: !split)
        #expect(plan.splitKV == split)
        let sorted = (0..<plan.workItems).sorted { a, b in
            let (ra, rb) = (plan.requestIndices[a], plan.requestIndices[b])
            if ra != rb { return ra < rb }
            let (ta, tb) = (plan.qoTileIndices[a], plan.qoTileIndices[b])
            if ta != tb { return ta > tb }
            return plan.kvTileIndices[a] < plan.kvTileIndices[b]
        }
        #expect(BatchPrefillDevicePlan.reversedTileOrder(plan) == sorted)
    }

    @Test func tileRuleMatchesUpstream() {
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 65, headDim: 128) == 128)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 65, headDim: 256) == 64)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 64, headDim: 128) == 64)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 17, headDim: 64) == 64)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 16, headDim: 64) == 16)
    }

    @Test func kernelTileIsTheKernelsRowsPerCTA() {
        #expect(BatchPrefillPlan.kernelCtaTileQ(averagePackedQoLen: 512, headDim: 128) == 128)  // P4
        #expect(BatchPrefillPlan.kernelCtaTileQ(averagePackedQoLen: 512, headDim: 256) == 64)
        #expect(BatchPrefillPlan.kernelCtaTileQ(averagePackedQoLen: 64, headDim: 64) == 64)
        #expect(BatchPrefillPlan.kernelCtaTileQ(averagePackedQoLen: 4, headDim: 128) == 64)   // upstream: 16
        // The batch kernel's tile has those rows.
        #expect(PrefillTile.batch(headDim: 128, plain: true, ctaQ: 128) == PrefillTile(mmaQ: 2, ctaKV: 64, kvSub: 64))
        #expect(PrefillTile.batch(headDim: 128, plain: false, ctaQ: 64) == PrefillTile(mmaQ: 1, ctaKV: 64, kvSub: 32))
        #expect(PrefillTile.batch(headDim: 256, plain: true, ctaQ: 128).ctaQ == 64)
    }

    /// The 16-row tile for decode-like batches that fill the GPU unsplit (D2, C1), the 64-row tile
    /// below (D1, D3) and wherever the 16-row tile does not apply (head dim, FP8, no shape given).
    @Test func sixteenRowTileForDecodeBatchesThatFillTheGPU() {
        guard BatchPrefillPlan.sixteenRowTileMode == -1 else { return }  // FLASHINFER_PREFILL_TILE16 overrides the rule
        func tile(_ ctas: Int?, headDim: Int = 128) -> Int {
            BatchPrefillPlan.kernelCtaTileQ(averagePackedQoLen: 4, headDim: headDim, sixteenRowTile: true, ctas: ctas, numSMs: 132)
        }
        #expect(tile(256 * 8) == 16)  // D2, C1: 7.8 waves of 264 slots
        #expect(tile(128 * 8) == 16)  // 3.9 waves
        #expect(tile(64 * 8) == 64)   // D1: 1.9 waves
        #expect(tile(nil) == 64)
        #expect(tile(256 * 8, headDim: 64) == 64)
        #expect(PrefillTile.batch(headDim: 128, plain: true, ctaQ: 16) == PrefillTile(mmaQ: 1, ctaKV: 128, kvSub: 32, kvWarps: 4))
        // Both 16-row forms take 68 KiB (3 CTAs per SM): one K and one V tile of 128 keys, or two of 64.
        #expect(PrefillTile(mmaQ: 1, ctaKV: 128, kvSub: 32, kvWarps: 4).sharedBytes(headDim: 128) == 69_632)
        #expect(PrefillTile(mmaQ: 1, ctaKV: 64, kvSub: 16, kvWarps: 4).sharedBytes(headDim: 128) == 69_632)
        func spec(_ b: Int, kv: DType? = nil) -> PrefillSpec {
            BatchPrefillAttention.kernelSpec(qoLens: Array(repeating: 1, count: b), groupSize: 4, headDim: 128, dtype: .f16, kvDType: kv,
                                             options: AttentionOptions(), paged: true, numKVHeads: 8, numSMs: 132)
        }
        #expect(spec(256).tile.description == "q16kv128s32w4")
        #expect(spec(64).tile.ctaQ == 64)
        #expect(spec(256, kv: .e4m3).tile.ctaQ == 64)
        // The path model knows: D2's tensor-core time is the 16-row tile's.
        let m = DecodePathModel(hardware: .h200)
        let d2 = DecodePathModel.Shape(kvLens: Array(repeating: 1024, count: 256), pageSize: 16, numKVHeads: 8, groupSize: 4, headDim: 128)
        #expect(m.usesSixteenRowTile(d2))
        #expect(!m.usesSixteenRowTile(DecodePathModel.Shape(kvLens: Array(repeating: 4096, count: 64), pageSize: 16, numKVHeads: 8,
                                                            groupSize: 4, headDim: 128)))
        #expect(m.predict(d2).prefersTensorCores)
        // The catalogue (NVRTC's zero-spill gate) compiles both 16-row forms of every 16-row entry.
        let tiles = kernelCatalog().compactMap { ($0.spec as? PrefillSpec)?.tile }.filter { $0.ctaQ == 16 }
        #expect(tiles.filter { $0.ctaKV == 128 }.count == tiles.filter { $0.ctaKV == 64 }.count)
        #expect(tiles.filter { $0.ctaKV == 128 }.count == 8)
    }

    /// The page-table lookup's j / page_size by multiply-high is exact for every page size the
    /// cache allows and every token index below 2^31.
    @Test func fastDivisionByPageSizeIsExact() {
        var rng = TestRNG(seed: 11)
        for d in Array(1...1100) + [4096, 65_537, 1 << 20, (1 << 30) + 7] {
            let (m, l) = fastDivisor(d)
            var js: [UInt64] = [0, 1, UInt64(d - 1), UInt64(d), UInt64(d + 1), (1 << 31) - 1]
            for _ in 0..<64 { js.append(rng.next() % (1 << 31)) }
            for j in js {
                let q = ((j * UInt64(m)) >> 32 + j) >> UInt64(l)
                #expect(q == j / UInt64(d), "d \(d), j \(j)")
            }
        }
        #expect(fastDivisor(16) == (1, 4) && fastDivisor(1) == (1, 0))
        #expect(fastDivisor(3) == (1_431_655_766, 2))
    }

    @Test func workloadP4DoesNotSplit() {
        let p = BatchPrefillPlan.make(qoLens: Array(repeating: 128, count: 32), kvLens: Array(repeating: 4224, count: 32),
                                      pageSize: 16, groupSize: 4, numKVHeads: 8, headDim: 128, numSMs: 132)
        #expect(p.ctaTileQ == 128 && !p.splitKV && p.workItems == 128)
        #expect(p.violations(qoLens: Array(repeating: 128, count: 32), kvLens: Array(repeating: 4224, count: 32)).isEmpty)
    }

    @Test func aSingleLongRequestSplits() {
        // 1 request, 16 queries (packed 64 → one tile of 64), 32768 keys: one tile cannot fill 132 SMs.
        let p = BatchPrefillPlan.make(qoLens: [16], kvLens: [32768], pageSize: 16, groupSize: 4, numKVHeads: 8, headDim: 128, numSMs: 132)
        #expect(p.ctaTileQ == 64)
        #expect(p.splitKV)
        #expect(p.workItems <= 2 * 132 / 8)
        #expect(p.mergeIndptr.count == 17 && p.mergeIndptr[1] == Int32(p.workItems))
        #expect(p.violations(qoLens: [16], kvLens: [32768]).isEmpty)
    }

    @Test(arguments: 0..<40)
    func propertiesHoldOnRandomBatches(seed: Int) {
        var rng = TestRNG(seed: UInt64(seed) &* 104729 &+ 3)
        let batch = 1 + Int(rng.next() % 40)
        let qo = (0..<batch).map { _ in Int(rng.next() % 600) }
        let kv = qo.map { $0 + Int(rng.next() % 5000) }
        let group = [1, 4, 8][Int(rng.next() % 3)]
        let ps = [1, 8, 16][Int(rng.next() % 3)]
        let p = BatchPrefillPlan.make(qoLens: qo, kvLens: kv, pageSize: ps, groupSize: group, numKVHeads: 8, headDim: 128, numSMs: 132)
        #expect(p.violations(qoLens: qo, kvLens: kv) == [], "seed \(seed)")
        #expect(p == BatchPrefillPlan.make(qoLens: qo, kvLens: kv, pageSize: ps, groupSize: group, numKVHeads: 8, headDim: 128, numSMs: 132))
    }
}
