import Foundation
import Testing

@testable import FlashInfer

/// Every validation rule of the single-request entry points is a specific error, before any launch.
@Suite struct ValidationTests {
    static func t(_ shape: [Int], _ dtype: DType = .f16) -> Tensor {
        Tensor.host([Float](repeating: 0.5, count: shape.reduce(1, *)), shape: shape, dtype: dtype)
    }

    func decodeError(q: Tensor, k: Tensor, v: Tensor, _ o: AttentionOptions = .init()) -> FlashInferError? {
        do {
            _ = try singleDecode(q: q, k: k, v: v, options: o)
            return nil
        } catch { return error }
    }

    func prefillError(q: Tensor, k: Tensor, v: Tensor, _ o: AttentionOptions = .init()) -> FlashInferError? {
        do {
            _ = try singlePrefill(q: q, k: k, v: v, options: o)
            return nil
        } catch { return error }
    }

    @Test func validInputsPass() {
        #expect(decodeError(q: Self.t([8, 64]), k: Self.t([5, 2, 64]), v: Self.t([5, 2, 64])) == nil)
        #expect(prefillError(q: Self.t([3, 8, 64]), k: Self.t([5, 2, 64]), v: Self.t([5, 2, 64]), .init(causal: true)) == nil)
        #expect(prefillError(q: Self.t([3, 8, 64]), k: Self.t([2, 5, 64]), v: Self.t([2, 5, 64]), .init(layout: .hnd)) == nil)
    }

    @Test func ranks() {
        #expect(decodeError(q: Self.t([1, 8, 64]), k: Self.t([5, 2, 64]), v: Self.t([5, 2, 64])) == .rank(tensor: "q", expected: 2, got: 3))
        #expect(prefillError(q: Self.t([8, 64]), k: Self.t([5, 2, 64]), v: Self.t([5, 2, 64])) == .rank(tensor: "q", expected: 3, got: 2))
        #expect(decodeError(q: Self.t([8, 64]), k: Self.t([5, 128]), v: Self.t([5, 2, 64])) == .rank(tensor: "k", expected: 3, got: 2))
        #expect(decodeError(q: Self.t([8, 64]), k: Self.t([5, 2, 64]), v: Self.t([10, 64])) == .rank(tensor: "v", expected: 3, got: 2))
    }

    @Test(arguments: [32, 96, 100, 512])
    func unsupportedHeadDims(d: Int) {
        #expect(decodeError(q: Self.t([4, d]), k: Self.t([5, 4, d]), v: Self.t([5, 4, d])) == .unsupportedHeadDim(d, supported: [64, 128, 256]))
    }

