import CFlashInferABI
import FlashInferC
import Testing

@testable import FlashInfer

/// The C ABI with FP8 K/V (DLPack 1.x float8 codes) and the k/v scales, on CPU DLTensors: the same
/// result as the Swift API on the same bytes.
@Suite struct ABIFP8Tests {
    /// A CPU DLTensor over `bytes` (kept alive by the caller) with a compact layout.
    static func withTensor<R>(_ bytes: inout [UInt8], shape: [Int64], code: UInt8, bits: UInt8,
                              _ body: (UnsafePointer<DLTensor>) throws -> R) rethrows -> R {
        var shape = shape
        return try bytes.withUnsafeMutableBytes { raw in
            try shape.withUnsafeMutableBufferPointer { sp in
                var t = DLTensor(data: raw.baseAddress, device: DLDevice(device_type: kDLCPU, device_id: 0), ndim: Int32(sp.count),
                                 dtype: DLDataType(code: code, bits: bits, lanes: 1), shape: sp.baseAddress, strides: nil, byte_offset: 0)
                return try withUnsafePointer(to: &t) { try body($0) }
            }
        }
    }

    @Test(arguments: [DType.e4m3, .e5m2])
    func decodeWithFP8CodesAndScales(_ kvDType: DType) throws {
        var rng = TestRNG(seed: kvDType == .e4m3 ? 41 : 42)
        let (hq, hkv, d, kv) = (8, 2, 64, 33)
        let qv = sparseTestArray(hq * d, &rng)
        var qBytes = DType.f16.encode(qv)
        var kBytes = try quantize(sparseTestArray(kv * hkv * d, &rng), to: kvDType)
        var vBytes = try quantize(sparseTestArray(kv * hkv * d, &rng), to: kvDType)
        var outBytes = [UInt8](repeating: 0xFF, count: hq * d * 2)
        var lseBytes = [UInt8](repeating: 0xFF, count: hq * 4)
        let code = UInt8(kvDType == .e4m3 ? FLASHINFER_SWIFT_DL_FLOAT8_E4M3FN : FLASHINFER_SWIFT_DL_FLOAT8_E5M2)
        var options = flashinfer_swift_options()
        options.window_left = -1
        options.k_scale = 0.37
        options.v_scale = 2.5
        let status = Self.withTensor(&qBytes, shape: [Int64(hq), Int64(d)], code: UInt8(kDLFloat.rawValue), bits: 16) { q in
            Self.withTensor(&kBytes, shape: [Int64(kv), Int64(hkv), Int64(d)], code: code, bits: 8) { k in
                Self.withTensor(&vBytes, shape: [Int64(kv), Int64(hkv), Int64(d)], code: code, bits: 8) { v in
                    Self.withTensor(&outBytes, shape: [Int64(hq), Int64(d)], code: UInt8(kDLFloat.rawValue), bits: 16) { o in
                        Self.withTensor(&lseBytes, shape: [Int64(hq)], code: UInt8(kDLFloat.rawValue), bits: 32) { l in
                            flashinfer_swift_single_decode(q, k, v, o, l, &options, nil)
                        }
                    }
                }
            }
        }
        #expect(status == 0, "\(String(cString: flashinfer_swift_last_error()))")
        let codes = { (b: [UInt8], shape: [Int]) in Tensor(storage: .host(HostBuffer(bytes: b)), shape: shape, dtype: kvDType) }
        let ref = try singleDecode(q: Tensor.host(qv, shape: [hq, d], dtype: .f16), k: codes(kBytes, [kv, hkv, d]),
                                   v: codes(vBytes, [kv, hkv, d]), options: .init(kScale: 0.37, vScale: 2.5), returnLSE: true)
        #expect(DType.f16.decode(outBytes) == (try ref.output.toFloats()))
        #expect(DType.f32.decode(lseBytes) == (try ref.lse!.toFloats()))
        // A float8 q is refused by the library with its reason.
        var q8 = try quantize(qv, to: kvDType)
        let refused = Self.withTensor(&q8, shape: [Int64(hq), Int64(d)], code: code, bits: 8) { q in
            Self.withTensor(&kBytes, shape: [Int64(kv), Int64(hkv), Int64(d)], code: code, bits: 8) { k in
                Self.withTensor(&outBytes, shape: [Int64(hq), Int64(d)], code: UInt8(kDLFloat.rawValue), bits: 16) { o in
                    flashinfer_swift_single_decode(q, k, k, o, nil, &options, nil)
                }
            }
        }
        #expect(refused == Int32(FLASHINFER_SWIFT_ERROR_INVALID))
        #expect(String(cString: flashinfer_swift_last_error()).contains("FP8 is supported for K/V only"))
    }
}
