import FlashInferCUDA

/// Merges two attention states over disjoint key sets: `(va, sa) ⊕ (vb, sb)`.
///
/// `va`, `vb`: `[n, H, D]` f16/bf16; `sa`, `sb`: `[n, H]` Float32 base-2 LSE. Returns `(v, s)` of
/// the same shapes. Exact math (upstream `MergeStateKernel`): `m = max(sa, sb)`,
/// `v = (2^(sa−m)·va + 2^(sb−m)·vb) / (2^(sa−m) + 2^(sb−m))`, `s = log2(2^(sa−m) + 2^(sb−m)) + m`;
/// two empty states (`−inf`) give 0 and `−inf`, never NaN.
public func mergeState(va: Tensor, sa: Tensor, vb: Tensor, sb: Tensor, backend: Backend = .cpu) throws(FlashInferError) -> (v: Tensor, s: Tensor) {
    let impl = backend.implementation
    let (n, h, d) = try validateStates(v: va, s: sa, vName: "va", sName: "sa")
    try validateSame(vb, sb, as: va, sa, vName: "vb", sName: "sb")
    try checkPlacement([("va", va), ("sa", sa), ("vb", vb), ("sb", sb)], impl.placement)
    return try impl.mergeState(va: va, sa: sa, vb: vb, sb: sb, n: n, h: h, d: d)
}

/// Merges `(vOther, sOther)` into `(v, s)` in place; with `mask` (`[n]`, one byte per position),
/// positions whose mask is 0 are left unchanged (upstream `merge_state_in_place`).
public func mergeStateInPlace(v: Tensor, s: Tensor, vOther: Tensor, sOther: Tensor, mask: [UInt8]? = nil,
                              backend: Backend = .cpu) throws(FlashInferError) {
    let impl = backend.implementation
    let (n, h, d) = try validateStates(v: v, s: s, vName: "v", sName: "s")
    try validateSame(vOther, sOther, as: v, s, vName: "v_other", sName: "s_other")
    if let mask, mask.count != n { throw .shape(tensor: "mask", axis: 0, name: "positions", expected: "\(n)", got: mask.count) }
    // One tensor at a time: the cascade's run() merges through here (no array on its hot path).
    let placement = impl.placement
    try checkPlacement("v", v, placement)
    try checkPlacement("s", s, placement)
    try checkPlacement("v_other", vOther, placement)
    try checkPlacement("s_other", sOther, placement)
    try impl.mergeStateInPlace(v: v, s: s, vOther: vOther, sOther: sOther, mask: mask, n: n, h: h, d: d)
}

/// `mergeStateInPlace` with the mask already in device memory (`[n]` bytes, one per position, 0 =
/// left unchanged: a bool or uint8 tensor's storage), read by the kernel on `stream`: no upload, no
/// host wait, graph-capturable. The tensors must be on the stream's device (the CUDA backend).
public func mergeStateInPlace(v: Tensor, s: Tensor, vOther: Tensor, sOther: Tensor, deviceMask: DeviceBuffer,
                              stream: Stream) throws(FlashInferError) {
    let (n, h, d) = try validateStates(v: v, s: s, vName: "v", sName: "s")
    try validateSame(vOther, sOther, as: v, s, vName: "v_other", sName: "s_other")
    let placement = Placement.device(stream.device)
    try checkDeviceValues(deviceMask, name: "mask", count: n, elementBytes: 1, placement: placement)
    try checkPlacement([("v", v), ("s", s), ("v_other", vOther), ("s_other", sOther)], placement)
    try launchMerge(.inPlace, dtype: v.dtype, va: v, sa: s, vb: vOther, sb: sOther, vOut: v, sOut: s, mask: deviceMask, n: n, h: h, d: d,
                    states: 0, stream: stream)
}

/// Merges `numStates` states per position: `v` `[n, numStates, H, D]`, `s` `[n, numStates, H]` →
/// `[n, H, D]`, `[n, H]`. Zero states give 0 / `−inf`; one state is a copy.
public func mergeStates(v: Tensor, s: Tensor, backend: Backend = .cpu) throws(FlashInferError) -> (v: Tensor, s: Tensor) {
    let impl = backend.implementation
    guard v.rank == 4 else { throw .rank(tensor: "v", expected: 4, got: v.rank) }
    guard s.rank == 3 else { throw .rank(tensor: "s", expected: 3, got: s.rank) }
    let (n, k, h, d) = (v.shape[0], v.shape[1], v.shape[2], v.shape[3])
    guard s.shape == [n, k, h] else { throw .shape(tensor: "s", axis: 0, name: "[n, num_states, heads]", expected: "\([n, k, h])", got: s.shape[0]) }
    try validateElement(v, s, vName: "v", sName: "s", headDim: d)
    try checkPlacement([("v", v), ("s", s)], impl.placement)
    return try impl.mergeStates(v: v, s: s, n: n, states: k, h: h, d: d)
}

// MARK: - helpers

private func validateElement(_ v: Tensor, _ s: Tensor, vName: String, sName: String, headDim d: Int) throws(FlashInferError) {
    guard v.dtype == .f16 || v.dtype == .bf16 else { throw .dtype(tensor: vName, expected: "f16 or bf16", got: v.dtype) }
    guard s.dtype == .f32 else { throw .dtype(tensor: sName, expected: "f32", got: s.dtype) }
    guard d % 8 == 0 && d > 0 else { throw .shape(tensor: vName, axis: v.rank - 1, name: "head_dim", expected: "a positive multiple of 8", got: d) }
    guard v.isContiguous else { throw .strides(tensor: vName, strides: v.strides, rule: "must be contiguous") }
    guard s.isContiguous else { throw .strides(tensor: sName, strides: s.strides, rule: "must be contiguous") }
}

private func validateStates(v: Tensor, s: Tensor, vName: String, sName: String) throws(FlashInferError) -> (Int, Int, Int) {
    guard v.rank == 3 else { throw .rank(tensor: vName, expected: 3, got: v.rank) }
    guard s.rank == 2 else { throw .rank(tensor: sName, expected: 2, got: s.rank) }
    guard s.shape[0] == v.shape[0] && s.shape[1] == v.shape[1] else {
        throw .shape(tensor: sName, axis: s.shape[0] == v.shape[0] ? 1 : 0, name: "[n, heads]", expected: "\([v.shape[0], v.shape[1]])", got: s.shape[s.shape[0] == v.shape[0] ? 1 : 0])
    }
    try validateElement(v, s, vName: vName, sName: sName, headDim: v.shape[2])
    return (v.shape[0], v.shape[1], v.shape[2])
}

private func validateSame(_ v: Tensor, _ s: Tensor, as v0: Tensor, _ s0: Tensor, vName: String, sName: String) throws(FlashInferError) {
    _ = try validateStates(v: v, s: s, vName: vName, sName: sName)
    guard v.shape == v0.shape else { throw .shape(tensor: vName, axis: 0, name: "shape \(v.shape)", expected: "\(v0.shape)", got: v.shape[0]) }
    guard v.dtype == v0.dtype else { throw .dtype(tensor: vName, expected: v0.dtype.rawValue, got: v.dtype) }
}
