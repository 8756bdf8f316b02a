import FlashInfer
import FlashInferCUDA

/// GPU merge kernels against the CPU merge (same math in Float64), fp16 1e-3 / bf16 1e-2, LSE 1e-4.
public func mergeCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for dtype in [DType.f16, .bf16] {
        for (n, h, d) in [(1, 1, 64), (777, 32, 128), (64, 8, 256)] {
            for emptyFraction in [0.0, 0.3] {
                cases.append(CheckCase(name: "merge_state dtype=\(dtype.rawValue) n=\(n) h=\(h) d=\(d) empty=\(emptyFraction)") { device, stream, rng in
                    func states(_ c: Int) -> (Tensor, Tensor) {
                        let v = Tensor.host((0..<(c * h * d)).map { _ in rng.normal() }, shape: [c, h, d], dtype: dtype)
                        let s = Tensor.host((0..<(c * h)).map { _ in rng.uniform() < Float(emptyFraction) ? -.infinity : rng.normal() * 8 }, shape: [c, h], dtype: .f32)
                        return (v, s)
                    }
                    let (va, sa) = states(n), (vb, sb) = states(n)
                    let cpu = try mergeState(va: va, sa: sa, vb: vb, sb: sb)
                    let be = Backend.cuda(stream)
                    let gpu = try mergeState(va: va.moved(to: be), sa: sa.moved(to: be), vb: vb.moved(to: be), sb: sb.moved(to: be), backend: be)
                    try stream.synchronize()
                    let tol = dtype == .f16 ? Tolerance.f16 : .relaxed
                    if let m = tol.compare(try gpu.v.toFloats(), try cpu.v.toFloats()) { return "v: \(m)" }
                    if let m = Tolerance(atol: 1e-4, rtol: 1e-4).compare(try gpu.s.toFloats(), try cpu.s.toFloats()) { return "s: \(m)" }
                    // In place with a mask.
                    let mask = (0..<n).map { _ in UInt8(rng.uniform() < 0.5 ? 1 : 0) }
                    let gv = try va.moved(to: be), gs = try sa.moved(to: be)
                    try mergeStateInPlace(v: gv, s: gs, vOther: vb.moved(to: be), sOther: sb.moved(to: be), mask: mask, backend: be)
                    let hv = Tensor.host(try va.toFloats(), shape: va.shape, dtype: dtype), hs = Tensor.host(try sa.toFloats(), shape: sa.shape, dtype: .f32)
                    try mergeStateInPlace(v: hv, s: hs, vOther: vb, sOther: sb, mask: mask)
                    if let m = tol.compare(try gv.toFloats(), try hv.toFloats()) { return "in-place v: \(m)" }
                    if let m = Tolerance(atol: 1e-4, rtol: 1e-4).compare(try gs.toFloats(), try hs.toFloats()) { return "in-place s: \(m)" }
                    // The same mask in device memory (read by the kernel): bit for bit the host mask's result.
                    let dv = try va.moved(to: be), ds = try sa.moved(to: be)
                    try mergeStateInPlace(v: dv, s: ds, vOther: vb.moved(to: be), sOther: sb.moved(to: be), deviceMask: try device.upload(mask),
                                          stream: stream)
                    try stream.synchronize()
                    if try dv.toFloats() != gv.toFloats() || ds.toFloats() != gs.toFloats() {
                        return "in place with the mask in device memory differs from the host mask's result"
                    }
                    return nil
                })
            }
            for k in [0, 1, 7] {
                cases.append(CheckCase(name: "merge_states dtype=\(dtype.rawValue) n=\(n) states=\(k) h=\(h) d=\(d)") { device, stream, rng in
                    let v = Tensor.host((0..<(n * k * h * d)).map { _ in rng.normal() }, shape: [n, k, h, d], dtype: dtype)
                    let s = Tensor.host((0..<(n * k * h)).map { _ in rng.uniform() < 0.2 ? -.infinity : rng.normal() * 8 }, shape: [n, k, h], dtype: .f32)
                    let cpu = try mergeStates(v: v, s: s)
                    let be = Backend.cuda(stream)
                    let gpu = try mergeStates(v: v.moved(to: be), s: s.moved(to: be), backend: be)
                    try stream.synchronize()
                    let tol = dtype == .f16 ? Tolerance.f16 : .relaxed
                    if let m = tol.compare(try gpu.v.toFloats(), try cpu.v.toFloats()) { return "v: \(m)" }
                    if let m = Tolerance(atol: 1e-4, rtol: 1e-4).compare(try gpu.s.toFloats(), try cpu.s.toFloats()) { return "s: \(m)" }
                    return nil
                })
            }
        }
    }
    return cases
}
