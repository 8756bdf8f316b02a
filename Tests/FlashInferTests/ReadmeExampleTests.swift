import Foundation
import Testing

@testable import FlashInfer

/// The README's Swift example, compiled and run by the tests. `readmeMatchesThisExample` keeps the
/// README's code block and the body below identical.
@Suite struct ReadmeExampleTests {
    static func example() throws {
        // README-EXAMPLE-BEGIN
        // Llama-shaped decode: 32 query heads sharing 8 KV heads, head_dim 128, 512 cached tokens.
        let (numQOHeads, numKVHeads, headDim, kvLen) = (32, 8, 128, 512)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -2...2) } }
        let backend = Backend.automatic()  // the GPU when present, else the CPU reference
        let q = try Tensor.host(randn(numQOHeads * headDim), shape: [numQOHeads, headDim], dtype: .f16).moved(to: backend)
        let k = try Tensor.host(randn(kvLen * numKVHeads * headDim), shape: [kvLen, numKVHeads, headDim], dtype: .f16).moved(to: backend)
        let v = try Tensor.host(randn(kvLen * numKVHeads * headDim), shape: [kvLen, numKVHeads, headDim], dtype: .f16).moved(to: backend)
        let result = try singleDecode(
            q: q, k: k, v: v,
            options: AttentionOptions(positionEncoding: .ropeLlama(scale: 1, theta: 5e5)),
            returnLSE: true, backend: backend)
        print(result.output.shape, try result.lse!.toFloats()[0])  // [32, 128] and a base-2 log-sum-exp
        // README-EXAMPLE-END
    }

    /// The README's second example: a decode step's tail (issue 13).
    static func tailExample() throws -> [Int32] {
        // README-TAIL-BEGIN
        // A decode step's tail for 4 requests: the last layer's output joins the residual stream and
        // is normalized (one fused kernel), the LM head gives logits, and one token per request is
        // drawn from the top-k (50) then top-p (0.9) filter of softmax(logits), without sorting.
        let (batch, hidden, vocab) = (4, 256, 1000)
        func randn(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1) } }
        let backend = Backend.automatic()
        let x = try Tensor.host(randn(batch * hidden), shape: [batch, hidden], dtype: .f16).moved(to: backend)
        let residual = try Tensor.host(randn(batch * hidden), shape: [batch, hidden], dtype: .f16).moved(to: backend)
        let normWeight = try Tensor.host(randn(hidden), shape: [hidden], dtype: .f16).moved(to: backend)
        try fusedAddRMSNormInPlace(input: x, residual: residual, weight: normWeight, backend: backend)
        // The LM head is a GEMM, outside this library (cuBLAS, or torch through the Python package);
        // here a small one on the host.
        let lmHead = randn(vocab * hidden), h = try x.toFloats()
        var logits = [Float](repeating: 0, count: batch * vocab)
        for b in 0..<batch {
            for t in 0..<vocab {
                for i in 0..<hidden { logits[b * vocab + t] += h[b * hidden + i] * lmHead[t * hidden + i] }
            }
        }
        let logitsTensor = try Tensor.host(logits, shape: [batch, vocab], dtype: .f32).moved(to: backend)
        let next = try topKTopPSamplingFromLogits(logitsTensor, topK: .scalar(50), topP: .scalar(0.9), seed: 42, backend: backend)
        print(next.samples)  // 4 token ids in 0..<1000
        // README-TAIL-END
        return next.samples
    }

    @Test func exampleRuns() throws {
        try Self.example()
    }

    @Test func tailExampleDrawsOneTokenPerRequest() throws {
        let samples = try Self.tailExample()
        #expect(samples.count == 4)
        #expect(samples.allSatisfy { (0..<1000).contains($0) })
    }

    @Test func readmeMatchesThisExample() throws {
        let here = URL(fileURLWithPath: #filePath)
        let root = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try String(contentsOf: here, encoding: .utf8)
        func lines(_ s: String, from: String, to: String) -> [String] {
            guard let a = s.range(of: from), let b = s.range(of: to, range: a.upperBound..<s.endIndex) else { return [] }
            return s[a.upperBound..<b.lowerBound].split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        let inTest = lines(source, from: "// README-EXAMPLE-" + "BEGIN", to: "// README-EXAMPLE-" + "END")
        let inReadme = lines(readme, from: "import FlashInfer\n", to: "```")
        #expect(!inTest.isEmpty)
        #expect(inReadme == inTest, "README.md's Swift example differs from ReadmeExampleTests.example()")
        let tailInTest = lines(source, from: "// README-TAIL-" + "BEGIN", to: "// README-TAIL-" + "END")
        let tailInReadme = lines(readme, from: "import FlashInfer  // a decode step's tail\n", to: "```")
        #expect(!tailInTest.isEmpty)
        #expect(tailInReadme == tailInTest, "README.md's decode-step tail differs from ReadmeExampleTests.tailExample()")
    }
}
