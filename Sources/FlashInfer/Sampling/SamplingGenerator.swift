import FlashInferCUDA
import Synchronization

/// A Philox generator for the sampling ops: a `(seed, offset)` state that every call taking it reads
/// when the call runs and then advances by the call's increment, so successive calls — and
/// successive replays of a CUDA graph that captured a call — draw fresh random numbers.
///
/// The by-value form (`seed:offset:`) bakes the two numbers into the launch: reproducible, but a
/// captured graph replays the same draws every time. With a generator on the device the kernels
/// read the state from device memory (`seed_arr`, `offset_arr` of `FISamplingParams`), and a
/// one-thread kernel enqueued right after the sampling kernel, on the same stream, adds the call's
/// increment to the offset (`philox::advance_offset`; both are captured into a graph together).
/// So a call with a generator whose state is `(s, o)` draws exactly what the by-value call with
/// `seed: s, offset: o` draws, and leaves the state at `(s, o + increment)`: using a generator is
/// the same as advancing the offset by hand, and it works inside a graph.
///
/// The increment is a fixed function of the call's shape (never of the data, so a graph can hold
/// it): upstream's `get_seed_and_offset` increment rounded up to a multiple of 4
/// (`increment(filter:batch:)`, `incrementFromLogits(batch:vocab:)`,
/// `incrementChainSpeculative(batch:numDraft:)`), at least every word a row's stream can consume,
/// so no two calls ever share a uniform.
///
/// A generator lives where its backend computes: `init(seed:offset:)` in host memory for the CPU
/// backend, `init(seed:offset:stream:)` in device memory for the CUDA backend (a call with the other
/// backend throws `.placement`). Like a stream, a generator orders the calls that use it: calls on
/// one stream advance it in order; calls on several streams are ordered by the buffer's stream
/// bookkeeping (docs/ORDERING.md), but the order in which they take their numbers is theirs to fix.
public final class SamplingGenerator: @unchecked Sendable {
    /// The device words of a generator: `seed` and `offset` each in a buffer at a byte offset.
    struct DeviceState {
        var seedBuffer: DeviceBuffer
        var seedByteOffset: Int
        var offsetBuffer: DeviceBuffer
        var offsetByteOffset: Int
        var seedAddress: CUdeviceptr { seedBuffer.address + CUdeviceptr(seedByteOffset) }
        var offsetAddress: CUdeviceptr { offsetBuffer.address + CUdeviceptr(offsetByteOffset) }
    }

    /// The host state (host generators).
    private let host: Mutex<(seed: UInt64, offset: UInt64)>
    /// The device state (device generators), nil for a host generator.
    let deviceState: DeviceState?
    /// Whether calls advance the offset. False only for a generator borrowing a caller's seed and
    /// offset words that the caller advances itself (upstream's `seed`/`offset` tensors, which its
    /// kernels read and never write).
    public let advances: Bool

    /// A generator in host memory (the CPU backend), at `(seed, offset)`.
    public init(seed: UInt64, offset: UInt64 = 0) {
        host = Mutex((seed, offset))
        deviceState = nil
        advances = true
    }

    /// A generator in device memory on `stream`'s device (the CUDA backend): 16 bytes holding
    /// `[seed, offset]`, written in `stream`'s order.
    public init(seed: UInt64, offset: UInt64 = 0, stream: Stream) throws(FlashInferError) {
        let b = try FlashInferError.wrap { () throws(CUDAError) in try stream.device.upload([seed, offset], stream: stream) }
        host = Mutex((0, 0))
        deviceState = DeviceState(seedBuffer: b, seedByteOffset: 0, offsetBuffer: b, offsetByteOffset: 8)
        advances = true
    }

    /// A generator over a caller's device words (the C ABI: a tensor's storage): the seed at
    /// `seed`'s first 8 bytes, the offset at `offset`'s (the same buffer at a byte offset is
    /// fine). `advances: false` reads them only (upstream's tensor form: the caller advances).
    public init(seed: DeviceBuffer, seedByteOffset: Int = 0, offset: DeviceBuffer, offsetByteOffset: Int = 0, advances: Bool) {
        precondition(seedByteOffset + 8 <= seed.byteCount && offsetByteOffset + 8 <= offset.byteCount, "8 bytes each")
        host = Mutex((0, 0))
        deviceState = DeviceState(seedBuffer: seed, seedByteOffset: seedByteOffset, offsetBuffer: offset, offsetByteOffset: offsetByteOffset)
        self.advances = advances
    }

    /// The device a device generator lives on (nil: host memory).
    public var device: Device? { deviceState?.seedBuffer.device }

