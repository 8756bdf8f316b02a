import FlashInferCUDA

/// Block-sparse (BSR) attention, upstream's `BlockSparseAttentionWrapper` (`flashinfer/sparse.py`):
/// `M` queries attend `N` keys through an `M × N` mask made of `R × C` blocks stored as a BSR matrix.
/// See `docs/Sparse.md`.

/// Which `R × C` blocks of an `M × N` attention matrix are computed: a validated BSR pattern
/// (scipy's `bsr_matrix` layout, as upstream).
///
/// Block row `i` (queries `i·R ..< min((i+1)·R, M)`) sees the block columns
/// `indices[indptr[i] ..< indptr[i+1]]` (keys `col·C ..< (col+1)·C`). There are `MB = ceil(M / R)`
/// block rows and `NB = N / C` block columns; `N` must be divisible by `C`, `M` need not be by `R`.
///
/// Upstream runs it on the paged prefill kernel: block row `i` is request `i` with the queries above
/// (`qoIndptr`) and its blocks as pages of `C` tokens (`pageTable`), so the GPU path is batch prefill
/// over this table (plus the per-request custom mask when there is an in-block mask).
public struct BlockSparsePattern: Sendable, Hashable {
    /// `[MB + 1]`: block row `i`'s entries are `indices[indptr[i] ..< indptr[i+1]]`.
    public let indptr: [Int32]
    /// `[nnz]` block columns, each in `0 ..< NB`, none twice in a block row (any order).
    public let indices: [Int32]
    /// `M`: queries (rows of the matrix).
    public let rows: Int
    /// `N`: keys (columns of the matrix).
    public let columns: Int
    /// `R`: rows per block.
    public let blockRows: Int
    /// `C`: columns per block.
    public let blockColumns: Int

    /// Validates the pattern (`validateBlockSparse`: `N % C == 0`, `indptr` of `ceil(M/R) + 1` entries
    /// from 0, monotonic, ending at `indices.count`, every index in `0 ..< N/C`, no index twice in a row).
    public init(indptr: [Int32], indices: [Int32], rows: Int, columns: Int, blockRows: Int, blockColumns: Int) throws(FlashInferError) {
        try validateBlockSparse(indptr: indptr, indices: indices, rows: rows, columns: columns, blockRows: blockRows, blockColumns: blockColumns)
        (self.indptr, self.indices) = (indptr, indices)
        (self.rows, self.columns, self.blockRows, self.blockColumns) = (rows, columns, blockRows, blockColumns)
    }

    /// `MB = ceil(M / R)`.
    public var numBlockRows: Int { indptr.count - 1 }
    /// `NB = N / C`.
    public var numBlockColumns: Int { columns / blockColumns }
    /// Stored blocks.
    public var nnz: Int { indices.count }

    /// Queries of block row `i`: `i·R ..< min((i+1)·R, M)`.
    public func queryRange(blockRow i: Int) -> Range<Int> { (i * blockRows)..<min((i + 1) * blockRows, rows) }

    /// Upstream's `qo_indptr`: `R · arange(MB + 1)` with the last entry `M`.
    public var qoIndptr: [Int32] { (0...numBlockRows).map { Int32(min($0 * blockRows, rows)) } }

    /// Upstream's page table: each block row a request whose pages are its block columns, page size
    /// `C`, last page full (`C`). Keys of request `i` are its blocks' columns in `indices` order.
    public var pageTable: PageTable {
        PageTable(indptr: indptr, indices: indices, lastPageLen: Array(repeating: Int32(blockColumns), count: numBlockRows), pageSize: blockColumns)
    }

    /// Elements of each block row's flattened mask (`mask_indptr` before packing): block row `i` is a
    /// `rows_i × (nnz_i · C)` mask.
    public var maskIndptr: [Int32] {
        var out: [Int32] = [0]
        for i in 0..<numBlockRows {
            out.append(out[i] + Int32(queryRange(blockRow: i).count * Int(indptr[i + 1] - indptr[i]) * blockColumns))
        }
        return out
    }

    /// Byte offsets of each block row's packed mask (`mask_indptr` after `segment_packbits`).
    public var packedMaskIndptr: [Int32] {
        let e = maskIndptr
        var out: [Int32] = [0]
        for i in 0..<numBlockRows { out.append(out[i] + (e[i + 1] - e[i] + 7) / 8) }
        return out
    }

