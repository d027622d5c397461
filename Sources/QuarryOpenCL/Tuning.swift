// The GEMM autotuner (`quarry tune`). gemm.cl takes its tile sizes, work-group shape and vector
// width as build options; which are fastest depends on the device, so they are measured there, as
// CLBlast's tuner does: every candidate of the parameter space is built, run on random operands of
// each shape class, checked against a float64 reference on sampled elements, and timed; the
// fastest correct one wins. Winners are stored beside the program cache, one file per device,
// keyed by the device, its driver and a hash of gemm.cl, so a driver or kernel change invalidates
// them. A table for known devices ships in the repository (Kernels/tuned.json, embedded like the
// kernels) for users who never run the tuner; other devices use safe defaults.

import COpenCL
import Foundation
import Quarry

/// One measured candidate.
public struct TuningResult: Sendable, Codable {
    public var variant: String
    public var parameters: [String: Int]
    public var shape: [Int]
    /// Median seconds of one GEMM, or nil when the candidate failed.
    public var seconds: Double?
    public var gflops: Double?
    /// Largest |got - expected| / (1 + |expected|) over the sampled elements.
    public var error: Double?
    /// Why the candidate was dropped (build failure, wrong result, work-group too large).
    public var rejected: String?
}

/// What a device's tuning file holds.
public struct TunedDevice: Sendable, Codable {
    /// Device, driver and kernel source the winners were measured for.
    public var key: String
    public var device: String
    public var driver: String
    public var gemm: [String: Int]
    public var gemmVariant: String
    public var gemmGFLOPS: Double
    public var measuredAt: String
}

public enum GEMMTuner {
    /// Shapes measured per candidate: GEMMs as (M, N, K), a square layer-sized one and a
    /// tall-skinny one like a 1x1 convolution of a small image batch; and a 3x3 convolution as
    /// (batch, C, H, W, O, kernel, stride, padding), since the schedule also drives convolutions
    /// (the implicit GEMM where the tiles are in local memory, im2col's panels elsewhere). A CPU
    /// device gets smaller ones (PoCL runs kernels at CPU speed).
    static func shapeClasses(for device: OpenCLDevice) -> [[Int]] {
        device.hasDedicatedLocalMemory
            ? [[2048, 2048, 2048], [256, 12544, 64], [32, 128, 28, 28, 128, 3, 1, 1]]
            : [[256, 256, 256], [64, 1568, 64], [1, 32, 28, 28, 32, 3, 1, 1]]
    }

    /// The parameter space: register blocking for every device; local-memory tiles where local
    /// memory is on chip. Candidates a device cannot launch are left out before building.
    static func candidates(for device: OpenCLDevice) -> [KernelVariant] {
        var out: [KernelVariant] = []
        for tm in [4, 8] { for vw in [4, 8, 16] { for nv in [1, 2] where vw * nv <= 32 {
            out.append(KernelVariant("opencl.gemm.register", ["tm": tm, "vw": vw, "nv": nv]))
        } } }
        if device.hasDedicatedLocalMemory {
            for (lm, ln) in [(8, 8), (8, 16), (16, 8), (16, 16), (8, 32), (32, 8)] where lm * ln <= device.maxWorkGroupSize {
                for (wm, wn) in [(4, 4), (4, 8), (8, 4), (8, 8)] { for tk in [8, 16, 32] {
                    let v = KernelVariant("opencl.gemm.tiled", ["lm": lm, "ln": ln, "wm": wm, "wn": wn, "tk": tk])
                    // Two double-buffered tiles in local memory; tiles over 128 x 128 spill registers.
                    guard GEMMSchedule(v).localMemoryBytes <= device.info.localMemoryBytes,
                          lm * wm <= 128, ln * wn <= 128 else { continue }
                    out.append(v)
                } }
            }
        }
        return out
    }

    /// The key a device's winners are stored under: device, driver, platform and gemm.cl's text.
    static func key(for device: OpenCLDevice) throws -> String {
        let source = try KernelSources.program("gemm")
        return "\(device.info.name) | \(device.info.vendor) | driver \(device.info.driverVersion) | \(device.platform.name) "
            + "\(device.platform.version) | gemm.cl \(String(fnv1a64(Array(source.utf8)), radix: 16))"
    }

