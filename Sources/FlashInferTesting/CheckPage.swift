import FlashInfer
import FlashInferCUDA

/// GPU checks of the paged-KV operations against the CPU implementation: the copy, then the
/// quantizing append into FP8 caches (`fp8AppendCases`), then the append with its index arrays in
/// device memory (`deviceIndexAppendCases`).
public func pageCases() -> [CheckCase] {
    copyAppendCases() + fp8AppendCases() + deviceIndexAppendCases()
}

/// The append with `DeviceAppendIndices` (the kernel reads the arrays where they are, unvalidated
/// on the host) against the CPU append of the valid tokens with host indices: the whole cache bit
/// for bit. With `garbage`, tokens the kernel must skip are added after the valid ones — a request
/// past the batch, a negative request, a negative position, a position past its request's pages,
/// positions 2^30 and 2^31 − 1 (with pages of 1 token: an index past 32 bits), and a request whose
/// only page id is outside the cache — and nothing they would touch may change. `kv_indices` carries trailing entries past `kv_indptr[-1]` (a
/// preallocated buffer), as engines pass it.
func deviceIndexAppendCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for (layout, dtype, garbage, pageSize) in [(KVLayout.nhd, DType.f16, false, 16), (.hnd, .bf16, false, 16), (.nhd, .bf16, true, 16),
                                                (.hnd, .f16, true, 1)] {
        let name = "append_paged_kv device indices layout=\(layout.rawValue) page=\(pageSize) dtype=\(dtype.rawValue)\(garbage ? " with out-of-range tokens skipped" : "")"
        cases.append(CheckCase(name: name) { device, stream, rng in
            let (h, d) = (4, 128)
            let f = try AppendFixture(layout: layout, dtype: dtype, pageSize: pageSize, heads: h, headDim: d, device: device, rng: &rng)
            let (table, numPages, hostCache, devCache, nnz, bi, pos, seqLens) =
                (f.table, f.numPages, f.hostCache, f.devCache, f.nnz, f.batchIndices, f.positions, f.seqLens)
            // Device arrays: the valid tokens, then (with garbage) the ones to skip; the table with
            // one more request whose page is outside the cache, and trailing kv_indices entries.
            var dbi = bi, dpos = pos, dip = table.indptr, dix = table.indices
            let batch = seqLens.count
            if garbage {
                let pastPages = Int32(table.numPages(1) * pageSize + 5)
                // (Int32.max with pages of 1: kv_indptr[1] + position overflows 32 bits — the kernel adds in 64.)
                dbi += [Int32(batch + 1), -1, 0, 1, 2, Int32(batch), 1]
                dpos += [0, 0, -3, pastPages, 1 << 30, 0, Int32.max]
                dix.append(Int32(numPages + 100))
                dip.append(dip.last! + 1)
            }
            let dnnz = dbi.count
            let ak = Tensor.host((0..<(dnnz * h * d)).map { _ in rng.normal() }, shape: [dnnz, h, d], dtype: dtype)
            let av = Tensor.host((0..<(dnnz * h * d)).map { _ in rng.normal() }, shape: [dnnz, h, d], dtype: dtype)
            let used = dix.count
            dix += [Int32.max, -7, 3]  // past kv_indptr[-1]: never read
            let di = DeviceAppendIndices(batchIndices: try device.upload(dbi), positions: try device.upload(dpos),
                                         kvIndices: try device.upload(dix), kvIndptr: try device.upload(dip),
                                         nnz: dnnz, batchSize: dip.count - 1, numIndices: used)
            try appendPagedKVCache(appendK: ak.toDevice(device), appendV: av.toDevice(device), deviceIndices: di, cache: devCache,
                                   stream: stream)
            // The CPU: the valid tokens only (the first nnz rows).
            func rows(_ t: Tensor) throws -> Tensor {
                Tensor.host(Array(try t.toFloats()[..<(nnz * h * d)]), shape: [nnz, h, d], dtype: dtype)
            }
            try appendPagedKVCache(appendK: try rows(ak), appendV: try rows(av), indices: AppendIndices(batchIndices: bi, positions: pos),
                                   cache: hostCache, table: table)
            try stream.synchronize()
            return try cacheBytesDiffer(hostCache, devCache)
        })
    }
    return cases
}

