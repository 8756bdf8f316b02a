@_spi(Bench) import FlashInfer
import FlashInferCUDA

/// One single-decode check: a problem, how K/V are laid out in memory, and how it is launched.
struct DecodeCheckConfig {
    var kvLen: Int
    var numQOHeads: Int
    var numKVHeads: Int
    var headDim: Int
    var dtype: DType
    var options: AttentionOptions
    /// Forced number of split-KV chunks (nil: the planner's choice).
    var numChunks: Int? = nil
    /// K/V (and q) as strided views into larger NaN-filled buffers.
    var strided = false
    /// Through `singleDecode(..., backend: .cuda)` (outputs allocated by the library, not poisoned).
    var publicAPI = false
    /// Kernel pipeline depth and keys per slot (nil: the library's defaults).
    var stages: Int? = nil
    var keysPerSlot: Int? = nil
    /// FP8 K/V (e4m3 / e5m2); nil: q's dtype. The scales are `options.kScale` / `vScale`.
    var kvDType: DType? = nil

    var name: String {
        let o = options
        var s = "decode \(dtype.rawValue)\(kvDType.map { " kv=\($0.rawValue) k_scale=\(o.kScale) v_scale=\(o.vScale)" } ?? "") d\(headDim) kv\(kvLen) h\(numQOHeads)/\(numKVHeads) \(o.layout.rawValue)"
        switch o.positionEncoding {
        case .none: break
        case .ropeLlama(let sc, let th): s += sc == 1 && th == 1e4 ? " rope" : " rope(\(sc),\(th))"
        case .alibi: s += " alibi"
        }
        if o.logitsSoftCap > 0 { s += " cap\(Int(o.logitsSoftCap))" }
        if o.windowLeft >= 0 { s += " w\(o.windowLeft)" }
        if let sc = o.smScale { s += " scale\(sc)" }
        if let n = numChunks { s += " split\(n)" }
        if strided { s += " strided" }
        if let st = stages { s += " stages\(st)" }
        if let k = keysPerSlot { s += " keys\(k)" }
        if publicAPI { s += " api" }
        return s
    }
}

/// The decode sweep (upstream's axes: kv_len {0, 1, 17, 127, 999, 4096, 32789}, group {1, 4, 8}
/// with 4 or 8 KV heads, NHD/HND, pos enc none/rope/alibi, soft-cap {0, 30}, window {-1, 13},
/// f16/bf16, head dim 64/128/256): every value of every axis and the risky pairs, not the cross
/// product, plus forced splits (empty chunks), strided K/V, odd group sizes and window edges.
public func decodeCases() -> [CheckCase] {
    decodeCheckConfigs().map { c in
        CheckCase(name: c.name) { device, stream, rng in try runDecodeCheck(c, device: device, stream: stream, rng: &rng) }
    }
}

