#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The attention state of one (query row, head): the softmax-weighted output over a set of keys
/// and the **base-2** log-sum-exp of their logits, `lse = log2(Σ_j exp(logit_j))`.
///
/// States over disjoint key sets merge exactly into the state over their union; the operator is
/// commutative and associative. This is upstream's `state_t::merge` / `MergeStateKernel`
/// (`attention/cascade.cuh`), term by term, so CPU and GPU merges can be compared directly.
/// The empty state (no keys) is output 0, `lse = −inf`.
public struct AttentionState: Sendable, Hashable {
    /// `[headDim]`: `Σ softmax(logit_j) · v_j`.
    public var output: [Double]
    /// Base-2 log-sum-exp of the logits; `-inf` for an empty key set.
    public var lse: Double

    public init(output: [Double], lse: Double) {
        self.output = output
        self.lse = lse
    }

    /// The state over no keys: output 0, `lse = −inf`.
    public static func empty(headDim: Int) -> AttentionState {
        AttentionState(output: Array(repeating: 0, count: headDim), lse: -.infinity)
    }

    /// Upstream's merge:
    /// ```
    /// s_max = max(s_a, s_b)
    /// w_a = exp2(s_a − s_max), w_b = exp2(s_b − s_max)   // (−inf) − (−inf) = NaN counts as weight 0
    /// d   = w_a + w_b
    /// v   = d > 0 ? (w_a/d)·v_a + (w_b/d)·v_b : 0
    /// s   = log2(d) + s_max
    /// ```
    /// Upstream writes the guard as `exp2(max(s − s_max, −inf))`, where CUDA's `fmaxf` turns NaN
    /// into −inf; here a NaN difference gives weight 0 explicitly. Two empty states therefore
    /// merge to output 0 and `lse = −inf`, never NaN.
    /// - Precondition: both outputs have the same length.
    public static func merge(_ a: AttentionState, _ b: AttentionState) -> AttentionState {
        precondition(a.output.count == b.output.count, "AttentionState.merge: head dims differ")
        let sMax = max(a.lse, b.lse)
        let wa = weight(a.lse - sMax)
        let wb = weight(b.lse - sMax)
        let d = wa + wb
        var out = Array(repeating: 0.0, count: a.output.count)
        if d > 0 {
            let ca = wa / d, cb = wb / d
            for i in 0..<out.count { out[i] = ca * a.output[i] + cb * b.output[i] }
        }
        return AttentionState(output: out, lse: log2(d) + sMax)
    }

    /// Merges `other` into `self`.
    public mutating func merge(_ other: AttentionState) {
        self = Self.merge(self, other)
    }

    /// N-ary merge, left to right. Zero states give the empty state; one state is returned as is.
    public static func merge(_ states: [AttentionState], headDim: Int) -> AttentionState {
        guard var acc = states.first else { return .empty(headDim: headDim) }
        for s in states.dropFirst() { acc.merge(s) }
        return acc
    }

    @inline(__always) private static func weight(_ diff: Double) -> Double {
        diff.isNaN ? 0 : exp2(diff)
    }
}
