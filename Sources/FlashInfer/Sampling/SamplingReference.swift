#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The exact Float64 reference of upstream's sampling ops on one row of a `[batch, vocab]` input:
/// the filters' supports (`SamplingFilter` documents them), renormalization, logit masking,
/// softmax and the inverse-CDF draw. Pure functions on arrays; the public ops
/// (`Sampling.swift`) validate and call them per row.
enum SamplingReference {
    /// For each element `j`: `count(j) = #{i : v_i > v_j}` and `mass(j) = Σ_{v_i > v_j} max(v_i, 0)`,
    /// by one descending sort (equal values form one group and share their stats). NaN counts as
    /// below everything.
    static func rankStats(_ v: [Double]) -> (countAbove: [Int], massAbove: [Double]) {
        let n = v.count
        let key = v.map { $0.isNaN ? -Double.infinity : $0 }
        let order = (0..<n).sorted { key[$0] > key[$1] }
        var count = [Int](repeating: 0, count: n), mass = [Double](repeating: 0, count: n)
        var start = 0, before = 0.0
        while start < n {
            var end = start
            while end < n && key[order[end]] == key[order[start]] { end += 1 }
            for g in start..<end { count[order[g]] = start; mass[order[g]] = before }
            for g in start..<end { before += max(v[order[g]], 0) }
            start = end
        }
        return (count, mass)
    }

    static func topKKeep(_ p: [Double], k: Int) -> [Bool] {
        let s = rankStats(p)
        return p.indices.map { p[$0] > 0 && s.countAbove[$0] < k }
    }

    static func topPKeep(_ p: [Double], topP: Double) -> [Bool] {
        if topP >= 1 { return p.map { $0 > 0 } }
        let s = rankStats(p)
        return p.indices.map { p[$0] > 0 && s.massAbove[$0] < topP }
    }

    static func minPKeep(_ p: [Double], minP: Double) -> [Bool] {
        let pivot = (p.max() ?? 0) * minP
        return p.map { $0 > 0 && $0 >= pivot }
    }

    /// `p` where `keep`, 0 elsewhere, divided by the kept mass (all zeros when nothing positive is kept).
    static func renormalized(_ p: [Double], keep: [Bool]) -> [Double] {
        var total = 0.0
        for j in p.indices where keep[j] && p[j] > 0 { total += p[j] }
        guard total > 0 else { return [Double](repeating: 0, count: p.count) }
        return p.indices.map { keep[$0] && p[$0] > 0 ? p[$0] / total : 0 }
    }

    /// The normalized distribution the sampler with `filter` draws from for `row` (all zeros when
    /// the row has no positive probability).
    static func distribution(_ p: [Double], filter: SamplingFilter, row: Int) -> [Double] {
        switch filter {
        case .none:
            return renormalized(p, keep: p.map { $0 > 0 })
        case .topK(let k):
            return renormalized(p, keep: topKKeep(p, k: k.value(row: row)))
        case .topP(let t):
            return renormalized(p, keep: topPKeep(p, topP: t.value(row: row)))
        case .minP(let m):
            return renormalized(p, keep: minPKeep(p, minP: m.value(row: row)))
        case .topKTopP(let k, let t, .topKFirst):
            let q = renormalized(p, keep: topKKeep(p, k: k.value(row: row)))
            return renormalized(q, keep: topPKeep(q, topP: t.value(row: row)))
        case .topKTopP(let k, let t, .joint):
            let kk = topKKeep(p, k: k.value(row: row)), pk = topPKeep(p, topP: t.value(row: row))
            return renormalized(p, keep: p.indices.map { kk[$0] && pk[$0] })
        }
    }

    /// `top_k_mask_logits`: logits with `count(j) < k` kept, the rest `-inf` (ties at the k-th
    /// value kept, like the samplers' top-k).
    static func topKMaskLogits(_ x: [Double], k: Int) -> [Double] {
        let s = rankStats(x)
        return x.indices.map { s.countAbove[$0] < k ? x[$0] : -Double.infinity }
    }

    /// `softmax(x / temperature)`, max-subtracted. A row with no finite maximum (all `-inf`, or a
    /// `+inf`/NaN) gives NaN everywhere, as `torch.softmax` does.
    static func softmax(_ x: [Double], temperature: Double) -> [Double] {
        let y = x.map { $0 / temperature }
        let m = y.max() ?? 0
        guard m.isFinite, !y.contains(where: \.isNaN) else { return [Double](repeating: .nan, count: x.count) }
        let e = y.map { exp($0 - m) }
        let total = e.reduce(0, +)
        return e.map { $0 / total }
    }

    /// The inverse-CDF draw: the first `j` with `q_j > 0` whose running sum exceeds `u · Σ q`
    /// (upstream's `sampling_from_probs` rule, with `u` scaled by the mass as min-p scales it by
    /// `q`); when rounding leaves none, the last `j` with `q_j > 0`. Nil when no `q_j > 0` (upstream
    /// outputs 0 with `valid = false`).
    static func draw(_ q: [Double], u: Float) -> Int? {
        var total = 0.0, last: Int? = nil
        for j in q.indices where q[j] > 0 { total += q[j]; last = j }
        guard let last else { return nil }
        let target = Double(u) * total
        var running = 0.0
        for j in q.indices where q[j] > 0 {
            running += q[j]
            if running > target { return j }
        }
        return last
    }
}
