import FlashInferTesting
import Testing

@testable import FlashInfer

/// `appendPagedKVCache` into FP8 caches: the CPU backend stores `quantize(x, to:, scale:)`'s codes,
/// the GPU kernel's rounding (emulated here) gives the same codes for every f16 and bf16 input, and
/// every refusal has its error.
@Suite struct AppendFP8Tests {
    // MARK: the CPU backend against `quantize`

    /// A random append into a cache filled with `0x7F` (an FP8 NaN): every appended row holds the
    /// codes `quantize` gives for it (K with `kScale`, V with `vScale`), every other byte is still
    /// `0x7F`; the inputs include saturating values, ties and specials (`fp8AppendInputs`).
    @Test(arguments: [DType.e4m3, .e5m2], [DType.f16, .bf16, .f32])
    func cpuAppendStoresQuantizeCodes(cacheDType: DType, input: DType) throws {
        for layout in [KVLayout.nhd, .hnd] {
            for pageSize in [1, 16] {
                var rng = caseRNG(seed: 12, name: "\(cacheDType) \(input) \(layout) \(pageSize)")
                let (h, d) = (2, 32)
                let (kScale, vScale): (Float, Float) = (0.37, 2.5)
                let seqLens = [3, 40, 2 * pageSize], appendLens = [3, 7, pageSize]
                var table = PageTable.contiguous(seqLens: seqLens, pageSize: pageSize)
                table.indices.reverse()
                let shape = layout == .nhd ? [table.indices.count + 2, 2, pageSize, h, d] : [table.indices.count + 2, 2, h, pageSize, d]
                let combined = Tensor(storage: .host(HostBuffer(bytes: [UInt8](repeating: 0x7F, count: shape.reduce(1, *)))), shape: shape, dtype: cacheDType)
                let cache = try PagedKVCache(combined: combined, layout: layout)
                var appendIndptr: [Int32] = [0]
                for n in appendLens { appendIndptr.append(appendIndptr.last! + Int32(n)) }
                let nnz = Int(appendIndptr.last!)
                let (bi, pos) = try getBatchIndicesPositions(appendIndptr: appendIndptr, seqLens: seqLens)
                let ak = Tensor.host(fp8AppendInputs(count: nnz * h * d, input: input, cache: cacheDType, scale: kScale, rng: &rng), shape: [nnz, h, d], dtype: input)
                let av = Tensor.host(fp8AppendInputs(count: nnz * h * d, input: input, cache: cacheDType, scale: vScale, rng: &rng), shape: [nnz, h, d], dtype: input)
                let indices = AppendIndices(batchIndices: bi, positions: pos)
                try appendPagedKVCache(appendK: ak, appendV: av, indices: indices, cache: cache, table: table, kScale: kScale, vScale: vScale)

                let kIn = try ak.toFloats(), vIn = try av.toFloats()
                let kCodes = try quantize(kIn, to: cacheDType, scale: kScale), vCodes = try quantize(vIn, to: cacheDType, scale: vScale)
                let written = appendedBytes(shape: shape, layout: layout, table: table, indices: indices)
                let bytes = try combined.contiguousBytesChecked()
                var expected = [UInt8](repeating: 0x7F, count: bytes.count)
                for (i, w) in written.enumerated() {
                    if let w { expected[i] = w.kv == 0 ? kCodes[w.element] : vCodes[w.element] }
                }
                #expect(bytes == expected, "\(cacheDType) \(input) \(layout) page \(pageSize)")
                // The comparison the GPU check makes accepts this cache, and catches one changed byte
                // of either kind.
                #expect(compareAppendedFP8(device: bytes, cpu: expected, written: written) { _ in "" } == nil)
                let inside = try #require(written.firstIndex { $0 != nil }), outside = try #require(written.firstIndex { $0 == nil })
                var bad = bytes
                bad[inside] ^= 1
                #expect(compareAppendedFP8(device: bad, cpu: expected, written: written) { _ in "x" }?.hasPrefix("1 of \(bytes.count) bytes differ") == true)
                bad = bytes
                bad[outside] = 0
                #expect(compareAppendedFP8(device: bad, cpu: expected, written: written) { _ in "" }?.hasPrefix("1 bytes outside the appended slots") == true)

                // The inputs reach what they are meant to test: saturation, NaN and zeros, in K and V.
                let maxValue = cacheDType == .e4m3 ? 448 : 57344 as Float
                let maxCode: UInt8 = cacheDType == .e4m3 ? 0x7E : 0x7B
                for (values, codes, scale) in [(kIn, kCodes, kScale), (vIn, vCodes, vScale)] {
                    #expect(codes.contains(maxCode) && codes.contains(0x80 | maxCode))
                    #expect(codes.contains(0x7F) && codes.contains(0) && codes.contains(0x80))
                    let beyond = values.filter { $0.isFinite && abs($0 / scale) > maxValue }.count
                    #expect(beyond > 0 || (input == .f16 && 65504 / scale < maxValue * 1.125), "no finite value saturates")
                }
            }
        }
    }

