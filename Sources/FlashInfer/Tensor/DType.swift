/// Element types of tensors the kernels read and write.
///
/// Conversions from `Float` round to nearest, ties to even; the FP8 formats saturate
/// (see `FloatConversion` for exactly what happens to NaN, infinities and overflow).
public enum DType: String, Sendable, Hashable, CaseIterable {
    case f32
    case f16
    case bf16
    /// OCP FP8 E4M3 ("e4m3fn": no infinities, max ±448).
    case e4m3
    /// OCP FP8 E5M2 (max finite ±57344).
    case e5m2

    /// Accepts the usual spellings: `f32 float32 f16 float16 half bf16 bfloat16 e4m3 fp8_e4m3 e5m2 fp8_e5m2`
    /// (case-insensitive).
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32": self = .f32
        case "f16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "e4m3", "fp8_e4m3": self = .e4m3
        case "e5m2", "fp8_e5m2": self = .e5m2
        default: return nil
        }
    }

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .e4m3, .e5m2: 1
        }
    }

    /// The CUDA C++ type name used when rendering kernels.
    public var cudaTypeName: String {
        switch self {
        case .f32: "float"
        case .f16: "half"
        case .bf16: "nv_bfloat16"
        case .e4m3: "__nv_fp8_e4m3"
        case .e5m2: "__nv_fp8_e5m2"
        }
    }

    public var isFP8: Bool { self == .e4m3 || self == .e5m2 }

    /// The bit pattern of `x` stored in this dtype, in the low `8·byteSize` bits.
    @inline(__always)
    public func bits(_ x: Float) -> UInt32 {
        switch self {
        case .f32: x.bitPattern
        case .f16: UInt32(FloatConversion.f16Bits(x))
        case .bf16: UInt32(FloatConversion.bf16Bits(x))
        case .e4m3: UInt32(FloatConversion.e4m3Bits(x))
        case .e5m2: UInt32(FloatConversion.e5m2Bits(x))
        }
    }

    /// The `Float` value of a bit pattern of this dtype (only the low `8·byteSize` bits are read).
    @inline(__always)
    public func value(bits: UInt32) -> Float {
        switch self {
        case .f32: Float(bitPattern: bits)
        case .f16: FloatConversion.float(fromF16: UInt16(truncatingIfNeeded: bits))
        case .bf16: FloatConversion.float(fromBF16: UInt16(truncatingIfNeeded: bits))
        case .e4m3: FloatConversion.float(fromE4M3: UInt8(truncatingIfNeeded: bits))
        case .e5m2: FloatConversion.float(fromE5M2: UInt8(truncatingIfNeeded: bits))
        }
    }

    /// The value `x` has after being stored in this dtype and read back.
    public func roundTrip(_ x: Float) -> Float {
        value(bits: bits(x))
    }

    /// Encodes `values` as little-endian bytes of this dtype (`values.count · byteSize` bytes).
    public func encode(_ values: [Float]) -> [UInt8] {
        let size = byteSize
        return [UInt8](unsafeUninitializedCapacity: values.count * size) { out, count in
            values.withUnsafeBufferPointer { src in
                for i in 0..<src.count {
                    let b = bits(src[i])
                    for byte in 0..<size {
                        out[i * size + byte] = UInt8(truncatingIfNeeded: b >> UInt32(8 * byte))
                    }
                }
            }
            count = values.count * size
        }
    }

    /// Decodes little-endian bytes of this dtype. Trailing bytes that do not fill an element are ignored.
    public func decode(_ bytes: [UInt8]) -> [Float] {
        let size = byteSize
        let n = bytes.count / size
        return [Float](unsafeUninitializedCapacity: n) { out, count in
            bytes.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    var b: UInt32 = 0
                    for byte in 0..<size {
                        b |= UInt32(src[i * size + byte]) << UInt32(8 * byte)
                    }
                    out[i] = value(bits: b)
                }
            }
            count = n
        }
    }
}
