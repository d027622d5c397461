// The Device protocol: what every backend (CPU SIMD, OpenCL) offers the engine and the scheduler.
// A device compiles a graph once (passes, weights uploaded and kept, kernels built) and then runs
// micro-batches of any size through it; a scheduler holds one compiled graph per device and feeds
// each from a shared queue, so everything here must be usable from the scheduler's threads.

import Foundation

public enum DeviceKind: String, Sendable, Codable {
    case cpu, opencl
}

public struct DeviceInfo: Sendable, Codable, Hashable {
    /// How a user selects it: "cpu", "opencl:0"…
    public var spec: String
    public var kind: DeviceKind
    public var name: String
    public var vendor: String
    public var driverVersion: String
    public var computeUnits: Int
    public var globalMemoryBytes: Int
    public var localMemoryBytes: Int
    public var maxAllocationBytes: Int
    public var supportsFP16: Bool
    public var supportsFP64: Bool

    public init(
        spec: String, kind: DeviceKind, name: String, vendor: String, driverVersion: String,
        computeUnits: Int, globalMemoryBytes: Int, localMemoryBytes: Int, maxAllocationBytes: Int,
        supportsFP16: Bool, supportsFP64: Bool
    ) {
        self.spec = spec; self.kind = kind; self.name = name; self.vendor = vendor
        self.driverVersion = driverVersion; self.computeUnits = computeUnits
        self.globalMemoryBytes = globalMemoryBytes; self.localMemoryBytes = localMemoryBytes
        self.maxAllocationBytes = maxAllocationBytes; self.supportsFP16 = supportsFP16
        self.supportsFP64 = supportsFP64
    }
}

/// Memory owned by a device.
public protocol DeviceBuffer: AnyObject {
    var byteCount: Int { get }
}

/// Completion of an asynchronous copy or launch.
public protocol DeviceEvent {
    func wait() throws
}

/// An event that has already completed (synchronous devices return it).
public struct CompletedEvent: DeviceEvent {
    public init() {}
    public func wait() throws {}
}

/// Per-node timings of one run, for `quarry bench`'s per-layer profile.
// @unchecked: `records` changes only under `lock`.
public final class Profiler: @unchecked Sendable {
    public struct Record: Sendable {
        public var node: String
        public var op: String
        public var seconds: Double
    }
    public private(set) var records: [Record] = []
    private let lock = NSLock()
    public init() {}
    public func record(node: String, op: String, seconds: Double) {
        lock.lock(); records.append(Record(node: node, op: op, seconds: seconds)); lock.unlock()
    }
}

/// Arithmetic a run may use. fp32 is exact to the reference bounds; the others trade accuracy for
/// speed where a device has the units for them.
public enum Precision: String, CaseIterable, Sendable, Codable {
    case fp32, tf32, bf16, fp16
}

/// A device's answer to "do you run this node yourself?".
public enum Support: Equatable, Sendable {
    case yes
    /// No, and why (logged when the node falls back to the CPU).
    case no(String)
    public var reason: String? { if case .no(let why) = self { return why } else { return nil } }
}

public protocol Device: AnyObject {
    var info: DeviceInfo { get }
    /// Whether this device runs `op` itself, for some shapes.
    func supports(_ op: Op) -> Bool
    /// Whether this device runs `node` itself at these operand shapes and precision. A plan asks
    /// before lowering: a node answered `.no` runs on the CPU (the compiled graph says which and
    /// why, and logs it once).
    func supports(_ node: Node, inputShapes: [[Int]?], precision: Precision) -> Support
    func allocate(byteCount: Int) throws -> DeviceBuffer
    func upload(_ tensor: Tensor, to buffer: DeviceBuffer) throws -> DeviceEvent
    func download(_ buffer: DeviceBuffer, into tensor: Tensor) throws -> DeviceEvent
    /// Optimises `graph` for producing `outputs` (every node they do not need is dropped) and
    /// prepares it to run. Parameters must have values (load or materialise them first).
    func compile(_ graph: Graph, outputs: [String]) throws -> CompiledGraph
}

public protocol CompiledGraph: AnyObject {
    var device: Device { get }
    /// The optimised graph that runs (after passes).
    var graph: Graph { get }
    var outputs: [String] { get }
    /// Runs one micro-batch. Inputs are named by graph input; dimensions declared symbolic may
    /// differ from run to run. Returns every requested output by name.
    func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor]
    /// Peak bytes of intermediate activations for these input shapes, from the memory plan.
    func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int
}

extension Device {
    /// A device that knows no shape limits: fp32 and whatever `supports(op)` says.
    public func supports(_ node: Node, inputShapes: [[Int]?], precision: Precision) -> Support {
        guard precision == .fp32 else { return .no("\(precision.rawValue) is not available on \(info.spec)") }
        return supports(node.op) ? .yes : .no("\(info.spec) does not run \(node.op.name)")
    }
}

extension CompiledGraph {
    public func run(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
        try run(inputs, profiler: nil)
    }
}
