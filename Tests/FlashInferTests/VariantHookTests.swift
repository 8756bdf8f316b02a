import Testing
@testable import FlashInfer

/// Every kernel family calls every hook of an attention variant (variants.cuh). For each family
/// (decode contiguous and paged, single prefill, paged batch prefill), a variant that changes one
/// hook (a query scale, an output scale, a mask that drops odd keys) compiles to different code
/// than a variant that only inherits the default's hooks, and that control compiles to the same
/// code as the default itself. Running such a variant needs a GPU (a later issue's FP8 scales are
/// the first real one); this proves the kernels reach each hook, so that a new variant is a new
/// type and not a new `if` in a kernel.
@Suite(.enabled(if: nvrtcAvailable, "NVRTC and CUDA headers not found (set FLASHINFER_CUDA_PIP; see README)"))
struct VariantHookTests {
    static let base = "flashinfer::AttentionVariant<flashinfer::PosEnc::kNone, false, false, false>"
    /// Every source holds all of these, so the sources differ only in one `using` line (and the
    /// line table stays the same when the code does).
    static let variants = """
        using Default = \(base);
        struct NoHook : Default {
          __device__ __forceinline__ explicit NoHook(const flashinfer::VariantParams& vp) : Default(vp) {}
        };
        struct QueryHook : Default {
          static constexpr bool TRANSFORMS_QUERY = true;
          __device__ __forceinline__ explicit QueryHook(const flashinfer::VariantParams& vp) : Default(vp) {}
          __device__ __forceinline__ float query_transform(float q, int, int) const { return q * 0.5f; }
        };
        struct OutputHook : Default {
          static constexpr bool TRANSFORMS_OUTPUT = true;
          __device__ __forceinline__ explicit OutputHook(const flashinfer::VariantParams& vp) : Default(vp) {}
          __device__ __forceinline__ float output_transform(float o, int, int) const { return o * 3.f; }
        };
        struct MaskHook : Default {
          static constexpr bool CUSTOM_MASK = true;
          __device__ __forceinline__ explicit MaskHook(const flashinfer::VariantParams& vp) : Default(vp) {}
          __device__ __forceinline__ bool keep(int qo_idx, int kv_idx) const { return Default::keep(qo_idx, kv_idx) && (kv_idx & 1) == 0; }
        };
        """

    struct Source: KernelSpec {
        var variant: String
        var family: String
        var name: String { "variant_hooks_\(family)_\(variant)" }
        var entryPoint: String { "fi_variant_hooks" }  // one name, so that equal code gives equal images
        func source() -> String {
            let body: String
            switch family {
            case "decode", "decode_paged":
                body = """
                    using KT = flashinfer::DecodeTraits<half, 128, 4, V, 4, 4, \(family == "decode_paged")>;
                    extern "C" __global__ void __launch_bounds__(128) fi_variant_hooks(const __grid_constant__ flashinfer::DecodeParams p) {
                      flashinfer::decode_kernel<KT>(p);
                    }
                    """
            case "prefill":
                body = """
                    using T = flashinfer::PrefillTraits<half, 64, 1, 64, 32, V>;
                    extern "C" __global__ void __launch_bounds__(T::NUM_THREADS, 2) fi_variant_hooks(const __grid_constant__ flashinfer::PrefillParams p) {
                      flashinfer::single_prefill<T>(p);
                    }
                    """
            default:
                body = """
                    using T = flashinfer::PrefillTraits<half, 64, 1, 64, 32, V>;
                    extern "C" __global__ void __launch_bounds__(T::NUM_THREADS, 2) fi_variant_hooks(const __grid_constant__ flashinfer::BatchPrefillParams p) {
                      flashinfer::batch_prefill<T, true>(p);
                    }
                    """
            }
            return """
                #include <flashinfer/attention/decode.cuh>
                #include <flashinfer/attention/prefill_batch.cuh>
                \(VariantHookTests.variants)
                using V = \(variant);
                \(body)
                """
        }
    }

    /// The bytes of an ELF64 section by name (the kernel's machine code is `.text.<entry>`; the rest
    /// of the image holds line tables that name the variant type, so only the code is compared).
    static func section(_ name: String, of elf: [UInt8]) -> [UInt8]? {
        func u(_ at: Int, _ n: Int) -> Int { (0..<n).reduce(0) { $0 | Int(elf[at + $1]) << (8 * $1) } }
        guard elf.count > 64, elf[0] == 0x7f, elf[4] == 2 else { return nil }
        let shoff = u(0x28, 8), shentsize = u(0x3a, 2), shnum = u(0x3c, 2), shstrndx = u(0x3e, 2)
        let strtab = u(shoff + shstrndx * shentsize + 0x18, 8)
        for i in 0..<shnum {
            let h = shoff + i * shentsize
            var end = strtab + u(h, 4)
            while elf[end] != 0 { end += 1 }
            if String(decoding: elf[(strtab + u(h, 4))..<end], as: UTF8.self) == name {
                let off = u(h + 0x18, 8), size = u(h + 0x20, 8)
                return Array(elf[off..<(off + size)])
            }
        }
        return nil
    }

    @Test(arguments: ["decode", "decode_paged", "prefill", "batch_prefill_paged"])
    func everyFamilyCallsEveryHook(family: String) throws {
        let compiler = try KernelCompiler(architecture: "sm_90a", cache: KernelCache(directory: nil))
        func image(_ v: String) throws -> [UInt8] {
            let cubin = try compiler.compile(Source(variant: v, family: family), useCache: false).cubin
            let text = Self.section(".text.fi_variant_hooks", of: cubin)
            #expect(text != nil && !(text!.isEmpty), "\(family)/\(v): no kernel code in the image")
            return text ?? []
        }
        let plain = try image("Default")
        #expect(try image("NoHook") == plain, "\(family): the control variant should compile to the default's code")
        for hook in ["QueryHook", "OutputHook", "MaskHook"] {
            #expect(try image(hook) != plain, "\(family) ignores \(hook)")
        }
    }
}
