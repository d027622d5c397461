// An opened model on chosen devices, run on named inputs for named outputs: what `quarry run`
// does once, and what a library caller (the C ABI, the Python package) does many times. Graphs
// are compiled once per (outputs, input shapes) and kept.

import Foundation
import Quarry
import QuarryFormats

public final class Engine: @unchecked Sendable {
    // @unchecked: `compiled` and `warnedUntrained` are touched only under `lock`; every run holds
    // `runLock` of its compiled graph, so one engine may be called from several threads.
    public let model: LoadedModel
    public let devices: [Device]
    private let lock = NSLock()
    private var compiled: [String: (graph: CompiledGraph, runLock: NSLock)] = [:]
    /// Zoo parameters filled once (seeded) when no weights were given, so every run agrees.
    private var parameters: [String: Parameter]?

    /// Opens `model` (a zoo name or an .onnx file, with safetensors `weights` for a zoo model) on
    /// the devices of `device` (see `resolveDevices`).
    public init(model spec: String, weights: String? = nil, device: String = "cpu", cpuThreads: Int? = nil,
                precision: String = "fp32") throws {
        devices = try resolveDevices(device, cpuThreads: cpuThreads)
        _ = try resolvePrecision(precision, on: devices)
        model = try loadModel(spec, weights: weights)
    }

    /// The inputs a run needs, with symbolic dimensions (batch, sequence) as the model declares them.
    public var inputs: [GraphInput] { model.onnx?.inputs ?? model.graph.inputs }

    /// Every tensor a run can return, in the order the graph computes them (inputs first).
    public var taps: [String] {
        var seen = Set<String>()
        var names: [String] = []
        for n in model.graph.inputs.map(\.name) + model.graph.nodes.flatMap(\.outputs) where seen.insert(n).inserted { names.append(n) }
        return names
    }

    /// True when the model runs on seeded, untrained parameters (a zoo model with no weights).
    public var untrained: Bool { model.graph.parameters.values.contains { $0.value == nil } }

    /// Runs once on `inputs` (every declared input, by name) and returns `outputs` (default: the
    /// model's outputs). Errors name the input, tensor or shape at fault.
    public func run(_ inputs: [String: Tensor], outputs requested: [String]? = nil) throws -> [String: Tensor] {
        let declared = self.inputs
        let names = declared.map(\.name).joined(separator: ", ")
        for name in inputs.keys where !declared.contains(where: { $0.name == name }) {
            throw RuntimeError(message: "the model has no input '\(name)'; its inputs are \(names)")
        }
        let missing = declared.filter { inputs[$0.name] == nil }.map(\.name)
        guard missing.isEmpty else { throw RuntimeError(message: "missing input \(missing.joined(separator: ", ")); the model's inputs are \(names)") }
        for d in declared {
            let shape = inputs[d.name]!.shape
            guard shape.count == d.shape.count else {
                throw RuntimeError(message: "input '\(d.name)' has shape \(shape); the model declares \(d.shape.count) dimensions \(d.shape)")
            }
            for (i, (n, dim)) in zip(shape, d.shape).enumerated() {
                if case .fixed(let f) = dim, f != n {
                    throw RuntimeError(message: "input '\(d.name)' has shape \(shape); dimension \(i) must be \(f)")
                }
            }
        }
        let shapes = inputs.mapValues(\.shape)
        var graph = model.graph
        // Inputs an ONNX import reads as values (a Reshape target, Resize scales) specialise the
        // graph like shapes do; the graph then takes only the other inputs.
        var valueKey = ""
        var runInputs = inputs
        if let onnx = model.onnx {
            let values = inputs.filter { onnx.valueInputs.contains($0.key) }
            graph = try onnx.graph(inputShapes: shapes, values: values)
            for name in values.keys.sorted() {
                valueKey += ";\(name)=\(values[name]!.scalars.map(\.bitPattern))"
                runInputs[name] = nil
            }
        }
        graph.parameters = filledParameters(graph.parameters)
        let outputs = requested ?? graph.outputs
        guard !outputs.isEmpty else { throw RuntimeError(message: "no output requested") }
        let known = graph.valueNames
        let unknown = outputs.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            let folded = unknown.filter { model.onnx?.tensorNames.contains($0) ?? false }
            let hint = folded.isEmpty ? "" : " (\(folded.joined(separator: ", ")) only hold constants folded at import)"
            throw RuntimeError(message: "no tensor named \(unknown.joined(separator: ", ")) in '\(model.name)'\(hint)")
        }
        let key = outputs.joined(separator: "\u{1}") + "\u{2}" + shapes.keys.sorted().map { "\($0)=\(shapes[$0]!)" }.joined(separator: ";") + valueKey
        lock.lock()
        let entry: (graph: CompiledGraph, runLock: NSLock)
        if let e = compiled[key] {
            entry = e
            lock.unlock()
        } else {
            lock.unlock()
            let c = (try devices[0].compile(graph, outputs: outputs), NSLock())
            lock.lock()
            entry = compiled[key] ?? c
            compiled[key] = entry
            lock.unlock()
        }
        entry.runLock.lock(); defer { entry.runLock.unlock() }
        let results = try entry.graph.run(runInputs)
        for name in outputs where results[name] == nil { throw RuntimeError(message: "the run produced no '\(name)'") }
        return results
    }

    /// The graph's parameters with every missing one filled from its initializer, the same fill
    /// for every run (seed 0, as `extract` uses).
    private func filledParameters(_ declared: [String: Parameter]) -> [String: Parameter] {
        guard declared.values.contains(where: { $0.value == nil }) else { return declared }
        lock.lock(); defer { lock.unlock() }
        if parameters == nil {
            var g = model.graph
            g.materializeParameters(seed: 0)
            parameters = g.parameters
        }
        return parameters!
    }
}
