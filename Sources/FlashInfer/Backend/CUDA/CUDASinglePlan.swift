import FlashInferCUDA

// Plan once: the launch plans of single decode and single prefill, cached per shape class.
//
// Planning is split in two. `key(...)` classifies a call, by arithmetic alone: the kernel spec, the
// heads, and the length class that fixes the grid (decode: the split of the attended keys;
// prefill: the number of query tiles). Everything the plan holds is a function of that key and of
// the device's answers for its kernel (occupancy, the loaded function), so the device part runs
// once per key and is cached (`PlanCache`, bounded, thread-safe). A call then costs its
// classification and one dictionary lookup; the launch arguments (pointers, strides, lengths,
// the window start) are the only per-call work. `PlanCacheTests` checks, for many shapes, that
// the cached plan is the one planning the shape afresh gives.

/// The launch plan of a single decode: the kernel, its occupancy, the split-KV chunking and the
/// grid, for one shape class on one device.
struct SingleDecodePlan: Hashable, Sendable {
    /// What determines the plan: the device, the kernel spec (dtype, head dim, CTA group, variant,
    /// pipeline, timeline), the heads, and the KV-length class. The class is the split of the
    /// attended keys (`singleDecodeSplit`, or the forced one): every length with the same split
    /// has the same plan, e.g. D6 on an H100 (8 KV heads, 16 chunks per the SM count) plans every
    /// kv_len in 32257...32768 as 16 chunks of 2048 keys, one entry.
    struct Key: Hashable, Sendable {
        var device: Int
        var spec: DecodeSpec
        var numQOHeads: Int
        var numKVHeads: Int
        var split: DecodeSplit
    }

    let key: Key
    /// Resident decode CTAs per SM (the driver's occupancy for the kernel).
    let ctasPerSM: Int

    var spec: DecodeSpec { key.spec }
    var mergeSpec: DecodeMergeSpec { DecodeMergeSpec(dtype: spec.dtype, headDim: spec.headDim) }
    var split: DecodeSplit { key.split }
    /// CTAs per KV head along the group (groups above 8 query heads take several).
    var headGroups: Int { (key.numQOHeads / key.numKVHeads + spec.group - 1) / spec.group }
    /// The decode grid: (chunks, KV heads, head groups).
    var grid: (Int, Int, Int) { (split.numChunks, key.numKVHeads, headGroups) }
    /// Workspace bytes (0 without a split): fp32 partial outputs, then partial LSEs.
    var workspaceBytes: Int { split.isSplit ? split.numChunks * key.numQOHeads * (spec.headDim + 1) * 4 : 0 }

    /// The device's answer for `key`: refused when the kernel has no resident CTA.
    init(key: Key, ctasPerSM: Int, deviceName: String) throws(FlashInferError) {
        guard ctasPerSM > 0 else {
            throw .kernelDoesNotFit(kernel: key.spec.name, device: deviceName,
                                    reason: "no CTA is resident with \(key.spec.sharedBytes) B of shared memory")
        }
        self.key = key
        self.ctasPerSM = ctasPerSM
    }

    /// The first key a decode attends: the last `windowLeft + 1` keys with a window, else all.
    /// Per call (a launch argument), not part of the plan.
    static func kvBegin(shape: SingleAttentionShape, options: AttentionOptions) -> Int {
        options.windowLeft >= 0 ? max(0, shape.kvLen - 1 - options.windowLeft) : 0
    }

