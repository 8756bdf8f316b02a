import FlashInferCUDA

/// A per-row parameter of a sampling op: one value for every row (upstream's Python scalar), one
/// value per row from the host (upstream's `[batch_size]` tensor, uploaded by the call), or one
/// value per row already in device memory (upstream's CUDA tensor: read by the kernel where it
/// runs).
///
/// Literals make the scalar case: `topK: 50`, `topP: 0.9`.
public enum RowParameter<Value: Sendable & Equatable>: Sendable, Equatable {
    case scalar(Value)
    case perRow([Value])
    /// `batch_size` values in device memory — Int32 for top-k, Float32 for top-p, min-p and the
    /// temperature — read by the kernel when it runs (CUDA backend only). Nothing is uploaded and
    /// nothing waits for the host, so the call can be captured into a CUDA graph whose replays read
    /// the values the buffer holds then. The buffer is ordered on the call's stream like the op's
    /// input. As upstream, the values are **not validated** (that would need the host to read them):
    /// a top-k below 1 acts as 1; a top-p that is not above 0 (NaN included) keeps only the largest
    /// probabilities; a min-p outside [0, 1] filters as the kernel's test `p ≥ min_p · max p` gives;
    /// a temperature that is not above 0 gives NaN rows.
    case device(DeviceBuffer)

    /// The value for `row` (a `perRow` array's length is validated against the batch first). Host
    /// values only: a `.device` parameter is read by the kernel, never here.
    public func value(row: Int) -> Value {
        switch self {
        case .scalar(let v): v
        case .perRow(let vs): vs[row]
        case .device: preconditionFailure("RowParameter.value(row:) on values in device memory (the CUDA backend reads them)")
        }
    }

    /// Every host value (the scalar once; none for `.device`: not read on the host).
    var values: [Value] {
        switch self {
        case .scalar(let v): [v]
        case .perRow(let vs): vs
        case .device: []
        }
    }

    public static func == (a: RowParameter, b: RowParameter) -> Bool {
        switch (a, b) {
        case (.scalar(let x), .scalar(let y)): x == y
        case (.perRow(let x), .perRow(let y)): x == y
        case (.device(let x), .device(let y)): x === y
        default: false
        }
    }
}

extension RowParameter: ExpressibleByIntegerLiteral where Value == Int {
    public init(integerLiteral value: Int) { self = .scalar(value) }
}

extension RowParameter: ExpressibleByFloatLiteral where Value == Double {
    public init(floatLiteral value: Double) { self = .scalar(value) }
}

/// How `topKTopPSamplingFromProbs` combines its filters (upstream's `filter_apply_order`).
public enum FilterApplyOrder: String, Sendable, Hashable, CaseIterable {
    /// Top-k first, renormalize, then top-p on the renormalized probabilities (upstream's default:
    /// `top_k_renorm_probs` then `top_p_sampling_from_probs`).
    case topKFirst = "top_k_first"
    /// One pass on the original probabilities: a token is kept when it passes both the top-k
    /// count test and the top-p mass test (upstream's joint dual-pivot kernel).
    case joint
}

/// The distribution a sampler draws from: which tokens it keeps (then renormalized).
///
/// The exact supports, on a row `p` (Float64), with `count(j) = #{i : p_i > p_j}` and
/// `mass(j) = Σ_{p_i > p_j} p_i` (both strict, so equal probabilities are kept or dropped together);
/// every filter also drops tokens with `p_j ≤ 0`:
/// - `.none`: every token with `p_j > 0`;
/// - `.topK(k)`: `count(j) < k` (the dual-pivot count test, upstream's "accept when
///   `count(p > pivot0) < k`"), so ties at the k-th value keep them all (possibly more than k);
/// - `.topP(p)`: `mass(j) < p` (upstream's "accept when `S(pivot0) < top_p`"): the smallest
///   prefix of the sorted row whose mass reaches `p`, ties at the boundary kept; `p = 1` keeps all;
/// - `.minP(m)`: `p_j ≥ m · max_i p_i` (upstream's `pivot = max_p·min_p`, `p ≥ pivot`);
/// - `.topKTopP(k, p, .topKFirst)`: top-k, renormalize, then top-p on the renormalized row;
/// - `.topKTopP(k, p, .joint)`: `count(j) < k` and `mass(j) < p` on the original row.
/// The masses are absolute: rows are taken to be probabilities (summing to 1), as upstream's
/// kernels take them.
public enum SamplingFilter: Sendable, Equatable {
    case none
    case topK(RowParameter<Int>)
    case topP(RowParameter<Double>)
    case minP(RowParameter<Double>)
    case topKTopP(topK: RowParameter<Int>, topP: RowParameter<Double>, order: FilterApplyOrder)
}
