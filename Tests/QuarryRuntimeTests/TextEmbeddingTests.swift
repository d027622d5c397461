// Sentence embeddings from texts: a small BERT with random weights (Tests/Fixtures/text/tiny_bert,
// made by scripts/make_text_fixtures.py and saved as an old transformers version did, with the
// embeddings.position_ids buffer) read as a checkpoint folder; its pooled, normalised embeddings
// of fresh random texts against a float64 BertModel computed here from the same tensors; and the
// errors a checkpoint that does not fit gets.

import Foundation
import Quarry
import QuarryFormats
import QuarryModels
@testable import QuarryRuntime
import QuarryTestSupport
import XCTest

private let tinyBERT = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/text/tiny_bert").path

/// The fixture's tensors in float64 and its sizes from config.json.
func tinyBERTReference() throws -> BERTReference {
    let file = try SafeTensorsFile(path: tinyBERT + "/model.safetensors")
    var tensors: [String: [Double]] = [:]
    for name in file.names where !name.hasSuffix("position_ids") {
        tensors[name] = try file.tensor(named: name).scalars.map(Double.init)
    }
    let data = try Data(contentsOf: URL(fileURLWithPath: tinyBERT + "/config.json"))
    let c = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    return BERTReference(tensors: tensors, hidden: c["hidden_size"] as! Int, heads: c["num_attention_heads"] as! Int,
                         layers: c["num_hidden_layers"] as! Int, inner: c["intermediate_size"] as! Int)
}

/// Random texts over the fixture vocabulary's words with capitals, accents and punctuation mixed
/// in, from empty to past the model's 40 positions.
func randomTexts(_ count: Int, _ rng: inout SeededGenerator) throws -> [String] {
    let vocab = try String(contentsOfFile: tinyBERT + "/vocab.txt", encoding: .utf8).split(separator: "\n")
        .filter { !$0.hasPrefix("##") && !$0.hasPrefix("[") }.map(String.init)
    let extras = ["Café", "NAÏVE", "!!!", "?", "日本", "😀", "don't", "e.g.", "x" + String(repeating: "y", count: 120)]
    var texts = [""]
    while texts.count < count {
        let words = Int.random(in: 0...55, using: &rng)
        texts.append((0..<words).map { _ in
            Int.random(in: 0..<8, using: &rng) == 0 ? extras.randomElement(using: &rng)! : vocab.randomElement(using: &rng)!
        }.joined(separator: " "))
    }
    return texts.shuffled(using: &rng)
}