    /// Upstream's `convert_bsr_mask_layout`: the `[nnz, R, C]` in-block mask reordered to the
    /// per-request layout the kernel reads, block row by block row `[R, nnz_i, C]` (query, block, column),
    /// i.e. row-major `[R, nnz_i · C]`: request `i`'s query `r` and its key `(p − indptr[i])·C + c`.
    /// Needs `M` divisible by `R` and `nnz · R · C` elements.
    public func flattenedMask(_ blocks: [Bool]) throws(FlashInferError) -> [Bool] {
        try validateBlockSparseMask(.blocks(blocks), pattern: self)
        let (r, c) = (blockRows, blockColumns)
        var out = [Bool]()
        out.reserveCapacity(blocks.count)
        for i in 0..<numBlockRows {
            let lo = Int(indptr[i]), hi = Int(indptr[i + 1])
            for row in 0..<r {
                for p in lo..<hi { out.append(contentsOf: blocks[((p * r + row) * c)..<((p * r + row + 1) * c)]) }
            }
        }
        return out
    }

    /// The in-block mask as upstream's `packed_mask` and its byte `indptr`: `flattenedMask` packed per
    /// block row, little-endian (`segmentPackbits(flattened, maskIndptr, .little)`).
    public func packedMask(_ blocks: [Bool]) throws(FlashInferError) -> (packed: [UInt8], indptr: [Int32]) {
        try segmentPackbits(try flattenedMask(blocks), indptr: maskIndptr, bitOrder: .little)
    }

    /// The dense `[M, N]` mask (row-major, `true` keeps) this pattern and optional in-block mask define:
    /// query `q` sees key `k` iff block `(q / R, k / C)` is stored and, with a mask, its bit for
    /// `(q % R, k % C)` is set. A query whose block row stores no block sees nothing.
    public func denseMask(_ mask: BlockSparseMask? = nil) throws(FlashInferError) -> [Bool] {
        if let mask { try validateBlockSparseMask(mask, pattern: self) }
        let (r, c, n) = (blockRows, blockColumns, columns)
        let byteIndptr = mask.map { _ in packedMaskIndptr }
        var dense = [Bool](repeating: false, count: rows * n)
        for i in 0..<numBlockRows {
            let lo = Int(indptr[i]), hi = Int(indptr[i + 1])
            let rowKeys = (hi - lo) * c  // keys of request i in the flattened layout
            for q in queryRange(blockRow: i) {
                let local = q - i * r
                for p in lo..<hi {
                    let col0 = Int(indices[p]) * c
                    for cc in 0..<c {
                        let keep: Bool
                        switch mask {
                        case nil: keep = true
                        case .blocks(let b)?: keep = b[(p * r + local) * c + cc]
                        case .packed(let bytes)?:
                            let off = local * rowKeys + (p - lo) * c + cc
                            keep = (bytes[Int(byteIndptr![i]) + (off >> 3)] >> UInt8(off & 7)) & 1 == 1
                        }
                        dense[q * n + col0 + cc] = keep
                    }
                }
            }
        }
        return dense
    }
}

extension BlockSparsePattern {
    /// The in-block mask as the batch prefill plan's per-request custom masks (block row `i` =
    /// request `i`): `.blocks` packed by `packedMask`, `.packed` with `packedMaskIndptr`.
    func batchCustomMask(_ mask: BlockSparseMask?) throws(FlashInferError) -> BatchCustomMask? {
        switch mask {
        case nil: return nil
        case .blocks(let b)?:
            let (bytes, indptr) = try packedMask(b)
            return .packed(bytes, indptr: indptr)
        case .packed(let bytes)?:
            try validateBlockSparseMask(.packed(bytes), pattern: self)
            return .packed(bytes, indptr: packedMaskIndptr)
        }
    }

