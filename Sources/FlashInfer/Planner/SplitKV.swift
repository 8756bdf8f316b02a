/// How a single-request decode cuts its KV range into chunks, one CTA per (chunk, KV head).
public struct DecodeSplit: Sendable, Hashable, CustomStringConvertible {
    /// Keys per chunk: a multiple of the kernel's tile (only the last chunk has a partial tile).
    public var chunkSize: Int
    /// Chunks along the KV range (CTAs per KV head). 1 means no split: the kernel writes the
    /// output directly and no merge runs.
    public var numChunks: Int

    public init(chunkSize: Int, numChunks: Int) {
        self.chunkSize = chunkSize
        self.numChunks = numChunks
    }

    public var isSplit: Bool { numChunks > 1 }
    public var description: String { "\(numChunks) chunk\(numChunks == 1 ? "" : "s") of \(chunkSize) keys" }
}

/// The split-KV chunk size for single decode: the smallest chunk (a whole number of tiles, and at
/// least `minChunkKeys`) that keeps the grid within one full wave of the GPU.
///
/// - `resident = ctasPerSM · smCount` CTAs run at once; `ctasPerChunk` CTAs (KV heads × head
///   groups) read each chunk position, so at most `maxChunks = resident / ctasPerChunk` chunks
///   fill the GPU.
/// - `chunkSize = roundUp(ceil(kvLen / maxChunks), tileKeys)`, at least `minChunkKeys` (rounded
///   up to a tile): below that the merge costs more than the parallelism buys (upstream: 256).
/// - `numChunks = ceil(kvLen / chunkSize)`; 1 means no split.
///
/// Worked example (workload D6 on an H100: kvLen 32768, 8 KV heads, head_dim 128 so 32-key
/// tiles, 2 CTAs per SM, 132 SMs): resident 264, maxChunks 264/8 = 33,
/// ceil(32768/33) = 993 → 1024 keys (32 tiles), numChunks 32: a grid of 32 × 8 = 256 CTAs
/// (97% of the 264 slots), each reading 1024 keys. The same problem with kvLen 4096 gives
/// ceil(4096/33) = 125 → 128, raised to the 256-key minimum: 16 chunks of 256, 128 CTAs.
/// A problem that already fills the GPU without splitting (e.g. 64 KV heads × 3 CTAs/SM on
/// 16 SMs, kvLen 1000) gets one chunk of 1024 keys.
///
/// `kvLen == 0` gives one (empty) chunk of `tileKeys`: the kernel writes output 0 and LSE −inf.
public func decodeSplit(kvLen: Int, ctasPerChunk: Int, ctasPerSM: Int, smCount: Int, tileKeys: Int,
                        minChunkKeys: Int = 256) -> DecodeSplit {
    precondition(ctasPerChunk > 0 && tileKeys > 0 && kvLen >= 0, "decodeSplit: bad arguments")
    guard kvLen > 0 else { return DecodeSplit(chunkSize: tileKeys, numChunks: 1) }
    let resident = max(1, ctasPerSM) * max(1, smCount)
    let maxChunks = max(1, resident / ctasPerChunk)
    let minChunk = roundUp(max(1, minChunkKeys), tileKeys)
    let chunk = max(roundUp(ceilDiv(kvLen, maxChunks), tileKeys), minChunk)
    return DecodeSplit(chunkSize: chunk, numChunks: ceilDiv(kvLen, chunk))
}

/// The split that single decode plans by default: one wave at **one CTA per SM**
/// (`decodeSplit` with `ctasPerSM: 1`), whatever the kernel's occupancy allows.
///
/// Measured on an H100 (bench/NOTES.md, 2026-11-28, commit 28370ae): one CTA per SM was the
/// fastest or within 2 % in every shape swept. D6 (kvLen 32768, 32/8): 16 chunks 52.0 µs against
/// 53.6 (33) and 53.8 (49, three per SM); kvLen 131072: 178.0 against 185.4 µs; MHA 32/32: 4
/// chunks 175.6 against 181.5 µs; only group 8 (64/8, two CTAs per SM by registers) was 2 %
/// slower (58.2 against 57.1 µs). Each CTA streams one long contiguous range, the decode grid ends
/// sooner (45.4 against 47.1 µs on D6) and the merge folds fewer partials.
///
/// Worked example (D6 on an H100: 8 KV heads, 32-key tiles, 132 SMs): maxChunks 132/8 = 16,
/// 32768/16 = 2048 keys: 16 chunks, a grid of 128 CTAs.
public func singleDecodeSplit(kvLen: Int, ctasPerChunk: Int, smCount: Int, tileKeys: Int) -> DecodeSplit {
    decodeSplit(kvLen: kvLen, ctasPerChunk: ctasPerChunk, ctasPerSM: 1, smCount: smCount, tileKeys: tileKeys)
}

/// A forced number of chunks (for experiments and tests): exactly `numChunks` chunks of
/// `roundUp(ceil(kvLen / numChunks), tileKeys)` keys, so trailing chunks may be empty (the merge
/// handles them: LSE −inf, weight 0).
public func decodeSplit(kvLen: Int, forcedChunks numChunks: Int, tileKeys: Int) -> DecodeSplit {
    precondition(numChunks > 0 && tileKeys > 0 && kvLen >= 0, "decodeSplit: bad arguments")
    let chunk = max(tileKeys, roundUp(ceilDiv(kvLen, numChunks), tileKeys))
    return DecodeSplit(chunkSize: chunk, numChunks: numChunks)
}

@inline(__always) private func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }
@inline(__always) private func roundUp(_ a: Int, _ b: Int) -> Int { ceilDiv(a, b) * b }
