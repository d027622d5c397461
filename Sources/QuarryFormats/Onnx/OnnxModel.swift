// An ONNX model file: the protobuf parsed, initializers read (external data files included), the
// graph's nodes checked for cycles and dangling names. The Quarry graph is made per set of input
// shapes (`graph(inputShapes:)`) because PyTorch exports compute reshape targets from the input's
// shape at run time (Shape → Gather → Unsqueeze → Concat → Reshape): with concrete input shapes
// those subgraphs fold to constants at import and the runtime stays float32 and shape-static. The
// graphs are cached per shape, so a batch size or image size seen before costs nothing.

import Foundation
import Quarry
import SwiftProtobuf

// @unchecked: immutable after loading; every import makes a graph of its own.
public final class OnnxModel: @unchecked Sendable {
    /// The supported range of the default ("ai.onnx") operator set. Opsets 22–25 were reviewed op by
    /// op against the schemas (`onnx.defs.get_schema(op, version)`): for every operator the table in
    /// OnnxOps.swift imports, the versions 22–25 only widen the element types (bfloat16, float8,
    /// float4, int4, int2) or, for pooling, say in words what the window arithmetic already did
    /// (a window that would start in the right padding is dropped); Cast 24 adds `round_mode`,
    /// which only matters for float8e8m0, a type Quarry refuses. Tensors of those narrow types are
    /// refused when they are read, naming the tensor. Operators new in 22–25 (Attention, …) are
    /// imported where OnnxOps.swift has a handler and listed as unsupported otherwise. Opsets 26–28
    /// (onnx 1.23.2's newest is 28) were reviewed the same way: of the operators imported, Range 27
    /// adds float16 / bfloat16 and `stash_type` (the precision of a float16 range: the fold computes
    /// in double), Cast 28 the float6 types (refused as above), DepthToSpace, SpaceToDepth and
    /// Einsum 28 wider types (SpaceToDepth's `mode` is read), ReduceLogSumExp 28 says that an
    /// empty reduction is -inf, and Mod 28 allows fmod = 0 on floats (Python's remainder, which
    /// the Mod handler computes for any type).
    public static let supportedOpsets = 7...28

    public let path: String
    public let opset: Int
    /// Graph inputs that are not initializers; dimensions named in the file are `.symbol`.
    public let inputs: [GraphInput]
    /// The graph's declared outputs.
    public let outputs: [String]
    /// Every tensor name the graph defines (inputs, initializers, node outputs): the feature taps.
    public let tensorNames: [String]
    public let producer: String
    /// Graph inputs the import reads as values, not only as shapes: ones fed straight into an
    /// operand that the importer needs as a constant (a Reshape target, Resize scales / sizes / roi,
    /// Slice bounds, …). A graph is made per set of their values (`graph(inputShapes:values:)`),
    /// as it is per set of input shapes; the Quarry graph does not take them as inputs.
    public let valueInputs: Set<String>
    /// The operands, by operator, that the import folds and so needs as constants.
    static let constantOperands: [String: [Int]] = [
        "Reshape": [1], "Resize": [1, 2, 3], "Upsample": [1], "Expand": [1], "Slice": [1, 2, 3, 4], "ConstantOfShape": [0],
        "Pad": [1, 2, 3], "Squeeze": [1], "Unsqueeze": [1], "Split": [1], "ReduceMean": [1], "ReduceSum": [1], "ReduceMax": [1], "ReduceMin": [1], "ReduceProd": [1],
        "ReduceL1": [1], "ReduceL2": [1], "ReduceLogSumExp": [1], "ReduceSumSquare": [1], "Range": [0, 1, 2], "Clip": [1, 2],
        "LSTM": [4], "GRU": [4],
        "TopK": [1], "CumSum": [1], "Tile": [1], "Trilu": [1],
    ]

    let graphProto: Onnx_GraphProto
    let nodes: [Onnx_NodeProto]
    let initializers: [String: HostTensor]
    let integerInputs: Set<String>
    private var cache: [String: Graph] = [:]
    private let lock = NSLock()

