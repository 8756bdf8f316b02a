#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(Bench) import FlashInfer
import FlashInferCUDA

/// The sampling kernels on the GPU (`flashinfer check --filter sampling`), against the Float64
/// reference (`samplingDistribution`, `SamplingReference` through the CPU backend):
/// - Philox: the device stream's uniforms equal `PhiloxStream`'s, bit for bit;
/// - renorm, mask, softmax: the same kept set as the reference (a token whose mass above lies
///   within 2e-5 of `top_p` may go either way: f32 sums of 128k terms), values to f32 rounding;
/// - samplers: every draw valid and inside the filtered support (the support of the reference
///   with `top_p` raised by 2e-5 and `min_p` lowered by 1e-5 relative, for the f32 boundary), and a
///   chi-square test of the draws against the exact filtered distribution: 20,480 draws (1,024 rows
///   of one distribution, each its own Philox subsequence, × 20 offsets 4,096 words apart, more
///   than any row consumes), alpha = 1e-6 per case, so a correct kernel fails a case once in a
///   million runs (the whole sampling set, ~30 chi-square cases, about once in 30,000 runs);
/// - edge rows: top-k >= vocab, top-p = 1, ties at the threshold, all-zero rows (token 0,
///   valid = false), rows with NaN (never drawn), and determinism (same seed and offset, same tokens).
public func samplingCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for (rows, count, offset) in [(64, 37, UInt64(0)), (7, 9, 3), (33, 64, (1 << 32) + 5)] {
        cases.append(CheckCase(name: "sampling philox rows=\(rows) uniforms=\(count) offset=\(offset)") { _, stream, rng in
            let seed = rng.next()
            let got = try devicePhiloxUniforms(rows: rows, count: count, seed: seed, offset: offset, stream: stream)
            for r in 0..<rows {
                var s = PhiloxStream(seed: seed, subsequence: UInt64(r), offset: offset)
                for i in 0..<count where got[r * count + i].bitPattern != s.uniform().bitPattern {
                    return "row \(r) uniform \(i): device \(got[r * count + i]), PhiloxStream differs (seed \(seed))"
                }
            }
            return nil
        })
    }
    cases += samplingOpCases()
    cases += samplerCases()
    cases += logitsSamplerCases()
    cases += chainSpeculativeCases()
    cases += generatorCases()
    return cases
}

// MARK: - Generators (device seed/offset) and CUDA graphs

/// `SamplingGenerator` on the device: a sampler launch with a generator captured into a CUDA graph
/// and replayed `replays` times draws, at replay r, exactly what the by-value launch draws at
/// offset o0 + r · increment (and the replays differ); the state ends at o0 + replays · increment.
/// Then the public entry points (chain speculative included) against by-value calls at hand-advanced
/// offsets, a borrowed non-advancing generator (upstream's seed/offset tensors), and the placement
/// errors.
func generatorCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    let filters: [SamplingFilter?] = [SamplingFilter.none, .topK(50), .topP(0.9), .minP(0.05), .topKTopP(topK: 50, topP: 0.8, order: .topKFirst),
                                      .topKTopP(topK: 50, topP: 0.8, order: .joint), nil]  // nil: sampling_from_logits
    for f in filters {
        let name = f.map(filterName) ?? "from_logits"
        cases.append(CheckCase(name: "sampling generator graph replay \(name) batch=8 vocab=32000") { device, stream, rng in
            let (batch, vocab, replays) = (8, 32_000, 4)
            let host = f == nil ? normalLogits(batch: batch, vocab: vocab, sigma: 2, rng: &rng) : softmaxRows(batch: batch, vocab: vocab, sigma: 2, rng: &rng)
            let x = try Tensor.host(host, shape: [batch, vocab], dtype: .f32).toDevice(stream: stream)
            let (seed, o0) = (rng.next(), UInt64(8))
            let inc = f.map { SamplingGenerator.increment(filter: $0, batch: batch) } ?? SamplingGenerator.incrementFromLogits(batch: batch, vocab: vocab)
            let g = try SamplingGenerator(seed: seed, offset: o0, stream: stream)
            let samples = try device.allocate(byteCount: 4 * batch), valid = try device.allocate(byteCount: batch)
            let want = try device.allocate(byteCount: 4 * batch), wantValid = try device.allocate(byteCount: batch)
            func launch(_ g: SamplingGenerator) throws {
                if let f { try launchSampler(x, filter: f, generator: g, samples: samples, valid: valid, stream: stream) }
                else { try launchSamplingFromLogits(x, generator: g, samples: samples, valid: valid, stream: stream) }
            }
            func byValue(offset: UInt64) throws -> [Int32] {
                if let f { try launchSampler(x, filter: f, seed: seed, offset: offset, samples: want, valid: wantValid, stream: stream) }
                else { try launchSamplingFromLogits(x, seed: seed, offset: offset, samples: want, valid: wantValid, stream: stream) }
                return try want.copyToHost(Int32.self, count: batch, stream: stream)
            }
            // A plain call first (JIT-compiles both kernels outside the capture), then the state reset.
            try launch(g)
            let plain = try samples.copyToHost(Int32.self, count: batch, stream: stream)
            if try g.state(stream: stream) != (seed, o0 + inc) { return "a plain call left the state at \(try g.state(stream: stream)), expected offset \(o0 + inc)" }
            if try plain != byValue(offset: o0) { return "a plain call with the generator differs from the by-value call at offset \(o0)" }
            try g.set(seed: seed, offset: o0, stream: stream)
            try stream.synchronize()
            let graph = try Graph.capture(on: stream) { try launch(g) }
            var draws: [[Int32]] = []
            for r in 0..<replays {
                try samples.fill(byte: 0xff, stream: stream)
                try graph.launch(on: stream)
                let got = try samples.copyToHost(Int32.self, count: batch, stream: stream)
                let expected = try byValue(offset: o0 + UInt64(r) * inc)
                if got != expected { return "replay \(r): \(got), the by-value kernel at offset \(o0 + UInt64(r) * inc) draws \(expected)" }
                draws.append(got)
            }
            let end = try g.state(stream: stream)
            if end != (seed, o0 + UInt64(replays) * inc) { return "after \(replays) replays the state is \(end), expected (\(seed), \(o0 + UInt64(replays) * inc))" }
            for r in 1..<replays where draws[r] == draws[r - 1] { return "replays \(r - 1) and \(r) drew the same tokens \(draws[r])" }
            return nil
        })
    }
    cases.append(CheckCase(name: "sampling generator public entry points, chain_speculative, a borrowed read-only state, placement") { device, stream, rng in
        let (batch, vocab, n) = (16, 3000, 3)
        let be = Backend.cuda(stream)
        let probs = try Tensor.host(softmaxRows(batch: batch, vocab: vocab, sigma: 1, rng: &rng), shape: [batch, vocab], dtype: .f32).toDevice(stream: stream)
        let (seed, o0) = (rng.next(), UInt64(4))
        let g = try SamplingGenerator(seed: seed, offset: o0, stream: stream)
        var o = o0
        for f in [SamplingFilter.none, .topP(0.9), .topKTopP(topK: 20, topP: 0.8, order: .joint)] {
            for call in 0..<2 {
                let got = try sample(probs, filter: f, generator: g, backend: be)
                let want = try sample(probs, filter: f, seed: seed, offset: o, backend: be)
                if got != want { return "\(filterName(f)) call \(call): generator \(got.samples), by value at offset \(o) \(want.samples)" }
                o += SamplingGenerator.increment(filter: f, batch: batch)
            }
        }
        let draft = softmaxRows(batch: batch * n, vocab: vocab, sigma: 1, rng: &rng)
        let target = softmaxRows(batch: batch * (n + 1), vocab: vocab, sigma: 1, rng: &rng)
        let d = try Tensor.host(draft, shape: [batch, n, vocab], dtype: .f32).toDevice(stream: stream)
        let t = try Tensor.host(target, shape: [batch, n + 1, vocab], dtype: .f32).toDevice(stream: stream)
        let ids: [Int32] = (0..<(batch * n)).map { _ in Int32(rng.next() % UInt64(vocab)) }
        for call in 0..<2 {
            let got = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: ids, targetProbs: t, generator: g, backend: be)
            let want = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: ids, targetProbs: t, seed: seed, offset: o, backend: be)
            if got != want { return "chain_speculative call \(call): the generator's output differs from the by-value call at offset \(o)" }
            o += SamplingGenerator.incrementChainSpeculative(batch: batch, numDraft: n)
        }
        if try g.state(stream: stream) != (seed, o) { return "state \(try g.state(stream: stream)), expected (\(seed), \(o))" }
        // Upstream's seed/offset tensors: read, never advanced.
        let words = try device.upload([seed, UInt64(40)], stream: stream)
        let fixed = SamplingGenerator(seed: words, offset: words, offsetByteOffset: 8, advances: false)
        let a = try sample(probs, filter: .topK(20), generator: fixed, backend: be), b = try sample(probs, filter: .topK(20), generator: fixed, backend: be)
        let c = try sample(probs, filter: .topK(20), seed: seed, offset: 40, backend: be)
        if a != b || a != c { return "a read-only generator: calls differ, or differ from the by-value call" }
        if try fixed.state(stream: stream) != (seed, 40) { return "a read-only generator was advanced" }
        func placementError(_ body: () throws -> SamplingOutput) -> Bool {
            do { _ = try body() } catch let e as FlashInferError {
                if case .placement(tensor: "generator", _) = e { return true }
            } catch {}
            return false
        }
        if !placementError({ try sample(probs, filter: .none, generator: SamplingGenerator(seed: 1), backend: be) }) {
            return "a host generator with the CUDA backend: no .placement error"
        }
        let hostProbs = Tensor.host([Float](repeating: 0.5, count: 2), shape: [1, 2], dtype: .f32)
        if !placementError({ try sample(hostProbs, filter: .none, generator: g, backend: .cpu) }) {
            return "a device generator with the CPU backend: no .placement error"
        }
        return nil
    })
    return cases
}