/// The append of K/V in the cache's dtype (a copy).
func copyAppendCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for layout in [KVLayout.nhd, .hnd] {
        for pageSize in [1, 8, 16] {
            for dtype in [DType.f16, .bf16] {
                cases.append(CheckCase(name: "append_paged_kv layout=\(layout.rawValue) page=\(pageSize) dtype=\(dtype.rawValue)") { device, stream, rng in
                    let (h, d) = (4, 128)
                    let f = try AppendFixture(layout: layout, dtype: dtype, pageSize: pageSize, heads: h, headDim: d, device: device, rng: &rng)
                    let (table, hostCache, devCache, nnz, bi, pos) = (f.table, f.hostCache, f.devCache, f.nnz, f.batchIndices, f.positions)
                    let ak = Tensor.host((0..<(nnz * h * d)).map { _ in rng.normal() }, shape: [nnz, h, d], dtype: dtype)
                    let av = Tensor.host((0..<(nnz * h * d)).map { _ in rng.normal() }, shape: [nnz, h, d], dtype: dtype)
                    let idx = AppendIndices(batchIndices: bi, positions: pos)
                    try appendPagedKVCache(appendK: ak, appendV: av, indices: idx, cache: hostCache, table: table)
                    try appendPagedKVCache(appendK: ak.toDevice(device), appendV: av.toDevice(device), indices: idx, cache: devCache, table: table, stream: stream)
                    try stream.synchronize()
                    // The whole cache must match bit for bit (untouched slots included).
                    return try cacheBytesDiffer(hostCache, devCache)
                })
            }
        }
    }
    return cases
}

/// An append's setup: requests of 1, 17, 127, 300 and 2 pages' tokens (after the append), appending
/// 1, 5, 127, 1 and a page of tokens; pages shuffled (the table is not the identity) with 3 spare;
/// the same random cache on the host and on the device; the appended tokens' batch indices and
/// positions.
struct AppendFixture {
    var seqLens: [Int]
    var table: PageTable
    var numPages: Int
    var hostCache: PagedKVCache
    var devCache: PagedKVCache
    var nnz: Int
    var batchIndices: [Int32]
    var positions: [Int32]

    init(layout: KVLayout, dtype: DType, pageSize: Int, heads h: Int, headDim d: Int, device: Device, rng: inout SeededRNG) throws {
        seqLens = [1, 17, 127, 300, 2 * pageSize]
        let appendLens = [1, 5, 127, 1, pageSize]
        table = PageTable.contiguous(seqLens: seqLens, pageSize: pageSize)
        table.indices.reverse()
        numPages = table.indices.count + 3
        let shape = layout == .nhd ? [numPages, 2, pageSize, h, d] : [numPages, 2, h, pageSize, d]
        let initial = (0..<shape.reduce(1, *)).map { _ in rng.normal() }
        hostCache = try PagedKVCache(combined: Tensor.host(initial, shape: shape, dtype: dtype), layout: layout)
        devCache = try PagedKVCache(combined: Tensor.host(initial, shape: shape, dtype: dtype).toDevice(device), layout: layout)
        var appendIndptr: [Int32] = [0]
        for n in appendLens { appendIndptr.append(appendIndptr.last! + Int32(n)) }
        nnz = Int(appendIndptr.last!)
        (batchIndices, positions) = try getBatchIndicesPositions(appendIndptr: appendIndptr, seqLens: seqLens)
    }
}

/// Where a host cache and a device cache first differ, byte for byte over K then V (nil: equal).
func cacheBytesDiffer(_ host: PagedKVCache, _ dev: PagedKVCache) throws -> String? {
    for (n, a, b) in [("k", host.k, dev.k), ("v", host.v, dev.v)] {
        let x = try a.contiguousBytesChecked(), y = try b.contiguousBytesChecked()
        if x != y {
            let i = zip(x, y).enumerated().first { $0.element.0 != $0.element.1 }!.offset
            return "\(n) cache differs at byte \(i)"
        }
    }
    return nil
}

