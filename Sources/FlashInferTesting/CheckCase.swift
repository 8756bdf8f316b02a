import FlashInfer
import FlashInferCUDA
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A check case: runs on the GPU and returns nil when the result matches the reference, or a
/// description of the first mismatch.
public struct CheckCase {
    public var name: String
    public var run: (Device, Stream, inout SeededRNG) throws -> String?
    /// The same case on the CPU backend, where the case supports it (`check --cpu`: checks the
    /// check's own construction without a GPU).
    public var cpuRun: ((inout SeededRNG) throws -> String?)? = nil

    public init(name: String, run: @escaping (Device, Stream, inout SeededRNG) throws -> String?,
                cpuRun: ((inout SeededRNG) throws -> String?)? = nil) {
        self.name = name
        self.run = run
        self.cpuRun = cpuRun
    }
}

/// A passing case's detail for the log (`flashinfer check` prints it after the case's "ok"), e.g. a
/// statistical case's draws and p-values. Kept per thread: the runner runs each case on one thread,
/// clears the note before and takes it after.
public enum CheckNote {
    private static let notes = Mutex<[UInt: String]>([:])

    #if canImport(Glibc)
    private static var thread: UInt { UInt(pthread_self()) }
    #else
    private static var thread: UInt { UInt(bitPattern: pthread_self()) }
    #endif

    /// Adds `note` to the running case's detail ("; "-separated).
    public static func record(_ note: String) {
        let t = thread
        notes.withLock { $0[t] = $0[t].map { $0 + "; " + note } ?? note }
    }

    /// The running case's detail so far, removed.
    public static func take() -> String? {
        let t = thread
        return notes.withLock { $0.removeValue(forKey: t) }
    }
}

/// Every case `flashinfer check` runs, in its order (shards take every Nth case of this list, so
/// the order is part of the contract with `scripts/device-suite.sh`).
public func allCheckCases() -> [CheckCase] {
    elementwiseCases() + pageCases() + mergeCases() + decodeCases() + prefillCases() + hopperPrefillCases() + batchDecodeCases()
        + batchDecodeGraphCases() + batchDecodeStepCaptureCases() + batchPrefillCases() + batchPrefillGraphCases() + cascadeCases() + cascadeGraphCases() + orderingCases()
        + customMaskCases() + blockSparseCases() + rejectionCases() + normCases() + activationCases() + ropeCases() + samplingCases()
}

/// The cases that also run on the CPU backend (`check --cpu`): the cascade cases.
public func cpuCheckCases() -> [CheckCase] {
    cascadeCases().filter { $0.cpuRun != nil }
}

/// A value handed to the check threads (the cases' closures and the streams are used by one
/// thread each; the library objects they reach are thread-safe).
public struct UncheckedBox<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}

public func elementwiseCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for dtype in [DType.f32, .f16, .bf16] {
        for n in [1, 1000, (1 << 20) + 3] {
            cases.append(CheckCase(name: "axpby dtype=\(dtype.rawValue) n=\(n)") { device, stream, rng in
                let alpha = rng.normal(), beta = rng.normal()
                let xs = (0..<n).map { _ in rng.normal() }, ys = (0..<n).map { _ in rng.normal() }
                let x = try Tensor.host(xs, shape: [n], dtype: dtype).toDevice(device)
                let y = try Tensor.host(ys, shape: [n], dtype: dtype).toDevice(device)
                let out = try Tensor.empty(shape: [n], dtype: dtype, device: device)
                try out.poison(stream: stream)
                try axpby(alpha: alpha, x: x, beta: beta, y: y, out: out, stream: stream)
                try stream.synchronize()
                let got = try out.toFloats()
                let xr = try x.toFloats(), yr = try y.toFloats()
                for i in 0..<n {
                    // Same float arithmetic as the kernel (fma may contract it): allow one unit of the dtype.
                    let e = alpha * xr[i] + beta * yr[i]
                    let tol = Float(dtype == .f32 ? 1e-6 : (dtype == .f16 ? 1e-3 : 8e-3)) * max(1, abs(e))
                    if !(abs(got[i] - dtype.roundTrip(e)) <= tol) {
                        return "element \(i): got \(got[i]), expected \(dtype.roundTrip(e))"
                    }
                }
                return nil
            })
        }
    }
    return cases
}
