import FlashInfer
import FlashInferCUDA

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The memory-bound ops on the GPU against the CPU reference (Float64 on the same rounded inputs):
// `flashinfer check --filter ops.` (or `ops.norm`, `ops.activation`, `ops.rope`). Inputs are random normal; every output the
// kernel writes into a separate tensor is NaN-poisoned first (the in-place forms overwrite their
// inputs). Tolerances (`Tolerance.op`): upstream's tests/utils/test_norm.py, test_activation.py
// and test_rope.py use 1e-3 for f16 (layernorm 1e-2); bf16 keeps 8 significant bits, so 1e-2.

extension Tolerance {
    /// f16 1e-3 / 1e-3 (LayerNorm 1e-2, as upstream), bf16 1e-2 / 1e-2.
    public static func op(dtype: DType, layernorm: Bool = false) -> Tolerance {
        dtype == .f16 && !layernorm ? .f16 : .relaxed
    }

    /// RoPE at positions up to `maxPosition`: `op(dtype:)` plus the Float32 angle's error. The
    /// kernel forms `float(pos) · freq` in Float32 (as upstream) from a frequency rounded to
    /// Float32: the angle is off by up to `pos · freq · 2^-23` radians (freq ≤ 1), which moves an
    /// element by as much times its pair's norm (≤ ~5 for normal inputs).
    public static func rope(dtype: DType, maxPosition: Int) -> Tolerance {
        let t = op(dtype: dtype)
        return Tolerance(atol: t.atol + Float(maxPosition) * 0x1p-23 * 5, rtol: t.rtol)
    }
}

/// A host tensor of `shape` with random normal values (times `scale`), rounded to `dtype`.
func randomHost(_ shape: [Int], dtype: DType, scale: Float = 1, rng: inout SeededRNG) -> Tensor {
    Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() * scale }, shape: shape, dtype: dtype)
}

/// A device copy of `[rows, n]` host values laid out with row stride `stride ≥ n` (a view into a
/// wider buffer whose padding is poisoned), or contiguous when `stride == n`.
func deviceRows(_ t: Tensor, stride: Int, device: Device, stream: Stream) throws -> Tensor {
    let rows = t.shape[0], n = t.shape[1]
    if stride == n { return try t.toDevice(device) }
    let values = try t.toFloats()
    var padded = [Float](repeating: .nan, count: rows * stride)
    for r in 0..<rows { for i in 0..<n { padded[r * stride + i] = values[r * n + i] } }
    let wide = try Tensor.host(padded, shape: [rows, stride], dtype: t.dtype).toDevice(device)
    return Tensor(storage: wide.storage, shape: [rows, n], strides: [stride, 1], dtype: t.dtype)
}

/// An uninitialised device tensor of `shape`, NaN-poisoned on `stream`.
func poisoned(_ shape: [Int], dtype: DType, device: Device, stream: Stream) throws -> Tensor {
    let t = try Tensor.empty(shape: shape, dtype: dtype, device: device)
    try t.poison(stream: stream)
    return t
}

/// The comparison, as a failure message or nil.
func compareOp(_ what: String, _ got: Tensor, _ expected: Tensor, _ tol: Tolerance) throws -> String? {
    if let m = tol.compare(try got.toFloats(), try expected.toFloats()) { return "\(what): \(m) (\(tol))" }
    return nil
}

// MARK: - Norms

