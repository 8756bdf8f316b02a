#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import FlashInfer

/// RoPE: hand cases, the interleaved/NeoX permutation identity, norm preservation, partial rotary
/// dims, Llama 3.1 frequency scaling, `applyRope`'s positions, and validation.
@Suite struct RopeTests {
    typealias E = FlashInferError
    static func t(_ v: [Float], _ shape: [Int]) -> Tensor { Tensor.host(v, shape: shape, dtype: .f32) }
    static func close(_ a: [Float], _ b: [Double], tol: Double = 2e-6) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - $1) <= tol * max(1, abs($1)) }
    }

    @Test func handCases() throws {
        // D 4, theta 100: freqs [1, 0.1]. NeoX pairs (0,2), (1,3).
        let opts = RopeOptions(theta: 100)
        let q = Self.t([1, 0, 0, 0, 0, 1, 0, 0], [2, 1, 4])
        let (rq, _) = try applyRopePosIds(q: q, k: q, posIds: [0, 3], options: opts)
        let out = try rq.toFloats()
        #expect(Array(out[0..<4]) == [1, 0, 0, 0], "position 0 is the identity")
        #expect(Self.close(Array(out[4..<8]), [0, cos(0.3), 0, sin(0.3)]))
        // Interleaved pairs (0,1), (2,3).
        let (iq, _) = try applyRopePosIds(q: Self.t([1, 0, 0, 0], [1, 1, 4]), k: Self.t([1, 0, 0, 0], [1, 1, 4]), posIds: [2],
                                          options: RopeOptions(interleave: true, theta: 100))
        #expect(Self.close(try iq.toFloats(), [cos(2.0), sin(2.0), 0, 0]))
        // rope_scale 2 halves the angles.
        let (sq, _) = try applyRopePosIds(q: Self.t([1, 0, 0, 0], [1, 1, 4]), k: Self.t([1, 0, 0, 0], [1, 1, 4]), posIds: [2],
                                          options: RopeOptions(theta: 100, scaling: .linear(scale: 2)))
        #expect(Self.close(try sq.toFloats(), [cos(1.0), 0, sin(1.0), 0]))
    }

    @Test func interleavedIsNeoXOnPermutedDims() throws {
        var rng = TestRNG(seed: 31)
        let (nnz, h, d) = (5, 3, 16)
        let x = (0..<(nnz * h * d)).map { _ in Float(rng.unit() * 2 - 1) }
        // perm: NeoX position i ↔ interleaved 2i, NeoX i + d/2 ↔ interleaved 2i + 1.
        let perm = (0..<d).map { $0 < d / 2 ? 2 * $0 : 2 * ($0 - d / 2) + 1 }
        let permuted = (0..<(nnz * h)).flatMap { r in perm.map { x[r * d + $0] } }
        let pos: [Int32] = [0, 7, 100, 4095, 12]
        let (a, _) = try applyRopePosIds(q: Self.t(x, [nnz, h, d]), k: Self.t(x, [nnz, h, d]), posIds: pos, options: RopeOptions(interleave: true))
        let (b, _) = try applyRopePosIds(q: Self.t(permuted, [nnz, h, d]), k: Self.t(permuted, [nnz, h, d]), posIds: pos)
        let av = try a.toFloats(), bv = try b.toFloats()
        let aPermuted = (0..<(nnz * h)).flatMap { r in perm.map { av[r * d + $0] } }
        #expect(Self.close(aPermuted, bv.map(Double.init)))
    }

    @Test func preservesPairNormsAndPartialDims() throws {
        var rng = TestRNG(seed: 32)
        let (nnz, h, d, rd) = (4, 2, 8, 4)
        let x = (0..<(nnz * h * d)).map { _ in Float(rng.unit() * 2 - 1) }
        let kx = (0..<(nnz * 1 * d)).map { _ in Float(rng.unit() * 2 - 1) }
        let (q, k) = try applyRopePosIds(q: Self.t(x, [nnz, h, d]), k: Self.t(kx, [nnz, 1, d]), posIds: [1, 2, 3, 1000],
                                         options: RopeOptions(rotaryDim: rd))
        #expect(k.shape == [nnz, 1, d])
        let qv = try q.toFloats()
        for r in 0..<(nnz * h) {
            for i in 0..<(rd / 2) {
                let before = hypot(Double(x[r * d + i]), Double(x[r * d + i + rd / 2]))
                let after = hypot(Double(qv[r * d + i]), Double(qv[r * d + i + rd / 2]))
                #expect(abs(before - after) < 1e-6)
            }
            #expect(Array(qv[(r * d + rd)..<((r + 1) * d)]) == Array(x[(r * d + rd)..<((r + 1) * d)]), "dims past rotary_dim are copied")
        }
    }

    @Test func llama31Frequencies() {
        let s = RopeScaling.llama31Default  // scale 8, low 1, high 4, old 8192
        // Wavelength 2π/f: < 8192/4 = 2048 keeps f; > 8192 divides by 8; between, interpolates.
        let high = 2 * Double.pi / 1000, low = 2 * Double.pi / 10000, mid = 2 * Double.pi / 4096
        #expect(s.apply(high) == high)
        #expect(abs(s.apply(low) - low / 8) < 1e-18)
        // mid: smooth = (8192/4096 − 1) / (4 − 1) = 1/3.
        #expect(abs(s.apply(mid) - ((2.0 / 3) * mid / 8 + mid / 3)) < 1e-15)
    }

    @Test func applyRopeUsesOffsetsWithinRequests() throws {
        var rng = TestRNG(seed: 33)
        let (nnz, h, d) = (6, 2, 8)
        let x = (0..<(nnz * h * d)).map { _ in Float(rng.unit()) }
        let q = Self.t(x, [nnz, h, d])
        let (a, _) = try applyRope(q: q, k: q, indptr: [0, 2, 2, 6], offsets: [5, 9, 0])
        let (b, _) = try applyRopePosIds(q: q, k: q, posIds: [5, 6, 0, 1, 2, 3])
        #expect(try a.toFloats() == b.toFloats())
    }

    @Test func validation() {
        let q = Self.t(Array(repeating: 1, count: 16), [2, 1, 8])
        #expect(throws: E.shape(tensor: "pos_ids", axis: 0, name: "nnz", expected: "2 (q's)", got: 1)) { try applyRopePosIds(q: q, k: q, posIds: [0]) }
        #expect(throws: E.option(name: "rotary_dim", value: "3", rule: "must be even and in 2...8 (head_dim)")) {
            try applyRopePosIds(q: q, k: q, posIds: [0, 1], options: RopeOptions(rotaryDim: 3))
        }
        #expect(throws: E.option(name: "rotary_dim", value: "10", rule: "must be even and in 2...8 (head_dim)")) {
            try applyRopePosIds(q: q, k: q, posIds: [0, 1], options: RopeOptions(rotaryDim: 10))
        }
        #expect(throws: E.option(name: "rope_scale", value: "0.0", rule: "must be finite and > 0")) {
            try applyRopePosIds(q: q, k: q, posIds: [0, 1], options: RopeOptions(scaling: .linear(scale: 0)))
        }
        #expect(throws: E.shape(tensor: "k", axis: 2, name: "head_dim", expected: "8 (q's)", got: 4)) {
            try applyRopePosIds(q: q, k: Self.t(Array(repeating: 1, count: 8), [2, 1, 4]), posIds: [0, 1])
        }
        #expect(throws: E.shape(tensor: "offsets", axis: 0, name: "batch_size", expected: "1 (len(indptr) − 1)", got: 2)) {
            try applyRope(q: q, k: q, indptr: [0, 2], offsets: [0, 0])
        }
        #expect(throws: E.indices(array: "indptr", position: 0, rule: "must start at 0, got 1")) { try applyRope(q: q, k: q, indptr: [1, 2], offsets: [0]) }
    }
}
