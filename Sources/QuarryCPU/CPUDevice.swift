// The CPU device: compiles a graph into a list of bound kernels over a planned arena. A plan is
// made per set of input shapes (batch, image size and sequence length may change between runs)
// and cached; packed weights are shared by all plans of a compiled graph.

import Foundation
import Quarry

public final class CPUDevice: Device, @unchecked Sendable {
    public let threads: CPUThreads
    public let info: DeviceInfo

    /// `threads` bounds how many threads kernels use (default: every core).
    public init(threads: Int? = nil) {
        self.threads = CPUThreads(count: threads)
        info = DeviceInfo(
            spec: "cpu", kind: .cpu, name: CPUDevice.modelName(), vendor: "host",
            driverVersion: "Quarry CPU SIMD", computeUnits: self.threads.count,
            globalMemoryBytes: Int(ProcessInfo.processInfo.physicalMemory), localMemoryBytes: 0,
            maxAllocationBytes: Int(ProcessInfo.processInfo.physicalMemory),
            supportsFP16: false, supportsFP64: true)
    }

    static func modelName() -> String {
        if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let colon = line.firstIndex(of: ":") {
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return "CPU"
    }

    public func supports(_ op: Op) -> Bool { CPUKernels.supports(op) }

    public func allocate(byteCount: Int) throws -> DeviceBuffer {
        HostBuffer(count: (byteCount + 3) / 4)
    }

    public func upload(_ tensor: Tensor, to buffer: DeviceBuffer) throws -> DeviceEvent {
        guard let b = buffer as? HostBuffer, b.storage.count >= tensor.count else {
            throw QuarryError.device("cpu: upload of \(tensor.count) floats into a buffer of \(buffer.byteCount) bytes")
        }
        b.storage.pointer.update(from: tensor.pointer, count: tensor.count)
        return CompletedEvent()
    }

    public func download(_ buffer: DeviceBuffer, into tensor: Tensor) throws -> DeviceEvent {
        guard let b = buffer as? HostBuffer, b.storage.count >= tensor.count else {
            throw QuarryError.device("cpu: download of \(tensor.count) floats from a buffer of \(buffer.byteCount) bytes")
        }
        tensor.pointer.update(from: b.storage.pointer, count: tensor.count)
        return CompletedEvent()
    }

    public func compile(_ graph: Graph, outputs: [String]) throws -> CompiledGraph {
        try CPUCompiledGraph(device: self, graph: graph, outputs: outputs.isEmpty ? graph.outputs : outputs)
    }
}

/// Host memory as a device buffer.
public final class HostBuffer: DeviceBuffer {
    public let storage: TensorStorage
    public init(count: Int) { storage = TensorStorage(count: count) }
    public var byteCount: Int { storage.count * 4 }
}

public final class CPUCompiledGraph: CompiledGraph, @unchecked Sendable {
    public let device: Device
    public let graph: Graph
    public let outputs: [String]
    let threads: CPUThreads
    let packCache = PackCache()
    private var plans: [[Int]: Plan] = [:]
    private let lock = NSLock()

    /// One specialisation of the graph to concrete input shapes.
    final class Plan {
        let shapes: [String: [Int]]
        let memory: MemoryPlan
        let steps: [(node: Node, kernel: CPUKernel)]
        let arena: TensorStorage
        init(shapes: [String: [Int]], memory: MemoryPlan, steps: [(Node, CPUKernel)]) {
            self.shapes = shapes; self.memory = memory; self.steps = steps
            arena = TensorStorage(count: memory.arenaCount)
        }
    }

    init(device: CPUDevice, graph source: Graph, outputs: [String]) throws {
        self.device = device
        self.threads = device.threads
        self.outputs = outputs
        for (name, p) in source.parameters where p.value == nil {
            throw QuarryError.invalidArgument(
                "parameter '\(name)' has no value: load a checkpoint or call materializeParameters()")
        }
        graph = try source.optimized(for: outputs, evaluate: CPUKernels.evaluate)
    }

    public func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        // Locked: the scheduler asks while another thread may be running this graph.
        lock.lock()
        defer { lock.unlock() }
        return try plan(for: inputShapes).memory.peakBytes
    }

    func shapeKey(_ inputShapes: [String: [Int]]) -> [Int] {
        graph.inputs.flatMap { (inputShapes[$0.name] ?? []) + [-1] }
    }

    /// The plan for these input shapes, made on first use. Call with the lock held or before sharing.
    func plan(for inputShapes: [String: [Int]]) throws -> Plan {
        let key = shapeKey(inputShapes)
        if let p = plans[key] { return p }
        let shapes = try graph.inferShapes(inputShapes: inputShapes)
        let memory = MemoryPlan(graph: graph, shapes: shapes, keep: Set(outputs))
        var steps: [(Node, CPUKernel)] = []
        for node in graph.nodes where !memory.aliasedNodes.contains(node.name) {
            var constants: [Int: Tensor] = [:]
            for (i, name) in node.inputs.enumerated() {
                if let v = graph.parameters[name]?.value { constants[i] = v }
            }
            let ctx = KernelContext(
                node: node, inputShapes: node.inputs.map { $0.isEmpty ? nil : shapes[$0] },
                outputShapes: node.outputs.map { shapes[$0]! }, constants: constants,
                threads: threads, packCache: packCache)
            steps.append((node, try CPUKernels.make(ctx)))
        }
        let p = Plan(shapes: shapes, memory: memory, steps: steps)
        plans[key] = p
        return p
    }

    public func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        for gi in graph.inputs where inputs[gi.name] == nil {
            throw QuarryError.invalidArgument("missing input '\(gi.name)' (the graph takes \(graph.inputs.map(\.name)))")
        }
        lock.lock()
        defer { lock.unlock() }
        let plan = try self.plan(for: inputs.mapValues(\.shape))
        let arena = plan.arena.pointer
        func pointer(_ name: String) -> UnsafeMutablePointer<Float> {
            switch plan.memory.locations[name]! {
            case .arena(let off): return arena + off
            case .external(let ext):
                if let t = inputs[ext] { return t.pointer }
                return graph.parameters[ext]!.value!.pointer
            }
        }
        for (node, kernel) in plan.steps {
            let ins = node.inputs.map { $0.isEmpty ? nil : UnsafePointer(pointer($0)) }
            let outs = node.outputs.map(pointer)
            if let profiler {
                let t0 = DispatchTime.now().uptimeNanoseconds
                kernel(ins, outs)
                profiler.record(node: node.name, op: node.op.name, seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            } else {
                kernel(ins, outs)
            }
        }
        var result: [String: Tensor] = [:]
        for name in outputs {
            let t = Tensor(uninitializedShape: plan.shapes[name]!)
            t.pointer.update(from: pointer(name), count: t.count)
            result[name] = t
        }
        return result
    }
}

extension CPUKernels {
    /// Runs one node once on the CPU (single-threaded), for constant folding at compile time.
    public static func evaluate(_ node: Node, _ inputs: [Tensor?], _ outputShapes: [[Int]]) throws -> [Tensor] {
        var constants: [Int: Tensor] = [:]
        for (i, t) in inputs.enumerated() { if let t { constants[i] = t } }
        let ctx = KernelContext(node: node, inputShapes: inputs.map { $0?.shape }, outputShapes: outputShapes,
                                constants: constants, threads: CPUThreads(count: 1), packCache: PackCache())
        let kernel = try make(ctx)
        let outputs = outputShapes.map { Tensor(uninitializedShape: $0) }
        kernel(inputs.map { $0.map { UnsafePointer($0.pointer) } }, outputs.map(\.pointer))
        return outputs
    }
}
