// The import of one ONNX graph at concrete input shapes. Each ONNX tensor becomes either a runtime
// value of the Quarry graph (a graph input or a node output, float32) or a host constant
// (initializers, Constant nodes and whatever is computed only from them and from shapes). Nodes
// whose inputs are all constant are folded on the host; the others are lowered to Quarry ops by the
// table in OnnxOps.swift. A node that cannot be lowered is recorded and the import goes on, so the
// final error lists every unsupported node, not just the first.

import Foundation
import Quarry

final class OnnxImporter {
    enum Val {
        /// A value of the Quarry graph with its concrete shape; `integer` marks values that hold
        /// integers (token ids), which the float32 runtime carries exactly up to 2^24.
        case runtime(name: String, shape: [Int], integer: Bool)
        case constant(HostTensor)
    }

    struct Unsupported: Error { let reason: String }

    let model: OnnxModel
    var values: [String: Val] = [:]
    var nodes: [Node] = []
    var parameters: [String: Parameter] = [:]
    var usedNames: Set<String> = []
    var usedNodeNames: Set<String> = []
    /// Parameters made from constants, by source tensor name and transform, so each is made once.
    var materialized: [String: String] = [:]
    var consumed: Set<String> = []

    init(model: OnnxModel) { self.model = model }

    /// Values larger than this are refused at import: only a corrupt or hostile file asks for them.
    static let maxRuntimeElements = 1 << 34
    /// Integer attributes and shape constants are clamped to this magnitude so that no size
    /// arithmetic can overflow; ONNX's "to the end" (INT64_MAX) still means the end.
    static let maxAttributeMagnitude = 1 << 31

    func importGraph(inputShapes: [String: [Int]], values given: [String: Tensor] = [:]) throws -> Graph {
        var graphInputs: [GraphInput] = []
        for input in model.inputs {
            guard let s = inputShapes[input.name] else {
                throw QuarryError.invalidArgument("\(model.path): no shape given for input '\(input.name)' \(input.shape)")
            }
            guard s.count == input.shape.count else {
                throw QuarryError.invalidArgument("\(model.path): input '\(input.name)' has rank \(input.shape.count) \(input.shape), got shape \(s)")
            }
            var bound: [String: Int] = [:]
            for (d, (decl, actual)) in zip(input.shape, s).enumerated() {
                guard actual >= 0 else { throw QuarryError.invalidArgument("input '\(input.name)': negative dimension in \(s)") }
                switch decl {
                case .fixed(let n) where n != actual:
                    throw QuarryError.invalidArgument("\(model.path): input '\(input.name)' dimension \(d) must be \(n), got \(actual)")
                case .symbol(let sym):
                    if let b = bound[sym], b != actual {
                        throw QuarryError.invalidArgument("\(model.path): input '\(input.name)' dimension '\(sym)' is both \(b) and \(actual)")
                    }
                    bound[sym] = actual
                default: break
                }
            }
            usedNames.insert(input.name)
            if let t = given[input.name] {
                // A value input (a Reshape target, Resize scales, …) is folded as a constant.
                guard t.shape == s else { throw QuarryError.invalidArgument("\(model.path): input '\(input.name)' value has shape \(t.shape), not \(s)") }
                let integer = model.integerInputs.contains(input.name)
                values[input.name] = .constant(HostTensor(doubles: t.scalars.map(Double.init), shape: s, kind: integer ? .int : .float))
                continue
            }
            values[input.name] = .runtime(name: input.name, shape: s, integer: model.integerInputs.contains(input.name))
            graphInputs.append(GraphInput(name: input.name, shape: s.map { .fixed($0) }))
        }
        for (name, t) in model.initializers { values[name] = .constant(t) }
        usedNames.formUnion(model.tensorNames)
        for n in model.nodes { consumed.formUnion(n.input) }
        consumed.formUnion(model.outputs)

        var unsupported: [String] = []
        var poisoned = Set<String>()
        try importNodes(model.nodes, scope: "", unsupported: &unsupported, poisoned: &poisoned)
        if !unsupported.isEmpty {
            throw QuarryError.unsupported("\(model.path): \(unsupported.count) node(s) cannot be imported:\n  " + unsupported.joined(separator: "\n  "))
        }
        // Outputs that folded to constants still have to be values of the graph.
        for o in model.outputs { _ = try runtimeName(o, as: o) }
        let graph = Graph(inputs: graphInputs, nodes: nodes, parameters: parameters, outputs: model.outputs)
        // Shapes the import folded into constants (Shape, Size feeding Reshape targets, Slice
        // bounds, …) must be the shapes the graph computes: checked against the whole graph's
        // shape inference, so a disagreement is an error naming the node, not a wrong answer.
        let runShapes = Dictionary(uniqueKeysWithValues: graphInputs.map { i in (i.name, inputShapes[i.name]!) })
        do {
            try OnnxImporter.checkFoldedShapes(foldedShapes, against: try graph.inferShapes(inputShapes: runShapes))
        } catch let e as QuarryError {
            throw QuarryError.file(path: model.path, message: e.description)
        }
        return graph
    }

