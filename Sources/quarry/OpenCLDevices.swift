// The OpenCL side of device selection, benchmarks and probes.

import Quarry
import QuarryOpenCL

/// The OpenCL devices of this machine, numbered as `opencl:N`; throws with the reason when there
/// are none (no platform, no ICD, no device).
func openCLDevices() throws -> [Device] {
    let all = OpenCLRuntime.devices()
    if all.isEmpty {
        throw ToolError(message: "no OpenCL device: \(OpenCLRuntime.discoveryError ?? "no platform reported a device")")
    }
    return all
}

func benchmarkOpenCLGEMM(_ device: Device, m: Int, n: Int, k: Int) throws -> (seconds: Double, gflops: Double, peak: Double) {
    guard let cl = device as? OpenCLDevice else { throw ToolError(message: "\(device.info.spec) is not an OpenCL device") }
    let limits = try measureOpenCLLimits(cl)
    let r = try cl.benchmarkGEMM(m: m, n: n, k: k)
    return (r.medianSeconds, r.medianGFLOPS, limits.peakGFLOPS)
}

func measureOpenCLLimits(_ device: Device) throws -> DeviceLimits {
    guard let cl = device as? OpenCLDevice else { throw ToolError(message: "\(device.info.spec) is not an OpenCL device") }
    return DeviceLimits(peakGFLOPS: try cl.measurePeakGFLOPS(), bandwidthGBps: try cl.measureBandwidthGBps())
}
