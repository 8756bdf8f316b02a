/// A cost model of batch decode's two paths — the CUDA-core decode kernel (`BatchDecodePlan`) and
/// the tensor-core path (the batch prefill kernel with the GQA group packed into rows,
/// `BatchPrefillPlan` with the 64-row tile) — that predicts each one's time from the shape and the
/// device, and so picks the faster (`BatchDecodeWithPagedKVCache.prefersTensorCores`).
///
/// Every term is a physical one, with constants fitted to measurements
/// (`scripts/fit-decode-path-model.py`, bench/NOTES.md "decode path cost model"):
///
///     time = fixed(path) + stream(grid) + [split] merge(path)
///
/// - **stream(grid)**: the plan's CTAs (work item × KV head [× head group]), each reading its
///   chunk's K and V (`tokens · 2 · headDim · kvBytes`), on `slots = ctasPerSM · SMs` resident
///   slots. With `n` CTAs resident the grid moves `X(n) = min(BW, n · r_cta, min(n, SMs) · r_SM)`
///   bytes per µs: the read bandwidth, a lone CTA's rate (its pipeline's latency: `keyNs` ns per
///   key) and, for the CUDA-core kernel, an SM's issue rate with every slot busy (`smKeyNs`; its
///   per-key work is `2 · headDim · group` FMAs, so this grows with the group). Then
///   `stream = S / X(min(N, slots))`, plus, for a grid of one full wave and a partial one of `k`
///   CTAs, the partial wave's extra time `mean · k / X(k) − mean · k / X(slots)` (its CTAs cannot
///   use the whole GPU: D1's 1.29 waves on CUDA cores), × `tailDecay` per further full wave
///   (later waves drift apart and overlap the tail), at least the longest CTA alone
///   (`bytes_max / r_cta`), plus `waveFixedMicros` per wave (CTA start-up and drain).
/// - **merge**: split plans write fp32 partials and merge them: a launch, rounds of 16 chunks for
///   the CUDA-core merge (`decode_merge.cuh`), a serial fold per chunk for the tensor-core path's
///   variable-length merge; plus the partials' bytes (written and read) at the bandwidth.
/// - **fixed**: per call. Fitted to per-call (event-timed) data, it includes the host's ~10–12 µs
///   of `run()`; the two paths' difference is what the choice uses.
///
/// Scaling to another device: the bandwidth is `readBandwidthFactor × copy ceiling` (the copy
/// ceiling of the device, `Hardware`), the grid comes from its SM count; the per-key and fixed
/// costs are SM-clock terms (the H100 and H200 share the 1980 MHz clock).
public struct DecodePathModel: Sendable, Hashable {
    /// The fitted constants (µs, ns per key at head_dim 128 and 16-bit K/V).
    public struct Constants: Sendable, Hashable {
        /// Read bandwidth over the device's copy ceiling (a copy reads and writes; decode reads).
        public var readBandwidthFactor: Double
        public var cudaCoreFixedMicros: Double
        public var tensorCoreFixedMicros: Double
        /// A lone CUDA-core CTA's ns per key: `keyNs0 + keyNs1 · ctaGroup`.
        public var cudaCoreKeyNs0: Double
        public var cudaCoreKeyNs1: Double
        /// An SM's ns per key with every slot busy (CUDA cores): `smKeyNs0 + smKeyNs1 · ctaGroup`.
        public var cudaCoreSMKeyNs0: Double
        public var cudaCoreSMKeyNs1: Double
        /// A lone tensor-core CTA's ns per key (nearly flat in the group: the rows are free up to 64).
        public var tensorCoreKeyNs: Double
        public var cudaCoreMergeMicros: Double
        public var cudaCoreMergeRoundMicros: Double
        public var tensorCoreMergeMicros: Double
        public var tensorCoreMergeChunkMicros: Double
        /// The 16-row tile's time over the 64-row tile's model (the model's grid is the 64-row
        /// tile's): the median ratio of the measured tensor-core times where the 16-row tile runs
        /// (bench/results/2026-12-04-decode-paths-tile-*-H200-00822a5.json, B 128 and 256: 0.83–1.02).
        public var sixteenRowTileFactor: Double = 0.95
        public var tailDecay: Double
        public var waveFixedMicros: Double

