import ArgumentParser
import FlashInfer
import FlashInferCUDA

@main
struct FlashInferCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flashinfer",
        abstract: "swift-flashinfer: attention kernels for LLM serving, from Swift.",
        version: FlashInferVersion.string,
        subcommands: [Info.self, Demo.self, Check.self, Bench.self, Run.self, Cache.self])

    static func main() {
        lineBufferStandardOutput()
        main(nil)
    }
}

/// Writes to stderr without Foundation.
func printError(_ s: String) {
    var e = StandardError()
    print(s, to: &e)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        let bytes = Array(string.utf8)
        _ = bytes.withUnsafeBytes { writeToFD2($0) }
    }
}

func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : fixed(v, 1) + " " + units[u]
}

/// `x` with `digits` decimals (no Foundation `String(format:)`).
func fixed(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return "\(x)" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (abs(x) * p).rounded()
    let i = Int(r / p)
    var frac = String(Int(r.truncatingRemainder(dividingBy: p)))
    while frac.count < digits { frac = "0" + frac }
    return (x < 0 && r != 0 ? "-" : "") + (digits > 0 ? "\(i).\(frac)" : "\(i)")
}

func pad(_ s: String, _ n: Int) -> String {
    s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
}
