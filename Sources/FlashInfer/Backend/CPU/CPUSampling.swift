/// The sampling ops on the CPU backend: the Float64 reference (`SamplingReference`), row by row.
extension CPUBackend {
    /// One inverse-CDF draw per row from the exact filtered distribution, with the row's first
    /// Philox uniform (`PhiloxStream(seed, row, offset)`).
    func sample(_ probs: Tensor, filter: SamplingFilter, seed: UInt64, offset: UInt64, batch: Int, vocab: Int) throws(FlashInferError) -> SamplingOutput {
        var out = SamplingOutput(samples: [], valid: [])
        for (b, row) in try samplingRows(probs, batch: batch, vocab: vocab).enumerated() {
            var rng = PhiloxStream(seed: seed, subsequence: UInt64(b), offset: offset)
            let q = SamplingReference.distribution(row, filter: filter, row: b)
            let token = SamplingReference.draw(q, u: rng.uniform())
            out.samples.append(Int32(token ?? 0))
            out.valid.append(token != nil)
        }
        return out
    }

    func samplingOp(_ op: SamplingOp, _ x: Tensor, batch: Int, vocab: Int) throws(FlashInferError) -> Tensor {
        samplingTensor(try samplingRows(x, batch: batch, vocab: vocab).enumerated().map { op.reference($1, row: $0) }, like: x)
    }
}