        public init(readBandwidthFactor: Double, cudaCoreFixedMicros: Double, tensorCoreFixedMicros: Double,
                    cudaCoreKeyNs0: Double, cudaCoreKeyNs1: Double, cudaCoreSMKeyNs0: Double, cudaCoreSMKeyNs1: Double,
                    tensorCoreKeyNs: Double, cudaCoreMergeMicros: Double, cudaCoreMergeRoundMicros: Double,
                    tensorCoreMergeMicros: Double, tensorCoreMergeChunkMicros: Double, tailDecay: Double,
                    waveFixedMicros: Double) {
            self.readBandwidthFactor = readBandwidthFactor
            self.cudaCoreFixedMicros = cudaCoreFixedMicros
            self.tensorCoreFixedMicros = tensorCoreFixedMicros
            self.cudaCoreKeyNs0 = cudaCoreKeyNs0
            self.cudaCoreKeyNs1 = cudaCoreKeyNs1
            self.cudaCoreSMKeyNs0 = cudaCoreSMKeyNs0
            self.cudaCoreSMKeyNs1 = cudaCoreSMKeyNs1
            self.tensorCoreKeyNs = tensorCoreKeyNs
            self.cudaCoreMergeMicros = cudaCoreMergeMicros
            self.cudaCoreMergeRoundMicros = cudaCoreMergeRoundMicros
            self.tensorCoreMergeMicros = tensorCoreMergeMicros
            self.tensorCoreMergeChunkMicros = tensorCoreMergeChunkMicros
            self.tailDecay = tailDecay
            self.waveFixedMicros = waveFixedMicros
        }

        /// Fitted to `bench/results/2026-12-04-decode-paths-H200-7eec33e.json` (75 shapes × 2
        /// paths, per-call medians; least squares on log time plus a hinge on the rows whose paths
        /// differ by > 5 %; `readBandwidthFactor` bounded to ≤ 1.07, the best read rate any
        /// measurement reached). RMS error 5.6 % (CUDA cores) / 4.9 % (tensor cores); every row
        /// whose paths differ by > 5 % is picked right; worst loss 4.9 % (B = 4, kv 512, group 2:
        /// 15.7 against 15.0 µs, launch noise).
        public static let h200 = Constants(
            readBandwidthFactor: 1.07, cudaCoreFixedMicros: 2.735, tensorCoreFixedMicros: 7.406,
            cudaCoreKeyNs0: 26.83, cudaCoreKeyNs1: 0.8847, cudaCoreSMKeyNs0: 10.47, cudaCoreSMKeyNs1: 1.34,
            tensorCoreKeyNs: 29.11, cudaCoreMergeMicros: 4.123, cudaCoreMergeRoundMicros: 0.2598,
            tensorCoreMergeMicros: 0, tensorCoreMergeChunkMicros: 0.4343, tailDecay: 0.0001728,
            waveFixedMicros: 3.232)
    }

    /// The device as the model sees it.
    public struct Hardware: Sendable, Hashable {
        public var smCount: Int
        /// Device-to-device copy ceiling, TB/s (bytes read + written per second / 1e12).
        public var copyTBps: Double
        public init(smCount: Int, copyTBps: Double) {
            self.smCount = max(smCount, 1)
            self.copyTBps = copyTBps
        }

        public static let h200 = Hardware(smCount: 132, copyTBps: 4.257)
        public static let h100 = Hardware(smCount: 132, copyTBps: 3.006)

