// swift-tools-version: 6.0
// Quarry: fast deep-learning feature extraction. The library targets carry no unsafe flags so that
// other packages can depend on them; build the tool with the host's vector width as README.md says.
import PackageDescription

let package = Package(
    name: "Quarry",
    products: [
        .library(name: "Quarry", targets: ["Quarry", "QuarryCPU"]),
        .executable(name: "quarry", targets: ["quarry"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Tensors, the graph IR, shape inference, passes, the memory plan and the Device protocol.
        .target(name: "Quarry"),
        // The CPU SIMD backend: packed GEMM, convolutions and every other op, multithreaded.
        .target(name: "QuarryCPU", dependencies: ["Quarry"]),
        .executableTarget(
            name: "quarry",
            dependencies: [
                "Quarry", "QuarryCPU",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "QuarryTests", dependencies: ["Quarry", "QuarryCPU"]),
        .testTarget(name: "QuarryCPUTests", dependencies: ["Quarry", "QuarryCPU"]),
    ],
    swiftLanguageModes: [.v5]
)
