import Dispatch
import Synchronization
import Testing

@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

@Suite struct KernelCacheTests {
    @Test func keyChangesWithEveryInput() {
        let base = KernelCache.key(source: "s", options: ["-a"], architecture: "sm_90a", nvrtcVersion: "13.0")
        #expect(base.count == 64)
        #expect(base == KernelCache.key(source: "s", options: ["-a"], architecture: "sm_90a", nvrtcVersion: "13.0"))
        #expect(base != KernelCache.key(source: "s2", options: ["-a"], architecture: "sm_90a", nvrtcVersion: "13.0"))
        #expect(base != KernelCache.key(source: "s", options: ["-b"], architecture: "sm_90a", nvrtcVersion: "13.0"))
        #expect(base != KernelCache.key(source: "s", options: ["-a"], architecture: "sm_80", nvrtcVersion: "13.0"))
        #expect(base != KernelCache.key(source: "s", options: ["-a"], architecture: "sm_90a", nvrtcVersion: "13.5"))
        // Boundaries between parts matter: ("ab", []) vs ("a", ["b"]).
        #expect(KernelCache.key(source: "ab", options: [], architecture: "x", nvrtcVersion: "y")
            != KernelCache.key(source: "a", options: ["b"], architecture: "x", nvrtcVersion: "y"))
    }

    /// Issue 10: a cubin compiled from other kernel headers or by another library version must
    /// never be served, so the key covers the content of every embedded header and the version.
    @Test func keyCoversEveryEmbeddedHeaderByteAndTheLibraryVersion() throws {
        let files = KernelSources.all
        #expect(files.count > 10)
        // The parameter structs' header (Sources/CFlashInferParams/include, the plugin's second root) too.
        #expect(files["flashinfer/params.h"] != nil)
        #expect(KernelSources.digest == KernelSources.digest(of: files))
        func key(_ digest: String, version: String = FlashInferVersion.string) -> String {
            KernelCache.key(source: "#include <flashinfer/attention/decode.cuh>", options: ["-std=c++17"], architecture: "sm_90a",
                            nvrtcVersion: "13.0", headersDigest: digest, libraryVersion: version)
        }
        let base = key(KernelSources.digest)
        // The default arguments are the embedded digest and this library's version.
        #expect(base == KernelCache.key(source: "#include <flashinfer/attention/decode.cuh>", options: ["-std=c++17"],
                                        architecture: "sm_90a", nvrtcVersion: "13.0"))
        #expect(key(KernelSources.digest, version: FlashInferVersion.string + "+1") != base)
        // One byte changed in each header in turn (the first, a middle and the last byte): a new key.
        for name in files.keys.sorted() {
            let text = Array(files[name]!.utf8)
            for i in Set([0, text.count / 2, text.count - 1]) where !text.isEmpty {
                var changed = text
                changed[i] = changed[i] == UInt8(ascii: "x") ? UInt8(ascii: "y") : UInt8(ascii: "x")
                var edited = files
                edited[name] = String(decoding: changed, as: UTF8.self)
                #expect(key(KernelSources.digest(of: edited)) != base, "byte \(i) of \(name)")
            }
            // A renamed header is a different set of headers too.
            var renamed = files
            renamed[name] = nil
            renamed[name + ".old"] = files[name]
            #expect(key(KernelSources.digest(of: renamed)) != base, "renamed \(name)")
        }
    }

    @Test func missThenHit() {
        let dir = makeTempDirectory("hit")
        defer { removeDirectory(dir) }
        let cache = KernelCache(directory: dir)
        #expect(cache.load(key: "k1") == .miss)
        let payload: [UInt8] = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        cache.store(key: "k1", cubin: payload, source: "// src")
        #expect(cache.load(key: "k1") == .hit(payload))
        #expect(cache.entries().map(\.name) == ["k1.cubin"])
        #expect(FileSystem.read(dir + "/k1.cu") == Array("// src".utf8))
        #expect(cache.clear() == 2)
        #expect(cache.load(key: "k1") == .miss)
    }

    @Test(arguments: ["truncated", "flipped", "garbage", "empty"])
    func corruptFileIsDetectedRemovedAndRebuilt(kind: String) throws {
        let dir = makeTempDirectory("corrupt")
        defer { removeDirectory(dir) }
        let cache = KernelCache(directory: dir)
        let payload: [UInt8] = Array(repeating: 0xAB, count: 4096)
        cache.store(key: "k", cubin: payload)
        let path = dir + "/k.cubin"
        var bytes = try #require(FileSystem.read(path))
        switch kind {
        case "truncated": bytes.removeLast(100)
        case "flipped": bytes[bytes.count - 10] ^= 0x01
        case "garbage": bytes = Array("not a cubin at all, definitely not".utf8)
        default: bytes = []
        }
        try FileSystem.writeAtomically(bytes, to: path)
        guard case .corrupt = cache.load(key: "k") else {
            Issue.record("a \(kind) file was not detected")
            return
        }
        #expect(!FileSystem.exists(path), "the corrupt file is removed")
        cache.store(key: "k", cubin: payload)
        #expect(cache.load(key: "k") == .hit(payload))
    }

    @Test func unwritableDirectoryDegradesToMemoryOnlyWithOneWarning() {
        // A directory below a regular file cannot be created, even by root.
        let dir = makeTempDirectory("ro")
        defer { removeDirectory(dir) }
        let file = dir + "/plain-file"
        try? FileSystem.writeAtomically([1, 2, 3], to: file)
        let warnings = Mutex<[String]>([])
        let cache = KernelCache(directory: file + "/cache") { w in warnings.withLock { $0.append(w) } }
        cache.store(key: "a", cubin: [1])
        cache.store(key: "b", cubin: [2])
        #expect(cache.load(key: "a") == .miss)
        let w = warnings.withLock { $0 }
        #expect(w.count == 1)
        #expect(w.first?.contains("memory only") == true)
    }

    @Test func concurrentWritersNeverExposeAPartialFile() {
        let dir = makeTempDirectory("race")
        defer { removeDirectory(dir) }
        let cache = KernelCache(directory: dir)
        let payload: [UInt8] = (0..<(256 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let bad = Mutex(0)
        // Two writers store the same key over and over while a reader keeps loading it.
        DispatchQueue.concurrentPerform(iterations: 3) { worker in
            for _ in 0..<40 {
                if worker < 2 {
                    cache.store(key: "shared", cubin: payload)
                } else {
                    switch cache.load(key: "shared") {
                    case .hit(let p) where p != payload: bad.withLock { $0 += 1 }
                    case .corrupt: bad.withLock { $0 += 1 }
                    default: break
                    }
                }
            }
        }
        #expect(bad.withLock { $0 } == 0)
        #expect(cache.load(key: "shared") == .hit(payload))
        #expect(FileSystem.list(dir).filter { $0.contains(".tmp.") }.isEmpty, "no temporary files left behind")
    }

    @Test func sha256KnownVectors() {
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}
