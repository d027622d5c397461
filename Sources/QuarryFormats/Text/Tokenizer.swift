// Text to token ids, as the checkpoints' own tokenizers do it (Hugging Face `tokenizers`): a
// WordPiece tokenizer for BERT-family encoders and a byte-level BPE tokenizer for GPT-2-style
// decoders, both read from the files a checkpoint ships (see TokenizerLoading.swift). Both split
// the text around their special tokens first (`[CLS]`, `<|endoftext|>` … written literally in the
// text become those tokens, as `tokenizers` does with its added tokens), tokenize the rest, and
// wrap it in the post-processor's tokens (`[CLS] … [SEP]` for BERT, nothing for GPT-2).

/// A tokenizer that turns one text into ids, special tokens included.
public protocol TextTokenizer: Sendable {
    /// The ids of `text`, with the post-processor's special tokens around them. With `maxLength`,
    /// the text's own tokens are cut so that the whole, specials included, holds at most that many
    /// (the `tokenizers` truncation of one sequence: the end is dropped).
    func encode(_ text: String, maxLength: Int?) -> [Int32]
    /// The id that pads a batch (its attention mask is 0 there).
    var padID: Int32 { get }
    /// Number of ids in the vocabulary (one past the largest id).
    var vocabularySize: Int { get }
}

/// A batch of texts as a model takes them: ids padded to the longest row and the attention mask.
public struct TokenBatch: Sendable, Equatable {
    /// Row-major [rows, length] ids, padded with the tokenizer's pad id.
    public var ids: [Int32]
    /// Row-major [rows, length]: 1 for a token, 0 for padding.
    public var mask: [Int32]
    public var rows: Int
    public var length: Int
    /// Tokens of each row before padding.
    public var lengths: [Int]
}

extension TextTokenizer {
    public func encode(_ text: String) -> [Int32] { encode(text, maxLength: nil) }

    /// Tokenizes every text, truncates each to `maxLength` and pads them to the longest row (or to
    /// `padTo` when that is longer), as `tokenizers`' `encode_batch` with padding to the longest.
    public func encodeBatch(_ texts: [String], maxLength: Int?, padTo: Int = 0) -> TokenBatch {
        let encoded = texts.map { encode($0, maxLength: maxLength) }
        return Self.pad(encoded, padID: padID, padTo: padTo)
    }

    /// Pads token rows to one length (the longest, or `padTo` when longer) with `padID`.
    public static func pad(_ rows: [[Int32]], padID: Int32, padTo: Int = 0) -> TokenBatch {
        let length = max(rows.map(\.count).max() ?? 0, padTo)
        var ids = [Int32](repeating: padID, count: rows.count * length)
        var mask = [Int32](repeating: 0, count: rows.count * length)
        for (r, row) in rows.enumerated() {
            for (t, id) in row.enumerated() {
                ids[r * length + t] = id
                mask[r * length + t] = 1
            }
        }
        return TokenBatch(ids: ids, mask: mask, rows: rows.count, length: length, lengths: rows.map(\.count))
    }
}

/// Special tokens matched in the raw text before any normalisation (the `added_tokens` of a
/// tokenizer.json whose `normalized` is false, or BERT's five when only vocab.txt is given).
/// The leftmost match wins and, among matches starting there, the longest.
struct SpecialTokenSplitter: Sendable {
    let tokens: [(bytes: [UInt8], id: Int32)]
    let firstBytes: Set<UInt8>

    init(_ tokens: [(String, Int32)]) {
        self.tokens = tokens.filter { !$0.0.isEmpty }.map { (Array($0.0.utf8), $0.1) }
            .sorted { $0.bytes.count > $1.bytes.count }
        firstBytes = Set(self.tokens.map { $0.bytes[0] })
    }

    enum Piece { case text(Substring), special(Int32) }

    /// The text as runs of plain text and special tokens, in order.
    func split(_ text: String) -> [Piece] {
        guard !tokens.isEmpty else { return [.text(text[...])] }
        let utf8 = text.utf8
        var pieces: [Piece] = []
        var runStart = utf8.startIndex
        var i = utf8.startIndex
        while i != utf8.endIndex {
            let byte = utf8[i]
            if firstBytes.contains(byte), let (length, id) = match(utf8[i...]) {
                if runStart != i { pieces.append(.text(text[runStart..<i])) }
                pieces.append(.special(id))
                i = utf8.index(i, offsetBy: length)
                runStart = i
            } else {
                i = utf8.index(after: i)
            }
        }
        if runStart != utf8.endIndex { pieces.append(.text(text[runStart...])) }
        return pieces
    }

    private func match(_ rest: Substring.UTF8View) -> (Int, Int32)? {
        for t in tokens where rest.starts(with: t.bytes) { return (t.bytes.count, t.id) }
        return nil
    }
}

/// Errors reading tokenizer files: they name the file and what is wrong with it.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}
