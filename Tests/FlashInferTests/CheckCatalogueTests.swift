import Dispatch
import FlashInfer
import FlashInferTesting
import Foundation
import Synchronization
import Testing

/// The GPU check catalogue (`flashinfer check`, `Sources/FlashInferTesting`) without a GPU: its
/// shape (names, seeds, order, the families' sizes) and the cases that have a CPU variant.
@Suite struct CheckCatalogueTests {
    /// A passing case's note (the chi-square cases' p-values in the check log): joined per thread,
    /// taken once, and not seen from another thread.
    @Test func caseNotesArePerThreadAndTakenOnce() {
        _ = CheckNote.take()
        CheckNote.record("a")
        CheckNote.record("b")
        let other = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {  // another OS thread, as the check runner's queues are
            let before = CheckNote.take()
            CheckNote.record("other")
            other.withLock { $0 = before == nil ? CheckNote.take() : "saw \(before!)" }
            done.signal()
        }
        thread.start()
        done.wait()
        let seen = other.withLock { $0 }
        #expect(seen == "other")
        #expect(CheckNote.take() == "a; b")
        #expect(CheckNote.take() == nil)
    }

    /// Every case name is unique, so `--filter NAME` and `seed ^ stableHash(name)` identify one
    /// case; the seeds differ too. The total is the families' sizes: the small families are
    /// counted from their loops here, the sweeps (decode, prefill, batch) only add up.
    @Test func catalogueNamesAreUniqueAndSeedsDiffer() {
        let all = allCheckCases()
        let names = all.map(\.name)
        #expect(Set(names).count == names.count, "duplicate names: \(Dictionary(grouping: names) { $0 }.filter { $0.value.count > 1 }.keys.sorted())")
        #expect(Set(names.map(stableHash)).count == names.count)
        #expect(Set(names.map { caseRNG(seed: 1, name: $0).state }).count == names.count)

        // 3 dtypes × 3 lengths; 2 layouts × 3 page sizes × 2 dtypes + (FP8) 2 caches × 2 layouts × (2 inputs page 1 + 3 page 16)
        // + 4 with device indices; 2 dtypes × 3 shapes × (2 merge_state + 3 merge_states);
        // 3 shared lengths × 4 (unique, qo) + 5 extra; 2 readme + 2 cross-stream + 1 batch-decode; 8 + 4 sparse refusals;
        // sampling: 3 Philox + 4 shapes × (4 top-k + 4 top-p renorm, 3 masks, 3 temperatures × 2 dtypes)
        // + 6 masks with signed zeros at the k-th (the 4 × 111 shape) + 2 edge
        // + 4 sorted-row renorm/mask + 13 filters × 2 chi-square + 5 edge filters + 7 tied + 5 sorted + 17 support + 1 invalid rows
        // + 2 same-as-CPU; from logits: 4 same-as-CPU + 2 + 2 chi-square + 1 invalid rows; chain speculative: 3 same-as-CPU + 1 into device buffers + 2 chi-square; 1 per-row values in device memory;
        // generators: 6 samplers + from logits graph replays + 1 entry points / chain / read-only / placement.
        let fixed = [(elementwiseCases(), 9), (pageCases(), 36), (mergeCases(), 30), (cascadeCases(), 17), (orderingCases(), 5),
                     (rejectionCases(), 12), (samplingCases(), 3 + 4 * (8 + 3 + 6) + 6 + 2 + 4 + 26 + 5 + 7 + 5 + 17 + 1 + 2 + 4 + 2 + 2 + 1 + 3 + 1 + 2 + 7 + 1 + 1)]
        for (cases, n) in fixed { #expect(cases.count == n, "\(cases.first?.name ?? "?"): \(cases.count) cases") }
        let families = [elementwiseCases(), pageCases(), mergeCases(), decodeCases(), prefillCases(), hopperPrefillCases(), batchDecodeCases(),
                        batchDecodeGraphCases(), batchDecodeStepCaptureCases(), batchPrefillCases(), batchPrefillGraphCases(), cascadeCases(), cascadeGraphCases(), orderingCases(),
                        customMaskCases(), blockSparseCases(), rejectionCases(), normCases(), activationCases(), ropeCases(), samplingCases()]
        #expect(all.count == families.map(\.count).reduce(0, +))
        // The catalogue in `check`'s order: shards take every Nth case, so the order is part of the contract.
        #expect(names == families.flatMap { $0.map(\.name) })
        #expect(names.first == "axpby dtype=f32 n=1")
        #expect(names.last == "sampling generator public entry points, chain_speculative, a borrowed read-only state, placement")
        // The H200 runs of README (320 cases, then 5 ordering cases): the sweeps must not shrink unnoticed.
        #expect(all.count >= 325)
    }

    /// The seeds must be the same in every process and build: FNV-1a and SplitMix64 test vectors.
    @Test func seedsAreStable() {
        #expect(stableHash("") == 0xcbf2_9ce4_8422_2325)
        #expect(stableHash("a") == 0xaf63_dc4c_8601_ec8c)
        var rng = SeededRNG(seed: 0)
        #expect(rng.next() == 0xe220_a839_7b1d_cdaf)
        #expect(caseRNG(seed: 42, name: "a").state == 42 ^ stableHash("a"))
    }

    /// `check --cpu` runs the cascade cases, which are the only ones with a CPU variant.
    @Test func cpuCasesAreTheCascadeCases() {
        let cpu = cpuCheckCases().map(\.name)
        #expect(cpu == cascadeCases().map(\.name))
        #expect(allCheckCases().filter { $0.cpuRun != nil }.map(\.name) == cpu)
    }

    /// A fixed subset of `check --cpu` (the full set takes 2–3 minutes on 2 cores; these are its
    /// three cheapest, ~7 s each in a debug build): decode over a one-token unique level, decode
    /// with partly filled pages, and causal append on page size 1. Each must exist, so a rename
    /// fails here instead of testing nothing.
    static let cpuSubset = [
        "cascade levels=2 shared=128 unique=1 qo=1 page=16 B=12 f16",
        "cascade levels=2 shared=128 unique=37 qo=1 page=16 B=12 f16",
        "cascade levels=2 shared=128 unique=37 qo=17 page=1 B=5 f16",
    ]

    @Test(arguments: cpuSubset)
    func cpuCaseMatchesTheReference(name: String) throws {
        let c = try #require(cpuCheckCases().first { $0.name == name }, "no CPU case named \(name)")
        var rng = caseRNG(seed: 2026, name: c.name)
        let failure = try c.cpuRun!(&rng)
        #expect(failure == nil, "\(name): \(failure ?? "")")
    }
}
