import FlashInferCUDA

/// The sampling ops on the CPU backend: the Float64 reference (`SamplingReference`), row by row.
extension CPUBackend {
    /// One inverse-CDF draw per row from the exact filtered distribution, with the row's first
    /// Philox uniform (`PhiloxStream(seed, row, offset)`). A generator (host memory) is read once
    /// and advanced by the call's increment, as the CUDA backend's device generator is.
    func sample(_ probs: Tensor, filter: SamplingFilter, philox: PhiloxSource, batch: Int, vocab: Int) throws(FlashInferError) -> SamplingOutput {
        let rows = try samplingRows(probs, batch: batch, vocab: vocab)
        let (seed, offset) = philox.hostValues()
        var out = SamplingOutput(samples: [], valid: [])
        for (b, row) in rows.enumerated() {
            var rng = PhiloxStream(seed: seed, subsequence: UInt64(b), offset: offset)
            let q = SamplingReference.distribution(row, filter: filter, row: b)
            let token = SamplingReference.draw(q, u: rng.uniform())
            out.samples.append(Int32(token ?? 0))
            out.valid.append(token != nil)
        }
        return out
    }

    /// Gumbel-max with upstream's per-element Philox uniforms (`SamplingReference.gumbelArgmax`).
    func samplingFromLogits(_ logits: Tensor, philox: PhiloxSource, batch: Int, vocab: Int) throws(FlashInferError) -> SamplingOutput {
        let flat: [Float] = try FlashInferError.wrap { () throws(CUDAError) -> [Float] in try logits.toFloats() }
        let (seed, offset) = philox.hostValues()
        var out = SamplingOutput(samples: [], valid: [])
        for b in 0..<batch {
            let token = SamplingReference.gumbelArgmax(Array(flat[(b * vocab)..<((b + 1) * vocab)]), row: b, seed: seed, offset: offset)
            out.samples.append(Int32(token ?? 0))
            out.valid.append(token != nil)
        }
        return out
    }

    func chainSpeculativeSampling(_ call: ChainSpeculativeCall) throws(FlashInferError) -> ChainSpeculativeOutput {
        let (draft, target) = try FlashInferError.wrap { () throws(CUDAError) in (try call.draftProbs.toFloats(), try call.targetProbs.toFloats()) }
        let (n, v) = (call.numDraft, call.vocab)
        let (seed, offset) = call.philox.hostValues()
        var out = ChainSpeculativeOutput(outputTokenIds: [], acceptedTokenNum: [], emittedDraftTokenNum: [])
        for b in 0..<call.batch {
            let d = (0..<n).map { Array(draft[((b * n + $0) * v)..<((b * n + $0 + 1) * v)]) }
            let t = (0...n).map { Array(target[((b * (n + 1) + $0) * v)..<((b * (n + 1) + $0 + 1) * v)]) }
            var s = PhiloxStream(seed: seed, subsequence: UInt64(b), offset: offset)
            let r = SamplingReference.chainSpeculative(draft: d, ids: Array(call.draftTokenIds[(b * n)..<((b + 1) * n)]), target: t, stream: &s)
            out.outputTokenIds += r.tokens
            out.acceptedTokenNum.append(Int32(r.accepted))
            out.emittedDraftTokenNum.append(Int32(r.emitted))
        }
        return out
    }

    func samplingOp(_ op: SamplingOp, _ x: Tensor, batch: Int, vocab: Int) throws(FlashInferError) -> Tensor {
        samplingTensor(try samplingRows(x, batch: batch, vocab: vocab).enumerated().map { op.reference($1, row: $0) }, like: x)
    }
}
