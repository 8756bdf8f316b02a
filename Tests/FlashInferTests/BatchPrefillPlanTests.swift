import Testing

@testable import FlashInfer

@Suite struct BatchPrefillPlanTests {
    @Test func tileRuleMatchesUpstream() {
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 65, headDim: 128) == 128)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 65, headDim: 256) == 64)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 64, headDim: 128) == 64)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 17, headDim: 64) == 64)
        #expect(BatchPrefillPlan.ctaTileQ(averagePackedQoLen: 16, headDim: 64) == 16)
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