    /// A same-dtype append is still the byte copy (FP8 into FP8 too, and f32).
    @Test(arguments: [DType.e4m3, .e5m2, .f32, .bf16])
    func sameDTypeIsACopy(dtype: DType) throws {
        let (h, d) = (2, 16)
        let table = PageTable.contiguous(seqLens: [5], pageSize: 4)
        let cache = try PagedKVCache(combined: Tensor.host([Float](repeating: 0, count: 3 * 2 * 4 * h * d), shape: [3, 2, 4, h, d], dtype: dtype))
        let values = (0..<(5 * h * d)).map { Float($0 % 37) * 0.75 - 9 }
        let a = Tensor.host(values, shape: [5, h, d], dtype: dtype)
        let (bi, pos) = try getBatchIndicesPositions(appendIndptr: [0, 5], seqLens: [5])
        try appendPagedKVCache(appendK: a, appendV: a, indices: AppendIndices(batchIndices: bi, positions: pos), cache: cache, table: table)
        let (k, v) = try cache.gather(request: 0, table: table)
        #expect(k == (try a.toFloats()) && v == k)
    }

    /// The GPU check's inputs (69120 or more elements) hold every f16 / bf16 value (NaN once, as any
    /// NaN pattern gives the same code); shorter ones start
    /// with the specials.
    @Test func checkInputsHoldEveryHalfValue() {
        var rng = SeededRNG(seed: 1)
        for input in [DType.f16, .bf16] {
            let values = fp8AppendInputs(count: 69120, input: input, cache: .e4m3, scale: 3.1, rng: &rng)
            #expect(values.count == 69120)
            // Every non-NaN pattern (f16 has 2046 NaN patterns, bf16 254), and NaN.
            let distinct = Set(values.prefix(1 << 16).filter { !$0.isNaN }.map { input.bits($0) }).count
            #expect(distinct == (input == .f16 ? 65536 - 2046 : 65536 - 254) && values.contains { $0.isNaN })
        }
        let short = fp8AppendInputs(count: 100, input: .f16, cache: .e5m2, scale: 2.5, rng: &rng)
        #expect(short.count == 100 && short[2] == .infinity && short[4].isNaN && short[5] == 65504 && short[7] == 57344 * 2.5)
        #expect(fp8AppendInputs(count: 3, input: .f32, cache: .e4m3, scale: 1, rng: &rng).count == 3)
    }

    // MARK: the kernel's rounding

    /// `div_round_to_odd` of `page/append.cuh`, step by step in Swift: the quotient rounded toward
    /// zero (here from the correctly rounded one, corrected with the exact product in Double), then
    /// its last bit set when `q · s ≠ x` (exact in Double); inf and NaN quotients pass through.
    static func kernelQuotient(_ x: Float, _ s: Float) -> Float {
        if !x.isFinite { return x / s }
        var q = x / s
        if q.isInfinite { q = q < 0 ? -.greatestFiniteMagnitude : .greatestFiniteMagnitude }  // RZ never overflows
        if abs(Double(q) * Double(s)) > abs(Double(x)) { q = q < 0 ? q.nextUp : q.nextDown }  // RN went away from zero
        if Double(q) * Double(s) != Double(x) { q = Float(bitPattern: q.bitPattern | 1) }
        return q
    }