    /// K and V (`[N, Hkv, D]` NHD or `[Hkv, N, D]` HND, any strides but a unit head_dim stride)
    /// viewed, without a copy, as the paged cache upstream's kernel reads: `N / C` pages of `C`
    /// tokens, page `j` = block column `j` (keys `j·C ..< (j+1)·C`).
    /// - NHD: `[N/C, C, Hkv, D]`, strides (C·s_N, s_N, s_H, 1), where `s_N`, `s_H` are the token and
    ///   head strides of k (contiguous: page C·Hkv·D, slot Hkv·D, head D);
    /// - HND: `[N/C, Hkv, C, D]`, strides (C·s_N, s_H, s_N, 1) (contiguous: page C·D, head N·D, slot D).
    /// The view reads the same elements as the tensors: page `p`, slot `s` is key `p·C + s`.
    func pagedKV(k: Tensor, v: Tensor, layout: KVLayout) throws(FlashInferError) -> PagedKVCache {
        let c = blockColumns
        func view(_ t: Tensor, _ name: String) throws(FlashInferError) -> Tensor {
            guard t.rank == 3 else { throw .rank(tensor: name, expected: 3, got: t.rank) }
            let (na, ha) = layout == .nhd ? (0, 1) : (1, 0)
            guard t.shape[na] == columns else {
                throw .shape(tensor: name, axis: na, name: "N", expected: "\(columns) (from plan)", got: t.shape[na])
            }
            guard t.strides[2] == 1 || t.shape[2] <= 1 else {
                throw .strides(tensor: name, strides: t.strides, rule: "the head_dim axis must have stride 1")
            }
            let (n, h, d) = (t.shape[na], t.shape[ha], t.shape[2])
            let (sn, sh) = (t.strides[na], t.strides[ha])
            let shape = layout == .nhd ? [n / c, c, h, d] : [n / c, h, c, d]
            let strides = layout == .nhd ? [c * sn, sn, sh, t.strides[2]] : [c * sn, sh, sn, t.strides[2]]
            return Tensor(storage: t.storage, shape: shape, strides: strides, dtype: t.dtype, offset: t.offset)
        }
        return try PagedKVCache(k: try view(k, "k"), v: try view(v, "v"), layout: layout)
    }
}

extension BatchPrefillAttention {
    /// Plans block-sparse attention as upstream runs it (`sparse.py`): block row `i` is request `i`
    /// with queries `pattern.qoIndptr`, its blocks the pages of `pattern.pageTable` (page size `C`,
    /// last page full) over K/V viewed as `N / C` pages (`BlockSparsePattern.pagedKV`), and the
    /// in-block mask as the requests' custom masks. Options: the block-sparse ones (causal, window
    /// and position encodings are refused by `validateBlockSparseOptions` before this).
    func plan(blockSparse pattern: BlockSparsePattern, mask: BlockSparseMask?, numQOHeads: Int, numKVHeads: Int, headDim: Int,
              qDType: DType, kvDType: DType, options: AttentionOptions) throws(FlashInferError) {
        try plan(qoIndptr: pattern.qoIndptr, table: pattern.pageTable, numQOHeads: numQOHeads, numKVHeads: numKVHeads,
                 headDim: headDim, dtype: qDType, kvDType: kvDType, options: options,
                 customMask: try pattern.batchCustomMask(mask), numPagesInCache: pattern.numBlockColumns,
                 tableValidated: true)  // validateBlockSparse checked every block column against N / C
    }
}

/// A mask inside the stored blocks of a `BlockSparsePattern` (upstream's `mask` / `packed_mask`).
public enum BlockSparseMask: Sendable, Hashable {
    /// `[nnz, R, C]` booleans: element `(p·R + r)·C + c` says whether row `r` of stored block `p`
    /// (the block at `indices[p]`) sees column `c` of that block.
    case blocks([Bool])
    /// Upstream's `packed_mask`: block row by block row, the `[R, nnz_i · C]` layout of
    /// `BlockSparsePattern.flattenedMask`, packed little-endian, at the byte offsets
    /// `BlockSparsePattern.packedMaskIndptr` (what `packedMask(_:)` returns).
    case packed([UInt8])
}

/// Block-sparse attention with a plan/run lifecycle, like upstream's `BlockSparseAttentionWrapper`:
/// q `[M, Hq, D]`, k and v `[N, Hkv, D]` (NHD) or `[Hkv, N, D]` (HND); output `[M, Hq, D]` in q's
/// dtype, LSE `[M, Hq]` Float32 base 2.
///
/// ```swift
/// let pattern = try BlockSparsePattern(indptr: [0, 1, 3, 5], indices: [2, 0, 2, 1, 2],
///                                      rows: 3, columns: 3, blockRows: 1, blockColumns: 1)
/// let bsr = BlockSparseAttention(backend: .cpu)
/// try bsr.plan(pattern: pattern, numQOHeads: 32, numKVHeads: 8, headDim: 128)
/// let out = try bsr.run(q: q, k: k, v: v).output
/// ```
///
/// - K/V may be FP8 (`kvDType: .e4m3` / `.e5m2`, q f16 or bf16) with `options.kScale` / `vScale`.
/// - Options: `smScale`, `logitsSoftCap`, `kScale`, `vScale`, `layout`. Causal, window and position
///   encodings are rejected (`validateBlockSparseOptions` says why).
/// - Backends:
///   - CPU: the Float64 reference (`ReferenceAttention.blockSparse`), new host tensors.
///   - CUDA: upstream's formulation on the paged batch prefill kernel. `plan` plans a
///     `BatchPrefillAttention` once (block row `i` = request `i` of `pattern.qoIndptr`, its blocks =
///     pages of `pattern.pageTable`, page size `C`; the in-block mask packed as the requests' custom
///     masks and uploaded; the schedule uploaded); `run` only launches, over K/V viewed without a copy
///     as `N / C` pages of `C` tokens (`BlockSparsePattern.pagedKV`). `run(q:k:v:out:lse:)` writes
///     into caller buffers. Upstream runs the CUDA-core decode kernel instead when `R · group < 4`
///     and there is no mask; here the tensor-core prefill kernel always runs (its 64-row q tile then
///     holds few rows: correct, but slower than the decode kernel would be for that shape).
///     The per-head variable block sizes of upstream's `VariableBlockSparseAttentionWrapper` are
///     not implemented.
///
/// Threads: one at a time, like the other wrappers.
public final class BlockSparseAttention: @unchecked Sendable {
    public private(set) var backend: Backend