// MARK: - From logits

/// `batch` rows of σ·normal logits (`repeatRow`: one row, repeated).
func normalLogits(batch: Int, vocab: Int, sigma: Float, repeatRow: Bool = false, rng: inout SeededRNG) -> [Float] {
    let first = (0..<vocab).map { _ in rng.normal() * sigma }
    if repeatRow { return Array((0..<batch).map { _ in first }.joined()) }
    return first + (0..<((batch - 1) * vocab)).map { _ in rng.normal() * sigma }
}

/// `samplingFromLogits` (Gumbel-max) and `topKTopPSamplingFromLogits` on the GPU: the same tokens
/// as the CPU's Gumbel-max with the same Philox uniforms (the SFU's log2 against log2f: a near-tie
/// may differ), chi-square of 20,480 draws against softmax(logits) (and its top-k-first / joint
/// filter), invalid rows (all -inf, NaN) and determinism.
func logitsSamplerCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    // vocab 32000: 16-byte loads, G = 4; 32001: scalar loads, G = 1; 32002: scalar, G = 2.
    for (vocab, dtype) in [(32_000, DType.f32), (32_001, .f32), (32_002, .f32), (32_000, .bf16)] {
        cases.append(CheckCase(name: "sampling from_logits same tokens as the CPU batch=64 vocab=\(vocab) dtype=\(dtype.rawValue)") { _, stream, rng in
            let t = Tensor.host(normalLogits(batch: 64, vocab: vocab, sigma: 2, rng: &rng), shape: [64, vocab], dtype: dtype)
            let be = Backend.cuda(stream)
            let seed = rng.next()
            let g = try samplingFromLogits(t.moved(to: be), seed: seed, offset: 8, backend: be)
            let c = try samplingFromLogits(t, seed: seed, offset: 8)
            let same = zip(g.samples, c.samples).filter { $0 == $1 }.count
            if g.valid.contains(false) { return "a valid row reported invalid" }
            return same >= 62 ? nil : "\(same) of 64 tokens equal the CPU's (expected >= 62)"
        })
    }
    for (vocab, sigma) in [(1000, Float(2)), (5003, Float(1))] {
        cases.append(logitsChiSquareCase(name: "from_logits", vocab: vocab, sigma: sigma, filter: .none) { t, seed, offset, be in
            try samplingFromLogits(t, seed: seed, offset: offset, backend: be)
        })
    }
    for order in FilterApplyOrder.allCases {
        cases.append(logitsChiSquareCase(name: "top_k_top_p_from_logits \(order.rawValue) top_k=50 top_p=0.9", vocab: 1000, sigma: 2,
                                         filter: .topKTopP(topK: 50, topP: 0.9, order: order)) { t, seed, offset, be in
            try topKTopPSamplingFromLogits(t, topK: 50, topP: 0.9, order: order, seed: seed, offset: offset, backend: be)
        })
    }
    cases.append(CheckCase(name: "sampling from_logits invalid rows (-inf, NaN) and determinism") { _, stream, rng in
        let v = 3000
        var x = normalLogits(batch: 4, vocab: v, sigma: 1, rng: &rng)
        for j in 0..<v { x[j] = -.infinity; x[v + j] = .nan }
        for j in stride(from: 2 * v, to: 3 * v, by: 2) { x[j] = .nan }
        x[2 * v + 1] = -.infinity
        let be = Backend.cuda(stream)
        let t = try Tensor.host(x, shape: [4, v], dtype: .f32).moved(to: be)
        let a = try samplingFromLogits(t, seed: 5, offset: 4, backend: be), b = try samplingFromLogits(t, seed: 5, offset: 4, backend: be)
        if a != b { return "the same seed and offset gave \(a.samples) then \(b.samples)" }
        if a.valid[0] || a.valid[1] || a.samples[0] != 0 || a.samples[1] != 0 { return "-inf / NaN rows gave \(a.samples[0...1]) valid \(a.valid[0...1])" }
        let j = Int(a.samples[2])
        if !a.valid[2] || !x[2 * v + j].isFinite { return "the NaN-sprinkled row gave token \(j) (logit \(x[2 * v + j]))" }
        let c = try samplingFromLogits(t, seed: 6, offset: 4, backend: be)
        if !a.valid[3] || !c.valid[3] { return "a normal row reported invalid" }
        return nil
    })
    return cases
}

