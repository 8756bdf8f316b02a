@_spi(Bench) import FlashInfer
import FlashInferCUDA

/// The CUDA backend's refusals (issue 11 item 4): one validation per call, for the backend's
/// placement, with a typed error before any launch. Each case passes when the call throws the
/// expected error (and fails when it is accepted or throws another).
public func rejectionCases() -> [CheckCase] {
    /// nil when `body` throws an error `expected` accepts, else what happened.
    func expect(_ what: String, _ expected: (FlashInferError) -> Bool, _ body: () throws -> Void) -> String? {
        do {
            try body()
            return "\(what): accepted"
        } catch let e as FlashInferError {
            return expected(e) ? nil : "\(what): \(e)"
        } catch {
            return "\(what): \(error)"
        }
    }
    func host(_ shape: [Int], _ dtype: DType = .f16, _ rng: inout SeededRNG) -> Tensor {
        Tensor.host((0..<shape.reduce(1, *)).map { _ in rng.normal() }, shape: shape, dtype: dtype)
    }
    let (hq, hkv, d, kv) = (8, 2, 128, 1000)
    var cases: [CheckCase] = []
    cases.append(CheckCase(name: "rejects host q on the CUDA backend") { device, stream, rng in
        let q = host([hq, d], .f16, &rng)
        let k = try host([kv, hkv, d], .f16, &rng).toDevice(device)
        return expect("singleDecode(host q)", { $0 == .placement(tensor: "q", expected: "device (the CUDA backend)") }) {
            _ = try singleDecode(q: q, k: k, v: k, backend: .cuda(stream))
        }
    })
    cases.append(CheckCase(name: "rejects a misaligned k view for decode") { device, stream, rng in
        let q = try host([hq, d], .f16, &rng).toDevice(device)
        let buf = try host([kv * hkv * d + 1], .f16, &rng).toDevice(device)
        guard case .device(let b, _) = buf.storage else { return "not a device tensor" }
        let k = Tensor(storage: .device(b, byteOffset: 2), shape: [kv, hkv, d], dtype: .f16)  // 2 bytes off 16
        return expect("singleDecode(k at byte offset 2)", { if case .strides(tensor: "k", _, _) = $0 { true } else { false } }) {
            _ = try singleDecode(q: q, k: k, v: k, backend: .cuda(stream))
        }
    })
    cases.append(CheckCase(name: "rejects an out of another dtype for prefill") { device, stream, rng in
        let q = try host([16, hq, d], .f16, &rng).toDevice(device)
        let k = try host([kv, hkv, d], .f16, &rng).toDevice(device)
        let out = try Tensor.empty(shape: [16, hq, d], dtype: .bf16, device: device)
        return expect("singlePrefill(out bf16)", { $0 == .dtype(tensor: "out", expected: "f16", got: .bf16) }) {
            try singlePrefill(q: q, k: k, v: k, out: out, lse: nil, stream: stream)
        }
    })
    cases.append(CheckCase(name: "rejects an lse of the wrong shape for decode") { device, stream, rng in
        let q = try host([hq, d], .f16, &rng).toDevice(device)
        let k = try host([kv, hkv, d], .f16, &rng).toDevice(device)
        let out = try Tensor.empty(shape: [hq, d], dtype: .f16, device: device)
        let lse = try Tensor.empty(shape: [hq + 1], dtype: .f32, device: device)
        let launch = try CUDADecodeLaunch(q: q, k: k, v: k, options: AttentionOptions(), device: device)
        let ws = try launch.makeWorkspace(stream: stream)
        return expect("CUDADecodeLaunch.run(lse [Hq + 1])", { if case .shape(tensor: "lse", _, _, _, _) = $0 { true } else { false } }) {
            try launch.run(q: q, k: k, v: k, out: out, lse: lse, workspace: ws, stream: stream)
        }
    })
    cases.append(CheckCase(name: "rejects a decode launch run on another shape") { device, stream, rng in
        let q = try host([hq, d], .f16, &rng).toDevice(device)
        let k = try host([kv, hkv, d], .f16, &rng).toDevice(device)
        let k2 = try host([kv + 1, hkv, d], .f16, &rng).toDevice(device)
        let out = try Tensor.empty(shape: [hq, d], dtype: .f16, device: device)
        let launch = try CUDADecodeLaunch(q: q, k: k, v: k, options: AttentionOptions(), device: device, numChunks: 4)
        let ws = try launch.makeWorkspace(stream: stream)
        return expect("CUDADecodeLaunch.run(kv_len + 1)", { if case .planMismatch(what: "decode launch", _, _) = $0 { true } else { false } }) {
            try launch.run(q: q, k: k2, v: k2, out: out, lse: nil, workspace: ws, stream: stream)
        }
    })
    cases.append(CheckCase(name: "rejects a decode workspace too small") { device, stream, rng in
        let q = try host([hq, d], .f16, &rng).toDevice(device)
        let k = try host([kv, hkv, d], .f16, &rng).toDevice(device)
        let out = try Tensor.empty(shape: [hq, d], dtype: .f16, device: device)
        let launch = try CUDADecodeLaunch(q: q, k: k, v: k, options: AttentionOptions(), device: device, numChunks: 4)
        let small = try stream.allocate(byteCount: launch.workspaceBytes - 4)
        return expect("CUDADecodeLaunch.run(workspace - 4 bytes)", { $0 == .workspaceTooSmall(bytes: launch.workspaceBytes - 4, needed: launch.workspaceBytes) }) {
            try launch.run(q: q, k: k, v: k, out: out, lse: nil, workspace: small, stream: stream)
        }
    })
    cases.append(CheckCase(name: "rejects decode stages out of range") { device, _, rng in
        let q = try host([hq, d], .f16, &rng).toDevice(device)
        let k = try host([kv, hkv, d], .f16, &rng).toDevice(device)
        return expect("CUDADecodeLaunch(stages: 9)", { $0 == .benchOverride(name: "stages", value: "9", rule: "must be 2...8") }) {
            _ = try CUDADecodeLaunch(q: q, k: k, v: k, options: AttentionOptions(), device: device, numChunks: nil, stages: 9)
        }
    })
    cases += sparseRejectionCases(expect: expect)
    cases.append(CheckCase(name: "rejects host states for a CUDA merge") { device, stream, rng in
        let v = try host([4, 2, 64], .f16, &rng).toDevice(device), s = try host([4, 2], .f32, &rng).toDevice(device)
        let hv = host([4, 2, 64], .f16, &rng)
        return expect("mergeState(host vb)", { $0 == .placement(tensor: "vb", expected: "device (the CUDA backend)") }) {
            _ = try mergeState(va: v, sa: s, vb: hv, sb: s, backend: .cuda(stream))
        }
    })
    return cases
}
