// GPT-2's byte-level BPE, as Hugging Face `tokenizers` (ByteLevel pre-tokeniser + BPE model) does it:
//   pre-tokeniser: GPT-2's pattern splits the text into pieces —
//     's 't 're 've 'm 'll 'd | ␣?letters | ␣?digits | ␣?other (not space, letter, digit) |
//     a whitespace run not followed by a non-space | a whitespace run —
//     tried in that order at each position (a hand-written matcher over Unicode scalars, letters
//     and digits by general category L* and N*, whitespace by the White_Space property);
//     each piece's UTF-8 bytes become printable characters by GPT-2's byte-to-unicode table;
//   model: the piece's characters merged pairwise, the pair of lowest merge rank first, until no
//     adjacent pair has a merge; each result is a vocabulary id;
//   post-processor: none (GPT-2 adds no tokens).

import Foundation

public struct ByteLevelBPETokenizer: TextTokenizer {
    public let vocabularySize: Int
    public let padID: Int32
    /// Prepend a space to a text that does not start with one (RoBERTa-style checkpoints).
    public let addPrefixSpace: Bool
    /// Take a piece that is itself in the vocabulary as it is, without merging (`ignore_merges`).
    public let ignoreMerges: Bool
    let prefixIDs: [Int32]
    let suffixIDs: [Int32]
    let specials: SpecialTokenSplitter
    /// Id of each byte's printable character.
    let byteIDs: [Int32]
    /// (left id << 32 | right id) → (rank, merged id).
    let merges: [Int: (rank: Int32, id: Int32)]
    /// Byte strings of whole vocabulary entries, for `ignoreMerges`.
    let wholeTokens: [[UInt8]: Int32]

    /// `vocabulary` maps byte-level tokens (GPT-2's printable characters) to ids; `merges` are the
    /// pairs in rank order. Throws when a merge or a byte's character is not in the vocabulary.
    public init(vocabulary: [String: Int32], merges pairs: [(String, String)], addPrefixSpace: Bool = false,
                ignoreMerges: Bool = false, prefix: [String] = [], suffix: [String] = [],
                specialTokens: [String: Int32] = [:], padToken: String? = nil, source: String = "vocabulary") throws {
        func id(_ token: String) throws -> Int32 {
            guard let i = vocabulary[token] else {
                throw TokenizerError(path: source, message: "the vocabulary has no token '\(token)'")
            }
            return i
        }
        vocabularySize = Int((vocabulary.values.max() ?? -1) + 1)
        self.addPrefixSpace = addPrefixSpace
        self.ignoreMerges = ignoreMerges
        prefixIDs = try prefix.map(id)
        suffixIDs = try suffix.map(id)
        specials = SpecialTokenSplitter(specialTokens.map { ($0.key, $0.value) })
        padID = try padToken.map(id) ?? specialTokens.values.min() ?? 0
        let table = byteToCharacter
        byteIDs = try (0..<256).map { b in
            guard let i = vocabulary[String(table[b])] else {
                throw TokenizerError(path: source, message: "the vocabulary lacks byte \(b)'s character '\(table[b])': not a byte-level BPE vocabulary")
            }
            return i
        }
        var m: [Int: (rank: Int32, id: Int32)] = [:]
        m.reserveCapacity(pairs.count)
        for (rank, (a, b)) in pairs.enumerated() {
            let left = try id(a), right = try id(b), merged = try id(a + b)
            let key = Int(left) << 32 | Int(right)
            if m[key] == nil { m[key] = (Int32(rank), merged) }
        }
        merges = m
        var whole: [[UInt8]: Int32] = [:]
        if ignoreMerges {
            var inverse: [Unicode.Scalar: UInt8] = [:]
            for (b, c) in table.enumerated() { inverse[c.unicodeScalars.first!] = UInt8(b) }
            for (token, i) in vocabulary {
                let bytes = token.unicodeScalars.compactMap { inverse[$0] }
                if bytes.count == token.unicodeScalars.count { whole[bytes] = i }
            }
        }
        wholeTokens = whole
    }

