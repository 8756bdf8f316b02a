import ArgumentParser
import FlashInfer

/// The attention-shape options that the prefill benches share (each overrides its workload preset).
struct AttentionShapeOptions: ParsableArguments {
    @Option(name: .customLong("qo-len"), help: "Queries (new tokens) per request.") var qoLen: Int?
    @Option(name: .customLong("kv-len"), help: "Keys per request, the new tokens included.") var kvLen: Int?
    @Option(name: .customLong("num-qo-heads")) var numQOHeads: Int?
    @Option(name: .customLong("num-kv-heads")) var numKVHeads: Int?
    @Option(name: .customLong("head-dim")) var headDim: Int?
    @Option(help: "f16 or bf16.") var dtype: String?
    @Option(help: "true or false (bottom-right causal mask per request).") var causal: Bool?
    @Option(help: "K/V layout: NHD or HND.") var layout: String = "NHD"
    @Flag(help: "Also write the LSE.") var lse = false

    /// --dtype, f16 unless given.
    func resolvedDType() throws -> DType {
        guard let dt = DType(name: dtype ?? "f16"), dt == .f16 || dt == .bf16 else { throw ValidationError("--dtype must be f16 or bf16") }
        return dt
    }

    func resolvedLayout() throws -> KVLayout {
        guard let lay = KVLayout(rawValue: layout.uppercased()) else { throw ValidationError("--layout must be NHD or HND") }
        return lay
    }

    /// Whether any shape option departs from the preset.
    var overridesPreset: Bool {
        qoLen != nil || kvLen != nil || numQOHeads != nil || numKVHeads != nil || headDim != nil || dtype != nil || causal != nil
            || layout.uppercased() != "NHD"
    }
}
