/// NumPy `.npy` files (format versions 1.0–3.0, little-endian, C order), so any tool can feed the
/// kernels and read their results. bf16 and FP8 have no NumPy dtype: they travel as their raw
/// codes (bf16 as `<u2`, e4m3 / e5m2 as uint8, `|u1`), and the reader is told which type to read.
public struct NPYArray: Sendable, Equatable {
    /// NumPy descr string, e.g. `<f2`, `<f4`, `<u2`.
    public var descr: String
    public var shape: [Int]
    /// The raw little-endian element bytes, C order.
    public var data: [UInt8]

    public init(descr: String, shape: [Int], data: [UInt8]) {
        self.descr = descr
        self.shape = shape
        self.data = data
    }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// The bytes are not a `.npy` file (bad magic, truncated header or data, malformed header).
        case notNPY(String)
        /// A valid `.npy` this reader does not handle (format version, Fortran order, dtype).
        case unsupported(String)
        /// The file could not be read (missing, unreadable, a directory); `reason` is the system's.
        case cannotRead(path: String, reason: String)
        /// The file could not be written (no such directory, no permission, disk full).
        case cannotWrite(path: String, reason: String)
        public var description: String {
            switch self {
            case .notNPY(let s): "not a .npy file: \(s)"
            case .unsupported(let s): "unsupported .npy: \(s)"
            case .cannotRead(let path, let reason): "cannot read \(path): \(reason)"
            case .cannotWrite(let path, let reason): "cannot write \(path): \(reason)"
            }
        }
    }

    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// Parses a `.npy` file's bytes.
    public init(bytes: [UInt8]) throws(Error) {
        guard bytes.count >= 10, Array(bytes[0..<6]) == Self.magic else { throw .notNPY("bad magic") }
        let major = bytes[6]
        let headerLen: Int, start: Int
        switch major {
        case 1:
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
            start = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw .notNPY("truncated header") }
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            start = 12
        default: throw .unsupported("format version \(major)")
        }
        guard bytes.count >= start + headerLen else { throw .notNPY("truncated header") }
        let header = String(decoding: bytes[start..<(start + headerLen)], as: UTF8.self)
        func value(of key: String) throws(Error) -> Substring {
            guard let r = header.firstRange(of: "'\(key)':") else { throw .notNPY("header has no '\(key)'") }
            return header[r.upperBound...].drop { $0 == " " }
        }
        let d = try value(of: "descr")
        guard d.first == "'", let end = d.dropFirst().firstIndex(of: "'") else { throw .notNPY("bad descr") }
        descr = String(d[d.index(after: d.startIndex)..<end])
        if try value(of: "fortran_order").hasPrefix("True") { throw .unsupported("Fortran order (save with np.ascontiguousarray)") }
        let s = try value(of: "shape")
        guard s.first == "(", let close = s.firstIndex(of: ")") else { throw .notNPY("bad shape") }
        var dims: [Int] = []
        for part in s[s.index(after: s.startIndex)..<close].split(separator: ",") {
            let t = part.filter { $0 != " " && $0 != "L" }
            if t.isEmpty { continue }
            guard let n = Int(t), n >= 0 else { throw .notNPY("bad shape entry '\(part)'") }
            dims.append(n)
        }
        shape = dims
        guard let es = Self.elementSize(descr) else { throw .unsupported("dtype '\(descr)' (use <f2, <f4, <u2 for bf16, or |u1 for FP8 codes)") }
        let n = dims.reduce(1, *) * es
        let body = start + headerLen
        guard bytes.count >= body + n else { throw .notNPY("data has \(bytes.count - body) bytes, shape needs \(n)") }
        data = Array(bytes[body..<(body + n)])
    }

    static func elementSize(_ descr: String) -> Int? {
        switch descr {
        case "<f2", "<u2", "<i2": 2
        case "<f4": 4
        case "|u1", "<u1", "|i1": 1
        default: nil
        }
    }

    /// The file's bytes (format 1.0, header padded to a multiple of 64 bytes).
    public func encoded() -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let len = header.utf8.count
        return Self.magic + [1, 0, UInt8(len & 0xFF), UInt8(len >> 8)] + Array(header.utf8) + data
    }

    /// A tensor of `dtype` on the host. `<f2`/`<u2` are read as f16/bf16 per `dtype`, uint8
    /// (`|u1`, or `<u1`) as the raw codes of e4m3 / e5m2; `<f4` is converted to `dtype`
    /// (round-to-nearest-even; to FP8 with scale 1, saturating).
    public func tensor(as dtype: DType) throws(Error) -> Tensor {
        switch (descr, dtype) {
        case ("<f2", .f16), ("<u2", .bf16), ("<i2", .bf16), ("<f4", .f32), ("|u1", .e4m3), ("|u1", .e5m2), ("<u1", .e4m3), ("<u1", .e5m2):
            return Tensor(storage: .host(HostBuffer(bytes: data)), shape: shape, dtype: dtype)
        case ("<f4", _):
            return Tensor.host(DType.f32.decode(data), shape: shape, dtype: dtype)
        default:
            throw .unsupported("cannot read '\(descr)' as \(dtype.rawValue)")
        }
    }

    /// The `.npy` form of a tensor (bf16 as raw `<u2`; fp8 as raw `|u1`).
    public init(tensor: Tensor) throws(CUDAErrorWrapper) {
        let bytes: [UInt8]
        do { bytes = try tensor.contiguousBytesChecked() } catch { throw CUDAErrorWrapper(error: error) }
        let descr = switch tensor.dtype {
        case .f32: "<f4"
        case .f16: "<f2"
        case .bf16: "<u2"
        case .e4m3, .e5m2: "|u1"
        }
        self.init(descr: descr, shape: tensor.shape, data: bytes)
    }
}

import FlashInferCUDA

/// A CUDA error met while reading a device tensor back for `.npy` output.
public struct CUDAErrorWrapper: Error, CustomStringConvertible {
    public var error: CUDAError
    public var description: String { error.description }
}

extension NPYArray {
    /// Reads a `.npy` file.
    public static func read(path: String) throws(Error) -> NPYArray {
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path) } catch { throw .cannotRead(path: path, reason: error.reason) }
        return try NPYArray(bytes: bytes)
    }

    /// Writes a `.npy` file (atomically).
    public func write(path: String) throws(Error) {
        do { try FileSystem.writeAtomically(encoded(), to: path) } catch { throw .cannotWrite(path: path, reason: error.reason) }
    }
}
