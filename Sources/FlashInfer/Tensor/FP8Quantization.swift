import FlashInferCUDA

/// Per-tensor FP8 quantization of host data, the way FP8 KV caches are made and read upstream
/// (`k_fp8 = (k / k_scale).to(float8)`; attention then uses `k_scale` and `v_scale`, see
/// `AttentionOptions.kScale`).
///
/// - `quantize`: the code of `x / scale` rounded to nearest, ties to even, in the format; values
///   beyond the largest finite value saturate to it (±448 for e4m3, ±57344 for e5m2; ±inf too, as
///   `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, …)` does); NaN stays NaN (code `0x7F`).
///   The quotient is rounded **once**, from its exact value: `x / scale` is formed in `Double` and
///   narrowed to `Float` with round-to-odd, which then rounds to FP8 exactly as the real number
///   would (a plain `Float` division could land on an FP8 tie and round a second time).
///   With `scale` a power of two, or 1, this is the same as `DType.bits(x / scale)`.
/// - `dequantize`: `value(code) · scale` in `Float` (one rounding; exact for power-of-two scales).
///
/// Codes are the formats' bit patterns (`DType.bits` / `DType.value(bits:)`, `Tensor/DTypeConversion.swift`):
/// an FP8 `Tensor` stores exactly these bytes.

/// `values` quantized to `dtype` (`.e4m3` or `.e5m2`) with `scale`: one code per value.
/// - Throws: `.dtype` when `dtype` is not an FP8 format; `.option` when `scale` is not finite and > 0.
public func quantize(_ values: [Float], to dtype: DType, scale: Float = 1) throws(FlashInferError) -> [UInt8] {
    try validateFP8(dtype, scale: scale, tensor: "quantize(to:)")
    return values.map { fp8Code($0, dtype: dtype, scale: scale) }
}

/// The values of FP8 `codes` of `dtype`, times `scale`.
/// - Throws: `.dtype` when `dtype` is not an FP8 format; `.option` when `scale` is not finite and > 0.
public func dequantize(_ codes: [UInt8], from dtype: DType, scale: Float = 1) throws(FlashInferError) -> [Float] {
    try validateFP8(dtype, scale: scale, tensor: "dequantize(from:)")
    return codes.map { dtype.value(bits: UInt32($0)) * scale }
}

/// `tensor` (any dtype, host or device) quantized to a contiguous host tensor of `dtype` with the
/// same shape: the FP8 K or V to pass to attention together with `kScale` / `vScale = scale`.
public func quantize(_ tensor: Tensor, to dtype: DType, scale: Float = 1) throws(FlashInferError) -> Tensor {
    let values = try FlashInferError.wrap { () throws(CUDAError) in try tensor.toFloats() }
    let codes = try quantize(values, to: dtype, scale: scale)
    return Tensor(storage: .host(HostBuffer(bytes: codes)), shape: tensor.shape, dtype: dtype)
}

/// An FP8 `tensor` (host or device) dequantized to a contiguous host `.f32` tensor of the same shape.
/// - Throws: `.dtype` when the tensor is not FP8; `.option` for a bad `scale`.
public func dequantize(_ tensor: Tensor, scale: Float = 1) throws(FlashInferError) -> Tensor {
    guard tensor.dtype.isFP8 else { throw .dtype(tensor: "dequantize", expected: "e4m3 or e5m2", got: tensor.dtype) }
    let codes = try FlashInferError.wrap { () throws(CUDAError) in try tensor.contiguousBytesChecked() }
    return Tensor.host(try dequantize(codes, from: tensor.dtype, scale: scale), shape: tensor.shape, dtype: .f32)
}

func validateFP8(_ dtype: DType, scale: Float, tensor: String) throws(FlashInferError) {
    guard dtype.isFP8 else { throw .dtype(tensor: tensor, expected: "e4m3 or e5m2", got: dtype) }
    guard scale.isFinite && scale > 0 else { throw .option(name: "scale", value: "\(scale)", rule: "must be finite and > 0") }
}

/// The FP8 code of `x / scale`, rounded once (see above).
@inline(__always)
func fp8Code(_ x: Float, dtype: DType, scale: Float) -> UInt8 {
    UInt8(truncatingIfNeeded: dtype.bits(scale == 1 ? x : quotientRoundedToOdd(x, scale)))
}

/// `x / scale` as a `Float` rounded to odd: the exact quotient if it is a `Float`, else the `Float`
/// toward zero from it with the last mantissa bit set. A later round-to-nearest to a format with at
/// least two fewer mantissa bits (FP8 has 2 or 3 of Float's 23) then equals rounding the exact
/// quotient. The `Double` quotient is close enough: `x / scale` of two `Float`s is either exact or
/// at least 2^−29 (relative) away from every number with 5 significant bits — every FP8 value and
/// midpoint — far more than `Double`'s 2^−53 rounding error.
@inline(__always)
func quotientRoundedToOdd(_ x: Float, _ scale: Float) -> Float {
    let q = Double(x) / Double(scale)
    guard q.isFinite else { return Float(q) }
    var f = Float(q)  // nearest; ±inf when |q| is beyond Float's range
    if Double(f) == q { return f }
    if abs(Double(f)) > abs(q) { f = f > 0 ? f.nextDown : f.nextUp }
    return Float(bitPattern: f.bitPattern | 1)
}