/// 20,480 draws (1,024 identical rows × 20 offsets) of a logits sampler against the exact
/// distribution `filter` leaves of softmax(logits), at alpha = 1e-6.
func logitsChiSquareCase(name: String, vocab: Int, sigma: Float, filter: SamplingFilter,
                         _ call: @escaping (Tensor, UInt64, UInt64, Backend) throws -> SamplingOutput) -> CheckCase {
    CheckCase(name: "sampling chi2 \(name) vocab=\(vocab) sigma=\(sigma)") { _, stream, rng in
        let batch = 1024, launches = 20
        let row = normalLogits(batch: 1, vocab: vocab, sigma: sigma, rng: &rng)
        let m = Double(row.max()!)
        let e = row.map { exp(Double($0) - m) }, z = e.reduce(0, +)
        let probs = Tensor.host(e.map { Float($0 / z) }, shape: [1, vocab], dtype: .f32)
        // Unfiltered: the exact softmax; filtered: the filter's distribution of the f32 softmax.
        let q = filter == .none ? e.map { $0 / z } : try samplingDistribution(probs, filter: filter)[0]
        let allowed = try samplingDistribution(probs, filter: loosened(filter))[0]
        let be = Backend.cuda(stream)
        let t = try Tensor.host(Array((0..<batch).map { _ in row }.joined()), shape: [batch, vocab], dtype: .f32).moved(to: be)
        var counts = [Int](repeating: 0, count: vocab)
        let seed = rng.next()
        for l in 0..<launches {
            // sampling_from_logits consumes vocab words per row: offsets vocab · 4 apart never overlap.
            let out = try call(t, seed, UInt64(l) * UInt64(4 * vocab + 4096), be)
            for b in 0..<batch {
                let j = Int(out.samples[b])
                guard out.valid[b], (0..<vocab).contains(j), allowed[j] > 0 else { return "launch \(l) row \(b): token \(j) outside the support" }
                counts[j] += 1
            }
        }
        for j in 0..<vocab where q[j] == 0 { counts[j] = 0 }
        let r = chiSquareTest(counts: counts, expected: q)
        CheckNote.record("\(batch * launches) draws, \(r)")
        return r.pValue >= 1e-6 ? nil : "\(batch * launches) draws: \(r) < 1e-6"
    }
}

// MARK: - Chain speculative sampling

/// The inverse-CDF index of `u` in `p` (normalized), for drawing draft tokens on the host.
func hostDraw(_ p: [Double], u: Double) -> Int {
    var run = 0.0
    for (j, x) in p.enumerated() {
        run += x
        if run > u { return j }
    }
    return p.lastIndex { $0 > 0 } ?? 0
}

