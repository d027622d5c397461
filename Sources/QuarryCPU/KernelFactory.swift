// Binding a node to a CPU kernel. At compile time each node gets a closure with its concrete shapes
// and its weights already packed in the layout its kernel wants; running a plan is then just
// calling the closures in order over the memory plan's buffers, with no allocation.

import Quarry

/// Runs one node: `inputs` in the node's operand order (nil for an absent optional operand),
/// `outputs` in the node's output order. Buffers are dense, row-major, and never alias.
public typealias CPUKernel = (_ inputs: [UnsafePointer<Float>?], _ outputs: [UnsafeMutablePointer<Float>]) -> Void

/// Everything a kernel factory may use to bind a node.
public struct KernelContext {
    public let node: Node
    /// Shapes of the operands (nil for absent optional operands).
    public let inputShapes: [[Int]?]
    public let outputShapes: [[Int]]
    /// Values of operands that are parameters (weights, biases, statistics), by operand index.
    /// A kernel that packs weights does it once here, not in the closure.
    public let constants: [Int: Tensor]
    public let threads: CPUThreads
    /// Per-compiled-graph storage for packed weights, keyed by node name, so that plans for new
    /// input shapes reuse packing done for earlier ones.
    public let packCache: PackCache

    public init(node: Node, inputShapes: [[Int]?], outputShapes: [[Int]], constants: [Int: Tensor],
                threads: CPUThreads, packCache: PackCache) {
        self.node = node; self.inputShapes = inputShapes; self.outputShapes = outputShapes
        self.constants = constants; self.threads = threads; self.packCache = packCache
    }

    /// The shape of operand `i`, which shape inference has already checked.
    public func shape(_ i: Int) -> [Int] { inputShapes[i]! }
    public func hasInput(_ i: Int) -> Bool { i < inputShapes.count && inputShapes[i] != nil }
}

/// Keeps packed weights alive for the life of a compiled graph.
// @unchecked: used only while its compiled graph's lock is held (plans are made under it).
public final class PackCache: @unchecked Sendable {
    private var storage: [String: AnyObject] = [:]
    public init() {}
    public func value<T: AnyObject>(_ key: String, _ make: () throws -> T) rethrows -> T {
        if let v = storage[key] as? T { return v }
        let v = try make()
        storage[key] = v
        return v
    }
}

public enum CPUKernels {
    /// What the CPU's kernel choice depends on: the threads and the GEMM micro-kernel's blocking.
    public static func capabilities(threads: CPUThreads) -> DeviceCapabilities {
        DeviceCapabilities(kind: .cpu, threads: threads.count, gemmRows: GEMMBlocking.mr, gemmColumns: GEMMBlocking.nr,
                           gemmDepth: GEMMBlocking.kc)
    }

    /// The ops the CPU backend runs: all of them (it is the reference backend).
    public static func supports(_ op: Op) -> Bool {
        switch op {
        case .input, .constant: return false
        default: return true
        }
    }

    public static func make(_ ctx: KernelContext) throws -> CPUKernel {
        switch ctx.node.op {
        case .input, .constant:
            throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not a computing node")
        case .conv2d: return try makeConv2D(ctx)
        case .convTranspose2d: return try makeConvTranspose2D(ctx)
        case .dense: return try makeDense(ctx)
        case .matmul: return try makeMatMul(ctx)
        case .maxPool2d, .avgPool2d, .globalAvgPool, .globalMaxPool: return try makePool(ctx)
        case .batchNorm, .layerNorm, .instanceNorm: return try makeNorm(ctx)
        case .softmax, .logSoftmax: return try makeSoftmax(ctx)
        case .attention: return try makeAttention(ctx)
        case .lstm: return try makeLSTM(ctx)
        case .gru: return try makeGRU(ctx)
        case .embedding: return try makeEmbedding(ctx)
        case .activation: return try makeActivation(ctx)
        case .binary: return try makeBinary(ctx)
        case .select: return try makeSelect(ctx)
        case .reduce: return try makeReduce(ctx)
        case .argExtreme, .topK, .cumSum: return try makeAlongAxis(ctx)
        case .gather, .gatherElements, .gatherND, .scatterND: return try makeIndexing(ctx)
        case .concat, .split, .slice, .pad, .transpose, .reshape, .flatten, .identity:
            return try makeLayout(ctx)
        case .upsample: return try makeUpsample(ctx)
        case .expandDepthwiseProject: return try makeExpandDepthwiseProject(ctx)
        }
    }
}
