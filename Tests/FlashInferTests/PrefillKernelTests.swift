import Testing

@testable import FlashInfer
import FlashInferCUDA

/// The prefill kernel specs and tile geometry (NVRTCTests compiles every catalogue entry,
/// the prefill ones included, and checks ptxas reports no spills).
@Suite struct PrefillKernelTests {
    static var specs: [PrefillSpec] {
        kernelCatalog().compactMap { $0.spec as? PrefillSpec }
    }

    @Test func specNamesAreDistinct() {
        let names = Self.specs.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(names.count >= 10)
    }

    @Test func tileGeometry() {
        // D 128: 128 packed rows × 64 keys, 96 KiB of shared memory (two CTAs per SM).
        let t = PrefillTile.default(headDim: 128)
        #expect(t.ctaQ == 128 && t.ctaKV == 64 && t.kvSub == 32)
        #expect(PrefillTile.default(headDim: 128, plain: true).kvSub == 64)
        #expect(t.sharedBytes(headDim: 128) == 96 * 1024)
        #expect(PrefillTile.default(headDim: 256).sharedBytes(headDim: 256) == 96 * 1024)
        #expect(PrefillTile.default(headDim: 64).sharedBytes(headDim: 64) == 80 * 1024)
        for d in supportedHeadDims {
            let t = PrefillTile.default(headDim: d)
            #expect(t.ctaKV % t.kvSub == 0 && t.kvSub % 16 == 0)
            #expect(2 * t.sharedBytes(headDim: d) <= 227 * 1024, "two CTAs per SM at head dim \(d)")
        }
    }

    @Test func specFromOptions() {
        let o = AttentionOptions(causal: true, positionEncoding: .ropeLlama(), logitsSoftCap: 30, windowLeft: 13)
        let s = PrefillSpec(dtype: .bf16, headDim: 256, options: o)
        #expect(s.posEnc == .rope && s.softCap && s.causal && s.window)
        #expect(s.name == "prefill_bf16_d256_rope_cap_causal_win_q64kv32s32")
        #expect(PrefillSpec(dtype: .f16, headDim: 128, options: AttentionOptions()).name == "prefill_f16_d128_none_q128kv64s64")
    }
}