/// `chainSpeculativeSampling` on the GPU: the same output as the CPU (the acceptance tests are the
/// same f32 comparisons; the resample may differ at a running-sum boundary), and the speculative
/// sampling theorem: with draft tokens drawn from the draft distributions, the token emitted at
/// each position (given the chain reached it) follows the target distribution there, and the
/// chain gets past position 0 with probability Σ min(p, q).
func chainSpeculativeCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for (n, vocab) in [(4, 3000), (1, 32_001), (3, 128_256)] {
        cases.append(CheckCase(name: "sampling chain_speculative same output as the CPU batch=32 n=\(n) vocab=\(vocab)") { _, stream, rng in
            let batch = 32
            let draft = softmaxRows(batch: batch * n, vocab: vocab, sigma: 1, rng: &rng)
            // Targets: the draft sharpened (most positions accept, some reject).
            var target: [Float] = []
            for r in 0..<(batch * (n + 1)) {
                let src = Array(draft[((r % (batch * n)) * vocab)..<((r % (batch * n) + 1) * vocab)]).map { Double($0) * Double($0) }
                let z = src.reduce(0, +)
                target += src.map { Float($0 / z) }
            }
            var ids: [Int32] = []
            for r in 0..<(batch * n) {
                ids.append(Int32(hostDraw(Array(draft[(r * vocab)..<((r + 1) * vocab)]).map(Double.init), u: Double(rng.uniform()))))
            }
            let d = Tensor.host(draft, shape: [batch, n, vocab], dtype: .f32), t = Tensor.host(target, shape: [batch, n + 1, vocab], dtype: .f32)
            let be = Backend.cuda(stream)
            let seed = rng.next()
            let g = try chainSpeculativeSampling(draftProbs: d.moved(to: be), draftTokenIds: ids, targetProbs: t.moved(to: be), seed: seed, offset: 4, backend: be)
            let c = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: ids, targetProbs: t, seed: seed, offset: 4)
            if g.acceptedTokenNum != c.acceptedTokenNum || g.emittedDraftTokenNum != c.emittedDraftTokenNum {
                return "counts: GPU accepted \(g.acceptedTokenNum) emitted \(g.emittedDraftTokenNum), CPU \(c.acceptedTokenNum) \(c.emittedDraftTokenNum)"
            }
            var same = 0
            for b in 0..<batch where Array(g.outputTokenIds[(b * (n + 1))..<((b + 1) * (n + 1))]) == Array(c.outputTokenIds[(b * (n + 1))..<((b + 1) * (n + 1))]) { same += 1 }
            return same >= batch - 1 ? nil : "\(same) of \(batch) requests' tokens equal the CPU's (expected >= \(batch - 1))"
        })
    }
    cases.append(CheckCase(name: "sampling chain_speculative into device buffers: graph replays, counts added, bad buffers refused") { device, stream, rng in
        let (batch, n, vocab, replays) = (24, 3, 32_000, 3)
        let draft = softmaxRows(batch: batch * n, vocab: vocab, sigma: 2, rng: &rng)
        let target = softmaxRows(batch: batch * (n + 1), vocab: vocab, sigma: 2, rng: &rng)
        var ids: [Int32] = []
        for r in 0..<(batch * n) { ids.append(Int32(hostDraw(Array(draft[(r * vocab)..<((r + 1) * vocab)]).map(Double.init), u: Double(rng.uniform())))) }
        let d = try Tensor.host(draft, shape: [batch, n, vocab], dtype: .f32).toDevice(stream: stream)
        let t = try Tensor.host(target, shape: [batch, n + 1, vocab], dtype: .f32).toDevice(stream: stream)
        let idsBuffer = try device.upload(ids, stream: stream)
        let out = try device.allocate(byteCount: 4 * batch * (n + 1))
        let accepted = try device.allocate(byteCount: 4 * batch), emitted = try device.allocate(byteCount: 4 * batch)
        // Running totals start away from zero: the kernel adds, as upstream's output_*_token_num.
        let start0: [Int32] = (0..<batch).map { Int32($0 * 7 + 1) }, start1: [Int32] = (0..<batch).map { Int32(1000 - $0) }
        try accepted.copyFromHost(start0, stream: stream)
        try emitted.copyFromHost(start1, stream: stream)
        let (seed, o0) = (rng.next(), UInt64(12))
        let inc = SamplingGenerator.incrementChainSpeculative(batch: batch, numDraft: n)
        let g = try SamplingGenerator(seed: seed, offset: o0, stream: stream)
        func launch() throws {
            try launchChainSpeculativeSampling(draftProbs: d, draftTokenIds: idsBuffer, targetProbs: t, generator: g, outputTokenIds: out,
                                               acceptedTokenNum: accepted, emittedDraftTokenNum: emitted, stream: stream)
        }
        // JIT-compile outside the capture with a by-value call into scratch buffers.
        let scratch = try device.allocate(byteCount: 4 * batch * (n + 1)), s1 = try device.allocate(byteCount: 4 * batch), s2 = try device.allocate(byteCount: 4 * batch)
        try launchChainSpeculativeSampling(draftProbs: d, draftTokenIds: idsBuffer, targetProbs: t, seed: seed, offset: o0, outputTokenIds: scratch,
                                           acceptedTokenNum: s1, emittedDraftTokenNum: s2, stream: stream)
        try stream.synchronize()
        let graph = try Graph.capture(on: stream) { try launch() }
        var (acc, emi) = (start0, start1)
        for r in 0..<replays {
            try out.fill(word: 0x7fc0_0000, stream: stream)  // poisoned: not a token, not -1
            try graph.launch(on: stream)
            let got = try out.copyToHost(Int32.self, count: batch * (n + 1), stream: stream)
            let want = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: ids, targetProbs: t, seed: seed, offset: o0 + UInt64(r) * inc,
                                                    backend: .cuda(stream))
            if got != want.outputTokenIds { return "replay \(r): tokens differ from the host-array call at offset \(o0 + UInt64(r) * inc)" }
            for b in 0..<batch {
                acc[b] += want.acceptedTokenNum[b]
                emi[b] += want.emittedDraftTokenNum[b]
            }
            let (ga, ge) = (try accepted.copyToHost(Int32.self, count: batch, stream: stream), try emitted.copyToHost(Int32.self, count: batch, stream: stream))
            if ga != acc || ge != emi { return "replay \(r): counts \(ga) / \(ge), expected the running totals \(acc) / \(emi)" }
        }
        if try g.state(stream: stream) != (seed, o0 + UInt64(replays) * inc) { return "state \(try g.state(stream: stream)) after \(replays) replays" }
        // Too-small buffers are refused before any launch.
        let small = try device.allocate(byteCount: 4 * batch)
        do {
            try launchChainSpeculativeSampling(draftProbs: d, draftTokenIds: idsBuffer, targetProbs: t, seed: seed, offset: 0, outputTokenIds: small,
                                               acceptedTokenNum: accepted, emittedDraftTokenNum: emitted, stream: stream)
            return "an output_token_ids buffer of \(batch) int32 was accepted (needs \(batch * (n + 1)))"
        } catch let e as FlashInferError {
            guard case .shape(let name, _, _, _, _) = e, name == "output_token_ids" else { return "unexpected error \(e)" }
        }
        return nil
    })
    cases.append(CheckCase(name: "sampling per-row values in device memory: as host arrays, unvalidated values, graph replays read the current values") { device, stream, rng in
        let (batch, vocab) = (16, 32_000)
        let rows = softmaxRows(batch: batch, vocab: vocab, sigma: 2, rng: &rng)
        let p = try Tensor.host(rows, shape: [batch, vocab], dtype: .f32).toDevice(stream: stream)
        let logits = try Tensor.host(rows.map { log($0) }, shape: [batch, vocab], dtype: .f32).toDevice(stream: stream)
        let ks = (0..<batch).map { _ in Int(rng.next() % 200) + 1 }
        let ps = (0..<batch).map { _ in Double(Float(0.3 + 0.7 * Double(rng.uniform()))) }  // exact in Float
        let ms = (0..<batch).map { _ in Double(Float(0.3 * Double(rng.uniform()))) }
        let ts = (0..<batch).map { _ in Double(Float(0.5 + Double(rng.uniform()))) }
        let kb = try device.upload(ks.map { Int32($0) }, stream: stream)
        let (pb, mb, tb) = (try device.upload(ps.map { Float($0) }, stream: stream), try device.upload(ms.map { Float($0) }, stream: stream),
                            try device.upload(ts.map { Float($0) }, stream: stream))
        let seed = rng.next()
        let be = Backend.cuda(stream)
        let filters: [(String, SamplingFilter, SamplingFilter)] = [
            ("top_k", .topK(.perRow(ks)), .topK(.device(kb))), ("top_p", .topP(.perRow(ps)), .topP(.device(pb))),
            ("min_p", .minP(.perRow(ms)), .minP(.device(mb))),
            ("joint", .topKTopP(topK: .perRow(ks), topP: .perRow(ps), order: .joint), .topKTopP(topK: .device(kb), topP: .device(pb), order: .joint)),
            ("top_k_first", .topKTopP(topK: .perRow(ks), topP: .perRow(ps), order: .topKFirst),
             .topKTopP(topK: .device(kb), topP: .device(pb), order: .topKFirst)),
        ]
        for (name, host, dev) in filters {
            let a = try sample(p, filter: host, seed: seed, offset: 4, backend: be)
            let b = try sample(p, filter: dev, seed: seed, offset: 4, backend: be)
            if a != b { return "\(name): device values drew \(b.samples.prefix(4)) where host arrays drew \(a.samples.prefix(4))" }
        }
        let ops: [(String, () throws -> Tensor, () throws -> Tensor)] = [
            ("top_k_renorm", { try topKRenormProbs(p, topK: .perRow(ks), backend: be) }, { try topKRenormProbs(p, topK: .device(kb), backend: be) }),
            ("top_p_renorm", { try topPRenormProbs(p, topP: .perRow(ps), backend: be) }, { try topPRenormProbs(p, topP: .device(pb), backend: be) }),
            ("top_k_mask_logits", { try topKMaskLogits(logits, topK: .perRow(ks), backend: be) }, { try topKMaskLogits(logits, topK: .device(kb), backend: be) }),
            ("softmax", { try softmax(logits, temperature: .perRow(ts), backend: be) }, { try softmax(logits, temperature: .device(tb), backend: be) }),
        ]
        for (name, host, dev) in ops {
            let (a, b) = (try host().toFloats(stream: stream), try dev().toFloats(stream: stream))
            if a.map(\.bitPattern) != b.map(\.bitPattern) { return "\(name): device values gave other outputs than host arrays" }
        }
        // Not validated (as upstream): top-k 0 acts as 1, top-p 0 keeps the largest probability.
        var argmax: [Int32] = []
        for b in 0..<batch { argmax.append(Int32(rows[(b * vocab)..<((b + 1) * vocab)].indices.max { rows[$0] < rows[$1] }! - b * vocab)) }
        let zeros = try device.upload([Int32](repeating: 0, count: batch), stream: stream)
        if try sample(p, filter: .topK(.device(zeros)), seed: seed, backend: be).samples != argmax { return "top_k = 0 in device memory did not act as 1" }
        if try sample(p, filter: .topP(.device(zeros)), seed: seed, backend: be).samples != argmax { return "top_p = 0 in device memory did not keep the top token" }
        // A captured launch reads the buffer's values at each replay.
        let samples = try device.allocate(byteCount: 4 * batch)
        try launchSampler(p, filter: .topP(.device(pb)), seed: seed, offset: 0, samples: samples, valid: nil, stream: stream)  // JIT
        try stream.synchronize()
        let graph = try Graph.capture(on: stream) {
            try launchSampler(p, filter: .topP(.device(pb)), seed: seed, offset: 0, samples: samples, valid: nil, stream: stream)
        }
        for r in 0..<3 {
            let now = (0..<batch).map { _ in Double(Float(0.1 + 0.9 * Double(rng.uniform()))) }
            try pb.copyFromHost(now.map { Float($0) }, stream: stream)
            try samples.fill(word: 0x7fc0_0000, stream: stream)
            try graph.launch(on: stream)
            let got = try samples.copyToHost(Int32.self, count: batch, stream: stream)
            let want = try sample(p, filter: .topP(.perRow(now)), seed: seed, backend: be).samples
            if got != want { return "replay \(r): \(got.prefix(4)) where the host-array call draws \(want.prefix(4))" }
        }
        // Refused before any launch: a short buffer, and device values on the CPU backend.
        let short = try device.upload([Float](repeating: 0.5, count: batch - 1), stream: stream)
        do {
            _ = try sample(p, filter: .topP(.device(short)), seed: seed, backend: be)
            return "a top_p buffer of \(batch - 1) values was accepted for \(batch) rows"
        } catch let e as FlashInferError {
            guard case .shape(let name, _, _, _, _) = e, name == "top_p" else { return "short buffer: unexpected error \(e)" }
        }
        do {
            _ = try sample(Tensor.host(rows, shape: [batch, vocab], dtype: .f32), filter: .topK(.device(kb)), seed: seed, backend: .cpu)
            return "device values were accepted by the CPU backend"
        } catch let e as FlashInferError {
            guard case .placement(let name, _) = e, name == "top_k" else { return "CPU backend: unexpected error \(e)" }
        }
        return nil
    })
    for (n, sigma) in [(2, Float(1)), (1, Float(2))] {
        cases.append(CheckCase(name: "sampling chi2 chain_speculative n=\(n) vocab=64 sigma=\(sigma): emitted tokens follow the target") { _, stream, rng in
            let (batch, launches, vocab) = (1024, 20, 64)
            let p = (0..<n).map { _ in softmaxRows(batch: 1, vocab: vocab, sigma: sigma, rng: &rng).map(Double.init) }
            let q = (0...n).map { _ in softmaxRows(batch: 1, vocab: vocab, sigma: sigma, rng: &rng).map(Double.init) }
            let d = try Tensor.host(Array((0..<batch).map { _ in p.joined() }.joined()).map(Float.init), shape: [batch, n, vocab], dtype: .f32).moved(to: Backend.cuda(stream))
            let t = try Tensor.host(Array((0..<batch).map { _ in q.joined() }.joined()).map(Float.init), shape: [batch, n + 1, vocab], dtype: .f32).moved(to: Backend.cuda(stream))
            var counts = [[Int]](repeating: [Int](repeating: 0, count: vocab), count: n + 1)
            var passed0 = 0
            let seed = rng.next()
            for l in 0..<launches {
                var ids: [Int32] = []
                for _ in 0..<batch { for i in 0..<n { ids.append(Int32(hostDraw(p[i], u: Double(rng.uniform())))) } }
                let out = try chainSpeculativeSampling(draftProbs: d, draftTokenIds: ids, targetProbs: t, seed: seed,
                                                       offset: UInt64(l) * 4096, backend: .cuda(stream))
                for b in 0..<batch {
                    let e = Int(out.emittedDraftTokenNum[b])
                    if e > 0 { passed0 += 1 }
                    for i in 0...e {
                        let j = Int(out.outputTokenIds[b * (n + 1) + i])
                        guard (0..<vocab).contains(j), q[i][j] > 0 else { return "launch \(l) request \(b) position \(i): token \(j)" }
                        counts[i][j] += 1
                    }
                    if stride(from: e + 1, through: n, by: 1).contains(where: { out.outputTokenIds[b * (n + 1) + $0] != -1 }) { return "request \(b): positions after \(e) not -1" }
                }
            }
            var report: [String] = []
            for i in 0...n {
                let r = chiSquareTest(counts: counts[i], expected: q[i])
                CheckNote.record("position \(i): \(r)")
                if r.pValue < 1e-6 { report.append("position \(i): \(r) < 1e-6") }
            }
            // P(pass position 0) = Σ min(p0, q0): a binomial count within 5 standard deviations.
            let a = zip(p[0], q[0]).map { min($0, $1) }.reduce(0, +), total = Double(batch * launches)
            let z = (Double(passed0) - total * a) / (total * a * (1 - a)).squareRoot()
            if abs(z) > 5 { report.append("past position 0: \(passed0) of \(Int(total)), expected \(total * a) (z = \(z))") }
            return report.isEmpty ? nil : report.joined(separator: "; ")
        })
    }
    return cases
}

