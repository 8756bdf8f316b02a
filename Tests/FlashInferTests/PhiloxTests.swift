import Testing

@testable import FlashInfer

/// Philox4x32-10 against Random123's published known-answer vectors (`kat_vectors`), and the cuRAND
/// stream semantics (`curand_init` subsequence and offset, `curand_uniform`) built on it.
@Suite struct PhiloxTests {
    @Test func random123KnownAnswers() {
        let cases: [(SIMD4<UInt32>, SIMD2<UInt32>, SIMD4<UInt32>)] = [
            (SIMD4(0, 0, 0, 0), SIMD2(0, 0), SIMD4(0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8)),
            (SIMD4(repeating: 0xffff_ffff), SIMD2(repeating: 0xffff_ffff), SIMD4(0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd)),
            (SIMD4(0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), SIMD2(0xa409_3822, 0x299f_31d0),
             SIMD4(0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1)),
        ]
        for (ctr, key, expected) in cases {
            #expect(Philox4x32.block(counter: ctr, key: key) == expected, "ctr \(ctr) key \(key)")
        }
    }

    /// `curand_init(seed, 0, 0)`: key = the seed's words, counter 0; words come out x, y, z, w,
    /// then the block of counter 1.
    @Test func streamWalksBlocksInOrder() {
        let seed: UInt64 = 0x0123_4567_89ab_cdef
        let key = SIMD2<UInt32>(0x89ab_cdef, 0x0123_4567)
        var s = PhiloxStream(seed: seed)
        let b0 = Philox4x32.block(counter: SIMD4(0, 0, 0, 0), key: key)
        let b1 = Philox4x32.block(counter: SIMD4(1, 0, 0, 0), key: key)
        let words = (0..<8).map { _ in s.next() }
        #expect(words == [b0[0], b0[1], b0[2], b0[3], b1[0], b1[1], b1[2], b1[3]])
    }

    /// `skipahead(offset)` is the same as drawing `offset` words; the subsequence sets the counter's
    /// high 64 bits.
    @Test func offsetAndSubsequence() {
        for seed: UInt64 in [0, 42, 0xdead_beef_cafe_f00d] {
            var base = PhiloxStream(seed: seed, subsequence: 7)
            var drawn: [UInt32] = []
            for _ in 0..<40 { drawn.append(base.next()) }
            for offset in 0..<33 {
                var s = PhiloxStream(seed: seed, subsequence: 7, offset: UInt64(offset))
                #expect((0..<7).map { _ in s.next() } == Array(drawn[offset..<(offset + 7)]), "seed \(seed) offset \(offset)")
            }
            let sub: UInt64 = 0x1_0000_0003
            let s = PhiloxStream(seed: seed, subsequence: sub, offset: 4 * 5 + 2)
            #expect(s.counter == SIMD4(5, 0, 3, 1))
            #expect(s.word == 2)
        }
    }

    /// A 64-bit offset carries from the counter's low half into the subsequence half.
    @Test func counterCarry() {
        var c = SIMD4<UInt32>(0xffff_ffff, 0xffff_ffff, 9, 0)
        PhiloxStream.increment(&c, by: 1)
        #expect(c == SIMD4(0, 0, 10, 0))
        c = SIMD4(0xffff_fffe, 0, 0, 0)
        PhiloxStream.increment(&c, by: 3)
        #expect(c == SIMD4(1, 1, 0, 0))
    }

    /// `curand_uniform = x·2⁻³² + 2⁻³³` in Float32: in (0, 1], 2⁻³³ at x = 0 and 1 at x = 2³² − 1.
    @Test func uniformRangeAndMean() {
        #expect(Float(UInt32(0)) * 0x1p-32 + 0x1p-33 == 0x1p-33)
        #expect(Float(UInt32.max) * 0x1p-32 + 0x1p-33 == 1)
        var s = PhiloxStream(seed: 2024, subsequence: 3, offset: 11)
        var sum = 0.0
        let n = 100_000
        for _ in 0..<n {
            let u = s.uniform()
            #expect(u > 0 && u <= 1)
            sum += Double(u)
        }
        // Mean 1/2, standard error 1/sqrt(12 n) ≈ 0.0009: 6 standard errors.
        #expect(abs(sum / Double(n) - 0.5) < 0.0055)
    }

    @Test func seedsAndOffsetsGiveDifferentStreams() {
        var a = PhiloxStream(seed: 1), b = PhiloxStream(seed: 2), c = PhiloxStream(seed: 1, offset: 4)
        let xa = (0..<4).map { _ in a.next() }, xb = (0..<4).map { _ in b.next() }, xc = (0..<4).map { _ in c.next() }
        #expect(xa != xb && xa != xc)
    }
}