    @Test func headDimsMustAgree() {
        // q is the odd one out (k and v agree): the error names q, not k.
        #expect(decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 128]), v: Self.t([5, 4, 128]))
            == .shape(tensor: "q", axis: 1, name: "head_dim", expected: "128 (k's and v's head_dim)", got: 64))
        #expect(prefillError(q: Self.t([3, 4, 64]), k: Self.t([5, 4, 128]), v: Self.t([5, 4, 128]))
            == .shape(tensor: "q", axis: 2, name: "head_dim", expected: "128 (k's and v's head_dim)", got: 64))
        // An unsupported head_dim in q alone is q's mismatch too, not an unnamed "head_dim 96".
        #expect(decodeError(q: Self.t([4, 96]), k: Self.t([5, 4, 128]), v: Self.t([5, 4, 128]))
            == .shape(tensor: "q", axis: 1, name: "head_dim", expected: "128 (k's and v's head_dim)", got: 96))
        // k is the odd one out (q and v agree), or k and v agree on an unsupported value q does not share.
        #expect(decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 128]), v: Self.t([5, 4, 64]))
            == .shape(tensor: "k", axis: 2, name: "head_dim", expected: "64 (q's head_dim)", got: 128))
        #expect(decodeError(q: Self.t([4, 128]), k: Self.t([5, 4, 96]), v: Self.t([5, 4, 96]))
            == .shape(tensor: "k", axis: 2, name: "head_dim", expected: "128 (q's head_dim)", got: 96))
        let e2 = decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 64]), v: Self.t([5, 4, 128]))
        guard case .shape(tensor: "v", axis: 2, name: "head_dim", _, got: 128) = e2 else { Issue.record("\(String(describing: e2))"); return }
        #expect(FlashInferError.shape(tensor: "q", axis: 1, name: "head_dim", expected: "128 (k's and v's head_dim)", got: 64).description
            == "q: axis 1 (head_dim) is 64, expected 128 (k's and v's head_dim)")
    }

    @Test func kAndVMustAgree() {
        let e = decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 64]), v: Self.t([6, 4, 64]))
        guard case .shape(tensor: "v", axis: 0, name: "kv_len", _, got: 6) = e else { Issue.record("\(String(describing: e))"); return }
        let e2 = decodeError(q: Self.t([4, 64]), k: Self.t([4, 5, 64]), v: Self.t([4, 6, 64]), .init(layout: .hnd))
        guard case .shape(tensor: "v", axis: 1, name: "kv_len", _, got: 6) = e2 else { Issue.record("\(String(describing: e2))"); return }
    }

    @Test func groupSizeMustDivide() {
        #expect(decodeError(q: Self.t([6, 64]), k: Self.t([5, 4, 64]), v: Self.t([5, 4, 64])) == .groupSize(numQOHeads: 6, numKVHeads: 4))
    }

    @Test func dtypes() {
        #expect(decodeError(q: Self.t([4, 64], .f32), k: Self.t([5, 4, 64], .f32), v: Self.t([5, 4, 64], .f32))
            == .dtype(tensor: "q", expected: "f16 or bf16", got: .f32))
        #expect(decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 64], .bf16), v: Self.t([5, 4, 64]))
            == .dtype(tensor: "k", expected: "f16 (q's dtype), e4m3 or e5m2", got: .bf16))
        #expect(decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 64]), v: Self.t([5, 4, 64], .bf16))
            == .dtype(tensor: "v", expected: "f16 (k's dtype)", got: .bf16))
        // FP8 K/V: accepted with an f16/bf16 q; V must match K; an FP8 q is refused with the reason.
        #expect(decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 64], .e4m3), v: Self.t([5, 4, 64], .e4m3)) == nil)
        #expect(decodeError(q: Self.t([4, 64], .bf16), k: Self.t([5, 4, 64], .e5m2), v: Self.t([5, 4, 64], .e5m2)) == nil)
        #expect(decodeError(q: Self.t([4, 64]), k: Self.t([5, 4, 64], .e4m3), v: Self.t([5, 4, 64], .e5m2))
            == .dtype(tensor: "v", expected: "e4m3 (k's dtype)", got: .e5m2))
        #expect(decodeError(q: Self.t([4, 64], .e4m3), k: Self.t([5, 4, 64], .e4m3), v: Self.t([5, 4, 64], .e4m3))
            == .dtype(tensor: "q", expected: "f16 or bf16 (FP8 is supported for K/V only, not q)", got: .e4m3))
    }

    @Test func causalNeedsQueriesNoLongerThanKeys() {
        #expect(prefillError(q: Self.t([6, 4, 64]), k: Self.t([5, 4, 64]), v: Self.t([5, 4, 64]), .init(causal: true))
            == .causalQueryLongerThanKV(qoLen: 6, kvLen: 5))
        // Not causal: allowed.
        #expect(prefillError(q: Self.t([6, 4, 64]), k: Self.t([5, 4, 64]), v: Self.t([5, 4, 64])) == nil)
    }

    @Test func optionsOutOfRange() {
        let q = Self.t([4, 64]), k = Self.t([5, 4, 64])
        guard case .option(name: "window_left", _, _) = decodeError(q: q, k: k, v: k, .init(windowLeft: -2)) else { Issue.record("window"); return }
        guard case .option(name: "logits_soft_cap", _, _) = decodeError(q: q, k: k, v: k, .init(logitsSoftCap: -1)) else { Issue.record("cap"); return }
        guard case .option(name: "sm_scale", _, _) = decodeError(q: q, k: k, v: k, .init(smScale: 0)) else { Issue.record("scale"); return }
        guard case .option(name: "rope", _, _) = decodeError(q: q, k: k, v: k, .init(positionEncoding: .ropeLlama(scale: 0, theta: 1e4))) else {
            Issue.record("rope"); return
        }
    }

    @Test func lastAxisMustBeContiguous() {
        let base = Self.t([5, 4, 64])
        #expect(decodeError(q: Self.t([4, 64]), k: base, v: base) == nil)
        let e = decodeError(q: Self.t([4, 64]), k: Tensor(storage: base.storage, shape: [5, 4, 64], strides: [256, 64, 2], dtype: .f16), v: base)
        #expect(e == .strides(tensor: "k", strides: [256, 64, 2], rule: "the head_dim axis must have stride 1"))
    }

    /// One validation makes the problem value the backends take as-is: the shape, the LSE's shape,
    /// and, for the CPU backend, host placement and no caller buffers.
    @Test func validationReturnsTheCheckedProblem() throws {
        let q = Self.t([3, 8, 64]), k = Self.t([2, 5, 64])
        let p = try validateSingle(q: q, k: k, v: k, decode: false, options: .init(layout: .hnd), placement: .host)
        #expect(p.shape == SingleAttentionShape(qoLen: 3, kvLen: 5, numQOHeads: 8, numKVHeads: 2, headDim: 64))
        #expect(p.lseShape == [3, 8] && !p.decode && p.dtype == .f16 && p.out == nil && p.lse == nil)
        let d = try validateSingle(q: Self.t([8, 64]), k: Self.t([5, 2, 64]), v: Self.t([5, 2, 64]), decode: true, options: .init(), placement: .host)
        #expect(d.lseShape == [8] && d.shape.qoLen == 1 && d.shape.groupSize == 4)
        // Caller buffers are for the CUDA backend.
        #expect(throws: FlashInferError.backendMismatch(what: "lse", rule: "the CPU backend returns new host tensors; out is for the CUDA backend")) {
            _ = try validateSingle(q: Self.t([8, 64]), k: Self.t([5, 2, 64]), v: Self.t([5, 2, 64]), decode: true, options: .init(),
                                   placement: .host, lse: Self.t([8], .f32))
        }
        // The backend runs the problem as validated: the same result as the public entry point.
        let r = try runSingle(d, returnLSE: true, backend: .cpu)
        let e = try singleDecode(q: Self.t([8, 64]), k: Self.t([5, 2, 64]), v: Self.t([5, 2, 64]), returnLSE: true)
        #expect(try r.output.toFloats() == e.output.toFloats() && r.lse!.toFloats() == e.lse!.toFloats() && r.lse!.shape == [8])
    }

    @Test func cpuBackendRejectsDeviceTensorsAndEmptyKVGivesZeroAndMinusInf() throws {
        let r = try singleDecode(q: Self.t([4, 64]), k: Self.t([0, 4, 64]), v: Self.t([0, 4, 64]), returnLSE: true)
        #expect(try r.output.toFloats().allSatisfy { $0 == 0 })
        #expect(try r.lse!.toFloats().allSatisfy { $0 == -.infinity })
    }
}

