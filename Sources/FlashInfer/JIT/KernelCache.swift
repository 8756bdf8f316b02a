import Synchronization

/// The on-disk cubin cache.
///
/// Contract (after FlashInfer's `JitSpec.build_and_load`, with MLX's mistakes avoided):
/// - **Key**: SHA-256 of (the spec's source, the digest of every embedded header, the library
///   version, the compile options, the architecture, the NVRTC version): everything that changes
///   the cubin. Any change to any of them is a different file; nothing is ever overwritten with
///   different content, and an entry from another build of the library is never served. Entries
///   no build uses any more are never read, only disk space: `flashinfer cache clear` removes them.
/// - **Location**: `$FLASHINFER_CACHE_DIR`, else `$XDG_CACHE_HOME/swift-flashinfer`, else
///   `$HOME/.cache/swift-flashinfer`; files `<key>.cubin`, with the source beside as `<key>.cu`
///   for debugging.
/// - **Format**: magic `FIKC0001`, payload length (UInt64 LE), SHA-256 of the payload, payload.
///   A truncated or corrupt file fails the check, is deleted, and the kernel is rebuilt.
/// - **Writes are atomic**: temporary file in the same directory + `rename(2)`, so concurrent
///   processes never see a partial file (two writers of one key write identical bytes).
/// - **Never fatal**: loading never throws for cache problems; an unwritable directory degrades
///   to memory-only with one warning on stderr.
public final class KernelCache: Sendable {
    /// The cache directory, or nil for memory-only.
    public let directory: String?
    private let warned = Mutex(false)
    private let warningSink: @Sendable (String) -> Void

    static let magic: [UInt8] = Array("FIKC0001".utf8)

    /// The default directory per the search order above.
    public static func defaultDirectory() -> String {
        if let d = FileSystem.environment("FLASHINFER_CACHE_DIR") { return d }
        if let x = FileSystem.environment("XDG_CACHE_HOME") { return x + "/swift-flashinfer" }
        let home = FileSystem.environment("HOME") ?? "/tmp"
        return home + "/.cache/swift-flashinfer"
    }

    public init(directory: String? = KernelCache.defaultDirectory(),
                warningSink: (@Sendable (String) -> Void)? = nil) {
        self.directory = directory
        self.warningSink = warningSink ?? { FileSystem.writeError($0) }
    }

    /// The cache key of one compilation. `headersDigest` covers the included headers
    /// (`KernelSources.digest`), `libraryVersion` the library (`FlashInferVersion.string`).
    public static func key(source: String, options: [String], architecture: String, nvrtcVersion: String,
                           headersDigest: String = KernelSources.digest,
                           libraryVersion: String = FlashInferVersion.string) -> String {
        var bytes = Array(source.utf8)
        for part in [headersDigest, libraryVersion] + options + [architecture, nvrtcVersion] {
            bytes.append(0)
            bytes += Array(part.utf8)
        }
        return SHA256.hex(bytes)
    }

    public enum Lookup: Equatable, Sendable {
        case hit([UInt8])
        case miss
        /// The file existed but failed the check; it has been removed.
        case corrupt(reason: String)
    }

    func path(for key: String, ext: String = "cubin") -> String? {
        directory.map { "\($0)/\(key).\(ext)" }
    }

    public func load(key: String) -> Lookup {
        guard let p = path(for: key), let bytes = FileSystem.read(p) else { return .miss }
        switch Self.decode(bytes) {
        case .success(let payload):
            return .hit(payload)
        case .failure(let reason):
            FileSystem.remove(p)
            return .corrupt(reason: reason.text)
        }
    }

    /// Stores a cubin (and its source, for debugging). Failures degrade to memory-only with one warning.
    public func store(key: String, cubin: [UInt8], source: String? = nil) {
        guard let dir = directory, let p = path(for: key) else { return }
        do {
            try FileSystem.createDirectory(dir)
            try FileSystem.writeAtomically(Self.encode(cubin), to: p)
            if let source, let sp = path(for: key, ext: "cu") {
                try FileSystem.writeAtomically(Array(source.utf8), to: sp)
            }
        } catch {
            let first = warned.withLock { w in
                defer { w = true }
                return !w
            }
            if first {
                warningSink("warning: kernel cache directory \(dir) is not writable (\(error)); compiled kernels are kept in memory only. Set FLASHINFER_CACHE_DIR to change it.")
            }
        }
    }

    public struct Entry: Sendable, Hashable {
        public var name: String
        public var bytes: Int
    }

    /// The cubins in the cache.
    public func entries() -> [Entry] {
        guard let dir = directory else { return [] }
        return FileSystem.list(dir).filter { $0.hasSuffix(".cubin") }.map { Entry(name: $0, bytes: FileSystem.size(dir + "/" + $0)) }
    }

    /// Removes every cache file (cubins, sources, stale temporaries). Returns how many were removed.
    @discardableResult
    public func clear() -> Int {
        guard let dir = directory else { return 0 }
        var n = 0
        for f in FileSystem.list(dir) where f.hasSuffix(".cubin") || f.hasSuffix(".cu") || f.contains(".tmp.") {
            FileSystem.remove(dir + "/" + f)
            n += 1
        }
        return n
    }

    struct Reason: Error { var text: String }

    static func encode(_ payload: [UInt8]) -> [UInt8] {
        var out = magic
        let n = UInt64(payload.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        out += SHA256.hash(payload)
        out += payload
        return out
    }

    static func decode(_ bytes: [UInt8]) -> Result<[UInt8], Reason> {
        let header = magic.count + 8 + 32
        guard bytes.count >= header else { return .failure(Reason(text: "truncated header (\(bytes.count) bytes)")) }
        guard Array(bytes[0..<magic.count]) == magic else { return .failure(Reason(text: "bad magic")) }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[magic.count + i]) << (8 * UInt64(i)) }
        guard UInt64(bytes.count - header) == n else {
            return .failure(Reason(text: "length \(bytes.count - header) != recorded \(n)"))
        }
        let payload = Array(bytes[header...])
        guard SHA256.hash(payload) == Array(bytes[(magic.count + 8)..<header]) else {
            return .failure(Reason(text: "checksum mismatch"))
        }
        return .success(payload)
    }
}