    static let scales: [Float] = [1, 0.37, 2.5, 3.1, 1.0 / 448, 1e-3, 250, 0.9999999]

    /// Every f16 and bf16 value (NaN, ±inf and subnormals included) times several scales, and f32
    /// inputs at and around FP8 midpoints: the kernel's algorithm (RZ quotient, sticky bit,
    /// round-to-nearest-even with saturation) gives exactly `quantize`'s code. The naive kernel
    /// (a correctly rounded `x / s`, then the conversion) would not: it rounds twice when the float
    /// quotient lands on an FP8 midpoint that the exact quotient is not on; counted here to show the
    /// difference is real (adjacent codes, mostly f32 inputs).
    @Test(arguments: [DType.e4m3, .e5m2])
    func kernelRoundingEqualsQuantize(dtype: DType) throws {
        var naiveMismatches: [String: Int] = [:]  // by "input scale"
        for input in [DType.f16, .bf16, .f32] {
            var values: [Float]
            if input == .f32 {
                var rng = SeededRNG(seed: 5)
                values = Self.scales.flatMap { fp8AppendInputs(count: 20_000, input: .f32, cache: dtype, scale: $0, rng: &rng) }
            } else {
                values = (0...UInt32(0xFFFF)).map { input.value(bits: $0) }
            }
            for scale in Self.scales {
                let expected = try quantize(values, to: dtype, scale: scale)
                for (x, code) in zip(values, expected) {
                    let kernel = UInt8(dtype.bits(Self.kernelQuotient(x, scale)))
                    if kernel != code {
                        Issue.record("\(dtype) \(input) x \(x) scale \(scale): kernel \(kernel), quantize \(code)")
                        return
                    }
                    let naive = UInt8(dtype.bits(x / scale))
                    if naive != code {
                        naiveMismatches["\(input.rawValue) \(scale)", default: 0] += 1
                        // Off by one code, never more: the double rounding moves to the even neighbour.
                        #expect(naive & 0x80 == code & 0x80 && (Int(naive & 0x7F) - Int(code & 0x7F)).magnitude == 1, "\(x) \(scale)")
                    }
                }
            }
        }
        // With f32 inputs at near-midpoints the naive division fails often; with f16 and bf16 at
        // scale 3.1 too (32 values for e4m3, 2 for e5m2: the GPU check's K scale on pages of 16,
        // whose inputs hold every f16 / bf16 value); the kernel never does.
        #expect(naiveMismatches.filter { $0.key.hasPrefix("f32") }.values.reduce(0, +) > 0)
        #expect(naiveMismatches["f16 3.1"] == (dtype == .e4m3 ? 32 : 2) && naiveMismatches["bf16 3.1"] == (dtype == .e4m3 ? 32 : 2))
        if testVerbose { print("[append fp8] \(dtype): a plain x / scale then RNE would differ from quantize on \(naiveMismatches.sorted { $0.key < $1.key }) inputs") }
    }

    // MARK: refusals

    static func host(_ dtype: DType, _ shape: [Int]) -> Tensor {
        Tensor.host([Float](repeating: 0.5, count: shape.reduce(1, *)), shape: shape, dtype: dtype)
    }

    static func append(k: DType, v: DType? = nil, cache: DType, kScale: Float = 1, vScale: Float = 1) -> FlashInferError? {
        do {
            let table = PageTable.contiguous(seqLens: [2], pageSize: 4)
            let c = try PagedKVCache(combined: host(cache, [2, 2, 4, 2, 16]))
            try appendPagedKVCache(appendK: host(k, [2, 2, 16]), appendV: host(v ?? k, [2, 2, 16]),
                                   indices: AppendIndices(batchIndices: [0, 0], positions: [0, 1]), cache: c, table: table,
                                   kScale: kScale, vScale: vScale)
            return nil
        } catch {
            return error
        }
    }