public func normCases() -> [CheckCase] {
    enum Op: String, CaseIterable {
        case rmsnorm, gemmaRMSNorm = "gemma_rmsnorm", fusedAdd = "fused_add_rmsnorm", fusedAddInPlace = "fused_add_rmsnorm_inplace"
        case gemmaFusedAddInPlace = "gemma_fused_add_rmsnorm_inplace", layernorm
    }
    var cases: [CheckCase] = []
    // upstream's hidden sizes (test_norm.py) and batches, a strided row view, and the 32k limit;
    // then batches larger than the CTAs that fit the GPU at once (a kernel that loops over rows
    // must cover them all: 2 CTAs of 256 threads per SM at hidden 8192, 1 of 512 at 16384).
    let shapes: [(rows: Int, hidden: Int, stride: Int)] = [
        (1, 111, 111), (19, 500, 500), (99, 1024, 1024), (989, 3072, 3072), (7, 3584, 3584), (256, 8192, 8192),
        (3, 16384, 16384), (2, 32768, 32768), (33, 4096, 4096 + 64), (5, 111, 120),
        (1001, 8192, 8192), (301, 16384, 16384 + 8), (6007, 1024, 1024),
    ]
    for dtype in [DType.f16, .bf16] {
        for op in Op.allCases {
            for s in shapes {
                let weightDTypes: [DType] = op == .layernorm ? [.f32, dtype] : (s.hidden == 4096 ? [dtype, .f32] : [dtype])
                for wd in weightDTypes {
                    let name = "ops.norm \(op.rawValue) dtype=\(dtype.rawValue) weight=\(wd.rawValue) rows=\(s.rows) hidden=\(s.hidden)\(s.stride != s.hidden ? " row_stride=\(s.stride)" : "")"
                    cases.append(CheckCase(name: name) { device, stream, rng in
                        let be = Backend.cuda(stream)
                        let eps = 1e-6
                        let x = randomHost([s.rows, s.hidden], dtype: dtype, rng: &rng)
                        let w = randomHost([s.hidden], dtype: wd, scale: op == .gemmaRMSNorm || op == .gemmaFusedAddInPlace ? 0.2 : 1, rng: &rng)
                        let gx = try deviceRows(x, stride: s.stride, device: device, stream: stream)
                        let gw = try w.toDevice(device)
                        let tol = Tolerance.op(dtype: dtype, layernorm: op == .layernorm)
                        switch op {
                        case .rmsnorm, .gemmaRMSNorm:
                            let out = try poisoned([s.rows, s.hidden], dtype: dtype, device: device, stream: stream)
                            let gemma = op == .gemmaRMSNorm
                            _ = try (gemma ? gemmaRMSNorm : rmsnorm)(gx, gw, eps, out, be)
                            try stream.synchronize()
                            return try compareOp("out", out, try (gemma ? gemmaRMSNorm : rmsnorm)(x, w, eps, nil, .cpu), tol)
                        case .layernorm:
                            let b = randomHost([s.hidden], dtype: wd, rng: &rng)
                            let out = try poisoned([s.rows, s.hidden], dtype: dtype, device: device, stream: stream)
                            try FlashInfer.layernorm(gx, gamma: gw, beta: try b.toDevice(device), eps: eps, out: out, backend: be)
                            try stream.synchronize()
                            return try compareOp("out", out, try FlashInfer.layernorm(x, gamma: w, beta: b, eps: eps), tol)
                        case .fusedAdd:
                            let r = randomHost([s.rows, s.hidden], dtype: dtype, rng: &rng)
                            let gpu = try fusedAddRMSNorm(gx, residual: try deviceRows(r, stride: s.stride, device: device, stream: stream),
                                                          weight: gw, eps: eps, backend: be)
                            try stream.synchronize()
                            let cpu = try fusedAddRMSNorm(x, residual: r, weight: w, eps: eps)
                            return try compareOp("residual", gpu.residual, cpu.residual, tol) ?? compareOp("output", gpu.output, cpu.output, tol)
                        case .fusedAddInPlace, .gemmaFusedAddInPlace:
                            let r = randomHost([s.rows, s.hidden], dtype: dtype, rng: &rng)
                            let gr = try deviceRows(r, stride: s.stride, device: device, stream: stream)
                            let hx = Tensor.host(try x.toFloats(), shape: x.shape, dtype: dtype)
                            let hr = Tensor.host(try r.toFloats(), shape: r.shape, dtype: dtype)
                            let f = op == .gemmaFusedAddInPlace ? gemmaFusedAddRMSNormInPlace : fusedAddRMSNormInPlace
                            try f(gx, gr, gw, eps, be)
                            try stream.synchronize()
                            try f(hx, hr, w, eps, .cpu)
                            return try compareOp("residual", gr, hr, tol) ?? compareOp("input (normalized)", gx, hx, tol)
                        }
                    })
                }
            }
        }
    }
    return cases
}

