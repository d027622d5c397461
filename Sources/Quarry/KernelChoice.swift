// Kernel choice, as pure functions: from a node's attributes, its shapes, the device's
// capabilities and the precision to a kernel variant with its parameters. Both backends read
// them (QuarryCPU/Conv2D.swift, QuarryOpenCL/Conv2D.swift and GEMM.swift) instead of deciding
// inline, so the choice is testable on its own, a tuner can replace the parameters it measures,
// and weights packed for a variant are stored under the variant's key: two variants of one node
// never share a packing made for the other's blocking.

/// What a kernel choice may depend on besides the node.
public struct DeviceCapabilities: Hashable, Sendable {
    public var kind: DeviceKind
    /// CPU threads, or OpenCL compute units.
    public var threads: Int
    /// OpenCL: local memory on chip (a GPU), not emulated in global memory (a CPU device).
    public var dedicatedLocalMemory: Bool
    public var maxWorkGroupSize: Int
    /// CPU GEMM micro-kernel: rows and columns of C per call, and the depth of a packed block.
    public var gemmRows: Int
    public var gemmColumns: Int
    public var gemmDepth: Int
    /// Environment switches (read once) that remove a variant from the choice.
    public var switches: Switches

    public init(kind: DeviceKind, threads: Int, dedicatedLocalMemory: Bool = false, maxWorkGroupSize: Int = 1,
                gemmRows: Int = 12, gemmColumns: Int = 32, gemmDepth: Int = 256, switches: Switches = .current) {
        self.kind = kind; self.threads = threads; self.dedicatedLocalMemory = dedicatedLocalMemory
        self.maxWorkGroupSize = maxWorkGroupSize; self.gemmRows = gemmRows; self.gemmColumns = gemmColumns
        self.gemmDepth = gemmDepth; self.switches = switches
    }
}

/// A kernel and the parameters it is built or packed with.
public struct KernelVariant: Hashable, Sendable, CustomStringConvertible {
    /// "cpu.conv2d.winograd_f4x3", "opencl.gemm.tiled", …
    public var name: String
    public var parameters: [String: Int]
    public init(_ name: String, _ parameters: [String: Int] = [:]) { self.name = name; self.parameters = parameters }

    /// Names the variant and its parameters, for caches of packed weights and tuned programs.
    public var key: String {
        parameters.isEmpty ? name : name + "(" + parameters.keys.sorted().map { "\($0)=\(parameters[$0]!)" }.joined(separator: ",") + ")"
    }
    public var description: String { key }
    public func parameter(_ name: String) -> Int? { parameters[name] }
}

extension Switches: Hashable {
    public static func == (a: Switches, b: Switches) -> Bool {
        a.cpuLanes == b.cpuLanes && a.fuseResidual == b.fuseResidual && a.fuseBlocks == b.fuseBlocks
            && a.winograd == b.winograd && a.openCLGEMM == b.openCLGEMM
    }
    public func hash(into h: inout Hasher) {
        h.combine(cpuLanes); h.combine(fuseResidual); h.combine(fuseBlocks); h.combine(winograd); h.combine(openCLGEMM)
    }
}

/// A convolution as kernels see it: operand shapes and what is known at compile time.
public struct ConvolutionQuery: Hashable, Sendable {
    public var attributes: Conv2DAttributes
    /// x [N, C, H, W], weight [O, C/groups, kh, kw], output [N, O, OH, OW].
    public var input: [Int], weight: [Int], output: [Int]
    /// The weights are parameters (packed once at compile time).
    public var constantWeights: Bool
    /// A fused skip connection (operand 3) is added before the activation.
    public var residual: Bool

    public init(_ attributes: Conv2DAttributes, input: [Int], weight: [Int], output: [Int], constantWeights: Bool, residual: Bool) {
        self.attributes = attributes; self.input = input; self.weight = weight; self.output = output
        self.constantWeights = constantWeights; self.residual = residual
    }

    var groupIn: Int { input[1] / attributes.groups }
    var groupOut: Int { weight[0] / attributes.groups }
    var pixels: Int { output[2] * output[3] }
    var isPointwise: Bool {
        let a = attributes
        return a.kernelH == 1 && a.kernelW == 1 && a.strideH == 1 && a.strideW == 1 && a.padding == .zero
    }
}

public enum KernelChoice {
    /// The convolution kernel for `q` on `device`. OpenCL: `gemm` is the GEMM schedule in force
    /// on the device (tuned or forced), by default the one `openCLGEMM` picks.
    public static func convolution(_ q: ConvolutionQuery, device: DeviceCapabilities, precision: Precision = .fp32,
                                   gemm: KernelVariant? = nil) -> KernelVariant {
        switch device.kind {
        case .opencl: return openCLConvolution(q, device: device, gemm: gemm ?? openCLGEMM(device: device))
        default: return cpuConvolution(q, device: device)
        }
    }

