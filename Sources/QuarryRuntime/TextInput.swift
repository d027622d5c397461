// Texts as inputs of a text model (BERT, GPT): a .txt file holds one text a line (an empty line is
// an empty text; the newline ending the file does not start another), a .jsonl file one JSON object
// a line with the text in a field (--text-field, default "text"; blank lines are skipped). Texts are
// tokenized up front (on every core), then run shortest first so a batch pads little, and the
// output rows are put back in input order at the end.

import Dispatch
import Foundation
import Quarry
import QuarryFormats
import QuarryModels

/// Tokenized texts, in the order they run (by length), with what padding and reordering need.
struct TextInputs {
    var items: [ExtractItem]
    /// The tokenizer file or folder and the longest sequence, for the run's signature.
    var tokenizer: String
    var maxLength: Int
    var padID: Int32
    /// Each source's place in the input.
    var inputOrder: [String: Int]

    /// The rows padded with the pad id to one length — the longest row rounded up to the next of a
    /// few sizes, so that a run compiles few graphs — and their attention mask.
    func pad(_ rows: [Tensor]) -> (ids: Tensor, mask: Tensor) {
        let longest = rows.map(\.count).max() ?? 1
        let sizes = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
        let length = min(maxLength, sizes.first { $0 >= longest } ?? longest)
        let ids = Tensor(shape: [rows.count, length], repeating: Float(padID))
        let mask = Tensor(shape: [rows.count, length], repeating: 0)
        for (r, row) in rows.enumerated() {
            for t in 0..<row.count {
                ids.pointer[r * length + t] = row.pointer[t]
                mask.pointer[r * length + t] = 1
            }
        }
        return (ids, mask)
    }
}

extension Extraction {
    /// The inputs as texts when every one is a .txt or .jsonl file; nil when none is (arrays of
    /// ids run as before). Throws on a mix, on a missing tokenizer and on unreadable files.
    func textInputs(for text: TextModel) throws -> TextInputs? {
        let isText = input.map { ["txt", "jsonl"].contains(($0 as NSString).pathExtension.lowercased()) }
        guard isText.contains(true) else { return nil }
        guard isText.allSatisfy({ $0 }) else {
            throw RuntimeError(message: "give \(model) either text files (.txt, .jsonl) or arrays of token ids, not both")
        }
        guard let tokenizerPath = tokenizer ?? text.tokenizerFolder else {
            throw RuntimeError(message: "texts need a tokenizer: give --tokenizer FILE (tokenizer.json, vocab.txt, vocab.json) or --weights with the checkpoint's folder")
        }
        let tok: any TextTokenizer
        do { tok = try TokenizerFiles.load(tokenizerPath) } catch {
            throw RuntimeError(message: tokenizer == nil
                ? "no tokenizer beside --weights (give --tokenizer FILE): \(error)" : "--tokenizer \(error)")
        }
        guard tok.vocabularySize <= text.vocabularySize else {
            throw RuntimeError(message: "\(tokenizerPath): the tokenizer's \(tok.vocabularySize) ids do not fit \(model)'s \(text.vocabularySize)-row embedding table")
        }
        let limit = maxLength ?? min(text.maxLength ?? text.maxPositions, text.maxPositions)
        guard limit >= 1, limit <= text.maxPositions else {
            throw RuntimeError(message: "--max-length \(limit) must be within 1…\(text.maxPositions) (the model's positions)")
        }
        var read: [(source: String, text: String)] = []
        for path in input { read += try readTexts(path) }
        let texts = read

        var ids = [[Int32]](repeating: [], count: texts.count)
        let chunk = 256
        ids.withUnsafeMutableBufferPointer { out in
            // Each task writes only its own chunk of rows, and the buffer outlives the loop.
            nonisolated(unsafe) let out = out
            DispatchQueue.concurrentPerform(iterations: (texts.count + chunk - 1) / chunk) { c in
                for i in (c * chunk)..<min(texts.count, (c + 1) * chunk) { out[i] = tok.encode(texts[i].text, maxLength: limit) }
            }
        }
        let order = texts.indices.sorted { (ids[$0].count, $0) < (ids[$1].count, $1) }
        let items = order.map { i in
            let row = ids[i]
            return ExtractItem(source: texts[i].source) {
                // An empty text under a tokenizer that adds no special tokens (GPT-2's) has nothing
                // to run: a failed row, named in the manifest, like an unreadable image.
                guard !row.isEmpty else { throw RuntimeError(message: "the text has no tokens") }
                let t = Tensor(uninitializedShape: [row.count])
                for (j, id) in row.enumerated() { t.pointer[j] = Float(id) }
                return t
            }
        }
        var inputOrder: [String: Int] = [:]
        for (i, t) in texts.enumerated() { inputOrder[t.source] = i }
        return TextInputs(items: items, tokenizer: tokenizerPath, maxLength: limit, padID: tok.padID, inputOrder: inputOrder)
    }

