#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Pearson's chi-square goodness-of-fit test for sampler outputs: observed token counts against
/// the reference distribution (`samplingDistribution`).
///
/// The p-value is exact (up to ~1e-12 relative): the chi-square survival function
/// `P(X² ≥ x) = Q(dof/2, x/2)`, the regularized upper incomplete gamma function, by its series
/// for `x < a + 1` and its continued fraction (modified Lentz) otherwise (Numerical Recipes §6.2).
/// A test fails when `p < alpha`; with `alpha = 1e-6` a correct sampler fails one run in a
/// million per test (the false-failure rate), while a wrong distribution over a few thousand
/// draws gives p-values far below it.
public struct ChiSquareResult: Sendable, CustomStringConvertible {
    public var statistic: Double
    public var degreesOfFreedom: Int
    public var pValue: Double
    public var description: String { "chi2 = \(statistic), dof = \(degreesOfFreedom), p = \(pValue)" }
}

/// `Q(a, x) = Γ(a, x) / Γ(a)` for `a > 0`, `x ≥ 0`.
public func regularizedUpperGamma(_ a: Double, _ x: Double) -> Double {
    precondition(a > 0 && x >= 0, "Q(\(a), \(x)) is not defined")
    if x == 0 { return 1 }
    let logPrefix = -x + a * log(x) - lgamma(a)
    if x < a + 1 {
        // P(a, x) = e^{-x} x^a / Γ(a) · Σ_n x^n / (a (a+1) … (a+n))
        var term = 1 / a, sum = term, ap = a
        for _ in 0..<10_000 {
            ap += 1
            term *= x / ap
            sum += term
            if abs(term) < abs(sum) * 1e-16 { break }
        }
        return max(0, 1 - sum * exp(logPrefix))
    }
    // Q(a, x) = e^{-x} x^a / Γ(a) · 1 / (x + 1 − a − 1·(1−a) / (x + 3 − a − …))
    let tiny = 1e-300
    var b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d
    for i in 1..<10_000 {
        let an = -Double(i) * (Double(i) - a)
        b += 2
        d = an * d + b
        if abs(d) < tiny { d = tiny }
        c = b + an / c
        if abs(c) < tiny { c = tiny }
        d = 1 / d
        let delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16 { break }
    }
    return exp(logPrefix) * h
}

/// `P(X² ≥ statistic)` for `dof` degrees of freedom.
public func chiSquareSurvival(_ statistic: Double, degreesOfFreedom dof: Int) -> Double {
    regularizedUpperGamma(Double(dof) / 2, max(statistic, 0) / 2)
}

/// Pearson's test of `counts` (per token) against `expected` probabilities (summing to 1 over
/// the tokens that can be drawn). Tokens whose expected count is below `minExpected` are pooled
/// into one bin (and that bin into the smallest other bin if it is still below), so the chi-square
/// approximation holds. A count on a token of expected probability 0 is not a chi-square matter:
/// check the support separately (it gives an infinite statistic here, p = 0).
public func chiSquareTest(counts: [Int], expected: [Double], minExpected: Double = 5) -> ChiSquareResult {
    precondition(counts.count == expected.count)
    let n = Double(counts.reduce(0, +))
    var bins: [(observed: Double, expected: Double)] = []
    var pooled = (observed: 0.0, expected: 0.0)
    for (c, p) in zip(counts, expected) {
        if p <= 0 {
            if c > 0 { return ChiSquareResult(statistic: .infinity, degreesOfFreedom: max(1, counts.count - 1), pValue: 0) }
            continue
        }
        if n * p < minExpected { pooled.observed += Double(c); pooled.expected += n * p } else { bins.append((Double(c), n * p)) }
    }
    if pooled.expected > 0 {
        if pooled.expected >= minExpected || bins.isEmpty {
            bins.append(pooled)
        } else {
            let i = bins.indices.min { bins[$0].expected < bins[$1].expected }!
            bins[i].observed += pooled.observed
            bins[i].expected += pooled.expected
        }
    }
    guard bins.count > 1 else { return ChiSquareResult(statistic: 0, degreesOfFreedom: 0, pValue: 1) }
    let stat = bins.reduce(0.0) { $0 + ($1.observed - $1.expected) * ($1.observed - $1.expected) / $1.expected }
    let dof = bins.count - 1
    return ChiSquareResult(statistic: stat, degreesOfFreedom: dof, pValue: chiSquareSurvival(stat, degreesOfFreedom: dof))
}
