import Testing

@testable import FlashInfer
import FlashInferTesting

@Suite struct MergeStateTests {
    /// Attention over keys [0, kv) split at `cut`: merging the two halves' states equals the whole.
    static func halves(cut: Int, kv: Int = 40, n: Int = 3, h: Int = 4, d: Int = 64, seed: UInt64 = 5)
        throws -> (a: ReferenceAttention.Result, b: ReferenceAttention.Result, whole: ReferenceAttention.Result)
    {
        var rng = TestRNG(seed: seed)
        func randn(_ c: Int) -> [Float] { (0..<c).map { _ in Float(rng.unit() * 2 - 1) } }
        let q = randn(n * h * d), k = randn(kv * h * d), v = randn(kv * h * d)
        func run(_ lo: Int, _ hi: Int) throws -> ReferenceAttention.Result {
            try ReferenceAttention.prefill(q: q, k: Array(k[(lo * h * d)..<(hi * h * d)]), v: Array(v[(lo * h * d)..<(hi * h * d)]),
                                           qoLen: n, kvLen: hi - lo, numQOHeads: h, numKVHeads: h, headDim: d, options: .init())
        }
        return (try run(0, cut), try run(cut, kv), try run(0, kv))
    }

    @Test(arguments: [0, 1, 17, 40])
    func mergingHalvesGivesTheWhole(cut: Int) throws {
        let (a, b, whole) = try Self.halves(cut: cut)
        let (n, h, d) = (3, 4, 64)
        let (v, s) = try mergeState(va: Tensor.host(a.output, shape: [n, h, d], dtype: .f16), sa: Tensor.host(a.lse, shape: [n, h], dtype: .f32),
                                    vb: Tensor.host(b.output, shape: [n, h, d], dtype: .f16), sb: Tensor.host(b.lse, shape: [n, h], dtype: .f32))
        #expect(Tolerance.f16.compare(try v.toFloats(), whole.output.map { DType.f16.roundTrip($0) }) == nil)
        #expect(Tolerance(atol: 1e-4, rtol: 1e-4).compare(try s.toFloats(), whole.lse) == nil)
    }

    @Test func twoEmptyStatesMergeToZeroAndMinusInf() throws {
        let inf = Tensor.host([Float](repeating: -.infinity, count: 2), shape: [1, 2], dtype: .f32)
        let v = Tensor.host([Float](repeating: 3, count: 16), shape: [1, 2, 8], dtype: .bf16)
        let (mv, ms) = try mergeState(va: v, sa: inf, vb: v, sb: inf)
        #expect(try mv.toFloats().allSatisfy { $0 == 0 })
        #expect(try ms.toFloats().allSatisfy { $0 == -.infinity })
        let (nv, ns) = try mergeStates(v: Tensor.host([], shape: [2, 0, 2, 8], dtype: .f16), s: Tensor.host([], shape: [2, 0, 2], dtype: .f32))
        #expect(try nv.toFloats().allSatisfy { $0 == 0 } && ns.toFloats().allSatisfy { $0 == -.infinity })
    }

    @Test func inPlaceWithMaskLeavesMaskedRowsAlone() throws {
        let (a, b, whole) = try Self.halves(cut: 13)
        let (n, h, d) = (3, 4, 64)
        let v = Tensor.host(a.output, shape: [n, h, d], dtype: .f16), s = Tensor.host(a.lse, shape: [n, h], dtype: .f32)
        let before = try v.toFloats()
        try mergeStateInPlace(v: v, s: s, vOther: Tensor.host(b.output, shape: [n, h, d], dtype: .f16),
                              sOther: Tensor.host(b.lse, shape: [n, h], dtype: .f32), mask: [1, 0, 1])
        let after = try v.toFloats(), lse = try s.toFloats()
        let row = h * d
        #expect(Array(after[row..<(2 * row)]) == Array(before[row..<(2 * row)]))
        #expect(Array(lse[h..<(2 * h)]) == Array(a.lse[h..<(2 * h)]))
        #expect(Tolerance.f16.compare(Array(after[0..<row]), Array(whole.output[0..<row]).map { DType.f16.roundTrip($0) }) == nil)
        #expect(Tolerance.f16.compare(Array(after[(2 * row)...]), Array(whole.output[(2 * row)...]).map { DType.f16.roundTrip($0) }) == nil)
    }

