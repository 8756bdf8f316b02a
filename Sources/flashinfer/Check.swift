import ArgumentParser
import FlashInfer
import FlashInferCUDA

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every GPU kernel against the CPU reference on fresh random inputs (outputs NaN-poisoned first). Prints 'N passed, N failed'; exits non-zero on any failure.")

    @Option(help: "Only cases whose name contains this text.") var filter: String?
    @Option(help: "Random seed (default: from the clock, printed).") var seed: UInt64?
    @Flag(help: "Print every case, not only failures.") var verbose = false
    @Flag(help: "Run the cases that support it on the CPU backend instead (no GPU needed).") var cpu = false
    @Option(help: "Run only shard I of N ('I/N', 0-based): of the cases the filter selects, every Nth starting at the Ith, so that N processes share the CPU reference work (scripts/device-suite.sh runs 16).") var shard: String?

    /// (index, count) from `--shard I/N`.
    func shardSpec() throws -> (Int, Int) {
        guard let shard else { return (0, 1) }
        let parts = shard.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, (0..<parts[1]).contains(parts[0]) else {
            throw ValidationError("--shard must be I/N with 0 <= I < N, got \(shard)")
        }
        return (parts[0], parts[1])
    }

    func run() throws {
        if cpu {
            var rng = DemoRNG(seed: seed ?? 1)
            var passed = 0, failed = 0
            for c in cascadeCases() where c.cpuRun != nil && (filter.map { c.name.contains($0) } ?? true) {
                let r: String?
                do { r = try c.cpuRun!(&rng) } catch { r = "error: \(error)" }
                if let r { failed += 1; print("FAIL \(c.name): \(r)") } else { passed += 1; if verbose { print("ok   \(c.name)") } }
            }
            print("\(passed) passed, \(failed) failed")
            if failed > 0 { throw ExitCode(1) }
            return
        }
        let device: Device
        do { device = try Device.open() } catch {
            printError("flashinfer check needs a CUDA device: \(error)")
            throw ExitCode(2)
        }
        let seed = seed ?? UInt64(nowSeconds() * 1e6)
        print("check on \(device.properties.name), seed \(seed)")
        let stream = try device.makeStream()
        var passed = 0, failed = 0
        let (shardIndex, shardCount) = try shardSpec()
        let all = elementwiseCases() + pageCases() + mergeCases() + decodeCases() + prefillCases() + batchDecodeCases()
            + batchDecodeGraphCases() + batchPrefillCases() + batchPrefillGraphCases() + cascadeCases()
        let selected = all.filter { c in filter.map { c.name.contains($0) } ?? true }
        if shardCount > 1 { print("shard \(shardIndex)/\(shardCount) of \(selected.count) cases") }
        for (i, c) in selected.enumerated() where i % shardCount == shardIndex {
            let result: String?
            let t0 = nowSeconds()
            // Each case's inputs come from the seed and its name alone, so `--seed S --filter NAME`
            // reproduces one case of any run (whatever the shard or the other cases).
            var rng = DemoRNG(seed: seed ^ stableHash(c.name))
            do { result = try c.run(device, stream, &rng) } catch { result = "error: \(error)" }
            if let r = result {
                failed += 1
                print("FAIL \(c.name): \(r)")
            } else {
                passed += 1
                if verbose { print("ok   \(c.name) (\(fixed(nowSeconds() - t0, 2)) s)") }
            }
        }
        print("\(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

/// A check case: runs on the GPU and returns nil when the result matches the reference, or a
/// description of the first mismatch.
struct CheckCase {
    var name: String
    var run: (Device, Stream, inout DemoRNG) throws -> String?
    /// The same case on the CPU backend, where the case supports it (`check --cpu`: checks the
    /// check's own construction without a GPU).
    var cpuRun: ((inout DemoRNG) throws -> String?)? = nil
}

func elementwiseCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for dtype in [DType.f32, .f16, .bf16] {
        for n in [1, 1000, (1 << 20) + 3] {
            cases.append(CheckCase(name: "axpby dtype=\(dtype.rawValue) n=\(n)") { device, stream, rng in
                let alpha = rng.normal(), beta = rng.normal()
                let xs = (0..<n).map { _ in rng.normal() }, ys = (0..<n).map { _ in rng.normal() }
                let x = try Tensor.host(xs, shape: [n], dtype: dtype).toDevice(device)
                let y = try Tensor.host(ys, shape: [n], dtype: dtype).toDevice(device)
                let out = try Tensor.empty(shape: [n], dtype: dtype, device: device)
                try out.poison(stream: stream)
                try axpby(alpha: alpha, x: x, beta: beta, y: y, out: out, stream: stream)
                try stream.synchronize()
                let got = try out.toFloats()
                let xr = try x.toFloats(), yr = try y.toFloats()
                for i in 0..<n {
                    // Same float arithmetic as the kernel (fma may contract it): allow one unit of the dtype.
                    let e = alpha * xr[i] + beta * yr[i]
                    let tol = Float(dtype == .f32 ? 1e-6 : (dtype == .f16 ? 1e-3 : 8e-3)) * max(1, abs(e))
                    if !(abs(got[i] - dtype.roundTrip(e)) <= tol) {
                        return "element \(i): got \(got[i]), expected \(dtype.roundTrip(e))"
                    }
                }
                return nil
            })
        }
    }
    return cases
}

/// FNV-1a over the UTF-8 bytes: a hash that is the same in every process (unlike `Hasher`).
func stableHash(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
