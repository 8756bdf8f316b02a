import Testing

@testable import FlashInfer

@Suite struct DecodePathModelTests {
    static let h200 = DecodePathModel(hardware: .init(smCount: 132, copyTBps: DecodePathsH200.copyTBps))

    static func shape(_ b: Int, _ kv: Int, _ g: Int, heads: Int = 8) -> DecodePathModel.Shape {
        .init(kvLens: Array(repeating: kv, count: b), pageSize: 16, numKVHeads: heads, groupSize: g, headDim: 128)
    }

    /// The measured grid was planned without the wave-aware split and ran the 64-row tile (7eec33e):
    /// predict with that plan and tile.
    static func asMeasured(_ m: DecodePathModel, _ s: DecodePathModel.Shape) -> DecodePathModel.Prediction {
        m.predict(s, waveAware: false, sixteenRowTile: false)
    }

    /// On every H200 row where the two paths differ by more than 5 %, the model picks the faster;
    /// over the whole grid its loss against the faster path stays under 5 % (the fixed rule: 93 %).
    @Test func picksTheMeasuredFasterPathOnTheH200Grid() {
        var worstModel = 0.0, worstRule = 0.0
        for r in DecodePathsH200.rows {
            let p = Self.asMeasured(Self.h200, Self.shape(r.batch, r.kvLen, r.group))
            let best = min(r.cudaCores, r.tensorCores)
            let measuredTC = r.tensorCores < r.cudaCores
            if max(r.cudaCores, r.tensorCores) / best > 1.05 {
                #expect(p.prefersTensorCores == measuredTC,
                        "B=\(r.batch) kv=\(r.kvLen) g=\(r.group): CC \(r.cudaCores) TC \(r.tensorCores), model \(p)")
            }
            worstModel = max(worstModel, (p.prefersTensorCores ? r.tensorCores : r.cudaCores) / best - 1)
            worstRule = max(worstRule, (r.group >= 4 ? r.tensorCores : r.cudaCores) / best - 1)
        }
        #expect(worstModel < 0.05)
        #expect(worstRule > 0.9)  // the data the fixed rule was replaced for
    }

    /// The fit's quality: each path's prediction within 20 % of every measured row, RMS under 7 %.
    @Test func predictionsTrackTheMeasurements() {
        var sq = 0.0
        for r in DecodePathsH200.rows {
            let p = Self.asMeasured(Self.h200, Self.shape(r.batch, r.kvLen, r.group))
            for (pred, meas) in [(p.cudaCoresMicros, r.cudaCores), (p.tensorCoresMicros, r.tensorCores)] {
                #expect(abs(pred / meas - 1) < 0.2, "B=\(r.batch) kv=\(r.kvLen) g=\(r.group): \(pred) vs \(meas)")
                sq += (pred / meas - 1) * (pred / meas - 1)
            }
        }
        #expect((sq / Double(2 * DecodePathsH200.rows.count)).squareRoot() < 0.07)
    }

    /// The Swift model is the fitting script's term for term (scripts/fit-decode-path-model.py,
    /// `predict` with the same constants).
    @Test func matchesTheFittingScript() {
        let cases: [(Int, Int, Int, Double, Double, Double)] = [  // B, kv, g, CC (old plan), TC, CC (wave-aware)
            (64, 4096, 4, 328.109, 254.641, 272.666), (1, 4096, 4, 14.51, 28.492, 14.51),
            (16, 32768, 8, 683.863, 488.905, 683.863), (256, 512, 16, 391.103, 151.115, 391.103),
            (4, 32768, 2, 128.116, 133.462, 128.116),
        ]
        for (b, kv, g, cc, tc, ccWave) in cases {
            let old = Self.h200.predict(Self.shape(b, kv, g), waveAware: false, sixteenRowTile: false)
            let new = Self.h200.predict(Self.shape(b, kv, g))
            #expect(abs(old.cudaCoresMicros - cc) < 0.01 && abs(old.tensorCoresMicros - tc) < 0.01, "B=\(b) kv=\(kv) g=\(g): \(old)")
            #expect(abs(new.cudaCoresMicros - ccWave) < 0.01, "B=\(b) kv=\(kv) g=\(g): \(new)")
        }
    }

    /// More bytes never predict less time: longer requests, more requests, more KV heads. (Across
    /// batch sizes that change the tensor-core plan's split, e.g. B = 1 → 2 at kv 4096, 32 → 16
    /// chunks, the prediction may fall: its merge folds half the chunks. So the batch sweep starts
    /// where neither path splits on the tensor-core side.)
    @Test(arguments: [1, 2, 4, 8, 16])
    func monotoneInBytes(group: Int) {
        let m = Self.h200
        for b in [1, 3, 16, 64, 200] {
            var last = (0.0, 0.0)
            for kv in stride(from: 256, through: 65536, by: 1024) {
                let p = m.predict(Self.shape(b, kv, group))
                #expect(p.cudaCoresMicros >= last.0 * 0.999 && p.tensorCoresMicros >= last.1 * 0.999,
                        "B=\(b) kv=\(kv) g=\(group): \(p) after \(last)")
                last = (p.cudaCoresMicros, p.tensorCoresMicros)
            }
        }
        for kv in [512, 4096, 32768] {
            var last = (0.0, 0.0)
            for b in [34, 48, 64, 100, 128, 256] {
                let p = m.predict(Self.shape(b, kv, group), waveAware: false)
                #expect(p.cudaCoresMicros >= last.0 * 0.999 && p.tensorCoresMicros >= last.1 * 0.999, "B=\(b) kv=\(kv) g=\(group)")
                last = (p.cudaCoresMicros, p.tensorCoresMicros)
            }
            let p8 = m.predict(Self.shape(64, kv, group)), p32 = m.predict(Self.shape(64, kv, group, heads: 32))
            #expect(p32.cudaCoresMicros > p8.cudaCoresMicros && p32.tensorCoresMicros > p8.tensorCoresMicros)
        }
    }

    /// The CUDA-core path slows with the group (2·D·G FMAs per key; group 16 reads K/V twice), the
    /// tensor-core path hardly: its 64 rows hold any group up to 64.
    @Test func groupPenaltyOnCUDACoresOnly() {
        for (b, kv) in [(64, 4096), (256, 4096), (16, 32768)] {
            let p = [1, 2, 4, 8, 16].map { Self.h200.predict(Self.shape(b, kv, $0), waveAware: false) }
            for i in 1..<p.count { #expect(p[i].cudaCoresMicros >= p[i - 1].cudaCoresMicros) }
            #expect(p[4].cudaCoresMicros > 1.8 * p[3].cudaCoresMicros)
            #expect(p[4].tensorCoresMicros < 1.02 * p[0].tensorCoresMicros)
        }
    }

    /// Large shapes scale with the copy ceiling; fixed costs do not.
    @Test func scalesWithTheDevice() {
        let h100 = DecodePathModel(hardware: .h100)
        let s = Self.shape(64, 32768, 4)
        let a = Self.h200.predict(s), b = h100.predict(s)
        let ratio = DecodePathsH200.copyTBps / DecodePathModel.Hardware.h100.copyTBps
        #expect(abs(b.tensorCoresMicros / a.tensorCoresMicros - ratio) < 0.1)
        let small = Self.shape(1, 512, 4)
        #expect(abs(h100.predict(small).cudaCoresMicros - Self.h200.predict(small).cudaCoresMicros) < 2)
        let fewerSMs = DecodePathModel(hardware: .init(smCount: 66, copyTBps: DecodePathsH200.copyTBps))
        #expect(fewerSMs.predict(Self.shape(1, 32768, 4)).cudaCoresMicros >= Self.h200.predict(Self.shape(1, 32768, 4)).cudaCoresMicros)
    }

    /// The H100 measurements (b0abb43, bench/NOTES.md): D1 tensor cores (by 27 %), D4 (MHA) CUDA
    /// cores or a tie (0.7 % apart); D2 and D3 are within a few % either way.
    @Test func h100Workloads() {
        let m = DecodePathModel(hardware: .h100)
        #expect(m.predict(Self.shape(64, 4096, 4)).prefersTensorCores)
        let d4 = m.predict(Self.shape(64, 4096, 1, heads: 32))
        #expect(abs(d4.cudaCoresMicros / d4.tensorCoresMicros - 1) < 0.03)
    }

    /// The copy ceiling of known and unknown cards.
    @Test func hardwareFromProperties() {
        #expect(DecodePathModel.Hardware.copyTBps(name: "NVIDIA H200", memoryClockKHz: 0, memoryBusWidthBits: 0) == 4.257)
        #expect(DecodePathModel.Hardware.copyTBps(name: "NVIDIA H100 80GB HBM3", memoryClockKHz: 0, memoryBusWidthBits: 0) == 3.006)
        let other = DecodePathModel.Hardware.copyTBps(name: "NVIDIA A100", memoryClockKHz: 1_593_000, memoryBusWidthBits: 5120)
        #expect(other > 1.6 && other < 2.0)
        #expect(DecodePathModel.Hardware.copyTBps(name: "?", memoryClockKHz: 0, memoryBusWidthBits: 0) == 3.0)
    }

    /// `prefersTensorCores(table:…)`: the hard rules (FP8, graph mode → CUDA cores), the model's
    /// batch-1 choice (CUDA cores, where the fixed rule took tensor cores), the fallback without a device.
    @Test func prefersTensorCoresUsesTheModel() {
        let t1 = PageTable.contiguous(seqLens: [4096], pageSize: 16)
        let t64 = PageTable.contiguous(seqLens: Array(repeating: 4096, count: 64), pageSize: 16)
        let hw = DecodePathModel.Hardware.h200
        func pick(_ t: PageTable, _ hq: Int, _ kv: DType = .f16, graph: Bool = false, _ h: DecodePathModel.Hardware? = hw) -> Bool {
            BatchDecodeWithPagedKVCache.prefersTensorCores(table: t, numQOHeads: hq, numKVHeads: 8, headDim: 128, kvDType: kv,
                                                           graphMode: graph, hardware: h)
        }
        #expect(!pick(t1, 32))           // B=1, group 4: CUDA cores (measured 14.1 against 27.2 µs)
        #expect(pick(t64, 32))           // D1: tensor cores
        #expect(pick(t64, 128))          // group 16
        #expect(!pick(t64, 32, .e4m3))   // FP8: CUDA cores
        #expect(!pick(t64, 32, graph: true))
        #expect(pick(t1, 32, .f16, nil))  // no device: the fixed rule
        #expect(!pick(t64, 8, .f16, nil))
    }

    /// Per-request lengths matter, not just the mean: one long request among short ones is a long
    /// CTA on its own.
    @Test func usesPerRequestLengths() {
        let even = DecodePathModel.Shape(kvLens: Array(repeating: 2048, count: 16), pageSize: 16, numKVHeads: 8, groupSize: 4, headDim: 128)
        let skewed = DecodePathModel.Shape(kvLens: [30848] + Array(repeating: 128, count: 15), pageSize: 16, numKVHeads: 8,
                                           groupSize: 4, headDim: 128)
        #expect(even.kvBytesTotal == skewed.kvBytesTotal)
        let a = Self.h200.predict(even), b = Self.h200.predict(skewed)
        #expect(a != b)
    }
}
