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

    @Test func exampleRuns() throws {
        try Self.example()
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
    }
}