    public func encode(_ text: String, maxLength: Int?) -> [Int32] {
        let budget = maxLength.map { max(0, $0 - prefixIDs.count - suffixIDs.count) } ?? Int.max
        var content: [Int32] = []
        var first = true
        for piece in specials.split(text) {
            switch piece {
            case .special(let id): content.append(id)
            case .text(let run):
                var scalars = Array(run.unicodeScalars)
                if addPrefixSpace && first && scalars.first != " " { scalars.insert(" ", at: 0) }
                for range in preTokenize(scalars) { bpe(scalars[range], into: &content) }
            }
            first = false
            if content.count >= budget { break }
        }
        var ids = prefixIDs
        ids += content.prefix(budget)
        ids += suffixIDs
        if let maxLength, ids.count > maxLength { ids.removeLast(ids.count - maxLength) }
        return ids
    }

    /// Merges one piece's bytes and appends the ids.
    func bpe(_ piece: ArraySlice<Unicode.Scalar>, into out: inout [Int32]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(piece.count * 2)
        for s in piece { bytes.append(contentsOf: String(s).utf8) }
        if ignoreMerges, let whole = wholeTokens[bytes] { out.append(whole); return }
        var symbols = bytes.map { byteIDs[Int($0)] }
        while symbols.count > 1 {
            // The lowest-ranked adjacent pair; all its occurrences merge left to right.
            var best: (rank: Int32, id: Int32, left: Int32, right: Int32)? = nil
            for i in 0..<(symbols.count - 1) {
                if let m = merges[Int(symbols[i]) << 32 | Int(symbols[i + 1])], m.rank < (best?.rank ?? .max) {
                    best = (m.rank, m.id, symbols[i], symbols[i + 1])
                }
            }
            guard let merge = best else { break }
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == merge.left && symbols[i + 1] == merge.right {
                    merged.append(merge.id)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        out.append(contentsOf: symbols)
    }
}

/// GPT-2's pattern over `s`, as index ranges of the pieces in order.
func preTokenize(_ s: [Unicode.Scalar]) -> [Range<Int>] {
    enum Kind { case letter, number, space, other }
    func kind(_ c: Unicode.Scalar) -> Kind {
        if c.value < 128 {
            switch c.value {
            case 65...90, 97...122: return .letter
            case 48...57: return .number
            case 9...13, 32: return .space
            default: return .other
            }
        }
        if c.properties.isWhitespace { return .space }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }
    let kinds = s.map(kind)
    var pieces: [Range<Int>] = []
    var i = 0
    let n = s.count
    func run(from j: Int, _ k: Kind) -> Int {
        var e = j
        while e < n && kinds[e] == k { e += 1 }
        return e
    }
    while i < n {
        // 's 't 're 've 'm 'll 'd
        if s[i] == "'" && i + 1 < n {
            let a = s[i + 1]
            if a == "s" || a == "t" || a == "m" || a == "d" { pieces.append(i..<(i + 2)); i += 2; continue }
            if i + 2 < n {
                let b = s[i + 2]
                if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") {
                    pieces.append(i..<(i + 3)); i += 3; continue
                }
            }
        }
        // ␣?letters, ␣?digits, ␣?other
        let start = (s[i] == " " && i + 1 < n && kinds[i + 1] != .space) ? i + 1 : i
        let k = kinds[start]
        if k != .space {
            let end = run(from: start, k)
            pieces.append(i..<end)
            i = end
            continue
        }
        // Whitespace: the run, less its last character when a non-space follows (that character
        // then starts the next piece), unless the run is that one character.
        let end = run(from: i, .space)
        if end < n && end - i > 1 {
            pieces.append(i..<(end - 1))
            i = end - 1
        } else {
            pieces.append(i..<end)
            i = end
        }
    }
    return pieces
}

/// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for
/// U+0100 onwards in byte order, so every byte is one printable character.
let byteToCharacter: [Character] = {
    var table = [Character](repeating: " ", count: 256)
    var next: UInt32 = 256
    for b in 0..<256 {
        if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
            table[b] = Character(Unicode.Scalar(UInt32(b))!)
        } else {
            table[b] = Character(Unicode.Scalar(next)!)
            next += 1
        }
    }
    return table
}()
