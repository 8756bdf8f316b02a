import Foundation
import PackagePlugin

/// Embeds every kernel source (`.cuh` and `.h`) into one generated Swift file, so the library (and
/// a static binary) carries its kernels with it. Two roots, each file named by its path below its
/// root (the name the kernels `#include` and NVRTC is given):
///   - `Sources/FlashInferKernels`: the kernel headers (`flashinfer/attention/decode.cuh`, ...);
///   - `Sources/CFlashInferParams/include`: the parameter structs' C header, which Swift imports
///     too (`flashinfer/params.h`).
@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let roots = ["Sources/FlashInferKernels", "Sources/CFlashInferParams/include"]
            .map { context.package.directoryURL.appending(path: $0) }
        var inputs: [URL] = []
        for root in roots {
            if let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) {
                for case let url as URL in e where ["cuh", "h"].contains(url.pathExtension) {
                    inputs.append(url)
                }
            }
        }
        inputs.sort { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernels.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) kernel sources",
                executable: try context.tool(named: "EmbedKernelsTool").url,
                arguments: [output.path] + roots.map(\.path) + ["--"] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