func decodeCheckConfigs() -> [DecodeCheckConfig] {
    typealias C = DecodeCheckConfig
    var out: [C] = []
    let groups = [(1, 8), (4, 4), (8, 4), (4, 8), (8, 8), (1, 4)]  // (group size, KV heads)
    func make(_ kv: Int, _ g: (Int, Int), _ d: Int, _ dt: DType, _ o: AttentionOptions) -> C {
        C(kvLen: kv, numQOHeads: g.0 * g.1, numKVHeads: g.1, headDim: d, dtype: dt, options: o)
    }
    var i = 0
    // 1. Head dim × dtype × kv_len, no position encoding; group and layout rotate.
    for d in [64, 128, 256] {
        for dt in [DType.f16, .bf16] {
            for kv in [1, 17, 127, 999, 4096] {
                out.append(make(kv, groups[i % groups.count], d, dt, .init(layout: i % 2 == 0 ? .nhd : .hnd)))
                i += 1
            }
        }
    }
    // 2. Position encoding × soft-cap × window × dtype; head dim, kv_len, group, layout rotate.
    let pes: [PositionEncoding] = [.none, .ropeLlama(), .alibi]
    for pe in pes {
        for cap: Float in [0, 30] {
            for w in [-1, 13] {
                for dt in [DType.f16, .bf16] {
                    let o = AttentionOptions(positionEncoding: pe, logitsSoftCap: cap, windowLeft: w, layout: i % 2 == 0 ? .hnd : .nhd)
                    out.append(make([127, 999, 4096, 17][i % 4], groups[(i / 2) % groups.count], [64, 128, 256][i % 3], dt, o))
                    i += 1
                }
            }
        }
    }
    // 3. Layout × group × position encoding at kv_len 999, head dim 128, f16.
    for layout in KVLayout.allCases {
        for g in [(1, 8), (4, 8), (8, 4)] {
            for pe in pes { out.append(make(999, g, 128, .f16, .init(positionEncoding: pe, layout: layout))) }
        }
    }
    // 4. Long: kv_len 32789 (split across many CTAs).
    out.append(make(32789, (4, 8), 128, .f16, .init()))
    out.append(make(32789, (8, 4), 64, .bf16, .init(positionEncoding: .ropeLlama(), layout: .hnd)))
    out.append(make(32789, (1, 4), 256, .f16, .init(positionEncoding: .alibi, logitsSoftCap: 30)))
    out.append(make(32789, (4, 4), 128, .bf16, .init(windowLeft: 13, layout: .hnd)))
    out.append(make(32789, (8, 4), 128, .f16, .init(positionEncoding: .ropeLlama(), logitsSoftCap: 30)))
    out.append(make(32789, (4, 4), 256, .bf16, .init(layout: .hnd)))
    // 5. kv_len 0: output 0, LSE -inf.
    out.append(make(0, (4, 8), 128, .f16, .init()))
    out.append(make(0, (8, 4), 64, .bf16, .init(positionEncoding: .ropeLlama(), windowLeft: 13, layout: .hnd)))
    out.append(make(0, (1, 4), 256, .f16, .init(positionEncoding: .alibi, logitsSoftCap: 30)))
    // 6. Window edges: window 13 keeps 14 keys; window 0 keeps the last key only.
    for kv in [13, 14, 15] { out.append(make(kv, (4, 4), 128, .f16, .init(windowLeft: 13))) }
    out.append(make(999, (8, 4), 128, .bf16, .init(positionEncoding: .ropeLlama(), windowLeft: 0)))
    // 7. Group sizes off the power-of-two grid, and above 8 (several CTAs per KV head).
    for (g, hkv) in [(3, 4), (6, 4), (16, 2), (32, 1)] { out.append(make(999, (g, hkv), 128, .f16, .init(positionEncoding: .alibi))) }
    out.append(make(4096, (5, 2), 64, .bf16, .init(positionEncoding: .ropeLlama(), layout: .hnd)))
    // 8. Forced splits: trailing empty chunks, one chunk for a long range, many chunks, all empty.
    var f = make(100, (4, 4), 128, .f16, .init()); f.numChunks = 8; out.append(f)
    f = make(4096, (8, 4), 128, .f16, .init(positionEncoding: .ropeLlama())); f.numChunks = 1; out.append(f)
    f = make(999, (1, 8), 64, .bf16, .init(layout: .hnd)); f.numChunks = 3; out.append(f)
    f = make(4096, (4, 8), 256, .f16, .init(positionEncoding: .alibi, logitsSoftCap: 30)); f.numChunks = 64; out.append(f)
    f = make(0, (4, 4), 128, .f16, .init()); f.numChunks = 4; out.append(f)
    f = make(50, (8, 4), 128, .bf16, .init(windowLeft: 13)); f.numChunks = 5; out.append(f)
    f = make(0, (4, 4), 64, .bf16, .init()); f.numChunks = 3; out.append(f)
    out.append(make(32789, (8, 4), 256, .bf16, .init(positionEncoding: .ropeLlama(), layout: .hnd)))
    out.append(make(4096, (16, 2), 64, .f16, .init(logitsSoftCap: 30)))
    // Other pipeline depths and tiles than the default (the bench compares them).
    for (n, (st, kp)) in [(6, 4), (4, 8), (3, 8), (3, 2), (8, 2), (6, 8)].enumerated() {
        let shapes = [(32789, (4, 8), 128, DType.f16), (4096, (8, 4), 64, .bf16), (999, (1, 4), 256, .f16),
                      (17, (4, 4), 128, .bf16), (32789, (8, 4), 256, .f16), (4096, (1, 8), 128, .f16)]
        let (kv, g, d, dt) = shapes[n]
        let pe: [PositionEncoding] = [.none, .ropeLlama(), .alibi]
        f = make(kv, g, d, dt, .init(positionEncoding: pe[n % 3], logitsSoftCap: n % 2 == 0 ? 0 : 30, layout: n % 2 == 0 ? .nhd : .hnd))
        (f.stages, f.keysPerSlot) = (st, kp)
        if n == 3 { f.numChunks = 2 }
        out.append(f)
    }
    // 9. Strided (non-contiguous) K/V: a fused-QKV buffer (NHD) and a cache with spare capacity (HND).
    f = make(999, (4, 4), 128, .f16, .init()); f.strided = true; out.append(f)
    f = make(4096, (8, 4), 64, .bf16, .init(positionEncoding: .ropeLlama(), layout: .hnd)); f.strided = true; out.append(f)
    f = make(32789, (2, 4), 128, .f16, .init(layout: .hnd)); f.strided = true; out.append(f)
    // 10. Scale options.
    out.append(make(999, (4, 4), 128, .f16, .init(smScale: 0.05, positionEncoding: .ropeLlama(scale: 2, theta: 5e5))))
    out.append(make(127, (8, 4), 256, .bf16, .init(smScale: 0.3, logitsSoftCap: 30, layout: .hnd)))
    // 11. The public entry point (library-allocated outputs and workspace).
    f = make(4096, (4, 8), 128, .f16, .init()); f.publicAPI = true; out.append(f)
    f = make(127, (8, 4), 64, .bf16, .init(positionEncoding: .ropeLlama(), layout: .hnd)); f.publicAPI = true; out.append(f)
    // 12. FP8 K/V (issue 12) on the CUDA-core kernel: both formats, every head dim and group, the
    // variants, scales, kv_len 0 / 1 / 32789, forced splits, the public API.
    func fp8(_ kvd: DType, _ kv: Int, _ g: (Int, Int), _ d: Int, _ dt: DType, _ o: AttentionOptions, chunks: Int? = nil,
             api: Bool = false) {
        var c = make(kv, g, d, dt, o)
        c.kvDType = kvd
        c.numChunks = chunks
        c.publicAPI = api
        if c.options.kScale == 1 && kv % 2 == 1 { (c.options.kScale, c.options.vScale) = (0.37, 2.5) }
        out.append(c)
    }
    for kvd in [DType.e4m3, .e5m2] {
        for (n, d) in [64, 128, 256].enumerated() {
            fp8(kvd, [999, 4096, 17][n], groups[n * 2 % groups.count], d, n == 1 ? .bf16 : .f16, .init(layout: n % 2 == 0 ? .nhd : .hnd))
        }
        fp8(kvd, 32789, (4, 8), 128, .f16, .init())
        fp8(kvd, 999, (8, 4), 128, .bf16, .init(positionEncoding: .ropeLlama(), logitsSoftCap: 30, layout: .hnd))
        fp8(kvd, 127, (1, 4), 64, .f16, .init(positionEncoding: .alibi, windowLeft: 13))
        fp8(kvd, 1, (4, 4), 128, .f16, .init())
        fp8(kvd, 0, (4, 4), 128, .bf16, .init())
        fp8(kvd, 4095, (4, 8), 128, .f16, .init(kScale: 4, vScale: 0.125), chunks: 7)
        fp8(kvd, 999, (16, 2), 256, .bf16, .init(positionEncoding: .ropeLlama()), api: true)
    }
    return out
}

