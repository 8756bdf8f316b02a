internal import CFlashInferParams
import FlashInferCUDA

// The launchers of the memory-bound ops (`ops/norm.cuh`, `ops/activation.cuh`, `ops/rope.cuh`) on
// validated calls (`NormCall`, `ActivationCall`, `RopeCall`, from `Ops/`). What only the kernels
// require is checked here, before any launch: f16/bf16 tensors, a contiguous last axis with the
// leading axes flattening to one row stride, and the size limits.

/// The JIT spec of a norm: element dtype, weight dtype (the input's or f32), vector width, kind.
struct NormSpec: KernelSpec {
    var kind: NormCall.Kind
    var dtype: DType
    var weightDType: DType
    var vec: Int
    /// The launch bound: 512 (hidden ≤ 16384 at 32 elements per thread) or 1024 (64 registers).
    var maxThreads: Int = 512

    var name: String { "\(kind.rawValue)_\(dtype.rawValue)_w\(weightDType.rawValue)_v\(vec)_t\(maxThreads)" }
    var entryPoint: String { "fi_" + name }
    func source() -> String {
        let kindName = switch kind {
        case .rms: "kRMSNorm"
        case .fusedAddRMS: "kFusedAddRMSNorm"
        case .layer: "kLayerNorm"
        }
        return """
            #include <flashinfer/ops/norm.cuh>
            extern "C" __global__ void __launch_bounds__(\(maxThreads)) \(entryPoint)(const __grid_constant__ flashinfer::NormParams p) {
              flashinfer::norm_row<\(dtype.cudaTypeName), \(weightDType.cudaTypeName), \(vec), flashinfer::NormKind::\(kindName), \(maxThreads)>(p);
            }
            """
    }
}

/// The JIT spec of a gated activation.
struct ActivationSpec: KernelSpec {
    var activation: GatedActivation
    var dtype: DType
    var vec: Int

    var name: String { "\(activation.kernelName)_\(dtype.rawValue)_v\(vec)" }
    var entryPoint: String { "fi_" + name }
    func source() -> String {
        let a = switch activation {
        case .silu: "kSiLU"
        case .gelu: "kGELU"
        case .geluTanh: "kGELUTanh"
        }
        return """
            #include <flashinfer/ops/activation.cuh>
            extern "C" __global__ void \(entryPoint)(const __grid_constant__ flashinfer::ActivationParams p) {
              flashinfer::act_and_mul<\(dtype.cudaTypeName), \(vec), flashinfer::Activation::\(a)>(p);
            }
            """
    }
}

/// The JIT spec of RoPE: dtype, vector width, pairing (the angle source and in-place are run-time).
struct RopeSpec: KernelSpec {
    var dtype: DType
    var vec: Int
    var interleave: Bool

    var name: String { "rope_\(dtype.rawValue)_v\(vec)\(interleave ? "_interleave" : "")" }
    var entryPoint: String { "fi_" + name }
    func source() -> String {
        """
        #include <flashinfer/ops/rope.cuh>
        extern "C" __global__ void \(entryPoint)(const __grid_constant__ flashinfer::RopeParams p) {
          flashinfer::apply_rope<\(dtype.cudaTypeName), \(vec), \(interleave)>(p);
        }
        """
    }
}

extension GatedActivation {
    var kernelName: String {
        switch self {
        case .silu: "silu_and_mul"
        case .gelu: "gelu_and_mul"
        case .geluTanh: "gelu_tanh_and_mul"
        }
    }
}

