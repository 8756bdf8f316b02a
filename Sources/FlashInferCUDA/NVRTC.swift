/// The dlopen'd NVRTC library: run-time compilation of CUDA C++ to cubin.
///
/// Search order for the library (first that loads wins):
/// 1. `$FLASHINFER_NVRTC` (a path to `libnvrtc.so*`),
/// 2. `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64`,
/// 3. the pip wheel `nvidia-cuda-nvrtc`: `$FLASHINFER_CUDA_PIP/nvidia/cu13/lib` (and `cu12`), where
///    `FLASHINFER_CUDA_PIP` is the folder pip installed into (`pip install --target DIR`),
/// 4. `libnvrtc.so.13`, `libnvrtc.so.12`, `libnvrtc.so` through the dynamic loader.
///
/// CUDA headers (`cuda_fp16.h`, `cuda_bf16.h`, `cuda_fp8.h`) are not built into NVRTC; they are
/// found at run time, in order: `$FLASHINFER_CUDA_INCLUDE`, `$CUDA_HOME/include`,
/// `/usr/local/cuda/include`, `../include` beside the NVRTC library that was loaded (the toolkit
/// and pip layouts both have it), `$FLASHINFER_CUDA_PIP/nvidia/cu13/include`.
public final class NVRTC: @unchecked Sendable {
    let lib: DynamicLibrary
    /// The file the library was loaded from.
    public let path: String
    public let version: (major: Int, minor: Int)