/// Random normal values (never zeros) rounded to `dtype` once: the exact inputs the GPU sees.
private func randomValues(_ n: Int, _ dtype: DType, _ rng: inout SeededRNG) -> [Float] {
    (0..<n).map { _ in dtype.roundTrip(rng.normal()) }
}

/// A device tensor viewing `values` (row-major in `shape`) inside a larger NaN-filled buffer:
/// element `idx` lives at `offset + Σ idx·strides`.
private func stridedDeviceTensor(_ values: [Float], shape: [Int], strides: [Int], offset: Int, bufferElements: Int,
                                 dtype: DType, device: Device) throws -> Tensor {
    var host = [Float](repeating: .nan, count: bufferElements)
    var idx = [Int](repeating: 0, count: shape.count)
    for v in values {
        host[offset + zip(idx, strides).reduce(0) { $0 + $1.0 * $1.1 }] = v
        var d = shape.count - 1
        while d >= 0 {
            idx[d] += 1
            if idx[d] < shape[d] { break }
            idx[d] = 0
            d -= 1
        }
    }
    let buf = try Tensor.host(host, shape: [bufferElements], dtype: dtype).toDevice(device)
    guard case .device(let b, _) = buf.storage else { fatalError("not a device tensor") }
    return Tensor(storage: .device(b, byteOffset: offset * dtype.byteSize), shape: shape, strides: strides, dtype: dtype)
}

