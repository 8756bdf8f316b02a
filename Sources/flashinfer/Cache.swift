import ArgumentParser
import FlashInfer

struct Cache: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or clear the compiled-kernel cache ($FLASHINFER_CACHE_DIR, else ~/.cache/swift-flashinfer).",
        subcommands: [List.self, Clear.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List cached cubins.")
        func run() {
            let cache = KernelCache()
            let entries = cache.entries()
            print("\(cache.directory ?? "(memory only)"): \(entries.count) kernels, \(formatBytes(entries.reduce(0) { $0 + $1.bytes }))")
            for e in entries { print("  \(e.name)  \(formatBytes(e.bytes))") }
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every cached kernel.")
        func run() {
            let cache = KernelCache()
            let n = cache.clear()
            print("removed \(n) files from \(cache.directory ?? "(memory only)")")
        }
    }
}