/// The ops' kernels for `kernelCatalog()`: every kind, activation and pairing at the 16-byte
/// width in f16 and bf16, the f32 weights, and the narrower widths once each.
func opsCatalog() -> [(name: String, spec: any KernelSpec)] {
    var out: [(name: String, spec: any KernelSpec)] = []
    for d in [DType.f16, .bf16] {
        for kind in NormCall.Kind.allCases {
            out.append(("\(kind.rawValue) \(d.rawValue)", NormSpec(kind: kind, dtype: d, weightDType: d, vec: 8)))
            out.append(("\(kind.rawValue) \(d.rawValue) f32 weight", NormSpec(kind: kind, dtype: d, weightDType: .f32, vec: 8)))
        }
        for a in GatedActivation.allCases { out.append(("\(a.kernelName) \(d.rawValue)", ActivationSpec(activation: a, dtype: d, vec: 8))) }
        for il in [false, true] { out.append(("rope \(d.rawValue)\(il ? " interleave" : "")", RopeSpec(dtype: d, vec: 8, interleave: il))) }
    }
    for kind in NormCall.Kind.allCases {
        for (d, wd) in [(DType.f16, DType.f16), (.bf16, .f32)] {
            out.append(("\(kind.rawValue) \(d.rawValue) \(wd == d ? "" : "f32 weight ")1024 threads",
                        NormSpec(kind: kind, dtype: d, weightDType: wd, vec: 8, maxThreads: 1024)))
        }
    }
    for v in [4, 2, 1] {
        out.append(("rmsnorm f16 vec \(v)", NormSpec(kind: .rms, dtype: .f16, weightDType: .f16, vec: v)))
        out.append(("fused_add_rmsnorm bf16 vec \(v) 1024 threads", NormSpec(kind: .fusedAddRMS, dtype: .bf16, weightDType: .bf16, vec: v, maxThreads: 1024)))
        out.append(("layernorm bf16 f32 weight vec \(v)", NormSpec(kind: .layer, dtype: .bf16, weightDType: .f32, vec: v)))
        out.append(("silu_and_mul f16 vec \(v)", ActivationSpec(activation: .silu, dtype: .f16, vec: v)))
        out.append(("rope f16 vec \(v)", RopeSpec(dtype: .f16, vec: v, interleave: false)))
        if v >= 2 { out.append(("rope bf16 interleave vec \(v)", RopeSpec(dtype: .bf16, vec: v, interleave: true))) }
    }
    return out
}

// MARK: - Layout rules

/// `t` as rows of its last axis: the number of rows (the leading axes' product) and the stride
/// between rows, in elements. The last axis must be contiguous and the leading axes must flatten
/// to one stride (a row-strided view, e.g. a slice of a wider tensor, is fine).
func opsRowView(_ t: Tensor, name: String) throws(FlashInferError) -> (rows: Int, stride: Int) {
    let r = t.rank, n = t.shape[r - 1]
    guard n <= 1 || t.strides[r - 1] == 1 else {
        throw .strides(tensor: name, strides: t.strides, rule: "the last axis must be contiguous (stride 1) for the CUDA kernels")
    }
    guard r >= 2 else { return (1, n) }
    for i in 0..<(r - 2) where t.shape[i] > 1 && t.strides[i] != t.strides[i + 1] * t.shape[i + 1] {
        throw .strides(tensor: name, strides: t.strides, rule: "the leading axes must flatten to one row stride for the CUDA kernels")
    }
    return (t.shape.dropLast().reduce(1, *), t.shape[r - 2] > 1 ? t.strides[r - 2] : n)
}

/// The widest vector (8, 4, 2 or 1 elements) the kernels can move: it divides `multiples` (row
/// lengths and strides, in elements) and each tensor's address is aligned to the vector's bytes
/// (at most 16, the widest load).
func opsVectorWidth(multiples: [Int], tensors: [Tensor]) -> Int {
    opsVectorWidth(multiples: multiples.reduce(0, |)) { w in tensors.allSatisfy { opsAligned($0, w) } }
}

/// The same without arrays (the per-layer launchers): `multiples` is the OR of the lengths and
/// strides (a power of two divides each of them exactly when it divides their OR), `aligned(w)`
/// whether every tensor's address is aligned to `w` elements (`opsAligned`).
func opsVectorWidth(multiples: Int, aligned: (Int) -> Bool) -> Int {
    for w in [8, 4, 2] where multiples % w == 0 && aligned(w) { return w }
    return 1
}

/// `opsVectorWidth` for one tensor: whether its address is aligned to `w` elements' bytes (at most
/// 16). No array built (the per-layer norm path).
func opsAligned(_ t: Tensor?, _ w: Int) -> Bool {
    guard let t, let a = t.deviceAddress else { return true }
    return a % CUdeviceptr(min(16, w * t.dtype.byteSize)) == 0
}

/// The kernels' element dtypes: the CPU reference takes f32 too; the CUDA kernels f16 and bf16.
private func requireHalfPrecision(_ tensors: [(String, Tensor)]) throws(FlashInferError) {
    for (n, t) in tensors { try requireHalfPrecision(n, t) }
}

private func requireHalfPrecision(_ n: String, _ t: Tensor) throws(FlashInferError) {
    guard t.dtype == .f16 || t.dtype == .bf16 else {
        throw .dtype(tensor: n, expected: "float16 or bfloat16 (the CUDA kernels; float32 runs on the CPU backend)", got: t.dtype)
    }
}

