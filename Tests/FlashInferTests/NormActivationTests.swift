import FlashInferCUDA
#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import FlashInfer

/// RMSNorm (plain, fused-add, Gemma) and the gated activations: hand-computed cases, random rows
/// against the formulas written out, and validation.
@Suite struct NormActivationTests {
    typealias E = FlashInferError
    static func t(_ v: [Float], _ shape: [Int], _ dtype: DType = .f32) -> Tensor { Tensor.host(v, shape: shape, dtype: dtype) }

    static func close(_ a: [Float], _ b: [Double], tol: Double = 1e-6) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - $1) <= tol * max(1, abs($1)) }
    }

    @Test func rmsnormByHand() throws {
        let w = Self.t([1, 2, 3, 4], [4])
        // mean(x²) = 4 → rms 2.
        #expect(try rmsnorm(Self.t([2, -2, 2, -2, 1, 1, 1, 1], [2, 4]), weight: w, eps: 0).toFloats() == [1, -2, 3, -4, 1, 2, 3, 4])
        // mean(x²) = 1, eps 3 → rms 2.
        #expect(try rmsnorm(Self.t([1, 1, 1, 1], [1, 4]), weight: w, eps: 3).toFloats() == [0.5, 1, 1.5, 2])
        // Gemma stores w − 1.
        let wg = Self.t([0, 1, 2, 3], [4])
        #expect(try gemmaRMSNorm(Self.t([2, -2, 2, -2], [1, 4]), weight: wg, eps: 0).toFloats() == [1, -2, 3, -4])
        // Leading axes are rows.
        #expect(try rmsnorm(Self.t([2, -2, 2, -2, 1, 1, 1, 1], [2, 1, 4]), weight: w, eps: 0).shape == [2, 1, 4])
    }

    @Test func fusedAddByHand() throws {
        let w = Self.t([1, 2, 3, 4], [4])
        let (out, res) = try fusedAddRMSNorm(Self.t([1, 0, 3, 0], [1, 4]), residual: Self.t([1, 2, -1, 2], [1, 4]), weight: w, eps: 0)
        #expect(try res.toFloats() == [2, 2, 2, 2])
        #expect(try out.toFloats() == [1, 2, 3, 4])
        let (g, _) = try gemmaFusedAddRMSNorm(Self.t([1, 0, 3, 0], [1, 4]), residual: Self.t([1, 2, -1, 2], [1, 4]),
                                              weight: Self.t([0, 1, 2, 3], [4]), eps: 0)
        #expect(try g.toFloats() == [1, 2, 3, 4])
    }

    @Test func randomRowsMatchTheFormula() throws {
        var rng = TestRNG(seed: 21)
        for (rows, hidden) in [(1, 1), (3, 111), (7, 500), (2, 1024)] {
            let x = (0..<(rows * hidden)).map { _ in Float(rng.unit() * 4 - 2) }
            let r = (0..<(rows * hidden)).map { _ in Float(rng.unit() * 4 - 2) }
            let w = (0..<hidden).map { _ in Float(rng.unit() * 2 - 1) }
            let eps = 1e-6
            func naive(_ x: [Float], gemma: Bool) -> [Double] {
                (0..<rows).flatMap { row -> [Double] in
                    let v = x[(row * hidden)..<((row + 1) * hidden)].map(Double.init)
                    let rms = (v.map { $0 * $0 }.reduce(0, +) / Double(hidden) + eps).squareRoot()
                    return v.indices.map { v[$0] / rms * (gemma ? 1 + Double(w[$0]) : Double(w[$0])) }
                }
            }
            let xt = Self.t(x, [rows, hidden]), wt = Self.t(w, [hidden]), rt = Self.t(r, [rows, hidden])
            #expect(Self.close(try rmsnorm(xt, weight: wt).toFloats(), naive(x, gemma: false)), "\(rows)x\(hidden)")
            #expect(Self.close(try gemmaRMSNorm(xt, weight: wt).toFloats(), naive(x, gemma: true)), "\(rows)x\(hidden)")
            let sum = zip(x, r).map { $0 + $1 }  // exact in Float32 here? compare in Float64 with rounding tolerance
            let (o, res) = try fusedAddRMSNorm(xt, residual: rt, weight: wt)
            #expect(Self.close(try res.toFloats(), sum.map(Double.init)))
            #expect(Self.close(try o.toFloats(), naive(sum, gemma: false), tol: 1e-5))
        }
    }

    @Test func activationsByHand() throws {
        let x = Self.t([0, 1, -1, 5, 2, 3, 1, 0.5], [2, 4])  // rows [0, 1 | −1, 5], [2, 3 | 1, 0.5]
        let silu = try siluAndMul(x).toFloats()
        let s1 = 1 / (1 + exp(-1.0)), s3 = 3 / (1 + exp(-3.0))
        #expect(Self.close(silu, [0, s1 * 5, 2 / (1 + exp(-2.0)) * 1, s3 * 0.5]))
        #expect(try siluAndMul(x).shape == [2, 2])
        let gelu1 = 0.8413447460685429, geluTanh1 = 0.8411919906082768  // gelu(1), gelu_tanh(1)
        #expect(abs(GatedActivation.gelu(1) - gelu1) < 1e-15)
        #expect(abs(GatedActivation.geluTanh(1) - geluTanh1) < 1e-15)
        #expect(Self.close(try geluAndMul(Self.t([1, 2], [1, 2])).toFloats(), [2 * gelu1]))
        #expect(Self.close(try geluTanhAndMul(Self.t([1, 2], [1, 2])).toFloats(), [2 * geluTanh1]))
        #expect(try geluAndMul(Self.t(Array(repeating: 1, count: 24), [2, 3, 4])).shape == [2, 3, 2])
        #expect(try siluAndMul(Self.t([1, 2], [1, 2], .bf16)).dtype == .bf16)
    }

    @Test func validation() {
        let x = Self.t([1, 2, 3, 4], [1, 4])
        #expect(throws: E.shape(tensor: "weight", axis: 0, name: "hidden_size", expected: "4 (input's)", got: 3)) {
            try rmsnorm(x, weight: Self.t([1, 1, 1], [3]))
        }
        #expect(throws: E.rank(tensor: "weight", expected: 1, got: 2)) { try rmsnorm(x, weight: x) }
        #expect(throws: E.option(name: "eps", value: "-1.0", rule: "must be finite and >= 0")) { try rmsnorm(x, weight: Self.t([1, 1, 1, 1], [4]), eps: -1) }
        #expect(throws: E.shape(tensor: "residual", axis: 0, name: "shape [2, 2]", expected: "input's shape [1, 4]", got: 2)) {
            try fusedAddRMSNorm(x, residual: Self.t([1, 2, 3, 4], [2, 2]), weight: Self.t([1, 1, 1, 1], [4]))
        }
        #expect(throws: E.dtype(tensor: "input", expected: "float32, float16 or bfloat16", got: .e4m3)) {
            try rmsnorm(Self.t([1, 1], [1, 2], .e4m3), weight: Self.t([1, 1], [2]))
        }
        #expect(throws: E.shape(tensor: "input", axis: 1, name: "2·d", expected: "even and >= 2", got: 3)) { try siluAndMul(Self.t([1, 2, 3], [1, 3])) }
        #expect(throws: E.dtype(tensor: "input", expected: "float32, float16 or bfloat16", got: .e5m2)) { try geluAndMul(Self.t([1, 2], [1, 2], .e5m2)) }
    }
}
