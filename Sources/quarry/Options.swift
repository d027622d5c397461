// Options shared by the subcommands, and turning what a command throws into its exit status.

import ArgumentParser
import Foundation
import Quarry
import QuarryCPU
import QuarryRuntime

struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "Devices: cpu, opencl, opencl:N, a comma list of them, or all.")
    var device: String = "cpu"

    @Option(name: .long, help: "Threads for the CPU backend (default: every core).")
    var cpuThreads: Int?

    @Option(name: .long, help: "Items each device takes at a time (default: chosen per device from its measured speed and memory).")
    var microBatch: Int?

    @Option(name: .long, help: "Arithmetic: fp32 (default), tf32, bf16 or fp16, where every chosen device has it.")
    var precision: String = "fp32"

    func validate() throws {
        if let n = cpuThreads, n < 1 { throw ValidationError("--cpu-threads must be at least 1") }
        if let n = microBatch, n < 1 { throw ValidationError("--micro-batch must be at least 1") }
    }

    /// The chosen devices, after checking that each runs the chosen precision.
    func devices() throws -> [Device] {
        let devices = try resolveDevices(device, cpuThreads: cpuThreads)
        _ = try resolvePrecision(precision, on: devices)
        return devices
    }
}

/// Runs a command's work and turns what it throws into a message on stderr and the documented
/// exit status: a RuntimeError carries its own, anything else is a failure (1).
func exitingOnError(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as RuntimeError {
        printError(e.message)
        throw ExitCode(e.status.rawValue)
    } catch let e as ExitCode {
        throw e
    } catch {
        printError("\(error)")
        throw ExitCode(ExitStatus.failure.rawValue)
    }
}

/// A JSON line from an encodable value, keys sorted so that outputs compare across runs.
func jsonLine<T: Encodable>(_ value: T) throws -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    e.keyEncodingStrategy = .convertToSnakeCase
    return String(decoding: try e.encode(value), as: UTF8.self)
}