// MARK: - Gated activations

public func activationCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    // upstream's dims (test_activation.py: 128 … 16384), an odd one, a strided input, leading axes.
    let shapes: [(shape: [Int], stride: Int?)] = [
        ([1, 2 * 128], nil), ([16, 2 * 1024], nil), ([4, 37, 2 * 4096], nil), ([256, 2 * 8192], nil), ([3, 2 * 16384], nil),
        ([7, 2 * 111], nil), ([9, 2 * 512], 2 * 512 + 16),
    ]
    for dtype in [DType.f16, .bf16] {
        for act in GatedActivation.allCases {
            for s in shapes {
                let name = "ops.activation \(act.rawValue)_and_mul dtype=\(dtype.rawValue) input=\(s.shape)\(s.stride.map { " row_stride=\($0)" } ?? "")"
                cases.append(CheckCase(name: name) { device, stream, rng in
                    let x = randomHost(s.shape, dtype: dtype, scale: 2, rng: &rng)
                    let rows = s.shape.dropLast().reduce(1, *), last = s.shape.last!
                    var gx = try deviceRows(x.reshaped([rows, last]), stride: s.stride ?? last, device: device, stream: stream)
                    if s.stride == nil { gx = gx.reshaped(s.shape) }
                    let outShape = Array(gx.shape.dropLast()) + [last / 2]
                    let out = try poisoned(outShape, dtype: dtype, device: device, stream: stream)
                    try gatedActivationAndMul(gx, activation: act, out: out, backend: .cuda(stream))
                    try stream.synchronize()
                    let cpu = try gatedActivationAndMul(x, activation: act).reshaped(outShape)
                    return try compareOp("out", out, cpu, .op(dtype: dtype))
                })
            }
        }
    }
    return cases
}

// MARK: - RoPE

