// `quarry test-ops`: a backend self-test in the spirit of ggml's test-backend-ops. Every op the
// device supports runs on random shapes (the conformance suite's case list, the one the test
// target runs) against the CPU path or the float64 reference, with per-op error bounds; or, with
// --perf, each case is timed. It needs no test toolchain, so a new GPU or driver can be checked
// anywhere the tool runs.

import ArgumentParser
import Foundation
import Quarry
import QuarryConformance
import QuarryCPU
import QuarryRuntime

struct TestOpsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-ops",
        abstract: "Check every op a device supports against the CPU path (or time them).",
        discussion: """
            Runs --cases-per-op random cases of each op (odd sizes, strides, groups, padding, \
            every optional operand, fused activations, batch 1 and large) as one-node graphs on \
            the device, and compares each with the CPU device's output (or the float64 reference) \
            under the op's error bound. Prints one row a case; with --json the last line is \
            {"device": ..., "passed": N, "failed": M, "cases": [...]}. A node that ran on the CPU \
            instead is reported as such, never counted as passed. Exit status 1 if any failed.

            A case is reproduced by its seed: --seed S --ops KEY gives the same cases.

            Ops: \(CaseList.keys.joined(separator: ",")).
            Groups: \(CaseList.groups.keys.sorted().joined(separator: ",")).
            Examples:
              quarry test-ops --device opencl:0
              quarry test-ops --device opencl:0 --ops conv2d,gemm --json
              quarry test-ops --device cpu --reference float64 --seed 42
              quarry test-ops --device opencl:0 --ops conv2d --perf
            """)

    @Option(name: .long, help: "The device to test: cpu, opencl or opencl:N.")
    var device: String = "opencl"

    @Option(name: .long, help: "Ops to run, a comma list of op names and groups (default: every op).")
    var ops: String?

    @Option(name: .long, help: "Seed of the random cases (default: from the clock, printed).")
    var seed: UInt64?

    @Option(name: .long, help: "Cases of each op.")
    var casesPerOp: Int = 8

    @Option(name: .long, help: "What results are compared with: cpu (the CPU device) or float64 (the reference).")
    var reference: String = "cpu"

    @Option(name: .long, help: "Arithmetic: fp32 (default), tf32, bf16 or fp16, where the device has it; the bounds of product ops widen with it.")
    var precision: String = "fp32"

    @Flag(name: .long, help: "Time each case instead of checking it.")
    var perf = false

    @Flag(name: .long, help: "End with one JSON line: device, passed, failed, cases.")
    var json = false

    @Option(name: .long, help: "Threads for the CPU backend (default: every core).")
    var cpuThreads: Int?

    func validate() throws {
        if casesPerOp < 1 { throw ValidationError("--cases-per-op must be at least 1") }
        if !["cpu", "float64"].contains(reference) { throw ValidationError("--reference must be cpu or float64, got '\(reference)'") }
        if device.contains(",") || device == "all" { throw ValidationError("--device takes one device, got '\(device)'") }
        if let n = cpuThreads, n < 1 { throw ValidationError("--cpu-threads must be at least 1") }
    }

    func run() throws {
        try exitingOnError {
            let devices = try resolveDevices(device, cpuThreads: cpuThreads)
            let target = devices[0]
            // A mode the device lacks is refused with its reason (every kernel is fp32 so far).
            let precision = try resolvePrecision(self.precision, on: devices)
            let keys = try ops.map { try CaseList.select($0) } ?? CaseList.keys
            let seed = self.seed ?? UInt64(Date().timeIntervalSince1970 * 1e6)
            // The CPU checked against itself would prove nothing: it is checked against float64.
            let against: Baseline
            if reference == "float64" || target.info.kind == .cpu {
                against = .float64
            } else {
                against = .cpu(CPUDevice(threads: cpuThreads))
            }
            let all = CaseList.cases(seed: seed, perOp: casesPerOp, keys: keys)
            let cases = all.filter { target.supports($0.op) }
            let unsupported = Set(all.filter { !target.supports($0.op) }.map(\.key))
            let againstName: String
            if case .cpu = against { againstName = "the CPU device" } else { againstName = "the float64 reference" }
            say("\(target.info.spec) (\(target.info.name)): \(cases.count) cases of \(keys.count) ops, seed \(seed), "
                + (perf ? "timed" : "against \(againstName)"))
            if !unsupported.isEmpty {
                say("not run (forms the device does not support): \(unsupported.sorted().joined(separator: ", "))")
            }
            say(perf ? row("result", "case", "ms", "GFLOP/s", "form", "shapes", "attributes")
                       : row("result", "case", "max error", "bound", "form", "shapes", "attributes"))
            var results: [CaseResult] = []
            for c in cases {
                let r = perf ? timeCase(c, on: target) : checkCase(c, on: target, against: against, precision: precision)
                results.append(r)
                let status = r.status == .fallback ? "CPU" : r.status == .passed ? "ok" : "FAIL"
                if perf {
                    say(row(status, r.name, r.seconds.map { String(format: "%.3f", $0 * 1e3) } ?? "-",
                              r.gflops.map { String(format: "%.1f", $0) } ?? "-", r.form, r.shapes, r.attributes))
                } else {
                    say(row(status, r.name, String(format: "%.2e", r.maxError), String(format: "%.2e", r.bound),
                              r.form, r.shapes, r.attributes))
                }
                if r.status == .failed, let m = r.message { say("\tFAIL \(r.name): \(m)") }
                if r.fellBack { say("\t\(r.name) ran on the CPU: \(r.fallbackReason ?? "")") }
            }
            let passed = results.filter { $0.status == .passed }.count
            let failed = results.filter { $0.status == .failed }.count
            let fellBack = results.filter { $0.status == .fallback }.count
            say("\(passed) passed, \(failed) failed, \(fellBack) ran on the CPU (documented forms; not counted as passed)"
                + (failed > 0 ? "; rerun with --seed \(seed) --ops <op>" : ""))
            if json {
                say(try summaryJSON(device: target.info.spec, passed: passed, failed: failed, cases: results))
            }
            if failed > 0 { throw ExitCode(ExitStatus.failure.rawValue) }
        }
    }

    func row(_ cells: String...) -> String {
        let widths = [6, 22, 10, 10, 10, 28]
        return cells.enumerated().map { i, s in i < widths.count ? s.padding(toLength: max(widths[i], s.count), withPad: " ", startingAt: 0) : s }
            .joined(separator: " ")
    }
}

/// The --json line. Keys are the issue's (device, passed, failed, cases); each case's keys are
/// snake case; infinite errors (a NaN or a wrong shape) are written as the string "inf".
func summaryJSON(device: String, passed: Int, failed: Int, cases: [CaseResult]) throws -> String {
    struct Summary: Encodable {
        var device: String
        var passed: Int
        var failed: Int
        var cases: [CaseResult]
    }
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    e.keyEncodingStrategy = .convertToSnakeCase
    e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return String(decoding: try e.encode(Summary(device: device, passed: passed, failed: failed, cases: cases)), as: UTF8.self)
}

/// A line on stdout written at once (print buffers when stdout is a pipe), so that CI logs and a
/// watching script see one row a case as it finishes.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
