// BERT's WordPiece tokenizer, as Hugging Face `tokenizers` (BertTokenizerFast) and transformers'
// BertTokenizer do it:
//   normaliser (BertNormalizer): drop NUL, U+FFFD and control characters (categories Cc, Cf,
//     Co, Cs except tab, CR, LF), turn whitespace into spaces, put spaces around CJK ideographs,
//     strip accents (NFD, then drop nonspacing marks) when asked (by default when lower-casing),
//     lower-case each character;
//   pre-tokeniser (BertPreTokenizer): split on whitespace, every punctuation character (ASCII
//     punctuation and Unicode P*) a word of its own;
//   model (WordPiece): each word of more than 100 characters is [UNK]; otherwise the longest
//     vocabulary entry from the left, then the longest `##` continuation, and so on; a word with
//     a piece that matches nothing is one [UNK];
//   post-processor: [CLS] … [SEP].
// Every step works on Unicode scalars, which is what Rust's `char` is. ASCII takes a table-driven
// path; other scalars go through the Unicode properties of the standard library and Foundation's
// canonical decomposition.

import Foundation

public struct WordPieceTokenizer: TextTokenizer {
    public struct Options: Sendable, Equatable {
        public var lowercase = true
        /// nil: strip accents when lower-casing (BertNormalizer's default).
        public var stripAccents: Bool? = nil
        public var handleChineseCharacters = true
        public var cleanText = true
        public var unknownToken = "[UNK]"
        public var continuationPrefix = "##"
        public var maxCharactersPerWord = 100
        public init() {}
    }

    public let options: Options
    public let vocabularySize: Int
    public let padID: Int32
    let unknownID: Int32
    /// Ids placed before and after the text's tokens ([CLS] and [SEP]).
    let prefixIDs: [Int32]
    let suffixIDs: [Int32]
    let specials: SpecialTokenSplitter
    let trie: VocabularyTrie

    /// `vocabulary` maps each token to its id. `prefix` / `suffix` name the tokens around a text
    /// (default [CLS] and [SEP]); `specialTokens` are matched literally in the raw text (default:
    /// the vocabulary's [PAD], [UNK], [CLS], [SEP], [MASK]).
    public init(vocabulary: [String: Int32], options: Options = Options(), prefix: [String]? = nil,
                suffix: [String]? = nil, specialTokens: [String: Int32]? = nil, padToken: String = "[PAD]",
                source: String = "vocabulary") throws {
        func id(_ token: String) throws -> Int32 {
            guard let i = vocabulary[token] else {
                throw TokenizerError(path: source, message: "the vocabulary has no token '\(token)'")
            }
            return i
        }
        self.options = options
        vocabularySize = Int((vocabulary.values.max() ?? -1) + 1)
        unknownID = try id(options.unknownToken)
        padID = vocabulary[padToken] ?? 0
        prefixIDs = try (prefix ?? ["[CLS]"]).map(id)
        suffixIDs = try (suffix ?? ["[SEP]"]).map(id)
        let special = specialTokens ?? Dictionary(uniqueKeysWithValues: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].compactMap { t in
            vocabulary[t].map { (t, $0) }
        })
        specials = SpecialTokenSplitter(special.map { ($0.key, $0.value) })
        trie = VocabularyTrie(vocabulary, continuationPrefix: options.continuationPrefix)
    }

    public func encode(_ text: String, maxLength: Int?) -> [Int32] {
        var ids = prefixIDs
        let budget = maxLength.map { max(0, $0 - prefixIDs.count - suffixIDs.count) } ?? Int.max
        var content: [Int32] = []
        for piece in specials.split(text) {
            switch piece {
            case .special(let id): content.append(id)
            case .text(let run): tokenize(run, into: &content)
            }
            if content.count >= budget { break }
        }
        ids += content.prefix(budget)
        ids += suffixIDs
        if let maxLength, ids.count > maxLength { ids.removeLast(ids.count - maxLength) }
        return ids
    }

    /// The WordPiece tokens of `text` without special tokens, appended to `out`.
    func tokenize(_ text: Substring, into out: inout [Int32]) {
        let strip = options.stripAccents ?? options.lowercase
        var word: [UInt32] = []
        word.reserveCapacity(32)
        func endWord() {
            if !word.isEmpty { wordPiece(word, into: &out); word.removeAll(keepingCapacity: true) }
        }
        // One normalised scalar: whitespace ends the word, punctuation is a word, the rest extends it.
        func take(_ c: UInt32) {
            if c < 128 {
                switch asciiClass[Int(c)] {
                case .space: endWord()
                case .punctuation: endWord(); word.append(c); endWord()
                case .dropped, .letter: word.append(c)
                }
                return
            }
            guard let s = Unicode.Scalar(c) else { return }
            if s.properties.isWhitespace { endWord(); return }
            if isPunctuation(s) { endWord(); word.append(c); endWord(); return }
            word.append(c)
        }
        for scalar in text.unicodeScalars {
            let c = scalar.value
            if c < 128 {
                // ASCII: drop controls, whitespace to a space, lower-case by table.
                let cls = asciiClass[Int(c)]
                if cls == .dropped && options.cleanText { continue }
                if cls == .space { take(32); continue }
                take(options.lowercase && c >= 65 && c <= 90 ? c + 32 : c)
                continue
            }
            if options.cleanText {
                if c == 0xFFFD || isControl(scalar) { continue }
                if scalar.properties.isWhitespace { take(32); continue }
            }
            if options.handleChineseCharacters && isChineseCharacter(c) {
                take(32); take(c); take(32)
                continue
            }
            var scalars: [Unicode.Scalar] = [scalar]
            if strip {
                scalars = String(scalar).decomposedStringWithCanonicalMapping.unicodeScalars
                    .filter { $0.properties.generalCategory != .nonspacingMark }
            }
            for s in scalars {
                if options.lowercase {
                    if s.value < 128 {
                        take(s.value >= 65 && s.value <= 90 ? s.value + 32 : s.value)
                    } else if s.properties.changesWhenLowercased {
                        for l in s.properties.lowercaseMapping.unicodeScalars { take(l.value) }
                    } else {
                        take(s.value)
                    }
                } else {
                    take(s.value)
                }
            }
        }
        endWord()
    }

    /// Greedy longest-match-first over the vocabulary; the whole word is [UNK] when a piece fails.
    func wordPiece(_ word: [UInt32], into out: inout [Int32]) {
        if word.count > options.maxCharactersPerWord { out.append(unknownID); return }
        let mark = out.count
        var start = 0
        while start < word.count {
            guard let (id, end) = trie.longestMatch(word, from: start, continuation: start > 0) else {
                out.removeLast(out.count - mark)
                out.append(unknownID)
                return
            }
            out.append(id)
            start = end
        }
    }
}

