// What the runtime reports to whoever drives it (the command-line tool, the C ABI): errors a user
// can act on, with the exit status the tool documents, and warnings on stderr.

import Foundation

/// Exit statuses, documented in README.md; the C ABI returns the same numbers.
public enum ExitStatus: Int32, Sendable {
    /// Everything ran.
    case success = 0
    /// Bad usage or bad input (a file, a model, a shape): nothing useful was written.
    case failure = 1
    /// `extract` finished but some inputs could not be read; they are named on stderr and in the manifest.
    case partial = 3
    /// Interrupted (Ctrl-C); `extract --resume` continues.
    case interrupted = 130
}

/// A user-facing error: the message names the file, model, node or tensor at fault.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var status: ExitStatus
    public init(message: String, status: ExitStatus = .failure) {
        self.message = message
        self.status = status
    }
    public var description: String { message }
}

/// A warning or note for the person running Quarry, on stderr as "quarry: <message>".
public func printError(_ message: String) {
    FileHandle.standardError.write(Data("quarry: \(message)\n".utf8))
}
