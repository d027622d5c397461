import Foundation
import Quarry
import QuarryFormats
import QuarryTestSupport
import XCTest

// `quarry extract` on texts as a user runs it: a sentence-transformers-style checkpoint folder
// (the fixture's tiny random BERT), a .txt file with an empty line and a line past --max-length,
// mean pooling and L2 normalisation, rows against a float64 BertModel in input order.
final class TextExtractTests: XCTestCase {
    var dir: String!
    let checkpoint = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/text/tiny_bert").standardized.path

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "quarry-cli-text-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func reference() throws -> BERTReference {
        let file = try SafeTensorsFile(path: checkpoint + "/model.safetensors")
        var tensors: [String: [Double]] = [:]
        for name in file.names where !name.hasSuffix("position_ids") { tensors[name] = try file.tensor(named: name).scalars.map(Double.init) }
        return BERTReference(tensors: tensors, hidden: 32, heads: 4, layers: 2, inner: 64)
    }

    func testTextFileWithAnEmptyLineAndALongLine() throws {
        var rng = makeTestRNG()
        let words = ["the", "license", "software", "copy", "Café", "naïve", "!!", "日本", "work", "free", "source", "code"]
        let long = (0..<60).map { _ in words.randomElement(using: &rng)! }.joined(separator: " ")
        let short = (0..<Int.random(in: 1...5, using: &rng)).map { _ in words.randomElement(using: &rng)! }.joined(separator: " ")
        let lines = ["Hello, world!", "", long, short, "A second sentence."]
        let input = dir + "/sentences.txt"
        try (lines.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
        let output = dir + "/emb.npy"
        let r = try Tool.run(["extract", "minilm_l6_h384", "--weights", checkpoint, "--input", input, "--pool", "mean",
                              "--l2-normalize", "--max-length", "16", "--batch", "2", "--output", output, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let emb = try NumPy.readTensor(path: output)
        XCTAssertEqual(emb.shape, [lines.count, 32], "one row per line, the empty one included")
        let tokenizer = try TokenizerFiles.load(checkpoint)
        XCTAssertEqual(tokenizer.encode(long, maxLength: 16).count, 16, "the long line is cut")
        XCTAssertEqual(tokenizer.encode("", maxLength: 16).count, 2, "the empty line is [CLS] [SEP]")
        let ref = try reference()
        for (i, line) in lines.enumerated() {
            let expected = BERTReference.normalized(BERTReference.pool(ref.hiddenStates(tokenizer.encode(line, maxLength: 16).map(Int.init)), "mean"))
            for j in 0..<32 { XCTAssertEqual(Double(emb.scalars[i * 32 + j]), expected[j], accuracy: 2e-5, "line \(i + 1) feature \(j)") }
        }
        let manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/emb.manifest.json"))) as? [String: Any])
        XCTAssertEqual(manifest["rows"] as? [String], lines.indices.map { "\(input):\($0 + 1)" })
        XCTAssertEqual(manifest["untrained"] as? Bool, false)
    }

    func testTokenizePrintsTheIdsOfTokenizers() throws {
        // The fixture's texts without line breaks of their own, against the ids `tokenizers` gave.
        let cases = URL(fileURLWithPath: checkpoint).deletingLastPathComponent().appendingPathComponent("cases.json")
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: cases)) as? [String: Any])
        let texts = try XCTUnwrap(root["texts"] as? [String]), ids = try XCTUnwrap(root["bpe_max16"] as? [[Int]])
        let keep = texts.indices.filter { !texts[$0].contains(where: { $0.isNewline }) }
        XCTAssertGreaterThan(keep.count, 80)
        let input = dir + "/lines.txt"
        try (keep.map { texts[$0] }.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
        let bpe = URL(fileURLWithPath: checkpoint).deletingLastPathComponent().appendingPathComponent("bpe").path
        let r = try Tool.run(["tokenize", "--tokenizer", bpe, "--input", input, "--max-length", "16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try r.stdout.split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [Int]) }
        XCTAssertEqual(got, keep.map { ids[$0] })
        let bad = try Tool.run(["tokenize", "--tokenizer", dir + "/none.json", "--input", input])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("none.json"), bad.stderr)
    }

    func testTextErrorsNameTheirCauseAndWriteNothing() throws {
        let input = dir + "/s.txt"
        try "one\ntwo\n".write(toFile: input, atomically: true, encoding: .utf8)
        // A zoo text model without --weights has no tokenizer to find.
        let r1 = try Tool.run(["extract", "minilm_l6_h384", "--input", input, "--output", dir + "/a.npy", "--quiet"])
        XCTAssertEqual(r1.status, 1)
        XCTAssertTrue(r1.stderr.contains("--tokenizer"), r1.stderr)
        let r2 = try Tool.run(["extract", "minilm_l6_h384", "--weights", checkpoint, "--tokenizer", dir + "/nope.json",
                               "--input", input, "--output", dir + "/b.npy", "--quiet"])
        XCTAssertEqual(r2.status, 1)
        XCTAssertTrue(r2.stderr.contains("nope.json"), r2.stderr)
        let r3 = try Tool.run(["extract", "minilm_l6_h384", "--weights", checkpoint, "--max-length", "41",
                               "--input", input, "--output", dir + "/c.npy", "--quiet"])
        XCTAssertEqual(r3.status, 1)
        XCTAssertTrue(r3.stderr.contains("40"), "the model's 40 positions: \(r3.stderr)")
        for f in ["a", "b", "c"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/\(f).npy"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/\(f).npy.partial"))
        }
    }
}
