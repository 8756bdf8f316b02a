/// A paged KV cache: K and V pages of `pageSize` tokens.
///
/// Shapes per layout (FlashInfer's): NHD `[maxPages, pageSize, Hkv, D]`, HND `[maxPages, Hkv, pageSize, D]`,
/// either as two tensors or one `[maxPages, 2, ...]` tensor (K at index 0, V at 1 of axis 1).
/// Strided (non-contiguous) tensors are allowed as long as the head_dim axis has stride 1.
public struct PagedKVCache: Sendable {
    public var k: Tensor
    public var v: Tensor
    public var layout: KVLayout

    /// Two tensors.
    public init(k: Tensor, v: Tensor, layout: KVLayout = .nhd) throws(FlashInferError) {
        self.k = k
        self.v = v
        self.layout = layout
        try validate()
    }

    /// One `[maxPages, 2, ...]` tensor.
    public init(combined kv: Tensor, layout: KVLayout = .nhd) throws(FlashInferError) {
        guard kv.rank == 5 else { throw .rank(tensor: "paged_kv_cache", expected: 5, got: kv.rank) }
        guard kv.shape[1] == 2 else { throw .shape(tensor: "paged_kv_cache", axis: 1, name: "k/v", expected: "2", got: kv.shape[1]) }
        try self.init(k: kv.select(axis: 1, index: 0), v: kv.select(axis: 1, index: 1), layout: layout)
    }

    public var numPages: Int { k.shape[0] }
    public var pageSize: Int { layout == .nhd ? k.shape[1] : k.shape[2] }
    public var numKVHeads: Int { layout == .nhd ? k.shape[2] : k.shape[1] }
    public var headDim: Int { k.shape[3] }
    public var dtype: DType { k.dtype }

    /// Element strides of (page, token, head) in K (V may differ).
    public func strides(of t: Tensor) -> (page: Int, token: Int, head: Int) {
        layout == .nhd ? (t.strides[0], t.strides[1], t.strides[2]) : (t.strides[0], t.strides[2], t.strides[1])
    }

    func validate() throws(FlashInferError) {
        guard k.rank == 4 else { throw .rank(tensor: "k_cache", expected: 4, got: k.rank) }
        guard v.rank == 4 else { throw .rank(tensor: "v_cache", expected: 4, got: v.rank) }
        for axis in 0..<4 where v.shape[axis] != k.shape[axis] {
            throw .shape(tensor: "v_cache", axis: axis, name: "dim", expected: "\(k.shape[axis]) (k_cache's)", got: v.shape[axis])
        }
        guard v.dtype == k.dtype else { throw .dtype(tensor: "v_cache", expected: k.dtype.rawValue, got: v.dtype) }
        // (Each half checked in turn, no array built: run() paths validate a cache per call.)
        try validateStrides(k, "k_cache")
        try validateStrides(v, "v_cache")
        guard k.isOnDevice == v.isOnDevice else { throw .placement(tensor: "v_cache", expected: k.isOnDevice ? "device" : "host") }
        if k.isOnDevice, k.device !== v.device { throw .deviceMismatch(tensor: "v_cache") }
    }

    private func validateStrides(_ t: Tensor, _ n: String) throws(FlashInferError) {
        if t.strides[3] != 1 && t.shape[3] > 1 {
            throw .strides(tensor: n, strides: t.strides, rule: "the head_dim axis must have stride 1")
        }
        // The decode kernels compute row addresses with 32-bit byte strides (kv.cuh, rows()).
        let (page, token, _) = strides(of: t)
        guard numPages <= 1 || abs(page) * t.dtype.byteSize <= Int(Int32.max),
              pageSize <= 1 || abs(token) * t.dtype.byteSize <= Int(Int32.max) else {
            throw .strides(tensor: n, strides: t.strides, rule: "page and token strides must stay below 2^31 bytes")
        }
    }

    /// Request `b`'s keys and values as contiguous `[seqLen, Hkv, D]` Floats (host caches; for the
    /// CPU reference and the checks).
    public func gather(request b: Int, table: PageTable) throws(FlashInferError) -> (k: [Float], v: [Float]) {
        let kBytes = try FlashInferError.wrap { () throws(CUDAError) in try k.contiguousBytesChecked() }
        let vBytes = try FlashInferError.wrap { () throws(CUDAError) in try v.contiguousBytesChecked() }
        let kAll = dtype.decode(kBytes), vAll = dtype.decode(vBytes)
        return gather(request: b, table: table, kAll: kAll, vAll: vAll)
    }

    /// As above, from the whole caches already decoded in logical order (`k.toFloats()`,
    /// `v.toFloats()`), so that many requests can be gathered from one read-back.
    public func gather(request b: Int, table: PageTable, kAll: [Float], vAll: [Float]) -> (k: [Float], v: [Float]) {
        let n = table.seqLen(b), h = numKVHeads, d = headDim, ps = pageSize
        var ko = [Float](repeating: 0, count: n * h * d), vo = ko
        for pos in 0..<n {
            let (page, slot) = table.location(request: b, position: pos)
            for head in 0..<h {
                let src = layout == .nhd ? ((page * ps + slot) * h + head) * d : ((page * h + head) * ps + slot) * d
                let dst = (pos * h + head) * d
                for i in 0..<d {
                    ko[dst + i] = kAll[src + i]
                    vo[dst + i] = vAll[src + i]
                }
            }
        }
        return (ko, vo)
    }
}

import FlashInferCUDA
