import Dispatch
import FlashInferTesting
import Testing

@_spi(Bench) @testable import FlashInfer

/// Plan once (issue 11 item 4): single decode and single prefill plans are cached per shape class,
/// and a cached plan is exactly the plan the shape gets afresh. No GPU: the device's answers
/// (occupancy) come from a model; the keys and plans are the library's.
@Suite struct PlanCacheTests {
    /// A device model: an SM count and an occupancy per decode kernel (what the driver would say).
    struct Model {
        var index: Int
        var smCount: Int
        func occupancy(_ s: DecodeSpec) -> Int { s.headDim == 256 ? 1 : 1 + (s.group + s.keysPerSlot) % 3 }
    }

    static let models = [Model(index: 0, smCount: 132), Model(index: 1, smCount: 78), Model(index: 2, smCount: 16)]

    struct DecodeCase {
        var shape: SingleAttentionShape
        var dtype: DType
        var options: AttentionOptions
        var model: Model
        var numChunks: Int?
        var stages = DecodeSpec.defaultStages
        var keysPerSlot = DecodeSpec.defaultKeysPerSlot
    }

    /// Many decode shapes: every dtype, head dim, group (1 to 12: one and two head groups), the
    /// variants, windows, lengths around the split's steps (0, one tile, the 256-key minimum, runs
    /// of consecutive lengths in one class), forced splits and pipeline overrides, three devices.
    static func decodeCases() -> [DecodeCase] {
        var rng = SeededRNG(seed: 11)
        let heads = [(32, 8), (32, 32), (64, 8), (8, 1), (40, 8), (96, 8), (4, 4)]
        let lengths = [0, 1, 31, 32, 255, 256, 257, 1000, 4096, 4097] + Array(30700...30760) + [32768, 131072]
        let encodings: [PositionEncoding] = [.none, .ropeLlama(scale: 2, theta: 5e5), .alibi]
        var cases: [DecodeCase] = []
        // 80 configurations × 25 lengths (the list's, and random ones up to 140k): lengths of one
        // configuration share classes, so the cache answers many calls with a plan another length made.
        for _ in 0..<80 {
            let (hq, hkv) = heads[Int(rng.next() % UInt64(heads.count))]
            let d = supportedHeadDims[Int(rng.next() % 3)]
            var o = AttentionOptions()
            o.positionEncoding = encodings[Int(rng.next() % 3)]
            o.logitsSoftCap = rng.next() % 2 == 0 ? 0 : 30
            o.windowLeft = [-1, -1, 0, 100, 4095][Int(rng.next() % 5)]
            o.smScale = rng.next() % 2 == 0 ? nil : 0.1
            o.layout = rng.next() % 2 == 0 ? .nhd : .hnd
            var c = DecodeCase(shape: SingleAttentionShape(qoLen: 1, kvLen: 0, numQOHeads: hq, numKVHeads: hkv, headDim: d),
                               dtype: rng.next() % 2 == 0 ? .f16 : .bf16, options: o, model: models[Int(rng.next() % 3)])
            switch rng.next() % 8 {
            case 0: c.numChunks = 1 + Int(rng.next() % 40)
            case 1: (c.stages, c.keysPerSlot) = ([4, 6, 8][Int(rng.next() % 3)], [4, 8][Int(rng.next() % 2)])
            default: break
            }
            for _ in 0..<25 {
                c.shape.kvLen = rng.next() % 2 == 0 ? lengths[Int(rng.next() % UInt64(lengths.count))] : Int(rng.next() % 140_000)
                cases.append(c)
            }
        }
        return cases
    }

