import FlashInferCUDA

/// Index arrays of an append, on the host: validated, then uploaded by the CUDA backend (in the
/// stream's order) or read by the CPU backend. `DeviceAppendIndices` is the form already in device
/// memory.
public struct AppendIndices: Sendable {
    public var batchIndices: [Int32]
    public var positions: [Int32]
    public init(batchIndices: [Int32], positions: [Int32]) {
        self.batchIndices = batchIndices
        self.positions = positions
    }
}

/// The index arrays of an append already in device memory — each Int32, compact — read by the
/// kernel when it runs (upstream's CUDA index tensors): nothing is uploaded and nothing waits for
/// the host, so the call can be captured into a CUDA graph whose replays read what the buffers hold
/// then. As upstream, the host never reads them, so their values are **not validated** before the
/// launch; the kernel checks each token's target instead and skips (does not write) a token whose
/// request is outside `0..<batchSize`, whose position is negative or past its request's pages
/// (`kvIndptr[b] + position / pageSize` not below `kvIndptr[b + 1]`), whose request's `kvIndptr`
/// entries leave `0...numIndices`, or whose page is outside the cache — never a write outside it.
/// The buffers are borrowed for the call (ordered on its stream as it reads them).
public struct DeviceAppendIndices: Sendable {
    /// `[nnz]`: each appended token's request.
    public var batchIndices: DeviceBuffer
    /// `[nnz]`: each appended token's position in its request (the page table already counts it).
    public var positions: DeviceBuffer
    /// `[numIndices]`: the page table's page ids.
    public var kvIndices: DeviceBuffer
    /// `[batchSize + 1]`: request `b`'s pages are `kvIndices[kvIndptr[b] ..< kvIndptr[b + 1]]`.
    public var kvIndptr: DeviceBuffer
    public var nnz: Int
    public var batchSize: Int
    public var numIndices: Int

    public init(batchIndices: DeviceBuffer, positions: DeviceBuffer, kvIndices: DeviceBuffer, kvIndptr: DeviceBuffer,
                nnz: Int, batchSize: Int, numIndices: Int) {
        self.batchIndices = batchIndices
        self.positions = positions
        self.kvIndices = kvIndices
        self.kvIndptr = kvIndptr
        self.nnz = nnz
        self.batchSize = batchSize
        self.numIndices = numIndices
    }
}

/// Where an append's indices come from, for the CUDA launcher.
enum AppendIndexSource {
    /// Validated host arrays and table: uploaded with the launch.
    case host(AppendIndices, PageTable)
    /// The caller's device arrays: read by the kernel, bounds-checked there.
    case device(DeviceAppendIndices)

    var nnz: Int {
        switch self {
        case .host(let i, _): i.batchIndices.count
        case .device(let d): d.nnz
        }
    }
}

