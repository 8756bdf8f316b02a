import FlashInferCUDA
import FlashInferTesting
#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import FlashInfer

/// The ops' new entry points on the CPU (outputs, in place, LayerNorm, the cos/sin cache), the
/// CUDA launchers' pure rules (row views, vector widths, RoPE head groups), the check and bench
/// catalogue, and — with a GPU — the kernels against the reference.
@Suite struct OpsTests {
    typealias E = FlashInferError
    static func t(_ v: [Float], _ shape: [Int], _ dtype: DType = .f32) -> Tensor { Tensor.host(v, shape: shape, dtype: dtype) }
    static func random(_ shape: [Int], seed: UInt64, dtype: DType = .f32) -> Tensor {
        var rng = SeededRNG(seed: seed)
        return Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: dtype)
    }

    // MARK: CPU entry points

    @Test func outputsInPlaceAndIntoOut() throws {
        let x = Self.random([3, 16], seed: 1), r = Self.random([3, 16], seed: 2), w = Self.random([16], seed: 3)
        let expected = try rmsnorm(x, weight: w).toFloats()
        let out = Self.t(Array(repeating: .nan, count: 48), [3, 16])
        #expect(try rmsnorm(x, weight: w, out: out).toFloats() == expected)
        #expect(try out.toFloats() == expected, "written into out")
        // In place: residual ← x + r, x ← rmsnorm(residual), as the functional form.
        let (o, res) = try fusedAddRMSNorm(x, residual: r, weight: w)
        let xi = Self.t(try x.toFloats(), [3, 16]), ri = Self.t(try r.toFloats(), [3, 16])
        try fusedAddRMSNormInPlace(input: xi, residual: ri, weight: w)
        #expect(try xi.toFloats() == o.toFloats())
        #expect(try ri.toFloats() == res.toFloats())
        let (go, _) = try gemmaFusedAddRMSNorm(x, residual: r, weight: w)
        let xg = Self.t(try x.toFloats(), [3, 16]), rg = Self.t(try r.toFloats(), [3, 16])
        try gemmaFusedAddRMSNormInPlace(input: xg, residual: rg, weight: w)
        #expect(try xg.toFloats() == go.toFloats())
        // Activations into a strided out (a view with row stride 8 of a [2, 8] buffer).
        let wide = Self.t(Array(repeating: -7, count: 16), [2, 8])
        let view = Tensor(storage: wide.storage, shape: [2, 4], strides: [8, 1], dtype: .f32)
        let a = Self.random([2, 8], seed: 4)
        try siluAndMul(a, out: view)
        let got = try wide.toFloats(), want = try siluAndMul(a).toFloats()
        #expect(Array(got[0..<4]) == Array(want[0..<4]) && Array(got[8..<12]) == Array(want[4..<8]))
        #expect(Array(got[4..<8]) == [-7, -7, -7, -7], "the padding is untouched")
    }

    @Test func layernormByHand() throws {
        // Row [1, 2, 3, 4]: mean 2.5, variance 1.25.
        let y = try layernorm(Self.t([1, 2, 3, 4], [1, 4]), gamma: Self.t([1, 1, 2, 2], [4]), beta: Self.t([0, 0, 0, 1], [4]), eps: 0).toFloats()
        let s = 1 / 1.25.squareRoot()
        let expected = [-1.5 * s, -0.5 * s, 2 * 0.5 * s, 2 * 1.5 * s + 1]
        #expect(zip(y, expected).allSatisfy { abs(Double($0) - $1) < 1e-6 })
        #expect(throws: E.dtype(tensor: "beta", expected: "f32 (gamma's)", got: .f16)) {
            try layernorm(Self.t([1, 2], [1, 2]), gamma: Self.t([1, 1], [2]), beta: Self.t([0, 0], [2], .f16))
        }
        #expect(throws: E.shape(tensor: "beta", axis: 0, name: "hidden_size", expected: "2 (input's)", got: 3)) {
            try layernorm(Self.t([1, 2], [1, 2]), gamma: Self.t([1, 1], [2]), beta: Self.t([0, 0, 0], [3]))
        }
    }

    @Test func ropeInPlaceAndCacheFormMatchTheFrequencyForm() throws {
        let (nnz, hq, hk, d) = (5, 3, 2, 16)
        let q = Self.random([nnz, hq, d], seed: 5), k = Self.random([nnz, hk, d], seed: 6)
        let pos: [Int32] = [0, 3, 7, 100, 2]
        for interleave in [false, true] {
            for rd in [16, 8] {
                let opts = RopeOptions(rotaryDim: rd, interleave: interleave, theta: 500)
                let ref = try applyRopePosIds(q: q, k: k, posIds: pos, options: opts)
                let qi = Self.t(try q.toFloats(), q.shape), ki = Self.t(try k.toFloats(), k.shape)
                try applyRopePosIdsInPlace(q: qi, k: ki, posIds: pos, options: opts)
                #expect(try qi.toFloats() == ref.q.toFloats() && ki.toFloats() == ref.k.toFloats())
                // The same angles as a [max_pos, rd] cos | sin cache, on the flattened layout.
                let f = opts.frequencies(rotaryDim: rd)
                var cache: [Float] = []
                for p in 0..<128 { cache += f.map { Float(cos(Double(p) * $0)) } + f.map { Float(sin(Double(p) * $0)) } }
                let c = try applyRopeWithCosSinCache(positions: pos, query: q.reshaped([nnz, hq * d]), key: k.reshaped([nnz, hk * d]), headSize: d,
                                                     cosSinCache: Self.t(cache, [128, rd]), isNeox: !interleave)
                #expect(c.query.shape == [nnz, hq * d])
                let a = try c.query.toFloats(), b = try ref.q.toFloats()
                #expect(zip(a, b).allSatisfy { abs($0 - $1) < 1e-5 }, "interleave \(interleave) rd \(rd)")
            }
        }
        // Ragged in place = ragged out of place.
        let qi = Self.t(try q.toFloats(), q.shape), ki = Self.t(try k.toFloats(), k.shape)
        try applyRopeInPlace(q: qi, k: ki, indptr: [0, 2, 5], offsets: [4, 0])
        #expect(try qi.toFloats() == applyRope(q: q, k: k, indptr: [0, 2, 5], offsets: [4, 0]).q.toFloats())
    }

    @Test func validation() {
        let q = Self.t(Array(repeating: 1, count: 16), [2, 8])
        let cache = Self.t(Array(repeating: 0, count: 40), [10, 4])
        #expect(throws: E.shape(tensor: "query", axis: 1, name: "num_heads · head_size", expected: "a multiple of head_size 3", got: 8)) {
            try applyRopeWithCosSinCache(positions: [0, 1], query: q, key: q, headSize: 3, cosSinCache: cache)
        }
        #expect(throws: E.dtype(tensor: "cos_sin_cache", expected: "float32", got: .f16)) {
            try applyRopeWithCosSinCache(positions: [0, 1], query: q, key: q, headSize: 4, cosSinCache: Self.t(Array(repeating: 0, count: 40), [10, 4], .f16))
        }
        #expect(throws: E.indices(array: "positions", position: 1, rule: "10 is outside the cache's 0..<10 positions")) {
            try applyRopeWithCosSinCache(positions: [0, 10], query: q, key: q, headSize: 4, cosSinCache: cache)
        }
        #expect(throws: E.option(name: "rotary_dim", value: "6", rule: "must be even and in 2...4 (head_dim)")) {
            try applyRopeWithCosSinCache(positions: [0, 1], query: q, key: q, headSize: 4, cosSinCache: Self.t(Array(repeating: 0, count: 60), [10, 6]))
        }
        let q3 = Self.t(Array(repeating: 1, count: 16), [2, 1, 8])
        #expect(throws: E.shape(tensor: "q_out", axis: 0, name: "shape [2, 2, 8]", expected: "[2, 1, 8]", got: 2)) {
            try applyRopePosIds(q: q3, k: q3, posIds: [0, 1], out: (Self.t(Array(repeating: 0, count: 32), [2, 2, 8]), q3))
        }
        #expect(throws: E.shape(tensor: "out", axis: 0, name: "shape [2, 3]", expected: "[2, 4]", got: 2)) {
            try siluAndMul(q, out: Self.t(Array(repeating: 0, count: 6), [2, 3]))
        }
        #expect(throws: E.dtype(tensor: "out", expected: "f32", got: .f16)) {
            try siluAndMul(q, out: Self.t(Array(repeating: 0, count: 8), [2, 4], .f16))
        }
        #expect(throws: E.shape(tensor: "out", axis: 0, name: "shape [1, 16]", expected: "input's shape [2, 8]", got: 1)) {
            try rmsnorm(q, weight: Self.t(Array(repeating: 1, count: 8), [8]), out: Self.t(Array(repeating: 0, count: 16), [1, 16]))
        }
    }

    // MARK: The CUDA launchers' pure rules

    @Test func rowViewsAndVectorWidths() throws {
        let buf = Self.t(Array(repeating: 0, count: 2 * 3 * 40), [2, 3, 40])
        #expect(try opsRowView(buf, name: "x") == (6, 40))
        // A row-strided slice [.., :32] of the [2, 3, 40] buffer: rows 6, stride 40.
        let slice = Tensor(storage: buf.storage, shape: [2, 3, 32], strides: [120, 40, 1], dtype: .f32)
        #expect(try opsRowView(slice, name: "x") == (6, 40))
        #expect(try opsRowView(Self.t([1, 2, 3], [3]), name: "x") == (1, 3))
        #expect(throws: E.strides(tensor: "x", strides: [1, 2], rule: "the last axis must be contiguous (stride 1) for the CUDA kernels")) {
            try opsRowView(Tensor(storage: buf.storage, shape: [2, 2], strides: [1, 2], dtype: .f32), name: "x")
        }
        // Leading axes that do not flatten (a transposed view).
        #expect(throws: E.strides(tensor: "x", strides: [40, 80, 1], rule: "the leading axes must flatten to one row stride for the CUDA kernels")) {
            try opsRowView(Tensor(storage: buf.storage, shape: [2, 3, 8], strides: [40, 80, 1], dtype: .f32), name: "x")
        }
        #expect(opsVectorWidth(multiples: [8192, 8192], tensors: []) == 8)
        #expect(opsVectorWidth(multiples: [500], tensors: []) == 4)
        #expect(opsVectorWidth(multiples: [4096, 4096 + 2], tensors: []) == 2)
        #expect(opsVectorWidth(multiples: [111], tensors: []) == 1)
        #expect(normElemsPerThread(vec: 8) == 32 && normElemsPerThread(vec: 1) == 16)
    }

    /// The worked examples of `ropeHeadsPerThread`'s comment.
    @Test func ropeHeadGroups() {
        #expect(ropeHeadsPerThread(rows: 64, units: 8, heads: 40, multiprocessors: 132) == 1)
        #expect(ropeHeadsPerThread(rows: 8192, units: 8, heads: 40, multiprocessors: 132) == 8)
        #expect(ropeHeadsPerThread(rows: 1 << 20, units: 8, heads: 40, multiprocessors: 132) == 40)
    }

    @Test func catalogueHasEveryOpKernel() {
        let names = kernelCatalog().map(\.name)
        for n in ["rmsnorm f16", "fused_add_rmsnorm bf16", "layernorm bf16 f32 weight", "silu_and_mul f16", "gelu_and_mul bf16",
                  "gelu_tanh_and_mul f16", "rope f16", "rope bf16 interleave", "rmsnorm f16 vec 1", "probe_spin"] {
            #expect(names.contains(n), "\(n)")
        }
    }

    /// `flashinfer check --filter ops.norm|ops.activation|ops.rope` selects exactly the ops' cases
    /// (a bare `rope` also selects the attention kernels' RoPE cases).
    @Test func checkFiltersSelectTheOps() {
        let all = allCheckCases().map(\.name)
        #expect(all.filter { $0.contains("ops.") } == (normCases() + activationCases() + ropeCases()).map(\.name))
        for (filter, family) in [("ops.norm", normCases()), ("ops.activation", activationCases()), ("ops.rope", ropeCases())] {
            #expect(all.filter { $0.contains(filter) } == family.map(\.name), "\(filter)")
            #expect(family.count >= 20)
        }
    }

    // MARK: On the GPU

    @Test(.enabled(if: gpuAvailable, "no GPU"))
    func kernelsMatchTheReference() throws {
        let device = try Device.open()
        let stream = try device.makeStream()
        var rng = SeededRNG(seed: 7)
        for c in normCases().prefix(3) + activationCases().prefix(3) + ropeCases().prefix(3) {
            #expect(try c.run(device, stream, &rng) == nil, "\(c.name)")
        }
        // f32 runs on the CPU backend only.
        let x = try Self.t([1, 2], [1, 2]).toDevice(device)
        #expect(throws: E.dtype(tensor: "input", expected: "float16 or bfloat16 (the CUDA kernels; float32 runs on the CPU backend)", got: .f32)) {
            try rmsnorm(x, weight: try Self.t([1, 1], [2]).toDevice(device), backend: .cuda(stream))
        }
    }
}
