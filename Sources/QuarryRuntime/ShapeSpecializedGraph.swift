// ONNX import folds shape subgraphs (reshape targets, slices of Shape) for concrete input shapes, so
// an ONNX model is a family of graphs, one per set of input shapes. ShapeSpecializedGraph is that
// family behind one CompiledGraph: the scheduler and the benchmarks see a single graph whatever
// micro-batch sizes they run.

import Foundation
import Quarry
import QuarryCPU

/// A compiled graph that compiles its model anew for every distinct set of input shapes (and keeps
/// each). On a device that overlaps uploads with compute (OpenCL) it submits without waiting, like
/// the graphs it holds, so an ONNX model streams as a zoo model does.
public final class ShapeSpecializedGraph: AsynchronousCompiledGraph, @unchecked Sendable {
    // @unchecked: `compiled` and `latest` are only touched under `lock`; the rest is immutable.
    public let device: Device
    public let outputs: [String]
    private let make: ([String: [Int]]) throws -> Graph
    private var compiled: [String: CompiledGraph] = [:]
    private var latest: CompiledGraph
    private let lock = NSLock()

    /// `example` is compiled at once (it names the graph's values for the caller); `make` gives
    /// the graph for a set of input shapes.
    public init(device: Device, outputs: [String], example: Graph, make: @escaping ([String: [Int]]) throws -> Graph) throws {
        self.device = device
        self.outputs = outputs
        self.make = make
        latest = try device.compile(example, outputs: outputs)
    }

    /// The graph of the shapes run last.
    public var graph: Graph { lock.lock(); defer { lock.unlock() }; return latest.graph }

    /// How many distinct input shapes have been compiled (the example's does not count).
    public var specialisations: Int { lock.lock(); defer { lock.unlock() }; return compiled.count }

    private func specialised(_ shapes: [String: [Int]]) throws -> CompiledGraph {
        let key = shapes.keys.sorted().map { "\($0)=\(shapes[$0]!)" }.joined(separator: ";")
        lock.lock(); defer { lock.unlock() }
        if let c = compiled[key] { latest = c; return c }
        let c = try device.compile(try make(shapes), outputs: outputs)
        // The CPU runs a batch as slices, one per thread, each needing the graph of its shapes.
        (c as? CPUCompiledGraph)?.graphForShapes = make
        compiled[key] = c
        latest = c
        return c
    }

    /// The graph imported for these input shapes, uncompiled (the one a run on them compiles).
    public func graph(for shapes: [String: [Int]]) throws -> Graph { try make(shapes) }

    public func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        try specialised(inputs.mapValues(\.shape)).run(inputs, profiler: profiler)
    }

    public func submit(_ inputs: [String: Tensor]) throws -> PendingRun {
        let graph = try specialised(inputs.mapValues(\.shape))
        if let overlapping = graph as? AsynchronousCompiledGraph { return try overlapping.submit(inputs) }
        return CompletedRun(outputs: try graph.run(inputs))
    }

    public func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        try specialised(inputShapes).peakActivationBytes(inputShapes: inputShapes)
    }
}

/// A run that finished before it was handed back (a device that computes on the calling thread).
struct CompletedRun: PendingRun {
    let outputs: [String: Tensor]
    func wait() throws -> [String: Tensor] { outputs }
}