private func requireSameDType(_ tensors: [(String, Tensor)], as ref: (String, Tensor)) throws(FlashInferError) {
    for (n, t) in tensors { try requireSameDType(n, t, as: ref) }
}

/// One tensor (nil: absent, nothing to check) against `ref`'s dtype.
private func requireSameDType(_ n: String, _ t: Tensor?, as ref: (String, Tensor)) throws(FlashInferError) {
    guard let t, t.dtype != ref.1.dtype else { return }
    throw .dtype(tensor: n, expected: "\(ref.1.dtype.rawValue) (\(ref.0)'s)", got: t.dtype)
}

// MARK: - Norms

/// Elements of a row each norm thread keeps in registers (`ops/norm.cuh` norm_elems_per_thread):
/// 32, or 16 with scalar access (an odd hidden size or stride).
func normElemsPerThread(vec: Int) -> Int { vec >= 2 ? 32 : 16 }

/// One CTA per row of 1024 threads at most, each keeping `normElemsPerThread` elements of the row
/// in registers: hidden ≤ 32768 (16384 with scalar access). `ceil(hidden / elements)` threads
/// rounded up to a warp: hidden 8192 → 256 threads, 16384 → 512.
func launchNorm(_ c: NormCall, stream: Stream) throws(FlashInferError) {
    // One tensor at a time, no array built (a per-layer call).
    try requireHalfPrecision("input", c.input)
    let ref = ("input", c.input)
    try requireSameDType("out", c.out, as: ref)
    try requireSameDType("residual", c.residual, as: ref)
    try requireSameDType("residual_out", c.residualOut, as: ref)
    let wd = c.weight.dtype
    guard wd == c.input.dtype || wd == .f32 else {
        throw .dtype(tensor: "weight", expected: "\(c.input.dtype.rawValue) (input's) or float32", got: wd)
    }
    try requireSameDType("bias", c.bias, as: ("weight", c.weight))
    guard c.weight.isContiguous else { throw .strides(tensor: "weight", strides: c.weight.strides, rule: "must be contiguous") }
    if let b = c.bias, !b.isContiguous { throw .strides(tensor: "bias", strides: b.strides, rule: "must be contiguous") }
    let input = try opsRowView(c.input, name: "input"), out = try opsRowView(c.out, name: "out")
    let res = try c.residual.map { r throws(FlashInferError) in try opsRowView(r, name: "residual") }
    let resOut = try c.residualOut.map { r throws(FlashInferError) in try opsRowView(r, name: "residual_out") }
    guard c.rows > 0 else { return }
    // The widest vector (8, 4, 2, 1) dividing the row, the strides and every address (opsVectorWidth's rule).
    let vec = opsVectorWidth(multiples: c.hidden | input.stride | out.stride | (res?.stride ?? 0) | (resOut?.stride ?? 0)) { w in
        opsAligned(c.input, w) && opsAligned(c.out, w) && opsAligned(c.weight, w) && opsAligned(c.residual, w)
            && opsAligned(c.residualOut, w) && opsAligned(c.bias, w)
    }
    let elems = normElemsPerThread(vec: vec)
    guard c.hidden <= 1024 * elems else {
        throw .shape(tensor: "input", axis: c.input.rank - 1, name: "hidden_size",
                     expected: "<= \(1024 * elems) (the CUDA norm kernel\(vec == 1 ? " with an odd hidden size or row stride" : ""))", got: c.hidden)
    }
    let threads = max(32, (c.hidden + 32 * elems - 1) / (32 * elems) * 32)
    let spec = NormSpec(kind: c.kind, dtype: c.input.dtype, weightDType: wd, vec: vec, maxThreads: threads <= 512 ? 512 : 1024)
    try FlashInferError.wrap { () throws(CUDAError) in
        let k = try JIT.shared(for: stream.device).kernel(spec)
        try stream.order(read: c.input.buffer, c.residual?.buffer, c.weight.buffer, c.bias?.buffer, write: c.out.buffer, c.residualOut?.buffer)
        let p = FINormParams(
            input: c.input.deviceAddress!, residual: c.residual?.deviceAddress ?? 0, residual_out: c.residualOut?.deviceAddress ?? 0,
            weight: c.weight.deviceAddress!, bias: c.bias?.deviceAddress ?? 0, out: c.out.deviceAddress!,
            input_stride: Int64(input.stride), residual_stride: Int64(res?.stride ?? 0), residual_out_stride: Int64(resOut?.stride ?? 0),
            out_stride: Int64(out.stride), rows: Int32(c.rows), hidden: Int32(c.hidden), eps: Float(c.eps),
            weight_bias: Float(c.weightBias))
        try k.function.launch(grid: (c.rows, 1, 1), block: (threads, 1, 1), stream: stream, parameter: p,
                              programmaticDependency: true)
    }
}

