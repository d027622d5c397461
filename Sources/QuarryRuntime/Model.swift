// Opening a model: a zoo name (with optional safetensors weights) or an .onnx file, as a graph with
// what a caller needs to feed it (symbolic sizes, id and mask inputs, default taps, preprocessing).

import Foundation
import Quarry
import QuarryCPU
import QuarryFormats
import QuarryModels

/// A model ready to compile, with what the tool needs to feed it.
public struct LoadedModel {
    public var name: String
    /// The graph; for an ONNX file, imported at the example input shapes (see `compile`).
    public var graph: Graph
    /// Set for ONNX files, whose import folds shape subgraphs for concrete input shapes.
    public var onnx: OnnxModel? = nil
    /// Sizes for symbolic input dimensions other than the batch (e.g. S = 128).
    public var symbolDefaults: [String: Int] = [:]
    /// Inputs that hold integer ids, with their exclusive upper bound, for synthetic inputs.
    public var integerInputs: [String: Int] = [:]
    /// Inputs that hold a 0/1 mask (attention masks), filled with ones for synthetic inputs.
    public var maskInputs: Set<String> = []
    /// The layers `extract` writes by default, and how each becomes one row per input.
    public var featureLayers: [String]
    public var defaultPooling: FeaturePooling = .none
    /// Image preprocessing the model's reference uses.
    public var preprocessing: ImagePreprocessing = .imagenet
    /// For a zoo text model (BERT, GPT): what reading texts needs (see TextModel).
    public var text: TextModel? = nil

    /// Compiles the model for `outputs` on `device`. ONNX models compile once per distinct input
    /// shapes (their import depends on them), zoo text models once per sequence length they are
    /// given (their graphs fix it), other zoo models once.
    public func compile(on device: Device, outputs: [String]) throws -> CompiledGraph {
        if let onnx {
            if !onnx.valueInputs.isEmpty {
                throw QuarryError.unsupported("\(name): the import reads the values of input(s) \(onnx.valueInputs.sorted().joined(separator: ", ")) (a reshape target, resize scales, …); `quarry run` and the library's run take them, batched extraction and benchmarks do not")
            }
            return try ShapeSpecializedGraph(device: device, outputs: outputs, example: graph) { shapes in
                try onnx.graph(inputShapes: shapes)
            }
        }
        if let text, let idsName = graph.inputs.first?.name {
            // Every length's graph shares this graph's parameter tensors (no shape depends on S).
            let parameters = graph.parameters, untrained = graph.untrained
            return try SequenceLengthGraph(device: device, outputs: outputs, example: graph, idsName: idsName) { length in
                var g = try text.build(length)
                for name in g.parameters.keys { g.parameters[name]!.value = parameters[name]?.value }
                g.untrained = untrained
                return g
            }
        }
        return try device.compile(graph, outputs: outputs)
    }
}

/// What a zoo text model needs to read texts: its graph at any sequence length, the longest it
/// takes, and what its checkpoint folder says (tokenizer files, sentence-transformers' settings).
public struct TextModel {
    /// The graph at sequence length S, parameters unset.
    public var build: (Int) throws -> Graph
    /// Position embeddings: the longest sequence the model takes.
    public var maxPositions: Int
    /// Rows of the token embedding table: ids must be below it.
    public var vocabularySize: Int
    /// Where the tokenizer files are looked for when none is named: the checkpoint folder, or the
    /// folder of a --weights file.
    public var tokenizerFolder: String?
    /// sentence-transformers' max_seq_length (sentence_bert_config.json), when the folder has it.
    public var maxLength: Int?
    /// sentence-transformers' pooling (1_Pooling/config.json), when the folder has it.
    public var pooling: FeaturePooling?
}

public func loadModel(_ spec: String, weights: String?) throws -> LoadedModel {
    if spec.lowercased().hasSuffix(".onnx") || (FileManager.default.fileExists(atPath: spec) && ModelZoo.all.allSatisfy { $0.name != spec }) {
        if weights != nil { throw RuntimeError(message: "--weights applies to zoo models; an ONNX file carries its own") }
        return try loadONNX(spec)
    }
    let entry: ModelEntry
    do { entry = try ModelZoo.entry(named: spec.lowercased()) } catch {
        throw RuntimeError(message: "unknown model '\(spec)': not a file, and not in the zoo (see `quarry models`)")
    }
    var graph: Graph
    var text: TextModel? = nil
    var isFolder: ObjCBool = false
    if let weights, FileManager.default.fileExists(atPath: weights, isDirectory: &isFolder), isFolder.boolValue {
        // A checkpoint folder as Hugging Face lays it out: the sizes come from its config.json.
        let checkpoint = try CheckpointFolder(weights, family: entry.family)
        graph = try checkpoint.build(checkpoint.sequenceLength)
        try graph.loadParameters(from: checkpoint.weights)
        text = TextModel(build: checkpoint.build, maxPositions: checkpoint.maxPositions, vocabularySize: checkpoint.vocabularySize,
                         tokenizerFolder: weights, maxLength: checkpoint.maxLength, pooling: checkpoint.pooling)
    } else {
        graph = try entry.build()
        if let weights {
            let file = try SafeTensorsFile(path: weights)
            try graph.loadParameters(from: file)
        }
        if entry.family == .bert || entry.family == .gpt {
            let bound = idBound(graph)
            text = TextModel(build: { try entry.build(BuildOptions(sequenceLength: $0)) },
                             maxPositions: entry.maxSequenceLength ?? 512, vocabularySize: bound,
                             tokenizerFolder: weights.map { w in
                                 let folder = (w as NSString).deletingLastPathComponent
                                 return folder.isEmpty ? "." : folder
                             })
        }
    }
    var model = LoadedModel(name: entry.name, graph: graph, featureLayers: [entry.defaultTap], defaultPooling: entry.defaultPooling)
    model.text = text
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

public func loadONNX(_ path: String) throws -> LoadedModel {
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
    // A model whose import reads some inputs' values (see OnnxModel.valueInputs) has no graph
    // before a run gives them; it keeps the placeholder, which declares its inputs and outputs.
    if onnx.valueInputs.isEmpty { model.graph = try onnx.graph(inputShapes: example) }
    model.graph.inputs = onnx.inputs
    return model
}

/// Random inputs of batch size `batch` for every graph input, reproducible from `seed`, the batch
/// on each input's `batchAxes` dimension (dimension 0 where none is given).
public func syntheticInputs(for model: LoadedModel, batch: Int, dims: [String: Int], batchAxes: [String: Int] = [:], seed: UInt64 = 1) throws -> [String: Tensor] {
    var rng = SeededGenerator(seed: seed)
    var result: [String: Tensor] = [:]
    let shapes = try syntheticShapes(for: model, batch: batch, dims: dims, batchAxes: batchAxes)
    // In the graph's input order: the seeded values must not depend on a dictionary's order.
    for input in model.graph.inputs {
        let shape = shapes[input.name]!
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
public func parseDims(_ pairs: [String]) throws -> [String: Int] {
    var out: [String: Int] = [:]
    for p in pairs {
        let parts = p.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let v = Int(parts[1]), v > 0 else {
            throw RuntimeError(message: "--dim takes NAME=VALUE with a positive VALUE, got '\(p)'")
        }
        out[String(parts[0])] = v
    }
    return out
}
