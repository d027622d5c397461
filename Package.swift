// swift-tools-version: 6.0
// Quarry: fast deep-learning feature extraction. The library targets carry no unsafe flags so that
// other packages can depend on them; build the tool with the host's vector width as README.md says.
import PackageDescription

let package = Package(
    name: "Quarry",
    products: [
        .library(name: "Quarry", targets: ["Quarry", "QuarryCPU", "QuarryOpenCL", "QuarryModels", "QuarryFormats", "QuarryRuntime", "QuarryConformance"]),
        .executable(name: "quarry", targets: ["quarry"]),
        // The C ABI of include/quarry.h as a shared library. SwiftPM names the file after the
        // product (libQuarryC.so: "quarry" is the tool's product name); scripts/build-libquarry.sh
        // and the Python package's build install it as libquarry.so.
        .library(name: "QuarryC", type: .dynamic, targets: ["QuarryC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
    ],
    targets: [
        // Tensors, the graph IR, shape inference, passes, the memory plan and the Device protocol.
        .target(name: "Quarry"),
        // The CPU SIMD backend: packed GEMM, convolutions and every other op, multithreaded.
        .target(name: "QuarryCPU", dependencies: ["Quarry", "CCPUHints", "CQuarryKernels"]),
        // The hottest loops in C, one instance per x86-64 level (AVX-512, AVX2 + FMA, baseline)
        // through per-function target attributes, chosen at run time: no compiler flags needed.
        .target(name: "CQuarryKernels"),
        // What Swift has no spelling for: software prefetch, vector shuffles, thread affinity.
        .target(name: "CCPUHints"),
        // OpenCL 1.2 headers and the ICD loader (Debian: ocl-icd-opencl-dev, opencl-headers).
        .systemLibrary(
            name: "COpenCL", pkgConfig: "OpenCL",
            providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]),
        // The OpenCL backend: devices, program cache, one lowering per op family (Kernels/*.cl).
        .target(
            name: "QuarryOpenCL", dependencies: ["Quarry", "QuarryCPU", "COpenCL"],
            plugins: ["EmbedKernels"]),
        // Build-time embedding of Kernels/*.cl into QuarryOpenCL (a generated Swift source).
        .executableTarget(name: "EmbedKernelsTool", path: "Plugins/EmbedKernelsTool"),
        .plugin(
            name: "EmbedKernels", capability: .buildTool(), dependencies: ["EmbedKernelsTool"],
            path: "Plugins/EmbedKernels"),
        // The model zoo: one builder a family, parameter names equal to checkpoint keys.
        .target(name: "QuarryModels", dependencies: ["Quarry"]),
        // JPEG, PNG and WebP decoding (libjpeg-turbo, libpng, libwebp), in C for the longjmp error handling.
        .target(
            name: "CImageCodecs",
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png"), .linkedLibrary("webp")]),
        // ONNX import, safetensors, .npy / .npz, image decoding and preprocessing.
        .target(
            name: "QuarryFormats",
            dependencies: ["Quarry", "CImageCodecs", "CQuarryKernels", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // What the tool does, as a library: open a model, resolve devices, run, extract (with
        // preprocessing, resumable chunks and manifests). The tool and the C ABI are thin over it.
        .target(
            name: "QuarryRuntime",
            dependencies: ["Quarry", "QuarryCPU", "QuarryOpenCL", "QuarryModels", "QuarryFormats"]),
        // The op conformance suite: every op's cases, float64 references, per-op bounds and the
        // runner that the test target and `quarry test-ops` share.
        .target(name: "QuarryConformance", dependencies: ["Quarry", "QuarryCPU", "QuarryOpenCL"]),
        // include/quarry.h as a Swift-visible module, for QuarryC's types.
        .systemLibrary(name: "CQuarryABI", path: "Sources/CQuarryABI"),
        // The C ABI: @_cdecl functions thin over QuarryRuntime, built as libquarry.so. Swift 5
        // mode for now: it keeps C strings in globals (unsafe pointers, not Sendable to Swift 6).
        .target(
            name: "QuarryC",
            dependencies: ["CQuarryABI", "Quarry", "QuarryCPU", "QuarryFormats", "QuarryModels", "QuarryRuntime"],
            swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(
            name: "quarry",
            dependencies: [
                "Quarry", "QuarryCPU", "QuarryOpenCL", "QuarryModels", "QuarryFormats", "QuarryRuntime", "QuarryConformance",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Compute benchmarks of the CPU backend alone (bench/gemm_vs_openblas.sh).
        .executableTarget(name: "quarry-bench", dependencies: ["Quarry", "QuarryCPU"]),
        // Random inputs and float64 comparison shared by the kernel tests.
        .target(name: "QuarryTestSupport", dependencies: ["Quarry"], path: "Tests/QuarryTestSupport"),
        .testTarget(name: "QuarryTests", dependencies: ["Quarry", "QuarryCPU"]),
        .testTarget(name: "QuarryCPUTests", dependencies: ["Quarry", "QuarryCPU", "QuarryTestSupport"]),
        .testTarget(name: "QuarryOpenCLTests", dependencies: ["Quarry", "QuarryCPU", "QuarryOpenCL", "QuarryTestSupport"]),
        .testTarget(name: "QuarryModelsTests", dependencies: ["Quarry", "QuarryCPU", "QuarryModels", "QuarryOpenCL"]),
        // Runs the built `quarry` tool as a user would (exit statuses, files written, resume).
        .testTarget(name: "QuarryCLITests", dependencies: ["quarry", "Quarry", "QuarryCPU", "QuarryModels", "QuarryFormats", "QuarryTestSupport"]),
        .testTarget(name: "QuarryRuntimeTests", dependencies: ["QuarryRuntime", "Quarry", "QuarryCPU", "QuarryOpenCL", "QuarryModels", "QuarryFormats", "QuarryTestSupport"]),
        .testTarget(name: "QuarryConformanceTests", dependencies: ["QuarryConformance", "Quarry", "QuarryCPU", "QuarryOpenCL"]),
        .testTarget(name: "QuarryFormatsTests", dependencies: ["Quarry", "QuarryCPU", "QuarryOpenCL", "QuarryFormats", "QuarryModels", "CImageCodecs"], resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v6]
)