        /// The copy ceiling for a device: measured for the cards the project holds (H200 4.26,
        /// H100 SXM 3.01 TB/s), else 88 % of the memory's peak (`2 · clock · bus width`; the H200's
        /// and H100's copy reaches 87–90 % of theirs) when the driver reports it, else 3 TB/s.
        public static func copyTBps(name: String, memoryClockKHz: Int, memoryBusWidthBits: Int) -> Double {
            if name.contains("H200") { return 4.257 }
            if name.contains("H100") && (name.contains("SXM") || name.contains("HBM3")) { return 3.006 }
            if memoryClockKHz > 0 && memoryBusWidthBits > 0 {
                return 0.88 * 2 * Double(memoryClockKHz) * 1e3 * Double(memoryBusWidthBits / 8) / 1e12
            }
            return 3.0
        }
    }

    /// A decode step's shape: per-request KV lengths, heads and element sizes.
    public struct Shape: Sendable, Hashable {
        /// KV tokens per request.
        public var kvLens: [Int]
        public var pageSize: Int
        public var numKVHeads: Int
        public var groupSize: Int
        public var headDim: Int
        /// Bytes per K/V element (2 for f16 / bf16, 1 for FP8).
        public var kvBytes: Int
        public init(kvLens: [Int], pageSize: Int, numKVHeads: Int, groupSize: Int, headDim: Int, kvBytes: Int = 2) {
            self.kvLens = kvLens
            self.pageSize = max(pageSize, 1)
            self.numKVHeads = max(numKVHeads, 1)
            self.groupSize = max(groupSize, 1)
            self.headDim = headDim
            self.kvBytes = kvBytes
        }
        public init(table: PageTable, numKVHeads: Int, groupSize: Int, headDim: Int, kvBytes: Int = 2) {
            self.init(kvLens: table.seqLens, pageSize: table.pageSize, numKVHeads: numKVHeads, groupSize: groupSize,
                      headDim: headDim, kvBytes: kvBytes)
        }
        public var numPages: [Int] { kvLens.map { ($0 + pageSize - 1) / pageSize } }
        /// K and V bytes of one key of one KV head.
        public var keyBytes: Int { 2 * headDim * kvBytes }
        /// Bytes a decode step must read at least: every request's K and V once.
        public var kvBytesTotal: Int { kvLens.reduce(0, +) * keyBytes * numKVHeads }
    }

    /// Both paths' predicted times (µs) and the choice.
    public struct Prediction: Sendable, Hashable {
        public var cudaCoresMicros: Double
        public var tensorCoresMicros: Double
        public var prefersTensorCores: Bool { tensorCoresMicros < cudaCoresMicros }
    }

    public var constants: Constants
    public var hardware: Hardware
    public init(hardware: Hardware, constants: Constants = .h200) {
        self.hardware = hardware
        self.constants = constants
    }

    /// Read bandwidth, bytes per µs.
    public var bandwidth: Double { constants.readBandwidthFactor * hardware.copyTBps * 1e6 }

    // MARK: - The paths' grids

    /// Query heads per CUDA-core CTA: the group rounded up to a power of two, at most 8
    /// (`CUDABatchDecode`); larger groups take several CTAs per KV head, each reading K/V again.
    public static func cudaCoreCTAGroup(_ group: Int) -> Int {
        var c = 1
        while c < min(group, 8) { c *= 2 }
        return c
    }

    /// Resident CUDA-core decode CTAs per SM, as the driver reports them for the 16-bit kernels
    /// on Hopper (bench/NOTES.md): 3 (the 64 KiB cp.async pipeline) for CTA groups 1–4, 2 for 8
    /// (~221 registers). The kernel's own occupancy is what `CUDABatchDecode` plans with; this
    /// estimate is for choosing before it is compiled. Head dims other than 128 scale the pipeline.
    public static func cudaCoreCTAsPerSM(group: Int, headDim: Int, kvBytes: Int, sharedMemoryPerSM: Int = 228 * 1024) -> Int {
        let pipeline = 4 * 2 * (128 / (headDim / 8)) * 4 * headDim * kvBytes
        let bySmem = max(1, sharedMemoryPerSM / (pipeline + 2048))
        return min(bySmem, cudaCoreCTAGroup(group) >= 8 ? 2 : 4)
    }