/// The quantizing append: f16 / bf16 (and f32, page 16) K/V into an e4m3 / e5m2 cache, both layouts,
/// pages of 1 and 16 tokens; scales (K, V) 0.37 and 2.5 on pages of 1, 3.1 and 0.37 on pages of 16
/// (`fp8AppendInputs`: every f16 / bf16 value, saturation, ties, near-ties, NaN, ±inf; 69120 or more
/// elements each). The device cache is poisoned (`0x7F`, an FP8 NaN) and the host cache filled
/// the same; after the append every device byte must equal the CPU backend's (the codes of
/// `quantize(_:to:scale:)`: the kernel rounds the exact quotient once, so no tolerance), and every
/// byte the append does not write must still be `0x7F`.
func fp8AppendCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for cacheDType in [DType.e4m3, .e5m2] {
        for layout in [KVLayout.nhd, .hnd] {
            for pageSize in [1, 16] {
                for input in pageSize == 16 ? [DType.f16, .bf16, .f32] : [.f16, .bf16] {
                    let name = "append_paged_kv fp8 cache=\(cacheDType.rawValue) input=\(input.rawValue) layout=\(layout.rawValue) page=\(pageSize)"
                    cases.append(CheckCase(name: name) { device, stream, rng in
                        let (h, d) = (4, 128)
                        // 3.1: the scale at which a plain float division would round some f16/bf16 values twice.
                        let (kScale, vScale): (Float, Float) = pageSize == 1 ? (0.37, 2.5) : (3.1, 0.37)
                        let seqLens = [1, 17, 127, 300, 2 * pageSize]
                        let appendLens = [1, 5, 127, 1, pageSize]
                        var table = PageTable.contiguous(seqLens: seqLens, pageSize: pageSize)
                        table.indices.reverse()
                        let numPages = table.indices.count + 3
                        let shape = layout == .nhd ? [numPages, 2, pageSize, h, d] : [numPages, 2, h, pageSize, d]
                        let poison = [UInt8](repeating: 0x7F, count: shape.reduce(1, *))
                        let hostCombined = Tensor(storage: .host(HostBuffer(bytes: poison)), shape: shape, dtype: cacheDType)
                        let devCombined = try Tensor.empty(shape: shape, dtype: cacheDType, device: device)
                        try devCombined.poison(stream: stream)
                        let hostCache = try PagedKVCache(combined: hostCombined, layout: layout)
                        let devCache = try PagedKVCache(combined: devCombined, layout: layout)
                        var appendIndptr: [Int32] = [0]
                        for n in appendLens { appendIndptr.append(appendIndptr.last! + Int32(n)) }
                        let nnz = Int(appendIndptr.last!)
                        let (bi, pos) = try getBatchIndicesPositions(appendIndptr: appendIndptr, seqLens: seqLens)
                        let kValues = fp8AppendInputs(count: nnz * h * d, input: input, cache: cacheDType, scale: kScale, rng: &rng)
                        let vValues = fp8AppendInputs(count: nnz * h * d, input: input, cache: cacheDType, scale: vScale, rng: &rng)
                        let ak = Tensor.host(kValues, shape: [nnz, h, d], dtype: input)
                        let av = Tensor.host(vValues, shape: [nnz, h, d], dtype: input)
                        let idx = AppendIndices(batchIndices: bi, positions: pos)
                        try appendPagedKVCache(appendK: ak, appendV: av, indices: idx, cache: hostCache, table: table, kScale: kScale, vScale: vScale)
                        try appendPagedKVCache(appendK: ak.toDevice(device), appendV: av.toDevice(device), indices: idx, cache: devCache, table: table,
                                               kScale: kScale, vScale: vScale, stream: stream)
                        try stream.synchronize()
                        let written = appendedBytes(shape: shape, layout: layout, table: table, indices: idx)
                        let inputs = (try ak.toFloats(), try av.toFloats())
                        return compareAppendedFP8(device: try devCombined.contiguousBytesChecked(), cpu: try hostCombined.contiguousBytesChecked(),
                                                  written: written) { i in
                            guard let w = written[i] else { return "an untouched byte" }
                            let x = w.kv == 0 ? inputs.0[w.element] : inputs.1[w.element]
                            return "\(w.kv == 0 ? "k" : "v") of token \(w.element / (h * d)), head \(w.element / d % h), element \(w.element % d): input \(x), scale \(w.kv == 0 ? kScale : vScale)"
                        }
                    })
                }
            }
        }
    }
    return cases
}

