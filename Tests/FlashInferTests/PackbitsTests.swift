import Testing

@testable import FlashInfer

/// `packbits` / `segmentPackbits` / `unpackbits` against a naive bit-by-bit packer and against
/// worked examples derived by hand from numpy's documented `packbits` / `unpackbits` behaviour and
/// upstream's docstrings.
@Suite struct PackbitsTests {
    /// Naive packer: each group of 8 (zero-padded) is read as a binary numeral, most significant
    /// digit first for `.big`; `.little` reads the group reversed.
    static func naivePack(_ x: [Bool], _ order: BitOrder) -> [UInt8] {
        var out: [UInt8] = []
        var start = 0
        while start < x.count {
            var group = (0..<8).map { start + $0 < x.count ? x[start + $0] : false }
            if order == .little { group.reverse() }
            var value = 0
            for bit in group { value = value * 2 + (bit ? 1 : 0) }
            out.append(UInt8(value))
            start += 8
        }
        return out
    }

    static func randomBools(_ n: Int, _ rng: inout TestRNG, density: Double = 0.5) -> [Bool] {
        (0..<n).map { _ in rng.unit() < density }
    }

    @Test(arguments: BitOrder.allCases)
    func packMatchesNaiveOnRandomInputs(order: BitOrder) throws {
        var rng = TestRNG(seed: order == .big ? 11 : 12)
        let lengths = [0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 999] + (0..<60).map { _ in Int(rng.next() % 300) }
        for n in lengths {
            let x = Self.randomBools(n, &rng, density: [0.1, 0.5, 0.9][n % 3])
            let packed = packbits(x, bitOrder: order)
            #expect(packed.count == (n + 7) / 8, "n \(n)")
            #expect(packed == Self.naivePack(x, order), "n \(n) \(order)")
            #expect(try unpackbits(packed, count: n, bitOrder: order) == x, "round trip n \(n)")
            // Padding bits are zero: unpacking the whole last byte gives x followed by falses.
            let full = try unpackbits(packed, count: packed.count * 8, bitOrder: order)
            #expect(full == x + Array(repeating: false, count: packed.count * 8 - n))
        }
    }

    @Test(arguments: BitOrder.allCases)
    func segmentPackMatchesPerSegmentPacking(order: BitOrder) throws {
        var rng = TestRNG(seed: order == .big ? 21 : 22)
        for trial in 0..<40 {
            // Segment lengths include empty segments (every 3rd trial has many) and odd lengths.
            let b = Int(rng.next() % 9)
            let lens = (0..<b).map { _ in trial % 3 == 0 && rng.unit() < 0.5 ? 0 : Int(rng.next() % 40) }
            var indptr: [Int32] = [0]
            for l in lens { indptr.append(indptr.last! + Int32(l)) }
            let x = Self.randomBools(Int(indptr.last!), &rng)
            let (packed, newIndptr) = try segmentPackbits(x, indptr: indptr, bitOrder: order)
            var want: [UInt8] = [], wantIndptr: [Int32] = [0]
            for s in 0..<b {
                let seg = Self.naivePack(Array(x[Int(indptr[s])..<Int(indptr[s + 1])]), order)
                want += seg
                wantIndptr.append(wantIndptr.last! + Int32(seg.count))
            }
            #expect(packed == want, "trial \(trial) lens \(lens)")
            #expect(newIndptr == wantIndptr, "trial \(trial) lens \(lens)")
            for s in 0..<b {
                #expect(newIndptr[s + 1] - newIndptr[s] == (indptr[s + 1] - indptr[s] + 7) / 8)
            }
        }
    }