/// `append_paged_kv_cache` (FlashInfer ≥ 0.2): writes `appendK`/`appendV` `[nnz, Hkv, D]` into the
/// cache. Token `t` belongs to request `batchIndices[t]` at position `positions[t]`; the page table
/// must already include the appended tokens (compute the indices with `getBatchIndicesPositions`
/// from `append_indptr` and the post-append `table.seqLens`).
///
/// Dtypes: `appendK` and `appendV` share one dtype. When it is the cache's (any dtype), the rows are
/// copied as they are and `kScale` / `vScale` must be 1. An FP8 cache (e4m3 / e5m2) also takes
/// f16, bf16 or f32 K/V and stores each element `x` as `quantize(x, to: cache.dtype, scale:)` gives it,
/// with `kScale` for K and `vScale` for V: the code of `x / scale` rounded once to nearest, ties to
/// even, saturating to the largest finite value (±448 e4m3, ±57344 e5m2; ±inf too), NaN → NaN
/// (`Tensor/FP8Quantization.swift`). Attention then reads the cache with
/// `AttentionOptions(kScale: kScale, vScale: vScale)`. The GPU kernel stores the same codes, bit
/// for bit (`page/append.cuh`). Scales must be finite and > 0.
///
/// Host cache and tensors: computed on the CPU. Device cache: the GPU kernel on `stream`
/// (`table` and `indices` are uploaded in the stream's order; the call does not wait for the device).
public func appendPagedKVCache(appendK: Tensor, appendV: Tensor, indices: AppendIndices, cache: PagedKVCache,
                               table: PageTable, kScale: Float = 1, vScale: Float = 1,
                               stream: Stream? = nil) throws(FlashInferError) {
    try table.validate(numPages: cache.numPages)
    // The cache's placement picks the backend: a device cache is written on `stream`.
    let backend: Backend
    if cache.k.isOnDevice {
        guard let stream else { throw .backendMismatch(what: "stream", rule: "a device cache needs a stream") }
        backend = .cuda(stream)
    } else {
        backend = .cpu
    }
    let nnz = indices.batchIndices.count
    try validateAppendTensors(appendK: appendK, appendV: appendV, nnz: nnz, cache: cache, kScale: kScale, vScale: vScale,
                              placement: backend.implementation.placement)
    guard indices.positions.count == nnz else {
        throw .shape(tensor: "positions", axis: 0, name: "nnz", expected: "\(nnz)", got: indices.positions.count)
    }
    let seqLens = table.seqLens
    for t in 0..<nnz {
        let b = Int(indices.batchIndices[t]), p = Int(indices.positions[t])
        guard b >= 0 && b < table.batchSize else { throw .indices(array: "batch_indices", position: t, rule: "request \(b) outside 0..<\(table.batchSize)") }
        guard p >= 0 && p < seqLens[b] else { throw .indices(array: "positions", position: t, rule: "position \(p) outside request \(b)'s \(seqLens[b]) tokens") }
    }
    try backend.implementation.appendPagedKVCache(appendK: appendK, appendV: appendV, indices: indices, cache: cache, table: table,
                                                  kScale: kScale, vScale: vScale)
}

/// `appendPagedKVCache` with the index arrays already in device memory (`DeviceAppendIndices`:
/// read by the kernel, not validated on the host; see there for what the kernel skips): writes
/// `appendK` / `appendV` `[nnz, Hkv, D]` into the device `cache` on `stream`, without an upload or a
/// host wait (graph-capturable). Shapes, dtypes, scales and placement are validated as for host
/// indices; the buffers must be on the stream's device and hold the counts given.
public func appendPagedKVCache(appendK: Tensor, appendV: Tensor, deviceIndices d: DeviceAppendIndices, cache: PagedKVCache,
                               kScale: Float = 1, vScale: Float = 1, stream: Stream) throws(FlashInferError) {
    let placement = Placement.device(stream.device)
    guard d.nnz >= 0, d.batchSize >= 0, d.numIndices >= 0, d.nnz < Int(Int32.max), d.batchSize < Int(Int32.max),
          d.numIndices < Int(Int32.max) else {
        throw .option(name: "nnz / batch_size / num_indices", value: "\(d.nnz) / \(d.batchSize) / \(d.numIndices)",
                      rule: "must be in 0 ..< 2^31 (the kernel's indices)")
    }
    try validateAppendTensors(appendK: appendK, appendV: appendV, nnz: d.nnz, cache: cache, kScale: kScale, vScale: vScale,
                              placement: placement)
    try checkDeviceValues(d.batchIndices, name: "batch_indices", count: d.nnz, elementBytes: 4, placement: placement)
    try checkDeviceValues(d.positions, name: "positions", count: d.nnz, elementBytes: 4, placement: placement)
    try checkDeviceValues(d.kvIndices, name: "kv_indices", count: d.numIndices, elementBytes: 4, placement: placement)
    try checkDeviceValues(d.kvIndptr, name: "kv_indptr", count: d.batchSize + 1, elementBytes: 4, placement: placement)
    try appendOnDevice(appendK: appendK, appendV: appendV, indices: .device(d), cache: cache, kScale: kScale, vScale: vScale,
                       stream: stream)
}

