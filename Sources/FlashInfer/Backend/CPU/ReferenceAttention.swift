import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the CPU reference rejected its inputs.
public enum ReferenceError: Error, Equatable, CustomStringConvertible {
    /// A head count or the head dimension is zero or negative.
    case nonPositive(name: String, value: Int)
    /// `qoLen` or `kvLen` is negative.
    case negativeLength(name: String, value: Int)
    /// GQA needs `numQOHeads` to be a multiple of `numKVHeads`.
    case headsNotDivisible(numQOHeads: Int, numKVHeads: Int)
    /// A causal mask needs `qoLen ≤ kvLen` (bottom-right alignment).
    case causalQueryLongerThanKV(qoLen: Int, kvLen: Int)
    /// An array's element count does not match the shape (`tensor` is "q", "k" or "v").
    case countMismatch(tensor: String, expected: Int, actual: Int)
    /// Rotate-half RoPE needs an even head dimension.
    case oddHeadDimForRoPE(headDim: Int)
    /// `windowLeft` must be ≥ 0, or −1 to disable the window.
    case invalidWindow(windowLeft: Int)
    /// A custom mask's size does not match `qoLen · kvLen` (`form` is "bools" or "packed"; packed
    /// masks need `ceil(qoLen · kvLen / 8)` bytes).
    case maskCountMismatch(form: String, expected: Int, actual: Int)
    /// `kScale` / `vScale` must be finite and > 0.
    case invalidScale(name: String, value: Float)

    public var description: String {
        switch self {
        case let .nonPositive(name, value):
            "\(name) must be positive, got \(value)"
        case let .negativeLength(name, value):
            "\(name) must be ≥ 0, got \(value)"
        case let .headsNotDivisible(q, kv):
            "numQOHeads (\(q)) must be a multiple of numKVHeads (\(kv))"
        case let .causalQueryLongerThanKV(qo, kv):
            "causal attention needs qoLen ≤ kvLen, got qoLen \(qo) > kvLen \(kv)"
        case let .countMismatch(tensor, expected, actual):
            "\(tensor) has \(actual) elements, the shape needs \(expected)"
        case let .oddHeadDimForRoPE(d):
            "RoPE (rotate-half) needs an even head dim, got \(d)"
        case let .invalidWindow(w):
            "windowLeft must be ≥ 0 or −1 (off), got \(w)"
        case let .maskCountMismatch(form, expected, actual):
            "custom mask (\(form)) has \(actual) \(form == "packed" ? "bytes" : "elements"), qoLen · kvLen needs \(expected)"
        case let .invalidScale(name, value):
            "\(name) must be finite and > 0, got \(value)"
        }
    }
}

