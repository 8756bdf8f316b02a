import CFlashInferABI
import Testing

@testable import FlashInferC

/// The C ABI's per-handle cache of values built from the caller's DLTensors (run()'s device
/// Tensors): a hit only while every field the value was built from is unchanged.
@Suite struct ABITensorCacheTests {
    /// A DLTensor in memory the test owns (so it can be rewritten in place, as a caller might).
    final class Slot {
        var shape: [Int64]
        var strides: [Int64]
        let tensor: UnsafeMutablePointer<DLTensor>
        let shapePtr: UnsafeMutablePointer<Int64>, stridesPtr: UnsafeMutablePointer<Int64>

        init(data: UInt, shape: [Int64], strides: [Int64]? = nil) {
            self.shape = shape
            self.strides = strides ?? []
            shapePtr = .allocate(capacity: 8)
            stridesPtr = .allocate(capacity: 8)
            for (i, s) in shape.enumerated() { shapePtr[i] = s }
            for (i, s) in (strides ?? []).enumerated() { stridesPtr[i] = s }
            tensor = .allocate(capacity: 1)
            tensor.initialize(to: DLTensor(data: UnsafeMutableRawPointer(bitPattern: data), device: DLDevice(device_type: kDLCUDA, device_id: 0),
                                           ndim: Int32(shape.count), dtype: DLDataType(code: UInt8(kDLFloat.rawValue), bits: 16, lanes: 1),
                                           shape: shapePtr, strides: strides == nil ? nil : stridesPtr, byte_offset: 0))
        }

        deinit {
            tensor.deallocate()
            shapePtr.deallocate()
            stridesPtr.deallocate()
        }
    }

    @Test func hitWhileUnchanged() {
        let cache = DLTensorCache<Int>(capacity: 16)
        let a = Slot(data: 0x1000, shape: [4, 32, 128])
        let b = Slot(data: 0x1000, shape: [4, 32, 128])  // the same fields, another struct
        #expect(cache.lookup(a.tensor) == nil)
        cache.insert(1, for: a.tensor)
        #expect(cache.lookup(a.tensor) == 1)
        #expect(cache.lookup(a.tensor) == 1)
        #expect(cache.lookup(b.tensor) == nil, "keyed by the struct's address")
        cache.insert(2, for: b.tensor)
        #expect(cache.lookup(a.tensor) == 1 && cache.lookup(b.tensor) == 2 && cache.count == 2)
    }

    /// Each field rewritten in place makes the entry miss; restoring it makes it hit again.
    @Test func everyFieldInvalidates() {
        let cache = DLTensorCache<Int>(capacity: 16)
        let s = Slot(data: 0x2000, shape: [8, 16, 8, 128], strides: [32768, 2048, 128, 1])
        cache.insert(7, for: s.tensor)
        let edits: [(String, (UnsafeMutablePointer<DLTensor>) -> Void)] = [
            ("data", { $0.pointee.data = UnsafeMutableRawPointer(bitPattern: 0x3000) }),
            ("byte_offset", { $0.pointee.byte_offset = 256 }),
            ("dtype code", { $0.pointee.dtype.code = UInt8(kDLBfloat.rawValue) }),
            ("dtype bits", { $0.pointee.dtype.bits = 32 }),
            ("dtype lanes", { $0.pointee.dtype.lanes = 2 }),
            ("device type", { $0.pointee.device.device_type = kDLCPU }),
            ("device id", { $0.pointee.device.device_id = 1 }),
            ("ndim", { $0.pointee.ndim = 3 }),
            ("a dimension", { $0.pointee.shape[2] = 4 }),
            ("a stride", { $0.pointee.strides[0] = 65536 }),
            ("strides dropped", { $0.pointee.strides = nil }),
        ]
        for (what, edit) in edits {
            let saved = s.tensor.pointee
            let savedShape = s.shapePtr[2], savedStride = s.stridesPtr[0]
            edit(s.tensor)
            #expect(cache.lookup(s.tensor) == nil, "a changed \(what) still hit")
            s.tensor.pointee = saved
            s.shapePtr[2] = savedShape
            s.stridesPtr[0] = savedStride
            #expect(cache.lookup(s.tensor) == 7, "restored \(what) missed")
        }
    }

    @Test func stridesGivenVersusCompact() {
        let cache = DLTensorCache<Int>(capacity: 16)
        let compact = Slot(data: 0x4000, shape: [2, 3])
        cache.insert(1, for: compact.tensor)
        compact.tensor.pointee.strides = compact.stridesPtr  // now explicit (even if equal to compact)
        compact.stridesPtr[0] = 3
        compact.stridesPtr[1] = 1
        #expect(cache.lookup(compact.tensor) == nil)
    }

    @Test func startsOverAtCapacity() {
        let cache = DLTensorCache<Int>(capacity: 4)
        let slots = (0..<5).map { Slot(data: 0x1000 * UInt($0 + 1), shape: [1]) }
        for (i, s) in slots.prefix(4).enumerated() { cache.insert(i, for: s.tensor) }
        #expect(cache.count == 4)
        cache.insert(4, for: slots[4].tensor)
        #expect(cache.count == 1)
        #expect(cache.lookup(slots[0].tensor) == nil && cache.lookup(slots[4].tensor) == 4)
    }

    /// A rank-0 tensor (no shape pointer needed) is cached like any other.
    @Test func scalar() {
        let cache = DLTensorCache<Int>(capacity: 4)
        let s = Slot(data: 0x5000, shape: [])
        s.tensor.pointee.shape = nil
        cache.insert(3, for: s.tensor)
        #expect(cache.lookup(s.tensor) == 3)
    }
}
