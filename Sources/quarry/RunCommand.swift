// `quarry run`: one forward pass of an ONNX model (or, once the zoo lands, a zoo model) on inputs
// read from .npy files, writing each requested tensor to DIR/<name>.npy.

import ArgumentParser
import Foundation
import Quarry
import QuarryCPU
import QuarryFormats

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a model once on .npy inputs and write the requested tensors as .npy files.",
        discussion: """
            Any named tensor of the graph can be an output (a feature tap). Symbolic dimensions \
            (batch, sequence) are taken from the input files. Output files are named after the tensor \
            with every character outside [A-Za-z0-9._-] replaced by '_'.
            """)

    @Argument(help: "An .onnx file (zoo model names are accepted once the model zoo lands).")
    var model: String

    @Option(name: .customLong("input"), help: "NAME=FILE.npy for each model input (NAME may be left out for a single-input model).")
    var inputs: [String] = []

    @Option(name: .customLong("output-dir"), help: "Folder for the output .npy files (created if missing).")
    var outputDir: String

    @Option(name: .customLong("outputs"), help: "Comma-separated tensor names to write (default: the model's outputs).")
    var outputs: String?

    @Option(name: .customLong("device"), help: "cpu, opencl, opencl:N, a comma list of them, or all.")
    var device: String = "cpu"

    @Option(name: .customLong("threads"), help: "CPU threads (default: every core).")
    var threads: Int?

    func run() throws {
        let devices = try parseDeviceSpec(device)
        guard model.hasSuffix(".onnx") || FileManager.default.fileExists(atPath: model) else {
            throw ValidationError("'\(model)' is not an .onnx file, and zoo models are not available in this build yet")
        }
        let onnx = try OnnxModel(path: model)

        var tensors: [String: Tensor] = [:]
        for spec in inputs {
            let name: String, file: String
            if let eq = spec.firstIndex(of: "=") {
                name = String(spec[..<eq]); file = String(spec[spec.index(after: eq)...])
            } else if onnx.inputs.count == 1 {
                name = onnx.inputs[0].name; file = spec
            } else {
                throw ValidationError("--input '\(spec)' must be NAME=FILE.npy; the model's inputs are \(onnx.inputs.map(\.name).joined(separator: ", "))")
            }
            guard onnx.inputs.contains(where: { $0.name == name }) else {
                throw ValidationError("the model has no input '\(name)'; its inputs are \(onnx.inputs.map(\.name).joined(separator: ", "))")
            }
            guard tensors[name] == nil else { throw ValidationError("input '\(name)' is given twice") }
            tensors[name] = try NumPy.readTensor(path: file)
        }
        let missing = onnx.inputs.filter { tensors[$0.name] == nil }.map(\.name)
        guard missing.isEmpty else { throw ValidationError("missing --input for \(missing.joined(separator: ", "))") }

        let graph = try onnx.graph(inputShapes: tensors.mapValues(\.shape))
        let requested = outputs.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } ?? graph.outputs
        let known = graph.valueNames
        let unknown = requested.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            let folded = unknown.filter { onnx.tensorNames.contains($0) }
            let hint = folded.isEmpty ? "" : " (\(folded.joined(separator: ", ")) only hold constants folded at import)"
            throw ValidationError("no tensor named \(unknown.joined(separator: ", ")) in '\(model)'\(hint)")
        }

        let dev = devices[0]
        let compiled = try dev.compile(graph, outputs: requested)
        let results = try compiled.run(tensors)

        try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
        var written = Set<String>()
        for name in requested {
            guard let t = results[name] else { throw ValidationError("the run produced no '\(name)'") }
            let file = NumPy.fileName(forTensor: name)
            guard written.insert(file).inserted else {
                throw ValidationError("outputs map to the same file name '\(file)'; request them separately")
            }
            let path = (outputDir as NSString).appendingPathComponent(file)
            try NumPy.write(t, to: path)
            print("\(name) \(t.shape) -> \(path)")
        }
    }

    /// The devices a spec names. OpenCL specs are refused until the OpenCL backend lands.
    func parseDeviceSpec(_ spec: String) throws -> [Device] {
        var out: [Device] = []
        for part in spec.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            switch part {
            case "cpu", "all":
                // "all" is the CPU until the OpenCL backend lands.
                if !out.contains(where: { $0.info.kind == .cpu }) { out.append(CPUDevice(threads: threads)) }
            case "opencl":
                throw ValidationError("device 'opencl': the OpenCL backend is not available in this build yet; use --device cpu")
            default:
                if part.hasPrefix("opencl:"), Int(part.dropFirst(7)) != nil {
                    throw ValidationError("device '\(part)': the OpenCL backend is not available in this build yet; use --device cpu")
                }
                throw ValidationError("unknown device '\(part)' (cpu, opencl, opencl:N, a comma list, or all)")
            }
        }
        guard !out.isEmpty else { throw ValidationError("--device names no device") }
        return out
    }
}