/// The CPU reference backend: straightforward attention in `Double`, the oracle every kernel is
/// checked against. Semantics are upstream FlashInfer's (`docs/Semantics.md` §2.1):
///
/// - **GQA**: query head `h` reads kv head `h / (Hq/Hkv)`.
/// - **Logit** of query `i`, key `j`: `s = sm_scale · q_i·k_j`; with a soft cap `c > 0`,
///   `s = c · tanh(s / c)`; with ALiBi, `s += slope[h] · (j − qPos_i)`, added *after* the soft cap
///   (a rare combination; this is our documented choice).
/// - **Positions**: `qPos_i = i + kvLen − qoLen` (bottom-right), key position = its index.
///   With ALiBi the bias therefore uses absolute positions; upstream kernels use a chunk-relative
///   query index, which shifts every logit of a row by the same constant: outputs agree, LSEs don't.
/// - **RoPE** (`.ropeLlama(scale, theta)`): q and k are rotated (rotate-half, over the whole head
///   dim) at their positions before the dot product: `freq_i = theta^(−2i/D) / scale`,
///   `out[d] = x[d]·cos + (d < D/2 ? −x[d+D/2] : x[d−D/2])·sin`. Angles are computed in `Double`.
/// - **Masks**: causal keeps `j ≤ qPos_i`; a window keeps `j ≥ qPos_i − windowLeft`. Both keep a
///   contiguous key range, which the loops walk directly. A **custom mask** (`customMask:`, upstream's
///   `custom_mask`: bit `i·kvLen + j`, `true` keeps) replaces the causal mask and is combined with the
///   window, as upstream's `DefaultAttention::LogitsMask` does.
/// - **FP8 scales** (`options.kScale`, `options.vScale`, upstream's `k_scale` / `v_scale`): the logit
///   scale is `sm_scale · k_scale` (before the soft cap) and the output is multiplied by `v_scale`;
///   the LSE is that of the scaled logits. K and V are read exactly as given: FP8 data decoded with
///   `DType.decode` / `toFloats()` is exact.
/// - **Softmax** is two-pass per (row, head): logits of the kept keys and their max `m`, then
///   `p_j = exp(s_j − m)`, `output = Σ p_j v_j / Σ p_j`, `lse = (m + ln Σ p_j) · log2(e)`.
///   The LSE is **base 2**. A row with no kept keys (e.g. `kvLen == 0`) gives output 0 and
///   `lse = −inf`, never NaN.
///
/// Inputs are `Float`; all arithmetic is `Double`; results are rounded to `Float` once.
/// Work is spread over (row, head) pairs with `DispatchQueue.concurrentPerform`.
public enum ReferenceAttention {
    /// `output` is `[qoLen, Hq, D]` row-major; `lse` is `[qoLen, Hq]`, base 2.
    public struct Result: Sendable, Hashable {
        public var output: [Float]
        public var lse: [Float]

        public init(output: [Float], lse: [Float]) {
            self.output = output
            self.lse = lse
        }

        /// The state of one (row, head) pair, `index = row · Hq + head`.
        public func state(at index: Int) -> AttentionState {
            let d = lse.isEmpty ? 0 : output.count / lse.count
            return AttentionState(
                output: output[index * d..<(index + 1) * d].map(Double.init), lse: Double(lse[index]))
        }
    }

    /// Single-request prefill (or append): `q` is `[qoLen, Hq, D]`; `k`, `v` are `[kvLen, Hkv, D]`
    /// (`.nhd`) or `[Hkv, kvLen, D]` (`.hnd`).
    ///
    /// `rotatedRounding`: with RoPE, round the rotated q and k to this dtype before the dot
    /// product, as the tensor-core kernels do (they rotate in Float32 and store the result in the
    /// input dtype for the MMA; the CUDA-core decode keeps Float32). nil: exact rotation.
    ///
    /// `customMask`: the request's `qoLen × kvLen` mask (`true` keeps a key); it replaces
    /// `options.causal`. A row that keeps no key gives output 0 and LSE −inf.
    public static func prefill(
        q: [Float], k: [Float], v: [Float], qoLen: Int, kvLen: Int,
        numQOHeads: Int, numKVHeads: Int, headDim: Int, options: AttentionOptions,
        rotatedRounding: DType? = nil, customMask: CustomMask? = nil
    ) throws -> Result {
        try validate(
            q: q, k: k, v: v, qoLen: qoLen, kvLen: kvLen,
            numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, options: options,
            customMask: customMask)
        let mask = customMask?.bools(count: qoLen * kvLen)
        if let dtype = rotatedRounding, case let .ropeLlama(ropeScale, theta) = options.positionEncoding {
            // Rotate once in Double, round to the dtype, then attend without RoPE.
            let half = headDim / 2
            let freq = (0..<half).map { i in pow(Double(theta), -2.0 * Double(i) / Double(headDim)) / Double(ropeScale) }
            func rotated(_ x: [Float], position: (Int) -> Int) -> [Float] {
                var out = x
                for r in 0..<(x.count / headDim) {
                    let pos = Double(position(r))
                    let b = r * headDim
                    for i in 0..<half {
                        let (c, sn) = (cos(pos * freq[i]), sin(pos * freq[i]))
                        let (x1, x2) = (Double(x[b + i]), Double(x[b + i + half]))
                        out[b + i] = dtype.roundTrip(Float(x1 * c - x2 * sn))
                        out[b + i + half] = dtype.roundTrip(Float(x2 * c + x1 * sn))
                    }
                }
                return out
            }
            // q rows are [qoLen, Hq, D]: row r of the flat [·, D] view is query r / Hq at kvLen − qoLen + r / Hq.
            let qr = rotated(q) { r in kvLen - qoLen + r / numQOHeads }
            // k is [kvLen, Hkv, D] (NHD) or [Hkv, kvLen, D] (HND).
            let kr = rotated(k) { r in options.layout == .nhd ? r / numKVHeads : r % kvLen }
            var o = options
            o.positionEncoding = .none
            let problem = Problem(
                qoLen: qoLen, kvLen: kvLen, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, options: o,
                mask: mask)
            return problem.run(q: qr, k: kr, v: v)
        }
        let problem = Problem(
            qoLen: qoLen, kvLen: kvLen, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
            headDim: headDim, options: options, mask: mask)
        return problem.run(q: q, k: k, v: v)
    }