/// The vocabulary as a trie over Unicode scalars, one root for word starts and one for `##`
/// continuations, so the longest match from a position is one walk rather than a dictionary
/// lookup for every candidate length.
struct VocabularyTrie: Sendable {
    /// (node << 21 | scalar) → child node; scalars fit in 21 bits.
    private var children: [Int: Int32] = [:]
    /// Token id ending at each node, -1 where none does.
    private var ids: [Int32] = [-1, -1]
    static let wordRoot: Int32 = 0, continuationRoot: Int32 = 1

    init(_ vocabulary: [String: Int32], continuationPrefix: String) {
        children.reserveCapacity(vocabulary.count * 3)
        for (token, id) in vocabulary {
            var node = Self.wordRoot
            // By scalars: "##" before a combining mark or an emoji modifier is one Character.
            var rest = Array(token.unicodeScalars)
            let prefix = Array(continuationPrefix.unicodeScalars)
            if !prefix.isEmpty, rest.count > prefix.count, rest.starts(with: prefix) {
                node = Self.continuationRoot
                rest.removeFirst(prefix.count)
            }
            for s in rest {
                let key = Int(node) << 21 | Int(s.value)
                if let next = children[key] {
                    node = next
                } else {
                    let next = Int32(ids.count)
                    ids.append(-1)
                    children[key] = next
                    node = next
                }
            }
            ids[Int(node)] = id
        }
    }

    /// The id and end of the longest vocabulary entry that `word[start...]` begins with.
    func longestMatch(_ word: [UInt32], from start: Int, continuation: Bool) -> (Int32, Int)? {
        var node = continuation ? Self.continuationRoot : Self.wordRoot
        var best: (Int32, Int)? = nil
        var i = start
        while i < word.count, let next = children[Int(node) << 21 | Int(word[i])] {
            node = next
            i += 1
            let id = ids[Int(node)]
            if id >= 0 { best = (id, i) }
        }
        return best
    }
}

enum ASCIIClass { case letter, space, punctuation, dropped }

/// What BERT's normaliser and pre-tokeniser make of each ASCII character ("letter": kept in a word).
let asciiClass: [ASCIIClass] = (0..<128).map { c in
    switch c {
    case 9, 10, 13, 32: return .space
    case 0..<32, 127: return .dropped
    case 33...47, 58...64, 91...96, 123...126: return .punctuation
    default: return .letter
    }
}

/// `tokenizers`' is_control: tab, LF and CR count as whitespace; otherwise categories Cc, Cf, Co, Cs.
/// Unassigned code points (Cn) are kept: measured against `tokenizers` 0.23 (U+0378, U+E0080,
/// U+10FFFF and others pass its normaliser unchanged), whatever its comment says.
func isControl(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 9, 10, 13: return false
    default:
        switch s.properties.generalCategory {
        case .control, .format, .privateUse, .surrogate: return true
        default: return false
        }
    }
}

/// ASCII punctuation (which includes symbols such as $ and ^) or a Unicode punctuation category.
func isPunctuation(_ s: Unicode.Scalar) -> Bool {
    if s.value < 128 { return asciiClass[Int(s.value)] == .punctuation }
    switch s.properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
         .initialPunctuation, .finalPunctuation, .otherPunctuation:
        return true
    default: return false
    }
}

/// The CJK Unified Ideographs blocks BERT spaces out (not Hiragana, Katakana or Hangul).
func isChineseCharacter(_ c: UInt32) -> Bool {
    (0x4E00...0x9FFF).contains(c) || (0x3400...0x4DBF).contains(c) || (0x20000...0x2A6DF).contains(c)
        || (0x2A700...0x2B73F).contains(c) || (0x2B740...0x2B81F).contains(c) || (0x2B820...0x2CEAF).contains(c)
        || (0xF900...0xFAFF).contains(c) || (0x2F800...0x2FA1F).contains(c)
}