// MARK: - Gated activations

/// One thread per vector of the output, 256 per CTA.
func launchActivation(_ c: ActivationCall, stream: Stream) throws(FlashInferError) {
    try requireHalfPrecision("input", c.input)
    try requireSameDType("out", c.out, as: ("input", c.input))
    let input = try opsRowView(c.input, name: "input"), out = try opsRowView(c.out, name: "out")
    guard c.rows > 0 else { return }
    let vec = opsVectorWidth(multiples: c.d | input.stride | out.stride) { w in opsAligned(c.input, w) && opsAligned(c.out, w) }
    let vectors = c.rows * (c.d / vec)
    guard vectors < Int(Int32.max) else {
        throw .shape(tensor: "input", axis: 0, name: "rows · d / \(vec)", expected: "< 2^31 (the CUDA kernel's index)", got: vectors)
    }
    let spec = ActivationSpec(activation: c.activation, dtype: c.input.dtype, vec: vec)
    try FlashInferError.wrap { () throws(CUDAError) in
        let k = try JIT.shared(for: stream.device).kernel(spec)
        try stream.order(read: c.input.buffer, write: c.out.buffer)
        let p = FIActivationParams(input: c.input.deviceAddress!, out: c.out.deviceAddress!, input_stride: Int64(input.stride),
                                   out_stride: Int64(out.stride), rows: Int32(c.rows), d: Int32(c.d))
        try k.function.launch(grid: ((vectors + 255) / 256, 1, 1), block: (256, 1, 1), stream: stream,
                              parameter: p, programmaticDependency: true)
    }
}

// MARK: - RoPE

/// How many heads each RoPE thread applies its sin/cos to: enough head groups that
/// `rows · units · groups` threads fill the GPU (2048 per SM), no more (each group recomputes the
/// angles). Decode, 64 rows, D 128 rotate-half (8 units), 32 + 8 heads, 132 SMs: 512 threads per
/// head group, 528 groups wanted → 40 groups of 1 head. Prefill, 8192 rows: 65536 per group,
/// 5 groups → 8 heads each.
func ropeHeadsPerThread(rows: Int, units: Int, heads: Int, multiprocessors: Int) -> Int {
    let base = max(1, rows * units)
    let groups = min(heads, max(1, (multiprocessors * 2048 + base - 1) / base))
    return (heads + groups - 1) / groups
}

