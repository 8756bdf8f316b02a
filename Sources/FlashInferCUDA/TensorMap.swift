/// `cuTensorMapEncodeTiled(CUtensorMap*, dataType, rank, globalAddress, globalDim[rank],
/// globalStrides[rank − 1] (bytes), boxDim[rank], elementStrides[rank], interleave, swizzle,
/// l2Promotion, oobFill)`: the C enums are 32-bit.
typealias TensorMapEncodeTiled = @convention(c) (
    UnsafeMutableRawPointer, UInt32, UInt32, UnsafeMutableRawPointer?, UnsafePointer<UInt64>, UnsafePointer<UInt64>,
    UnsafePointer<UInt32>, UnsafePointer<UInt32>, UInt32, UInt32, UInt32, UInt32
) -> CUresult

/// A TMA descriptor (`CUtensorMap`): 128 opaque bytes that a kernel takes by value as a
/// `const __grid_constant__` parameter (64-byte aligned in the parameter list: pass it with
/// `KernelArguments.append(tensorMap:)`).
public struct TensorMap: Sendable, Hashable {
    /// The encoded descriptor.
    public let bytes: [UInt8]

    public static let byteCount = 128
    public static let alignment = 64

    /// `CUtensorMapDataType`.
    public enum DataType: UInt32, Sendable {
        case float16 = 6
        case bfloat16 = 9
    }

    /// `CUtensorMapSwizzle`.
    public enum Swizzle: UInt32, Sendable {
        case none = 0, bytes32 = 1, bytes64 = 2, bytes128 = 3
    }

    /// `CUtensorMapL2promotion`.
    public enum L2Promotion: UInt32, Sendable {
        case none = 0, bytes64 = 1, bytes128 = 2, bytes256 = 3
    }

    /// Encodes a tiled map of a tensor at `address` (16-byte aligned) with extents `dims`
    /// (innermost first), byte strides `strides` of dims 1... (multiples of 16, below 2^40), and a box
    /// `box` (each ≤ 256; the innermost box row at most the swizzle width). Out-of-range elements load
    /// as zeros; interleave none; element strides 1.
    public static func encodeTiled(driver: CUDADriver, dataType: DataType, address: CUdeviceptr, dims: [UInt64],
                                   strides: [UInt64], box: [UInt32], swizzle: Swizzle,
                                   l2Promotion: L2Promotion = .bytes128) throws(CUDAError) -> TensorMap {
        guard let encode = driver.cuTensorMapEncodeTiled else {
            throw .driver(call: "cuTensorMapEncodeTiled", code: 500, name: "CUDA_ERROR_NOT_FOUND",
                          message: "this CUDA driver has no cuTensorMapEncodeTiled (needs CUDA 12.0 or newer)")
        }
        precondition(dims.count == box.count && strides.count == dims.count - 1, "rank mismatch")
        let rank = dims.count
        let storage = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: alignment)
        defer { storage.deallocate() }
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        let elementStrides = [UInt32](repeating: 1, count: rank)
        let r = dims.withUnsafeBufferPointer { d in
            strides.withUnsafeBufferPointer { s in
                box.withUnsafeBufferPointer { b in
                    elementStrides.withUnsafeBufferPointer { e in
                        encode(storage, dataType.rawValue, UInt32(rank), UnsafeMutableRawPointer(bitPattern: UInt(address)),
                               d.baseAddress!, s.baseAddress ?? d.baseAddress!, b.baseAddress!, e.baseAddress!,
                               0 /* interleave none */, swizzle.rawValue, l2Promotion.rawValue, 0 /* OOB fill: zeros */)
                    }
                }
            }
        }
        try driver.check(r, "cuTensorMapEncodeTiled(dims \(dims), strides \(strides), box \(box))")
        return TensorMap(bytes: Array(UnsafeRawBufferPointer(start: storage, count: byteCount)))
    }

    init(bytes: [UInt8]) {
        precondition(bytes.count == Self.byteCount)
        self.bytes = bytes
    }
}

extension KernelArguments {
    /// Appends a `CUtensorMap` parameter (128 bytes at a 64-byte aligned offset, as the kernel's
    /// parameter list places a `const __grid_constant__ CUtensorMap`).
    public mutating func append(tensorMap: TensorMap) {
        append(rawBytes: tensorMap.bytes, alignment: TensorMap.alignment)
    }
}
