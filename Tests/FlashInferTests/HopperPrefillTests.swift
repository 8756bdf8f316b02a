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