    /// The texts of one .txt or .jsonl file, each named FILE:LINE.
    func readTexts(_ path: String) throws -> [(source: String, text: String)] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RuntimeError(message: "\(path): cannot be read")
        }
        var lines = data.split(separator: 10, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        let jsonl = (path as NSString).pathExtension.lowercased() == "jsonl"
        var texts: [(source: String, text: String)] = []
        for (n, raw) in lines.enumerated() {
            var bytes = raw
            if bytes.last == 13 { bytes.removeLast() }  // CRLF files
            guard let line = String(validating: bytes, as: UTF8.self) else {
                throw RuntimeError(message: "\(path):\(n + 1): not valid UTF-8")
            }
            let source = "\(path):\(n + 1)"
            if !jsonl { texts.append((source, line)); continue }
            if line.allSatisfy(\.isWhitespace) { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
                throw RuntimeError(message: "\(source): not a JSON object")
            }
            guard let text = object[textField] as? String else {
                throw RuntimeError(message: "\(source): no string field '\(textField)' (choose one with --text-field)")
            }
            texts.append((source, text))
        }
        return texts
    }
}

/// A zoo text model behind one CompiledGraph: its graph fixes the sequence length S, so each S a
/// run brings compiles its own graph (kept; texts are padded to a few lengths, see TextInputs.pad).
/// The graph the model was opened with serves its own S, so a run at the default length compiles
/// once, as before. Any batch size runs on each (only S is fixed).
final class SequenceLengthGraph: AsynchronousCompiledGraph, @unchecked Sendable {
    // @unchecked: `compiled` and `latest` are only touched under `lock`; the rest is immutable.
    let device: Device
    let outputs: [String]
    private let idsName: String
    private let make: (Int) throws -> Graph
    private var compiled: [Int: CompiledGraph] = [:]
    private var latest: CompiledGraph
    private let lock = NSLock()

    init(device: Device, outputs: [String], example: Graph, idsName: String, make: @escaping (Int) throws -> Graph) throws {
        self.device = device
        self.outputs = outputs
        self.idsName = idsName
        self.make = make
        latest = try device.compile(example, outputs: outputs)
        if let input = example.inputs.first(where: { $0.name == idsName }), case .fixed(let s)? = input.shape.last {
            compiled[s] = latest
        }
    }

    var graph: Graph { lock.lock(); defer { lock.unlock() }; return latest.graph }

    private func specialised(_ shapes: [String: [Int]]) throws -> CompiledGraph {
        guard let length = shapes[idsName]?.last else {
            throw RuntimeError(message: "the model takes \(idsName) [N, S]; got inputs \(shapes)")
        }
        lock.lock(); defer { lock.unlock() }
        if let c = compiled[length] { latest = c; return c }
        let c = try device.compile(try make(length), outputs: outputs)
        compiled[length] = c
        latest = c
        return c
    }

    func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        try specialised(inputs.mapValues(\.shape)).run(inputs, profiler: profiler)
    }

    func submit(_ inputs: [String: Tensor]) throws -> PendingRun {
        let graph = try specialised(inputs.mapValues(\.shape))
        if let overlapping = graph as? AsynchronousCompiledGraph { return try overlapping.submit(inputs) }
        return CompletedRun(outputs: try graph.run(inputs))
    }

    func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        try specialised(inputShapes).peakActivationBytes(inputShapes: inputShapes)
    }
}