    /// Where `device`'s tuning file lives: beside the program cache, or nil when that is off.
    static func file(for device: OpenCLDevice) -> URL? {
        guard let dir = CacheLocation.tuning else { return nil }
        let name = (device.info.name + "-" + device.info.driverVersion).map { $0.isLetter || $0.isNumber ? $0 : "_" }
        return dir.appendingPathComponent(String(name) + ".json")
    }

    /// The stored winner for `device`, if one was measured for this device, driver and gemm.cl;
    /// else the shipped table's entry for the device's name and driver; else nil.
    public static func tuned(for device: OpenCLDevice) -> (variant: KernelVariant, source: String)? {
        guard let key = try? key(for: device) else { return nil }
        if let url = file(for: device), let data = FileManager.default.contents(atPath: url.path),
           let t = try? JSONDecoder().decode(TunedDevice.self, from: data), t.key == key {
            return (KernelVariant(t.gemmVariant, t.gemm), url.path)
        }
        if let text = KernelSources.data("tuned.json"),
           let shipped = try? JSONDecoder().decode([TunedDevice].self, from: Data(text.utf8)),
           let t = shipped.first(where: { $0.key == key }) {
            return (KernelVariant(t.gemmVariant, t.gemm), "the shipped table (Kernels/tuned.json)")
        }
        return nil
    }

    /// Measures every candidate on every shape class, returns the results (in order) and the
    /// winner (the candidate correct on every class with the least total time), and stores it.
    /// `maxCandidates` measures the device's current schedule and an even spread of the rest
    /// (a quick check); `shapes` replaces the shape classes (tests).
    public static func tune(_ device: OpenCLDevice, repeats: Int = 3, store: Bool = true, maxCandidates: Int? = nil,
                            shapes: [[Int]]? = nil,
                            progress: (TuningResult) -> Void = { _ in }) throws -> (results: [TuningResult], winner: TunedDevice) {
        var results: [TuningResult] = []
        var totals: [String: (variant: KernelVariant, seconds: Double, flops: Double, ok: Bool)] = [:]
        let classes = shapes ?? shapeClasses(for: device)
        var space = candidates(for: device)
        if let limit = maxCandidates, limit < space.count {
            let current = device.gemmVariant
            let rest = space.filter { $0 != current }
            let spread = (0..<max(limit - 1, 0)).map { rest[$0 * rest.count / max(limit - 1, 1)] }
            space = [current] + spread
        }
        for candidate in space {
            for shape in classes {
                var r = TuningResult(variant: candidate.name, parameters: candidate.parameters, shape: shape)
                do {
                    let (bench, error) = shape.count == 8
                        ? try device.benchmarkConv2D(batch: shape[0], inChannels: shape[1], height: shape[2], width: shape[3],
                                                     outChannels: shape[4], kernel: shape[5], stride: shape[6], padding: shape[7],
                                                     groups: 1, repeats: repeats, schedule: GEMMSchedule(candidate), checkSamples: 64)
                        : try device.benchmarkGEMM(m: shape[0], n: shape[1], k: shape[2], repeats: repeats,
                                                   schedule: GEMMSchedule(candidate), checkSamples: 64)
                    r.seconds = bench.medianSeconds
                    r.gflops = bench.medianGFLOPS
                    r.error = error
                    if error > 1e-3 { r.rejected = "wrong result: error \(error)" }
                } catch {
                    r.rejected = "\(error)"
                }
                results.append(r)
                progress(r)
                var t = totals[candidate.key] ?? (candidate, 0, 0, true)
                t.seconds += r.seconds ?? .infinity
                t.flops += r.seconds.map { s in (r.gflops ?? 0) * 1e9 * s } ?? 0
                t.ok = t.ok && r.rejected == nil
                totals[candidate.key] = t
            }
        }
        guard let best = totals.values.filter(\.ok).min(by: { $0.seconds < $1.seconds }) else {
            throw QuarryError.device("\(device.info.spec): no GEMM candidate ran correctly (\(results.compactMap(\.rejected).prefix(3).joined(separator: "; ")))")
        }
        let stamp = ISO8601DateFormatter().string(from: Date())
        let winner = TunedDevice(key: try key(for: device), device: device.info.name, driver: device.info.driverVersion,
                                 gemm: best.variant.parameters, gemmVariant: best.variant.name,
                                 gemmGFLOPS: best.flops / best.seconds / 1e9, measuredAt: stamp)
        if store, let url = file(for: device) {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(winner).write(to: url, options: .atomic)
        }
        return (results, winner)
    }
}
