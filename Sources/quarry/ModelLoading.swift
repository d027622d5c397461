// Turning the MODEL argument of run / bench / extract into a graph: a zoo name or an .onnx file.

import Foundation
import Quarry
import QuarryCPU
import QuarryFormats
import QuarryModels

/// A model ready to compile, with what the tool needs to feed it.
struct LoadedModel {
    var name: String
    /// The graph; for an ONNX file, imported at the example input shapes (see `compile`).
    var graph: Graph
    /// Set for ONNX files, whose import folds shape subgraphs for concrete input shapes.
    var onnx: OnnxModel? = nil
    /// Sizes for symbolic input dimensions other than the batch (e.g. S = 128).
    var symbolDefaults: [String: Int] = [:]
    /// Inputs that hold integer ids, with their exclusive upper bound, for synthetic inputs.
    var integerInputs: [String: Int] = [:]
    /// Inputs that hold a 0/1 mask (attention masks), filled with ones for synthetic inputs.
    var maskInputs: Set<String> = []
    /// The layers `extract` writes by default, and how each becomes one row per input.
    var featureLayers: [String]
    var defaultPooling: FeaturePooling = .none
    /// Image preprocessing the model's reference uses.
    var preprocessing: ImagePreprocessing = .imagenet

    /// Compiles the model for `outputs` on `device`. ONNX models compile once per distinct input
    /// shapes (their import depends on them), zoo models once.
    func compile(on device: Device, outputs: [String]) throws -> CompiledGraph {
        if let onnx {
            return try ShapeSpecializedGraph(device: device, outputs: outputs, example: graph) { shapes in
                try onnx.graph(inputShapes: shapes)
            }
        }
        return try device.compile(graph, outputs: outputs)
    }
}

func loadModel(_ spec: String, weights: String?) throws -> LoadedModel {
    if spec.lowercased().hasSuffix(".onnx") || (FileManager.default.fileExists(atPath: spec) && ModelZoo.all.allSatisfy { $0.name != spec }) {
        if weights != nil { throw ToolError(message: "--weights applies to zoo models; an ONNX file carries its own") }
        return try loadONNX(spec)
    }
    let entry: ModelEntry
    do { entry = try ModelZoo.entry(named: spec.lowercased()) } catch {
        throw ToolError(message: "unknown model '\(spec)': not a file, and not in the zoo (see `quarry models`)")
    }
    var graph = try entry.build()
    if let weights {
        let file = try SafeTensorsFile(path: weights)
        try graph.loadParameters(from: file)
    }
    var model = LoadedModel(name: entry.name, graph: graph, featureLayers: [entry.defaultTap], defaultPooling: entry.defaultPooling)
    if let p = entry.preprocessing {
        model.preprocessing = ImagePreprocessing(resize: p.resize, crop: (p.crop, p.crop), mean: p.mean, std: p.std)
    }
    for input in graph.inputs {
        // The zoo declares default sizes for dimensions the graph leaves symbolic.
        if let declared = entry.inputs.first(where: { $0.name == input.name }) {
            for (g, e) in zip(input.shape, declared.shape).dropFirst() {
                if case .symbol(let s) = g, case .fixed(let n) = e { model.symbolDefaults[s] = n }
            }
        }
        if input.name.contains("ids") { model.integerInputs[input.name] = idBound(graph) }
        if input.name.contains("mask") { model.maskInputs.insert(input.name) }
    }
    return model
}

/// Vocabulary size of a text model (rows of its first embedding table), for synthetic ids.
private func idBound(_ graph: Graph) -> Int {
    for node in graph.nodes {
        if case .embedding = node.op, let table = graph.parameters[node.inputs[1]] { return table.shape[0] }
    }
    return 1000
}

func loadONNX(_ path: String) throws -> LoadedModel {
    let onnx = try OnnxModel(path: path)
    var example: [String: [Int]] = [:]
    var model = LoadedModel(name: (path as NSString).lastPathComponent, graph: Graph(inputs: onnx.inputs, nodes: [], parameters: [:], outputs: onnx.outputs),
                            onnx: onnx, featureLayers: onnx.outputs)
    for input in onnx.inputs {
        example[input.name] = input.shape.enumerated().map { i, d in
            if case .fixed(let n) = d { return n }
            return i == 0 ? 1 : 128
        }
        let lower = input.name.lowercased()
        if lower.contains("ids") { model.integerInputs[input.name] = 1000 }
        if lower.contains("mask") { model.maskInputs.insert(input.name) }
        for (i, d) in input.shape.enumerated() where i > 0 {
            if case .symbol(let s) = d { model.symbolDefaults[s] = 128 }
        }
    }
    model.graph = try onnx.graph(inputShapes: example)
    model.graph.inputs = onnx.inputs
    return model
}

/// A compiled graph that compiles its model anew for every distinct set of input shapes (kept),
/// for ONNX models whose import depends on the shapes. The scheduler sees one graph.
final class ShapeSpecializedGraph: CompiledGraph, @unchecked Sendable {
    let device: Device
    let outputs: [String]
    private let make: ([String: [Int]]) throws -> Graph
    private var compiled: [String: CompiledGraph] = [:]
    private var latest: CompiledGraph
    private let lock = NSLock()

    init(device: Device, outputs: [String], example: Graph, make: @escaping ([String: [Int]]) throws -> Graph) throws {
        self.device = device
        self.outputs = outputs
        self.make = make
        latest = try device.compile(example, outputs: outputs)
    }

    var graph: Graph { lock.lock(); defer { lock.unlock() }; return latest.graph }

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
    func graph(for shapes: [String: [Int]]) throws -> Graph { try make(shapes) }

    func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        try specialised(inputs.mapValues(\.shape)).run(inputs, profiler: profiler)
    }

    func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        try specialised(inputShapes).peakActivationBytes(inputShapes: inputShapes)
    }
}

/// Random inputs of batch size `batch` for every graph input, reproducible from `seed`.
func syntheticInputs(for model: LoadedModel, batch: Int, dims: [String: Int], seed: UInt64 = 1) throws -> [String: Tensor] {
    var rng = SeededGenerator(seed: seed)
    var result: [String: Tensor] = [:]
    for input in model.graph.inputs {
        var shape: [Int] = []
        for (i, d) in input.shape.enumerated() {
            switch d {
            case .fixed(let n): shape.append(n)
            case .symbol(let s):
                if i == 0 { shape.append(batch); continue }
                guard let v = dims[s] ?? model.symbolDefaults[s] else {
                    throw ToolError(message: "input '\(input.name)' has a symbolic dimension '\(s)': give its size with --dim \(s)=N")
                }
                shape.append(v)
            }
        }
        if let bound = model.integerInputs[input.name] {
            let t = Tensor(uninitializedShape: shape)
            for j in 0..<t.count { t[flat: j] = Float(Int.random(in: 0..<max(bound, 1), using: &rng)) }
            result[input.name] = t
        } else if model.maskInputs.contains(input.name) {
            result[input.name] = Tensor(shape: shape, repeating: 1)
        } else {
            result[input.name] = Tensor.random(shape: shape, using: &rng)
        }
    }
    return result
}

/// Parses NAME=VALUE pairs of --dim.
func parseDims(_ pairs: [String]) throws -> [String: Int] {
    var out: [String: Int] = [:]
    for p in pairs {
        let parts = p.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let v = Int(parts[1]), v > 0 else {
            throw ToolError(message: "--dim takes NAME=VALUE with a positive VALUE, got '\(p)'")
        }
        out[String(parts[0])] = v
    }
    return out
}