    /// Imports `protos` (in order) into the graph; unsupported nodes are listed, and what depends
    /// on them is skipped. `scope` prefixes the made-up names of unnamed nodes inside an If branch.
    func importNodes(_ protos: [Onnx_NodeProto], scope: String, unsupported: inout [String], poisoned: inout Set<String>) throws {
        for (index, proto) in protos.enumerated() {
            // Registered as a node name only when a handler emits it (emit makes names unique).
            let nodeName = proto.name.isEmpty ? "\(scope)\(proto.opType)_\(index)" : proto.name
            let opLabel = proto.domain.isEmpty || proto.domain == "ai.onnx" ? proto.opType : "\(proto.domain).\(proto.opType)"
            let standard = proto.domain.isEmpty || proto.domain == "ai.onnx"
            guard standard, OnnxImporter.handlers[proto.opType] != nil || proto.opType == "If" else {
                unsupported.append("\(nodeName) (\(opLabel)): operator not supported")
                poisoned.formUnion(proto.output)
                continue
            }
            if proto.input.contains(where: { poisoned.contains($0) }) {
                poisoned.formUnion(proto.output)
                continue
            }
            if proto.opType == "If" {
                do {
                    try importIf(proto, name: nodeName, unsupported: &unsupported, poisoned: &poisoned)
                } catch let u as Unsupported {
                    unsupported.append("\(nodeName) (If): \(u.reason)")
                    poisoned.formUnion(proto.output)
                } catch let e as QuarryError {
                    throw QuarryError.file(path: model.path, message: "node '\(nodeName)' (If): \(e.description)")
                }
                continue
            }
            // A node that fails part-way may leave parameters or nodes behind; that is harmless
            // because any unsupported node fails the whole import.
            var ctx = NodeContext(importer: self, proto: proto, name: nodeName)
            do {
                try ctx.run()
                try ctx.checkAttributesUsed()
                for o in proto.output where !o.isEmpty && values[o] == nil {
                    if consumed.contains(o) { throw Unsupported(reason: "output '\(o)' is not produced by the import") }
                }
            } catch let u as Unsupported {
                unsupported.append("\(nodeName) (\(opLabel)): \(u.reason)")
                poisoned.formUnion(proto.output)
            } catch let e as QuarryError {
                // A shape error names its node already: name it once.
                var detail = e.description
                if case .shapeMismatch(let node, let message) = e, node == nodeName { detail = message }
                throw QuarryError.file(path: model.path, message: "node '\(nodeName)' (\(opLabel)): \(detail)")
            }
        }
    }

