// `quarry tokenize`: the ids a tokenizer gives each line of a text file (one JSON array a line), or
// with --bench the tokenizer's throughput on one core, for bench/tokenizer_throughput.sh.

import ArgumentParser
import Dispatch
import Foundation
import QuarryFormats
import QuarryRuntime

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Token ids of each line of a text file, as `extract` feeds them to a text model.",
        discussion: """
            Prints one JSON array of ids per line of --input, special tokens included.
            With --bench, prints instead the throughput of tokenizing the whole file on one
            thread (MB of UTF-8 a second, best of --repeat passes).
            Example:
              quarry tokenize --tokenizer all-MiniLM-L6-v2/ --input sentences.txt --max-length 256
            """)

    @Option(name: .long, help: "tokenizer.json, vocab.txt, vocab.json (+ merges.txt beside it), or their folder.")
    var tokenizer: String

    @Option(name: .long, help: "A text file, one text a line.")
    var input: String

    @Option(name: .long, help: "Cut each text to this many tokens, special tokens included.")
    var maxLength: Int?

    @Flag(name: .long, help: "Print the throughput on one thread instead of the ids.")
    var bench = false

    @Option(name: .long, help: "Passes over the file with --bench (the best is printed).")
    var `repeat`: Int = 5

    func run() throws {
        try exitingOnError {
            let tok: any TextTokenizer
            do { tok = try TokenizerFiles.load(tokenizer) } catch { throw RuntimeError(message: "--tokenizer \(error)") }
            guard let data = FileManager.default.contents(atPath: input) else {
                throw RuntimeError(message: "\(input): cannot be read")
            }
            // Lines as `extract` reads them: split at LF bytes, a CR before the LF dropped.
            var rows = data.split(separator: 10, omittingEmptySubsequences: false)
            if rows.last?.isEmpty == true { rows.removeLast() }
            let lines = try rows.enumerated().map { n, row in
                guard let line = String(validating: row.last == 13 ? row.dropLast() : row, as: UTF8.self) else {
                    throw RuntimeError(message: "\(input):\(n + 1): not valid UTF-8")
                }
                return line
            }
            if !bench {
                var out = ""
                for line in lines {
                    out += "[" + tok.encode(line, maxLength: maxLength).map(String.init).joined(separator: ",") + "]\n"
                    if out.utf8.count > 1 << 16 { FileHandle.standardOutput.write(Data(out.utf8)); out = "" }
                }
                FileHandle.standardOutput.write(Data(out.utf8))
                return
            }
            var best = Double.infinity, tokens = 0
            for _ in 0..<max(1, self.repeat) {
                let start = DispatchTime.now().uptimeNanoseconds
                var count = 0
                for line in lines { count += tok.encode(line, maxLength: maxLength).count }
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                tokens = count
            }
            print(String(format: "tokenize lines=%d bytes=%d tokens=%d best_s=%.4f mb_per_s=%.2f", lines.count, data.count, tokens,
                         best, Double(data.count) / 1e6 / best))
        }
    }
}