    /// Reads and validates `path`. External data files are resolved relative to its folder.
    public convenience init(path: String) throws {
        let file = try MappedFile(path: path)
        let data = try file.data(0..<file.count)
        try self.init(data: data, path: path)
    }

    /// Parses model bytes; `path` names the model in errors and anchors external data files.
    public init(data: Data, path: String) throws {
        self.path = path
        func fail(_ m: String) -> QuarryError { .file(path: path, message: m) }
        let model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            throw fail("not a valid ONNX model (protobuf decoding failed: \(error))")
        }
        guard model.hasGraph else { throw fail("the model has no graph") }
        var opset: Int? = nil
        for o in model.opsetImport where o.domain == "" || o.domain == "ai.onnx" { opset = Int(o.version) }
        guard let opset else { throw fail("the model imports no default (ai.onnx) operator set") }
        guard OnnxModel.supportedOpsets.contains(opset) else {
            throw fail("opset \(opset) is not supported (\(OnnxModel.supportedOpsets.lowerBound)…\(OnnxModel.supportedOpsets.upperBound) are)")
        }
        self.opset = opset
        producer = model.producerName
        let g = model.graph
        graphProto = g
        if !g.sparseInitializer.isEmpty { throw fail("sparse initializers are not supported") }

        let baseDir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var inits: [String: HostTensor] = [:]
        for t in g.initializer {
            guard !t.name.isEmpty else { throw fail("an initializer has no name") }
            inits[t.name] = try OnnxModel.hostTensor(t, baseDirectory: baseDir, modelPath: path)
        }
        initializers = inits

