import Foundation
import XCTest
@testable import QuarryFormats

// Token ids against Hugging Face `tokenizers` on Tests/Fixtures/text/cases.json (made by
// scripts/make_text_fixtures.py): accents, CJK, emoji, punctuation runs, words past 100
// characters, empty lines, control characters, literal special tokens and random texts over
// several alphabets, each tokenizer read from every file form a checkpoint may ship.
final class TokenizerTests: XCTestCase {
    struct Cases {
        var texts: [String]
        var ids: [String: [[Int32]]]
    }

    func loadCases() throws -> Cases {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture("text", "cases.json")))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let texts = try XCTUnwrap(root["texts"] as? [String])
        var ids: [String: [[Int32]]] = [:]
        for (key, value) in root where key != "texts" {
            let rows = try XCTUnwrap(value as? [[NSNumber]])
            ids[key] = rows.map { $0.map(\.int32Value) }
        }
        return Cases(texts: texts, ids: ids)
    }

    func check(_ tokenizer: any TextTokenizer, _ cases: Cases, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let whole = try XCTUnwrap(cases.ids[name]), cut = try XCTUnwrap(cases.ids[name + "_max16"])
        XCTAssertEqual(whole.count, cases.texts.count)
        var failures = 0
        for (i, text) in cases.texts.enumerated() {
            let got = tokenizer.encode(text), gotCut = tokenizer.encode(text, maxLength: 16)
            if got != whole[i] || gotCut != cut[i] {
                failures += 1
                if failures <= 5 {
                    XCTFail("\(name) text \(i) \(text.debugDescription): got \(got) / \(gotCut), tokenizers gives \(whole[i]) / \(cut[i])",
                            file: file, line: line)
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(name): \(failures) of \(cases.texts.count) texts differ", file: file, line: line)
    }

    func testWordPieceUncasedMatchesTokenizersFromEveryFile() throws {
        let cases = try loadCases()
        try check(try TokenizerFiles.load(fixture("text", "wordpiece_uncased", "tokenizer.json")), cases, "wordpiece_uncased")
        try check(try TokenizerFiles.load(fixture("text", "wordpiece_uncased", "vocab.txt")), cases, "wordpiece_uncased")
        try check(try TokenizerFiles.load(fixture("text", "wordpiece_uncased")), cases, "wordpiece_uncased")
    }

    func testWordPieceCasedMatchesTokenizersFromEveryFile() throws {
        let cases = try loadCases()
        try check(try TokenizerFiles.load(fixture("text", "wordpiece_cased", "tokenizer.json")), cases, "wordpiece_cased")
        try check(try TokenizerFiles.load(fixture("text", "wordpiece_cased", "vocab.txt")), cases, "wordpiece_cased")
    }

    func testByteLevelBPEMatchesTokenizersFromEveryFile() throws {
        let cases = try loadCases()
        try check(try TokenizerFiles.load(fixture("text", "bpe", "tokenizer.json")), cases, "bpe")
        try check(try TokenizerFiles.load(fixture("text", "bpe", "vocab.json")), cases, "bpe")
        try check(try TokenizerFiles.load(fixture("text", "bpe", "merges.txt")), cases, "bpe")
    }

    func testBatchPadsWithTheMask() throws {
        let tok = try TokenizerFiles.load(fixture("text", "wordpiece_uncased"))
        let texts = ["a longer sentence with several words in it", "", "short one"]
        let batch = tok.encodeBatch(texts, maxLength: 8)
        XCTAssertEqual(batch.rows, 3)
        XCTAssertEqual(batch.length, 8)
        for (r, text) in texts.enumerated() {
            let ids = tok.encode(text, maxLength: 8)
            XCTAssertEqual(batch.lengths[r], ids.count)
            XCTAssertEqual(Array(batch.ids[(r * 8)..<(r * 8 + ids.count)]), ids)
            for t in 0..<8 {
                XCTAssertEqual(batch.mask[r * 8 + t], t < ids.count ? 1 : 0)
                if t >= ids.count { XCTAssertEqual(batch.ids[r * 8 + t], tok.padID) }
            }
        }
        XCTAssertEqual(tok.encode("", maxLength: 8).count, 2, "an empty text is [CLS] [SEP]")
    }

    func testBadTokenizerFilesAreNamed() throws {
        let dir = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try TokenizerFiles.load(dir)) { XCTAssertTrue("\($0)".contains(dir), "\($0)") }
        let notJSON = dir + "/tokenizer.json"
        try Data("not json".utf8).write(to: URL(fileURLWithPath: notJSON))
        XCTAssertThrowsError(try TokenizerFiles.load(notJSON)) { XCTAssertTrue("\($0)".contains("tokenizer.json"), "\($0)") }
        let noUnk = dir + "/vocab.txt"
        try Data("[PAD]\n[CLS]\n[SEP]\nhello\n".utf8).write(to: URL(fileURLWithPath: noUnk))
        XCTAssertThrowsError(try TokenizerFiles.load(noUnk)) { XCTAssertTrue("\($0)".contains("[UNK]"), "\($0)") }
        let vocabJSON = dir + "/vocab.json"
        try Data("{\"a\": 0}".utf8).write(to: URL(fileURLWithPath: vocabJSON))
        try Data("#version: 0.2\n".utf8).write(to: URL(fileURLWithPath: dir + "/merges.txt"))
        XCTAssertThrowsError(try TokenizerFiles.load(vocabJSON)) { XCTAssertTrue("\($0)".contains("byte-level"), "\($0)") }
    }
}