/// Host positions uploaded in the stream's order (device positions read where they are; the
/// frequencies travel by value in the parameters), then one launch over (row, vector unit, head
/// group). Nothing waits for the host; with device positions nothing is allocated or uploaded
/// either, so the launch can be captured into a CUDA graph.
func launchRope(_ c: RopeCall, stream: Stream) throws(FlashInferError) {
    // One tensor at a time, no array built (a per-layer call).
    try requireHalfPrecision("q", c.q)
    let ref = ("q", c.q)
    try requireSameDType("k", c.k, as: ref)
    try requireSameDType("q_out", c.qOut, as: ref)
    try requireSameDType("k_out", c.kOut, as: ref)
    func lastAxisContiguous(_ n: String, _ t: Tensor) throws(FlashInferError) {
        guard t.shape[2] <= 1 || t.strides[2] == 1 else {
            throw .strides(tensor: n, strides: t.strides, rule: "the last axis must be contiguous (stride 1) for the CUDA kernels")
        }
    }
    try lastAxisContiguous("q", c.q)
    try lastAxisContiguous("k", c.k)
    try lastAxisContiguous("q_out", c.qOut)
    try lastAxisContiguous("k_out", c.kOut)
    let (nnz, hq, hk, d, rd) = (c.q.shape[0], c.q.shape[1], c.k.shape[1], c.q.shape[2], c.rotaryDim)
    if case .frequencies = c.angles, rd / 2 > Int(FI_ROPE_MAX_FREQS) {
        throw .shape(tensor: "q", axis: 2, name: "rotary_dim", expected: "<= \(2 * Int(FI_ROPE_MAX_FREQS)) (the CUDA kernel's frequency table)", got: rd)
    }
    guard nnz > 0 else { return }
    let inPlace = c.qOut.deviceAddress == c.q.deviceAddress && c.kOut.deviceAddress == c.k.deviceAddress
    // NeoX units read their partner rd/2 further: the vector divides rd/2 (interleaved: rd); and the
    // row and head strides of the four tensors, and their addresses (opsVectorWidth's rule).
    func strides(_ t: Tensor) -> Int { t.strides[0] | t.strides[1] }
    let vec = opsVectorWidth(multiples: d | (c.interleave ? rd : rd / 2) | strides(c.q) | strides(c.k) | strides(c.qOut) | strides(c.kOut)) { w in
        opsAligned(c.q, w) && opsAligned(c.k, w) && opsAligned(c.qOut, w) && opsAligned(c.kOut, w)
    }
    guard !c.interleave || vec >= 2 else {
        throw .strides(tensor: "q", strides: c.q.strides, rule: "interleaved RoPE on the GPU needs an even head_dim, even strides and 4-byte aligned tensors")
    }
    let rotUnits = (c.interleave ? rd : rd / 2) / vec
    let units = rotUnits + (inPlace ? 0 : (d - rd) / vec)
    let hpt = ropeHeadsPerThread(rows: nnz, units: units, heads: hq + hk, multiprocessors: stream.device.properties.multiprocessorCount)
    let threads = nnz * units * ((hq + hk + hpt - 1) / hpt)
    guard threads < Int(Int32.max) else {
        throw .shape(tensor: "q", axis: 0, name: "nnz · vectors per head", expected: "< 2^31 (the CUDA kernel's index)", got: threads)
    }
    let spec = RopeSpec(dtype: c.q.dtype, vec: vec, interleave: c.interleave)
    try FlashInferError.wrap { () throws(CUDAError) in
        let k = try JIT.shared(for: stream.device).kernel(spec)
        func s(_ t: Tensor, _ a: Int) -> Int64 { Int64(t.strides[a]) }
        var p = FIRopeParams()
        (p.q, p.k, p.q_out, p.k_out) = (c.q.deviceAddress!, c.k.deviceAddress!, c.qOut.deviceAddress!, c.kOut.deviceAddress!)
        (p.q_stride_n, p.q_stride_h, p.k_stride_n, p.k_stride_h) = (s(c.q, 0), s(c.q, 1), s(c.k, 0), s(c.k, 1))
        (p.qo_stride_n, p.qo_stride_h, p.ko_stride_n, p.ko_stride_h) = (s(c.qOut, 0), s(c.qOut, 1), s(c.kOut, 0), s(c.kOut, 1))
        (p.nnz, p.num_qo_heads, p.num_kv_heads, p.rotary_dim) = (Int32(nnz), Int32(hq), Int32(hk), Int32(rd))
        (p.units, p.rot_units, p.heads_per_thread) = (Int32(units), Int32(rotUnits), Int32(hpt))
        switch c.angles {
        case .frequencies(let f):
            withUnsafeMutableBytes(of: &p.freqs) { raw in
                let table = raw.bindMemory(to: Float.self)
                for (i, v) in f.enumerated() { table[i] = Float(v) }
            }
        case .cache(let t):
            p.cos_sin_cache = t.deviceAddress!
            p.cache_stride = Int64(t.strides[0])
            p.cache_rows = Int32(clamping: t.shape[0])
        }
        // The positions: host values in one stream-ordered upload (freed after the kernel), or the
        // caller's device memory.
        var uploaded: DeviceBuffer?
        var read: (DeviceBuffer?, DeviceBuffer?) = (nil, nil)
        switch c.positions {
        case .host(let positions):
            let buf = try stream.device.upload(positions, stream: stream)
            uploaded = buf
            p.positions = buf.address
        case .device(.perRow(let b, let int64)):
            read.0 = b
            p.positions = b.address
            p.positions_i64 = int64 ? 1 : 0
        case .device(.ragged(let indptr, let offsets, let batch)):
            read = (indptr, offsets)
            (p.indptr, p.offsets, p.batch_size) = (indptr.address, offsets.address, Int32(batch))
        }
        var cache: Tensor?
        if case .cache(let t) = c.angles { cache = t }
        try stream.order(read: c.q.buffer, c.k.buffer, cache?.buffer, uploaded ?? read.0, read.1,
                         write: c.qOut.buffer, c.kOut.buffer)
        try k.function.launch(grid: ((threads + 255) / 256, 1, 1), block: (256, 1, 1), stream: stream,
                              parameter: p, programmaticDependency: true)
    }
}