    /// Resident tensor-core (64-row tile) CTAs per SM: 2 (`__launch_bounds__(128, 2)`, 80 KiB).
    public static let tensorCoreCTAsPerSM = 2

    /// The CUDA-core plan for this shape (what `CUDABatchDecode` would make with `ctasPerSM`).
    public func cudaCorePlan(_ s: Shape, ctasPerSM: Int, waveAware: Bool = true) -> BatchDecodePlan {
        let heads = s.numKVHeads * ((s.groupSize + Self.cudaCoreCTAGroup(s.groupSize) - 1) / Self.cudaCoreCTAGroup(s.groupSize))
        return BatchDecodePlan.make(numPages: s.numPages, pageSize: s.pageSize, numKVHeads: heads,
                                    maxGridSize: ctasPerSM * hardware.smCount, waveAware: waveAware)
    }

    /// The tensor-core plan for this shape (one query per request, the 64-row tile).
    public func tensorCorePlan(_ s: Shape) -> BatchPrefillPlan {
        BatchPrefillPlan.make(qoLens: Array(repeating: 1, count: s.kvLens.count), kvLens: s.kvLens, pageSize: s.pageSize,
                              groupSize: s.groupSize, numKVHeads: s.numKVHeads, headDim: s.headDim,
                              numSMs: hardware.smCount, ctaTileQ: 64)
    }

    // MARK: - Predictions

    /// Both paths, planned as the library plans them (`sixteenRowTile` false: the tensor-core path
    /// always on the 64-row tile, as the grid the constants were fitted to was measured).
    public func predict(_ s: Shape, cudaCoreCTAsPerSM: Int? = nil, waveAware: Bool = true, sixteenRowTile: Bool = true) -> Prediction {
        let perSM = cudaCoreCTAsPerSM ?? Self.cudaCoreCTAsPerSM(group: s.groupSize, headDim: s.headDim, kvBytes: s.kvBytes)
        var tc = tensorCores(s, plan: tensorCorePlan(s))
        if sixteenRowTile && usesSixteenRowTile(s) && s.groupSize >= 2 { tc *= constants.sixteenRowTileFactor }
        return Prediction(cudaCoresMicros: cudaCores(s, plan: cudaCorePlan(s, ctasPerSM: perSM, waveAware: waveAware), ctasPerSM: perSM),
                          tensorCoresMicros: tc)
    }

    /// Whether the tensor-core path runs this shape on the 16-row tile (`BatchPrefillPlan.useSixteenRowTile`:
    /// head dim 128, 16-bit K/V, a group of at most 16, enough (request, KV head) pairs). The
    /// prediction applies `sixteenRowTileFactor` for groups 2–16, the range it was measured on.
    public func usesSixteenRowTile(_ s: Shape) -> Bool {
        s.headDim == 128 && s.kvBytes == 2 && s.groupSize <= 16
            && BatchPrefillPlan.useSixteenRowTile(ctas: s.kvLens.count * s.numKVHeads, numSMs: hardware.smCount)
    }

