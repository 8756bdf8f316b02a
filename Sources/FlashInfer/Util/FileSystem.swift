import FlashInferCUDA

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file operations the JIT cache needs, over POSIX (no Foundation in the library).
enum FileSystem {
    struct Failure: Error, CustomStringConvertible {
        var operation: String
        var path: String
        var errno: Int32
        var description: String { "\(operation) \(path): \(reason)" }
        /// The system's words for `errno` ("No such file or directory").
        var reason: String { String(cString: strerror(errno)) }
    }

    static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// `mkdir -p`.
    static func createDirectory(_ path: String) throws(Failure) {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, 0o755) != 0 && errno != EEXIST {
                throw Failure(operation: "mkdir", path: partial, errno: errno)
            }
        }
        // A path component that exists but is not a directory (or is unwritable) shows up on write.
    }

    static func read(_ path: String) -> [UInt8]? { try? readFile(path) }

    /// The file's bytes, or the reason it cannot be read.
    static func readFile(_ path: String) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Failure(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { throw Failure(operation: "read", path: path, errno: errno) }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    /// Writes `bytes` to `path` atomically: a unique temporary file in the same directory, then
    /// `rename(2)`, so a concurrent reader sees either the old file or the whole new one.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(Failure) {
        let tmp = "\(path).tmp.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw Failure(operation: "open", path: tmp, errno: errno) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n <= 0 {
                let e = errno
                close(fd)
                unlink(tmp)
                throw Failure(operation: "write", path: tmp, errno: e)
            }
            written += n
        }
        close(fd)
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw Failure(operation: "rename", path: path, errno: e)
        }
    }

    static func remove(_ path: String) { unlink(path) }

    static func list(_ dir: String) -> [String] { Env.listDirectory(dir) }

    static func size(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }

    static func writeError(_ message: String) {
        let bytes = Array((message + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// Monotonic wall clock in seconds (for timing JIT and plan steps on the host).
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