    /// Moves the wrapper to `stream` (on the plan's device): later `run`s and `plan`s are enqueued
    /// there. No re-plan: the plan's buffers stay, and the first run on `stream` waits for their
    /// uploads on the previous stream (docs/ORDERING.md) — except under CUDA-graph capture, which
    /// records no waits (synchronize before capturing, as `torch.cuda.graph` does). How a caller
    /// plans on one stream and captures `run` on another (the C ABI does this when a run names
    /// another stream than its plan's).
    public func rebind(stream: Stream) throws(FlashInferError) {
        backend = try backend.rebound(to: stream)
        try prefill?.rebind(stream: stream)
    }

    public private(set) var pattern: BlockSparsePattern?
    var mask: BlockSparseMask?
    var shape: (numQOHeads: Int, numKVHeads: Int, headDim: Int, qDType: DType, kvDType: DType)?
    var options = AttentionOptions()
    /// CUDA: the batch prefill plan the pattern runs as (made by `plan`, reused by the next `plan`:
    /// its device buffers grow only). nil on the CPU.
    var prefill: BatchPrefillAttention?

    /// CUDA: the schedule of the batch prefill the planned pattern runs as (work items, q tile,
    /// split-KV); nil on the CPU and before a plan.
    public var batchPrefillPlan: BatchPrefillPlan? { pattern == nil ? nil : prefill?.plan }

    public init(backend: Backend) {
        self.backend = backend
    }

    /// Plans the pattern. Validates the pattern's mask, the heads, head dim, dtypes and options.
    /// - Parameters:
    ///   - kvDType: K/V dtype, nil for q's; e4m3 / e5m2 for FP8 K/V.
    ///   - mask: optional in-block mask (needs `M` divisible by `R`).
    public func plan(pattern: BlockSparsePattern, numQOHeads: Int, numKVHeads: Int, headDim: Int, qDType: DType = .f16,
                     kvDType: DType? = nil, mask: BlockSparseMask? = nil,
                     options: AttentionOptions = AttentionOptions()) throws(FlashInferError) {
        self.pattern = nil
        if let mask { try validateBlockSparseMask(mask, pattern: pattern) }
        guard supportedHeadDims.contains(headDim) else { throw .unsupportedHeadDim(headDim, supported: supportedHeadDims) }
        guard numQOHeads > 0 else { throw .option(name: "num_qo_heads", value: "\(numQOHeads)", rule: "must be > 0") }
        guard numKVHeads > 0, numQOHeads % numKVHeads == 0 else { throw .groupSize(numQOHeads: numQOHeads, numKVHeads: numKVHeads) }
        let kv = kvDType ?? qDType
        try validateQKVDTypes(q: qDType, kv: kv)
        try validateBlockSparseOptions(options)
        prefill = try backend.implementation.planBlockSparse(self, pattern: pattern, mask: mask, numQOHeads: numQOHeads,
                                                            numKVHeads: numKVHeads, headDim: headDim, qDType: qDType, kvDType: kv,
                                                            options: options)
        self.mask = mask
        self.shape = (numQOHeads, numKVHeads, headDim, qDType, kv)
        self.options = options
        self.pattern = pattern
    }