    /// An If. When its condition folded to a constant (an initializer, or computed from shapes),
    /// only the taken branch is imported, its nodes in the outer graph (outer-scope names resolve
    /// as they are), its outputs becoming the If's. When the condition is known only at run time,
    /// both branches are imported and each output selects between them (a select node reads only
    /// the chosen operand, so a NaN or infinity the other branch makes does not leak); the two
    /// branches' outputs must then have equal shapes, since a Quarry value has one shape.
    func importIf(_ proto: Onnx_NodeProto, name: String, unsupported: inout [String], poisoned: inout Set<String>) throws {
        guard proto.input.count == 1, !proto.input[0].isEmpty else { throw Unsupported(reason: "an If needs exactly one condition input") }
        let condName = proto.input[0]
        let attrs = Dictionary(proto.attribute.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let unknown = Set(attrs.keys).subtracting(["then_branch", "else_branch"]).sorted()
        guard unknown.isEmpty else { throw Unsupported(reason: "attribute(s) \(unknown.joined(separator: ", ")) not supported") }
        var ctx = NodeContext(importer: self, proto: proto, name: name)
        switch values[condName] {
        case .constant(let cond)?:
            guard cond.count == 1 else { throw Unsupported(reason: "condition '\(condName)' has \(cond.count) elements, not one") }
            let key = cond.doubles[0] != 0 ? "then_branch" : "else_branch"
            let outs = try importBranch(key, of: proto, attrs: attrs, name: name, unsupported: &unsupported, poisoned: &poisoned)
            for (i, out) in proto.output.enumerated() where !out.isEmpty {
                guard let b = outs[i] else { poisoned.insert(out); continue }
                switch values[b]! {
                case .constant(let t): values[out] = .constant(t)
                case .runtime(let n, _, let integer): try ctx.alias(n, output: i, integer: integer)
                }
            }
        case .runtime(let condValue, let condShape, _)?:
            let count = condShape.reduce(1, *)
            guard count == 1 else { throw Unsupported(reason: "condition '\(condName)' has \(count) elements (shape \(condShape)), not one") }
            let thenOuts = try importBranch("then_branch", of: proto, attrs: attrs, name: name, unsupported: &unsupported, poisoned: &poisoned)
            let elseOuts = try importBranch("else_branch", of: proto, attrs: attrs, name: name, unsupported: &unsupported, poisoned: &poisoned)
            // A scalar condition broadcasts against an output of any rank, a rank-0 one included.
            let cond = condShape.isEmpty ? condValue : try ctx.emitInternal(.reshape(shape: []), [condValue], "condition").name
            for (i, out) in proto.output.enumerated() where !out.isEmpty {
                guard let t = thenOuts[i], let e = elseOuts[i] else { poisoned.insert(out); continue }
                let (ts, ti) = shapeAndKind(of: values[t]!), (es, ei) = shapeAndKind(of: values[e]!)
                guard ts == es else {
                    throw Unsupported(reason: "condition '\(condName)' is known only at run time and output \(i) ('\(out)') has shape \(ts) from then_branch but \(es) from else_branch; both branches run, so their shapes must agree")
                }
                try ctx.emit(.select, [cond, try runtimeName(t), try runtimeName(e)], output: i, integer: ti && ei)
            }
        case nil:
            throw Unsupported(reason: "condition '\(condName)' is not defined")
        }
    }

    private func shapeAndKind(of v: Val) -> ([Int], Bool) {
        switch v {
        case .runtime(_, let shape, let integer): return (shape, integer)
        case .constant(let t): return (t.shape, t.isInteger)
        }
    }

    /// Imports one branch graph of an If into the outer graph and returns, per If output, the
    /// ONNX name that holds the branch's value (nil where the branch could not be imported).
    /// Names the branch defines that an earlier import already holds (the other branch of the
    /// same If may reuse its internal names) are renamed for this import.
    private func importBranch(_ key: String, of proto: Onnx_NodeProto, attrs: [String: Onnx_AttributeProto], name: String,
                              unsupported: inout [String], poisoned: inout Set<String>) throws -> [String?] {
        guard let attr = attrs[key], attr.hasG else { throw Unsupported(reason: "no \(key) graph") }
        var branch = attr.g
        guard branch.output.count == proto.output.count else {
            throw Unsupported(reason: "\(key) has \(branch.output.count) outputs, the If \(proto.output.count)")
        }
        if !branch.sparseInitializer.isEmpty { throw Unsupported(reason: "sparse initializers in \(key)") }
        let defined = Set(branch.initializer.map(\.name)).union(branch.node.flatMap(\.output).filter { !$0.isEmpty })
        let taken = defined.filter { values[$0] != nil || poisoned.contains($0) }
        if !taken.isEmpty {
            var renamed: [String: String] = [:]
            for n in taken.sorted() { renamed[n] = uniqueValueName("\(n)/\(key)") }
            for k in branch.node.indices {
                if !OnnxModel.outerReferences(of: branch.node[k]).isDisjoint(with: taken) {
                    throw Unsupported(reason: "a subgraph inside \(key) reads '\(OnnxModel.outerReferences(of: branch.node[k]).intersection(taken).sorted()[0])', a name the other branch also defines")
                }
                branch.node[k].input = branch.node[k].input.map { renamed[$0] ?? $0 }
                branch.node[k].output = branch.node[k].output.map { renamed[$0] ?? $0 }
            }
            for k in branch.initializer.indices { branch.initializer[k].name = renamed[branch.initializer[k].name] ?? branch.initializer[k].name }
            for k in branch.output.indices { branch.output[k].name = renamed[branch.output[k].name] ?? branch.output[k].name }
        }
        let baseDir = URL(fileURLWithPath: model.path).deletingLastPathComponent().path
        for t in branch.initializer {
            values[t.name] = .constant(try OnnxModel.hostTensor(t, baseDirectory: baseDir, modelPath: model.path))
            usedNames.insert(t.name)
        }
        for n in branch.node {
            consumed.formUnion(n.input)
            consumed.formUnion(OnnxModel.outerReferences(of: n))
            usedNames.formUnion(n.output.filter { !$0.isEmpty })
        }
        consumed.formUnion(branch.output.map(\.name))
        let ordered = try OnnxModel.sorted(branch.node, defined: Set(values.keys).union(poisoned), path: model.path)
        try importNodes(ordered, scope: "\(name)/\(key)/", unsupported: &unsupported, poisoned: &poisoned)
        return try branch.output.map { o in
            if poisoned.contains(o.name) { return nil }
            guard values[o.name] != nil else { throw Unsupported(reason: "\(key) output '\(o.name)' is not produced by the import") }
            return o.name
        }
    }

    /// A shape folded at import: the node that read it, the Quarry value and the shape it had.
    struct FoldedShape { let node: String; let value: String; let shape: [Int] }
    var foldedShapes: [FoldedShape] = []

    /// Throws when a folded shape differs from what shape inference gives for the value.
    static func checkFoldedShapes(_ folded: [FoldedShape], against inferred: [String: [Int]]) throws {
        for f in folded {
            guard let s = inferred[f.value] else { continue }
            if s != f.shape {
                throw QuarryError.shapeMismatch(node: f.node, message: "the import folded the shape of '\(f.value)' as \(f.shape), but the graph's shape inference gives \(s)")
            }
        }
    }

    func uniqueNodeName(_ base: String) -> String {
        var name = base, k = 1
        while usedNodeNames.contains(name) { k += 1; name = "\(base)_\(k)" }
        usedNodeNames.insert(name)
        return name
    }

    func uniqueValueName(_ base: String) -> String {
        var name = base, k = 1
        while usedNames.contains(name) { k += 1; name = "\(base)_\(k)" }
        usedNames.insert(name)
        return name
    }

    /// The Quarry value for ONNX tensor `name`, making a parameter (and, for a graph output, an
    /// identity node named `output`) when it is a constant.
    func runtimeName(_ name: String, as output: String? = nil) throws -> String {
        guard let v = values[name] else { throw QuarryError.unknownValue(name) }
        switch v {
        case .runtime(let n, _, _): return n
        case .constant(let t):
            let p = parameter(t, key: name)
            if let output, output == name, parameters[output] == nil {
                nodes.append(Node(name: uniqueNodeName(output), op: .identity, inputs: [p], outputs: [output]))
                values[output] = .runtime(name: output, shape: t.shape, integer: t.isInteger)
                return output
            }
            return p
        }
    }

    /// A parameter holding `t`, made once per `key` (the ONNX tensor name plus any transform).
    func parameter(_ t: HostTensor, key: String) -> String {
        if let p = materialized[key] { return p }
        // An initializer keeps its own name so taps and checkpoints see the file's names.
        let name: String
        if model.initializers[key] != nil && parameters[key] == nil && !nodes.contains(where: { $0.outputs.contains(key) }) {
            name = key
            usedNames.insert(key)
        } else {
            name = uniqueValueName(key + ":const")
        }
        parameters[name] = Parameter(shape: t.shape, initializer: .constant(0), value: t.tensor())
        materialized[key] = name
        return name
    }

    /// Appends a node and returns the concrete shapes of its outputs.
    func emit(_ name: String, _ op: Op, _ inputs: [String], outputs: [String]) throws -> [[Int]] {
        let node = Node(name: uniqueNodeName(name), op: op, inputs: inputs, outputs: outputs)
        var decl: [GraphInput] = []
        var shapes: [String: [Int]] = [:]
        for i in Set(inputs) where !i.isEmpty {
            guard let s = shapeOfValue(i) else { throw QuarryError.unknownValue(i) }
            decl.append(GraphInput(name: i, shape: s.map { .fixed($0) }))
            shapes[i] = s
        }
        let mini = Graph(inputs: decl, nodes: [node], parameters: [:], outputs: outputs)
        let inferred = try mini.inferShapes(inputShapes: shapes)
        for o in outputs {
            guard let s = inferred[o], let n = checkedCount(s), n <= OnnxImporter.maxRuntimeElements else {
                throw QuarryError.shapeMismatch(node: node.name, message: "output '\(o)' of shape \(inferred[o] ?? []) is too large")
            }
        }
        nodes.append(node)
        for o in outputs { usedNames.insert(o); runtimeShapes[o] = inferred[o] }
        return outputs.map { inferred[$0]! }
    }

    var runtimeShapes: [String: [Int]] = [:]

    func shapeOfValue(_ quarryName: String) -> [Int]? {
        if let s = runtimeShapes[quarryName] { return s }
        if let p = parameters[quarryName] { return p.shape }
        if case .runtime(_, let s, _)? = values[quarryName] { return s }
        return nil
    }
}

func clampInt(_ v: Int64) -> Int {
    let m = Int64(OnnxImporter.maxAttributeMagnitude)
    return Int(min(max(v, -m), m))
}

/// What a handler sees: the node's inputs as values, its attributes (each read is recorded, so
/// an attribute the handler ignores is reported as unsupported), and where to put its outputs.
struct NodeContext {
    var importer: OnnxImporter
    let proto: Onnx_NodeProto
    let name: String
    var attributesRead: Set<String> = []
    let attributes: [String: Onnx_AttributeProto]