    /// CPU: depthwise planes; a direct kernel for stems with few input channels; Winograd F(4x4, 3x3)
    /// for 3x3 stride-1 layers with enough channels and tiles; 1x1 layers on small planes pixel-major
    /// (the pixels as GEMM rows); everything else a packed GEMM over the column matrix.
    static func cpuConvolution(_ q: ConvolutionQuery, device: DeviceCapabilities) -> KernelVariant {
        let a = q.attributes
        if q.groupIn == 1 && q.groupOut == 1 { return KernelVariant("cpu.conv2d.depthwise") }
        // Few input channels (RGB stems): no column matrix; 8 output channels x 48 outputs a block.
        if !q.residual && a.groups == 1 && q.groupIn <= 4 && q.weight[0] % 8 == 0 && a.dilationH == 1 && a.dilationW == 1
            && a.strideH == a.strideW && (a.strideH == 1 || a.strideH == 2) && q.output[3] >= 16 && q.output[2] > 0
            && a.kernelH <= 11 && a.kernelW <= 11 {
            return KernelVariant("cpu.conv2d.few_channels_direct")
        }
        if usesWinograd(q, device: device) {
            return KernelVariant("cpu.conv2d.winograd_f4x3", ["nr": device.gemmColumns])
        }
        let blocking = ["mr": device.gemmRows, "nr": device.gemmColumns, "kc": device.gemmDepth]
        // 1x1 on planes of at most 64 pixels that leave a partial column panel: the pixels of
        // every image become GEMM rows, the channels the panels.
        if q.isPointwise && q.constantWeights && a.groups == 1 && q.pixels <= 64 && q.pixels % device.gemmColumns != 0
            && q.weight[0] % 16 == 0 {
            return KernelVariant("cpu.conv2d.pointwise_pixel_major", blocking)
        }
        return KernelVariant(q.isPointwise ? "cpu.conv2d.pointwise_gemm" : "cpu.conv2d.im2col_gemm", blocking)
    }

    /// Whether a CPU convolution takes the Winograd path: 3x3, stride and dilation 1, one group,
    /// constant weights, enough channels for the transforms to pay, and enough tiles to fill half a
    /// GEMM panel. Below that the padding eats the gain. Measured on one thread, 512 channels at
    /// 7x7 (4 tiles an image): 16 tiles (batch 4) 10.6 ms against 15.7 with im2col, 8 tiles 9.4
    /// against 7.9; 256 channels at 14x14, 16 tiles: 2.5 against 3.1. QUARRY_WINOGRAD=0 turns it off.
    static func usesWinograd(_ q: ConvolutionQuery, device: DeviceCapabilities) -> Bool {
        let a = q.attributes
        guard device.switches.winograd, a.kernelH == 3, a.kernelW == 3, a.strideH == 1, a.strideW == 1,
              a.dilationH == 1, a.dilationW == 1, a.groups == 1, q.constantWeights, q.input[1] >= 16, q.weight[0] >= 16
        else { return false }
        let tiles = q.input[0] * ((q.output[2] + 3) / 4) * ((q.output[3] + 3) / 4)
        return tiles >= device.gemmColumns / 2
    }

    /// OpenCL: depthwise as its own kernel. With the tiled GEMM (devices with local memory on
    /// chip), every other convolution is an implicit GEMM: the tiles of the column matrix are
    /// gathered from the input as they are loaded, so the column matrix (9x the input for a 3x3
    /// layer) never crosses global memory. With register blocking (CPU devices, whose caches hold
    /// what they gather anyway), 1x1 is a GEMM over the channel-major input and the rest im2col
    /// into scratch then the GEMM.
    static func openCLConvolution(_ q: ConvolutionQuery, device: DeviceCapabilities, gemm: KernelVariant) -> KernelVariant {
        let a = q.attributes
        if a.groups > 1 && a.groups == q.input[1] {
            return KernelVariant("opencl.conv2d.depthwise", ["kh": a.kernelH, "kw": a.kernelW])
        }
        if gemm.name == "opencl.gemm.tiled" { return KernelVariant("opencl.conv2d.implicit_gemm", gemm.parameters) }
        return KernelVariant(q.isPointwise ? "opencl.conv2d.pointwise_gemm" : "opencl.conv2d.im2col_gemm", gemm.parameters)
    }

    /// The OpenCL GEMM schedule: register blocking straight from global memory where local memory
    /// is emulated (a CPU device: local memory only adds copies and barriers), local-memory tiles
    /// where it is on chip and work-groups of 256 fit (a 128 x 128 tile of C a work-group, 8 x 8 a
    /// work-item: 64 accumulators, 16 loads from local memory per 64 FMAs; `quarry tune` measures
    /// the device's best). QUARRY_GEMM=tiled[:LM,LN,WM,WN,TK] or reg:TM,VW,NV overrides.
    public static func openCLGEMM(device: DeviceCapabilities) -> KernelVariant {
        if let forced = device.switches.openCLGEMM.flatMap(parseOpenCLGEMM) { return forced }
        if device.dedicatedLocalMemory && device.maxWorkGroupSize >= 256 { return defaultTiledGEMM }
        return KernelVariant("opencl.gemm.register", ["tm": 8, "vw": 16, "nv": 1])
    }

    public static let defaultTiledGEMM = KernelVariant("opencl.gemm.tiled", ["lm": 16, "ln": 16, "wm": 8, "wn": 8, "tk": 16])

    /// "tiled", "tiled:LM,LN,WM,WN,TK" or "reg:TM,VW,NV" (VW 4, 8 or 16); nil for anything else.
    public static func parseOpenCLGEMM(_ s: String) -> KernelVariant? {
        if s == "tiled" { return defaultTiledGEMM }
        if s.hasPrefix("tiled:") {
            let v = s.dropFirst(6).split(separator: ",").compactMap { Int($0) }
            guard v.count == 5, v.allSatisfy({ $0 > 0 }) else { return nil }
            return KernelVariant("opencl.gemm.tiled", ["lm": v[0], "ln": v[1], "wm": v[2], "wn": v[3], "tk": v[4]])
        }
        guard s.hasPrefix("reg:") else { return nil }
        let v = s.dropFirst(4).split(separator: ",").compactMap { Int($0) }
        guard v.count == 3, v[0] > 0, [4, 8, 16].contains(v[1]), v[2] > 0 else { return nil }
        return KernelVariant("opencl.gemm.register", ["tm": v[0], "vw": v[1], "nv": v[2]])
    }
}