    /// Classifies a validated decode: the spec the options and group need (with the measurement
    /// overrides), and the split of the attended keys over `smCount` SMs.
    static func key(shape: SingleAttentionShape, dtype: DType, kvDType: DType? = nil, options: AttentionOptions, device: Int, smCount: Int,
                    numChunks: Int? = nil, stages: Int = DecodeSpec.defaultStages,
                    keysPerSlot: Int = DecodeSpec.defaultKeysPerSlot, timeline: Bool = false) throws(FlashInferError) -> Key {
        if let n = numChunks, n < 1 { throw .benchOverride(name: "num_chunks", value: "\(n)", rule: "must be >= 1") }
        guard (2...8).contains(stages) else { throw .benchOverride(name: "stages", value: "\(stages)", rule: "must be 2...8") }
        guard [2, 4, 8].contains(keysPerSlot) else { throw .benchOverride(name: "keys_per_slot", value: "\(keysPerSlot)", rule: "must be 2, 4 or 8") }
        let g = shape.groupSize
        var cta = 1
        while cta < min(g, 8) { cta *= 2 }
        var spec = DecodeSpec(dtype: dtype, headDim: shape.headDim, group: cta, posEnc: .init(options.positionEncoding),
                              softCap: options.logitsSoftCap > 0, stages: stages, keysPerSlot: keysPerSlot, kvDType: kvDType)
        spec.timeline = timeline
        let headGroups = (g + cta - 1) / cta
        let attended = shape.kvLen - kvBegin(shape: shape, options: options)
        let split = if let n = numChunks {
            decodeSplit(kvLen: attended, forcedChunks: n, tileKeys: spec.tileKeys)
        } else {
            singleDecodeSplit(kvLen: attended, ctasPerChunk: shape.numKVHeads * headGroups, smCount: smCount, tileKeys: spec.tileKeys)
        }
        return Key(device: device, spec: spec, numQOHeads: shape.numQOHeads, numKVHeads: shape.numKVHeads, split: split)
    }
}

/// A cached decode plan with its loaded kernels (the merge only when the plan splits).
struct SingleDecodeKernels: Sendable {
    let plan: SingleDecodePlan
    let decode: Function
    let merge: Function?
}

/// The single-decode plans of this process, every device's (the key names the device).
let singleDecodePlans = PlanCache<SingleDecodePlan.Key, SingleDecodeKernels>(capacity: 256)

extension SingleDecodePlan {
    /// The plan of a validated decode on `device`: classified per call, resolved on the device
    /// once per key.
    static func planned(shape: SingleAttentionShape, dtype: DType, kvDType: DType? = nil, options: AttentionOptions, device: Device,
                        numChunks: Int? = nil, stages: Int = DecodeSpec.defaultStages,
                        keysPerSlot: Int = DecodeSpec.defaultKeysPerSlot, timeline: Bool = false) throws(FlashInferError) -> SingleDecodeKernels {
        let key = try key(shape: shape, dtype: dtype, kvDType: kvDType, options: options, device: device.index,
                          smCount: device.properties.multiprocessorCount, numChunks: numChunks, stages: stages,
                          keysPerSlot: keysPerSlot, timeline: timeline)
        return try singleDecodePlans.value(for: key) { () throws(FlashInferError) in try resolve(key, on: device) }
    }

    /// The device part of planning: load the kernel, raise its shared-memory limit, ask the
    /// driver for its occupancy; load the merge when the plan splits.
    static func resolve(_ key: Key, on device: Device) throws(FlashInferError) -> SingleDecodeKernels {
        let spec = key.spec
        let (decode, occupancy) = try FlashInferError.wrap { () throws(CUDAError) -> (Function, Int) in
            let f = try JIT.shared(for: device).kernel(spec).function
            try f.setMaxDynamicSharedMemory(spec.sharedBytes)
            return (f, try f.maxActiveBlocksPerSM(blockSize: DecodeSpec.threads, dynamicSharedBytes: spec.sharedBytes))
        }
        let plan = try SingleDecodePlan(key: key, ctasPerSM: occupancy, deviceName: device.properties.name)
        let mergeSpec = plan.mergeSpec
        let merge = plan.split.isSplit
            ? try FlashInferError.wrap { () throws(CUDAError) in try JIT.shared(for: device).kernel(mergeSpec).function } : nil
        return SingleDecodeKernels(plan: plan, decode: decode, merge: merge)
    }
}

