// `quarry run`: one forward pass of an ONNX file or a zoo model on inputs read from .npy files,
// writing each requested tensor to DIR/<name>.npy.

import ArgumentParser
import Foundation
import Quarry
import QuarryFormats
import QuarryRuntime

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a model once on .npy inputs and write the requested tensors as .npy files.",
        discussion: """
            Any named tensor of the graph can be an output (a feature tap), including ones that are \
            not outputs of the ONNX file. Symbolic dimensions (batch, sequence) are taken from the \
            input files. Each output is written to DIR/<name>.npy, the name having every character \
            outside [A-Za-z0-9._-] replaced by '_'. With several devices the run uses the first.
            Example:
              quarry run model.onnx --input input_ids=ids.npy --input attention_mask=mask.npy \\
                --output-dir out --outputs last_hidden_state,/encoder/layer.5/output/Add
            """)

    @Argument(help: "An .onnx file or a zoo model name (see `quarry models`).")
    var model: String

    @Option(name: .customLong("input"), help: "NAME=FILE.npy for each model input (NAME may be left out for a single-input model).")
    var inputs: [String] = []

    @Option(name: .customLong("output-dir"), help: "Folder for the output .npy files (created if missing).")
    var outputDir: String

    @Option(name: .customLong("outputs"), help: "Comma-separated tensor names to write (default: the model's outputs).")
    var outputs: String?

    @Option(name: .long, help: "Weights for a zoo model (.safetensors).")
    var weights: String?

    @OptionGroup var deviceOptions: DeviceOptions

    func run() throws {
        try exitingOnError { try runOnce() }
    }

    func runOnce() throws {
        let engine = try Engine(model: model, weights: weights, device: deviceOptions.device, cpuThreads: deviceOptions.cpuThreads,
                                precision: deviceOptions.precision)
        let declared = engine.inputs
        let names = declared.map(\.name).joined(separator: ", ")

        var tensors: [String: Tensor] = [:]
        for spec in inputs {
            let name: String, file: String
            if let eq = spec.firstIndex(of: "=") {
                name = String(spec[..<eq]); file = String(spec[spec.index(after: eq)...])
            } else if declared.count == 1 {
                name = declared[0].name; file = spec
            } else {
                throw RuntimeError(message: "--input '\(spec)' must be NAME=FILE.npy; the model's inputs are \(names)")
            }
            guard declared.contains(where: { $0.name == name }) else {
                throw RuntimeError(message: "the model has no input '\(name)'; its inputs are \(names)")
            }
            guard tensors[name] == nil else { throw RuntimeError(message: "input '\(name)' is given twice") }
            tensors[name] = try NumPy.readTensor(path: file)
        }
        let missing = declared.filter { tensors[$0.name] == nil }.map(\.name)
        guard missing.isEmpty else { throw RuntimeError(message: "missing --input for \(missing.joined(separator: ", "))") }

        let requested = outputs.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } ?? engine.model.graph.outputs
        guard !requested.isEmpty else { throw RuntimeError(message: "--outputs names no tensor") }
        if engine.untrained {
            printError("warning: \(engine.model.name) has no --weights; running with untrained (random) parameters")
        }
        // File names are checked before the run, so a clash costs no compute.
        var files: [String: String] = [:]
        for name in requested {
            let file = NumPy.fileName(forTensor: name)
            if let other = files.first(where: { $0.value == file })?.key {
                throw RuntimeError(message: "outputs '\(other)' and '\(name)' both map to the file name '\(file)'")
            }
            files[name] = file
        }
        let results = try engine.run(tensors, outputs: requested)

        do {
            try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError(message: "cannot create the output folder '\(outputDir)': \(error.localizedDescription)")
        }
        for name in requested {
            guard let t = results[name] else { throw RuntimeError(message: "the run produced no '\(name)'") }
            let path = (outputDir as NSString).appendingPathComponent(NumPy.fileName(forTensor: name))
            try NumPy.write(t, to: path)
            print("\(name) \(t.shape) -> \(path)")
        }
    }
}