    /// Worked by hand from numpy's documented behaviour and upstream's docstrings.
    @Test func workedExamples() throws {
        // [1,0,1]: big puts the first element in bit 7 → 0b1010_0000 = 160; little in bit 0 → 0b101 = 5.
        #expect(packbits([true, false, true]) == [160])
        #expect(packbits([true, false, true], bitOrder: .little) == [5])
        // Upstream's packbits docstring: [1,0,1,1,0,0,1,1] → '0b10110011' (179); little-endian the
        // bits 0,2,3,6,7 are set: 1 + 4 + 8 + 64 + 128 = 205.
        let x8: [Bool] = [1, 0, 1, 1, 0, 0, 1, 1].map { $0 == 1 }
        #expect(packbits(x8) == [0b1011_0011])
        #expect(packbits(x8, bitOrder: .little) == [205])
        // Nine ones: a full byte, then one bit padded with zeros: big [255, 0b1000_0000], little [255, 1].
        let nine = [Bool](repeating: true, count: 9)
        #expect(packbits(nine) == [255, 128])
        #expect(packbits(nine, bitOrder: .little) == [255, 1])
        #expect(packbits([]) == [])
        // numpy's docs: np.packbits([[[1,0,1],[0,1,0]],[[1,1,0],[0,0,1]]], axis=-1) → [[[160],[64]],[[192],[32]]]:
        // each row of 3 packed alone, i.e. segments of 3.
        let rows: [Bool] = [1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1].map { $0 == 1 }
        let (byRow, rowIndptr) = try segmentPackbits(rows, indptr: [0, 3, 6, 9, 12])
        #expect(byRow == [160, 64, 192, 32])
        #expect(rowIndptr == [0, 1, 2, 3, 4])
        // The same array flattened (numpy's default axis=None): 1010_1011 = 171, 0001 + padding = 16.
        #expect(packbits(rows) == [171, 16])
        // Upstream's segment_packbits docstring: x = [1,0,1,1,0,0,1,1,1,0,1], indptr [0,4,7,11], big →
        // ['0b10110000', '0b100000', '0b11010000'], new indptr [0,1,2,3].
        let x11: [Bool] = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1].map { $0 == 1 }
        let (big, bigIndptr) = try segmentPackbits(x11, indptr: [0, 4, 7, 11], bitOrder: .big)
        #expect(big == [0b1011_0000, 0b0010_0000, 0b1101_0000])
        #expect(bigIndptr == [0, 1, 2, 3])
        // Little-endian: [1,0,1,1] → bits 0,2,3 = 13; [0,0,1] → bit 2 = 4; [1,1,0,1] → bits 0,1,3 = 11.
        let (little, _) = try segmentPackbits(x11, indptr: [0, 4, 7, 11], bitOrder: .little)
        #expect(little == [13, 4, 11])
        // Empty segments take no byte: [0, 0, 3, 3, 11] → sizes 0, 1, 0, 1.
        let (withEmpty, emptyIndptr) = try segmentPackbits(x11, indptr: [0, 0, 3, 3, 11])
        #expect(withEmpty == [0b1010_0000, 0b1001_1101])
        #expect(emptyIndptr == [0, 0, 1, 1, 2])
        // numpy's docs: np.unpackbits([[2],[7],[23]], axis=1) → 00000010, 00000111, 00010111, and with
        // bitorder='little' → 01000000, 11100000, 11101000.
        func bits(_ s: String) -> [Bool] { s.map { $0 == "1" } }
        #expect(try unpackbits([2, 7, 23], count: 24) == bits("000000100000011100010111"))
        #expect(try unpackbits([2, 7, 23], count: 24, bitOrder: .little) == bits("010000001110000011101000"))
        // count stops early: the first 5 bits of 23 (0b00010111) big-endian.
        #expect(try unpackbits([23], count: 5) == bits("00010"))
    }

    @Test func errors() {
        #expect(throws: FlashInferError.option(name: "count", value: "9", rule: "must be in 0...8 (8 bits per byte of 1 bytes)")) {
            try unpackbits([1], count: 9)
        }
        #expect(throws: FlashInferError.self) { try unpackbits([1], count: -1) }
        let x = [Bool](repeating: true, count: 5)
        #expect(throws: FlashInferError.indices(array: "indptr", position: 0, rule: "must have batch_size + 1 entries (at least 1)")) {
            try segmentPackbits(x, indptr: [])
        }
        #expect(throws: FlashInferError.indices(array: "indptr", position: 0, rule: "must start at 0, got 1")) {
            try segmentPackbits(x, indptr: [1, 5])
        }
        #expect(throws: FlashInferError.indices(array: "indptr", position: 2, rule: "not monotonic: 2 < 4")) {
            try segmentPackbits(x, indptr: [0, 4, 2, 5])
        }
        #expect(throws: FlashInferError.shape(tensor: "len(x)", axis: 0, name: "length", expected: "4 (indptr[-1])", got: 5)) {
            try segmentPackbits(x, indptr: [0, 4])
        }
        // One entry: no segments, nothing packed.
        #expect((try? segmentPackbits([], indptr: [0]))?.packed == [])
    }
}
