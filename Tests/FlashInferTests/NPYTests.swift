import Testing

@testable import FlashInfer

@Suite struct NPYTests {
    /// `np.save(np.array([[1,2,3],[4,5,6]], dtype=np.float16))`, byte for byte.
    static let numpyBytes: [UInt8] = [147, 78, 85, 77, 80, 89, 1, 0, 118, 0, 123, 39, 100, 101, 115, 99, 114, 39, 58, 32, 39, 60, 102, 50, 39, 44, 32, 39, 102, 111, 114, 116, 114, 97, 110, 95, 111, 114, 100, 101, 114, 39, 58, 32, 70, 97, 108, 115, 101, 44, 32, 39, 115, 104, 97, 112, 101, 39, 58, 32, 40, 50, 44, 32, 51, 41, 44, 32, 125, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 10, 0, 60, 0, 64, 0, 66, 0, 68, 0, 69, 0, 70]

    @Test func readsNumPysOutput() throws {
        let a = try NPYArray(bytes: Self.numpyBytes)
        #expect(a.descr == "<f2")
        #expect(a.shape == [2, 3])
        #expect(try a.tensor(as: .f16).toFloats() == [1, 2, 3, 4, 5, 6])
    }

    @Test func writesWhatNumPyWrites() throws {
        let t = Tensor.host([1, 2, 3, 4, 5, 6], shape: [2, 3], dtype: .f16)
        #expect(try NPYArray(tensor: t).encoded() == Self.numpyBytes)
    }

    @Test func roundTripsBF16AsRawU2AndConvertsF32() throws {
        let t = Tensor.host([0.5, -3, 1e-3], shape: [3], dtype: .bf16)
        let a = try NPYArray(bytes: NPYArray(tensor: t).encoded())
        #expect(a.descr == "<u2" && a.shape == [3])
        #expect(try a.tensor(as: .bf16).toFloats() == t.toFloats())
        let f = NPYArray(descr: "<f4", shape: [2], data: DType.f32.encode([1.0009765625, 2]))
        #expect(try f.tensor(as: .f16).toFloats() == [DType.f16.roundTrip(1.0009765625), 2])
    }

    /// `np.save(np.array([0x38, 0xC0, 0x7F], dtype=np.uint8))`, byte for byte: FP8 codes travel as uint8.
    static let numpyU1Bytes: [UInt8] = [147, 78, 85, 77, 80, 89, 1, 0, 118, 0, 123, 39, 100, 101, 115, 99, 114, 39, 58, 32, 39, 124, 117, 49, 39, 44, 32, 39, 102, 111, 114, 116, 114, 97, 110, 95, 111, 114, 100, 101, 114, 39, 58, 32, 70, 97, 108, 115, 101, 44, 32, 39, 115, 104, 97, 112, 101, 39, 58, 32, 40, 51, 44, 41, 44, 32, 125] + [UInt8](repeating: 32, count: 60) + [10, 56, 192, 127]

    @Test func readsAndWritesFP8CodesAsUInt8() throws {
        let a = try NPYArray(bytes: Self.numpyU1Bytes)
        #expect(a.descr == "|u1" && a.shape == [3] && a.data == [0x38, 0xC0, 0x7F])
        let e4m3 = try a.tensor(as: .e4m3)
        #expect(e4m3.dtype == .e4m3 && e4m3.shape == [3])
        #expect(try e4m3.contiguousBytesChecked() == [0x38, 0xC0, 0x7F])
        let v = try e4m3.toFloats()
        #expect(v[0] == 1 && v[1] == -2 && v[2].isNaN)
        #expect(try a.tensor(as: .e5m2).toFloats().prefix(2) == [0.5, -2])  // the same codes read as e5m2
        // Written as NumPy writes uint8 ('|u1'), and '<u1' (NumPy accepts it too) is read the same.
        #expect(try NPYArray(tensor: e4m3).encoded() == Self.numpyU1Bytes)
        let little = NPYArray(descr: "<u1", shape: [3], data: a.data)
        #expect(try NPYArray(bytes: little.encoded()).tensor(as: .e5m2).contiguousBytesChecked() == a.data)
        // Codes are not floats, and floats are not codes (except <f4, converted with scale 1).
        #expect(throws: NPYArray.Error.unsupported("cannot read '|u1' as f16")) { try a.tensor(as: .f16) }
        #expect(throws: NPYArray.Error.unsupported("cannot read '<f2' as e4m3")) {
            try NPYArray(descr: "<f2", shape: [1], data: [0, 60]).tensor(as: .e4m3)
        }
        #expect(try NPYArray(descr: "<f4", shape: [1], data: DType.f32.encode([1000])).tensor(as: .e4m3).toFloats() == [448])
    }

    @Test func rejectsBadFiles() throws {
        #expect(throws: NPYArray.Error.self) { try NPYArray(bytes: [1, 2, 3]) }
        var fortran = Self.numpyBytes
        let needle = Array("False".utf8)
        let at = try #require((0...(fortran.count - 5)).first { Array(fortran[$0..<($0 + 5)]) == needle })
        fortran.replaceSubrange(at..<(at + 5), with: Array("True ".utf8))
        #expect(throws: NPYArray.Error.self) { try NPYArray(bytes: fortran) }
        #expect(throws: NPYArray.Error.self) { try NPYArray(bytes: Array(Self.numpyBytes.dropLast(2))) }
        #expect(throws: NPYArray.Error.self) { try NPYArray(descr: "<f8", shape: [1], data: [UInt8](repeating: 0, count: 8)).tensor(as: .f16) }
    }

    /// A missing or unwritable file is "cannot read/write FILE", not "not a .npy file".
    @Test func fileErrorsAreNotFormatErrors() throws {
        let dir = makeTempDirectory("npy")
        defer { removeDirectory(dir) }
        let a = NPYArray(descr: "<f2", shape: [2], data: [0, 60, 0, 64])
        let missing = dir + "/missing.npy"
        #expect(throws: NPYArray.Error.cannotRead(path: missing, reason: "No such file or directory")) { try NPYArray.read(path: missing) }
        #expect(throws: NPYArray.Error.cannotRead(path: dir, reason: "Is a directory")) { try NPYArray.read(path: dir) }
        let unwritable = dir + "/no/such/dir/o.npy"
        #expect(throws: NPYArray.Error.cannotWrite(path: unwritable, reason: "No such file or directory")) { try a.write(path: unwritable) }
        #expect(NPYArray.Error.cannotRead(path: "q.npy", reason: "No such file or directory").description == "cannot read q.npy: No such file or directory")
        #expect(NPYArray.Error.cannotWrite(path: "o.npy", reason: "Permission denied").description == "cannot write o.npy: Permission denied")
        // A file that exists but is not a .npy is a format error.
        let text = dir + "/text.npy"
        try FileSystem.writeAtomically(Array("hello".utf8), to: text)
        #expect(throws: NPYArray.Error.notNPY("bad magic")) { try NPYArray.read(path: text) }
        // And a good one round-trips through the file.
        let good = dir + "/good.npy"
        try a.write(path: good)
        #expect(try NPYArray.read(path: good) == a)
    }
}