/// Inputs for the quantizing append's checks, as `Float`s to round to `input`. First, when `count`
/// allows, every value of a 16-bit `input` (all 65536 f16 or bf16 bit patterns: NaNs, ±inf,
/// subnormals, and the few values whose correctly rounded quotient lands on an FP8 midpoint, e.g.
/// 32 f16 values for e4m3 at scale 3.1); otherwise the specials (±0, ±inf, NaN, ±the input dtype's
/// largest value, ±the FP8 maximum times `scale`, the midpoint between 0 and the smallest subnormal
/// times `scale`). Then, at random signs, 3/4 magnitudes log-uniform from below the smallest FP8
/// subnormal to 8× beyond the largest finite value (times `scale`; capped at the input's largest
/// value), 1/4 an FP8 midpoint times `scale`: exact ties where that product is representable in
/// the input dtype (scale 2.5), near-ties otherwise (where a correctly rounded float quotient can
/// land on the midpoint and round twice: f32 inputs).
public func fp8AppendInputs(count: Int, input: DType, cache: DType, scale: Float, rng: inout SeededRNG) -> [Float] {
    let maxCode: UInt32 = cache == .e4m3 ? 0x7E : 0x7B  // 448, 57344
    let maxValue = cache.value(bits: maxCode)
    let minSubnormal = cache.value(bits: 1)
    let inputMax: Float = input == .f16 ? 65504 : input == .bf16 ? DType.bf16.value(bits: 0x7F7F) : .greatestFiniteMagnitude
    let specials: [Float] = [0, -0.0, .infinity, -.infinity, .nan, inputMax, -inputMax, maxValue * scale, -maxValue * scale,
                             minSubnormal / 2 * scale]
    let lo = (minSubnormal * scale).exponent - 2
    let hi = min((maxValue * scale).exponent + 3, inputMax.exponent)
    var out: [Float] = input.byteSize == 2 && count >= 1 << 16
        ? (0..<(UInt32(1) << 16)).map { input.value(bits: $0) }
        : Array(specials.prefix(count))
    out.reserveCapacity(count)
    while out.count < count {
        let sign: FloatingPointSign = rng.next() & 1 == 0 ? .plus : .minus
        if rng.next() % 4 == 0 {
            let c = UInt32(rng.next() % UInt64(maxCode))  // 0 ..< maxCode: the midpoint of c and c + 1
            let m = (cache.value(bits: c) + cache.value(bits: c + 1)) / 2
            out.append(sign == .minus ? -(m * scale) : m * scale)
        } else {
            let e = lo + Int(rng.next() % UInt64(hi - lo + 1))
            out.append(Float(sign: sign, exponent: e, significand: 1 + rng.uniform()))
        }
    }
    return out
}

/// Where an append wrote, byte by byte, in a combined `[pages, 2, …]` FP8 cache (`shape`, contiguous):
/// for each written byte, K (0) or V (1) and the element's index in the appended `[nnz, H, D]`; nil
/// for the bytes it does not write.
public func appendedBytes(shape: [Int], layout: KVLayout, table: PageTable, indices: AppendIndices) -> [(kv: Int, element: Int)?] {
    let (ps, h, d) = layout == .nhd ? (shape[2], shape[3], shape[4]) : (shape[3], shape[2], shape[4])
    var out = [(kv: Int, element: Int)?](repeating: nil, count: shape.reduce(1, *))
    for t in 0..<indices.batchIndices.count {
        let (page, slot) = table.location(request: Int(indices.batchIndices[t]), position: Int(indices.positions[t]))
        for kv in 0..<2 {
            for head in 0..<h {
                let base = layout == .nhd ? (((page * 2 + kv) * ps + slot) * h + head) * d : (((page * 2 + kv) * h + head) * ps + slot) * d
                for i in 0..<d { out[base + i] = (kv, (t * h + head) * d + i) }
            }
        }
    }
    return out
}

/// The device bytes of an FP8 cache against the CPU backend's: every byte equal (no tolerance), and
/// every byte the append does not write (`written[i] == nil`) still the poison `0x7F`. Nil when both
/// hold, else the number of differing bytes and the first, `describe`d.
public func compareAppendedFP8(device: [UInt8], cpu: [UInt8], written: [(kv: Int, element: Int)?],
                               describe: (Int) -> String) -> String? {
    guard device.count == cpu.count, device.count == written.count else {
        return "sizes differ: device \(device.count) bytes, CPU \(cpu.count), layout \(written.count)"
    }
    var differ = 0, firstDiffer: Int?, unpoisoned = 0, firstUnpoisoned: Int?
    for i in 0..<device.count {
        if device[i] != cpu[i] {
            differ += 1
            if firstDiffer == nil { firstDiffer = i }
        }
        if written[i] == nil && device[i] != 0x7F {
            unpoisoned += 1
            if firstUnpoisoned == nil { firstUnpoisoned = i }
        }
    }
    func hex(_ b: UInt8) -> String { "0x" + (b < 16 ? "0" : "") + String(b, radix: 16) }
    var problems: [String] = []
    if let i = firstUnpoisoned {
        problems.append("\(unpoisoned) bytes outside the appended slots were overwritten; first at byte \(i): \(hex(device[i])) instead of 0x7f")
    }
    if let i = firstDiffer {
        problems.append("\(differ) of \(device.count) bytes differ from the CPU backend's; first at byte \(i) (\(describe(i))): device \(hex(device[i])), CPU \(hex(cpu[i]))")
    }
    return problems.isEmpty ? nil : problems.joined(separator: "; ")
}