    let nvrtcVersion: @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    let nvrtcGetErrorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
    let nvrtcCreateProgram: @convention(c) (
        UnsafeMutablePointer<OpaquePointer?>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32,
        UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?
    ) -> Int32
    let nvrtcDestroyProgram: @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    let nvrtcCompileProgram: @convention(c) (OpaquePointer?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    let nvrtcGetProgramLogSize: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int>) -> Int32
    let nvrtcGetProgramLog: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>) -> Int32
    let nvrtcGetCUBINSize: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int>) -> Int32
    let nvrtcGetCUBIN: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>) -> Int32

    /// One step of the search (documented above): a file or loader name to `dlopen`, or a
    /// directory searched that holds no `libnvrtc.so*` (listed in `nvrtcNotFound` when nothing loads).
    enum SearchStep: Equatable {
        case load(String)
        case emptyDirectory(String)
    }

    static func searchSteps() -> [SearchStep] {
        var steps: [SearchStep] = []
        if let p = Env.get("FLASHINFER_NVRTC") { steps.append(.load(p)) }
        var dirs: [String] = []
        if let h = Env.get("CUDA_HOME") { dirs.append(h + "/lib64") }
        dirs.append("/usr/local/cuda/lib64")
        if let pip = Env.get("FLASHINFER_CUDA_PIP") {
            dirs.append(pip + "/nvidia/cu13/lib")
            dirs.append(pip + "/nvidia/cuda_nvrtc/lib")
        }
        for d in dirs {
            let names = Env.listDirectory(d).filter { DynamicLibrary.isSharedObject($0, of: "libnvrtc") }
            steps += names.isEmpty ? [.emptyDirectory(d)] : names.map { .load(d + "/" + $0) }
        }
        steps += ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"].map { .load($0) }
        return steps
    }

    /// Library candidates in search order (documented above).
    public static func candidates() -> [String] {
        searchSteps().compactMap { if case .load(let name) = $0 { name } else { nil } }
    }

    private init(_ lib: DynamicLibrary) throws {
        self.lib = lib
        func f<T>(_ n: String, as t: T.Type) throws -> T { try lib.function([n], as: t, library: "libnvrtc") }
        nvrtcVersion = try f("nvrtcVersion", as: type(of: nvrtcVersion))
        nvrtcGetErrorString = try f("nvrtcGetErrorString", as: type(of: nvrtcGetErrorString))
        nvrtcCreateProgram = try f("nvrtcCreateProgram", as: type(of: nvrtcCreateProgram))
        nvrtcDestroyProgram = try f("nvrtcDestroyProgram", as: type(of: nvrtcDestroyProgram))
        nvrtcCompileProgram = try f("nvrtcCompileProgram", as: type(of: nvrtcCompileProgram))
        nvrtcGetProgramLogSize = try f("nvrtcGetProgramLogSize", as: type(of: nvrtcGetProgramLogSize))
        nvrtcGetProgramLog = try f("nvrtcGetProgramLog", as: type(of: nvrtcGetProgramLog))
        nvrtcGetCUBINSize = try f("nvrtcGetCUBINSize", as: type(of: nvrtcGetCUBINSize))
        nvrtcGetCUBIN = try f("nvrtcGetCUBIN", as: type(of: nvrtcGetCUBIN))
        var ma: Int32 = 0, mi: Int32 = 0
        _ = nvrtcVersion(&ma, &mi)
        version = (Int(ma), Int(mi))
        path = lib.resolvedPath(library: "libnvrtc") ?? lib.path
    }

    private static let loaded: Result<NVRTC, CUDAError> = {
        var tried: [String] = []
        var found: DynamicLibrary?
        search: for step in searchSteps() {
            switch step {
            case .emptyDirectory(let d):
                tried.append("\(d)/libnvrtc.so*: \(Env.fileExists(d) ? "none in this directory" : "no such directory")")
            case .load(let name):
                let (l, reasons) = DynamicLibrary.open(candidates: [name])
                tried += reasons
                if let l { found = l; break search }
            }
        }
        guard let lib = found else { return .failure(.nvrtcNotFound(tried: tried)) }
        // NVRTC dlopens libnvrtc-builtins by soname at compile time; some pip wheels carry no
        // RPATH for it, so load the one beside libnvrtc first (a no-op when the loader finds it).
        if let path = lib.resolvedPath(library: "libnvrtc") {
            let dir = Env.dirname(path)
            for name in Env.listDirectory(dir) where DynamicLibrary.isSharedObject(name, of: "libnvrtc-builtins") {
                _ = DynamicLibrary.open(candidates: [dir + "/" + name])
            }
        }
        do { return .success(try NVRTC(lib)) } catch let e as CUDAError { return .failure(e) } catch {
            return .failure(.nvrtcNotFound(tried: ["\(error)"]))
        }
    }()

    /// The process-wide NVRTC, loaded on first use.
    public static func shared() throws(CUDAError) -> NVRTC { try loaded.get() }

    /// Directories searched for the CUDA headers, in order (see the type's documentation).
    public func headerSearchPath() -> [String] {
        var dirs: [String] = []
        if let p = Env.get("FLASHINFER_CUDA_INCLUDE") { dirs.append(p) }
        if let h = Env.get("CUDA_HOME") { dirs.append(h + "/include") }
        dirs.append("/usr/local/cuda/include")
        dirs.append(Env.dirname(Env.dirname(path)) + "/include")
        if let pip = Env.get("FLASHINFER_CUDA_PIP") { dirs.append(pip + "/nvidia/cu13/include") }
        return dirs
    }

    /// The first directory that has `cuda_fp16.h`.
    public func cudaIncludeDirectory() throws(CUDAError) -> String {
        let dirs = headerSearchPath()
        for d in dirs where Env.fileExists(d + "/cuda_fp16.h") { return d }
        throw .headersNotFound(tried: dirs)
    }

    private func check(_ r: Int32, _ call: String) throws(CUDAError) {
        guard r != 0 else { return }
        let msg = nvrtcGetErrorString(r).map { String(cString: $0) } ?? "NVRTC error"
        throw .nvrtc(call: call, code: r, message: msg)
    }

    /// Result of one compilation.
    public struct Output: Sendable {
        public var cubin: [UInt8]
        /// NVRTC's log (warnings, and `--ptxas-options=-v` resource reports when asked).
        public var log: String
    }

    /// Compiles `source` with named in-memory `headers` (include name → text) and `options`.
    /// Throws `.compilation` with NVRTC's log when the source does not compile.
    public func compile(source: String, name: String, headers: [(name: String, text: String)], options: [String]) throws(CUDAError) -> Output {
        var prog: OpaquePointer? = nil
        // Keep C strings alive for the duration of the calls.
        let headerTexts = headers.map { strdup($0.text) }
        let headerNames = headers.map { strdup($0.name) }
        let opts = options.map { strdup($0) }
        defer {
            for p in headerTexts + headerNames + opts { free(p) }
        }
        let texts = headerTexts.map { UnsafePointer<CChar>($0) }
        let names = headerNames.map { UnsafePointer<CChar>($0) }
        let r = texts.withUnsafeBufferPointer { t in
            names.withUnsafeBufferPointer { n in
                nvrtcCreateProgram(&prog, source, name, Int32(headers.count), t.baseAddress, n.baseAddress)
            }
        }
        try check(r, "nvrtcCreateProgram(\(name))")
        defer { _ = nvrtcDestroyProgram(&prog) }
        let optPtrs = opts.map { UnsafePointer<CChar>($0) }
        let cr = optPtrs.withUnsafeBufferPointer { nvrtcCompileProgram(prog, Int32(options.count), $0.baseAddress) }
        var logSize = 0
        _ = nvrtcGetProgramLogSize(prog, &logSize)
        var logBuf = [CChar](repeating: 0, count: max(logSize, 1))
        _ = nvrtcGetProgramLog(prog, &logBuf)
        let log = String(decoding: logBuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if cr != 0 { throw .compilation(kernel: name, log: log) }
        var size = 0
        try check(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize")
        var cubin = [UInt8](repeating: 0, count: size)
        let gr = cubin.withUnsafeMutableBytes { nvrtcGetCUBIN(prog, $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        try check(gr, "nvrtcGetCUBIN")
        return Output(cubin: cubin, log: log)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
