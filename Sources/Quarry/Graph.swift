import Foundation

// The graph IR: named values flow between nodes. A value is a graph input, a parameter, or an
// output of a node; every value has a unique name, and that name is what a caller asks for as a
// feature tap. Nodes are kept in topological order (the builder appends in order; importers sort).

/// A dimension of a graph input: fixed, or named and resolved from the inputs of each run.
public enum Dim: Hashable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    case fixed(Int)
    case symbol(String)
    public init(integerLiteral value: Int) { self = .fixed(value) }
    public var description: String {
        switch self {
        case .fixed(let n): return "\(n)"
        case .symbol(let s): return s
        }
    }
}

public struct GraphInput: Hashable, Sendable {
    public var name: String
    public var shape: [Dim]
    public init(name: String, shape: [Dim]) { self.name = name; self.shape = shape }
}

/// How a parameter is filled when no checkpoint provides it.
public enum ParameterInit: Sendable {
    /// Kaiming normal with gain sqrt(2): std = sqrt(2 / fanIn).
    case he(fanIn: Int)
    /// Xavier uniform: U(±sqrt(6 / (fanIn + fanOut))).
    case xavier(fanIn: Int, fanOut: Int)
    /// Normal with the given standard deviation (GPT-2 / BERT use 0.02).
    case normal(std: Float)
    case constant(Float)

    /// How many values of the seeded generator one parameter value takes (Box–Muller draws two
    /// uniforms; `Float.random(in:using:)` takes one 64-bit value each). materializeParameters
    /// relies on it to start each stretch of values at its place in the sequence.
    var drawsPerValue: UInt64 {
        switch self {
        case .he, .normal: return 2
        case .xavier: return 1
        case .constant: return 0
        }
    }
}

public struct Parameter: Sendable {
    public var shape: [Int]
    public var initializer: ParameterInit
    /// nil until loaded from a checkpoint or materialised from `initializer`. Large configurations
    /// (GPT-3 175B) keep it nil: their graphs are built and counted, never allocated.
    public var value: Tensor?
    /// A buffer is state the graph needs to run but that training does not learn (batch-norm
    /// running mean and variance); like PyTorch's `parameters()`, `parameterCount` leaves it out.
    public var isBuffer: Bool
    public init(shape: [Int], initializer: ParameterInit, value: Tensor? = nil, isBuffer: Bool = false) {
        self.shape = shape; self.initializer = initializer; self.value = value; self.isBuffer = isBuffer
    }
    public var count: Int { shape.reduce(1, *) }
}

public struct Node: Sendable {
    public var name: String
    public var op: Op
    /// Value names consumed, in the order the op defines. An empty string is an absent optional
    /// operand (as ONNX writes it).
    public var inputs: [String]
    /// Value names produced. Most ops produce one, named like the node.
    public var outputs: [String]
    public init(name: String, op: Op, inputs: [String], outputs: [String]) {
        self.name = name; self.op = op; self.inputs = inputs; self.outputs = outputs
    }
}

public struct Graph: Sendable {
    public var inputs: [GraphInput]
    public var nodes: [Node]
    public var parameters: [String: Parameter]
    /// The values returned by default when the caller names none.
    public var outputs: [String]
    /// Set when parameters were filled from `ParameterInit` rather than a checkpoint, so that
    /// everything written from this graph can say its features are untrained.
    public var untrained: Bool = false

    public init(inputs: [GraphInput], nodes: [Node], parameters: [String: Parameter], outputs: [String]) {
        self.inputs = inputs; self.nodes = nodes; self.parameters = parameters; self.outputs = outputs
    }

    /// Learned parameters, buffers excluded (the convention of published counts).
    public var parameterCount: Int { parameters.values.reduce(0) { $1.isBuffer ? $0 : $0 + $1.count } }

    /// Every value name: inputs, parameters and node outputs.
    public var valueNames: Set<String> {
        var s = Set(inputs.map(\.name)).union(parameters.keys)
        for n in nodes { s.formUnion(n.outputs) }
        return s
    }

    /// The node that produces `value`, if any.
    public func producer(of value: String) -> Node? {
        nodes.first { $0.outputs.contains(value) }
    }

    /// Fills every parameter that has no value from its initializer, deterministically from `seed`,
    /// and marks the graph untrained if any was filled.
    ///
    /// The values are those of one generator drawn through the parameters in name order, but the
    /// work is split across the cores: every value takes a fixed number of draws (two for a
    /// Gaussian, one for a uniform, none for a constant), and the generator's state after n draws
    /// is its seed's advanced n steps, so each stretch of values starts from its own place in the
    /// one sequence. (ResNet-50's 25M values took half a second on one core.)
    public mutating func materializeParameters(seed: UInt64 = 0) {
        let names = parameters.keys.sorted().filter { parameters[$0]!.value == nil }
        guard !names.isEmpty else { return }
        let stretch = 1 << 18
        var jobs: [(parameter: Int, values: Range<Int>, draws: UInt64)] = []
        var tensors: [Tensor] = []
        var draws: UInt64 = 0
        for (k, name) in names.enumerated() {
            let p = parameters[name]!
            let t = Tensor(uninitializedShape: p.shape)
            tensors.append(t)
            let each = p.initializer.drawsPerValue
            for start in stride(from: 0, to: t.count, by: stretch) {
                jobs.append((k, start..<min(t.count, start + stretch), draws + UInt64(start) * each))
            }
            draws += UInt64(t.count) * each
        }
        let initializers = names.map { parameters[$0]!.initializer }
        let stretches = jobs
        // Each job writes only its own stretch of one tensor, and the tensors outlive the loop.
        nonisolated(unsafe) let pointers = tensors.map(\.pointer)
        DispatchQueue.concurrentPerform(iterations: stretches.count) { j in
            let job = stretches[j]
            var rng = SeededGenerator(seed: seed)
            rng.advance(by: job.draws)
            Graph.fill(initializers[job.parameter], into: pointers[job.parameter], values: job.values, using: &rng)
        }
        for (k, name) in names.enumerated() { parameters[name]!.value = tensors[k] }
        untrained = true
    }

    /// Writes `values` of a parameter's tensor from its initializer, drawing from `rng` in order.
    static func fill(_ initializer: ParameterInit, into ptr: UnsafeMutablePointer<Float>, values: Range<Int>,
                     using rng: inout SeededGenerator) {
        switch initializer {
        case .constant(let v):
            (ptr + values.lowerBound).initialize(repeating: v, count: values.count)
        case .he(let fanIn):
            let std = (2 / Float(max(fanIn, 1))).squareRoot()
            for i in values { ptr[i] = std * Graph.gaussian(&rng) }
        case .normal(let std):
            for i in values { ptr[i] = std * Graph.gaussian(&rng) }
        case .xavier(let fanIn, let fanOut):
            let a = (6 / Float(max(fanIn + fanOut, 1))).squareRoot()
            for i in values { ptr[i] = Float.random(in: -a..<a, using: &rng) }
        }
    }

    static func gaussian(_ rng: inout SeededGenerator) -> Float {
        // Box–Muller; u1 is kept away from 0 so log stays finite.
        let u1 = Float.random(in: Float.ulpOfOne..<1, using: &rng)
        let u2 = Float.random(in: 0..<1, using: &rng)
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Float.pi * u2)
    }
}

