// Environment switches that turn an optimisation off (to measure it) or force a kernel schedule,
// read once when the process first asks: a switch changed while running has no effect, and no
// plan or kernel pays for reading the environment. README.md lists them.

import Foundation

public struct Switches: Sendable {
    /// QUARRY_CPU_LANES=0: a CPU batch runs layer by layer across the threads, never as lanes.
    public var cpuLanes: Bool
    /// QUARRY_FUSE_RESIDUAL=0: residual adds stay separate ops (no skip connection in a
    /// convolution's epilogue), on every backend.
    public var fuseResidual: Bool
    /// QUARRY_FUSE_BLOCKS=0: the CPU runs MobileNet-style 1x1 -> depthwise -> 1x1 chains layer by layer.
    public var fuseBlocks: Bool
    /// QUARRY_WINOGRAD=0: 3x3 convolutions on the CPU without Winograd.
    public var winograd: Bool
    /// QUARRY_GEMM: the OpenCL GEMM schedule, "tiled" or "reg:TM,VW,NV" (default: by device).
    public var openCLGEMM: String?

    public init(environment: [String: String]) {
        cpuLanes = environment["QUARRY_CPU_LANES"] != "0"
        fuseResidual = environment["QUARRY_FUSE_RESIDUAL"] != "0"
        fuseBlocks = environment["QUARRY_FUSE_BLOCKS"] != "0"
        winograd = environment["QUARRY_WINOGRAD"] != "0"
        openCLGEMM = environment["QUARRY_GEMM"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The process's switches, read from its environment once.
    public static let current = Switches(environment: ProcessInfo.processInfo.environment)
}