public func ropeCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    struct Shape { var lens: [Int]; var hq: Int; var hk: Int; var d: Int }
    // upstream's test_rope.py: batch {1, 19, 99}, qkv_len {1, 4, 19, 204}, heads 8–16 / 8, D {64, 128, 256}.
    let shapes = [Shape(lens: [1], hq: 8, hk: 8, d: 64), Shape(lens: Array(repeating: 4, count: 19), hq: 16, hk: 8, d: 128),
                  Shape(lens: (0..<99).map { [1, 4, 19, 204][$0 % 4] }, hq: 32, hk: 8, d: 128), Shape(lens: [204, 19, 1], hq: 8, hk: 8, d: 256)]
    for dtype in [DType.f16, .bf16] {
        for (si, s) in shapes.enumerated() {
            for interleave in [false, true] {
                for partial in [1.0, 0.75, 0.25] where si != 0 || partial != 0.75 {
                    let rd = Int(Double(s.d) * partial)
                    for llama31 in [false, true] {
                        for inPlace in [false, true] where !(llama31 && inPlace && si != 2) {
                            let offset = [0, 15, 99][(si + (llama31 ? 1 : 0)) % 3]
                            let name = "ops.rope \(llama31 ? "llama31" : "rope") dtype=\(dtype.rawValue) batch=\(s.lens.count) nnz=\(s.lens.reduce(0, +)) heads=\(s.hq)/\(s.hk) head_dim=\(s.d) rotary_dim=\(rd) interleave=\(interleave) offset=\(offset)\(inPlace ? " inplace" : "")"
                            cases.append(CheckCase(name: name) { device, stream, rng in
                                let indptr = s.lens.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1)) }
                                let offsets = s.lens.map { _ in Int32(offset) }
                                let opts = RopeOptions(rotaryDim: rd, interleave: interleave, theta: llama31 ? 5e5 : 1e4,
                                                       scaling: llama31 ? .llama31Default : .linear(scale: 1))
                                return try ropeCheck(indptr: indptr, offsets: offsets, hq: s.hq, hk: s.hk, d: s.d, options: opts,
                                                     inPlace: inPlace, dtype: dtype, device: device, stream: stream, rng: &rng)
                            })
                        }
                    }
                }
            }
        }
        // Long context: positions up to 131072 (Llama 3.1), position ids out of order.
        cases.append(CheckCase(name: "ops.rope llama31 long positions dtype=\(dtype.rawValue) nnz=64 heads=32/8 head_dim=128") { device, stream, rng in
            let pos = (0..<64).map { _ in Int32(rng.uniform() * 131072) }
            return try ropeCheck(positions: pos, hq: 32, hk: 8, d: 128, options: RopeOptions(theta: 5e5, scaling: .llama31Default),
                                 inPlace: false, dtype: dtype, device: device, stream: stream, rng: &rng)
        })
        // Positions in device memory (read by the kernel): ragged indptr/offsets (99 requests of
        // 1–204 rows, the binary search), Int32 and Int64 pos_ids, Llama 3.1 long positions.
        for inPlace in [false, true] {
            let lens = (0..<99).map { [1, 4, 19, 204][$0 % 4] }
            cases.append(CheckCase(name: "ops.rope device indptr/offsets dtype=\(dtype.rawValue) batch=99 nnz=\(lens.reduce(0, +)) heads=32/8 head_dim=128 rotary_dim=96\(inPlace ? " inplace" : "")") { device, stream, rng in
                let indptr = lens.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1)) }
                let offsets = lens.indices.map { Int32($0 * 37 % 500) }
                return try ropeCheck(indptr: indptr, offsets: offsets, hq: 32, hk: 8, d: 128, options: RopeOptions(rotaryDim: 96),
                                     inPlace: inPlace, dtype: dtype, device: device, stream: stream, rng: &rng, source: .deviceRagged)
            })
        }
        for (source, label) in [(RopePositionSource.deviceInt32, "int32"), (.deviceInt64, "int64")] {
            cases.append(CheckCase(name: "ops.rope llama31 device pos_ids \(label) dtype=\(dtype.rawValue) nnz=300 heads=32/8 head_dim=128 interleave=\(label == "int64")") { device, stream, rng in
                let pos = (0..<300).map { _ in Int32(rng.uniform() * 131072) }
                return try ropeCheck(positions: pos, hq: 32, hk: 8, d: 128,
                                     options: RopeOptions(interleave: label == "int64", theta: 5e5, scaling: .llama31Default),
                                     inPlace: label == "int32", dtype: dtype, device: device, stream: stream, rng: &rng, source: source)
            })
        }
        // Ragged rows outside indptr[0] ..< indptr[batch] are not written (in place: they keep q/k).
        cases.append(CheckCase(name: "ops.rope device indptr rows outside every request untouched dtype=\(dtype.rawValue) nnz=64 inplace") { device, stream, rng in
            let (nnz, hq, hk, d) = (64, 4, 2, 64)
            let indptr: [Int32] = [5, 9, 9, 40, 57], offsets: [Int32] = [3, 1000, 0, 77]
            let q = randomHost([nnz, hq, d], dtype: dtype, rng: &rng), k = randomHost([nnz, hk, d], dtype: dtype, rng: &rng)
            let gq = try q.toDevice(device), gk = try k.toDevice(device)
            let dp = DevicePositions.ragged(indptr: try device.upload(indptr), offsets: try device.upload(offsets), batchSize: 4)
            try applyRopeInPlace(q: gq, k: gk, positions: dp, backend: .cuda(stream))
            try stream.synchronize()
            // The CPU: rows 5..<57 at their positions, the rest as they were.
            var pos = [Int32](repeating: 0, count: nnz)
            for b in 0..<4 { for r in Int(indptr[b])..<Int(indptr[b + 1]) { pos[r] = offsets[b] + Int32(r) - indptr[b] } }
            let cpu = try applyRopePosIds(q: q, k: k, posIds: pos)
            let (cq, ck, hq0, hk0) = (try cpu.q.toFloats(), try cpu.k.toFloats(), try q.toFloats(), try k.toFloats())
            func expected(_ rotated: [Float], _ original: [Float], _ heads: Int) -> [Float] {
                (0..<rotated.count).map { i in (5..<57).contains(i / (heads * d)) ? rotated[i] : original[i] }
            }
            let tol = Tolerance.rope(dtype: dtype, maxPosition: 1100)
            return try compareOp("q", gq, Tensor.host(expected(cq, hq0, hq), shape: q.shape, dtype: dtype), tol)
                ?? compareOp("k", gk, Tensor.host(expected(ck, hk0, hk), shape: k.shape, dtype: dtype), tol)
        })
        // Strided q/k: views of a packed QKV row [nnz, (Hq + 2·Hk)·D].
        cases.append(CheckCase(name: "ops.rope packed qkv views dtype=\(dtype.rawValue) nnz=77 heads=16/4 head_dim=128") { device, stream, rng in
            let (nnz, hq, hk, d) = (77, 16, 4, 128)
            let qkv = randomHost([nnz, (hq + 2 * hk) * d], dtype: dtype, rng: &rng)
            let g = try qkv.toDevice(device)
            let rowStride = (hq + 2 * hk) * d
            let q = Tensor(storage: g.storage, shape: [nnz, hq, d], strides: [rowStride, d, 1], dtype: dtype)
            let k = Tensor(storage: g.storage, shape: [nnz, hk, d], strides: [rowStride, d, 1], dtype: dtype, offset: hq * d)
            let pos = (0..<nnz).map { Int32($0 * 3) }
            let outQ = try poisoned([nnz, hq, d], dtype: dtype, device: device, stream: stream)
            let outK = try poisoned([nnz, hk, d], dtype: dtype, device: device, stream: stream)
            try applyRopePosIds(q: q, k: k, posIds: pos, out: (outQ, outK), backend: .cuda(stream))
            try stream.synchronize()
            let hq3 = Tensor.host(try q.toFloats(), shape: q.shape, dtype: dtype), hk3 = Tensor.host(try k.toFloats(), shape: k.shape, dtype: dtype)
            let cpu = try applyRopePosIds(q: hq3, k: hk3, posIds: pos)
            let tol = Tolerance.rope(dtype: dtype, maxPosition: 3 * nnz)
            return try compareOp("q", outQ, cpu.q, tol) ?? compareOp("k", outK, cpu.k, tol)
        })
        // The cos/sin cache form (vLLM layout [max_pos, rd], f32), NeoX and GPT-J pairing, partial rotary.
        for isNeox in [true, false] {
            for (rd, inPlace) in [(128, false), (64, true)] {
                cases.append(CheckCase(name: "ops.rope cos_sin_cache dtype=\(dtype.rawValue) is_neox=\(isNeox) nnz=300 heads=32/8 head_size=128 rotary_dim=\(rd)\(inPlace ? " inplace" : "")") { device, stream, rng in
                    let (nnz, hq, hk, hs, maxPos) = (300, 32, 8, 128, 4096)
                    let freqs = RopeOptions(theta: 1e4).frequencies(rotaryDim: rd)
                    var cacheValues: [Float] = []
                    for p in 0..<maxPos {
                        cacheValues += freqs.map { Float(cos(Double(p) * $0)) } + freqs.map { Float(sin(Double(p) * $0)) }
                    }
                    let cache = Tensor.host(cacheValues, shape: [maxPos, rd], dtype: .f32)
                    let pos = (0..<nnz).map { _ in Int32(rng.uniform() * Float(maxPos - 1)) }
                    let q = randomHost([nnz, hq * hs], dtype: dtype, rng: &rng), k = randomHost([nnz, hk * hs], dtype: dtype, rng: &rng)
                    let be = Backend.cuda(stream)
                    let gq = try q.toDevice(device), gk = try k.toDevice(device), gc = try cache.toDevice(device)
                    let got: (query: Tensor, key: Tensor)
                    if inPlace {
                        try applyRopeWithCosSinCacheInPlace(positions: pos, query: gq, key: gk, headSize: hs, cosSinCache: gc, isNeox: isNeox, backend: be)
                        got = (gq, gk)
                    } else {
                        got = try applyRopeWithCosSinCache(positions: pos, query: gq, key: gk, headSize: hs, cosSinCache: gc, isNeox: isNeox, backend: be)
                    }
                    try stream.synchronize()
                    let cpu = try applyRopeWithCosSinCache(positions: pos, query: q, key: k, headSize: hs, cosSinCache: cache, isNeox: isNeox)
                    let tol = Tolerance.op(dtype: dtype)
                    return try compareOp("query", got.query, cpu.query, tol) ?? compareOp("key", got.key, cpu.key, tol)
                })
            }
        }
        // The cos/sin cache with Int64 positions in device memory (vLLM's `positions`), in place;
        // a few positions outside the cache (negative, = max_pos, huge): those rows' rotated
        // elements must be NaN (no read outside the cache), the rest as the CPU's.
        cases.append(CheckCase(name: "ops.rope cos_sin_cache device int64 positions dtype=\(dtype.rawValue) nnz=300 heads=32/8 head_size=128 rotary_dim=64 with positions outside the cache") { device, stream, rng in
            let (nnz, hq, hk, hs, rd, maxPos) = (300, 32, 8, 128, 64, 4096)
            let freqs = RopeOptions(theta: 1e4).frequencies(rotaryDim: rd)
            var cacheValues: [Float] = []
            for p in 0..<maxPos {
                cacheValues += freqs.map { Float(cos(Double(p) * $0)) } + freqs.map { Float(sin(Double(p) * $0)) }
            }
            let cache = Tensor.host(cacheValues, shape: [maxPos, rd], dtype: .f32)
            var pos64 = (0..<nnz).map { _ in Int64(rng.uniform() * Float(maxPos - 1)) }
            let bad: [Int: Int64] = [3: -1, 150: Int64(maxPos), 299: 1 << 40]
            for (r, v) in bad { pos64[r] = v }
            let q = randomHost([nnz, hq * hs], dtype: dtype, rng: &rng), k = randomHost([nnz, hk * hs], dtype: dtype, rng: &rng)
            let gq = try q.toDevice(device), gk = try k.toDevice(device), gc = try cache.toDevice(device)
            try applyRopeWithCosSinCacheInPlace(positions: .perRow(try device.upload(pos64), int64: true), query: gq, key: gk,
                                                headSize: hs, cosSinCache: gc, backend: .cuda(stream))
            try stream.synchronize()
            // The CPU on the good rows (bad ones at position 0), then the bad rows' rotated elements NaN.
            let cpu = try applyRopeWithCosSinCache(positions: pos64.map { $0 < 0 || $0 >= Int64(maxPos) ? 0 : Int32($0) }, query: q, key: k,
                                                   headSize: hs, cosSinCache: cache)
            let tol = Tolerance.op(dtype: dtype)
            func check(_ what: String, _ got: Tensor, _ want: Tensor, _ heads: Int) throws -> String? {
                var g = try got.toFloats(), w = try want.toFloats()
                for r in bad.keys.sorted() {
                    for h in 0..<heads {
                        for e in 0..<rd {
                            let i = (r * heads + h) * hs + e
                            guard g[i].isNaN else { return "\(what): row \(r) (position \(bad[r]!), outside the cache) element \(h * hs + e) = \(g[i]), expected NaN" }
                            (g[i], w[i]) = (0, 0)
                        }
                    }
                }
                if let m = tol.compare(g, w) { return "\(what): \(m) (\(tol))" }
                return nil
            }
            return try check("query", gq, cpu.query, hq) ?? check("key", gk, cpu.key, hk)
        })
    }
    return cases
}

