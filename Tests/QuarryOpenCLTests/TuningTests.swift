// The GEMM tuner on the test device: candidates measured and checked on odd shapes, the winner
// stored beside the program cache and found again for this device, driver and gemm.cl only.

import Foundation
import Quarry
@testable import QuarryOpenCL
import XCTest

final class TuningTests: XCTestCase {
    func testTuneStoresAWinnerFoundOnlyForTheSameDeviceAndKernel() throws {
        let device = try testDevice()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("quarry-tune-\(UUID().uuidString)")
        let kernels = dir.appendingPathComponent("kernels")
        setenv("QUARRY_CACHE_DIR", kernels.path, 1)
        defer { unsetenv("QUARRY_CACHE_DIR"); try? FileManager.default.removeItem(at: dir) }

        var seen: [TuningResult] = []
        let (results, winner) = try GEMMTuner.tune(device, repeats: 1, maxCandidates: 2, shapes: [[33, 70, 17], [5, 129, 40]]) { seen.append($0) }
        XCTAssertEqual(results.count, 4, "two candidates on two shapes")
        XCTAssertEqual(seen.count, results.count)
        XCTAssertEqual(results.first?.variant, device.gemmVariant.name, "the current schedule is always measured")
        for r in results {
            XCTAssertNil(r.rejected, "\(r)")
            XCTAssertLessThan(r.error ?? 1, 1e-5, "candidate \(r.parameters) on \(r.shape)")
            XCTAssertGreaterThan(r.gflops ?? 0, 0)
        }
        XCTAssertTrue(results.contains { $0.variant == winner.gemmVariant && $0.parameters == winner.gemm })

        let file = try XCTUnwrap(GEMMTuner.file(for: device))
        XCTAssertEqual(file.deletingLastPathComponent().lastPathComponent, "tuning")
        XCTAssertTrue(FileManager.default.fileExists(atPath: file.path))
        let found = try XCTUnwrap(GEMMTuner.tuned(for: device))
        XCTAssertEqual(found.variant, KernelVariant(winner.gemmVariant, winner.gemm))

        // A file measured for another driver (or another gemm.cl) is not used.
        var stale = winner
        stale.key = winner.key.replacingOccurrences(of: "driver ", with: "driver 0.0-")
        try JSONEncoder().encode(stale).write(to: file)
        XCTAssertNil(GEMMTuner.tuned(for: device))
    }

    /// A candidate that computes a wrong product is rejected, not crowned: a register schedule
    /// whose tile the checked shapes cover, compared with the reference on sampled elements.
    func testCandidatesAreCheckedAgainstTheReference() throws {
        let device = try testDevice()
        let (bench, error) = try device.benchmarkGEMM(m: 19, n: 37, k: 23, repeats: 1,
                                                      schedule: GEMMSchedule(tiled: false, tm: 4, vw: 8, nv: 2), checkSamples: 32)
        XCTAssertGreaterThan(bench.flops, 0)
        XCTAssertLessThan(error, 1e-5)
    }

    /// The convolution class the tuner measures checks its output too, under both kinds of
    /// schedule (the tiled one gathers the column matrix itself).
    func testConvolutionCandidatesAreChecked() throws {
        let device = try testDevice()
        for schedule in [GEMMSchedule(tiled: false, tm: 4, vw: 8, nv: 2),
                         GEMMSchedule(KernelVariant("opencl.gemm.tiled", ["lm": 4, "ln": 8, "wm": 2, "wn": 2, "tk": 8]))] {
            let (bench, error) = try device.benchmarkConv2D(batch: 2, inChannels: 5, height: 9, width: 11, outChannels: 7, kernel: 3,
                                                            stride: 2, padding: 1, groups: 1, repeats: 1, schedule: schedule, checkSamples: 32)
            XCTAssertGreaterThan(bench.flops, 0)
            XCTAssertLessThan(error, 1e-5, "\(schedule.variant)")
        }
    }
}