    /// `plan(pattern:…)` from upstream's arguments: `indptr`, `indices`, `M`, `N`, `R`, `C`.
    public func plan(indptr: [Int32], indices: [Int32], rows: Int, columns: Int, blockRows: Int, blockColumns: Int,
                     numQOHeads: Int, numKVHeads: Int, headDim: Int, qDType: DType = .f16, kvDType: DType? = nil,
                     mask: BlockSparseMask? = nil, options: AttentionOptions = AttentionOptions()) throws(FlashInferError) {
        let p = try BlockSparsePattern(indptr: indptr, indices: indices, rows: rows, columns: columns, blockRows: blockRows, blockColumns: blockColumns)
        try plan(pattern: p, numQOHeads: numQOHeads, numKVHeads: numKVHeads, headDim: headDim, qDType: qDType, kvDType: kvDType,
                 mask: mask, options: options)
    }

    /// Attends q `[M, Hq, D]` to k, v (`[N, Hkv, D]` NHD or `[Hkv, N, D]` HND, the planned dtypes): the
    /// output `[M, Hq, D]` (q's dtype) and, with `returnLSE`, the LSE `[M, Hq]` (Float32, base 2). New
    /// tensors (on the GPU allocated on the stream; `run(q:k:v:out:lse:)` writes caller buffers).
    public func run(q: Tensor, k: Tensor, v: Tensor, returnLSE: Bool = false) throws(FlashInferError) -> AttentionOutput {
        let (pattern, shape) = try validateRun(q: q, k: k, v: v)
        return try backend.implementation.blockSparseAttention(self, q: q, k: k, v: v, pattern: pattern, numQOHeads: shape.numQOHeads,
                                                               numKVHeads: shape.numKVHeads, headDim: shape.headDim,
                                                               returnLSE: returnLSE)
    }

    /// Runs the planned pattern on the GPU into caller buffers: no allocation and no host work but
    /// argument packing (the schedule and mask were uploaded by `plan`). Asynchronous on the stream.
    /// - Parameters:
    ///   - q: `[M, Hq, D]` on the device; k, v as for `run(q:k:v:returnLSE:)` (16-byte aligned rows).
    ///   - out: contiguous `[M, Hq, D]`, q's dtype.
    ///   - lse: nil, or contiguous Float32 `[M, Hq]` (base 2).
    public func run(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?) throws(FlashInferError) {
        let (pattern, shape) = try validateRun(q: q, k: k, v: v)
        let impl = backend.implementation
        try validateOutputBuffers(q: q, out: out, lse: lse, lseShape: (pattern.rows, shape.numQOHeads),
                                  lseShapeName: "[M, num_qo_heads]", placement: impl.placement)
        try impl.runBlockSparse(self, q: q, k: k, v: v, out: out, lse: lse)
    }

    /// The run-time rules (both runs): planned, q `[M, Hq, D]` and K/V of the planned shape and
    /// dtypes, every tensor where the backend computes.
    private func validateRun(q: Tensor, k: Tensor, v: Tensor) throws(FlashInferError)
        -> (BlockSparsePattern, (numQOHeads: Int, numKVHeads: Int, headDim: Int, qDType: DType, kvDType: DType)) {
        guard let pattern, let shape else { throw .notPlanned(wrapper: "BlockSparseAttention") }
        let qShape = [pattern.rows, shape.numQOHeads, shape.headDim]
        guard q.shape == qShape else {
            throw .shape(tensor: "q", axis: 0, name: "[M, num_qo_heads, head_dim] \(q.shape)", expected: "\(qShape) (from plan)", got: q.shape.first ?? 0)
        }
        guard q.dtype == shape.qDType else { throw .dtype(tensor: "q", expected: "\(shape.qDType.rawValue) (from plan)", got: q.dtype) }
        let kvShape = options.layout == .nhd ? [pattern.columns, shape.numKVHeads, shape.headDim] : [shape.numKVHeads, pattern.columns, shape.headDim]
        for (n, t) in [("k", k), ("v", v)] {
            guard t.shape == kvShape else {
                throw .shape(tensor: n, axis: 0, name: "\(options.layout == .nhd ? "[N, num_kv_heads, head_dim]" : "[num_kv_heads, N, head_dim]") \(t.shape)",
                             expected: "\(kvShape) (from plan)", got: t.shape.first ?? 0)
            }
            guard t.dtype == shape.kvDType else { throw .dtype(tensor: n, expected: "\(shape.kvDType.rawValue) (from plan)", got: t.dtype) }
        }
        try checkPlacement([("q", q), ("k", k), ("v", v)], backend.implementation.placement)
        return (pattern, shape)
    }
}