    /// Single-request decode: `q` is `[Hq, D]`; output `[Hq, D]`, lse `[Hq]`.
    /// The same as `prefill` with `qoLen = 1` (the query sits at position `kvLen − 1`);
    /// `options.causal` is irrelevant and ignored, the window applies.
    public static func decode(
        q: [Float], k: [Float], v: [Float], kvLen: Int,
        numQOHeads: Int, numKVHeads: Int, headDim: Int, options: AttentionOptions,
        rotatedRounding: DType? = nil
    ) throws -> Result {
        var opts = options
        opts.causal = false  // qoLen 1 sees every key anyway; avoids rejecting kvLen 0
        return try prefill(
            q: q, k: k, v: v, qoLen: 1, kvLen: kvLen,
            numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, options: opts,
            rotatedRounding: rotatedRounding)
    }

    static func validate(
        q: [Float], k: [Float], v: [Float], qoLen: Int, kvLen: Int,
        numQOHeads: Int, numKVHeads: Int, headDim: Int, options: AttentionOptions,
        customMask: CustomMask? = nil
    ) throws {
        for (name, value) in [("numQOHeads", numQOHeads), ("numKVHeads", numKVHeads), ("headDim", headDim)]
        where value <= 0 {
            throw ReferenceError.nonPositive(name: name, value: value)
        }
        for (name, value) in [("qoLen", qoLen), ("kvLen", kvLen)] where value < 0 {
            throw ReferenceError.negativeLength(name: name, value: value)
        }
        if numQOHeads % numKVHeads != 0 {
            throw ReferenceError.headsNotDivisible(numQOHeads: numQOHeads, numKVHeads: numKVHeads)
        }
        if options.causal && qoLen > kvLen && customMask == nil {
            throw ReferenceError.causalQueryLongerThanKV(qoLen: qoLen, kvLen: kvLen)
        }
        if options.windowLeft < -1 { throw ReferenceError.invalidWindow(windowLeft: options.windowLeft) }
        for (name, value) in [("kScale", options.kScale), ("vScale", options.vScale)] where !(value.isFinite && value > 0) {
            throw ReferenceError.invalidScale(name: name, value: value)
        }
        if let customMask {
            let (form, expected, actual) = customMask.sizeCheck(qoLen: qoLen, kvLen: kvLen)
            if expected != actual { throw ReferenceError.maskCountMismatch(form: form, expected: expected, actual: actual) }
        }
        if case .ropeLlama = options.positionEncoding, headDim % 2 != 0 {
            throw ReferenceError.oddHeadDimForRoPE(headDim: headDim)
        }
        let qCount = qoLen * numQOHeads * headDim
        let kvCount = kvLen * numKVHeads * headDim
        for (name, array, expected) in [("q", q, qCount), ("k", k, kvCount), ("v", v, kvCount)]
        where array.count != expected {
            throw ReferenceError.countMismatch(tensor: name, expected: expected, actual: array.count)
        }
    }
}