    init(importer: OnnxImporter, proto: Onnx_NodeProto, name: String) {
        self.importer = importer; self.proto = proto; self.name = name
        var a: [String: Onnx_AttributeProto] = [:]
        for attr in proto.attribute { a[attr.name] = attr }
        attributes = a
    }

    var opset: Int { importer.model.opset }
    var op: String { proto.opType }

    mutating func run() throws {
        guard let h = OnnxImporter.handlers[proto.opType] else { throw OnnxImporter.Unsupported(reason: "operator not supported") }
        try h(&self)
    }

    func checkAttributesUsed() throws {
        let unread = attributes.keys.filter { !attributesRead.contains($0) }.sorted()
        if !unread.isEmpty {
            throw OnnxImporter.Unsupported(reason: "attribute(s) \(unread.joined(separator: ", ")) not supported")
        }
    }

    func unsupported(_ reason: String) -> OnnxImporter.Unsupported { .init(reason: reason) }

    // MARK: attributes

    mutating func has(_ a: String) -> Bool { attributesRead.insert(a); return attributes[a] != nil }
    /// Marks attributes that do not change inference results as read.
    mutating func ignore(_ names: String...) { attributesRead.formUnion(names) }
    mutating func int(_ a: String, _ def: Int) -> Int {
        attributesRead.insert(a)
        guard let v = attributes[a] else { return def }
        return clampInt(v.i)
    }
    mutating func ints(_ a: String) -> [Int]? {
        attributesRead.insert(a)
        return attributes[a].map { $0.ints.map(clampInt) }
    }
    mutating func float(_ a: String, _ def: Float) -> Float {
        attributesRead.insert(a)
        return attributes[a]?.f ?? def
    }
    mutating func string(_ a: String, _ def: String) -> String {
        attributesRead.insert(a)
        guard let v = attributes[a] else { return def }
        return String(decoding: v.s, as: UTF8.self)
    }

