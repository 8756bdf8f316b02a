#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SplitMix64 + Box–Muller: reproducible normal inputs for the demo, checks and benches (the same
/// sequence on every machine and in every process for one seed). Inlinable: the CLI's benches and
/// demo draw millions of values from it, as they did when it lived in the CLI module.
public struct SeededRNG {
    public var state: UInt64
    @inlinable public init(seed: UInt64) { state = seed }
    @inlinable public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    @inlinable public mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    @inlinable public mutating func normal() -> Float {
        let u1 = max(uniform(), 1e-7), u2 = uniform()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * Float.pi * u2)
    }
}

/// A case's random inputs. They come from the run's seed and the case's name alone, so
/// `--seed S --filter NAME` reproduces one case of any run (whatever the shard, thread, other
/// cases or backend).
public func caseRNG(seed: UInt64, name: String) -> SeededRNG {
    SeededRNG(seed: seed ^ stableHash(name))
}

/// FNV-1a over the UTF-8 bytes: a hash that is the same in every process (unlike `Hasher`).
public func stableHash(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