/// One validated reference problem: shapes, options, and the precomputed RoPE/ALiBi tables.
private struct Problem: Sendable {
    let qoLen: Int, kvLen: Int, numQOHeads: Int, numKVHeads: Int, headDim: Int
    let scale: Double  // sm_scale · k_scale
    let outputScale: Double  // v_scale
    let softCap: Double  // 0 = off
    let causal: Bool
    /// The custom mask `[qoLen, kvLen]` (`true` keeps), nil without one.
    let mask: [Bool]?
    let windowLeft: Int  // -1 = off
    /// RoPE inverse frequencies `[D/2]`, empty without RoPE.
    let ropeFreq: [Double]
    /// Key rotation tables `[kvLen, D/2]`, empty without RoPE.
    let keyCos: [Double], keySin: [Double]
    /// ALiBi slope per query head, empty without ALiBi.
    let slopes: [Double]
    /// Element offset of kv head `h`, and the stride between consecutive keys.
    let kvHeadStride: Int, kvTokenStride: Int

    init(qoLen: Int, kvLen: Int, numQOHeads: Int, numKVHeads: Int, headDim: Int, options: AttentionOptions, mask: [Bool]? = nil) {
        self.qoLen = qoLen
        self.kvLen = kvLen
        self.numQOHeads = numQOHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
        scale = Double(options.resolvedScale(headDim: headDim)) * Double(options.kScale)
        outputScale = Double(options.vScale)
        softCap = options.logitsSoftCap > 0 ? Double(options.logitsSoftCap) : 0
        causal = options.causal && mask == nil  // a custom mask replaces the causal mask
        self.mask = mask
        windowLeft = options.windowLeft
        switch options.layout {
        case .nhd: (kvHeadStride, kvTokenStride) = (headDim, numKVHeads * headDim)
        case .hnd: (kvHeadStride, kvTokenStride) = (kvLen * headDim, headDim)
        }
        if case let .ropeLlama(ropeScale, theta) = options.positionEncoding {
            let half = headDim / 2
            let freq = (0..<half).map { i in
                pow(Double(theta), -2.0 * Double(i) / Double(headDim)) / Double(ropeScale)
            }
            var c = [Double](repeating: 0, count: kvLen * half)
            var s = c
            for pos in 0..<kvLen {
                for i in 0..<half {
                    let angle = Double(pos) * freq[i]
                    c[pos * half + i] = cos(angle)
                    s[pos * half + i] = sin(angle)
                }
            }
            (ropeFreq, keyCos, keySin) = (freq, c, s)
        } else {
            (ropeFreq, keyCos, keySin) = ([], [], [])
        }
        slopes = options.positionEncoding == .alibi
            ? (0..<numQOHeads).map { alibiSlope(head: $0, numHeads: numQOHeads) } : []
    }

    func run(q: [Float], k: [Float], v: [Float]) -> ReferenceAttention.Result {
        let d = headDim
        let pairs = qoLen * numQOHeads
        var output = [Float](repeating: 0, count: pairs * d)
        var lse = [Float](repeating: -.infinity, count: pairs)
        // Chunk the (row, head) pairs so tiny problems don't pay one dispatch per pair.
        let chunks = min(pairs, 256)
        guard chunks > 0 else { return .init(output: output, lse: lse) }
        output.withUnsafeMutableBufferPointer { outBuf in
            lse.withUnsafeMutableBufferPointer { lseBuf in
                let out = SendablePointer(outBuf.baseAddress!), lsePtr = SendablePointer(lseBuf.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                    var scratch = Scratch(headDim: d, kvLen: kvLen)
                    for pair in (chunk * pairs / chunks)..<((chunk + 1) * pairs / chunks) {
                        let (row, head) = pair.quotientAndRemainder(dividingBy: numQOHeads)
                        let l = attend(row: row, head: head, q: q, k: k, v: v, scratch: &scratch)
                        for i in 0..<d { out.pointer[pair * d + i] = Float(scratch.acc[i]) }
                        lsePtr.pointer[pair] = Float(l)
                    }
                }
            }
        }
        return .init(output: output, lse: lse)
    }