// MARK: - Inputs

/// `batch` rows of softmax(σ · normal) as f32 probabilities (`repeatRow`: one row, repeated).
public func softmaxRows(batch: Int, vocab: Int, sigma: Float, repeatRow: Bool = false, rng: inout SeededRNG) -> [Float] {
    var out: [Float] = []
    out.reserveCapacity(batch * vocab)
    for b in 0..<batch {
        if repeatRow && b > 0 { out += out[0..<vocab]; continue }
        let x = (0..<vocab).map { _ in Double(rng.normal() * sigma) }
        let m = x.max()!
        let e = x.map { exp($0 - m) }
        let z = e.reduce(0, +)
        out += e.map { Float($0 / z) }
    }
    return out
}

/// A row with ties at every threshold the edge cases use: 1/4, four of 1/8, four of 1/16, and
/// zeros (dyadic, so every partial sum is exact in f32 and f64). Top-k 3 keeps 5 tokens; top-p 0.5
/// keeps the 1/4 and the 1/8s (mass above them 1/4 < 0.5); min-p 0.5 keeps the same.
func tiedRow(vocab: Int) -> [Float] {
    var r = [Float](repeating: 0, count: vocab)
    let values: [Float] = [0.25, 0.125, 0.125, 0.125, 0.125, 0.0625, 0.0625, 0.0625, 0.0625]
    for (i, v) in values.enumerated() { r[(i * 7 + 3) % vocab] = v }
    return r
}

extension RowParameter {
    func mapped(_ f: (Value) -> Value) -> RowParameter<Value> {
        switch self {
        case .scalar(let v): .scalar(f(v))
        case .perRow(let vs): .perRow(vs.map(f))
        case .device: self  // read by the kernel; the host cannot widen it
        }
    }
}

/// The filter with its float boundaries widened by the f32 rounding the kernels may carry.
func loosened(_ f: SamplingFilter) -> SamplingFilter {
    let p: (Double) -> Double = { min(1, $0 + 2e-5) }
    switch f {
    case .topP(let t): return .topP(t.mapped(p))
    case .minP(let m): return .minP(m.mapped { $0 * (1 - 1e-5) })
    case .topKTopP(let k, let t, let o): return .topKTopP(topK: k, topP: t.mapped(p), order: o)
    default: return f
    }
}

/// "0.5", or "per-row".
func paramName<V>(_ p: RowParameter<V>) -> String {
    switch p {
    case .scalar(let v): "\(v)"
    case .perRow: "per-row"
    case .device: "per-row in device memory"
    }
}

