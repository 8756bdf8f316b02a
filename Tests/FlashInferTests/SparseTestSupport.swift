@testable import FlashInfer

#if canImport(Glibc)
import Glibc
#endif

/// Naive Float64 attention for the mask / FP8 / block-sparse tests, straight from the definitions:
/// for each (query i, head h) the kept keys are those `keep(i, j)` accepts; the logit is
/// `smScale · kScale · q·k` (soft-capped when `softCap > 0`); weights are plain `exp` (no max
/// subtraction; inputs are small); output `vScale · Σ w v / Σ w`; LSE `ln Σ w / ln 2`. No kept key:
/// output 0 and LSE −inf. q is `[qoLen, hq, d]`, k and v are NHD `[kvLen, hkv, d]`.
struct NaiveAttention {
    var qoLen: Int, kvLen: Int, hq: Int, hkv: Int, d: Int
    var smScale: Double
    var kScale = 1.0, vScale = 1.0, softCap = 0.0

    func run(q: [Float], k: [Float], v: [Float], keep: (Int, Int) -> Bool) -> (out: [Double], lse: [Double]) {
        var out = [Double](repeating: 0, count: qoLen * hq * d)
        var lse = [Double](repeating: -.infinity, count: qoLen * hq)
        for i in 0..<qoLen {
            for h in 0..<hq {
                let kvh = h / (hq / hkv)
                var weights: [(j: Int, w: Double)] = []
                for j in 0..<kvLen where keep(i, j) {
                    var dot = 0.0
                    for x in 0..<d { dot += Double(q[(i * hq + h) * d + x]) * Double(k[(j * hkv + kvh) * d + x]) }
                    var s = smScale * kScale * dot
                    if softCap > 0 { s = softCap * tanh(s / softCap) }
                    weights.append((j, exp(s)))
                }
                guard !weights.isEmpty else { continue }
                let sum = weights.map(\.w).reduce(0, +)
                lse[i * hq + h] = log(sum) / log(2.0)
                for (j, w) in weights {
                    for x in 0..<d { out[(i * hq + h) * d + x] += vScale * w / sum * Double(v[(j * hkv + kvh) * d + x]) }
                }
            }
        }
        return (out, lse)
    }
}

/// Elementwise `|got − want| ≤ atol + rtol·|want|`; −inf must match −inf exactly, NaN never passes.
/// Returns the first few offending indices (empty when all pass).
func mismatches(_ got: [Float], _ want: [Double], rtol: Double = 1e-5, atol: Double = 1e-6) -> [(Int, Float, Double)] {
    guard got.count == want.count else { return [(-1, Float(got.count), Double(want.count))] }
    var bad: [(Int, Float, Double)] = []
    for i in 0..<got.count {
        let g = Double(got[i]), w = want[i]
        let ok = g == w || (!g.isNaN && w.isFinite && abs(g - w) <= atol + rtol * abs(w))
        if !ok && bad.count < 5 { bad.append((i, got[i], w)) }
    }
    return bad
}

/// Values in ±[0.1, 1): never zero.
func sparseTestArray(_ count: Int, _ rng: inout TestRNG) -> [Float] {
    (0..<count).map { _ in
        let mag = Float(0.1 + 0.9 * rng.unit())
        return rng.next() & 1 == 0 ? mag : -mag
    }
}

/// NHD `[n, h, d]` → HND `[h, n, d]`.
func toHND(_ x: [Float], n: Int, h: Int, d: Int) -> [Float] {
    var y = x
    for j in 0..<n {
        for hh in 0..<h {
            for dd in 0..<d { y[(hh * n + j) * d + dd] = x[(j * h + hh) * d + dd] }
        }
    }
    return y
}
