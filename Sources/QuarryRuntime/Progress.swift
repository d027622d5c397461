// Progress on stderr: a redrawn bar with items/s and ETA on a terminal, plain lines every few
// seconds otherwise (logs, CI), nothing with --quiet.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

final class Progress {
    let total: Int
    let label: String
    let quiet: Bool
    let isTerminal: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    private(set) var done = 0
    private(set) var failed = 0

    init(total: Int, label: String, quiet: Bool) {
        self.total = total
        self.label = label
        self.quiet = quiet
        isTerminal = isatty(STDERR_FILENO) == 1
    }

    func advance(by n: Int, failed f: Int = 0) {
        done += n
        failed += f
        let now = Date()
        let interval = isTerminal ? 0.1 : 5.0
        if now.timeIntervalSince(lastDraw) >= interval || done >= total {
            lastDraw = now
            draw(final: false)
        }
    }

    func finish() {
        // A plain-line log already has its last line when the count reached the total.
        if isTerminal || done < total { draw(final: true) }
    }

    private func draw(final: Bool) {
        guard !quiet else { return }
        let elapsed = max(Date().timeIntervalSince(start), 1e-9)
        let rate = Double(done) / elapsed
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let failures = failed > 0 ? ", \(failed) failed" : ""
        let stats = String(format: "%d/%d  %.1f items/s  ETA %@%@", done, total, rate, formatDuration(eta), failures)
        if isTerminal {
            let width = 30
            let filled = total > 0 ? min(width, width * done / total) : width
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(stats)\u{1B}[K".utf8))
            if final { FileHandle.standardError.write(Data("\n".utf8)) }
        } else {
            FileHandle.standardError.write(Data("\(label): \(stats)\n".utf8))
        }
    }
}

func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}
