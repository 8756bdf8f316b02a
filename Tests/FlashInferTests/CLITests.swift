import Dispatch
import Foundation
import Testing

@testable import FlashInfer

/// The `flashinfer` command line, run as a process: the wording and exit codes of its errors, the
/// progress of `check --cpu`, `--version`, `info`. `swift build --build-tests` (and `swift test`)
/// build the executable beside the test bundle; these tests are skipped where it is not there.
@Suite(.enabled(if: CLI.binary != nil, "the flashinfer executable was not built beside the tests"))
struct CLITests {
    @Test func version() throws {
        let r = try CLI.run(["--version"])
        #expect(r.status == 0)
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == FlashInferVersion.string)
    }

    /// A bad option value is reported with the subcommand's usage, not the top-level one.
    @Test(arguments: [
        (["run", "single-prefill", "--backend", "gpu"], "flashinfer run single-prefill"),
        (["run", "single-decode", "--pos-enc", "yarn"], "flashinfer run single-decode"),
        (["run", "single-prefill", "--layout", "XYZ"], "flashinfer run single-prefill"),
        (["run", "single-decode", "--kv-dtype", "e3m4"], "flashinfer run single-decode"),
        (["run", "single-prefill", "--kv-dtype", "bf16"], "flashinfer run single-prefill"),  // neither FP8 nor --dtype's
        (["run", "single-decode", "--k-scale", "big"], "flashinfer run single-decode"),
        (["demo", "--backend", "gpu"], "flashinfer demo"),
        (["check", "--cpu", "--shard", "2/2"], "flashinfer check"),
    ])
    func badValuesGetTheSubcommandsUsage(arguments: [String], usage: String) throws {
        let io = ["--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"]
        let r = try CLI.run(arguments + (arguments[0] == "run" ? io : []))
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("Usage: \(usage)"), "\(r.stderr)")
    }

    @Test func causalDecodeIsRejected() throws {
        let r = try CLI.run(["run", "single-decode", "--causal", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--causal does not apply to decode"), "\(r.stderr)")
    }

    @Test func npyFileErrorsNameTheFile() throws {
        let dir = makeTempDirectory("cli")
        defer { removeDirectory(dir) }
        let q = Tensor.host([Float](repeating: 0.5, count: 4 * 64), shape: [4, 64], dtype: .f16)
        let k = Tensor.host([Float](repeating: 0.25, count: 3 * 4 * 64), shape: [3, 4, 64], dtype: .f16)
        for (name, t) in [("q", q), ("k", k), ("v", k)] { try NPYArray(tensor: t).write(path: "\(dir)/\(name).npy") }
        try FileSystem.writeAtomically(Array("hello".utf8), to: "\(dir)/text.npy")
        func run(q: String = "q.npy", out: String = "o.npy") throws -> CLI.Result {
            try CLI.run(["run", "single-decode", "--backend", "cpu", "--q", "\(dir)/\(q)", "--k", "\(dir)/k.npy", "--v", "\(dir)/v.npy", "--out", "\(dir)/\(out)"])
        }
        let missing = try run(q: "missing.npy")
        #expect(missing.status != 0 && missing.stderr.contains("cannot read \(dir)/missing.npy: No such file or directory"), "\(missing.stderr)")
        let text = try run(q: "text.npy")
        #expect(text.status != 0 && text.stderr.contains("--q \(dir)/text.npy: not a .npy file: bad magic"), "\(text.stderr)")
        let unwritable = try run(out: "no/such/dir/o.npy")
        #expect(unwritable.status != 0 && unwritable.stderr.contains("cannot write \(dir)/no/such/dir/o.npy"), "\(unwritable.stderr)")
        let ok = try run()
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try NPYArray.read(path: "\(dir)/o.npy").shape == [4, 64])
    }

    /// `--k-scale` / `--v-scale` reach `AttentionOptions`: the output is the library's with those
    /// scales (f16 K/V, which every backend's validation takes), not the unscaled one.
    @Test func kvScalesReachTheOptions() throws {
        let dir = makeTempDirectory("cli-scales")
        defer { removeDirectory(dir) }
        var rng = TestRNG(seed: 21)
        func random(_ shape: [Int]) -> Tensor {
            Tensor.host((0..<shape.reduce(1, *)).map { _ in Float(rng.unit() * 4 - 2) }, shape: shape, dtype: .f16)
        }
        let q = random([4, 64]), k = random([5, 2, 64]), v = random([5, 2, 64])
        for (name, t) in [("q", q), ("k", k), ("v", v)] { try NPYArray(tensor: t).write(path: "\(dir)/\(name).npy") }
        let r = try CLI.run(["run", "single-decode", "--backend", "cpu", "--k-scale", "0.5", "--v-scale", "2", "--q", "\(dir)/q.npy",
                             "--k", "\(dir)/k.npy", "--v", "\(dir)/v.npy", "--out", "\(dir)/o.npy"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("k [5, 2, 64] (k_scale 0.5, v_scale 2.0) ->"), "\(r.stdout)")
        let got = try NPYArray.read(path: "\(dir)/o.npy").tensor(as: .f16).contiguousBytesChecked()
        let scaled = try singleDecode(q: q, k: k, v: v, options: AttentionOptions(kScale: 0.5, vScale: 2), backend: .cpu)
        let plain = try singleDecode(q: q, k: k, v: v, backend: .cpu)
        #expect(got == (try scaled.output.contiguousBytesChecked()))
        #expect(got != (try plain.output.contiguousBytesChecked()))
        // A bad scale is the library's refusal.
        let bad = try CLI.run(["run", "single-decode", "--backend", "cpu", "--v-scale=-1", "--q", "\(dir)/q.npy",
                               "--k", "\(dir)/k.npy", "--v", "\(dir)/v.npy", "--out", "\(dir)/o.npy"])
        #expect(bad.status != 0 && bad.stderr.contains("v_scale = -1.0: must be finite and > 0"), "\(bad.stderr)")
    }

    /// `--kv-dtype e4m3`: K and V are read from their raw codes (`|u1`) and passed to the library as
    /// FP8 tensors with the scales. The CLI does what the library does with them: the same output
    /// bytes, or, where the library does not take FP8 K/V in this call (yet), its error.
    @Test func fp8KVFilesRunAsTheLibraryDoes() throws {
        let dir = makeTempDirectory("cli-fp8")
        defer { removeDirectory(dir) }
        var rng = TestRNG(seed: 22)
        func floats(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 8 - 4) } }
        let q = Tensor.host(floats(4 * 64), shape: [4, 64], dtype: .f16)
        let (kScale, vScale): (Float, Float) = (0.5, 2)
        for dtype in [DType.e4m3, .e5m2] {
            let k = try quantize(Tensor.host(floats(5 * 2 * 64), shape: [5, 2, 64], dtype: .f32), to: dtype, scale: kScale)
            let v = try quantize(Tensor.host(floats(5 * 2 * 64), shape: [5, 2, 64], dtype: .f32), to: dtype, scale: vScale)
            for (name, t) in [("q", q), ("k", k), ("v", v)] { try NPYArray(tensor: t).write(path: "\(dir)/\(name).npy") }
            let r = try CLI.run(["run", "single-decode", "--backend", "cpu", "--kv-dtype", dtype.rawValue, "--k-scale", "0.5", "--v-scale", "2",
                                 "--q", "\(dir)/q.npy", "--k", "\(dir)/k.npy", "--v", "\(dir)/v.npy", "--out", "\(dir)/o.npy"])
            do {
                let expected = try singleDecode(q: q, k: k, v: v, options: AttentionOptions(kScale: kScale, vScale: vScale), backend: .cpu)
                #expect(r.status == 0, "\(r.stderr)")
                #expect(r.stdout.contains("k [5, 2, 64] \(dtype.rawValue) (k_scale 0.5, v_scale 2.0) ->"), "\(r.stdout)")
                let got = try NPYArray.read(path: "\(dir)/o.npy").tensor(as: .f16).contiguousBytesChecked()
                #expect(got == (try expected.output.contiguousBytesChecked()))
            } catch {
                #expect(r.status != 0 && r.stderr.contains("Error: \(error)"), "library: \(error); CLI: \(r.stderr)")
            }
        }
        // An FP8 K/V file must hold codes: a float file is refused, naming it.
        try NPYArray(tensor: Tensor.host(floats(5 * 2 * 64), shape: [5, 2, 64], dtype: .f16)).write(path: "\(dir)/kf.npy")
        let floatsFile = try CLI.run(["run", "single-decode", "--backend", "cpu", "--kv-dtype", "e4m3", "--q", "\(dir)/q.npy",
                                      "--k", "\(dir)/kf.npy", "--v", "\(dir)/v.npy", "--out", "\(dir)/o.npy"])
        #expect(floatsFile.status != 0 && floatsFile.stderr.contains("--k \(dir)/kf.npy: holds '<f2', but an e4m3 K/V file must hold the raw FP8 codes as uint8 (|u1)"),
                "\(floatsFile.stderr)")
        let help = try CLI.run(["run", "single-prefill", "--help"])
        for flag in ["--kv-dtype", "--k-scale", "--v-scale", "|u1"] { #expect(help.stdout.contains(flag), "\(flag)") }
    }

    /// `check --cpu`: the seed rule of the GPU path, `--shard`, and a line per case.
    @Test func checkOnTheCPUPrintsEachCaseAndHonoursShardAndSeed() throws {
        let filter = "levels=2 shared=128 unique=37"  // three of the smallest cascade cases
        let r = try CLI.run(["check", "--cpu", "--filter", filter, "--shard", "0/3", "--seed", "7"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("seed 7\n"))
        #expect(r.stdout.contains("shard 0/3 of 3 cases"))
        #expect(r.stdout.contains("running 1 cases on the CPU reference"))
        #expect(r.stdout.contains("[1/1] cascade levels=2 shared=128 unique=37 qo=1 page=16 B=12 f16 … ok ("), "\(r.stdout)")
        #expect(r.stdout.contains("1 passed, 0 failed"))
        // Without --seed, the seed comes from the clock and is printed.
        let clock = try CLI.run(["check", "--cpu", "--filter", "no such case"])
        let seedLine = clock.stdout.split(separator: "\n").first { $0.hasPrefix("check on the CPU reference") }
        let seed = seedLine.flatMap { $0.split(separator: " ").last }.flatMap { UInt64($0) }
        #expect(seed != nil && seed != 1, "\(clock.stdout)")
    }

    @Test func benchHelpPointsToTheWorkloadsFile() throws {
        let r = try CLI.run(["bench", "--help"])
        #expect(r.stdout.contains("bench/WORKLOADS.md"))
        for id in ["D1", "D6", "P1", "P4", "C1", "J1"] { #expect(r.stdout.contains(id), "\(id)") }
        let here = URL(fileURLWithPath: #filePath)
        let root = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let workloads = try String(contentsOf: root.appendingPathComponent("bench/WORKLOADS.md"), encoding: .utf8)
        for id in ["D1", "D2", "D3", "D4", "D5", "D6", "P1", "P2", "P3", "P4", "C1", "S1", "J1"] {
            #expect(workloads.contains("| \(id) |"), "\(id)")
        }
    }

    /// `info` lists what was tried when NVRTC is missing, and names libnvrtc.so* (never
    /// libnvrtc-builtins) when it is found.
    @Test func infoReportsNVRTC() throws {
        let missing = try CLI.run(["info"], environment: ["FLASHINFER_NVRTC": "/nonexistent/libnvrtc.so.13", "FLASHINFER_CUDA_PIP": "/nonexistent"])
        let lines = missing.stdout.split(separator: "\n").map(String.init)
        let nvrtc = try #require(lines.firstIndex { $0.hasPrefix("NVRTC: ") }, "\(missing.stdout)")
        if lines[nvrtc].hasPrefix("NVRTC: not available") {
            #expect(lines[nvrtc].hasSuffix("Tried:"))
            #expect(lines[nvrtc + 1].contains("/nonexistent/libnvrtc.so.13"), "\(missing.stdout)")
            #expect(lines.contains { $0.contains("/nonexistent/nvidia/cu13/lib/libnvrtc.so*: no such directory") }, "\(missing.stdout)")
        }
        // With the NVRTC of the environment (CI: .cuda-pip), the path is libnvrtc's own.
        let found = try CLI.run(["info"])
        if let line = found.stdout.split(separator: "\n").first(where: { $0.hasPrefix("NVRTC: ") && $0.contains(" at ") }) {
            let base = line.split(separator: "/").last.map(String.init) ?? ""
            #expect(base.hasPrefix("libnvrtc.so"), "\(line)")
        }
    }
}

/// Runs the `flashinfer` executable built beside the test bundle.
enum CLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static let binary: String? = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // The test bundle is `.build/<triple>/debug/<Package>PackageTests.xctest` (a file on Linux).
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        let path = dir.appendingPathComponent("flashinfer").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary!)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read stderr on another thread while reading stdout, so that neither pipe can fill and stall the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let errDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            errDone.signal()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errBox.data, as: UTF8.self))
    }
}