    /// The current `(seed, offset)`. A device generator's words are copied back on `stream` (by
    /// default the stream of their last recorded write), which is synchronized: every call
    /// enqueued on it before has advanced the state.
    public func state(stream: Stream? = nil) throws(FlashInferError) -> (seed: UInt64, offset: UInt64) {
        guard let d = deviceState else { return host.withLock { $0 } }
        return try FlashInferError.wrap { () throws(CUDAError) in
            let s: [UInt64] = try d.seedBuffer.copyToHost(UInt64.self, count: 1, offset: d.seedByteOffset, stream: stream)
            let o: [UInt64] = try d.offsetBuffer.copyToHost(UInt64.self, count: 1, offset: d.offsetByteOffset, stream: stream)
            return (s[0], o[0])
        }
    }

    /// Sets the state (a device generator's words written in `stream`'s order; `stream` is
    /// required there).
    public func set(seed: UInt64, offset: UInt64, stream: Stream? = nil) throws(FlashInferError) {
        guard let d = deviceState else {
            host.withLock { $0 = (seed, offset) }
            return
        }
        guard let stream else { throw .option(name: "stream", value: "nil", rule: "a device generator is written in a stream's order") }
        try FlashInferError.wrap { () throws(CUDAError) in
            try d.seedBuffer.copyFromHost([seed], offset: d.seedByteOffset, stream: stream)
            try d.offsetBuffer.copyFromHost([offset], offset: d.offsetByteOffset, stream: stream)
        }
    }

    /// A host generator's state for one call, advanced by `increment` (when it advances).
    func take(increment: UInt64) -> (seed: UInt64, offset: UInt64) {
        host.withLock { s in
            let r = s
            if advances { s.offset &+= increment }
            return r
        }
    }

    // MARK: increments

    /// The most uniforms a rejection sampler draws per row (`kMaxRounds` of
    /// flashinfer/sampling/filter.cuh: one per round).
    static let maxRounds = 64

    /// `n` words rounded up to a whole Philox block (4 words), as upstream's `get_seed_and_offset`.
    static func roundUp(_ n: Int) -> UInt64 { UInt64((max(n, 0) + 3) / 4 * 4) }

    /// The offset increment of one probability sampler call of `batch` rows: upstream's (`batch`
    /// for `sampling_from_probs` and min-p, which draw once per row; `batch · 32` for the rejection
    /// samplers), the rejection samplers' at least 64 (the rounds a row may take here), rounded up
    /// to a multiple of 4; 0 for an empty batch. E.g. top-p on 8 rows: max(256, 64) = 256;
    /// `samplingFromProbs` on 3 rows: 4.
    public static func increment(filter: SamplingFilter, batch: Int) -> UInt64 {
        guard batch > 0 else { return 0 }
        switch filter {
        case .none, .minP: return roundUp(batch)
        case .topK, .topP, .topKTopP: return roundUp(max(batch * 32, maxRounds))
        }
    }

    /// The increment of `samplingFromLogits`: upstream's `batch · vocab` (a row's group streams
    /// take at most 4 words each), rounded up to a multiple of 4.
    public static func incrementFromLogits(batch: Int, vocab: Int) -> UInt64 {
        batch > 0 ? roundUp(batch * vocab) : 0
    }

    /// The increment of `chainSpeculativeSampling`: upstream's `batch · (numDraft + 1)` (a request
    /// draws at most `numDraft + 1` uniforms), rounded up to a multiple of 4.
    public static func incrementChainSpeculative(batch: Int, numDraft: Int) -> UInt64 {
        batch > 0 ? roundUp(batch * (numDraft + 1)) : 0
    }
}

/// Where a sampling call's Philox seed and offset come from (the backends take this).
enum PhiloxSource {
    /// By value: baked into the launch.
    case fixed(seed: UInt64, offset: UInt64)
    /// Read from the generator when the call runs, the offset advanced by `increment` after.
    case generator(SamplingGenerator, increment: UInt64)

    /// The generator lives where `backend` computes.
    func validate(_ backend: Backend) throws(FlashInferError) {
        guard case .generator(let g, _) = self else { return }
        let placement = backend.implementation.placement
        switch placement {
        case .host:
            guard g.deviceState == nil else { throw .placement(tensor: "generator", expected: "host (the CPU backend)") }
        case .device(let device):
            guard let d = g.device else { throw .placement(tensor: "generator", expected: "device (the CUDA backend)") }
            guard d === device else { throw .deviceMismatch(tensor: "generator") }
        }
    }

    /// The values a host call uses; a host generator is read and advanced.
    func hostValues() -> (seed: UInt64, offset: UInt64) {
        switch self {
        case .fixed(let s, let o): return (s, o)
        case .generator(let g, let increment): return g.take(increment: increment)
        }
    }
}

/// A public entry point's randomness, before the call's shape fixes the increment.
enum SamplingSeed {
    case fixed(seed: UInt64, offset: UInt64)
    case generator(SamplingGenerator)

    /// The backends' form, with the generator's increment for this call.
    func source(increment: @autoclosure () -> UInt64) -> PhiloxSource {
        switch self {
        case .fixed(let s, let o): .fixed(seed: s, offset: o)
        case .generator(let g): .generator(g, increment: increment())
        }
    }
}
