import Dispatch
import FlashInferCUDA
import Synchronization

#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
@preconcurrency import Darwin
#endif

/// `check --noise`: a thread that keeps the GPU's copy engines and memory busy on a stream of its
/// own — a 64 MiB pageable upload, a 256 MiB device copy and a 16 MiB readback, over and over —
/// so that work on the check streams runs under contention (the conditions of issue 10).
public final class NoiseThread: @unchecked Sendable {
    private let running = Atomic<Bool>(true)
    private let rounds = Atomic<Int>(0)
    private let group = DispatchGroup()

    public init(device: Device) throws {
        let stream = try device.makeStream()
        let a = try device.allocate(byteCount: 256 << 20), b = try device.allocate(byteCount: 256 << 20)
        var rng = SeededRNG(seed: 7)
        let host = (0..<(64 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let box = UncheckedBox((stream, a, b, host))
        DispatchQueue(label: "check-noise").async(group: group) { [self] in
            let (stream, a, b, host) = box.value
            while running.load(ordering: .relaxed) {
                do {
                    try a.copyFromHost(host, stream: stream)
                    try b.copy(from: a, byteCount: a.byteCount, stream: stream)
                    _ = try b.copyToHost(UInt8.self, count: 16 << 20, stream: stream)
                } catch {
                    writeToStandardError("noise thread: \(error)\n")
                    return
                }
                rounds.add(1, ordering: .relaxed)
            }
        }
    }

    /// Stops the thread; returns how many rounds it ran.
    public func stop() -> Int {
        running.store(false, ordering: .relaxed)
        group.wait()
        return rounds.load(ordering: .relaxed)
    }
}

/// Writes `s` to file descriptor 2 (what the CLI's `printError` does, without the newline).
func writeToStandardError(_ s: String) {
    let bytes = Array(s.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
