#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `dlopen`'d shared library. Symbols are resolved once into the tables of `CUDADriver`
/// and `NVRTC`; the handle is never closed (the libraries live for the process).
struct DynamicLibrary: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    /// The path the loader actually used (from `dladdr`), or the name we asked for.
    let path: String

    /// Tries each candidate in order; returns the first that loads, or nil with the reasons.
    static func open(candidates: [String]) -> (DynamicLibrary?, [String]) {
        var tried: [String] = []
        for name in candidates {
            if let h = dlopen(name, RTLD_NOW | RTLD_GLOBAL) {
                return (DynamicLibrary(handle: h, path: name), tried)
            }
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            // dlerror() usually starts with the name already ("libcuda.so.1: cannot open …").
            tried.append(reason.hasPrefix(name + ":") ? reason : "\(name): \(reason)")
        }
        return (nil, tried)
    }

    func symbol(_ name: String) -> UnsafeMutableRawPointer? {
        dlsym(handle, name)
    }

    /// Resolves the first of `names` that exists (e.g. `["cuMemAlloc_v2", "cuMemAlloc"]`).
    func function<T>(_ names: [String], as type: T.Type, library: String) throws -> T {
        for n in names {
            if let p = dlsym(handle, n) { return unsafeBitCast(p, to: type) }
        }
        throw CUDAError.symbolMissing(library: library, symbol: names.first ?? "?")
    }

    /// The file the loader mapped for `library` (e.g. `"libnvrtc"`; see `isSharedObject`), read
    /// from `/proc/self/maps` since `dladdr` needs `_GNU_SOURCE`; nil when none is mapped.
    func resolvedPath(library: String) -> String? {
        guard let f = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0, let l = line {
            let s = String(cString: l)
            guard let slash = s.firstIndex(of: "/") else { continue }
            let path = String(s[slash...]).trimmingNewline()
            let base = path.split(separator: "/").last.map(String.init) ?? ""
            if Self.isSharedObject(base, of: library) { return path }
        }
        return nil
    }

    /// Whether the file name `base` is the shared object of `library`: `libnvrtc.so` or
    /// `libnvrtc.so.<version>` for `"libnvrtc"` — not a sibling whose name merely starts the same
    /// way, such as `libnvrtc-builtins.so.13` (which NVRTC loads beside itself) or
    /// `libcudart.so.13` for `"libcuda"`.
    static func isSharedObject(_ base: String, of library: String) -> Bool {
        base == library + ".so" || base.hasPrefix(library + ".so.")
    }
}

/// Small POSIX helpers so the driver layer needs no Foundation.
extension String {
    func trimmingNewline() -> String {
        var s = self
        while s.last == "\n" || s.last == " " { s.removeLast() }
        return s
    }
}

package enum Env {
    static func get(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    static func fileExists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func dirname(_ path: String) -> String {
        guard let i = path.lastIndex(of: "/") else { return "." }
        return i == path.startIndex ? "/" : String(path[..<i])
    }

    /// Entries of a directory (names only, sorted; no "." and ".."), or [] if unreadable. Also the
    /// library's `FileSystem.list`.
    package static func listDirectory(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }
}
