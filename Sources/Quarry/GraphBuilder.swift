// A builder for graphs in code: the model zoo and tests use it. Names nest with scopes so that a
// block written once gets the reference implementation's dotted names ("layer1.0.conv1").

public struct Value: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }
}

public final class GraphBuilder {
    public private(set) var inputs: [GraphInput] = []
    public private(set) var nodes: [Node] = []
    public private(set) var parameters: [String: Parameter] = [:]
    private var scopes: [String] = []
    private var used: Set<String> = []

    public init() {}

    /// The dotted name of `local` inside the current scopes.
    public func scoped(_ local: String) -> String {
        (scopes + (local.isEmpty ? [] : [local])).joined(separator: ".")
    }

    /// Runs `body` with `name` pushed onto the scope stack.
    @discardableResult
    public func scope<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        scopes.append(name)
        defer { scopes.removeLast() }
        return try body()
    }

    public func input(_ name: String, shape: [Dim]) -> Value {
        inputs.append(GraphInput(name: name, shape: shape))
        used.insert(name)
        return Value(name)
    }

    /// Declares a parameter named `scoped(local)`; its value is filled later (checkpoint or init).
    /// `isBuffer` marks state that is not learned (batch-norm running statistics).
    public func parameter(_ local: String, shape: [Int], initializer: ParameterInit, isBuffer: Bool = false) -> Value {
        let name = scoped(local)
        precondition(!used.contains(name), "duplicate value name '\(name)'")
        used.insert(name)
        parameters[name] = Parameter(shape: shape, initializer: initializer, isBuffer: isBuffer)
        return Value(name)
    }

    /// Declares a parameter with a known value (e.g. a constant table).
    public func constant(_ local: String, _ tensor: Tensor) -> Value {
        let name = scoped(local)
        precondition(!used.contains(name), "duplicate value name '\(name)'")
        used.insert(name)
        parameters[name] = Parameter(shape: tensor.shape, initializer: .constant(0), value: tensor)
        return Value(name)
    }

    /// Appends a node named `scoped(local)`. Its first output is named like the node; further
    /// outputs get ":1", ":2"… suffixes. An absent optional operand is passed as nil.
    @discardableResult
    public func node(_ local: String, _ op: Op, _ inputs: [Value?], outputs: Int = 1) -> [Value] {
        let name = scoped(local)
        precondition(!used.contains(name), "duplicate value name '\(name)'")
        let outs = (0..<outputs).map { $0 == 0 ? name : "\(name):\($0)" }
        used.formUnion(outs)
        nodes.append(Node(name: name, op: op, inputs: inputs.map { $0?.name ?? "" }, outputs: outs))
        return outs.map(Value.init)
    }

    /// Appends a single-output node.
    public func add(_ local: String, _ op: Op, _ inputs: Value?...) -> Value {
        node(local, op, inputs)[0]
    }

    public func build(outputs: [Value]) -> Graph {
        Graph(inputs: inputs, nodes: nodes, parameters: parameters, outputs: outputs.map(\.name))
    }
}
