/// Validation of the sampling ops (pure, before any work): the input is a `[batch_size, vocab_size]`
/// floating tensor where the backend computes, and every parameter is in its range with one value
/// or `batch_size` values. (The CUDA backend also checks the rows' layout: `requireSamplingLayout`.)

/// Checks the backend and `x` (`name`: "probs" or "logits"); returns `(batch, vocab)`.
func validateSamplingInput(_ x: Tensor, name: String, entry: String, backend: Backend) throws(FlashInferError) -> (batch: Int, vocab: Int) {
    let impl = backend.implementation
    try checkPlacement(name, x, impl.placement)
    guard x.rank == 2 else { throw .rank(tensor: name, expected: 2, got: x.rank) }
    guard x.dtype == .f32 || x.dtype == .f16 || x.dtype == .bf16 else {
        throw .dtype(tensor: name, expected: "float32, float16 or bfloat16", got: x.dtype)
    }
    guard x.shape[1] >= 1 else { throw .shape(tensor: name, axis: 1, name: "vocab_size", expected: ">= 1", got: x.shape[1]) }
    return (x.shape[0], x.shape[1])
}

/// A per-row array has `batch` entries; per-row values in device memory hold `batch` 4-byte
/// values on the device the op runs on (`placement`; the CPU backend reads host values only).
func validateRowCount<V>(_ p: RowParameter<V>, name: String, batch: Int, placement: Placement) throws(FlashInferError) {
    switch p {
    case .scalar: break
    case .perRow(let vs):
        guard vs.count == batch else { throw .shape(tensor: name, axis: 0, name: "batch_size", expected: "\(batch)", got: vs.count) }
    case .device(let b):
        switch placement {
        case .host: throw .placement(tensor: name, expected: "host values (per-row values in device memory need the CUDA backend)")
        case .device(let d): guard b.device === d else { throw .deviceMismatch(tensor: name) }
        }
        guard b.byteCount >= 4 * batch else {
            throw .shape(tensor: name, axis: 0, name: "batch_size (4-byte values)", expected: ">= \(batch)", got: b.byteCount / 4)
        }
    }
}

func validateTopK(_ k: RowParameter<Int>, batch: Int, placement: Placement) throws(FlashInferError) {
    try validateRowCount(k, name: "top_k", batch: batch, placement: placement)
    for v in k.values where v < 1 { throw .option(name: "top_k", value: "\(v)", rule: "must be >= 1") }
}

func validateTopP(_ p: RowParameter<Double>, batch: Int, placement: Placement) throws(FlashInferError) {
    try validateRowCount(p, name: "top_p", batch: batch, placement: placement)
    for v in p.values where !(v > 0 && v <= 1) { throw .option(name: "top_p", value: "\(v)", rule: "must be in (0, 1]") }
}

func validateMinP(_ p: RowParameter<Double>, batch: Int, placement: Placement) throws(FlashInferError) {
    try validateRowCount(p, name: "min_p", batch: batch, placement: placement)
    for v in p.values where !(v >= 0 && v <= 1) { throw .option(name: "min_p", value: "\(v)", rule: "must be in [0, 1]") }
}

func validateTemperature(_ t: RowParameter<Double>, batch: Int, placement: Placement) throws(FlashInferError) {
    try validateRowCount(t, name: "temperature", batch: batch, placement: placement)
    for v in t.values where !(v > 0 && v.isFinite) { throw .option(name: "temperature", value: "\(v)", rule: "must be finite and > 0") }
}

func validateFilter(_ f: SamplingFilter, batch: Int, placement: Placement) throws(FlashInferError) {
    switch f {
    case .none: break
    case .topK(let k): try validateTopK(k, batch: batch, placement: placement)
    case .topP(let p): try validateTopP(p, batch: batch, placement: placement)
    case .minP(let m): try validateMinP(m, batch: batch, placement: placement)
    case .topKTopP(let k, let p, _):
        try validateTopK(k, batch: batch, placement: placement)
        try validateTopP(p, batch: batch, placement: placement)
    }
}

/// A renorm / mask / softmax op's parameter.
func validateOp(_ op: SamplingOp, batch: Int, placement: Placement) throws(FlashInferError) {
    switch op {
    case .topKRenorm(let k), .topKMaskLogits(let k): try validateTopK(k, batch: batch, placement: placement)
    case .topPRenorm(let p): try validateTopP(p, batch: batch, placement: placement)
    case .softmax(let t): try validateTemperature(t, batch: batch, placement: placement)
    }
}
