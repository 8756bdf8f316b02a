/// Options shared by every attention entry point (GPU kernels and the CPU reference).
///
/// Conventions follow upstream FlashInfer (see `docs/Semantics.md`):
/// - logits are `sm_scale · q·k`; the soft-cap, when on, is `cap · tanh(logit / cap)` applied after scaling;
/// - the LSE returned is **base 2**: `log2(Σ_j exp(logit_j))`;
/// - causal masks are aligned bottom-right: key `j` is masked for query `i` iff `j > i + (kvLen − qoLen)`;
/// - `windowLeft` is inclusive (a query keeps keys `j ≥ i + (kvLen − qoLen) − windowLeft`); `-1` disables it.

/// Where K and V keep the head axis.
public enum KVLayout: String, Sendable, CaseIterable, Hashable {
    /// `[seq, heads, dim]` (FlashInfer's default).
    case nhd = "NHD"
    /// `[heads, seq, dim]`.
    case hnd = "HND"
}

/// How positions enter the logits.
public enum PositionEncoding: Sendable, Hashable {
    /// No position encoding in the kernel.
    case none
    /// LLaMA RoPE (rotate-half, non-interleaved) applied on the fly to q and k:
    /// `freq_i = (1/scale) · theta^(−2i/D)`.
    case ropeLlama(scale: Float = 1, theta: Float = 1e4)
    /// ALiBi: `logit += slope[h] · (kvIdx − qoIdx)` with upstream's slopes.
    case alibi

    /// Short name used in specs, logs and the CLI.
    public var name: String {
        switch self {
        case .none: "none"
        case .ropeLlama: "rope"
        case .alibi: "alibi"
        }
    }
}

/// Which prefill kernel family runs (single and batch prefill): the FA2-style `mma.sync` kernels
/// (every variant, every GPU) or the Hopper FA3-style kernels (sm_90 only; f16/bf16 q, K and V, head
/// dim 64 or 128, causal or not; no RoPE, ALiBi, soft-cap, window, custom mask or FP8 K/V; batch
/// prefill also: a power-of-two GQA group, page size 8–128 or ragged K/V, not in CUDA-graph mode).
public enum PrefillTier: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Hopper when the device and the call support it, else FA2.
    case auto
    /// The FA2-style kernels (`PrefillSpec`).
    case fa2
    /// The Hopper kernels (`HopperPrefillSpec`); refused (`unsupportedCombination`) where they do not apply.
    case hopper

    public var description: String { rawValue }
}

/// Per-call attention options.
public struct AttentionOptions: Sendable, Hashable {
    /// Causal mask, aligned bottom-right. Ignored by decode (qoLen = 1 sees every key).
    public var causal: Bool
    /// Softmax scale; `nil` means `1/√headDim`.
    public var smScale: Float?
    public var positionEncoding: PositionEncoding
    /// Logits soft-cap; `0` disables it.
    public var logitsSoftCap: Float
    /// Sliding window, inclusive; `-1` disables it.
    public var windowLeft: Int
    /// Layout of K and V.
    public var layout: KVLayout
    /// Scale of K (upstream's `k_scale`, for FP8 K/V; any K dtype): it multiplies the softmax scale,
    /// so the logit is `sm_scale · k_scale · q·k` (the soft cap, when on, applies after). 1 = none;
    /// finite and > 0. On CUDA it folds into the softmax scale (`docs/Sparse.md`).
    public var kScale: Float = 1
    /// Scale of V (upstream's `v_scale`): the output is multiplied by it; the LSE is unchanged.
    /// 1 = none; finite and > 0. On CUDA every epilogue multiplies its 1/rowsum by it.
    public var vScale: Float = 1
    /// Which kernel family runs a prefill on the GPU (`singlePrefill`, and `BatchPrefillAttention`,
    /// resolved in its `plan`: `tier` / `tierFallback`; decode entry points and the CPU ignore it). `.auto` (the default) picks the Hopper kernels (wgmma + TMA,
    /// docs/Hopper.md) on an sm_90 GPU when the call is one they implement, else the FA2 kernels;
    /// `.fa2` forces those everywhere; `.hopper` insists (`unsupportedCombination` otherwise). The
    /// tier that ran is `AttentionOutput.prefillTier`. (`.auto` became the default once the Hopper
    /// tier passed the full check on the H200: 57 tier cases, 1047 in all, at cec60c0.)
    public var tier: PrefillTier = .auto

    public init(
        causal: Bool = false, smScale: Float? = nil, positionEncoding: PositionEncoding = .none,
        logitsSoftCap: Float = 0, windowLeft: Int = -1, layout: KVLayout = .nhd,
        kScale: Float = 1, vScale: Float = 1, tier: PrefillTier = .auto
    ) {
        self.tier = tier
        self.causal = causal
        self.smScale = smScale
        self.positionEncoding = positionEncoding
        self.logitsSoftCap = logitsSoftCap
        self.windowLeft = windowLeft
        self.layout = layout
        self.kScale = kScale
        self.vScale = vScale
    }

    /// The softmax scale actually used for a head dimension.
    public func resolvedScale(headDim: Int) -> Float {
        smScale ?? 1 / Float(headDim).squareRoot()
    }
}

/// ALiBi slope of head `h` out of `numHeads`, exactly as upstream (`pos_enc.cuh`):
/// with `n = 2^floor(log2(H))`, `h < n → 2^(−8(h+1)/n)`, else `2^(−4((h+1−n)·2−1)/n)`.
public func alibiSlope(head h: Int, numHeads: Int) -> Double {
    var n = 1
    while n * 2 <= numHeads { n *= 2 }
    if h < n {
        return pow2(-8.0 * Double(h + 1) / Double(n))
    } else {
        return pow2(-4.0 * Double((h + 1 - n) * 2 - 1) / Double(n))
    }
}

@inline(__always) func pow2(_ x: Double) -> Double {
    // exp2 without Foundation: Glibc's exp2.
    _exp2(x)
}
