import Testing

@testable import FlashInfer

/// The split-KV planner of single decode (`Planner/SplitKV.swift`), one test per worked example
/// of its documentation plus its edge cases.
@Suite struct SplitKVTests {
    @Test func workloadD6OnH100() {
        // kvLen 32768, 8 KV heads, 32-key tiles, 2 CTAs/SM, 132 SMs: 33 chunks max → 993 → 1024.
        let s = decodeSplit(kvLen: 32768, ctasPerChunk: 8, ctasPerSM: 2, smCount: 132, tileKeys: 32)
        #expect(s == DecodeSplit(chunkSize: 1024, numChunks: 32))
        #expect(s.isSplit)
        #expect(s.numChunks * 8 <= 2 * 132)
    }

    @Test func singleDecodeDefaultIsOneCTAPerSM() {
        // D6 on an H100: 132/8 = 16 chunks of 2048 keys, 128 CTAs.
        let s = singleDecodeSplit(kvLen: 32768, ctasPerChunk: 8, smCount: 132, tileKeys: 32)
        #expect(s == DecodeSplit(chunkSize: 2048, numChunks: 16))
        // MHA (32 KV heads): 4 chunks; 4096 keys with 8 heads: 16 chunks of the 256-key minimum.
        #expect(singleDecodeSplit(kvLen: 32768, ctasPerChunk: 32, smCount: 132, tileKeys: 32) == DecodeSplit(chunkSize: 8192, numChunks: 4))
        #expect(singleDecodeSplit(kvLen: 4096, ctasPerChunk: 8, smCount: 132, tileKeys: 32) == DecodeSplit(chunkSize: 256, numChunks: 16))
        // More heads than SMs: no split.
        #expect(!singleDecodeSplit(kvLen: 32768, ctasPerChunk: 160, smCount: 132, tileKeys: 32).isSplit)
    }

    @Test func shortSequenceRaisedToTheMinimumChunk() {
        // ceil(4096/33) = 125 → 128, raised to 256: 16 chunks.
        let s = decodeSplit(kvLen: 4096, ctasPerChunk: 8, ctasPerSM: 2, smCount: 132, tileKeys: 32)
        #expect(s == DecodeSplit(chunkSize: 256, numChunks: 16))
    }

    @Test func noSplitWhenHeadsFillTheGPU() {
        let s = decodeSplit(kvLen: 1000, ctasPerChunk: 64, ctasPerSM: 3, smCount: 16, tileKeys: 32)
        #expect(s == DecodeSplit(chunkSize: 1024, numChunks: 1))
        #expect(!s.isSplit)
    }

    @Test func emptyRangeIsOneEmptyChunk() {
        let s = decodeSplit(kvLen: 0, ctasPerChunk: 8, ctasPerSM: 2, smCount: 132, tileKeys: 64)
        #expect(s == DecodeSplit(chunkSize: 64, numChunks: 1))
    }

    @Test(arguments: [1, 17, 127, 999, 4096, 32789, 100_000])
    func chunksCoverTheRangeWithinOneWave(kvLen: Int) {
        for tile in [16, 32, 64] {
            for (heads, perSM) in [(1, 1), (4, 3), (8, 2), (32, 4), (64, 2)] {
                let s = decodeSplit(kvLen: kvLen, ctasPerChunk: heads, ctasPerSM: perSM, smCount: 132, tileKeys: tile)
                #expect(s.chunkSize % tile == 0)
                #expect(s.chunkSize >= 256)
                #expect(s.numChunks * s.chunkSize >= kvLen)            // every key covered
                #expect((s.numChunks - 1) * s.chunkSize < kvLen)       // no empty chunk
                // Within one wave unless the minimum chunk forces fewer, larger chunks.
                #expect(s.numChunks == 1 || s.numChunks * heads <= max(perSM * 132, heads))
            }
        }
    }

    @Test func forcedChunksMayLeaveEmptyTrailingChunks() {
        let s = decodeSplit(kvLen: 100, forcedChunks: 8, tileKeys: 32)
        #expect(s == DecodeSplit(chunkSize: 32, numChunks: 8))  // chunks 4...7 are empty
        #expect(decodeSplit(kvLen: 4096, forcedChunks: 1, tileKeys: 32) == DecodeSplit(chunkSize: 4096, numChunks: 1))
        #expect(decodeSplit(kvLen: 0, forcedChunks: 4, tileKeys: 32) == DecodeSplit(chunkSize: 32, numChunks: 4))
        #expect(decodeSplit(kvLen: 999, forcedChunks: 3, tileKeys: 64) == DecodeSplit(chunkSize: 384, numChunks: 3))
    }
}
