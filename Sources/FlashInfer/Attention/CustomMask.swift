/// A request's custom attention mask, upstream's `custom_mask` / `packed_custom_mask`: which keys each
/// query sees. `true` (bit 1) keeps the key; `false` masks it out.
///
/// The mask of a request with `qoLen` queries and `kvLen` keys is flattened row-major: element
/// `off = i·kvLen + j` is query `i`, key `j`. Packed, it is read little-endian,
/// `(bytes[off / 8] >> (off % 8)) & 1` — `packbits(_, bitOrder: .little)`; bits past `qoLen·kvLen`
/// in the last byte are padding and never read.
///
/// A custom mask replaces the causal mask (upstream's mask modes are exclusive) and combines with the
/// sliding window (both must keep the key, as in upstream's `DefaultAttention::LogitsMask`). A query
/// that keeps no key gets output 0 and LSE −inf. See `docs/Sparse.md`.
public enum CustomMask: Sendable, Hashable {
    /// `qoLen · kvLen` booleans.
    case bools([Bool])
    /// `ceil(qoLen · kvLen / 8)` bytes, little-endian bit order.
    case packed([UInt8])

    /// Whether element `offset` (`i·kvLen + j`) keeps its key. The offset must be inside the mask.
    @inline(__always)
    public func keeps(_ offset: Int) -> Bool {
        switch self {
        case .bools(let b): b[offset]
        case .packed(let p): (p[offset >> 3] >> UInt8(offset & 7)) & 1 == 1
        }
    }

    /// The first `count` elements as booleans (`count = qoLen · kvLen`, within the mask's size).
    public func bools(count: Int) -> [Bool] {
        switch self {
        case .bools(let b): count == b.count ? b : Array(b.prefix(count))
        case .packed: (0..<count).map(keeps)
        }
    }

    /// The same mask in packed form (little-endian).
    public var packed: [UInt8] {
        switch self {
        case .bools(let b): packbits(b, bitOrder: .little)
        case .packed(let p): p
        }
    }

    /// (form, size needed for `qoLen × kvLen`, size present): elements for `.bools`, bytes for `.packed`.
    func sizeCheck(qoLen: Int, kvLen: Int) -> (form: String, expected: Int, actual: Int) {
        switch self {
        case .bools(let b): ("bools", qoLen * kvLen, b.count)
        case .packed(let p): ("packed", (qoLen * kvLen + 7) / 8, p.count)
        }
    }
}

/// `mask_indptr` of a batch: request `b`'s flattened mask is elements
/// `maskIndptr[b] ..< maskIndptr[b+1]` of the concatenated masks, `maskIndptr[b+1] − maskIndptr[b] =
/// qoLens[b] · kvLens[b]` (upstream's `_compute_page_mask_indptr` / ragged `plan`).
/// - Throws: `.shape` when the two length arrays differ in count or the total overflows `Int32`;
///   `.option` for a negative length.
public func customMaskIndptr(qoLens: [Int], kvLens: [Int]) throws(FlashInferError) -> [Int32] {
    guard qoLens.count == kvLens.count else {
        throw .shape(tensor: "kv_lens", axis: 0, name: "batch_size", expected: "\(qoLens.count) (len(qo_lens))", got: kvLens.count)
    }
    var indptr: [Int32] = [0]
    var total = 0
    for b in 0..<qoLens.count {
        guard qoLens[b] >= 0, kvLens[b] >= 0 else {
            throw .option(name: "qo_len / kv_len of request \(b)", value: "\(qoLens[b]) / \(kvLens[b])", rule: "must be >= 0")
        }
        total += qoLens[b] * kvLens[b]
        guard total <= Int(Int32.max) else {
            throw .shape(tensor: "custom_mask", axis: 0, name: "sum of qo_len · kv_len", expected: "< 2^31", got: total)
        }
        indptr.append(Int32(total))
    }
    return indptr
}

/// The batch's concatenated boolean masks packed as the kernels read them (what upstream's `plan`
/// does with a `custom_mask`): `segmentPackbits(mask, maskIndptr, .little)`. Request `b`'s packed
/// mask is `packed[indptr[b] ..< indptr[b+1]]` (`ceil(qoLen_b · kvLen_b / 8)` bytes).
/// - Throws: `.shape` when `mask.count` is not `Σ qoLens[b] · kvLens[b]`.
public func packCustomMasks(_ mask: [Bool], qoLens: [Int], kvLens: [Int]) throws(FlashInferError) -> (packed: [UInt8], indptr: [Int32]) {
    let elements = try customMaskIndptr(qoLens: qoLens, kvLens: kvLens)
    guard mask.count == Int(elements.last!) else {
        throw .shape(tensor: "custom_mask", axis: 0, name: "sum of qo_len · kv_len", expected: "\(elements.last!)", got: mask.count)
    }
    return try segmentPackbits(mask, indptr: elements, bitOrder: .little)
}
