/// Bit packing of boolean arrays: upstream's `flashinfer.packbits` / `segment_packbits`, which have
/// exactly `numpy.packbits`'s semantics on a 1-D array, and the inverse `unpackbits`.
///
/// Element `i` of the input lands in byte `i / 8`, at bit `7 − i % 8` (`.big`) or bit `i % 8`
/// (`.little`); the last byte is padded with zero bits. So `[1,0,1]` packs to `0b1010_0000` (160)
/// big-endian and `0b0000_0101` (5) little-endian; `ceil(n / 8)` bytes in all.
///
/// The attention kernels read custom masks **little-endian**: bit `off` of a request's mask is
/// `(mask[off / 8] >> (off % 8)) & 1` (`docs/Sparse.md`). `.big` is numpy's and upstream's default.

/// Which end of a byte the first of each group of 8 elements goes to.
public enum BitOrder: String, Sendable, Hashable, CaseIterable {
    /// The first element is the most significant bit (numpy's and upstream's default).
    case big
    /// The first element is the least significant bit (the custom-mask layout the kernels read).
    case little

    /// The bit position (0 = least significant) of element `i % 8` of a byte.
    @inline(__always)
    func shift(_ i: Int) -> Int { self == .big ? 7 - (i & 7) : i & 7 }
}

/// Packs `x` into `ceil(x.count / 8)` bytes (`numpy.packbits(x, bitorder=...)`; `flashinfer.packbits`).
///
/// Example (upstream's docstring): `[1,0,1,1,0,0,1,1]` → `[0b1011_0011]` (179) big-endian,
/// `[0b1100_1101]` (205) little-endian.
public func packbits(_ x: [Bool], bitOrder: BitOrder = .big) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: (x.count + 7) / 8)
    x.withUnsafeBufferPointer { src in
        for i in 0..<src.count where src[i] {
            out[i >> 3] |= 1 << UInt8(bitOrder.shift(i))
        }
    }
    return out
}

/// The first `count` bits of `bytes` as booleans (`numpy.unpackbits(bytes, count=count, bitorder=...)`):
/// the inverse of `packbits`, whose padding bits are not read.
/// - Throws: `.option` when `count` is negative or needs more than `8 · bytes.count` bits.
public func unpackbits(_ bytes: [UInt8], count: Int, bitOrder: BitOrder = .big) throws(FlashInferError) -> [Bool] {
    guard count >= 0, count <= bytes.count * 8 else {
        throw .option(name: "count", value: "\(count)", rule: "must be in 0...\(bytes.count * 8) (8 bits per byte of \(bytes.count) bytes)")
    }
    return (0..<count).map { i in (bytes[i >> 3] >> UInt8(bitOrder.shift(i))) & 1 == 1 }
}

/// Packs each segment `x[indptr[i] ..< indptr[i+1]]` on its own (`flashinfer.segment_packbits`): the
/// packed segments are concatenated, segment `i` in `packed[newIndptr[i] ..< newIndptr[i+1]]`, with
/// `newIndptr[i+1] − newIndptr[i] = ceil((indptr[i+1] − indptr[i]) / 8)` (an empty segment takes no
/// byte). This turns a batch of flattened custom masks with element offsets (`mask_indptr`) into the
/// packed masks and byte offsets the kernels read (`docs/Sparse.md`).
///
/// Example (upstream's docstring): `x = [1,0,1,1, 0,0,1, 1,1,0,1]`, `indptr = [0,4,7,11]`, `.big` →
/// `packed = [0b1011_0000, 0b0010_0000, 0b1101_0000]`, `newIndptr = [0,1,2,3]`.
/// - Throws: `.indices` when `indptr` is empty, does not start at 0 or is not monotonic; `.shape` when
///   `indptr`'s last entry is not `x.count`.
public func segmentPackbits(_ x: [Bool], indptr: [Int32], bitOrder: BitOrder = .big) throws(FlashInferError) -> (packed: [UInt8], indptr: [Int32]) {
    try validateSegmentIndptr(indptr, name: "indptr", total: x.count, totalName: "len(x)")
    var newIndptr: [Int32] = [0]
    newIndptr.reserveCapacity(indptr.count)
    for i in 0..<(indptr.count - 1) {
        newIndptr.append(newIndptr[i] + (indptr[i + 1] - indptr[i] + 7) / 8)
    }
    var out = [UInt8](repeating: 0, count: Int(newIndptr.last!))
    x.withUnsafeBufferPointer { src in
        for s in 0..<(indptr.count - 1) {
            let lo = Int(indptr[s]), base = Int(newIndptr[s])
            for i in 0..<(Int(indptr[s + 1]) - lo) where src[lo + i] {
                out[base + (i >> 3)] |= 1 << UInt8(bitOrder.shift(i))
            }
        }
    }
    return (out, newIndptr)
}

/// An offsets array over `total` elements: non-empty, starts at 0, non-decreasing, ends at `total`.
func validateSegmentIndptr(_ indptr: [Int32], name: String, total: Int, totalName: String) throws(FlashInferError) {
    guard let first = indptr.first else { throw .indices(array: name, position: 0, rule: "must have batch_size + 1 entries (at least 1)") }
    guard first == 0 else { throw .indices(array: name, position: 0, rule: "must start at 0, got \(first)") }
    for i in 1..<indptr.count where indptr[i] < indptr[i - 1] {
        throw .indices(array: name, position: i, rule: "not monotonic: \(indptr[i]) < \(indptr[i - 1])")
    }
    guard Int(indptr.last!) == total else {
        throw .shape(tensor: totalName, axis: 0, name: "length", expected: "\(indptr.last!) (\(name)[-1])", got: total)
    }
}
