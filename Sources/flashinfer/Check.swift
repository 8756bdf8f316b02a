import ArgumentParser
import Dispatch
import FlashInfer
import FlashInferCUDA
import FlashInferTesting
import Synchronization

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every GPU kernel against the CPU reference on fresh random inputs (outputs NaN-poisoned first). Prints 'N passed, N failed'; exits non-zero on any failure.")

    @Option(help: "Only cases whose name contains this text.") var filter: String?
    @Option(help: "Skip cases whose name contains this text (after --filter).") var exclude: String?
    @Option(help: "Random seed (default: from the clock, printed).") var seed: UInt64?
    @Flag(help: "Print every case, not only failures.") var verbose = false
    @Flag(help: "Run the cases that support it on the CPU backend instead (no GPU needed; prints every case as it finishes, and honours --filter, --seed and --shard).") var cpu = false
    @Option(help: "Run only shard I of N ('I/N', 0-based): of the cases the filter selects, every Nth starting at the Ith, so that N processes share the CPU reference work (scripts/device-suite.sh runs 16).") var shard: String?
    @Option(help: "Stress: run this shard's cases on T threads at once, each thread on its own stream (default 1).") var threads = 1
    @Flag(help: "Stress: a background thread keeps the copy engines and the memory busy while the cases run (pageable uploads, device copies and readbacks on a stream of its own).") var noise = false
    @Option(help: "Run the selection R times, each round with new inputs (round r uses seed + r; a failure names its round's seed).") var rounds = 1
    @Flag(help: "Make the check streams blocking (CU_STREAM_DEFAULT) instead of non-blocking: for A/B runs; the library must pass either way.") var blockingStreams = false

    /// (index, count) from `--shard I/N`.
    func shardSpec() throws -> (Int, Int) {
        guard let shard else { return (0, 1) }
        let parts = shard.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, (0..<parts[1]).contains(parts[0]) else {
            throw ValidationError("--shard must be I/N with 0 <= I < N, got \(shard)")
        }
        return (parts[0], parts[1])
    }

    func validate() throws {
        _ = try shardSpec()
    }

    /// The cases this process runs: those the filter selects, then this shard's share of them.
    func casesForThisShard(of all: [CheckCase]) throws -> [CheckCase] {
        let (shardIndex, shardCount) = try shardSpec()
        let selected = all.filter { c in
            (filter.map { c.name.contains($0) } ?? true) && !(exclude.map { c.name.contains($0) } ?? false)
        }
        if shardCount > 1 { print("shard \(shardIndex)/\(shardCount) of \(selected.count) cases") }
        return selected.enumerated().filter { $0.offset % shardCount == shardIndex }.map(\.element)
    }

    func run() throws {
        if cpu {
            let seed = seed ?? clockSeed()
            print("check on the CPU reference (Float64), seed \(seed)")
            let mine = try casesForThisShard(of: cpuCheckCases())
            print("running \(mine.count) cases on the CPU reference…")
            var passed = 0, failed = 0
            for (i, c) in mine.enumerated() {
                // One line per case, its name written before the case runs (the largest take a minute).
                print("[\(i + 1)/\(mine.count)] \(c.name) …", terminator: " ")
                flushStandardOutput()
                let t0 = nowSeconds()
                var rng = caseRNG(seed: seed, name: c.name)
                let r: String?
                do { r = try c.cpuRun!(&rng) } catch { r = "error: \(error)" }
                if let r {
                    failed += 1
                    print("FAIL: \(r) (seed \(seed))")
                } else {
                    passed += 1
                    print("ok (\(fixed(nowSeconds() - t0, 2)) s)")
                }
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
        let seed = seed ?? clockSeed()
        guard threads >= 1, rounds >= 1 else { throw ValidationError("--threads and --rounds must be >= 1") }
        print("check on \(device.properties.name), seed \(seed)\(threads > 1 ? ", \(threads) threads" : "")\(noise ? ", noise" : "")\(rounds > 1 ? ", \(rounds) rounds" : "")\(blockingStreams ? ", blocking streams" : "")")
        let streams = try (0..<threads).map { _ in try device.makeStream(blocking: blockingStreams) }
        let mine = try casesForThisShard(of: allCheckCases())
        let noiseThread = noise ? try NoiseThread(device: device) : nil
        var passed = 0, failed = 0
        for round in 0..<rounds {
            let roundSeed = seed &+ UInt64(round)
            if rounds > 1 { print("round \(round + 1)/\(rounds), seed \(roundSeed)") }
            // Thread t runs cases t, t + T, t + 2T, … on streams[t]; results are printed in case order.
            let results = Mutex([String?](repeating: nil, count: mine.count))
            let times = Mutex([Double](repeating: 0, count: mine.count))
            let notes = Mutex([String?](repeating: nil, count: mine.count))
            let cases = UncheckedBox(mine)
            let threadStreams = UncheckedBox(streams)
            let group = DispatchGroup()
            for t in 0..<threads {
                DispatchQueue(label: "check-\(t)").async(group: group) {
                    for i in stride(from: t, to: cases.value.count, by: threads) {
                        let c = cases.value[i]
                        let t0 = nowSeconds()
                        var rng = caseRNG(seed: roundSeed, name: c.name)
                        let r: String?
                        _ = CheckNote.take()
                        do { r = try c.run(device, threadStreams.value[t], &rng) } catch { r = "error: \(error)" }
                        let note = CheckNote.take()
                        results.withLock { $0[i] = r }
                        notes.withLock { $0[i] = note }
                        times.withLock { $0[i] = nowSeconds() - t0 }
                    }
                }
            }
            group.wait()
            let rs = results.withLock { $0 }, ts = times.withLock { $0 }, ns = notes.withLock { $0 }
            for (i, c) in mine.enumerated() {
                if let r = rs[i] {
                    failed += 1
                    print("FAIL \(c.name): \(r) (seed \(roundSeed))")
                } else {
                    passed += 1
                    if verbose { print("ok   \(c.name) (\(fixed(ts[i], 2)) s)\(ns[i].map { ": " + $0 } ?? "")") }
                }
            }
        }
        if let noiseThread { print("noise: \(noiseThread.stop()) copy rounds") }
        print("\(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

/// The seed of a check run when `--seed` is not given: the clock, in microseconds (printed).
func clockSeed() -> UInt64 { UInt64(nowSeconds() * 1e6) }