func filterName(_ f: SamplingFilter) -> String {
    switch f {
    case .none: return "all"
    case .topK(let k): return "top_k=\(paramName(k))"
    case .topP(let p): return "top_p=\(paramName(p))"
    case .minP(let m): return "min_p=\(paramName(m))"
    case .topKTopP(let k, let p, let o): return "\(o.rawValue) top_k=\(paramName(k)) top_p=\(paramName(p))"
    }
}

// MARK: - Renorm, mask, softmax

/// top_k_mask_logits of `x` ([batch, vocab] f32 logits) on the GPU against the CPU reference,
/// exactly: the first differing element, or nil.
func maskLogitsMismatch(_ x: [Float], batch: Int, vocab: Int, k: Int, stream: Stream) throws -> String? {
    let t = Tensor.host(x, shape: [batch, vocab], dtype: .f32)
    let be = Backend.cuda(stream)
    let got = try topKMaskLogits(t.moved(to: be), topK: .scalar(k), backend: be).toFloats()
    let want = try topKMaskLogits(t, topK: .scalar(k)).toFloats()
    for i in got.indices where got[i] != want[i] { return "element \(i): got \(got[i]), expected \(want[i])" }
    return nil
}

func samplingOpCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    let shapes = [(4, 111), (3, 32_000), (2, 128_256), (1, 262_144)]
    for (batch, vocab) in shapes {
        for k in [1, 50, vocab, vocab + 7] {
            cases.append(renormCase(top: "top_k=\(k)", batch: batch, vocab: vocab) { x, be in
                try (topKRenormProbs(x, topK: .scalar(k), backend: be), nil)
            })
        }
        for p in [0.1, 0.5, 0.9, 1.0] {
            cases.append(renormCase(top: "top_p=\(p)", batch: batch, vocab: vocab) { x, be in
                try (topPRenormProbs(x, topP: .scalar(p), backend: be), p)
            })
        }
        for k in [1, 50, vocab] {
            cases.append(CheckCase(name: "sampling top_k_mask_logits k=\(k) batch=\(batch) vocab=\(vocab)") { _, stream, rng in
                // Logits rounded to 1/4: many ties, at the k-th value too; some -inf.
                let x = (0..<(batch * vocab)).map { _ in rng.uniform() < 0.01 ? -Float.infinity : (rng.normal() * 12).rounded() / 4 }
                return try maskLogitsMismatch(x, batch: batch, vocab: vocab, k: k, stream: stream)
            })
        }
        if batch == 4 {
            // Zeros (3 × +0.0, 2 × −0.0) at the k-th value, after 46 positives: a row like this (from
            // seed 1796395039) had kept zeros masked on the H200 because below(+0.0) was −0.0
            // (finish.cuh); k 46 and 52 put the k-th value outside the zeros.
            for k in [46, 47, 49, 50, 51, 52] {
                cases.append(CheckCase(name: "sampling top_k_mask_logits signed zeros at the k-th k=\(k) batch=4 vocab=\(vocab)") { _, stream, rng in
                    var x: [Float] = []
                    for _ in 0..<batch {
                        var row: [Float] = (0..<46).map { Float($0 % 23 + 1) / 4 } + [0, 0, 0, -0.0, -0.0]
                        row += (0..<(vocab - row.count)).map { -Float($0 % 15 + 1) / 4 }
                        for i in stride(from: row.count - 1, to: 0, by: -1) { row.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                        x += row
                    }
                    return try maskLogitsMismatch(x, batch: batch, vocab: vocab, k: k, stream: stream)
                })
            }
        }
        for temperature in [RowParameter<Double>.scalar(1), .scalar(0.5), .perRow((0..<batch).map { 0.1 + Double($0) })] {
            for dtype in [DType.f32, .bf16] {
                cases.append(CheckCase(name: "sampling softmax T=\(paramName(temperature)) dtype=\(dtype.rawValue) batch=\(batch) vocab=\(vocab)") { _, stream, rng in
                    var x = (0..<(batch * vocab)).map { _ in rng.normal() * 4 }
                    for i in stride(from: 5, to: x.count, by: 97) { x[i] = -.infinity }
                    let t = Tensor.host(x, shape: [batch, vocab], dtype: dtype)
                    let be = Backend.cuda(stream)
                    let got = try softmax(t.moved(to: be), temperature: temperature, backend: be).toFloats()
                    let want = try softmax(t, temperature: temperature).toFloats()
                    let tol = dtype == .f32 ? Tolerance(atol: 1e-7, rtol: 2e-5) : Tolerance(atol: 1e-5, rtol: 8e-3)
                    if let m = tol.compare(got, want) { return "\(m)" }
                    return nil
                })
            }
        }
    }
    // Rows sorted descending: the large values bunched in the first warps' segments, so the top-k
    // sketch (finish.cuh) gathers thousands of candidates (k 50: ~4,080 of the 4,096 slots) or
    // overflows the buffer and falls back to the pivot search (k 100, 1000); ascending: the last warps.
    for (k, descending) in [(50, true), (100, true), (1000, true), (50, false)] {
        let order = descending ? "descending" : "ascending"
        cases.append(CheckCase(name: "sampling finish sorted rows (\(order)) top_k=\(k) renorm and mask batch=2 vocab=128256") { _, stream, rng in
            let (batch, vocab) = (2, 128_256)
            var x: [Float] = []
            for b in 0..<batch {
                let r = softmaxRows(batch: 1, vocab: vocab, sigma: b == 0 ? 1 : 3, rng: &rng).sorted(by: >)
                x += descending ? r : r.reversed()
            }
            let t = Tensor.host(x, shape: [batch, vocab], dtype: .f32)
            let be = Backend.cuda(stream)
            let gm = try topKMaskLogits(t.moved(to: be), topK: .scalar(k), backend: be).toFloats()
            let wm = try topKMaskLogits(t, topK: .scalar(k)).toFloats()
            for i in gm.indices where gm[i] != wm[i] { return "mask element \(i): got \(gm[i]), expected \(wm[i])" }
            let gr = try topKRenormProbs(t.moved(to: be), topK: .scalar(k), backend: be).toFloats()
            let wr = try topKRenormProbs(t, topK: .scalar(k)).toFloats()
            for i in gr.indices where (gr[i] != 0) != (wr[i] != 0) || !(abs(gr[i] - wr[i]) <= 1e-7 + 2e-5 * wr[i]) {
                return "renorm element \(i): got \(gr[i]), expected \(wr[i])"
            }
            return nil
        })
    }
    cases.append(CheckCase(name: "sampling softmax degenerate rows") { _, stream, _ in
        // Rows: normal; all -inf; one NaN; one +inf. The last three are NaN everywhere (as torch).
        let v = 1000
        var x = (0..<(4 * v)).map { Float(($0 * 37) % 101) / 10 }
        for i in v..<(2 * v) { x[i] = -.infinity }
        x[2 * v + 17] = .nan
        x[3 * v + 5] = .infinity
        let be = Backend.cuda(stream)
        let got = try softmax(Tensor.host(x, shape: [4, v], dtype: .f32).moved(to: be), backend: be).toFloats()
        if let m = Tolerance(atol: 1e-7, rtol: 2e-5).compare(Array(got[0..<v]), try softmax(Tensor.host(Array(x[0..<v]), shape: [1, v], dtype: .f32)).toFloats()) {
            return "row 0: \(m)"
        }
        if let i = got[v...].firstIndex(where: { !$0.isNaN }) { return "element \(i) of a degenerate row: \(got[i]), expected NaN" }
        return nil
    })
    cases.append(CheckCase(name: "sampling renorm edge rows (ties, zeros, NaN)") { _, stream, _ in
        let v = 4096
        var rows = tiedRow(vocab: v) + [Float](repeating: 0, count: v) + tiedRow(vocab: v)
        rows[2 * v + 1] = .nan  // NaN counts as 0: the tied row's answer is unchanged
        let t = Tensor.host(rows, shape: [3, v], dtype: .f32)
        let be = Backend.cuda(stream)
        for (name, k, p) in [("top_k=3", 3, 1.0), ("top_p=0.5", 0, 0.5), ("top_k=1", 1, 1.0)] {
            let got = try (k > 0 ? topKRenormProbs(t.moved(to: be), topK: .scalar(k), backend: be)
                                 : topPRenormProbs(t.moved(to: be), topP: .scalar(p), backend: be)).toFloats()
            let clean = tiedRow(vocab: v)
            let want = try (k > 0 ? topKRenormProbs(Tensor.host(clean, shape: [1, v], dtype: .f32), topK: .scalar(k))
                                  : topPRenormProbs(Tensor.host(clean, shape: [1, v], dtype: .f32), topP: .scalar(p))).toFloats()
            for r in [0, 2] {
                for j in 0..<v where got[r * v + j] != want[j] { return "\(name) row \(r) element \(j): got \(got[r * v + j]), expected \(want[j])" }
            }
            if let j = got[v..<(2 * v)].firstIndex(where: { $0 != 0 }) { return "\(name): zero row element \(j - v) = \(got[j])" }
        }
        return nil
    })
    return cases
}

