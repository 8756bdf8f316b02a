import ArgumentParser
import FlashInfer
import FlashInferCUDA

/// Options shared by the `run` subcommands: inputs and outputs as `.npy`, attention options as flags.
struct AttentionFlags: ParsableArguments {
    @Option(help: "q as .npy") var q: String
    @Option(help: "k as .npy") var k: String
    @Option(help: "v as .npy") var v: String
    @Option(help: "Output .npy to write.") var out: String
    @Option(help: "Also write the base-2 LSE (float32) to this .npy.") var lse: String?
    @Option(help: "Element type: f16 or bf16 (bf16 .npy files hold the raw 2-byte form as <u2; <f4 inputs are rounded to it).")
    var dtype: String = "f16"
    @Option(name: .customLong("kv-dtype"),
            help: "K/V element type: e4m3 or e5m2 for FP8 K/V (the .npy files hold the raw FP8 codes as uint8, |u1 or <u1; a K code's value times --k-scale is the key, a V code's times --v-scale the value); default: --dtype.")
    var kvDType: String?
    @Option(name: .customLong("k-scale"), help: "k_scale: the logits use sm_scale · k_scale (FP8 K is stored as k / k_scale). 1 = none.")
    var kScale: Float = 1
    @Option(name: .customLong("v-scale"), help: "v_scale: the output is multiplied by it (FP8 V is stored as v / v_scale). 1 = none.")
    var vScale: Float = 1
    @Option(help: "KV layout: NHD or HND.") var layout: String = "NHD"
    @Flag(help: "Causal mask (bottom-right aligned); prefill only.") var causal = false
    @Option(name: .customLong("sm-scale"), help: "Softmax scale (default 1/sqrt(head_dim)).") var smScale: Float?
    @Option(name: .customLong("pos-enc"), help: "Position encoding.") var posEnc: PositionEncodingChoice = .none
    @Option(name: .customLong("rope-scale")) var ropeScale: Float = 1
    @Option(name: .customLong("rope-theta")) var ropeTheta: Float = 1e4
    @Option(name: .customLong("soft-cap"), help: "Logits soft-cap (0 = off).") var softCap: Float = 0
    @Option(name: .customLong("window-left"), help: "Sliding window, inclusive (-1 = off).") var windowLeft: Int = -1
    @Option(help: "cpu, cuda or auto.") var backend: BackendChoice = .auto

    /// Checks the string-valued options while parsing, so an error comes with the subcommand's usage.
    func validate() throws {
        _ = try options()
        _ = try elementType()
        _ = try kvElementType()
    }

    func options() throws -> AttentionOptions {
        guard let layout = KVLayout(rawValue: layout.uppercased()) else { throw ValidationError("--layout must be NHD or HND") }
        let pe: PositionEncoding = switch posEnc {
        case .none: .none
        case .rope: .ropeLlama(scale: ropeScale, theta: ropeTheta)
        case .alibi: .alibi
        }
        return AttentionOptions(causal: causal, smScale: smScale, positionEncoding: pe, logitsSoftCap: softCap, windowLeft: windowLeft, layout: layout,
                                kScale: kScale, vScale: vScale)
    }

    func elementType() throws -> DType {
        guard let d = DType(name: dtype), d == .f16 || d == .bf16 else { throw ValidationError("--dtype must be f16 or bf16") }
        return d
    }

    /// K's and V's dtype: `--kv-dtype` (e4m3 or e5m2), else q's.
    func kvElementType() throws -> DType {
        let q = try elementType()
        guard let kvDType else { return q }
        guard let d = DType(name: kvDType), d.isFP8 || d == q else {
            throw ValidationError("--kv-dtype must be e4m3 or e5m2 (or --dtype's, the default)")
        }
        return d
    }

    /// The tensor in the `.npy` file `path`, given as `--name`; a format error names the file. FP8
    /// tensors are read from their raw codes (uint8) only: converting floats would need a scale.
    func load(_ name: String, _ path: String, as dtype: DType, to backend: Backend) throws -> Tensor {
        do {
            let array = try NPYArray.read(path: path)
            if dtype.isFP8 && array.descr != "|u1" && array.descr != "<u1" {
                throw RunError("--\(name) \(path): holds '\(array.descr)', but an \(dtype.rawValue) K/V file must hold the raw FP8 codes as uint8 (|u1), e.g. the bytes of quantize(k, to: .\(dtype.rawValue), scale: k_scale)")
            }
            return try array.tensor(as: dtype).moved(to: backend)
        } catch let e as NPYArray.Error {
            switch e {
            case .cannotRead, .cannotWrite: throw e
            case .notNPY, .unsupported: throw RunError("--\(name) \(path): \(e)")
            }
        }
    }

    func run(decode: Bool) throws {
        let dt = try elementType(), kvt = try kvElementType()
        let be = try backend.resolve()
        let q = try load("q", q, as: dt, to: be)
        let k = try load("k", k, as: kvt, to: be)
        let v = try load("v", v, as: kvt, to: be)
        let o = try options()
        let r = decode
            ? try singleDecode(q: q, k: k, v: v, options: o, returnLSE: lse != nil, backend: be)
            : try singlePrefill(q: q, k: k, v: v, options: o, returnLSE: lse != nil, backend: be)
        if case .cuda(let s) = be { try s.synchronize() }
        try NPYArray(tensor: r.output).write(path: out)
        if let lse, let t = r.lse { try NPYArray(tensor: t).write(path: lse) }
        let kvNote = kvt == dt ? "" : " \(kvt.rawValue)"
        let scales = o.kScale == 1 && o.vScale == 1 ? "" : " (k_scale \(o.kScale), v_scale \(o.vScale))"
        print("\(decode ? "single-decode" : "single-prefill") on \(be.name): q \(q.shape), k \(k.shape)\(kvNote)\(scales) -> \(out) \(r.output.shape)\(lse.map { ", lse -> \($0)" } ?? "")")
    }
}

/// `--pos-enc`, parsed by ArgumentParser (a bad value gets the subcommand's usage).
enum PositionEncodingChoice: String, ExpressibleByArgument, CaseIterable {
    case none, rope, alibi
}

/// A failure of `flashinfer run` worded for the user (ArgumentParser prints `Error: ` and the description).
struct RunError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one attention call on .npy inputs and write .npy outputs (so any tool can feed and check the kernels).",
        subcommands: [SingleDecodeRun.self, SinglePrefillRun.self])

    struct SingleDecodeRun: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "single-decode", abstract: "q [Hq, D]; k, v [kv_len, Hkv, D] (NHD) or [Hkv, kv_len, D] (HND).")
        @OptionGroup var flags: AttentionFlags
        func validate() throws {
            if flags.causal {
                throw ValidationError("--causal does not apply to decode: a decode step has one query, the newest token, which attends to every key anyway (use single-prefill for a causal mask)")
            }
        }
        func run() throws { try flags.run(decode: true) }
    }

    struct SinglePrefillRun: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "single-prefill", abstract: "q [qo_len, Hq, D]; k, v [kv_len, Hkv, D] (NHD) or [Hkv, kv_len, D] (HND).")
        @OptionGroup var flags: AttentionFlags
        func run() throws { try flags.run(decode: false) }
    }
}