/// The appended tensors against the cache: placement, rank, `nnz` rows, the cache's heads and head
/// dim, dtypes (`validateAppendDType`), a unit head-dim stride, and the scales.
func validateAppendTensors(appendK: Tensor, appendV: Tensor, nnz: Int, cache: PagedKVCache, kScale: Float, vScale: Float,
                           placement: Placement) throws(FlashInferError) {
    // One tensor at a time, no array built (a per-layer call).
    try checkPlacement("k_cache", cache.k, placement)
    try checkPlacement("v_cache", cache.v, placement)
    func appended(_ n: String, _ t: Tensor) throws(FlashInferError) {
        guard t.rank == 3 else { throw .rank(tensor: n, expected: 3, got: t.rank) }
        guard t.shape[0] == nnz else { throw .shape(tensor: n, axis: 0, name: "nnz", expected: "\(nnz) (len(batch_indices))", got: t.shape[0]) }
        guard t.shape[1] == cache.numKVHeads else { throw .shape(tensor: n, axis: 1, name: "num_kv_heads", expected: "\(cache.numKVHeads)", got: t.shape[1]) }
        guard t.shape[2] == cache.headDim else { throw .shape(tensor: n, axis: 2, name: "head_dim", expected: "\(cache.headDim)", got: t.shape[2]) }
        try validateAppendDType(n, t.dtype, cache: cache.dtype)
        // (An empty tensor's strides are arbitrary: NumPy reports zeros.)
        guard t.strides[2] == 1 || t.shape[2] <= 1 || t.shape[0] == 0 else {
            throw .strides(tensor: n, strides: t.strides, rule: "the head_dim axis must have stride 1")
        }
        try checkPlacement(n, t, placement)
    }
    try appended("append_key", appendK)
    try appended("append_value", appendV)
    guard appendV.dtype == appendK.dtype else {
        throw .dtype(tensor: "append_value", expected: "\(appendK.dtype.rawValue) (append_key's dtype)", got: appendV.dtype)
    }
    try validateAppendScales(kScale: kScale, vScale: vScale, quantizing: appendK.dtype != cache.dtype, appendDType: appendK.dtype)
}

/// The dtypes an append takes: the cache's (a copy), or f16 / bf16 / f32 into an FP8 cache (quantized).
func validateAppendDType(_ name: String, _ dtype: DType, cache: DType) throws(FlashInferError) {
    if dtype == cache { return }
    if cache.isFP8 {
        guard dtype == .f16 || dtype == .bf16 || dtype == .f32 else {
            throw .dtype(tensor: name, expected: "\(cache.rawValue) (the cache's dtype), or f16, bf16 or f32 to quantize into the \(cache.rawValue) cache", got: dtype)
        }
    } else {
        throw .dtype(tensor: name, expected: "\(cache.rawValue) (the cache's dtype; only an e4m3 or e5m2 cache converts what is appended)", got: dtype)
    }
}

/// `k_scale` and `v_scale`: finite, > 0, and 1 when nothing is quantized (the append is a copy).
func validateAppendScales(kScale: Float, vScale: Float, quantizing: Bool, appendDType: DType) throws(FlashInferError) {
    try validateAppendScale("k_scale", kScale, quantizing: quantizing, appendDType: appendDType)
    try validateAppendScale("v_scale", vScale, quantizing: quantizing, appendDType: appendDType)
}

private func validateAppendScale(_ name: String, _ value: Float, quantizing: Bool, appendDType: DType) throws(FlashInferError) {
    guard value.isFinite else { throw .option(name: name, value: "\(value)", rule: "must be finite") }
    guard value > 0 else { throw .option(name: name, value: "\(value)", rule: "must be > 0") }
    guard quantizing || value == 1 else {
        throw .option(name: name, value: "\(value)",
                      rule: "must be 1: append_key and append_value have the cache's dtype \(appendDType.rawValue), so they are copied, not quantized (scales apply to f16/bf16/f32 appended into an e4m3 or e5m2 cache)")
    }
}