    /// The decode plan as the library planned it per call before the cache (CUDADecodeLaunch.init),
    /// written out: the oracle a cached plan must equal.
    static func freshDecodePlan(_ c: DecodeCase) -> (spec: DecodeSpec, split: DecodeSplit, ctasPerSM: Int, headGroups: Int, workspace: Int) {
        let g = c.shape.groupSize
        var cta = 1
        while cta < min(g, 8) { cta *= 2 }
        let spec = DecodeSpec(dtype: c.dtype, headDim: c.shape.headDim, group: cta, posEnc: .init(c.options.positionEncoding),
                              softCap: c.options.logitsSoftCap > 0, stages: c.stages, keysPerSlot: c.keysPerSlot)
        let headGroups = (g + cta - 1) / cta
        let kvBegin = c.options.windowLeft >= 0 ? max(0, c.shape.kvLen - 1 - c.options.windowLeft) : 0
        let attended = c.shape.kvLen - kvBegin
        let split = c.numChunks.map { decodeSplit(kvLen: attended, forcedChunks: $0, tileKeys: spec.tileKeys) }
            ?? singleDecodeSplit(kvLen: attended, ctasPerChunk: c.shape.numKVHeads * headGroups, smCount: c.model.smCount,
                                 tileKeys: spec.tileKeys)
        let workspace = split.isSplit ? split.numChunks * c.shape.numQOHeads * c.shape.headDim * 4 + split.numChunks * c.shape.numQOHeads * 4 : 0
        return (spec, split, c.model.occupancy(spec), headGroups, workspace)
    }

    static func key(_ c: DecodeCase) throws -> SingleDecodePlan.Key {
        try SingleDecodePlan.key(shape: c.shape, dtype: c.dtype, options: c.options, device: c.model.index, smCount: c.model.smCount,
                                 numChunks: c.numChunks, stages: c.stages, keysPerSlot: c.keysPerSlot)
    }

    /// The library's lookup path (classify, then the cache, resolving a miss) with the model as the device.
    static func cachedDecodePlan(_ c: DecodeCase, in cache: PlanCache<SingleDecodePlan.Key, SingleDecodePlan>) throws -> SingleDecodePlan {
        let key = try key(c)
        return try cache.value(for: key) { () throws(FlashInferError) in
            try SingleDecodePlan(key: key, ctasPerSM: c.model.occupancy(key.spec), deviceName: "model \(c.model.index)")
        }
    }

    @Test func cachedDecodePlanIsTheFreshPlanForManyShapes() throws {
        let cache = PlanCache<SingleDecodePlan.Key, SingleDecodePlan>(capacity: 100_000)
        let cases = Self.decodeCases()
        for c in cases {
            let plan = try Self.cachedDecodePlan(c, in: cache)
            let fresh = Self.freshDecodePlan(c)
            let what = "\(c.shape) \(c.dtype) \(c.options) model \(c.model.index) chunks \(c.numChunks.map(String.init) ?? "-")"
            #expect(plan.spec == fresh.spec, "\(what)")
            #expect(plan.split == fresh.split, "\(what)")
            #expect(plan.ctasPerSM == fresh.ctasPerSM && plan.headGroups == fresh.headGroups, "\(what)")
            #expect(plan.grid == (fresh.split.numChunks, c.shape.numKVHeads, fresh.headGroups), "\(what)")
            #expect(plan.workspaceBytes == fresh.workspace, "\(what)")
            #expect(plan.mergeSpec == DecodeMergeSpec(dtype: c.dtype, headDim: c.shape.headDim))
            // Planned without the cache: the same value.
            let key = try Self.key(c)
            #expect(plan == (try SingleDecodePlan(key: key, ctasPerSM: c.model.occupancy(key.spec), deviceName: "")), "\(what)")
        }
        // Lengths share classes (e.g. 30700...30760 on one device and shape): the cache was hit,
        // and holds fewer plans than there were calls.
        let (hits, misses) = cache.statistics
        #expect(hits + misses == cases.count)
        #expect(hits > cases.count / 4 && cache.count == misses, "hits \(hits), misses \(misses)")
    }

    /// A run of consecutive lengths is one class: one plan, one device query.
    @Test func consecutiveLengthsShareOnePlan() throws {
        let cache = PlanCache<SingleDecodePlan.Key, SingleDecodePlan>(capacity: 16)
        let o = AttentionOptions()
        for kv in 32257...32768 {  // D6 on an H100: 16 chunks of 2048 keys (32-key tiles)
            let c = DecodeCase(shape: SingleAttentionShape(qoLen: 1, kvLen: kv, numQOHeads: 32, numKVHeads: 8, headDim: 128),
                               dtype: .f16, options: o, model: Self.models[0])
            let plan = try Self.cachedDecodePlan(c, in: cache)
            #expect(plan.split == DecodeSplit(chunkSize: 2048, numChunks: 16))
        }
        #expect(cache.count == 1 && cache.statistics.misses == 1)
    }