    /// The CUDA-core path's time (µs) for a given plan (its `numKVHeads` counts head groups).
    public func cudaCores(_ s: Shape, plan: BatchDecodePlan, ctasPerSM: Int) -> Double {
        let c = constants
        let ctaGroup = Double(Self.cudaCoreCTAGroup(s.groupSize))
        let scale = Double(s.headDim) / 128
        let kb = Double(s.keyBytes)
        let rCTA = kb / ((c.cudaCoreKeyNs0 + c.cudaCoreKeyNs1 * ctaGroup) * scale) * 1e3
        let rSM = kb / ((c.cudaCoreSMKeyNs0 + c.cudaCoreSMKeyNs1 * ctaGroup) * scale) * 1e3
        let tokens = itemTokens(kvLens: s.kvLens, requests: plan.requestIndices, chunks: plan.chunkIndices, chunkTokens: plan.chunkTokens)
        var t = c.cudaCoreFixedMicros + stream(itemBytes: tokens.map { Double($0) * kb }, ctasPerItem: plan.numKVHeads,
                                               slots: ctasPerSM * hardware.smCount, rCTA: rCTA, rSM: rSM)
        let maxChunks = s.numPages.map { ($0 + plan.chunkPages - 1) / plan.chunkPages }.max() ?? 1
        if plan.splitKV || maxChunks > 1 {
            let partials = Double(plan.workItems * s.numKVHeads * s.groupSize * s.headDim * 4 * 2)
            t += c.cudaCoreMergeMicros + c.cudaCoreMergeRoundMicros * Double((maxChunks + 15) / 16 - 1) + partials / bandwidth
        }
        return t
    }

    /// The tensor-core path's time (µs) for a given plan.
    public func tensorCores(_ s: Shape, plan: BatchPrefillPlan) -> Double {
        let c = constants
        let kb = Double(s.keyBytes)
        let rCTA = kb / (c.tensorCoreKeyNs * Double(s.headDim) / 128) * 1e3
        let tokens = itemTokens(kvLens: s.kvLens, requests: plan.requestIndices, chunks: plan.kvTileIndices, chunkTokens: plan.chunkTokens)
        var t = c.tensorCoreFixedMicros + stream(itemBytes: tokens.map { Double($0) * kb }, ctasPerItem: s.numKVHeads,
                                                 slots: Self.tensorCoreCTAsPerSM * hardware.smCount, rCTA: rCTA, rSM: .infinity)
        let maxChunks = s.kvLens.map { max(($0 + plan.chunkTokens - 1) / max(plan.chunkTokens, 1), 1) }.max() ?? 1
        if plan.splitKV {
            let partials = Double(plan.workItems * s.numKVHeads * s.groupSize * s.headDim * 4 * 2)
            t += c.tensorCoreMergeMicros + c.tensorCoreMergeChunkMicros * Double(maxChunks) + partials / bandwidth
        }
        return t
    }

    /// KV tokens of each work item (request `r`, chunk `k`): `min(chunk, len − k · chunk)`.
    func itemTokens(kvLens: [Int], requests: [Int32], chunks: [Int32], chunkTokens: Int) -> [Int] {
        zip(requests, chunks).map { r, k in max(0, min(chunkTokens, kvLens[Int(r)] - Int(k) * chunkTokens)) }
    }

    /// The streaming time (µs) of a grid of `items × ctasPerItem` CTAs, item `i`'s CTAs reading
    /// `itemBytes[i]` each, on `slots` resident slots (see the type's documentation).
    func stream(itemBytes: [Double], ctasPerItem: Int, slots: Int, rCTA: Double, rSM: Double) -> Double {
        let n = itemBytes.count * ctasPerItem
        guard n > 0 else { return 0 }
        let sms = Double(hardware.smCount), bw = bandwidth
        func rate(_ m: Int) -> Double { min(bw, Double(m) * rCTA, min(Double(m), sms) * rSM) }
        let total = itemBytes.reduce(0, +) * Double(ctasPerItem)
        let mean = total / Double(n)
        var t = total / rate(min(n, slots))
        let waves = n / slots, k = n - waves * slots
        if waves >= 1 && k > 0 {
            let extra = mean * Double(k) / rate(k) - mean * Double(k) / rate(slots)
            t += max(extra, 0) * pow(constants.tailDecay, waves - 1)
        }
        t = max(t, (itemBytes.max() ?? 0) / rCTA)
        return t + constants.waveFixedMicros * Double((n + slots - 1) / slots)
    }
}

/// `x^n` for n ≥ 0 (no Foundation).
@inline(__always) private func pow(_ x: Double, _ n: Int) -> Double {
    var r = 1.0
    for _ in 0..<max(n, 0) { r *= x }
    return r
}