    // MARK: inputs and outputs

    var inputCount: Int { proto.input.count }
    func hasInput(_ i: Int) -> Bool { i < proto.input.count && !proto.input[i].isEmpty }
    func inputName(_ i: Int) -> String { proto.input[i] }

    func input(_ i: Int) throws -> OnnxImporter.Val {
        guard hasInput(i) else { throw unsupported("input \(i) is missing") }
        guard let v = importer.values[proto.input[i]] else { throw QuarryError.unknownValue(proto.input[i]) }
        return v
    }

    /// Input `i` as a host constant, or nil when it is computed at run time.
    func constant(_ i: Int) throws -> HostTensor? {
        if case .constant(let t) = try input(i) { return t }
        return nil
    }

    func requireConstant(_ i: Int, _ what: String) throws -> HostTensor {
        guard let t = try constant(i) else {
            if importer.model.valueInputs.contains(proto.input[i]) {
                throw unsupported("\(what) (input \(i)) is the graph input '\(proto.input[i])', which the import reads as values: give its values with the input shapes")
            }
            throw unsupported("\(what) (input \(i)) must be a constant or computed from shapes")
        }
        return t
    }

    func shape(_ i: Int) throws -> [Int] {
        switch try input(i) {
        case .runtime(_, let s, _): return s
        case .constant(let t): return t.shape
        }
    }