    /// Computes one (row, head) pair into `scratch.acc`; returns its base-2 LSE.
    private func attend(row: Int, head: Int, q: [Float], k: [Float], v: [Float], scratch: inout Scratch) -> Double {
        let d = headDim, half = d / 2
        let qPos = row + kvLen - qoLen
        let kvHead = head / (numQOHeads / numKVHeads)
        // Kept keys form one contiguous range [lo, hi).
        let hi = causal ? min(kvLen, qPos + 1) : kvLen
        let lo = windowLeft >= 0 ? max(0, qPos - windowLeft) : 0
        for i in 0..<d { scratch.acc[i] = 0 }
        guard lo < hi else { return -.infinity }

        // The query row in Double, rotated at qPos when RoPE is on.
        let qBase = (row * numQOHeads + head) * d
        for i in 0..<d { scratch.q[i] = Double(q[qBase + i]) }
        if !ropeFreq.isEmpty {
            for i in 0..<half {
                let angle = Double(qPos) * ropeFreq[i]
                let (c, s) = (cos(angle), sin(angle))
                let (x1, x2) = (scratch.q[i], scratch.q[i + half])
                scratch.q[i] = x1 * c - x2 * s
                scratch.q[i + half] = x2 * c + x1 * s
            }
        }
        let slope = slopes.isEmpty ? 0 : slopes[head]
        let kvBase = kvHead * kvHeadStride

        // Pass 1: logits of the kept keys and their max.
        var m = -Double.infinity
        var kept = hi - lo
        let maskRow = row * kvLen
        k.withUnsafeBufferPointer { kp in
            scratch.q.withUnsafeBufferPointer { qd in
                for j in lo..<hi {
                    if let mask, !mask[maskRow + j] {
                        kept -= 1
                        continue
                    }
                    let kj = kvBase + j * kvTokenStride
                    var dot = 0.0
                    if ropeFreq.isEmpty {
                        for i in 0..<d { dot += qd[i] * Double(kp[kj + i]) }
                    } else {
                        let t = j * half
                        for i in 0..<half {
                            let (x1, x2) = (Double(kp[kj + i]), Double(kp[kj + i + half]))
                            let (c, s) = (keyCos[t + i], keySin[t + i])
                            dot += qd[i] * (x1 * c - x2 * s) + qd[i + half] * (x2 * c + x1 * s)
                        }
                    }
                    var logit = scale * dot
                    if softCap > 0 { logit = softCap * tanh(logit / softCap) }
                    logit += slope * Double(j - qPos)
                    scratch.logits[j - lo] = logit
                    m = max(m, logit)
                }
            }
        }

        guard kept > 0 else { return -.infinity }  // every key masked: output 0, LSE −inf

        // Pass 2: p_j = exp(s_j − m); acc = v_scale · Σ p_j v_j / Σ p_j.
        var sum = 0.0
        v.withUnsafeBufferPointer { vp in
            scratch.acc.withUnsafeMutableBufferPointer { acc in
                for j in lo..<hi {
                    if let mask, !mask[maskRow + j] { continue }
                    let p = exp(scratch.logits[j - lo] - m)
                    sum += p
                    let vj = kvBase + j * kvTokenStride
                    for i in 0..<d { acc[i] += p * Double(vp[vj + i]) }
                }
                for i in 0..<d { acc[i] = acc[i] / sum * outputScale }
            }
        }
        return (m + log(sum)) / M_LN2
    }
}

/// Per-worker buffers, reused across the pairs of a chunk.
private struct Scratch {
    var q: [Double], acc: [Double], logits: [Double]
    init(headDim: Int, kvLen: Int) {
        q = .init(repeating: 0, count: headDim)
        acc = .init(repeating: 0, count: headDim)
        logits = .init(repeating: 0, count: kvLen)
    }
}

/// A raw output pointer shared by the workers; each writes a disjoint range.
private struct SendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
