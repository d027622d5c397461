// Reading a tokenizer from the files a checkpoint ships, picked by what is present:
//   tokenizer.json (Hugging Face `tokenizers`' own format: a WordPiece or BPE model, its
//     normaliser, pre-tokeniser, post-processor and added tokens);
//   vocab.txt (BERT: one token a line, the line number is the id), with tokenizer_config.json
//     beside it for do_lower_case / strip_accents / tokenize_chinese_chars when present;
//   vocab.json + merges.txt (GPT-2: token → id, then one merge "a b" a line after a #version line).
// A folder is searched in that order; a file is read as what its name says.

import Foundation

public enum TokenizerFiles {
    /// The tokenizer in `path`: a checkpoint folder or one of the files above.
    public static func load(_ path: String) throws -> any TextTokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError(path: path, message: "no such file or folder")
        }
        if isDirectory.boolValue {
            let folder = URL(fileURLWithPath: path)
            for name in ["tokenizer.json", "vocab.txt", "vocab.json"] {
                let file = folder.appendingPathComponent(name).path
                if FileManager.default.fileExists(atPath: file) { return try load(file) }
            }
            throw TokenizerError(path: path, message: "folder holds no tokenizer.json, vocab.txt or vocab.json")
        }
        let name = (path as NSString).lastPathComponent.lowercased()
        let folder = (path as NSString).deletingLastPathComponent
        if name.hasSuffix(".txt") && name.contains("merges") {
            return try gpt2(vocab: (folder as NSString).appendingPathComponent("vocab.json"), merges: path)
        }
        if name.hasSuffix(".txt") { return try bertVocab(path) }
        if name == "vocab.json" {
            return try gpt2(vocab: path, merges: (folder as NSString).appendingPathComponent("merges.txt"))
        }
        if name.hasSuffix(".json") { return try tokenizerJSON(path) }
        throw TokenizerError(path: path, message: "not a tokenizer file: expected tokenizer.json, vocab.txt, vocab.json or merges.txt")
    }

    static func read(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError(path: path, message: "cannot be read")
        }
        return data
    }

    static func jsonObject(_ path: String) throws -> [String: Any] {
        let data = try read(path)
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError(path: path, message: "not a JSON object")
        }
        return object
    }

    /// BERT's vocab.txt, with tokenizer_config.json's options when it lies beside it.
    public static func bertVocab(_ path: String) throws -> WordPieceTokenizer {
        let text = String(decoding: try read(path), as: UTF8.self)
        var vocabulary: [String: Int32] = [:]
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        for (i, line) in lines.enumerated() {
            let token = line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
            if vocabulary[token] == nil { vocabulary[token] = Int32(i) }
        }
        guard !vocabulary.isEmpty else { throw TokenizerError(path: path, message: "empty vocabulary") }
        var options = WordPieceTokenizer.Options()
        let config = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: config) {
            let c = try jsonObject(config)
            if let v = c["do_lower_case"] as? Bool { options.lowercase = v }
            if let v = c["strip_accents"] as? Bool { options.stripAccents = v }
            if let v = c["tokenize_chinese_chars"] as? Bool { options.handleChineseCharacters = v }
            if let v = c["unk_token"] as? String { options.unknownToken = v }
        }
        return try WordPieceTokenizer(vocabulary: vocabulary, options: options, source: path)
    }

    /// GPT-2's vocab.json and merges.txt.
    public static func gpt2(vocab: String, merges: String) throws -> ByteLevelBPETokenizer {
        guard let object = (try? JSONSerialization.jsonObject(with: try read(vocab))) as? [String: Any] else {
            throw TokenizerError(path: vocab, message: "not a JSON object of token → id")
        }
        let vocabulary = try ids(object, vocab)
        let lines = String(decoding: try read(merges), as: UTF8.self).split(whereSeparator: \.isNewline)
        var pairs: [(String, String)] = []
        for (n, line) in lines.enumerated() {
            if n == 0 && line.hasPrefix("#version") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw TokenizerError(path: merges, message: "line \(n + 1) is not a merge 'a b': '\(line)'")
            }
            pairs.append((String(parts[0]), String(parts[1])))
        }
        let specials = vocabulary["<|endoftext|>"].map { ["<|endoftext|>": $0] } ?? [:]
        return try ByteLevelBPETokenizer(vocabulary: vocabulary, merges: pairs, specialTokens: specials, source: vocab)
    }

    static func ids(_ object: [String: Any], _ path: String) throws -> [String: Int32] {
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(object.count)
        for (token, value) in object {
            guard let n = value as? NSNumber else {
                throw TokenizerError(path: path, message: "token '\(token)' has no integer id")
            }
            vocabulary[token] = n.int32Value
        }
        return vocabulary
    }

    /// Hugging Face tokenizer.json with a WordPiece or BPE model.
    public static func tokenizerJSON(_ path: String) throws -> any TextTokenizer {
        let root = try jsonObject(path)
        func fail(_ m: String) -> TokenizerError { TokenizerError(path: path, message: m) }
        guard let model = root["model"] as? [String: Any], let type = model["type"] as? String else {
            throw fail("no \"model\" with a \"type\": not a Hugging Face tokenizer.json")
        }
        guard let vocabObject = model["vocab"] as? [String: Any] else { throw fail("model has no \"vocab\" object") }
        let vocabulary = try ids(vocabObject, path)
        // Added tokens that are matched on the raw text (normalized: false), as `tokenizers` does.
        var specials: [String: Int32] = [:]
        for t in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let content = t["content"] as? String, let id = (t["id"] as? NSNumber)?.int32Value else { continue }
            if (t["normalized"] as? Bool) != true { specials[content] = id }
        }
        let (prefix, suffix) = try postProcessorTokens(root["post_processor"], fail)
        let padToken = ((root["padding"] as? [String: Any])?["pad_token"] as? String)
        switch type {
        case "WordPiece":
            var options = WordPieceTokenizer.Options()
            if let v = model["unk_token"] as? String { options.unknownToken = v }
            if let v = model["continuing_subword_prefix"] as? String { options.continuationPrefix = v }
            if let v = model["max_input_chars_per_word"] as? Int { options.maxCharactersPerWord = v }
            if let n = root["normalizer"] as? [String: Any] {
                guard n["type"] as? String == "BertNormalizer" else {
                    throw fail("normalizer \(n["type"] ?? "?") is not supported with WordPiece (BertNormalizer is)")
                }
                if let v = n["lowercase"] as? Bool { options.lowercase = v }
                options.stripAccents = n["strip_accents"] as? Bool
                if let v = n["handle_chinese_chars"] as? Bool { options.handleChineseCharacters = v }
                if let v = n["clean_text"] as? Bool { options.cleanText = v }
            } else {
                options.lowercase = false; options.stripAccents = false
                options.handleChineseCharacters = false; options.cleanText = false
            }
            if let p = root["pre_tokenizer"] as? [String: Any], p["type"] as? String != "BertPreTokenizer" {
                throw fail("pre_tokenizer \(p["type"] ?? "?") is not supported with WordPiece (BertPreTokenizer is)")
            }
            return try WordPieceTokenizer(vocabulary: vocabulary, options: options, prefix: prefix ?? [], suffix: suffix ?? [],
                                          specialTokens: specials, padToken: padToken ?? "[PAD]", source: path)
        case "BPE":
            if let n = root["normalizer"], !(n is NSNull) {
                throw fail("a normalizer with byte-level BPE is not supported")
            }
            guard let p = root["pre_tokenizer"] as? [String: Any], p["type"] as? String == "ByteLevel" else {
                throw fail("only byte-level BPE (pre_tokenizer ByteLevel) is supported")
            }
            if let useRegex = p["use_regex"] as? Bool, !useRegex { throw fail("ByteLevel without its regex is not supported") }
            var pairs: [(String, String)] = []
            for m in model["merges"] as? [Any] ?? [] {
                if let s = m as? String {
                    let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                    guard parts.count == 2 else { throw fail("merge '\(s)' is not 'a b'") }
                    pairs.append((String(parts[0]), String(parts[1])))
                } else if let a = m as? [String], a.count == 2 {
                    pairs.append((a[0], a[1]))
                } else {
                    throw fail("a merge is neither 'a b' nor [a, b]")
                }
            }
            return try ByteLevelBPETokenizer(
                vocabulary: vocabulary, merges: pairs, addPrefixSpace: p["add_prefix_space"] as? Bool ?? false,
                ignoreMerges: model["ignore_merges"] as? Bool ?? false, prefix: prefix ?? [], suffix: suffix ?? [],
                specialTokens: specials, padToken: padToken, source: path)
        default:
            throw fail("model type \(type) is not supported (WordPiece and BPE are)")
        }
    }

    /// The tokens a post-processor puts before and after one sequence; nil when there is none.
    static func postProcessorTokens(_ value: Any?, _ fail: (String) -> TokenizerError) throws -> ([String]?, [String]?) {
        guard let p = value as? [String: Any], let type = p["type"] as? String else { return (nil, nil) }
        switch type {
        case "TemplateProcessing":
            guard let single = p["single"] as? [[String: Any]] else { throw fail("TemplateProcessing without \"single\"") }
            var before: [String] = [], after: [String] = [], seenSequence = false
            for item in single {
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard let special = item["SpecialToken"] as? [String: Any], let id = special["id"] as? String else {
                    throw fail("TemplateProcessing item \(item) is neither SpecialToken nor Sequence")
                }
                // The template names a special token; its `special_tokens` entry holds the token(s).
                let tokens = ((p["special_tokens"] as? [String: Any])?[id] as? [String: Any])?["tokens"] as? [String] ?? [id]
                if seenSequence { after += tokens } else { before += tokens }
            }
            return (before, after)
        case "BertProcessing", "RobertaProcessing":
            guard let cls = (p["cls"] as? [Any])?.first as? String, let sep = (p["sep"] as? [Any])?.first as? String else {
                throw fail("\(type) without cls and sep")
            }
            return ([cls], [sep])
        case "ByteLevel":
            return ([], [])
        default:
            throw fail("post_processor \(type) is not supported")
        }
    }
}