    struct PrefillCase {
        var shape: SingleAttentionShape
        var dtype: DType
        var options: AttentionOptions
        var tile: PrefillTile?
        var device: Int
    }

    @Test func cachedPrefillPlanIsTheFreshPlanForManyShapes() throws {
        var rng = SeededRNG(seed: 12)
        let cache = PlanCache<SinglePrefillPlan.Key, SinglePrefillPlan>(capacity: 100_000)
        let heads = [(32, 8), (32, 32), (8, 1), (40, 8)]
        let tiles: [PrefillTile?] = [nil, nil, nil, PrefillTile(mmaQ: 1, ctaKV: 64, kvSub: 32), PrefillTile(mmaQ: 2, ctaKV: 32, kvSub: 16)]
        var n = 0
        for _ in 0..<60 {
            let (hq, hkv) = heads[Int(rng.next() % 4)]
            let d = supportedHeadDims[Int(rng.next() % 3)]
            var o = AttentionOptions(causal: rng.next() % 2 == 0)
            o.positionEncoding = [PositionEncoding.none, .ropeLlama(), .alibi][Int(rng.next() % 3)]
            o.logitsSoftCap = rng.next() % 3 == 0 ? 50 : 0
            o.windowLeft = rng.next() % 3 == 0 ? 128 : -1
            let dtype: DType = rng.next() % 2 == 0 ? .f16 : .bf16
            let tile = tiles[Int(rng.next() % 5)], device = Int(rng.next() % 2)
            for _ in 0..<25 {
                let qo = 1 + Int(rng.next() % 700)
                let c = PrefillCase(shape: SingleAttentionShape(qoLen: qo, kvLen: qo + Int(rng.next() % 5000), numQOHeads: hq, numKVHeads: hkv, headDim: d),
                                    dtype: dtype, options: o, tile: tile, device: device)
                let key = try SinglePrefillPlan.key(shape: c.shape, dtype: c.dtype, options: c.options, tile: c.tile, device: c.device)
                let plan = try cache.value(for: key) { SinglePrefillPlan(key: key) }
                // What CUDAPrefill planned per call before the cache.
                var spec = PrefillSpec(dtype: c.dtype, headDim: d, options: o)
                if let t = c.tile { spec.tile = t }
                let qTiles = (qo * c.shape.groupSize + spec.tile.ctaQ - 1) / spec.tile.ctaQ
                #expect(plan.spec == spec && plan.qTiles == qTiles && plan.grid == (qTiles, hkv, 1), "\(c)")
                #expect(plan == SinglePrefillPlan(key: key))
                n += 1
            }
        }
        #expect(cache.statistics.hits > n / 4, "\(cache.statistics)")
    }

    /// The cache keeps at most `capacity` plans and evicts the least recently used.
    @Test func cacheIsBoundedAndEvictsTheLeastRecentlyUsed() throws {
        let cache = PlanCache<Int, Int>(capacity: 3)
        var made: [Int] = []
        func get(_ k: Int) throws -> Int {
            try cache.value(for: k) { () throws(FlashInferError) in
                made.append(k)
                return k * 10
            }
        }
        for k in [1, 2, 3] { #expect(try get(k) == k * 10) }
        #expect(try get(1) == 10)  // 1 is now the most recently used: 2 is the oldest
        #expect(try get(4) == 40)
        #expect(cache.count == 3 && !cache.contains(2) && cache.contains(1) && cache.contains(3) && cache.contains(4))
        #expect(try get(2) == 20)  // planned again
        #expect(made == [1, 2, 3, 4, 2] && cache.count == 3)
        for k in 100..<200 { _ = try get(k) }
        #expect(cache.count == 3)
        // A failed plan is not cached.
        #expect(throws: FlashInferError.self) { try cache.value(for: 7) { () throws(FlashInferError) -> Int in throw .reference("no") } }
        #expect(!cache.contains(7))
        // The library's caches are bounded too.
        #expect(singleDecodePlans.capacity == 256 && singlePrefillPlans.capacity == 256)
    }

    /// Many threads at once (the library is used so): every lookup gets the plan of its own shape.
    @Test func concurrentLookupsGetTheirOwnPlans() throws {
        let cache = PlanCache<SingleDecodePlan.Key, SingleDecodePlan>(capacity: 64)
        let cases = Array(Self.decodeCases().prefix(400))
        let failures = UncheckedBox(Counter())
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<cases.count {
                let c = cases[(i * 7 + t * 53) % cases.count]
                guard let plan = try? Self.cachedDecodePlan(c, in: cache) else { failures.value.add(); continue }
                let fresh = Self.freshDecodePlan(c)
                if plan.spec != fresh.spec || plan.split != fresh.split || plan.ctasPerSM != fresh.ctasPerSM { failures.value.add() }
            }
        }
        #expect(failures.value.value == 0)
        #expect(cache.count <= 64)
    }

