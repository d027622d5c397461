// Options shared by the subcommands, and turning a device spec into devices.

import ArgumentParser
import Foundation
import Quarry
import QuarryCPU

struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "Devices: cpu, opencl, opencl:N, a comma list of them, or all.")
    var device: String = "cpu"

    @Option(name: .long, help: "Threads for the CPU backend (default: every core).")
    var cpuThreads: Int?

    @Option(name: .long, help: "Items each device takes at a time (default: chosen per device from its measured speed and memory).")
    var microBatch: Int?

    func validate() throws {
        if let n = cpuThreads, n < 1 { throw ValidationError("--cpu-threads must be at least 1") }
        if let n = microBatch, n < 1 { throw ValidationError("--micro-batch must be at least 1") }
    }

    func devices() throws -> [Device] {
        try resolveDevices(device, cpuThreads: cpuThreads)
    }
}

/// Exit statuses, documented in README.md.
enum ExitStatus: Int32 {
    /// Everything ran.
    case success = 0
    /// Bad usage or bad input (a file, a model, a shape): nothing useful was written.
    case failure = 1
    /// `extract` finished but some inputs could not be read; they are named on stderr and in the manifest.
    case partial = 3
    /// Interrupted (Ctrl-C); `extract --resume` continues.
    case interrupted = 130
}

/// A user-facing error: printed as "quarry: <message>" and exits with `status`.
struct ToolError: Error, CustomStringConvertible {
    var message: String
    var status: ExitStatus = .failure
    var description: String { message }
}

/// Parses a device spec into devices, in the order given. "all" is every OpenCL device and the CPU.
func resolveDevices(_ spec: String, cpuThreads: Int?) throws -> [Device] {
    var result: [Device] = []
    var seen = Set<String>()
    for raw in spec.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) {
        let picked: [Device]
        switch raw {
        case "cpu":
            picked = [CPUDevice(threads: cpuThreads)]
        case "all":
            picked = ((try? openCLDevices()) ?? []) + [CPUDevice(threads: cpuThreads)]
        case "opencl":
            let all = try openCLDevices()
            guard let first = all.first else { throw ToolError(message: "no OpenCL device found") }
            picked = [first]
        case let s where s.hasPrefix("opencl:"):
            guard let n = Int(s.dropFirst("opencl:".count)), n >= 0 else {
                throw ToolError(message: "bad device '\(raw)': expected opencl:N with N a device number")
            }
            let all = try openCLDevices()
            guard n < all.count else {
                throw ToolError(message: "no device opencl:\(n): \(all.count) OpenCL device(s) found (see `quarry devices`)")
            }
            picked = [all[n]]
        default:
            throw ToolError(message: "unknown device '\(raw)': use cpu, opencl, opencl:N, a comma list, or all")
        }
        for d in picked where !seen.contains(d.info.spec) {
            seen.insert(d.info.spec)
            result.append(d)
        }
    }
    guard !result.isEmpty else { throw ToolError(message: "no device selected by '\(spec)'") }
    return result
}

/// Runs a command's work and turns what it throws into a message on stderr and the documented
/// exit status: a ToolError carries its own, anything else is a failure (1).
func exitingOnError(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ToolError {
        printError(e.message)
        throw ExitCode(e.status.rawValue)
    } catch let e as ExitCode {
        throw e
    } catch {
        printError("\(error)")
        throw ExitCode(ExitStatus.failure.rawValue)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("quarry: \(message)\n".utf8))
}

/// A JSON line from an encodable value, keys sorted so that outputs compare across runs.
func jsonLine<T: Encodable>(_ value: T) throws -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    e.keyEncodingStrategy = .convertToSnakeCase
    return String(decoding: try e.encode(value), as: UTF8.self)
}
