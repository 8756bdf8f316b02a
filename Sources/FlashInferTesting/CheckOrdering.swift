import FlashInfer
import FlashInferCUDA

/// The stream-ordering contract (docs/ORDERING.md) on the GPU: code written the way a user writes
/// it, with no `synchronize()` anywhere, must read correct results. Each case fails when an upload,
/// a launch or a readback is not ordered after what it depends on (the inputs are large, so an
/// unordered read would see them half-copied).
public func orderingCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    // 1. The README example as written: host tensors moved to the backend (asynchronous uploads),
    //    singleDecode, and toFloats() on the output and the LSE — no synchronize.
    for kvLen in [512, 32768] {
        cases.append(CheckCase(name: "ordering readme-pattern kv\(kvLen) (no synchronize)") { device, stream, rng in
            let (hq, hkv, d) = (32, 8, 128)
            let backend = Backend.cuda(stream)
            let qv = (0..<(hq * d)).map { _ in rng.normal() }
            let kv = (0..<(kvLen * hkv * d)).map { _ in rng.normal() }, vv = (0..<(kvLen * hkv * d)).map { _ in rng.normal() }
            let options = AttentionOptions(positionEncoding: .ropeLlama(scale: 1, theta: 5e5))
            let q = try Tensor.host(qv, shape: [hq, d], dtype: .f16).moved(to: backend)
            let k = try Tensor.host(kv, shape: [kvLen, hkv, d], dtype: .f16).moved(to: backend)
            let v = try Tensor.host(vv, shape: [kvLen, hkv, d], dtype: .f16).moved(to: backend)
            let r = try singleDecode(q: q, k: k, v: v, options: options, returnLSE: true, backend: backend)
            let got = try r.output.toFloats(), gotLSE = try r.lse!.toFloats()
            let ref = try ReferenceAttention.decode(q: try q.toFloats(), k: try k.toFloats(), v: try v.toFloats(), kvLen: kvLen,
                                                    numQOHeads: hq, numKVHeads: hkv, headDim: d, options: options)
            if let m = Tolerance.f16.compare(got, ref.output) { return "output: \(m)" }
            if let m = Tolerance.f16.compare(gotLSE, ref.lse) { return "lse: \(m)" }
            return nil
        })
    }
    // 2. Across streams: inputs uploaded asynchronously on stream A, the op on stream B, the next
    //    op on stream C reading B's output, readback with no stream named — no synchronize.
    for dtype in [DType.f32, .bf16] {
        let n = 48 << 20  // 192 MiB of f32: the upload takes milliseconds
        cases.append(CheckCase(name: "ordering cross-stream axpby chain \(dtype.rawValue) n=\(n) (no synchronize)") { device, stream, rng in
            let a = stream, b = try device.makeStream(), c = try device.makeStream()
            let xs = (0..<n).map { _ in rng.normal() }, ys = (0..<n).map { _ in rng.normal() }
            let x = try Tensor.host(xs, shape: [n], dtype: dtype).toDevice(stream: a)
            let y = try Tensor.host(ys, shape: [n], dtype: dtype).toDevice(stream: a)
            let t = try Tensor.empty(shape: [n], dtype: dtype, stream: b)
            try axpby(alpha: 2, x: x, beta: -1, y: y, out: t, stream: b)      // t = 2x − y on B (waits for A's uploads)
            let out = try Tensor.empty(shape: [n], dtype: dtype, device: device)
            try out.poison(stream: a)                                          // a write on A, before C's write
            try axpby(alpha: 0.5, x: t, beta: 1, y: y, out: out, stream: c)    // out = t/2 + y on C (waits for B and A)
            // Write-after-read: overwrite the start of y on A while C's kernel may still be reading
            // it; A must wait for B and C first, or elements 0..15 come out wrong.
            try y.buffer!.copyFromHost(DType.f32.encode([Float](repeating: .nan, count: 16)), stream: a)
            let got = try out.toFloats()                                       // on C, the last writer
            let xr = try x.toFloats(), yr = try Tensor.host(ys, shape: [n], dtype: dtype).toFloats()
            for i in Array(0..<32) + Array(stride(from: 32, to: n, by: 997)) {
                let ti = dtype.roundTrip(2 * xr[i] - yr[i])
                let e = dtype.roundTrip(0.5 * ti + yr[i])
                let tol = Float(dtype == .f32 ? 1e-5 : 1.6e-2) * max(1, abs(e))
                if !(abs(got[i] - e) <= tol) { return "element \(i): got \(got[i]), expected \(e)" }
            }
            return nil
        })
    }
    // 3. A batch-decode step whose page table is uploaded by plan() on one stream while another
    //    stream (the same wrapper's backend) is busy: the plan's upload, the run and the readback
    //    follow each other with no synchronize.
    cases.append(CheckCase(name: "ordering batch-decode plan/run/readback (no synchronize)") { device, stream, rng in
        let (hq, hkv, d, ps, batch) = (32, 8, 128, 16, 17)
        let lens = (0..<batch).map { _ in 1 + Int(rng.next() % 2048) }
        var table = PageTable.contiguous(seqLens: lens, pageSize: ps)
        for i in stride(from: table.indices.count - 1, to: 0, by: -1) { table.indices.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let pages = table.indices.count
        let shape = [pages, ps, hkv, d]
        let kh = Tensor.host((0..<(shape.reduce(1, *))).map { _ in rng.normal() }, shape: shape, dtype: .f16)
        let vh = Tensor.host((0..<(shape.reduce(1, *))).map { _ in rng.normal() }, shape: shape, dtype: .f16)
        let qh = Tensor.host((0..<(batch * hq * d)).map { _ in rng.normal() }, shape: [batch, hq, d], dtype: .f16)
        let other = try device.makeStream()  // uploads on another stream than the wrapper's
        let cache = try PagedKVCache(k: kh.toDevice(stream: other), v: vh.toDevice(stream: other), layout: .nhd)
        let gpu = BatchDecodeWithPagedKVCache(backend: .cuda(stream), useTensorCores: false)
        try gpu.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16)
        let r = try gpu.run(q: qh.toDevice(stream: other), cache: cache, returnLSE: true)
        let got = try r.output.toFloats()
        let cpu = BatchDecodeWithPagedKVCache(backend: .cpu)
        try cpu.plan(table: table, numQOHeads: hq, numKVHeads: hkv, headDim: d, dtype: .f16)
        let expected = try cpu.run(q: qh, cache: try PagedKVCache(k: kh, v: vh, layout: .nhd))
        if let m = Tolerance.f16.compare(got, try expected.output.toFloats()) { return "output: \(m)" }
        return nil
    })
    return cases
}