/// RoPE of random q/k at the positions of `indptr` + `offsets` on the GPU against the CPU.
private func ropeCheck(indptr: [Int32], offsets: [Int32], hq: Int, hk: Int, d: Int, options: RopeOptions, inPlace: Bool,
                       dtype: DType, device: Device, stream: Stream, rng: inout SeededRNG,
                       source: RopePositionSource = .host) throws -> String? {
    var pos: [Int32] = []
    for b in 0..<offsets.count { for j in 0..<(indptr[b + 1] - indptr[b]) { pos.append(offsets[b] + j) } }
    return try ropeCheck(positions: pos, indptr: (indptr, offsets), hq: hq, hk: hk, d: d, options: options, inPlace: inPlace,
                         dtype: dtype, device: device, stream: stream, rng: &rng, source: source)
}

/// Where a RoPE check's positions live: host arrays (uploaded by the call) or device memory
/// (`DevicePositions`, read by the kernel): pos_ids as Int32 or Int64, or the ragged
/// indptr/offsets.
enum RopePositionSource { case host, deviceInt32, deviceInt64, deviceRagged }

private func ropeCheck(positions pos: [Int32], indptr: ([Int32], [Int32])? = nil, hq: Int, hk: Int, d: Int, options: RopeOptions,
                       inPlace: Bool, dtype: DType, device: Device, stream: Stream, rng: inout SeededRNG,
                       source: RopePositionSource = .host) throws -> String? {
    let nnz = pos.count
    let q = randomHost([nnz, hq, d], dtype: dtype, rng: &rng), k = randomHost([nnz, hk, d], dtype: dtype, rng: &rng)
    let gq = try q.toDevice(device), gk = try k.toDevice(device)
    let be = Backend.cuda(stream)
    let got: (q: Tensor, k: Tensor)
    if source != .host {
        let dp: DevicePositions
        switch source {
        case .deviceInt64: dp = .perRow(try device.upload(pos.map(Int64.init)), int64: true)
        case .deviceRagged:
            guard let (ip, off) = indptr else { return "a ragged source needs indptr and offsets" }
            dp = .ragged(indptr: try device.upload(ip), offsets: try device.upload(off), batchSize: off.count)
        default: dp = .perRow(try device.upload(pos), int64: false)
        }
        if inPlace {
            try applyRopeInPlace(q: gq, k: gk, positions: dp, options: options, backend: be)
            got = (gq, gk)
        } else {
            let out = (q: try poisoned(q.shape, dtype: dtype, device: device, stream: stream),
                       k: try poisoned(k.shape, dtype: dtype, device: device, stream: stream))
            got = try applyRope(q: gq, k: gk, positions: dp, options: options, out: out, backend: be)
        }
    } else if inPlace {
        if let (ip, off) = indptr {
            try applyRopeInPlace(q: gq, k: gk, indptr: ip, offsets: off, options: options, backend: be)
        } else {
            try applyRopePosIdsInPlace(q: gq, k: gk, posIds: pos, options: options, backend: be)
        }
        got = (gq, gk)
    } else {
        let out = (q: try poisoned(q.shape, dtype: dtype, device: device, stream: stream),
                   k: try poisoned(k.shape, dtype: dtype, device: device, stream: stream))
        if let (ip, off) = indptr {
            got = try applyRope(q: gq, k: gk, indptr: ip, offsets: off, options: options, out: out, backend: be)
        } else {
            got = try applyRopePosIds(q: gq, k: gk, posIds: pos, options: options, out: out, backend: be)
        }
    }
    try stream.synchronize()
    let cpu = try applyRopePosIds(q: q, k: k, posIds: pos, options: options)
    let tol = Tolerance.rope(dtype: dtype, maxPosition: Int(pos.max() ?? 0))
    return try compareOp("q", got.q, cpu.q, tol) ?? compareOp("k", got.k, cpu.k, tol)
}