    /// The shape of input `i`, recorded when it is a run-time value so that the import checks the
    /// folded result against the whole graph's shape inference.
    func foldedShape(_ i: Int) throws -> [Int] {
        let v = try input(i)
        if case .runtime(let n, let s, _) = v { importer.foldedShapes.append(.init(node: name, value: n, shape: s)) }
        return try shape(i)
    }

    func isInteger(_ i: Int) throws -> Bool {
        switch try input(i) {
        case .runtime(_, _, let integer): return integer
        case .constant(let t): return t.isInteger
        }
    }

    var allInputsConstant: Bool {
        (0..<proto.input.count).allSatisfy { i in
            !hasInput(i) || { if case .constant? = importer.values[proto.input[i]] { return true }; return false }()
        }
    }

    /// The Quarry value of input `i` (constants become parameters).
    mutating func value(_ i: Int) throws -> String {
        _ = try input(i)
        return try importer.runtimeName(proto.input[i])
    }

    /// A parameter for a constant made by the handler (a permuted or transposed weight).
    mutating func parameter(_ t: HostTensor, key: String) -> String { importer.parameter(t, key: key) }
    /// A one-element float parameter (shared by every node that asks for the same value).
    mutating func scalarParameter(_ f: Float) -> String {
        parameter(HostTensor(floats: [f], shape: [1]), key: "scalar:\(f)")
    }

    func outputName(_ i: Int) -> String { i < proto.output.count ? proto.output[i] : "" }
    func outputUsed(_ i: Int) -> Bool { i < proto.output.count && !proto.output[i].isEmpty && importer.consumed.contains(proto.output[i]) }

    mutating func setConstant(_ i: Int, _ t: HostTensor) throws {
        guard t.count <= HostTensor.maxFoldedElements else { throw QuarryError.invalidArgument("folded constant of \(t.count) elements is too large") }
        if i < proto.output.count, !proto.output[i].isEmpty { importer.values[proto.output[i]] = .constant(t) }
    }

    /// Emits one Quarry node producing ONNX output `i` (and further outputs when given).
    @discardableResult
    mutating func emit(_ op: Op, _ inputs: [String], output i: Int = 0, integer: Bool = false, suffix: String? = nil) throws -> (name: String, shape: [Int]) {
        let out = suffix == nil ? outputName(i) : importer.uniqueValueName("\(outputName(i))/\(suffix!)")
        let s = try importer.emit(suffix == nil ? name : "\(name)/\(suffix!)", op, inputs, outputs: [out])[0]
        if suffix == nil { importer.values[out] = .runtime(name: out, shape: s, integer: integer) }
        return (out, s)
    }

    /// Emits a node with several outputs mapped to ONNX outputs `outputs` (nil = internal).
    mutating func emitMulti(_ op: Op, _ inputs: [String], outputs: [String?], suffix: String? = nil) throws -> [(String, [Int])] {
        let names = outputs.enumerated().map { k, o in o.flatMap { $0.isEmpty ? nil : $0 } ?? importer.uniqueValueName("\(name)/\(suffix ?? "out"):\(k)") }
        let shapes = try importer.emit(suffix == nil ? name : "\(name)/\(suffix!)", op, inputs, outputs: names)
        for (n, s) in zip(names, shapes) where outputs.contains(where: { $0 == n }) {
            importer.values[n] = .runtime(name: n, shape: s, integer: false)
        }
        return Array(zip(names, shapes))
    }

    /// Emits an internal node (its output is not an ONNX tensor).
    mutating func emitInternal(_ op: Op, _ inputs: [String], _ suffix: String) throws -> (name: String, shape: [Int]) {
        try emit(op, inputs, suffix: suffix)
    }

    /// Marks ONNX output `i` as the Quarry value `v` (an alias through an identity node, so the
    /// ONNX name stays a tap).
    mutating func alias(_ v: String, output i: Int = 0, integer: Bool = false) throws {
        try emit(.identity, [v], output: i, integer: integer)
    }
}
