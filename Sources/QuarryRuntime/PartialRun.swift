// The resumable state of `quarry extract`: a folder beside the output holding what the run is
// (its signature) and one chunk file per finished batch, each written atomically. A killed run
// leaves only whole chunks; --resume reads them back and goes on from the first unprocessed input.
// At the end the chunks become the output and the manifest, both written atomically, and the
// folder is removed.

import Foundation
import Quarry
import QuarryFormats

struct RunSignature: Codable, Equatable {
    var model: String
    var weights: String?
    var layers: [String]
    var pool: String
    var l2: Bool
    var preprocessing: String
    var sources: [String]
    /// Texts only: the tokenizer file or folder and the length texts are cut to.
    var tokenizer: String? = nil
    var maxLength: Int? = nil
}

struct FailedInput: Codable {
    var source: String
    var error: String
}

struct RunProgress {
    var chunks = 0
    var processed = 0
    var failed: [FailedInput] = []
    mutating func record(items: Int, failed f: [FailedInput]) {
        chunks += 1; processed += items; failed += f
    }
}

struct PartialRun {
    let output: String
    var folder: String { output + ".partial" }
    var signaturePath: String { folder + "/run.json" }
    func chunkPath(_ i: Int) -> String { folder + String(format: "/chunk-%06d.safetensors", i) }
    static func manifestPath(_ output: String) -> String {
        ((output as NSString).deletingPathExtension) + ".manifest.json"
    }

    /// Begins a new run, refusing to overwrite the state of an interrupted one.
    func start(_ signature: RunSignature) throws -> RunProgress {
        if FileManager.default.fileExists(atPath: folder) {
            throw RuntimeError(message: "\(folder) holds an interrupted run: add --resume to continue it, or delete the folder to start again")
        }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError(message: "cannot create \(folder): \(error.localizedDescription)")
        }
        try writeAtomically(try JSONEncoder().encode(signature), to: signaturePath)
        return RunProgress()
    }

    /// Reads back an interrupted run with the same signature.
    func resume(_ signature: RunSignature) throws -> RunProgress {
        guard let data = FileManager.default.contents(atPath: signaturePath) else {
            if FileManager.default.fileExists(atPath: output) {
                throw RuntimeError(message: "nothing to resume: \(output) is already complete")
            }
            return try start(signature)
        }
        guard let saved = try? JSONDecoder().decode(RunSignature.self, from: data) else {
            throw RuntimeError(message: "\(signaturePath) is damaged: delete \(folder) to start again")
        }
        guard saved == signature else {
            throw RuntimeError(message: "--resume: \(folder) belongs to a different command (model, layers, options or inputs differ); delete it to start again")
        }
        var progress = RunProgress()
        while FileManager.default.fileExists(atPath: chunkPath(progress.chunks)) {
            let chunk = try SafeTensorsFile(path: chunkPath(progress.chunks))
            guard let items = chunk.metadata["items"].flatMap(Int.init),
                  let failedJSON = chunk.metadata["failed"]?.data(using: .utf8),
                  let failed = try? JSONDecoder().decode([FailedInput].self, from: failedJSON) else {
                throw RuntimeError(message: "\(chunkPath(progress.chunks)) is damaged: delete \(folder) to start again")
            }
            progress.record(items: items, failed: failed)
        }
        return progress
    }

    func append(chunk index: Int, features: [String: Tensor], layers: [String], sources: [String], failed: [FailedInput], items: Int) throws {
        let metadata = [
            "items": "\(items)",
            "sources": String(decoding: try JSONEncoder().encode(sources), as: UTF8.self),
            "failed": String(decoding: try JSONEncoder().encode(failed), as: UTF8.self),
        ]
        try SafeTensorsFile.write(features, metadata: metadata, to: chunkPath(index))
    }

    /// Joins the chunks into the output and writes the manifest; removes the partial folder.
    /// With `inputOrder` (each source's place in the input), rows are put back in that order:
    /// texts run sorted by length, so their chunks hold rows in another order.
    func finish(layers: [String], modelName: String, untrained: Bool, state: RunProgress, inputOrder: [String: Int]? = nil) throws {
        var parts: [String: [Tensor]] = [:]
        var sources: [String] = []
        for i in 0..<state.chunks {
            let chunk = try SafeTensorsFile(path: chunkPath(i))
            if let s = chunk.metadata["sources"]?.data(using: .utf8), let list = try? JSONDecoder().decode([String].self, from: s) {
                sources += list
            }
            for name in layers where chunk.tensors[name] != nil {
                parts[name, default: []].append(try chunk.tensor(named: name))
            }
        }
        var joined: [String: Tensor] = [:]
        for name in layers {
            joined[name] = try parts[name].map { try Tensor.stacking(rowsOf: $0) } ?? Tensor(shape: [0])
        }
        if let inputOrder {
            let rows = sources.indices.sorted { (inputOrder[sources[$0]] ?? $0) < (inputOrder[sources[$1]] ?? $1) }
            sources = rows.map { sources[$0] }
            for (name, t) in joined where t.rank >= 1 && t.shape[0] == rows.count {
                joined[name] = try Tensor.stacking(rowsOf: rows.map { t.rows($0..<($0 + 1)) })
            }
        }
        if (output as NSString).pathExtension.lowercased() == "npy" {
            try NumPy.write(joined[layers[0]]!, to: output)
        } else {
            try SafeTensorsFile.write(joined, metadata: ["model": modelName, "untrained": "\(untrained)"], to: output)
        }
        struct Manifest: Encodable {
            var model: String
            var untrained: Bool
            var output: String
            var layers: [String]
            var rows: [String]
            var failed: [FailedInput]
        }
        let manifest = Manifest(model: modelName, untrained: untrained, output: output, layers: layers, rows: sources, failed: state.failed)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(manifest), to: PartialRun.manifestPath(output))
        try? FileManager.default.removeItem(atPath: folder)
    }
}
