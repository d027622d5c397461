// Device specs ("cpu", "opencl:1", "cpu,opencl:0", "all") turned into devices, and each device's
// measured limits (fp32 peak and memory bandwidth) that benchmarks and rooflines compare against.

import Quarry
import QuarryCPU
import QuarryOpenCL

/// The OpenCL devices of this machine, numbered as `opencl:N`; throws with the reason when there
/// are none (no platform, no ICD, no device).
public func openCLDevices() throws -> [Device] {
    let all = OpenCLRuntime.devices()
    if all.isEmpty {
        throw RuntimeError(message: "no OpenCL device: \(OpenCLRuntime.discoveryError ?? "no platform reported a device")")
    }
    return all
}

/// Parses a device spec into devices, in the order given. "all" is every OpenCL device and the CPU.
public func resolveDevices(_ spec: String, cpuThreads: Int?) throws -> [Device] {
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
            guard let first = all.first else { throw RuntimeError(message: "no OpenCL device found") }
            picked = [first]
        case let s where s.hasPrefix("opencl:"):
            guard let n = Int(s.dropFirst("opencl:".count)), n >= 0 else {
                throw RuntimeError(message: "bad device '\(raw)': expected opencl:N with N a device number")
            }
            let all = try openCLDevices()
            guard n < all.count else {
                throw RuntimeError(message: "no device opencl:\(n): \(all.count) OpenCL device(s) found (see `quarry devices`)")
            }
            picked = [all[n]]
        default:
            throw RuntimeError(message: "unknown device '\(raw)': use cpu, opencl, opencl:N, a comma list, or all")
        }
        for d in picked where !seen.contains(d.info.spec) {
            seen.insert(d.info.spec)
            result.append(d)
        }
    }
    guard !result.isEmpty else { throw RuntimeError(message: "no device selected by '\(spec)'") }
    return result
}

/// The precision named `spec` ("fp32", "tf32", "bf16", "fp16"), checked against every device: a
/// mode some device cannot run is an error naming it, never a silent fall back to another. With a
/// CPU among the devices, the CPU's GEMMs run in that precision from then on in this process.
public func resolvePrecision(_ spec: String, on devices: [Device]) throws -> Precision {
    guard let precision = Precision(rawValue: spec.lowercased()) else {
        throw RuntimeError(message: "unknown precision '\(spec)': use \(Precision.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    for d in devices where precision != .fp32 {
        // Every kernel computes in fp32 so far; the first node of any graph answers for the device.
        let probe = Node(name: "probe", op: .activation(.relu), inputs: ["x"], outputs: ["y"])
        if let why = d.supports(probe, inputShapes: [[1]], precision: precision).reason {
            throw RuntimeError(message: "--precision \(precision.rawValue) is not available: \(why)")
        }
    }
    // The CPU's GEMM precision is process-wide (CPUGEMMPrecision): set it from this run's choice.
    if devices.contains(where: { $0 is CPUDevice }) {
        try CPUGEMMPrecision.set(precision)
        if precision == .bf16, let note = CPUGEMMPrecision.bf16SlowerThanFP32Note { printError(note) }
    }
    return precision
}

/// Measured limits of a device: fp32 peak and memory bandwidth.
public struct DeviceLimits: Sendable {
    public var peakGFLOPS: Double
    public var bandwidthGBps: Double
    /// The CPU's bf16 dot-product peak (vdpbf16ps), GFLOP/s-equivalent; nil where it has no bf16
    /// or the bf16 GEMM runs on AMX tiles instead.
    public var bf16PeakGFLOPS: Double?
    public init(peakGFLOPS: Double, bandwidthGBps: Double, bf16PeakGFLOPS: Double? = nil) {
        self.peakGFLOPS = peakGFLOPS
        self.bandwidthGBps = bandwidthGBps
        self.bf16PeakGFLOPS = bf16PeakGFLOPS
    }
}

extension DeviceLimits {
    /// The compute peak a run in `precision` is read against: the bf16 dot product's where the
    /// CPU's bf16 GEMM runs on vdpbf16ps (half the fp32 FMA rate on some Intel hosts, twice it on
    /// Zen 4), else the fp32 FMA peak (AMX's is not measured: a bf16 run on AMX reads against fp32's).
    public func computePeak(_ precision: Precision) -> Double {
        precision == .bf16 ? bf16PeakGFLOPS ?? peakGFLOPS : peakGFLOPS
    }

    /// These limits with the compute peak of `precision` in place of the fp32 one.
    public func reading(_ precision: Precision) -> DeviceLimits {
        DeviceLimits(peakGFLOPS: computePeak(precision), bandwidthGBps: bandwidthGBps, bf16PeakGFLOPS: bf16PeakGFLOPS)
    }
}

/// Measures `device`'s limits: an FMA loop and a streaming kernel (takes seconds), and with
/// `bf16` a CPU's vdpbf16ps loop where its bf16 GEMM runs on that instruction.
public func measureLimits(_ device: Device, bf16 measureBF16: Bool = true) throws -> DeviceLimits {
    if let cpu = device as? CPUDevice {
        let bf16 = measureBF16 ? measureBF16PeakGFLOPS(threads: cpu.threads) : nil
        return DeviceLimits(peakGFLOPS: measureFP32PeakGFLOPS(threads: cpu.threads),
                            bandwidthGBps: measureMemoryBandwidthGBps(threads: cpu.threads), bf16PeakGFLOPS: bf16)
    }
    guard let cl = device as? OpenCLDevice else { throw RuntimeError(message: "\(device.info.spec): no way to measure its limits") }
    return DeviceLimits(peakGFLOPS: try cl.measurePeakGFLOPS(), bandwidthGBps: try cl.measureBandwidthGBps())
}

/// Times an OpenCL SGEMM of m x n x k on `device` (median of its runs) against its measured peak.
public func benchmarkOpenCLGEMM(_ device: Device, m: Int, n: Int, k: Int) throws -> (seconds: Double, gflops: Double, peak: Double) {
    guard let cl = device as? OpenCLDevice else { throw RuntimeError(message: "\(device.info.spec) is not an OpenCL device") }
    let limits = try measureLimits(cl)
    let r = try cl.benchmarkGEMM(m: m, n: n, k: k)
    return (r.medianSeconds, r.medianGFLOPS, limits.peakGFLOPS)
}
