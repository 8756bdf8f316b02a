import FlashInfer
import FlashInferCUDA

/// GPU checks of the paged-KV operations against the CPU implementation.
public func pageCases() -> [CheckCase] {
    var cases: [CheckCase] = []
    for layout in [KVLayout.nhd, .hnd] {
        for pageSize in [1, 8, 16] {
            for dtype in [DType.f16, .bf16] {
                cases.append(CheckCase(name: "append_paged_kv layout=\(layout.rawValue) page=\(pageSize) dtype=\(dtype.rawValue)") { device, stream, rng in
                    let (h, d) = (4, 128)
                    let seqLens = [1, 17, 127, 300, 2 * pageSize]
                    let appendLens = [1, 5, 127, 1, pageSize]
                    // Pages shuffled so the page table is not the identity.
                    var table = PageTable.contiguous(seqLens: seqLens, pageSize: pageSize)
                    table.indices.reverse()
                    let numPages = table.indices.count + 3
                    let shape = layout == .nhd ? [numPages, 2, pageSize, h, d] : [numPages, 2, h, pageSize, d]
                    let initial = (0..<shape.reduce(1, *)).map { _ in rng.normal() }
                    let hostCache = try PagedKVCache(combined: Tensor.host(initial, shape: shape, dtype: dtype), layout: layout)
                    let devCache = try PagedKVCache(combined: Tensor.host(initial, shape: shape, dtype: dtype).toDevice(device), layout: layout)
                    var appendIndptr: [Int32] = [0]
                    for n in appendLens { appendIndptr.append(appendIndptr.last! + Int32(n)) }
                    let nnz = Int(appendIndptr.last!)
                    let (bi, pos) = try getBatchIndicesPositions(appendIndptr: appendIndptr, seqLens: seqLens)
                    let ak = Tensor.host((0..<(nnz * h * d)).map { _ in rng.normal() }, shape: [nnz, h, d], dtype: dtype)
                    let av = Tensor.host((0..<(nnz * h * d)).map { _ in rng.normal() }, shape: [nnz, h, d], dtype: dtype)
                    let idx = AppendIndices(batchIndices: bi, positions: pos)
                    try appendPagedKVCache(appendK: ak, appendV: av, indices: idx, cache: hostCache, table: table)
                    try appendPagedKVCache(appendK: ak.toDevice(device), appendV: av.toDevice(device), indices: idx, cache: devCache, table: table, stream: stream)
                    try stream.synchronize()
                    // The whole cache must match bit for bit (untouched slots included).
                    for (n, a, b) in [("k", hostCache.k, devCache.k), ("v", hostCache.v, devCache.v)] {
                        let x = try a.contiguousBytesChecked(), y = try b.contiguousBytesChecked()
                        if x != y {
                            let i = zip(x, y).enumerated().first { $0.element.0 != $0.element.1 }!.offset
                            return "\(n) cache differs at byte \(i)"
                        }
                    }
                    return nil
                })
            }
        }
    }
    return cases
}
