/// A kernel specialisation: the values of its template parameters, nothing about problem size.
///
/// The spec *is* the dispatch: `source()` renders a short translation unit — an include of an
/// embedded kernel header, a few `constexpr`/`using` lines, and an `extern "C"` entry point that
/// instantiates the template — and the JIT compiles it once per distinct spec.
public protocol KernelSpec: Hashable, Sendable {
    /// A readable, file-name-safe name, e.g. `decode_f16_f16_d128_g4_rope`.
    var name: String { get }
    /// The `extern "C"` entry point that `source()` defines.
    var entryPoint: String { get }
    /// The full translation unit.
    func source() -> String
}

/// The position-encoding code path of an attention kernel spec (`attention/variants.cuh` `PosEnc`);
/// RoPE's scale and theta are run-time values, so `.ropeLlama(scale:theta:)` maps to one path.
public enum KernelPosEnc: String, Sendable, Hashable, CaseIterable {
    case none, rope, alibi

    public init(_ pe: PositionEncoding) {
        switch pe {
        case .none: self = .none
        case .ropeLlama: self = .rope
        case .alibi: self = .alibi
        }
    }

    /// The C++ enumerator.
    var cudaName: String {
        switch self {
        case .none: "flashinfer::PosEnc::kNone"
        case .rope: "flashinfer::PosEnc::kRoPELlama"
        case .alibi: "flashinfer::PosEnc::kALiBi"
        }
    }
}

/// The kernel sources embedded in this binary, by include name (e.g. `flashinfer/core/math.cuh`, and
/// `flashinfer/params.h`, the parameter structs' header that Swift imports too).
public enum KernelSources {
    public static var all: [String: String] { EmbeddedKernels.files }
    public static var names: [String] { EmbeddedKernels.files.keys.sorted() }

    /// SHA-256 (hex) of every embedded header, names and bytes: part of every kernel-cache key, so
    /// a cubin compiled from other headers (another build of the library) is never served.
    public static let digest: String = digest(of: EmbeddedKernels.files)

    /// The digest of a set of headers: each name and text, in name order, NUL-separated.
    public static func digest(of files: [String: String]) -> String {
        var bytes: [UInt8] = []
        for name in files.keys.sorted() {
            bytes += Array(name.utf8)
            bytes.append(0)
            bytes += Array(files[name]!.utf8)
            bytes.append(0)
        }
        return SHA256.hex(bytes)
    }
}

/// One representative spec of every kernel family and variant this build has (the measurement
/// variants included: the timestamped decode, the read probe): the list that the tests compile with
/// NVRTC (no GPU needed) and `flashinfer bench jit` times.
public func kernelCatalog() -> [(name: String, spec: any KernelSpec)] {
    var out: [(name: String, spec: any KernelSpec)] = []
    for d in [DType.f32, .f16, .bf16] { out.append(("axpby \(d.rawValue)", AxpbySpec(dtype: d))) }
    out += AppendPagedKVSpec.catalog
    for kind in [MergeKind.pair, .inPlace, .many, .varlen] {
        for d in [DType.f16, .bf16] { out.append(("\(kind.rawValue) \(d.rawValue)", MergeSpec(kind: kind, dtype: d))) }
    }
    out += prefillCatalog()
    out += hopperPrefillCatalog()
    out += hopperBatchPrefillCatalog()
    out += decodeCatalog()
    out += batchPrefillCatalog()
    out += opsCatalog()
    out += SamplingSpec.catalog
    // Measurement kernels (`@_spi(Bench)`, never launched by the library): compiled with the rest so
    // that `bench read-probe` cannot break unnoticed. One spec covers both entry points of its unit.
    out.append(("probe_read (and probe_empty)", ReadProbeSpec()))
    out.append(("probe_spin", SpinProbeSpec()))
    return out
}
