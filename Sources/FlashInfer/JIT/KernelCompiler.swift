import FlashInferCUDA
import Synchronization

/// A compiled kernel image and how it was obtained.
public struct CompiledKernel: Sendable {
    public var name: String
    public var entryPoint: String
    public var cubin: [UInt8]
    /// NVRTC's log including ptxas' resource report (empty when loaded from the disk cache).
    public var log: String
    public enum Origin: String, Sendable { case compiled, diskCache }
    public var origin: Origin
    /// Wall time of compile or disk load, in seconds.
    public var seconds: Double
    public var cacheKey: String

    /// `registers`, `spill stores`, `spill loads`, `smem` parsed from ptxas' report, when present.
    public var resourceReport: ResourceReport? { ResourceReport(ptxasLog: log) }
}

/// What ptxas reported for a kernel (`--ptxas-options=-v`).
public struct ResourceReport: Sendable, Hashable, CustomStringConvertible {
    public var registers: Int
    public var spillStores: Int
    public var spillLoads: Int
    public var stackFrame: Int
    public var sharedMemory: Int

    init?(ptxasLog log: String) {
        func number(before marker: String, in line: Substring) -> Int? {
            guard let r = line.range(of: marker) else { return nil }
            let head = line[..<r.lowerBound].split(separator: " ").last ?? ""
            return Int(head)
        }
        var regs: Int?, ss = 0, sl = 0, sf = 0, sm = 0
        for line in log.split(separator: "\n") {
            if let v = number(before: " registers", in: line) { regs = max(regs ?? 0, v) }
            if let v = number(before: " bytes spill stores", in: line) { ss = max(ss, v) }
            if let v = number(before: " bytes spill loads", in: line) { sl = max(sl, v) }
            if let v = number(before: " bytes stack frame", in: line) { sf = max(sf, v) }
            if let v = number(before: " bytes smem", in: line) { sm = max(sm, v) }
        }
        guard let regs else { return nil }
        (registers, spillStores, spillLoads, stackFrame, sharedMemory) = (regs, ss, sl, sf, sm)
    }

    public var description: String {
        "\(registers) registers, \(spillStores) B spill stores, \(spillLoads) B spill loads, \(stackFrame) B stack, \(sharedMemory) B static smem"
    }
}

extension Substring {
    func range(of needle: String) -> Range<Index>? {
        guard !needle.isEmpty, count >= needle.count else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}

/// NVRTC + the disk cache: spec → cubin. Needs no GPU (compile for any architecture).
public final class KernelCompiler: Sendable {
    public let architecture: String
    public let cache: KernelCache
    public let nvrtc: NVRTC
    public let includeDirectory: String

    /// Extra NVRTC options every kernel is compiled with.
    public static let baseOptions = ["-std=c++17", "-default-device", "--ptxas-options=-v", "-lineinfo"]

    public init(architecture: String, cache: KernelCache = KernelCache()) throws(CUDAError) {
        self.architecture = architecture
        self.cache = cache
        self.nvrtc = try NVRTC.shared()
        self.includeDirectory = try nvrtc.cudaIncludeDirectory()
    }

    public var nvrtcVersionString: String { "\(nvrtc.version.major).\(nvrtc.version.minor)" }

    func options() -> [String] {
        ["--gpu-architecture=\(architecture)", "-I\(includeDirectory)"] + Self.baseOptions
    }

    /// Compiles `spec`, or loads it from the disk cache.
    public func compile<S: KernelSpec>(_ spec: S, useCache: Bool = true) throws(CUDAError) -> CompiledKernel {
        let source = spec.source()
        let opts = options()
        let key = KernelCache.key(source: source, options: opts, architecture: architecture, nvrtcVersion: nvrtcVersionString)
        let t0 = monotonicSeconds()
        if useCache, case .hit(let cubin) = cache.load(key: key) {
            return CompiledKernel(name: spec.name, entryPoint: spec.entryPoint, cubin: cubin, log: "",
                                  origin: .diskCache, seconds: monotonicSeconds() - t0, cacheKey: key)
        }
        let headers = KernelSources.all.sorted { $0.key < $1.key }.map { (name: $0.key, text: $0.value) }
        let out = try nvrtc.compile(source: source, name: spec.name + ".cu", headers: headers, options: opts)
        if useCache { cache.store(key: key, cubin: out.cubin, source: source) }
        return CompiledKernel(name: spec.name, entryPoint: spec.entryPoint, cubin: out.cubin, log: out.log,
                              origin: .compiled, seconds: monotonicSeconds() - t0, cacheKey: key)
    }
}

/// Compiled and loaded kernels for one device: the in-memory cache over `KernelCompiler`.
public final class JIT: Sendable {
    public let device: Device
    public let compiler: KernelCompiler
    /// One table per spec type, found by the type's identity: a lookup hashes and compares specs of
    /// one type only. (A single `[AnyHashable: …]` table boxed the probed key to compare specs of
    /// different types whenever their hashes collided — a heap allocation on a run() path in some
    /// processes and not others, as the hash seed varies.)
    private let loaded = Mutex<[ObjectIdentifier: AnyObject]>([:])

    private final class Kernels<S: KernelSpec> {
        var table: [S: LoadedKernel] = [:]
    }

    /// A loaded kernel function together with how it was obtained.
    public struct LoadedKernel: @unchecked Sendable {
        public var function: Function
        public var compiled: CompiledKernel
        /// Seconds from lookup to a loaded function (compile or disk load + module load).
        public var seconds: Double
    }

    private static let instances = Mutex<[Int: JIT]>([:])

    /// The JIT for a device (one per device per process), with the default disk cache.
    public static func shared(for device: Device) throws(CUDAError) -> JIT {
        if let j = instances.withLock({ $0[device.index] }) { return j }
        let j = try JIT(device: device)
        return instances.withLock { t in
            if let e = t[device.index] { return e }
            t[device.index] = j
            return j
        }
    }

    public init(device: Device, cache: KernelCache = KernelCache()) throws(CUDAError) {
        self.device = device
        self.compiler = try KernelCompiler(architecture: device.properties.nvrtcArchitecture, cache: cache)
    }

    /// The loaded function for `spec`: memory cache, else disk cache, else NVRTC.
    public func kernel<S: KernelSpec>(_ spec: S) throws(CUDAError) -> LoadedKernel {
        let type = ObjectIdentifier(S.self)
        if let k = loaded.withLock({ t in t[type].flatMap { unsafeDowncast($0, to: Kernels<S>.self).table[spec] } }) { return k }
        let t0 = monotonicSeconds()
        let compiled = try compiler.compile(spec)
        let module = try Module(device: device, image: compiled.cubin)
        let fn = try module.function(named: spec.entryPoint)
        let k = LoadedKernel(function: fn, compiled: compiled, seconds: monotonicSeconds() - t0)
        loaded.withLock { t in
            let kernels = t[type].map { unsafeDowncast($0, to: Kernels<S>.self) } ?? Kernels<S>()
            kernels.table[spec] = k
            t[type] = kernels
        }
        return k
    }

    /// Forgets loaded kernels (the disk cache stays), and the cached single-request plans that
    /// hold them. For measuring warm loads.
    public func evictMemoryCache() {
        loaded.withLock { $0.removeAll() }
        singleDecodePlans.removeAll()
        singlePrefillPlans.removeAll()
    }
}
