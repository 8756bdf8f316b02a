import Testing

@testable import FlashInfer

/// The Hopper prefill tier's host side (no GPU): the default tier, the catalogue entries, the spec
/// naming and shared-memory size (the kernel's static_assert checks the size under NVRTC).
struct HopperPrefillTests {
    @Test func defaultTierIsAuto() {
        #expect(AttentionOptions().tier == .auto)
        #expect(AttentionOptions(tier: .auto).tier == .auto)
        #expect(PrefillTier(rawValue: "hopper") == .hopper)
    }

    @Test func catalogueHasEveryHopperSpec() {
        let specs = kernelCatalog().compactMap { $0.spec as? HopperPrefillSpec }
        #expect(specs.count == 10)
        #expect(Set(specs.map(\.name)).count == specs.count)
        for d in HopperPrefillSpec.headDims {
            for dt in [DType.f16, .bf16] {
                for causal in [false, true] {
                    #expect(specs.contains(HopperPrefillSpec(dtype: dt, headDim: d, causal: causal, overlap: true)))
                }
            }
        }
    }

    @Test func sharedMemoryFitsOneCTAPerSM() {
        let s = HopperPrefillSpec(dtype: .f16, headDim: 128, causal: true)
        // 1 KiB alignment slack + Q 32 KiB + 2 stages × (K + V) 64 KiB + 9 mbarriers.
        #expect(s.sharedBytes == 1024 + 32768 + 2 * 65536 + 72)
        #expect(s.sharedBytes <= 227 * 1024)
        #expect(s.source().contains("HopperPrefillTraits<\(DType.f16.cudaTypeName), 128, true, 2, \(s.overlap)>"))
    }
}

/// The Hopper batch-prefill tier's host side (no GPU): the catalogue, the spec, the CPU backend
/// ignoring the tier, and the plan the Hopper tier needs (128-row q tiles, no split).
struct HopperBatchPrefillTests {
    @Test func catalogueHasEveryHopperBatchSpec() {
        let specs = kernelCatalog().compactMap { $0.spec as? HopperBatchPrefillSpec }
        #expect(specs.count == 20)
        #expect(Set(specs.map(\.name)).count == specs.count)
        for d in HopperBatchPrefillSpec.headDims {
            for dt in [DType.f16, .bf16] {
                for causal in [false, true] {
                    for ps in [16, 0] { #expect(specs.contains(HopperBatchPrefillSpec(dtype: dt, headDim: d, causal: causal, pageSize: ps))) }
                }
            }
        }
        for ps in HopperBatchPrefillSpec.pageSizes { #expect(specs.contains { $0.pageSize == ps }) }
    }

    @Test func specSourceAndSharedMemory() {
        let s = HopperBatchPrefillSpec(dtype: .bf16, headDim: 128, causal: true, pageSize: 16)
        #expect(s.name == "hopper_batch_prefill_bf16_d128_causal_paged_p16_s2")
        #expect(s.sharedBytes == HopperPrefillSpec(dtype: .bf16, headDim: 128, causal: true).sharedBytes)
        #expect(s.source().contains("hopper_batch_prefill<Traits, 16>"))
        #expect(s.source().contains("HopperPrefillTraits<\(DType.bf16.cudaTypeName), 128, true, 2, true>"))
        let r = HopperBatchPrefillSpec(dtype: .f16, headDim: 64, causal: false, pageSize: 0)
        #expect(r.name == "hopper_batch_prefill_f16_d64_ragged_s2")
        #expect(r.source().contains("hopper_batch_prefill<Traits, 0>"))
    }

    /// The CPU backend plans no tier (and `.hopper` is not refused there: the reference has one path).
    @Test func cpuPlanHasNoTier() throws {
        let w = BatchPrefillAttention(backend: .cpu)
        let table = PageTable.contiguous(seqLens: [300, 1000], pageSize: 3)
        try w.plan(qoIndptr: [0, 128, 256], table: table, numQOHeads: 8, numKVHeads: 2, headDim: 128, dtype: .f16,
                   options: AttentionOptions(causal: true, positionEncoding: .ropeLlama(), tier: .hopper))
        #expect(w.tier == nil && w.tierFallback == nil)
    }

    /// The plan the Hopper tier runs (P4): 128-row q tiles and no split; every (row, key) covered once.
    @Test func hopperPlanIsUnsplitWith128RowTiles() {
        let qo = Array(repeating: 128, count: 32), kv = Array(repeating: 4096, count: 32)
        let p = BatchPrefillPlan.make(qoLens: qo, kvLens: kv, pageSize: 16, groupSize: 4, numKVHeads: 8, headDim: 128, numSMs: 132,
                                      ctaTileQ: HopperBatchPrefillSpec.ctaQ, disableSplit: true)
        #expect(!p.splitKV && p.ctaTileQ == 128 && p.workItems == 32 * 4)
        #expect(p.violations(qoLens: qo, kvLens: kv).isEmpty)
    }
}