    final class Counter: @unchecked Sendable {
        private let lock = DispatchQueue(label: "counter")
        private var n = 0
        func add() { lock.sync { n += 1 } }
        var value: Int { lock.sync { n } }
    }

    /// Planning refuses with typed errors: measurement overrides out of range, a kernel with no
    /// resident CTA.
    @Test func planningErrorsAreTyped() throws {
        let shape = SingleAttentionShape(qoLen: 1, kvLen: 1000, numQOHeads: 32, numKVHeads: 8, headDim: 128)
        func decodeKey(chunks: Int? = nil, stages: Int = 4, keys: Int = 4, shape: SingleAttentionShape = shape) throws(FlashInferError) {
            _ = try SingleDecodePlan.key(shape: shape, dtype: .f16, options: .init(), device: 0, smCount: 132, numChunks: chunks,
                                         stages: stages, keysPerSlot: keys)
        }
        #expect(throws: FlashInferError.benchOverride(name: "num_chunks", value: "0", rule: "must be >= 1")) { try decodeKey(chunks: 0) }
        #expect(throws: FlashInferError.benchOverride(name: "stages", value: "9", rule: "must be 2...8")) { try decodeKey(stages: 9) }
        #expect(throws: FlashInferError.benchOverride(name: "keys_per_slot", value: "3", rule: "must be 2, 4 or 8")) { try decodeKey(keys: 3) }
        // Group 8 at head_dim 128 with 2 stages of 16-key tiles: the epilogue's o buffer is larger than
        // the pipeline, and the shared memory is sized to it (DecodeSpec.sharedBytes takes the max).
        let small = try SingleDecodePlan.key(shape: SingleAttentionShape(qoLen: 1, kvLen: 1000, numQOHeads: 64, numKVHeads: 8, headDim: 128),
                                             dtype: .f16, options: .init(), device: 0, smCount: 132, stages: 2, keysPerSlot: 2)
        #expect(small.spec.epilogueBytes > small.spec.pipelineBytes && small.spec.sharedBytes > small.spec.epilogueBytes)
        let key = try SingleDecodePlan.key(shape: shape, dtype: .f16, options: .init(), device: 0, smCount: 132)
        #expect(throws: FlashInferError.kernelDoesNotFit(kernel: key.spec.name, device: "GPU",
                                                         reason: "no CTA is resident with \(key.spec.sharedBytes) B of shared memory")) {
            _ = try SingleDecodePlan(key: key, ctasPerSM: 0, deviceName: "GPU")
        }
        do {
            _ = try SinglePrefillPlan.key(shape: SingleAttentionShape(qoLen: 4, kvLen: 4, numQOHeads: 8, numKVHeads: 8, headDim: 128),
                                          dtype: .f16, options: .init(), tile: PrefillTile(mmaQ: 3, ctaKV: 64, kvSub: 32), device: 0)
            Issue.record("accepted mmaQ 3")
        } catch {
            guard case .benchOverride(name: "tile", _, _) = error else { Issue.record("\(error)"); return }
        }
    }
}
