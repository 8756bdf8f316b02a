import Testing

@testable import FlashInferCUDA

/// The ordering rules of docs/ORDERING.md (rule 2 and the frees), as `DeviceBuffer` applies them:
/// which streams an operation waits for. The GPU side runs under `flashinfer check --threads N`.
@Suite struct StreamOrderTests {
    struct FakeStream: StreamIdentity, Equatable, CustomStringConvertible {
        var id: Int
        func isSame(as other: FakeStream) -> Bool { id == other.id }
        var description: String { "s\(id)" }
    }
    let a = FakeStream(id: 1), b = FakeStream(id: 2), c = FakeStream(id: 3)

    @Test func sameStreamNeverWaits() {
        var log = StreamUseLog<FakeStream>()
        #expect(log.write(on: a) == [])
        #expect(log.read(on: a) == [])
        #expect(log.write(on: a) == [])
        #expect(log.read(on: a) == [])
        #expect(log.streamsBeforeFree(on: a) == [])
        #expect(log.streamsBeforeFree(on: nil) == [a])
    }

    @Test func readAfterAnotherStreamsWriteWaitsOnce() {
        var log = StreamUseLog<FakeStream>()
        _ = log.write(on: a)  // e.g. an upload on a
        #expect(log.read(on: b) == [a])  // a kernel on b reads it: b waits for a
        #expect(log.read(on: b) == [])   // already ordered after that write
        #expect(log.read(on: c) == [a])
        #expect(log.writer == a)
        #expect(log.users == [a, b, c])
    }

    @Test func writeWaitsForEveryOtherUserSinceTheLastWrite() {
        var log = StreamUseLog<FakeStream>()
        _ = log.write(on: a)
        _ = log.read(on: b)
        _ = log.read(on: c)
        // Write-after-read: b's new write must wait for a's write and c's read (and not itself).
        #expect(log.write(on: b) == [a, c])
        #expect(log.writer == b && log.users == [b])
        // The earlier users are ordered before b now: a read on a waits for b only.
        #expect(log.read(on: a) == [b])
    }

    @Test func readsOfAnUnwrittenBufferWaitForNothingButOrderTheNextWrite() {
        var log = StreamUseLog<FakeStream>()
        #expect(log.read(on: a) == [])
        #expect(log.read(on: b) == [])
        #expect(log.write(on: c) == [a, b])
    }

    @Test func freesComeAfterEveryRecordedUse() {
        var log = StreamUseLog<FakeStream>()
        _ = log.write(on: a)
        _ = log.read(on: b)
        _ = log.read(on: c)
        // A stream-ordered free on a waits for b and c; a host-side free synchronizes all three.
        #expect(log.streamsBeforeFree(on: a) == [b, c])
        #expect(log.streamsBeforeFree(on: nil) == [a, b, c])
        // After a write on c, only c has pending use.
        _ = log.write(on: c)
        #expect(log.streamsBeforeFree(on: a) == [c])
        #expect(log.streamsBeforeFree(on: nil) == [c])
    }
}