func runDecodeCheck(_ c: DecodeCheckConfig, device: Device, stream: Stream, rng: inout SeededRNG) throws -> String? {
    let (hq, hkv, d, kv, dt) = (c.numQOHeads, c.numKVHeads, c.headDim, c.kvLen, c.dtype)
    let kvShape = c.options.layout == .nhd ? [kv, hkv, d] : [hkv, kv, d]
    let qv = randomValues(hq * d, dt, &rng)
    let kvd = c.kvDType ?? dt
    let kvv = randomValues(kv * hkv * d, kvd, &rng), vv = randomValues(kv * hkv * d, kvd, &rng)
    let q: Tensor, k: Tensor, v: Tensor
    if c.strided {
        // q rows 2·D apart; K/V inside one buffer per layout:
        //  NHD: a fused [kv, Hq + 2·Hkv, D] QKV projection (K at head Hq, V at head Hq + Hkv);
        //  HND: a [2, Hkv, kv + 40, D] cache with spare capacity (K in half 0, V in half 1).
        q = try stridedDeviceTensor(qv, shape: [hq, d], strides: [2 * d, 1], offset: 8, bufferElements: 2 * hq * d + 8, dtype: dt, device: device)
        if c.options.layout == .nhd {
            let row = (hq + 2 * hkv) * d, total = max(kv, 1) * row
            k = try stridedDeviceTensor(kvv, shape: kvShape, strides: [row, d, 1], offset: hq * d, bufferElements: total, dtype: dt, device: device)
            v = try stridedDeviceTensor(vv, shape: kvShape, strides: [row, d, 1], offset: (hq + hkv) * d, bufferElements: total, dtype: dt, device: device)
        } else {
            let cap = kv + 40, half = hkv * cap * d
            k = try stridedDeviceTensor(kvv, shape: kvShape, strides: [cap * d, d, 1], offset: 0, bufferElements: 2 * half, dtype: dt, device: device)
            v = try stridedDeviceTensor(vv, shape: kvShape, strides: [cap * d, d, 1], offset: half, bufferElements: 2 * half, dtype: dt, device: device)
        }
    } else {
        q = try Tensor.host(qv, shape: [hq, d], dtype: dt).toDevice(device)
        k = try Tensor.host(kvv, shape: kvShape, dtype: kvd).toDevice(device)
        v = try Tensor.host(vv, shape: kvShape, dtype: kvd).toDevice(device)
    }

    let got: [Float], gotLSE: [Float]
    if c.publicAPI {
        let r = try singleDecode(q: q, k: k, v: v, options: c.options, returnLSE: true, backend: .cuda(stream))
        try stream.synchronize()
        got = try r.output.toFloats()
        gotLSE = try r.lse!.toFloats()
    } else {
        let out = try Tensor.empty(shape: [hq, d], dtype: dt, device: device)
        let lse = try Tensor.empty(shape: [hq], dtype: .f32, device: device)
        try out.poison(stream: stream)
        try lse.poison(stream: stream)
        let launch = try CUDADecodeLaunch(q: q, k: k, v: v, options: c.options, device: device, numChunks: c.numChunks,
                                          stages: c.stages ?? DecodeSpec.defaultStages,
                                          keysPerSlot: c.keysPerSlot ?? DecodeSpec.defaultKeysPerSlot)
        // The library's workspace, NaN-filled: every partial must be written.
        let workspace = try launch.makeWorkspace(stream: stream)
        if let workspace { try workspace.fill(word: 0x7FC0_0000, stream: stream) }
        // Twice on one workspace (as a caller reusing it would).
        try launch.run(q: q, k: k, v: v, out: out, lse: lse, workspace: workspace, stream: stream)
        try out.poison(stream: stream)
        try lse.poison(stream: stream)
        try launch.run(q: q, k: k, v: v, out: out, lse: lse, workspace: workspace, stream: stream)
        try stream.synchronize()
        got = try out.toFloats()
        gotLSE = try lse.toFloats()
    }

    let ref = try ReferenceAttention.decode(q: qv, k: kvv, v: vv, kvLen: kv, numQOHeads: hq, numKVHeads: hkv, headDim: d,
                                            options: c.options)
    let tol = Tolerance.attention(dtype: dt, prefill: false, options: c.options)
    if let m = tol.compare(got, ref.output) { return "output (\(tol)): \(m)" }
    if c.options.positionEncoding != .alibi, let m = tol.compare(gotLSE, ref.lse) { return "lse (\(tol)): \(m)" }
    return nil
}