@Suite struct TensorTests {
    @Test func contiguousStridesAndCounts() {
        let t = Tensor.host([Float](repeating: 1, count: 24), shape: [2, 3, 4], dtype: .f16)
        #expect(t.strides == [12, 4, 1])
        #expect(t.count == 24 && t.rank == 3 && t.isContiguous && !t.isOnDevice)
        #expect(t.spanBytes == 48)
    }

    @Test func stridedViewGathersInLogicalOrder() throws {
        // A [2, 3] f32 matrix viewed transposed as [3, 2].
        let m = Tensor.host([0, 1, 2, 3, 4, 5], shape: [2, 3], dtype: .f32)
        let tr = Tensor(storage: m.storage, shape: [3, 2], strides: [1, 3], dtype: .f32)
        #expect(!tr.isContiguous)
        #expect(try tr.toFloats() == [0, 3, 1, 4, 2, 5])
    }

    @Test func hostRoundTripRoundsToTheDType() throws {
        let x: [Float] = [1, 1.0009765625, 3.14159, -2.5e-8, 70000]
        let t = Tensor.host(x, shape: [5], dtype: .f16)
        #expect(try t.toFloats() == x.map { DType.f16.roundTrip($0) })
        #expect(try t.toFloats()[4] == .infinity)
    }
}

