import FlashInferCUDA
import Testing
import Foundation
@testable import FlashInfer

struct TmpSrcSpec: KernelSpec {
    var src: String
    var name: String { "tmp_probe" }
    var entryPoint: String { "fi_probe_read" }
    func source() -> String { src }
}

@Suite struct TmpCompileTests {
    @Test func compileTimelineAndProbe() throws {
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        var s = DecodeSpec(dtype: .f16, headDim: 128, group: 4, posEnc: .none, softCap: false)
        s.dynamic = true
        for kp in [2, 4] { var x = s; x.keysPerSlot = kp; print("DYN", kp, try compiler.compile(x, useCache: false).log) }
        s.dynamic = false
        print("STATIC", try compiler.compile(s, useCache: false).log)
        s.timeline = true
        let r = try compiler.compile(s, useCache: false)
        print("TL", r.log)
        let m = DecodeMergeSpec(dtype: .f16, headDim: 128)
        let r2 = try compiler.compile(m, useCache: false)
        print("MG", r2.log)
        let text = try String(contentsOfFile: "Sources/flashinfer/BenchProbe.swift", encoding: .utf8)
        let parts = text.components(separatedBy: "\"\"\"")
        let r3 = try compiler.compile(TmpSrcSpec(src: parts[1]), useCache: false)
        print("PR", r3.log)
    }
}