    @Test func nAryMergeOfFourChunksGivesTheWhole() throws {
        var rng = TestRNG(seed: 11)
        let (n, h, d, kv, parts) = (2, 2, 64, 64, 4)
        func randn(_ c: Int) -> [Float] { (0..<c).map { _ in Float(rng.unit() * 2 - 1) } }
        let q = randn(n * h * d), k = randn(kv * h * d), v = randn(kv * h * d)
        let chunk = kv / parts
        var vs = [Float](repeating: 0, count: n * parts * h * d), ss = [Float](repeating: 0, count: n * parts * h)
        for p in 0..<parts {
            let r = try ReferenceAttention.prefill(q: q, k: Array(k[(p * chunk * h * d)..<((p + 1) * chunk * h * d)]),
                                                   v: Array(v[(p * chunk * h * d)..<((p + 1) * chunk * h * d)]),
                                                   qoLen: n, kvLen: chunk, numQOHeads: h, numKVHeads: h, headDim: d, options: .init())
            for pos in 0..<n {
                for head in 0..<h {
                    ss[(pos * parts + p) * h + head] = r.lse[pos * h + head]
                    for i in 0..<d { vs[((pos * parts + p) * h + head) * d + i] = r.output[(pos * h + head) * d + i] }
                }
            }
        }
        let whole = try ReferenceAttention.prefill(q: q, k: k, v: v, qoLen: n, kvLen: kv, numQOHeads: h, numKVHeads: h, headDim: d, options: .init())
        let (mv, ms) = try mergeStates(v: Tensor.host(vs, shape: [n, parts, h, d], dtype: .f16), s: Tensor.host(ss, shape: [n, parts, h], dtype: .f32))
        #expect(Tolerance.f16.compare(try mv.toFloats(), whole.output.map { DType.f16.roundTrip($0) }) == nil)
        #expect(Tolerance(atol: 1e-4, rtol: 1e-4).compare(try ms.toFloats(), whole.lse) == nil)
    }

    @Test func validation() {
        let v = Tensor.host([Float](repeating: 0, count: 2 * 2 * 8), shape: [2, 2, 8], dtype: .f16)
        let s = Tensor.host([Float](repeating: 0, count: 4), shape: [2, 2], dtype: .f32)
        #expect(throws: FlashInferError.dtype(tensor: "sa", expected: "f32", got: .f16)) {
            _ = try mergeState(va: v, sa: Tensor.host([0, 0, 0, 0], shape: [2, 2], dtype: .f16), vb: v, sb: s)
        }
        #expect(throws: FlashInferError.rank(tensor: "va", expected: 3, got: 2)) { _ = try mergeState(va: s, sa: s, vb: v, sb: s) }
        #expect(throws: FlashInferError.shape(tensor: "mask", axis: 0, name: "positions", expected: "2", got: 3)) {
            try mergeStateInPlace(v: v, s: s, vOther: v, sOther: s, mask: [1, 1, 1])
        }
        #expect(throws: FlashInferError.self) {
            _ = try mergeState(va: v, sa: s, vb: Tensor.host([Float](repeating: 0, count: 3 * 2 * 8), shape: [3, 2, 8], dtype: .f16), sb: s)
        }
    }
}

extension MergeStateTests {
    /// Upstream copies a single state as is, even an empty one's output (regression: the GPU
    /// kernel returned 0 for an empty single state while the CPU copied).
    @Test func oneStateIsACopyEvenWhenEmpty() throws {
        let v = Tensor.host([1, 2, 3, 4, 5, 6, 7, 8], shape: [1, 1, 1, 8], dtype: .f16)
        let s = Tensor.host([-.infinity], shape: [1, 1, 1], dtype: .f32)
        let (mv, ms) = try mergeStates(v: v, s: s)
        #expect(try mv.toFloats() == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(try ms.toFloats() == [-.infinity])
    }
}