/// The launch plan of a single prefill: the kernel (variant and tile) and the grid, for one shape
/// class on one device.
struct SinglePrefillPlan: Hashable, Sendable {
    /// What determines the plan: the device, the kernel spec (dtype, head dim, variant, tile), the
    /// KV heads and the query-length class, the number of query tiles (`ceil(qoLen · group / CTA_Q)`).
    struct Key: Hashable, Sendable {
        var device: Int
        var spec: PrefillSpec
        var numKVHeads: Int
        var qTiles: Int
    }

    let key: Key
    var spec: PrefillSpec { key.spec }
    var qTiles: Int { key.qTiles }
    /// The prefill grid: (query tiles, KV heads, 1).
    var grid: (Int, Int, Int) { (key.qTiles, key.numKVHeads, 1) }

    init(key: Key) { self.key = key }

    /// Classifies a validated prefill with `qoLen > 0`: the spec its options need (or the `tile`
    /// override's) and its query tiles. Checks, per call, that the lengths fit the kernel's
    /// 32-bit index arithmetic.
    static func key(shape: SingleAttentionShape, dtype: DType, kvDType: DType? = nil, options: AttentionOptions,
                    tile: PrefillTile? = nil, customMask: Bool = false, device: Int) throws(FlashInferError) -> Key {
        var spec = PrefillSpec(dtype: dtype, headDim: shape.headDim, options: options, kvDType: kvDType, customMask: customMask)
        if let tile {
            let ok = [1, 2].contains(tile.mmaQ) && tile.kvSub >= 16 && tile.kvSub % 16 == 0 && tile.ctaKV % tile.kvSub == 0
                && (tile.ctaKV * shape.headDim / 8) % tile.threads == 0
                && tile.sharedBytes(headDim: shape.headDim, elementBytes: dtype.byteSize, kvElementBytes: spec.kvDType.byteSize) <= 227 * 1024
            guard ok else { throw .benchOverride(name: "tile", value: "\(tile)", rule: "mmaQ 1 or 2, kvSub a multiple of 16 dividing ctaKV, shared memory ≤ 227 KiB") }
            spec.tile = tile
        }
        let packedRows = shape.qoLen * shape.groupSize
        guard packedRows < Int(Int32.max) - spec.tile.ctaQ, shape.kvLen < Int(Int32.max) - spec.tile.ctaKV else {
            throw .shape(tensor: "q", axis: 0, name: "qo_len · group_size", expected: "< 2^31", got: packedRows)
        }
        let qTiles = (packedRows + spec.tile.ctaQ - 1) / spec.tile.ctaQ
        return Key(device: device, spec: spec, numKVHeads: shape.numKVHeads, qTiles: qTiles)
    }
}

/// A cached prefill plan with its loaded kernel.
struct SinglePrefillKernel: Sendable {
    let plan: SinglePrefillPlan
    let kernel: JIT.LoadedKernel
}

/// The single-prefill plans of this process, every device's (the key names the device).
let singlePrefillPlans = PlanCache<SinglePrefillPlan.Key, SinglePrefillKernel>(capacity: 256)

extension SinglePrefillPlan {
    /// The plan of a validated prefill (`qoLen > 0`) on `device`: classified per call, its kernel
    /// looked up once per key.
    static func planned(shape: SingleAttentionShape, dtype: DType, kvDType: DType? = nil, options: AttentionOptions,
                        tile: PrefillTile? = nil, customMask: Bool = false, device: Device) throws(FlashInferError) -> SinglePrefillKernel {
        let key = try key(shape: shape, dtype: dtype, kvDType: kvDType, options: options, tile: tile, customMask: customMask,
                          device: device.index)
        return try singlePrefillPlans.value(for: key) { () throws(FlashInferError) in
            let spec = key.spec
            let kernel = try FlashInferError.wrap { () throws(CUDAError) in try JIT.shared(for: device).kernel(spec) }
            return SinglePrefillKernel(plan: SinglePrefillPlan(key: key), kernel: kernel)
        }
    }
}