/// Issue 11 item 4: errors that are not about an option have their own cases.
@Suite struct TypedErrorTests {
    @Test func wrappersRunBeforePlanSayNotPlanned() throws {
        let q = Tensor.host([Float](repeating: 0.5, count: 2 * 4 * 64), shape: [2, 4, 64], dtype: .f16)
        #expect(throws: FlashInferError.notPlanned(wrapper: "BatchPrefillAttention")) {
            _ = try BatchPrefillAttention(backend: .cpu).run(q: q, kv: .ragged(k: q, v: q))
        }
        #expect(FlashInferError.notPlanned(wrapper: "X").description == "X: call plan() before run()")
    }

    @Test func descriptionsNameWhatAndWhy() {
        #expect(FlashInferError.capacityExceeded(what: "pages", value: "9", capacity: "8 pages").description
            == "pages 9 exceeds the CUDA-graph capacity of 8 pages")
        #expect(FlashInferError.backendMismatch(what: "out", rule: "is for the CUDA backend").description == "out: is for the CUDA backend")
        #expect(FlashInferError.unsupportedCombination("a and b").description == "unsupported combination: a and b")
        #expect(FlashInferError.reference("odd head_dim").description == "the CPU reference rejected the problem: odd head_dim")
        #expect(FlashInferError.kernelDoesNotFit(kernel: "decode_x", device: "GPU", reason: "no CTA is resident").description
            == "kernel decode_x does not fit on GPU: no CTA is resident")
        #expect(FlashInferError.planMismatch(what: "decode launch", planned: "a", got: "b").description == "decode launch: planned for a, got b")
        #expect(FlashInferError.workspaceTooSmall(bytes: 16, needed: 32).description
            == "workspace: 16 bytes on the stream's device, the launch needs 32")
        #expect(FlashInferError.benchOverride(name: "stages", value: "9", rule: "must be 2...8").description
            == "stages = 9 (a measurement override): must be 2...8")
    }

    /// CUDA-graph capacity checks (batch decode and batch prefill share them) say capacityExceeded.
    @Test func graphCapacityIsCapacityExceeded() throws {
        let cap = GraphCapacity(maxBatch: 2, maxPages: 8, maxQORows: 10)
        try cap.check(batchSize: 2, pages: 8, queryRows: 10)
        try cap.check(batchSize: 1, pages: nil)
        #expect(throws: FlashInferError.capacityExceeded(what: "batch size", value: "3", capacity: "2 requests")) {
            try cap.check(batchSize: 3, pages: 1)
        }
        #expect(throws: FlashInferError.capacityExceeded(what: "pages", value: "9", capacity: "8 pages")) {
            try cap.check(batchSize: 1, pages: 9)
        }
        #expect(throws: FlashInferError.capacityExceeded(what: "query rows (qo_indptr[-1])", value: "11", capacity: "10 rows")) {
            try cap.check(batchSize: 1, pages: 1, queryRows: 11)
        }
        #expect(throws: FlashInferError.capacityExceeded(what: "work items", value: "5", capacity: "4 work items")) {
            try GraphCapacity.check(workItems: 5, maxItems: 4)
        }
    }

    /// `.option` is for values the caller chose; the backends' own limits have typed cases.
    @Test func backendsThrowNoOptionErrors() throws {
        let backend = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/FlashInfer/Backend")
        let files = FileManager.default.enumerator(atPath: backend.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        #expect(!files.isEmpty)
        for f in files {
            let text = try String(contentsOf: backend.appendingPathComponent(f), encoding: .utf8)
            #expect(!text.contains(".option("), "Backend/\(f) throws .option: use a typed case")
        }
    }

    @Test func outOnTheCPUBackendIsABackendMismatch() throws {
        let q = Tensor.host([Float](repeating: 0.5, count: 4 * 64), shape: [4, 64], dtype: .f16)
        let kv = Tensor.host([Float](repeating: 0.5, count: 3 * 4 * 64), shape: [3, 4, 64], dtype: .f16)
        do {
            _ = try singleDecode(q: q, k: kv, v: kv, out: q, backend: .cpu)
            Issue.record("accepted out on the CPU backend")
        } catch {
            guard case .backendMismatch(what: "out", _) = error else { Issue.record("\(error)"); return }
        }
    }
}
