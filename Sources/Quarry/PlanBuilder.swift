// The one plan builder every backend compiles through. What does not depend on the backend is
// declared here once: the parameter and input checks, the graph optimisation for the requested
// outputs, the key that tells input shapes apart, and the pipeline of passes that need concrete
// shapes. A backend names the extra passes it wants (the CPU its fused inverted-residual blocks)
// and lowers the planned nodes its own way.

import Foundation

/// A graph pass that needs concrete shapes, run when a plan is made for a set of input shapes.
public struct PlanPass: Sendable {
    public let name: String
    let transform: @Sendable (_ graph: Graph, _ keep: Set<String>, _ shapes: [String: [Int]]) -> Graph

    public init(name: String, _ transform: @escaping @Sendable (Graph, Set<String>, [String: [Int]]) -> Graph) {
        self.name = name
        self.transform = transform
    }

    /// Transpose chains that leave elements in order become reshape aliases.
    public static let foldingTransposes = PlanPass(name: "folding_transposes") { g, keep, shapes in
        g.foldingTransposes(keeping: keep, shapes: shapes)
    }
    /// `add(conv(x), r)` becomes `conv(x, residual: r)` (QUARRY_FUSE_RESIDUAL=0 turns it off).
    public static let fusingResidualAdds = PlanPass(name: "fusing_residual_adds") { g, keep, shapes in
        Switches.current.fuseResidual ? g.fusingResidualAdds(keeping: keep, shapes: shapes) : g
    }

    /// Every backend runs these, in this order, before its own.
    public static let common: [PlanPass] = [.foldingTransposes, .fusingResidualAdds]
}

/// One node of a plan with what lowering it needs: operand and result shapes, and the values of
/// operands that are parameters (so weights are packed once, at compile time).
public struct PlannedNode {
    public let node: Node
    public let inputShapes: [[Int]?]
    public let outputShapes: [[Int]]
    public let constants: [Int: Tensor]
}

/// A graph specialised to concrete input shapes: the graph after the plan passes, every value's
/// shape, where every value lives, and the nodes to run (layout ops the memory plan turned into
/// aliases are left out).
public struct PlannedGraph {
    public let graph: Graph
    public let shapes: [String: [Int]]
    public let memory: MemoryPlan
    public let nodes: [PlannedNode]
}

public struct PlanBuilder: Sendable {
    /// The graph optimised for `outputs` (pruned, constants folded, batch norm and activations fused).
    public let graph: Graph
    public let outputs: [String]
    /// The plan passes: `PlanPass.common`, then the backend's own.
    public let passes: [PlanPass]

    /// Checks that every parameter has a value and optimises `source` for `outputs` (its own
    /// outputs when empty). `evaluate` folds constant subgraphs; `backendPasses` follow the common ones.
    public init(_ source: Graph, outputs: [String], backendPasses: [PlanPass] = [], evaluate: NodeEvaluator?) throws {
        for name in source.parameters.keys.sorted() where source.parameters[name]!.value == nil {
            throw QuarryError.invalidArgument(
                "parameter '\(name)' has no value: load a checkpoint or call materializeParameters()")
        }
        self.outputs = outputs.isEmpty ? source.outputs : outputs
        graph = try source.optimized(for: self.outputs, evaluate: evaluate)
        passes = PlanPass.common + backendPasses
    }

    /// Names of the plan passes, in order (for logs and tests).
    public var passNames: [String] { passes.map(\.name) }

    /// Tells input shapes apart: plans are cached under it.
    public func shapeKey(_ inputShapes: [String: [Int]]) -> [Int] {
        graph.inputs.flatMap { (inputShapes[$0.name] ?? []) + [-1] }
    }

    /// Throws, naming it, for a graph input that `inputs` lacks.
    public func checkInputs(_ inputs: [String: Tensor]) throws {
        for gi in graph.inputs where inputs[gi.name] == nil {
            throw QuarryError.invalidArgument("missing input '\(gi.name)' (the graph takes \(graph.inputs.map(\.name)))")
        }
    }

    /// The plan of `graph` (default: the builder's; a CPU lane passes the graph imported for
    /// its slice's shapes) for these input shapes.
    public func plan(_ inputShapes: [String: [Int]], graph source: Graph? = nil) throws -> PlannedGraph {
        var g = source ?? graph
        let shapes = try g.inferShapes(inputShapes: inputShapes)
        let keep = Set(outputs)
        for pass in passes { g = pass.transform(g, keep, shapes) }
        let memory = MemoryPlan(graph: g, shapes: shapes, keep: keep)
        var nodes: [PlannedNode] = []
        for node in g.nodes where !memory.aliasedNodes.contains(node.name) {
            var constants: [Int: Tensor] = [:]
            for (i, name) in node.inputs.enumerated() {
                if let v = g.parameters[name]?.value { constants[i] = v }
            }
            let outputShapes = try node.outputs.map { name -> [Int] in
                guard let s = shapes[name] else { throw QuarryError.unknownValue(name) }
                return s
            }
            nodes.append(PlannedNode(node: node, inputShapes: node.inputs.map { $0.isEmpty ? nil : shapes[$0] },
                                     outputShapes: outputShapes, constants: constants))
        }
        return PlannedGraph(graph: g, shapes: shapes, memory: memory, nodes: nodes)
    }
}
