/// Validation of the sampling ops (pure, before any work): the input is a `[batch_size, vocab_size]`
/// floating tensor where the backend computes, and every parameter is in its range with one value
/// or `batch_size` values. (The CUDA backend also checks the rows' layout: `requireSamplingLayout`.)

/// Checks the backend and `x` (`name`: "probs" or "logits"); returns `(batch, vocab)`.
func validateSamplingInput(_ x: Tensor, name: String, entry: String, backend: Backend) throws(FlashInferError) -> (batch: Int, vocab: Int) {
    let impl = backend.implementation
    try checkPlacement([(name, x)], impl.placement)
    guard x.rank == 2 else { throw .rank(tensor: name, expected: 2, got: x.rank) }
    guard x.dtype == .f32 || x.dtype == .f16 || x.dtype == .bf16 else {
        throw .dtype(tensor: name, expected: "float32, float16 or bfloat16", got: x.dtype)
    }
    guard x.shape[1] >= 1 else { throw .shape(tensor: name, axis: 1, name: "vocab_size", expected: ">= 1", got: x.shape[1]) }
    return (x.shape[0], x.shape[1])
}

/// A per-row array has `batch` entries.
func validateRowCount<V>(_ p: RowParameter<V>, name: String, batch: Int) throws(FlashInferError) {
    if case .perRow(let vs) = p, vs.count != batch {
        throw .shape(tensor: name, axis: 0, name: "batch_size", expected: "\(batch)", got: vs.count)
    }
}

func validateTopK(_ k: RowParameter<Int>, batch: Int) throws(FlashInferError) {
    try validateRowCount(k, name: "top_k", batch: batch)
    for v in k.values where v < 1 { throw .option(name: "top_k", value: "\(v)", rule: "must be >= 1") }
}

func validateTopP(_ p: RowParameter<Double>, batch: Int) throws(FlashInferError) {
    try validateRowCount(p, name: "top_p", batch: batch)
    for v in p.values where !(v > 0 && v <= 1) { throw .option(name: "top_p", value: "\(v)", rule: "must be in (0, 1]") }
}

func validateMinP(_ p: RowParameter<Double>, batch: Int) throws(FlashInferError) {
    try validateRowCount(p, name: "min_p", batch: batch)
    for v in p.values where !(v >= 0 && v <= 1) { throw .option(name: "min_p", value: "\(v)", rule: "must be in [0, 1]") }
}

func validateTemperature(_ t: RowParameter<Double>, batch: Int) throws(FlashInferError) {
    try validateRowCount(t, name: "temperature", batch: batch)
    for v in t.values where !(v > 0 && v.isFinite) { throw .option(name: "temperature", value: "\(v)", rule: "must be finite and > 0") }
}

func validateFilter(_ f: SamplingFilter, batch: Int) throws(FlashInferError) {
    switch f {
    case .none: break
    case .topK(let k): try validateTopK(k, batch: batch)
    case .topP(let p): try validateTopP(p, batch: batch)
    case .minP(let m): try validateMinP(m, batch: batch)
    case .topKTopP(let k, let p, _):
        try validateTopK(k, batch: batch)
        try validateTopP(p, batch: batch)
    }
}