    @Test func acceptedPairs() {
        for cache in [DType.e4m3, .e5m2] {
            for input in [DType.f16, .bf16, .f32, cache] {
                #expect(Self.append(k: input, cache: cache, kScale: input == cache ? 1 : 0.5, vScale: input == cache ? 1 : 3) == nil, "\(input) → \(cache)")
            }
        }
        for d in [DType.f16, .bf16, .f32] { #expect(Self.append(k: d, cache: d) == nil) }
    }

    @Test func refusedDTypePairs() {
        let intoCache = "(the cache's dtype; only an e4m3 or e5m2 cache converts what is appended)"
        #expect(Self.append(k: .f16, cache: .bf16) == .dtype(tensor: "append_key", expected: "bf16 \(intoCache)", got: .f16))
        #expect(Self.append(k: .bf16, cache: .f16) == .dtype(tensor: "append_key", expected: "f16 \(intoCache)", got: .bf16))
        #expect(Self.append(k: .f16, cache: .f32) == .dtype(tensor: "append_key", expected: "f32 \(intoCache)", got: .f16))
        #expect(Self.append(k: .e4m3, cache: .f16) == .dtype(tensor: "append_key", expected: "f16 \(intoCache)", got: .e4m3))
        let fp8 = { (c: DType) in "\(c.rawValue) (the cache's dtype), or f16, bf16 or f32 to quantize into the \(c.rawValue) cache" }
        #expect(Self.append(k: .e4m3, cache: .e5m2) == .dtype(tensor: "append_key", expected: fp8(.e5m2), got: .e4m3))
        #expect(Self.append(k: .e5m2, cache: .e4m3) == .dtype(tensor: "append_key", expected: fp8(.e4m3), got: .e5m2))
        // V is checked against the cache, then against K.
        #expect(Self.append(k: .f16, v: .e5m2, cache: .e4m3) == .dtype(tensor: "append_value", expected: fp8(.e4m3), got: .e5m2))
        #expect(Self.append(k: .f16, v: .bf16, cache: .e4m3) == .dtype(tensor: "append_value", expected: "f16 (append_key's dtype)", got: .bf16))
        #expect(Self.append(k: .e4m3, v: .f16, cache: .e4m3) == .dtype(tensor: "append_value", expected: "e4m3 (append_key's dtype)", got: .f16))
    }

    @Test func refusedScales() {
        for (name, isK) in [("k_scale", true), ("v_scale", false)] {
            func err(_ s: Float, input: DType = .f16, cache: DType = .e4m3) -> FlashInferError? {
                isK ? Self.append(k: input, cache: cache, kScale: s) : Self.append(k: input, cache: cache, vScale: s)
            }
            for bad in [Float.nan, .infinity, -.infinity] {
                #expect(err(bad) == .option(name: name, value: "\(bad)", rule: "must be finite"))
            }
            for bad: Float in [0, -0.0, -1, -Float.leastNonzeroMagnitude] {
                #expect(err(bad) == .option(name: name, value: "\(bad)", rule: "must be > 0"))
            }
            // A copy takes no scale (the checks of finite and > 0 come first).
            for dtype in [DType.f16, .e5m2] {
                let rule = "must be 1: append_key and append_value have the cache's dtype \(dtype.rawValue), so they are copied, not quantized (scales apply to f16/bf16/f32 appended into an e4m3 or e5m2 cache)"
                #expect(err(0.5, input: dtype, cache: dtype) == .option(name: name, value: "0.5", rule: rule))
                #expect(err(.nan, input: dtype, cache: dtype) == .option(name: name, value: "nan", rule: "must be finite"))
            }
            // Tiny and huge finite scales are valid.
            #expect(err(.leastNonzeroMagnitude) == nil && err(.greatestFiniteMagnitude) == nil)
        }
        // Both bad: K is named first.
        #expect(Self.append(k: .f16, cache: .e4m3, kScale: 0, vScale: .nan) == .option(name: "k_scale", value: "0.0", rule: "must be > 0"))
    }

    /// The GPU kernels' vector rule (`checkAppendVectorAligned`, run before a device append; pure, so
    /// checked here on host tensors): 16-byte strides and offsets, whole 16-byte vectors per cache row.
    @Test func vectorRule() throws {
        let k16 = Self.host(.f16, [2, 2, 16])
        let fp8Cache = try PagedKVCache(combined: Self.host(.e4m3, [2, 2, 4, 2, 16]))
        #expect(throws: Never.self) { try checkAppendVectorAligned(appendK: k16, appendV: k16, cache: fp8Cache) }
        // head_dim 8 of e4m3 in a padded row (head stride 16 bytes): half a vector per row.
        let padded = Tensor(storage: .host(HostBuffer(bytes: [UInt8](repeating: 0, count: 2 * 2 * 4 * 2 * 16))), shape: [2, 2, 4, 2, 8],
                            strides: [256, 128, 32, 16, 1], dtype: .e4m3)
        let k8 = Tensor(storage: .host(HostBuffer(bytes: [UInt8](repeating: 0, count: 2 * 2 * 16 * 2))), shape: [2, 2, 8], strides: [32, 16, 1], dtype: .f16)
        #expect(throws: FlashInferError.shape(tensor: "k_cache", axis: 3, name: "head_dim",
                                              expected: "a multiple of 16 (the append kernels move whole 16-byte vectors of the cache)", got: 8)) {
            try checkAppendVectorAligned(appendK: k8, appendV: k8, cache: PagedKVCache(combined: padded))
        }
        // The copy of f16 rows of 4 elements (8 bytes) padded to 16: the same rule (it used to copy nothing).
        let padded16 = Tensor(storage: .host(HostBuffer(bytes: [UInt8](repeating: 0, count: 2 * 2 * 4 * 2 * 16))), shape: [2, 2, 4, 2, 4],
                              strides: [128, 64, 16, 8, 1], dtype: .f16)
        let k4 = Tensor(storage: .host(HostBuffer(bytes: [UInt8](repeating: 0, count: 2 * 2 * 8 * 2))), shape: [2, 2, 4], strides: [16, 8, 1], dtype: .f16)
        #expect(throws: FlashInferError.shape(tensor: "k_cache", axis: 3, name: "head_dim",
                                              expected: "a multiple of 8 (the append kernels move whole 16-byte vectors of the cache)", got: 4)) {
            try checkAppendVectorAligned(appendK: k4, appendV: k4, cache: PagedKVCache(combined: padded16))
        }
        // An append_key head stride of 20 f16 elements (40 bytes) is not a multiple of 16 bytes.
        let odd = Tensor(storage: .host(HostBuffer(bytes: [UInt8](repeating: 0, count: 2 * 2 * 24 * 2))), shape: [2, 2, 16], strides: [40, 20, 1], dtype: .f16)
        #expect(throws: FlashInferError.strides(tensor: "append_key", strides: [40, 20, 1], rule: "strides and offset must be multiples of 16 bytes for vectorised copies")) {
            try checkAppendVectorAligned(appendK: odd, appendV: k16, cache: fp8Cache)
        }
    }

    /// The catalogue compiles the copy and the six quantizing kernels, with distinct names and entry points.
    @Test func specsAndCatalogue() {
        let specs = AppendPagedKVSpec.catalog
        #expect(specs.map(\.name) == ["append_paged_kv", "append_paged_kv f16 to e4m3", "append_paged_kv f16 to e5m2", "append_paged_kv bf16 to e4m3",
                                      "append_paged_kv bf16 to e5m2", "append_paged_kv f32 to e4m3", "append_paged_kv f32 to e5m2"])
        #expect(Set(specs.map(\.spec.entryPoint)).count == specs.count)
        #expect(AppendPagedKVSpec(input: .e4m3, cache: .e4m3) == AppendPagedKVSpec())  // every copy is one kernel
        #expect(AppendPagedKVSpec(input: .bf16, cache: .bf16).name == "append_paged_kv")
        let q = AppendPagedKVSpec(input: .bf16, cache: .e5m2)
        #expect(q.entryPoint == "fi_append_paged_kv_bf16_e5m2")
        #expect(q.source().contains("flashinfer::append_paged_kv_quant<nv_bfloat16, __nv_fp8_e5m2>(p)"))
        #expect(kernelCatalog().filter { $0.spec is AppendPagedKVSpec }.count == 7)
    }
}
