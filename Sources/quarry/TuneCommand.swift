// `quarry tune`: measures the GEMM schedules of an OpenCL device (tile sizes, work-group shape,
// vector width), checks each candidate's result, and stores the fastest correct one beside the
// program cache, where every later run on that device and driver picks it up.

import ArgumentParser
import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL
import QuarryRuntime

struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Measure and store the fastest GEMM schedule of an OpenCL device, or the CPU's GEMM blocking.",
        discussion: """
            Every candidate (register-blocked, and local-memory tiles where the device has local
            memory on chip) is built, run on random operands of a square and a tall-skinny GEMM and a 3x3 convolution,
            checked against a float64 reference on sampled elements, and timed. The winner is
            stored in the tuning folder beside the program cache (QUARRY_CACHE_DIR), keyed by the
            device, its driver and gemm.cl; `quarry devices` shows which schedule a device uses.
            Example:
              quarry tune --device opencl:0 --json
            With --device cpu it measures the CPU GEMM's cache blocking (KC, MC, NC) around the
            values derived from the host's cache sizes, on a square, a convolution-shaped and a
            BERT-shaped GEMM at every thread (or --cpu-threads), checks each candidate against
            float64, and stores the fastest per host (CPU model, kernel variant, cache sizes) in
            the same tuning folder; later processes use it. `quarry devices` shows the blocking.
            """)

    @Option(name: .long, help: "The device to tune: opencl, opencl:N, or cpu.")
    var device: String = "opencl:0"

    @Option(name: .long, help: "Threads for the CPU's measurement (default: every core).")
    var cpuThreads: Int?

    @Option(name: .long, help: "Timed runs per candidate and shape (the median counts).")
    var repeats: Int = 3

    @Option(name: .long, help: "Measure only the current schedule and an even spread of this many in all (a quick check).")
    var maxCandidates: Int?

    @Flag(name: .long, help: "Measure and print, but store nothing.")
    var dryRun = false

    @Flag(name: .long, help: "End with one JSON line holding the results.")
    var json = false

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
        if let n = maxCandidates, n < 1 { throw ValidationError("--max-candidates must be at least 1") }
    }

    func run() throws {
        try exitingOnError {
            if device == "cpu" { try tuneCPU(); return }
            let devices = try resolveDevices(device, cpuThreads: nil)
            guard devices.count == 1, let cl = devices[0] as? OpenCLDevice else {
                throw RuntimeError(message: "quarry tune measures one OpenCL device or the CPU; '\(device)' is neither (use opencl:N or cpu)")
            }
            print("tuning GEMM on \(cl.info.spec) (\(cl.info.name), driver \(cl.info.driverVersion)); now: \(cl.gemmVariant) [\(cl.gemmScheduleSource)]")
            let (results, winner) = try GEMMTuner.tune(cl, repeats: repeats, store: !dryRun, maxCandidates: maxCandidates) { r in
                let params = r.parameters.keys.sorted().map { "\($0)=\(r.parameters[$0]!)" }.joined(separator: ",")
                let shape = r.shape.map(String.init).joined(separator: "x")
                if let why = r.rejected {
                    print(String(format: "  %-22@ %-16@ %-16@ rejected: %@", r.variant as NSString, params as NSString, shape as NSString, why as NSString))
                } else {
                    print(String(format: "  %-22@ %-16@ %-16@ %9.1f GFLOP/s  error %.1e", r.variant as NSString, params as NSString,
                                 shape as NSString, r.gflops ?? 0, r.error ?? 0))
                }
            }
            let params = winner.gemm.keys.sorted().map { "\($0)=\(winner.gemm[$0]!)" }.joined(separator: ",")
            print(String(format: "winner: %@(%@), %.1f GFLOP/s over the shape classes", winner.gemmVariant, params, winner.gemmGFLOPS)
                  + (dryRun ? " (not stored: --dry-run)" : "; stored for \(cl.info.name), driver \(cl.info.driverVersion)"))
            if json {
                struct Report: Encodable {
                    var device: String
                    var name: String
                    var driver: String
                    var winner: TunedDevice
                    var stored: Bool
                    var results: [TuningResult]
                }
                print(try jsonLine(Report(device: cl.info.spec, name: cl.info.name, driver: cl.info.driverVersion,
                                          winner: winner, stored: !dryRun, results: results)))
            }
        }
    }

    /// The CPU's GEMM blocking, measured and stored.
    func tuneCPU() throws {
        let threads = CPUThreads(count: cpuThreads).count
        let now = HostBlocking.chosen
        print("tuning the CPU GEMM's blocking (\(CPUInstructionSet.active) kernels, \(threads) threads); now: \(now.blocking) [\(now.source)]")
        let (results, winner, gflops) = try CPUBlockingTuner.tune(threads: threads, repeats: repeats, store: !dryRun) { r in
            let shape = r.shape.map(String.init).joined(separator: "x")
            if let why = r.rejected {
                print(String(format: "  %-26@ %-16@ rejected: %@", r.blocking.description as NSString, shape as NSString, why as NSString))
            } else {
                print(String(format: "  %-26@ %-16@ %9.1f GFLOP/s  error %.1e", r.blocking.description as NSString, shape as NSString,
                             r.gflops ?? 0, r.error ?? 0))
            }
        }
        print(String(format: "winner: %@, %.1f GFLOP/s over the shape classes", winner.description, gflops)
              + (dryRun ? " (not stored: --dry-run)" : "; stored in \(HostBlocking.file?.path ?? "nowhere (QUARRY_CACHE_DIR=off)")"))
        if json {
            struct Report: Encodable {
                var device = "cpu"
                var name: String
                var key: String
                var winner: HostBlocking
                var gflops: Double
                var stored: Bool
                var results: [CPUBlockingTuner.Result]
            }
            print(try jsonLine(Report(name: CPUDevice(threads: threads).info.name, key: HostBlocking.hostKey, winner: winner,
                                      gflops: gflops, stored: !dryRun && HostBlocking.file != nil, results: results)))
        }
    }
}
