/// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror & Shaw, "Parallel random
/// numbers: as easy as 1, 2, 3" (SC'11; the Random123 library), and the cuRAND state built on it
/// (`curandStatePhilox4_32_10_t`), which upstream's sampling kernels draw from
/// (`docs/../SEMANTICS.md` §2.8: `curand_init(seed, subsequence = row, offset)`, then
/// `curand_uniform`).
///
/// A block is a pure function of a 128-bit counter and a 64-bit key: ten rounds of
/// `(hi(M0·c0) ^ c1 ^ k0, lo(M1·c2), hi(M1·c2) ^ c3 ^ k1, lo(M0·c0))` (with `M0·c0`, `M1·c2` in
/// 64 bits), the key bumped by the Weyl constants `W` between rounds.
///
/// Known answers (Random123 `kat_vectors`, checked in `PhiloxTests`):
/// counter `(0,0,0,0)`, key `(0,0)` → `6627e8d5 e169c58d bc57ac4c 9b00dbd8`.
public enum Philox4x32 {
    /// The round multipliers `M0`, `M1`.
    public static let multipliers: (UInt32, UInt32) = (0xD251_1F53, 0xCD9E_8D57)
    /// The key increments (Weyl sequence): the golden ratio and √3 − 1, as 32-bit fractions.
    public static let weyl: (UInt32, UInt32) = (0x9E37_79B9, 0xBB67_AE85)
    /// Rounds of Philox4x32-10.
    public static let rounds = 10

    /// One Philox4x32-10 block: four 32-bit words from `counter` and `key`.
    @inlinable
    public static func block(counter: SIMD4<UInt32>, key: SIMD2<UInt32>) -> SIMD4<UInt32> {
        var c = counter, k = key
        for r in 0..<rounds {
            if r > 0 { k &+= SIMD2(weyl.0, weyl.1) }
            let p0 = UInt64(multipliers.0) &* UInt64(c[0])  // M0·c0
            let p1 = UInt64(multipliers.1) &* UInt64(c[2])  // M1·c2
            c = SIMD4(UInt32(truncatingIfNeeded: p1 >> 32) ^ c[1] ^ k[0],
                      UInt32(truncatingIfNeeded: p1),
                      UInt32(truncatingIfNeeded: p0 >> 32) ^ c[3] ^ k[1],
                      UInt32(truncatingIfNeeded: p0))
        }
        return c
    }
}

/// cuRAND's Philox4x32-10 stream (`curandStatePhilox4_32_10_t`), word for word:
/// - `init(seed:subsequence:offset:)` is `curand_init`: key = `(lo(seed), hi(seed))`, counter =
///   `(0, 0, lo(subsequence), hi(subsequence))` (`skipahead_sequence`), then `skipahead(offset)`,
///   which advances `offset / 4` blocks (the low 64 bits of the counter, with carry) and starts at
///   word `offset % 4` of the block.
/// - `next()` is `curand`: the words of the current block in order, then the next counter's block.
/// - `uniform()` is `curand_uniform`: `Float(x)·2⁻³² + 2⁻³³` in Float32, in (0, 1].
///
/// So `PhiloxStream(seed: s, subsequence: row, offset: o).uniform()` is the first uniform
/// upstream's sampling kernels draw for `row` under `seed = s, offset = o`.
public struct PhiloxStream: Sendable, Hashable {
    /// The 128-bit counter of the current block (word 0 least significant).
    public private(set) var counter: SIMD4<UInt32>
    /// The key: the seed's low and high words.
    public let key: SIMD2<UInt32>
    /// The next word of `output` to return (cuRAND's `STATE`), 0...3.
    public private(set) var word: Int
    /// The current block, `Philox4x32.block(counter:key:)`.
    public private(set) var output: SIMD4<UInt32>

    public init(seed: UInt64, subsequence: UInt64 = 0, offset: UInt64 = 0) {
        key = SIMD2(UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
        counter = SIMD4(0, 0, UInt32(truncatingIfNeeded: subsequence), UInt32(truncatingIfNeeded: subsequence >> 32))
        word = Int(offset & 3)
        output = .zero
        Self.increment(&counter, by: offset / 4)
        output = Philox4x32.block(counter: counter, key: key)
    }

    /// Adds `n` to the counter's low 64 bits, carrying into the high 64 (`Philox_State_Incr`).
    static func increment(_ c: inout SIMD4<UInt32>, by n: UInt64) {
        let low = UInt64(c[0]) | UInt64(c[1]) << 32
        let (sum, carry) = low.addingReportingOverflow(n)
        c[0] = UInt32(truncatingIfNeeded: sum)
        c[1] = UInt32(truncatingIfNeeded: sum >> 32)
        if carry {
            let high = (UInt64(c[2]) | UInt64(c[3]) << 32) &+ 1
            c[2] = UInt32(truncatingIfNeeded: high)
            c[3] = UInt32(truncatingIfNeeded: high >> 32)
        }
    }

    /// The next 32-bit word (`curand`).
    public mutating func next() -> UInt32 {
        let r = output[word]
        word += 1
        if word == 4 {
            Self.increment(&counter, by: 1)
            output = Philox4x32.block(counter: counter, key: key)
            word = 0
        }
        return r
    }

    /// The next uniform in (0, 1] (`curand_uniform`: `x·2⁻³² + 2⁻³³` in Float32; the sum can round
    /// to exactly 1).
    public mutating func uniform() -> Float {
        Float(next()) * 0x1p-32 + 0x1p-33
    }
}
