// swift-tools-version: 6.1
import PackageDescription

// No linked CUDA and no unsafeFlags: libcuda and libnvrtc are dlopen'd at run time
// (Sources/FlashInferCUDA), so this package builds and tests on machines without CUDA.
let package = Package(
    name: "swift-flashinfer",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "FlashInfer", targets: ["FlashInfer"]),
        .executable(name: "flashinfer", targets: ["flashinfer"]),
        // The C ABI (include: Sources/CFlashInferABI/include/flashinfer_swift.h) for C, C++ and Python;
        // build with `-Xswiftc -static-stdlib` for a .so without Swift runtime dependencies.
        .library(name: "flashinfer_swift", type: .dynamic, targets: ["FlashInferC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // dlopen'd CUDA driver + NVRTC: one symbol table, typed errors, device, stream, event, memory.
        .target(name: "FlashInferCUDA"),
        // The kernels' parameter structs, one C header (include/flashinfer/params.h) that Swift
        // imports and NVRTC compiles (embedded by EmbedKernels as flashinfer/params.h).
        .target(name: "CFlashInferParams"),
        // Build-time tool: turns the kernel .cuh files (and params.h) into one generated Swift source.
        .executableTarget(name: "EmbedKernelsTool"),
        .plugin(name: "EmbedKernels", capability: .buildTool(), dependencies: ["EmbedKernelsTool"]),
        // The public module: tensors, dtypes, JIT, CPU reference, attention API.
        .target(
            name: "FlashInfer",
            dependencies: ["FlashInferCUDA", "CFlashInferParams"],
            plugins: ["EmbedKernels"]
        ),
        // The GPU check catalogue (`flashinfer check`), the tolerances and the seeded RNG: used by the
        // CLI and by the tests (which run the cases that have a CPU variant).
        .target(name: "FlashInferTesting", dependencies: ["FlashInfer", "FlashInferCUDA"]),
        .executableTarget(
            name: "flashinfer",
            dependencies: [
                "FlashInfer",
                "FlashInferTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The C ABI: the header (a C target), and its Swift implementation (@_cdecl exports).
        .target(name: "CFlashInferABI"),
        .target(name: "FlashInferC", dependencies: ["FlashInfer", "FlashInferCUDA", "CFlashInferABI"]),
        .testTarget(name: "FlashInferTests", dependencies: ["FlashInfer", "FlashInferCUDA", "FlashInferTesting", "CFlashInferParams", "FlashInferC", "CFlashInferABI"]),
    ],
    swiftLanguageModes: [.v6]
)