        var ins: [GraphInput] = []
        var integers = Set<String>()
        for vi in g.input where inits[vi.name] == nil {
            guard vi.type.tensorType.hasShape else {
                throw fail("graph input '\(vi.name)' declares no shape")
            }
            let dims: [Dim] = vi.type.tensorType.shape.dim.enumerated().map { i, d in
                switch d.value {
                // Paddle2ONNX and some hand-written graphs declare a dynamic dimension as
                // dim_value -1; onnxruntime reads any negative value as unknown, and so does Quarry.
                case .dimValue(let v)? where v >= 0: return .fixed(Int(v))
                case .dimParam(let p)? where !p.isEmpty: return .symbol(p)
                default: return .symbol("\(vi.name)_dim\(i)")
                }
            }
            ins.append(GraphInput(name: vi.name, shape: dims))
            let et = vi.type.tensorType.elemType
            if et == 6 || et == 7 || et == 9 || et == 2 || et == 3 || et == 5 || et == 4 || et == 12 || et == 13 { integers.insert(vi.name) }
        }
        inputs = ins
        integerInputs = integers
        outputs = g.output.map(\.name)
        nodes = try OnnxModel.sorted(g.node, defined: Set(ins.map(\.name)).union(inits.keys), path: path)
        var valueInputs = Set<String>()
        let inputNames = Set(ins.map(\.name))
        for n in nodes where n.domain.isEmpty || n.domain == "ai.onnx" {
            for i in OnnxModel.constantOperands[n.opType] ?? [] where i < n.input.count && inputNames.contains(n.input[i]) {
                valueInputs.insert(n.input[i])
            }
        }
        self.valueInputs = valueInputs
        var names = ins.map(\.name) + inits.keys.sorted()
        for n in nodes { names += n.output.filter { !$0.isEmpty } }
        tensorNames = names
        for o in outputs where !Set(names).contains(o) { throw fail("graph output '\(o)' is produced by no node") }
    }

    /// A node as an error names it: its name and op, or for an unnamed node (exporters often leave
    /// them so) its op, its place in the file and what it writes.
    static func label(_ n: Onnx_NodeProto, _ index: Int) -> String {
        if !n.name.isEmpty { return "node '\(n.name)' (\(n.opType))" }
        let outputs = n.output.filter { !$0.isEmpty }.map { "'\($0)'" }.joined(separator: ", ")
        return "unnamed \(n.opType) node #\(index) of the file" + (outputs.isEmpty ? "" : " writing \(outputs)")
    }

    /// Nodes in topological order; throws on a cycle, a name defined twice, or a name nobody defines.
    static func sorted(_ nodes: [Onnx_NodeProto], defined: Set<String>, path: String) throws -> [Onnx_NodeProto] {
        var producer: [String: Int] = [:]
        for (i, n) in nodes.enumerated() {
            for o in n.output where !o.isEmpty {
                if producer[o] != nil || defined.contains(o) {
                    throw QuarryError.file(path: path, message: "tensor '\(o)' is defined more than once (\(label(n, i)))")
                }
                producer[o] = i
            }
        }
        // A node's operands: its inputs and, for an If (or any node with graph attributes), the
        // outer-scope names its subgraphs read, so that it is ordered after their producers.
        let operands: [Set<String>] = nodes.map { Set($0.input).union(outerReferences(of: $0)) }
        var missing: [String] = []
        for (k, n) in nodes.enumerated() {
            for i in operands[k].sorted() where !i.isEmpty && producer[i] == nil && !defined.contains(i) {
                missing.append("'\(i)' (used by \(label(n, k)))")
            }
        }
        if !missing.isEmpty {
            throw QuarryError.file(path: path, message: "undefined tensors (missing initializers or inputs): " + missing.prefix(20).joined(separator: ", "))
        }
        // Kahn's algorithm, keeping file order among ready nodes.
        var indegree = [Int](repeating: 0, count: nodes.count)
        var consumers = [[Int]](repeating: [], count: nodes.count)
        for (i, _) in nodes.enumerated() {
            for inp in operands[i] where !inp.isEmpty {
                if let p = producer[inp] { indegree[i] += 1; consumers[p].append(i) }
            }
        }
        var ready = (0..<nodes.count).filter { indegree[$0] == 0 }.reversed().map { $0 }
        var order: [Int] = []
        while let i = ready.popLast() {
            order.append(i)
            for c in consumers[i] {
                indegree[c] -= 1
                if indegree[c] == 0 { ready.append(c) }
            }
        }
        if order.count < nodes.count {
            let stuck = (0..<nodes.count).filter { indegree[$0] > 0 }.prefix(10).map { label(nodes[$0], $0) }
            throw QuarryError.file(path: path, message: "the graph has a cycle through " + stuck.joined(separator: ", "))
        }
        return order.map { nodes[$0] }
    }

    /// The names that the subgraphs of `node` (an If's branches, …) read from outside themselves.
    static func outerReferences(of node: Onnx_NodeProto) -> Set<String> {
        var refs = Set<String>()
        for a in node.attribute {
            for g in (a.hasG ? [a.g] : []) + a.graphs { refs.formUnion(outerReferences(of: g)) }
        }
        return refs
    }

    static func outerReferences(of g: Onnx_GraphProto) -> Set<String> {
        var defined = Set(g.input.map(\.name)).union(g.initializer.map(\.name))
        var used = Set<String>()
        for n in g.node {
            used.formUnion(n.input.filter { !$0.isEmpty })
            used.formUnion(outerReferences(of: n))
            defined.formUnion(n.output)
        }
        used.formUnion(g.output.map(\.name))
        return used.subtracting(defined)
    }

    /// Reads a TensorProto (inline or external data) into a host tensor, checking every size.
    static func hostTensor(_ t: Onnx_TensorProto, baseDirectory: String?, modelPath: String) throws -> HostTensor {
        func fail(_ m: String) -> QuarryError { .file(path: modelPath, message: "tensor '\(t.name)': \(m)") }
        let shape = t.dims.map { Int($0) }
        guard let count = checkedCount(shape), count <= Int.max / 16 else { throw fail("invalid dims \(t.dims)") }
        guard let type = Onnx_TensorProto.DataType(rawValue: Int(t.dataType)) else { throw fail("unknown data type \(t.dataType)") }
        let size: Int
        switch type {
        case .float, .int32, .uint32: size = 4
        case .float16, .bfloat16, .int16, .uint16: size = 2
        case .double, .int64, .uint64: size = 8
        case .int8, .uint8, .bool: size = 1
        default: throw fail("data type \(type) is not supported")
        }
        var raw: Data? = nil
        if t.dataLocation == .external {
            var entries: [String: String] = [:]
            for e in t.externalData { entries[e.key] = e.value }
            guard let location = entries["location"], !location.isEmpty else { throw fail("external data has no location") }
            guard let base = baseDirectory else { throw fail("external data needs the model's folder") }
            let file = try resolveExternal(location, baseDirectory: base, modelPath: modelPath, tensor: t.name)
            let offset = Int(entries["offset"] ?? "0") ?? -1
            let mapped = try MappedFile(path: file)
            let length = entries["length"].map { Int($0) ?? -1 } ?? (mapped.count - max(offset, 0))
            guard offset >= 0, length >= 0, offset <= mapped.count, length <= mapped.count - offset else {
                throw fail("external data offset \(offset) length \(length) lies outside \(file) (\(mapped.count) bytes)")
            }
            raw = try mapped.data(offset..<(offset + length))
        } else if t.hasRawData {
            raw = t.rawData
        }
        if let raw {
            guard raw.count == count * size else {
                throw fail("holds \(raw.count) bytes, dims \(shape) of \(type) need \(count * size)")
            }
            if type == .float {
                let floats = [Float](unsafeUninitializedCapacity: count) { buf, n in
                    raw.withUnsafeBytes { p in if count > 0 { memcpy(buf.baseAddress!, p.baseAddress!, count * 4) } }
                    n = count
                }
                return HostTensor(floats: floats, shape: shape)
            }
            return raw.withUnsafeBytes { p -> HostTensor in
                func load<T>(_: T.Type) -> [T] { (0..<count).map { p.loadUnaligned(fromByteOffset: $0 * size, as: T.self) } }
                switch type {
                case .float: return HostTensor(floats: load(Float.self), shape: shape)
                case .float16: return HostTensor(floats: load(UInt16.self).map { Float(Float16(bitPattern: $0)) }, shape: shape)
                case .bfloat16: return HostTensor(floats: load(UInt16.self).map { Float(bitPattern: UInt32($0) << 16) }, shape: shape)
                case .double: return HostTensor(floats: load(Double.self).map { Float($0) }, shape: shape)
                case .int64: return HostTensor(ints: load(Int64.self), shape: shape)
                case .uint64: return HostTensor(ints: load(UInt64.self).map { Int64(truncatingIfNeeded: $0) }, shape: shape)
                case .int32: return HostTensor(ints: load(Int32.self).map(Int64.init), shape: shape)
                case .uint32: return HostTensor(ints: load(UInt32.self).map(Int64.init), shape: shape)
                case .int16: return HostTensor(ints: load(Int16.self).map(Int64.init), shape: shape)
                case .uint16: return HostTensor(ints: load(UInt16.self).map(Int64.init), shape: shape)
                case .int8: return HostTensor(ints: load(Int8.self).map(Int64.init), shape: shape)
                case .uint8: return HostTensor(ints: load(UInt8.self).map(Int64.init), shape: shape)
                case .bool: return HostTensor(ints: load(UInt8.self).map { $0 != 0 ? 1 : 0 }, shape: shape, kind: .bool)
                default: return HostTensor(floats: [], shape: [0])
                }
            }
        }
        func checkCount(_ n: Int) throws { guard n == count else { throw fail("holds \(n) values, dims \(shape) need \(count)") } }
        switch type {
        case .float: try checkCount(t.floatData.count); return HostTensor(floats: t.floatData, shape: shape)
        case .double: try checkCount(t.doubleData.count); return HostTensor(floats: t.doubleData.map { Float($0) }, shape: shape)
        case .int64: try checkCount(t.int64Data.count); return HostTensor(ints: t.int64Data, shape: shape)
        case .uint64, .uint32: try checkCount(t.uint64Data.count); return HostTensor(ints: t.uint64Data.map { Int64(truncatingIfNeeded: $0) }, shape: shape)
        case .float16:
            try checkCount(t.int32Data.count)
            return HostTensor(floats: t.int32Data.map { Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0))) }, shape: shape)
        case .bfloat16:
            try checkCount(t.int32Data.count)
            return HostTensor(floats: t.int32Data.map { Float(bitPattern: UInt32(UInt16(truncatingIfNeeded: $0)) << 16) }, shape: shape)
        case .bool:
            try checkCount(t.int32Data.count); return HostTensor(ints: t.int32Data.map { $0 != 0 ? 1 : 0 }, shape: shape, kind: .bool)
        default:
            try checkCount(t.int32Data.count); return HostTensor(ints: t.int32Data.map(Int64.init), shape: shape)
        }
    }

    /// The external data file for `location`, refused when it leaves the model's folder.
    static func resolveExternal(_ location: String, baseDirectory: String, modelPath: String, tensor: String) throws -> String {
        func fail(_ m: String) -> QuarryError { .file(path: modelPath, message: "tensor '\(tensor)': external data '\(location)' \(m)") }
        guard !location.hasPrefix("/"), !location.contains("\0") else { throw fail("must be a path relative to the model's folder") }
        let parts = location.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.contains("..") else { throw fail("escapes the model's folder") }
        let candidate = (baseDirectory.isEmpty ? "." : baseDirectory) + "/" + location
        // Symbolic links are resolved before the containment check.
        let real = URL(fileURLWithPath: candidate).resolvingSymlinksInPath().path
        let root = URL(fileURLWithPath: baseDirectory.isEmpty ? "." : baseDirectory).resolvingSymlinksInPath().path
        guard real == root || real.hasPrefix(root.hasSuffix("/") ? root : root + "/") else { throw fail("escapes the model's folder") }
        guard FileManager.default.fileExists(atPath: real) else { throw fail("does not exist") }
        return real
    }

    /// The Quarry graph for these concrete input shapes (made once per distinct shapes, then cached).
    public func graph(inputShapes: [String: [Int]]) throws -> Graph {
        try graph(inputShapes: inputShapes, values: [:])
    }

    /// The Quarry graph for these input shapes and the values of `valueInputs` (made once per
    /// distinct shapes and values, then cached). A value input with no value stays a run-time
    /// input, and the operand that needed it is reported unsupported, naming the input.
    public func graph(inputShapes: [String: [Int]], values: [String: Tensor]) throws -> Graph {
        var key = inputs.map { "\($0.name):\(inputShapes[$0.name] ?? [])" }.joined(separator: ";")
        for name in valueInputs.sorted() {
            if let t = values[name] { key += ";\(name)=\(t.scalars.map { $0.bitPattern })" }
        }
        lock.lock()
        if let g = cache[key] { lock.unlock(); return g }
        lock.unlock()
        let importer = OnnxImporter(model: self)
        let g = try importer.importGraph(inputShapes: inputShapes, values: values.filter { valueInputs.contains($0.key) })
        lock.lock(); cache[key] = g; lock.unlock()
        return g
    }

    /// The graph when every input dimension is fixed in the file.
    public func graph() throws -> Graph {
        var shapes: [String: [Int]] = [:]
        for i in inputs {
            var s: [Int] = []
            for d in i.shape {
                guard case .fixed(let n) = d else {
                    throw QuarryError.invalidArgument("input '\(i.name)' has symbolic dimensions \(i.shape); use graph(inputShapes:)")
                }
                s.append(n)
            }
            shapes[i.name] = s
        }
        return try graph(inputShapes: shapes)
    }
}