/// A renorm case on softmax rows (σ 1 and 5 alternating): the kept set as the reference's (a
/// token within 2e-5 of the top-p boundary may differ), values p / Σ_kept p to f32 rounding.
func renormCase(top: String, batch: Int, vocab: Int, _ op: @escaping (Tensor, Backend) throws -> (Tensor, Double?)) -> CheckCase {
    CheckCase(name: "sampling renorm \(top) batch=\(batch) vocab=\(vocab)") { _, stream, rng in
        var x: [Float] = []
        for b in 0..<batch { x += softmaxRows(batch: 1, vocab: vocab, sigma: b % 2 == 0 ? 1 : 5, rng: &rng) }
        let t = Tensor.host(x, shape: [batch, vocab], dtype: .f32)
        let be = Backend.cuda(stream)
        let (gpuT, topP) = try op(try t.moved(to: be), be)
        let got = try gpuT.toFloats()
        let want = try op(t, .cpu).0.toFloats()
        for b in 0..<batch {
            let row = Array(x[(b * vocab)..<((b + 1) * vocab)]).map(Double.init)
            let g = Array(got[(b * vocab)..<((b + 1) * vocab)]), w = Array(want[(b * vocab)..<((b + 1) * vocab)])
            // Mass above each token (only needed where the kept sets differ).
            var massAbove: [Double]? = nil
            var kept = 0.0
            for j in 0..<vocab where g[j] != 0 { kept += row[j] }
            for j in 0..<vocab {
                if (g[j] != 0) != (w[j] != 0) {
                    if massAbove == nil { massAbove = massesAbove(row) }
                    guard let p = topP, abs(massAbove![j] - p) <= 2e-5 else {
                        return "row \(b) token \(j) (p \(row[j])): kept \(g[j] != 0) on the GPU, \(w[j] != 0) in the reference"
                    }
                    continue
                }
                // Against p / Σ over the GPU's kept set (the same set but for boundary tokens).
                let e = g[j] != 0 ? Float(row[j] / kept) : 0
                if !(abs(g[j] - e) <= 1e-7 + 2e-5 * e) { return "row \(b) token \(j): got \(g[j]), expected \(e)" }
            }
        }
        return nil
    }
}

/// `Σ_{p_i > p_j} p_i` for every j, by one descending sort.
func massesAbove(_ row: [Double]) -> [Double] {
    let order = row.indices.sorted { row[$0] > row[$1] }
    var out = [Double](repeating: 0, count: row.count)
    var start = 0, before = 0.0
    while start < order.count {
        var end = start
        while end < order.count && row[order[end]] == row[order[start]] { end += 1 }
        for g in start..<end { out[order[g]] = before }
        for g in start..<end { before += row[order[g]] }
        start = end
    }
    return out
}

// MARK: - Samplers

func samplerCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    let filters: [SamplingFilter] = [
        .none, .topK(1), .topK(10), .topK(50), .topP(0.1), .topP(0.5), .topP(0.9), .minP(0.05), .minP(0.5),
        .topKTopP(topK: 50, topP: 0.9, order: .joint), .topKTopP(topK: 10, topP: 0.5, order: .joint),
        .topKTopP(topK: 50, topP: 0.9, order: .topKFirst), .topKTopP(topK: 10, topP: 0.5, order: .topKFirst),
    ]
    // Distribution tests: a moderate vocabulary (so the support holds few hundred tokens at most).
    for f in filters {
        for (vocab, sigma) in [(1000, Float(2)), (5003, Float(1))] {
            cases.append(chiSquareCase(filter: f, vocab: vocab, sigma: sigma))
        }
    }
    // Edge filters: top-k >= vocab and top-p = 1 are the unfiltered distribution; ties at the threshold.
    for f in [SamplingFilter.topK(1000), .topK(5000), .topP(1.0), .topKTopP(topK: 5000, topP: 1.0, order: .topKFirst),
              .topKTopP(topK: 5000, topP: 1.0, order: .joint)] {
        cases.append(chiSquareCase(filter: f, vocab: 1000, sigma: 2))
    }
    for f in [SamplingFilter.none, .topK(3), .topK(1), .topP(0.5), .minP(0.5), .topKTopP(topK: 3, topP: 0.3, order: .joint),
              .topKTopP(topK: 3, topP: 0.5, order: .topKFirst)] {
        cases.append(chiSquareCase(filter: f, vocab: 4096, sigma: 0, tied: true))
    }
    // Sorted rows (vocab 20000, 625 elements per warp segment): top-k 150 gathers ~2,600 candidates
    // in the shared-memory finish, top-k 250 overflows its 4,096 slots and takes the pivot search.
    for f in [SamplingFilter.topK(150), .topK(250), .topKTopP(topK: 150, topP: 0.5, order: .topKFirst),
              .topKTopP(topK: 250, topP: 0.9, order: .topKFirst), .topKTopP(topK: 250, topP: 0.5, order: .joint)] {
        cases.append(chiSquareCase(filter: f, vocab: 20_000, sigma: 1, sorted: true))
    }
    // Support on S1-shaped rows (vocab 128256, a different distribution per row), per-row parameters.
    for f in filters + [.topK(.perRow((0..<32).map { 1 + $0 * 37 })), .topP(.perRow((0..<32).map { 0.05 + Double($0) * 0.03 })),
                        .topKTopP(topK: .perRow((0..<32).map { 5 + $0 * 7 }), topP: .perRow((0..<32).map { 0.99 - Double($0) * 0.03 }), order: .joint),
                        .topKTopP(topK: .perRow((0..<32).map { 5 + $0 * 7 }), topP: .perRow((0..<32).map { 0.99 - Double($0) * 0.03 }), order: .topKFirst)] {
        cases.append(CheckCase(name: "sampling support \(filterName(f)) batch=32 vocab=128256") { _, stream, rng in
            let (batch, vocab) = (32, 128_256)
            var x: [Float] = []
            for b in 0..<batch { x += softmaxRows(batch: 1, vocab: vocab, sigma: [1, 3, 0.3][b % 3], rng: &rng) }
            let t = Tensor.host(x, shape: [batch, vocab], dtype: .f32)
            let allowed = try samplingDistribution(t, filter: loosened(f))
            let be = Backend.cuda(stream)
            let g = try t.moved(to: be)
            for round in 0..<4 {
                let out = try sample(g, filter: f, seed: rng.next(), offset: UInt64(round) * 4096, backend: be)
                for b in 0..<batch {
                    let j = Int(out.samples[b])
                    guard out.valid[b], (0..<vocab).contains(j), allowed[b][j] > 0 else {
                        return "round \(round) row \(b): token \(j) valid \(out.valid[b]) outside the support (p = \(j >= 0 && j < vocab ? x[b * vocab + j] : .nan))"
                    }
                }
            }
            return nil
        })
    }
    cases.append(CheckCase(name: "sampling invalid rows (zeros, NaN) and determinism") { _, stream, rng in
        // Rows: all zeros; all NaN; NaN and zeros around one positive token; a softmax row with NaNs sprinkled.
        let v = 3000
        var x = [Float](repeating: 0, count: 4 * v)
        for j in v..<(2 * v) { x[j] = .nan }
        for j in stride(from: 2 * v, to: 3 * v, by: 2) { x[j] = .nan }
        x[2 * v + 1001] = 0.5
        let soft = softmaxRows(batch: 1, vocab: v, sigma: 1, rng: &rng)
        for j in 0..<v { x[3 * v + j] = j % 11 == 0 ? .nan : soft[j] }
        let be = Backend.cuda(stream)
        let t = try Tensor.host(x, shape: [4, v], dtype: .f32).moved(to: be)
        for f in [SamplingFilter.none, .topK(5), .topP(0.5), .minP(0.1), .topKTopP(topK: 5, topP: 0.5, order: .joint),
                  .topKTopP(topK: 5, topP: 0.5, order: .topKFirst)] {
            let seed = rng.next()
            let a = try sample(t, filter: f, seed: seed, offset: 12, backend: be)
            let b = try sample(t, filter: f, seed: seed, offset: 12, backend: be)
            if a != b { return "\(filterName(f)): the same seed and offset gave \(a.samples) then \(b.samples)" }
            if a.valid[0] || a.valid[1] || a.samples[0] != 0 || a.samples[1] != 0 {
                return "\(filterName(f)): zero / NaN rows gave \(a.samples[0...1]) valid \(a.valid[0...1]), expected 0, false"
            }
            if !a.valid[2] || a.samples[2] != 1001 { return "\(filterName(f)): the one-token row gave \(a.samples[2]) valid \(a.valid[2])" }
            let j = Int(a.samples[3])
            if !a.valid[3] || !(x[3 * v + j] > 0) { return "\(filterName(f)): the NaN-sprinkled row gave token \(j) (p \(x[3 * v + j]))" }
        }
        // Different seeds give different tokens (over 1024 rows of one distribution).
        let rows = try Tensor.host(softmaxRows(batch: 1024, vocab: 1000, sigma: 1, repeatRow: true, rng: &rng), shape: [1024, 1000], dtype: .f32).moved(to: be)
        let s1 = try samplingFromProbs(rows, seed: 1, backend: be), s2 = try samplingFromProbs(rows, seed: 2, backend: be)
        let s3 = try samplingFromProbs(rows, seed: 1, offset: 4, backend: be)
        if s1.samples == s2.samples || s1.samples == s3.samples { return "another seed or offset gave the same 1024 tokens" }
        return nil
    })
    // The first draw is the answer for plain and min-p sampling: the CPU's inverse CDF with the same
    // uniform gives the same token (up to running-sum rounding at a boundary).
    for f in [SamplingFilter.none, .minP(0.1)] {
        cases.append(CheckCase(name: "sampling \(filterName(f)) same tokens as the CPU batch=256 vocab=32000") { _, stream, rng in
            let t = Tensor.host(softmaxRows(batch: 256, vocab: 32_000, sigma: 2, rng: &rng), shape: [256, 32_000], dtype: .f32)
            let be = Backend.cuda(stream)
            let seed = rng.next()
            let g = try sample(t.moved(to: be), filter: f, seed: seed, offset: 8, backend: be)
            let c = try sample(t, filter: f, seed: seed, offset: 8)
            let same = zip(g.samples, c.samples).filter { $0 == $1 }.count
            return same >= 250 ? nil : "\(same) of 256 tokens equal the CPU's (expected >= 250)"
        })
    }
    return cases
}

/// 20,480 draws from one distribution (1,024 identical rows × 20 offsets), each inside the support,
/// then Pearson's chi-square against the exact filtered distribution at alpha = 1e-6.
func chiSquareCase(filter: SamplingFilter, vocab: Int, sigma: Float, tied: Bool = false, sorted: Bool = false) -> CheckCase {
    let name = "sampling chi2 \(filterName(filter)) vocab=\(vocab) " + (tied ? "tied" : "sigma=\(sigma)") + (sorted ? " sorted" : "")
    return CheckCase(name: name) { _, stream, rng in
        let batch = 1024, launches = 20
        var row = tied ? tiedRow(vocab: vocab) : softmaxRows(batch: 1, vocab: vocab, sigma: sigma, rng: &rng)
        if sorted { row.sort(by: >) }
        let one = Tensor.host(row, shape: [1, vocab], dtype: .f32)
        let q = try samplingDistribution(one, filter: filter)[0]
        let allowed = try samplingDistribution(one, filter: loosened(filter))[0]
        let be = Backend.cuda(stream)
        let t = try Tensor.host((0..<batch).flatMap { _ in row }, shape: [batch, vocab], dtype: .f32).moved(to: be)
        var counts = [Int](repeating: 0, count: vocab)
        let seed = rng.next()
        for l in 0..<launches {
            let out = try sample(t, filter: filter, seed: seed, offset: UInt64(l) * 4096, backend: be)
            for b in 0..<batch {
                let j = Int(out.samples[b])
                guard out.valid[b], (0..<vocab).contains(j), allowed[j] > 0 else {
                    return "launch \(l) row \(b): token \(j) valid \(out.valid[b]) outside the support"
                }
                counts[j] += 1
            }
        }
        // A draw on a boundary token (kept by the f32 rounding, not by the Float64 reference) is
        // within the support tolerance, and out of the test: it has no expected count.
        for j in 0..<vocab where q[j] == 0 { counts[j] = 0 }
        let r = chiSquareTest(counts: counts, expected: q)
        CheckNote.record("\(batch * launches) draws, \(r)")
        return r.pValue >= 1e-6 ? nil : "\(batch * launches) draws: \(r) < 1e-6"
    }
}