final class TextEmbeddingTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("quarry-text-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func testPooledNormalisedEmbeddingsMatchFloat64Reference() throws {
        var rng = makeTestRNG()
        let texts = try randomTexts(23, &rng)
        let reference = try tinyBERTReference()
        let tokenizer = try TokenizerFiles.load(tinyBERT)
        let input = dir + "/texts.txt"
        try (texts.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
        let hidden = texts.map { reference.hiddenStates(tokenizer.encode($0, maxLength: 40).map(Int.init)) }
        XCTAssertTrue(hidden.contains { $0.count == 40 }, "some text reaches the 40 positions and is cut")

        for pool in [FeaturePooling.maskedMean, .clsToken, .maskedMax] {
            var job = Extraction(model: "minilm_l6_h384", input: [input], output: dir + "/\(pool.rawValue).npy")
            job.weights = tinyBERT
            job.pool = pool
            job.l2Normalize = true
            job.batch = 4
            job.quiet = true
            XCTAssertEqual(try job.run(), .success)
            let out = try NumPy.readTensor(path: dir + "/\(pool.rawValue).npy")
            XCTAssertEqual(out.shape, [texts.count, 32])
            for (i, rows) in hidden.enumerated() {
                let expected = BERTReference.normalized(BERTReference.pool(rows, pool.rawValue))
                let got = Array(out.scalars[(i * 32)..<((i + 1) * 32)]).map(Double.init)
                XCTAssertGreaterThan(BERTReference.cosine(got, expected), 0.99999, "\(pool) text \(i)")
                for j in 0..<32 {
                    XCTAssertEqual(got[j], expected[j], accuracy: 2e-5, "\(pool) text \(i) \(texts[i].prefix(40).debugDescription) feature \(j)")
                }
            }
        }
        // The manifest lists rows in input order, though batches ran sorted by length.
        let manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/mean.manifest.json"))) as? [String: Any])
        XCTAssertEqual(manifest["rows"] as? [String], texts.indices.map { "\(input):\($0 + 1)" })
    }

    func testJSONLinesTextFieldAndSentenceTransformersPooling() throws {
        var rng = makeTestRNG()
        let texts = try randomTexts(6, &rng)
        let input = dir + "/texts.jsonl"
        let lines = try texts.map { String(decoding: try JSONSerialization.data(withJSONObject: ["id": 1, "body": $0]), as: UTF8.self) }
        try (lines.joined(separator: "\n\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
        // The checkpoint folder's 1_Pooling/config.json picks max pooling when --pool is not given.
        let folder = dir + "/checkpoint"
        try FileManager.default.copyItem(atPath: tinyBERT, toPath: folder)
        try FileManager.default.createDirectory(atPath: folder + "/1_Pooling", withIntermediateDirectories: true)
        try Data(#"{"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": true}"#.utf8)
            .write(to: URL(fileURLWithPath: folder + "/1_Pooling/config.json"))
        try Data(#"{"max_seq_length": 12, "do_lower_case": false}"#.utf8).write(to: URL(fileURLWithPath: folder + "/sentence_bert_config.json"))
        var job = Extraction(model: "minilm_l6_h384", input: [input], output: dir + "/out.npy")
        job.weights = folder
        job.textField = "body"
        job.quiet = true
        XCTAssertEqual(try job.run(), .success)
        let out = try NumPy.readTensor(path: dir + "/out.npy")
        let reference = try tinyBERTReference()
        let tokenizer = try TokenizerFiles.load(folder)
        XCTAssertEqual(out.shape, [texts.count, 32])
        for (i, text) in texts.enumerated() {
            let ids = tokenizer.encode(text, maxLength: 12).map(Int.init)
            let expected = BERTReference.pool(reference.hiddenStates(ids), "max")
            for j in 0..<32 { XCTAssertEqual(Double(out.scalars[i * 32 + j]), expected[j], accuracy: 1e-4, "text \(i)") }
        }

        job.textField = "title"
        job.output = dir + "/missing.npy"
        XCTAssertThrowsError(try job.run()) { XCTAssertTrue("\($0)".contains("texts.jsonl:1") && "\($0)".contains("'title'"), "\($0)") }
    }

    func testCheckpointFolderKeepsParameterErrorsAndSkipsBuffers() throws {
        let source = try SafeTensorsFile(path: tinyBERT + "/model.safetensors")
        XCTAssertNotNil(source.tensors["embeddings.position_ids"], "the fixture carries the buffer old transformers saved")
        XCTAssertNoThrow(try loadModel("minilm_l6_h384", weights: tinyBERT))

        var tensors: [String: Tensor] = [:]
        for name in source.names where name != "embeddings.position_ids" { tensors[name] = try source.tensor(named: name) }
        func folder(_ name: String, _ edit: (inout [String: Tensor]) -> Void) throws -> String {
            let path = dir + "/" + name
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            for file in ["config.json", "vocab.txt"] { try FileManager.default.copyItem(atPath: tinyBERT + "/" + file, toPath: path + "/" + file) }
            var t = tensors
            edit(&t)
            try SafeTensorsFile.write(t, to: path + "/model.safetensors")
            return path
        }
        let missing = try folder("missing") { $0["encoder.layer.1.output.dense.weight"] = nil }
        XCTAssertThrowsError(try loadModel("minilm_l6_h384", weights: missing)) {
            XCTAssertTrue("\($0)".contains("missing") && "\($0)".contains("encoder.layer.1.output.dense.weight"), "\($0)")
        }
        let misShaped = try folder("mis-shaped") { $0["embeddings.LayerNorm.bias"] = Tensor(shape: [31], repeating: 0) }
        XCTAssertThrowsError(try loadModel("minilm_l6_h384", weights: misShaped)) {
            XCTAssertTrue("\($0)".contains("mis-shaped") && "\($0)".contains("embeddings.LayerNorm.bias"), "\($0)")
        }
        let noPooler = try folder("no-pooler") { $0["pooler.dense.weight"] = nil; $0["pooler.dense.bias"] = nil }
        XCTAssertNoThrow(try loadModel("minilm_l6_h384", weights: noPooler), "a checkpoint without the pooler builds without it")
        let noConfig = dir + "/empty"
        try FileManager.default.createDirectory(atPath: noConfig, withIntermediateDirectories: true)
        XCTAssertThrowsError(try loadModel("minilm_l6_h384", weights: noConfig)) { XCTAssertTrue("\($0)".contains("config.json"), "\($0)") }
        XCTAssertThrowsError(try loadModel("resnet18", weights: tinyBERT)) { XCTAssertTrue("\($0)".contains("BERT"), "\($0)") }
    }
}
