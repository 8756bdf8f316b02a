import FlashInferCUDA

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rotary position embedding (`flashinfer.rope`: `apply_rope_pos_ids`, `apply_rope`,
/// `apply_llama31_rope*`, `apply_rope_with_cos_sin_cache`, each also in place). The CPU backend
/// runs the Float64 reference; the CUDA backend `ops/rope.cuh` (f16/bf16; sin/cos in Float32 of
/// `float(pos) · freq`, the frequencies computed here in Float64, as upstream's Float32 math up
/// to the frequencies' rounding).
///
/// Pair `i` (of `rotaryDim / 2`) rotates by `pos · freq_i`, `freq_i = theta^(−2i / rotaryDim)`
/// then scaled (`RopeScaling`). Non-interleaved (NeoX, rotate-half): element `d < rotaryDim/2`
/// pairs with `d + rotaryDim/2`; interleaved (GPT-J): `2i` pairs with `2i + 1`. Each pair `(a, b)`
/// becomes `(a cos − b sin, b cos + a sin)`; elements from `rotaryDim` on are copied.

/// How the frequencies are scaled (SEMANTICS.md §2.9).
public enum RopeScaling: Sendable, Equatable {
    /// Position interpolation: `freq / scale` (`rope_scale`; 1 is plain RoPE).
    case linear(scale: Double)
    /// Llama 3.1: with `a = oldContextLength / (2π (high − low))`, `b = −1 / (high/low − 1)`,
    /// `s = clamp(freq·a + b, 0, 1)`, `freq' = (1 − s)·freq/scale + s·freq`: short wavelengths
    /// (`< oldContextLength / high`) keep their frequency, long ones (`> oldContextLength / low`)
    /// are divided by `scale`. Upstream's defaults: scale 8, low 1, high 4, old context 8192.
    case llama31(scale: Double, lowFreqFactor: Double, highFreqFactor: Double, oldContextLength: Double)

    public static let llama31Default = RopeScaling.llama31(scale: 8, lowFreqFactor: 1, highFreqFactor: 4, oldContextLength: 8192)

    func apply(_ freq: Double) -> Double {
        switch self {
        case .linear(let scale): return freq / scale
        case .llama31(let scale, let low, let high, let old):
            let a = old / (2 * Double.pi * (high - low)), b = -1 / (high / low - 1)
            let s = min(max(freq * a + b, 0), 1)
            return (1 - s) * freq / scale + s * freq
        }
    }
}

/// The RoPE options upstream's functions take.
public struct RopeOptions: Sendable, Equatable {
    /// Rotated dimensions (even, ≤ head_dim); nil = head_dim.
    public var rotaryDim: Int?
    /// GPT-J pairs `(2i, 2i+1)` when true; NeoX halves when false (upstream's default).
    public var interleave: Bool
    /// `rope_theta` (upstream's default 1e4; Llama 3.1's 5e5).
    public var theta: Double
    public var scaling: RopeScaling

    public init(rotaryDim: Int? = nil, interleave: Bool = false, theta: Double = 1e4, scaling: RopeScaling = .linear(scale: 1)) {
        self.rotaryDim = rotaryDim
        self.interleave = interleave
        self.theta = theta
        self.scaling = scaling
    }

    /// The scaled frequency of each of the `rotaryDim / 2` pairs.
    public func frequencies(rotaryDim: Int) -> [Double] {
        (0..<(rotaryDim / 2)).map { i in scaling.apply(pow(theta, -2 * Double(i) / Double(rotaryDim))) }
    }
}

enum RopeReference {
    /// One head vector rotated to position `pos`.
    static func rotate(_ x: [Double], pos: Double, freqs: [Double], interleave: Bool) -> [Double] {
        rotate(x, cos: freqs.map { cos(pos * $0) }, sin: freqs.map { sin(pos * $0) }, interleave: interleave)
    }

    /// One head vector with pair `i` rotated by the angle of `(cos[i], sin[i])`; the elements
    /// past the `2 · cos.count` rotary dims are copied.
    static func rotate(_ x: [Double], cos c: [Double], sin s: [Double], interleave: Bool) -> [Double] {
        var out = x
        let half = c.count
        for i in 0..<half {
            let (ia, ib) = interleave ? (2 * i, 2 * i + 1) : (i, i + half)
            out[ia] = x[ia] * c[i] - x[ib] * s[i]
            out[ib] = x[ib] * c[i] + x[ia] * s[i]
        }
        return out
    }
}

/// Where a RoPE call's angles come from.
enum RopeAngles {
    /// `pos · freq_i`, the `rotaryDim / 2` scaled frequencies (`RopeOptions.frequencies`).
    case frequencies([Double])
    /// `cos = cache[pos, i]`, `sin = cache[pos, rotaryDim/2 + i]`: `[maxPosition, rotaryDim]` f32.
    case cache(Tensor)
}

/// The positions of a RoPE call's rows already in device memory (upstream's CUDA `pos_ids` /
/// `positions` tensors, or `indptr` + `offsets`), read by the kernel when it runs (CUDA backend
/// only): nothing is uploaded and nothing waits for the host, so the call can be captured into a
/// CUDA graph whose replays read what the buffers hold then. As upstream, the host never reads
/// them, so they are **not validated** before the launch: a frequency-form rotation takes any
/// position; with a cos/sin cache, a position outside the cache rotates its row by NaN (never a
/// read outside the cache); a ragged `indptr` that is not monotonic picks some request per row
/// (the kernel's binary search always ends). The buffers are borrowed for the call.
public enum DevicePositions: Sendable {
    /// Row `t` at `positions[t]`: `nnz` Int32 values, or Int64 ones with `int64: true` (the
    /// `positions` tensor vLLM and SGLang pass, `torch.long`).
    case perRow(DeviceBuffer, int64: Bool)
    /// Ragged rows (`apply_rope`'s form): Int32 `indptr [batchSize + 1]` and `offsets [batchSize]`;
    /// row `indptr[b] + j` at position `offsets[b] + j`. Rows outside
    /// `indptr[0] ..< indptr[batchSize]` are not written (as upstream's per-request kernel).
    case ragged(indptr: DeviceBuffer, offsets: DeviceBuffer, batchSize: Int)
}

/// A RoPE call's positions: host values (validated; the CUDA backend uploads them) or the caller's
/// device memory.
enum RopeRowPositions {
    case host([Int32])
    case device(DevicePositions)
}

/// A validated RoPE: `q [nnz, Hq, D]`, `k [nnz, Hk, D]` into `qOut`, `kOut` (the same tensors in
/// place), row `t` at its position.
struct RopeCall {
    var q: Tensor
    var k: Tensor
    var qOut: Tensor
    var kOut: Tensor
    var positions: RopeRowPositions
    var rotaryDim: Int
    var interleave: Bool
    var angles: RopeAngles
}

/// q and k `[nnz, H, D]` of one float dtype family, `nnz` rows and one head dim; the rotary dim
/// even and ≤ D; every tensor where the backend computes.
private func validateRopeTensors(q: Tensor, k: Tensor, positions: RopeRowPositions, rotaryDim: Int?, out: (q: Tensor, k: Tensor)?,
                                 backend: Backend, positionsName: String = "pos_ids") throws(FlashInferError) -> Int {
    // (`positionsName` labels per-row positions; ragged ones are named indptr / offsets.)
    // One tensor at a time, no array built (a per-layer call).
    let placement = backend.implementation.placement
    try checkPlacement("q", q, placement)
    try checkPlacement("k", k, placement)
    try checkPlacement("q_out", out?.q, placement)
    try checkPlacement("k_out", out?.k, placement)
    guard q.rank == 3 else { throw .rank(tensor: "q", expected: 3, got: q.rank) }
    guard k.rank == 3 else { throw .rank(tensor: "k", expected: 3, got: k.rank) }
    let d = q.shape[2]
    guard k.shape[0] == q.shape[0] else { throw .shape(tensor: "k", axis: 0, name: "nnz", expected: "\(q.shape[0]) (q's)", got: k.shape[0]) }
    guard k.shape[2] == d else { throw .shape(tensor: "k", axis: 2, name: "head_dim", expected: "\(d) (q's)", got: k.shape[2]) }
    switch positions {
    case .host(let p):
        guard p.count == q.shape[0] else { throw .shape(tensor: positionsName, axis: 0, name: "nnz", expected: "\(q.shape[0]) (q's)", got: p.count) }
    case .device(.perRow(let b, let int64)):
        try checkDeviceValues(b, name: positionsName, count: q.shape[0], elementBytes: int64 ? 8 : 4, placement: placement)
    case .device(.ragged(let indptr, let offsets, let batch)):
        guard batch >= 0, batch < Int(Int32.max) else { throw .option(name: "batch_size", value: "\(batch)", rule: "must be in 0 ..< 2^31") }
        try checkDeviceValues(indptr, name: "indptr", count: batch + 1, elementBytes: 4, placement: placement)
        try checkDeviceValues(offsets, name: "offsets", count: batch, elementBytes: 4, placement: placement)
    }
    func floating(_ n: String, _ t: Tensor?) throws(FlashInferError) {
        guard let t, !(t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16) else { return }
        throw .dtype(tensor: n, expected: "float32, float16 or bfloat16", got: t.dtype)
    }
    try floating("q", q)
    try floating("k", k)
    try floating("q_out", out?.q)
    try floating("k_out", out?.k)
    func like(_ n: String, _ o: Tensor, _ t: Tensor) throws(FlashInferError) {
        guard o.shape == t.shape else { throw .shape(tensor: n, axis: 0, name: "shape \(o.shape)", expected: "\(t.shape)", got: o.shape.first ?? 0) }
        guard o.dtype == t.dtype else { throw .dtype(tensor: n, expected: t.dtype.rawValue, got: o.dtype) }
    }
    if let out {
        try like("q_out", out.q, q)
        try like("k_out", out.k, k)
    }
    let rd = rotaryDim ?? d
    guard rd >= 2, rd % 2 == 0, rd <= d else { throw .option(name: "rotary_dim", value: "\(rd)", rule: "must be even and in 2...\(d) (head_dim)") }
    return rd
}

private func validateRopeOptions(_ options: RopeOptions) throws(FlashInferError) {
    guard options.theta > 0, options.theta.isFinite else { throw .option(name: "rope_theta", value: "\(options.theta)", rule: "must be finite and > 0") }
    switch options.scaling {
    case .linear(let s):
        guard s > 0, s.isFinite else { throw .option(name: "rope_scale", value: "\(s)", rule: "must be finite and > 0") }
    case .llama31(let s, let low, let high, let old):
        guard s > 0, s.isFinite else { throw .option(name: "rope_scale", value: "\(s)", rule: "must be finite and > 0") }
        guard low > 0, high > low else { throw .option(name: "high_freq_factor", value: "\(high)", rule: "must exceed low_freq_factor \(low) > 0") }
        guard old > 0 else { throw .option(name: "old_context_len", value: "\(old)", rule: "must be > 0") }
    }
}

/// Validates and runs a frequency-form RoPE into `out` (new tensors when nil; `q`, `k` in place).
private func ropeFrequencies(q: Tensor, k: Tensor, positions: RopeRowPositions, options: RopeOptions, out: (q: Tensor, k: Tensor)?,
                             inPlace: Bool, backend: Backend) throws(FlashInferError) -> (q: Tensor, k: Tensor) {
    let rd = try validateRopeTensors(q: q, k: k, positions: positions, rotaryDim: options.rotaryDim, out: out, backend: backend)
    try validateRopeOptions(options)
    let o: (q: Tensor, k: Tensor)
    if inPlace {
        o = (q, k)
    } else if let out {
        o = out
    } else {
        o = (try opOutput(nil, shape: q.shape, dtype: q.dtype, backend: backend), try opOutput(nil, shape: k.shape, dtype: k.dtype, backend: backend))
    }
    try backend.implementation.rope(RopeCall(q: q, k: k, qOut: o.q, kOut: o.k, positions: positions, rotaryDim: rd,
                                             interleave: options.interleave, angles: .frequencies(options.frequencies(rotaryDim: rd))))
    return o
}

/// `apply_rope_pos_ids` (and, with `.llama31`, `apply_llama31_rope_pos_ids`): `q [nnz, Hq, D]` and
/// `k [nnz, Hk, D]`, row `t` at position `posIds[t]`; returns the rotated `(q, k)` in their dtypes,
/// in `out` when given (new tensors otherwise).
/// - Throws: `.rank`/`.shape` for mismatched tensors or `posIds`; `.option` for an odd or too large
///   `rotaryDim`, a non-positive theta or scale, or Llama 3.1 factors with `high ≤ low`; on CUDA
///   also `.dtype` for f32 and `.strides` for a non-contiguous last axis.
@discardableResult
public func applyRopePosIds(q: Tensor, k: Tensor, posIds: [Int32], options: RopeOptions = .init(), out: (q: Tensor, k: Tensor)? = nil,
                            backend: Backend = .cpu) throws(FlashInferError) -> (q: Tensor, k: Tensor) {
    try ropeFrequencies(q: q, k: k, positions: .host(posIds), options: options, out: out, inPlace: false, backend: backend)
}

/// `apply_rope_pos_ids_inplace` (and `apply_llama31_rope_pos_ids_inplace`): `applyRopePosIds`
/// writing `q` and `k` themselves.
public func applyRopePosIdsInPlace(q: Tensor, k: Tensor, posIds: [Int32], options: RopeOptions = .init(),
                                   backend: Backend = .cpu) throws(FlashInferError) {
    _ = try ropeFrequencies(q: q, k: k, positions: .host(posIds), options: options, out: nil, inPlace: true, backend: backend)
}

/// The positions of ragged rows: request `b` owns rows `indptr[b] ..< indptr[b+1]`, row
/// `indptr[b] + j` at `offsets[b] + j`.
private func raggedPositions(q: Tensor, indptr: [Int32], offsets: [Int32]) throws(FlashInferError) -> [Int32] {
    guard q.rank == 3 else { throw .rank(tensor: "q", expected: 3, got: q.rank) }
    try validateSegmentIndptr(indptr, name: "indptr", total: q.shape[0], totalName: "q")
    guard offsets.count == indptr.count - 1 else {
        throw .shape(tensor: "offsets", axis: 0, name: "batch_size", expected: "\(indptr.count - 1) (len(indptr) − 1)", got: offsets.count)
    }
    var pos: [Int32] = []
    pos.reserveCapacity(q.shape[0])
    for b in 0..<offsets.count {
        for j in 0..<(indptr[b + 1] - indptr[b]) { pos.append(offsets[b] + j) }
    }
    return pos
}

/// `apply_rope` (and `apply_llama31_rope`): ragged rows, request `b` owning rows
/// `indptr[b] ..< indptr[b+1]`, row `indptr[b] + j` at position `offsets[b] + j`.
/// - Throws: `.indices`/`.shape` for a bad `indptr` or an `offsets` of the wrong length; as
///   `applyRopePosIds` otherwise.
@discardableResult
public func applyRope(q: Tensor, k: Tensor, indptr: [Int32], offsets: [Int32], options: RopeOptions = .init(),
                      out: (q: Tensor, k: Tensor)? = nil, backend: Backend = .cpu) throws(FlashInferError) -> (q: Tensor, k: Tensor) {
    try applyRopePosIds(q: q, k: k, posIds: try raggedPositions(q: q, indptr: indptr, offsets: offsets), options: options, out: out,
                        backend: backend)
}

/// `apply_rope_inplace` (and `apply_llama31_rope_inplace`): `applyRope` writing `q` and `k`.
public func applyRopeInPlace(q: Tensor, k: Tensor, indptr: [Int32], offsets: [Int32], options: RopeOptions = .init(),
                             backend: Backend = .cpu) throws(FlashInferError) {
    try applyRopePosIdsInPlace(q: q, k: k, posIds: try raggedPositions(q: q, indptr: indptr, offsets: offsets), options: options,
                               backend: backend)
}

/// `apply_rope_pos_ids` / `apply_rope` (and the Llama 3.1 forms) with the positions already in
/// device memory (`DevicePositions`: read by the kernel, not validated on the host): returns the
/// rotated `(q, k)`, in `out` when given. CUDA backend only (the CPU backend throws `.placement`).
/// Out of place with `.ragged` positions, rows outside every request are not written.
/// - Throws: as `applyRopePosIds`; `.placement`/`.deviceMismatch`/`.shape` for buffers off the
///   stream's device or shorter than the rows need; on CUDA `.shape` for a rotary dim above 512.
@discardableResult
public func applyRope(q: Tensor, k: Tensor, positions: DevicePositions, options: RopeOptions = .init(), out: (q: Tensor, k: Tensor)? = nil,
                      backend: Backend) throws(FlashInferError) -> (q: Tensor, k: Tensor) {
    try ropeFrequencies(q: q, k: k, positions: .device(positions), options: options, out: out, inPlace: false, backend: backend)
}

/// `applyRope(q:k:positions:)` writing `q` and `k` themselves (`apply_rope_pos_ids_inplace`,
/// `apply_rope_inplace` and the Llama 3.1 forms with device positions).
public func applyRopeInPlace(q: Tensor, k: Tensor, positions: DevicePositions, options: RopeOptions = .init(),
                             backend: Backend) throws(FlashInferError) {
    _ = try ropeFrequencies(q: q, k: k, positions: .device(positions), options: options, out: nil, inPlace: true, backend: backend)
}

/// `[nnz, H · headSize]` viewed as `[nnz, H, headSize]` (no copy).
private func headsView(_ t: Tensor, name: String, headSize: Int) throws(FlashInferError) -> Tensor {
    guard t.rank == 2 else { throw .rank(tensor: name, expected: 2, got: t.rank) }
    guard headSize >= 1, t.shape[1] % headSize == 0 else {
        throw .shape(tensor: name, axis: 1, name: "num_heads · head_size", expected: "a multiple of head_size \(headSize)", got: t.shape[1])
    }
    return Tensor(storage: t.storage, shape: [t.shape[0], t.shape[1] / headSize, headSize],
                  strides: [t.strides[0], headSize * t.strides[1], t.strides[1]], dtype: t.dtype, offset: t.offset)
}

private func ropeCache(positions: RopeRowPositions, query: Tensor, key: Tensor, headSize: Int, cosSinCache: Tensor, isNeox: Bool,
                       inPlace: Bool, backend: Backend) throws(FlashInferError) -> (query: Tensor, key: Tensor) {
    try checkPlacement([("cos_sin_cache", cosSinCache)], backend.implementation.placement)
    let q = try headsView(query, name: "query", headSize: headSize), k = try headsView(key, name: "key", headSize: headSize)
    guard cosSinCache.rank == 2 else { throw .rank(tensor: "cos_sin_cache", expected: 2, got: cosSinCache.rank) }
    guard cosSinCache.dtype == .f32 else { throw .dtype(tensor: "cos_sin_cache", expected: "float32", got: cosSinCache.dtype) }
    guard cosSinCache.shape[1] <= 1 || cosSinCache.strides[1] == 1 else {
        throw .strides(tensor: "cos_sin_cache", strides: cosSinCache.strides, rule: "the last axis must be contiguous")
    }
    let rd = try validateRopeTensors(q: q, k: k, positions: positions, rotaryDim: cosSinCache.shape[1], out: nil, backend: backend,
                                     positionsName: "positions")
    let maxPos = cosSinCache.shape[0]
    if case .host(let positions) = positions, let i = positions.firstIndex(where: { $0 < 0 || Int($0) >= maxPos }) {
        throw .indices(array: "positions", position: i, rule: "\(positions[i]) is outside the cache's 0..<\(maxPos) positions")
    }
    let o = inPlace ? (q: q, k: k) : (q: try opOutput(nil, shape: q.shape, dtype: q.dtype, backend: backend),
                                      k: try opOutput(nil, shape: k.shape, dtype: k.dtype, backend: backend))
    try backend.implementation.rope(RopeCall(q: q, k: k, qOut: o.q, kOut: o.k, positions: positions, rotaryDim: rd,
                                             interleave: !isNeox, angles: .cache(cosSinCache)))
    return inPlace ? (query, key) : (o.q.reshaped(query.shape), o.k.reshaped(key.shape))
}

/// `apply_rope_with_cos_sin_cache` (the vLLM/SGLang form): `query [nnz, Hq · headSize]`,
/// `key [nnz, Hk · headSize]`, row `t` rotated by `cos = cosSinCache[positions[t], i]`,
/// `sin = cosSinCache[positions[t], rd/2 + i]` for pair `i`, where `cosSinCache` is
/// `[maxPosition, rd]` float32 and `rd` the rotary dim; `isNeox` pairs `(i, i + rd/2)` (rotate-half),
/// else `(2i, 2i + 1)`. Returns new tensors of the inputs' shapes.
/// - Throws: `.shape` when `headSize` does not divide the last axes; `.dtype` for a non-f32 cache;
///   `.indices` for a position outside the cache; `.option` for an odd rotary dim or one > headSize.
public func applyRopeWithCosSinCache(positions: [Int32], query: Tensor, key: Tensor, headSize: Int, cosSinCache: Tensor,
                                     isNeox: Bool = true, backend: Backend = .cpu) throws(FlashInferError) -> (query: Tensor, key: Tensor) {
    try ropeCache(positions: .host(positions), query: query, key: key, headSize: headSize, cosSinCache: cosSinCache, isNeox: isNeox,
                  inPlace: false, backend: backend)
}

/// `apply_rope_with_cos_sin_cache_inplace`: `applyRopeWithCosSinCache` writing `query` and `key`.
public func applyRopeWithCosSinCacheInPlace(positions: [Int32], query: Tensor, key: Tensor, headSize: Int, cosSinCache: Tensor,
                                            isNeox: Bool = true, backend: Backend = .cpu) throws(FlashInferError) {
    _ = try ropeCache(positions: .host(positions), query: query, key: key, headSize: headSize, cosSinCache: cosSinCache, isNeox: isNeox,
                      inPlace: true, backend: backend)
}

/// `apply_rope_with_cos_sin_cache_inplace` with the positions already in device memory
/// (`DevicePositions`: Int64 for vLLM's and SGLang's `positions`; read by the kernel, not validated
/// on the host — a position outside the cache gives NaN rows): writes `query` and `key`, with no
/// upload or host wait (graph-capturable). CUDA backend only.
public func applyRopeWithCosSinCacheInPlace(positions: DevicePositions, query: Tensor, key: Tensor, headSize: Int, cosSinCache: Tensor,
                                            isNeox: Bool = true, backend: Backend) throws(FlashInferError) {
    _ = try ropeCache(positions: .device(positions), query: query, key: key, headSize: headSize, cosSinCache: cosSinCache,
                      isNeox: isNeox, inPlace: true, backend: backend)
}

/// `apply_rope_with_cos_sin_cache` with device positions: new tensors of the inputs' shapes.
public func applyRopeWithCosSinCache(positions: DevicePositions, query: Tensor, key: Tensor, headSize: Int, cosSinCache: Tensor,
                                     isNeox: Bool = true, backend: Backend) throws(FlashInferError) -> (query: Tensor, key: Tensor) {
    try ropeCache(positions: .device(positions), query: query, key: key, headSize: headSize, cosSinCache: cosSinCache, isNeox: isNeox,
                  inPlace: false, backend: backend)
}

/// The CPU backend's RoPE: the Float64 reference (angles `pos · freq` in Float64, or the cache's
/// Float32 cos/sin), written into the outputs after both inputs are read.
func ropeOnHost(_ c: RopeCall) throws(FlashInferError) {
    guard case .host(let positions) = c.positions else {  // validation refuses device positions on the CPU
        throw .placement(tensor: "positions", expected: "host (positions in device memory need the CUDA backend)")
    }
    let d = c.q.shape[2], half = c.rotaryDim / 2
    let cache = try c.angles.cacheValues()
    let cacheWidth = c.rotaryDim
    func run(_ t: Tensor) throws(FlashInferError) -> [Float] {
        let x = try hostDoubles(t)
        var out: [Float] = []
        out.reserveCapacity(x.count)
        for row in 0..<(t.count / d) {
            let pos = positions[row / t.shape[1]]
            let (cs, sn): ([Double], [Double])
            switch c.angles {
            case .frequencies(let f): (cs, sn) = (f.map { cos(Double(pos) * $0) }, f.map { sin(Double(pos) * $0) })
            case .cache:
                let base = Int(pos) * cacheWidth
                (cs, sn) = ((0..<half).map { Double(cache[base + $0]) }, (0..<half).map { Double(cache[base + half + $0]) })
            }
            out += RopeReference.rotate(Array(x[(row * d)..<((row + 1) * d)]), cos: cs, sin: sn, interleave: c.interleave).map { Float($0) }
        }
        return out
    }
    let q = try run(c.q), k = try run(c.k)
    try writeHost(c.qOut, q)
    try writeHost(c.kOut, k)
}

extension RopeAngles {
    /// The cache's values, row-major `[maxPosition, rd]` (empty for the frequency form).
    func cacheValues() throws(FlashInferError) -> [Float] {
        guard case .cache(let t) = self else { return [] }
        return try FlashInferError.wrap { () throws(CUDAError) -> [Float] in try t.toFloats() }
    }
}
