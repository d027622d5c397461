// Discovery of OpenCL platforms and devices. It runs once per process; a machine without an
// OpenCL platform (no ICD installed, or the loader finds none) is a normal outcome: the list is
// empty and `discoveryError` says why, and the CPU backend is unaffected.

import COpenCL
import Foundation
import Quarry

public struct OpenCLPlatformInfo: Sendable, Hashable {
    public var name: String
    public var vendor: String
    public var version: String
}

public enum OpenCLRuntime {
    // @unchecked: made once by a static initialiser (which Swift runs once) and only read.
    private struct Discovery: @unchecked Sendable {
        var platforms: [OpenCLPlatformInfo] = []
        var devices: [OpenCLDevice] = []
        var error: String?
    }

    private static let discovery: Discovery = discover()

    /// Every usable device of every platform, numbered across platforms as `opencl:N`.
    public static func devices() -> [OpenCLDevice] { discovery.devices }

    /// The platforms found, in the ICD loader's order.
    public static var platforms: [OpenCLPlatformInfo] { discovery.platforms }

    /// Why no device is available (nil when discovery found at least one, or found platforms
    /// with devices that failed to open, in which case the reason is here too).
    public static var discoveryError: String? { discovery.error }

    /// The device a spec names: "opencl" (the first) or "opencl:N".
    public static func device(spec: String) throws -> OpenCLDevice {
        let all = devices()
        let s = spec.lowercased()
        let index: Int
        if s == "opencl" {
            index = 0
        } else if s.hasPrefix("opencl:"), let n = Int(s.dropFirst(7)), n >= 0 {
            index = n
        } else {
            throw QuarryError.invalidArgument("bad OpenCL device '\(spec)': expected opencl or opencl:N")
        }
        guard index < all.count else {
            let why = discoveryError.map { " (\($0))" } ?? ""
            throw QuarryError.device("no device \(spec): \(all.count) OpenCL device(s) found\(why)")
        }
        return all[index]
    }

    private static func discover() -> Discovery {
        var result = Discovery()
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        if status == -1001 || (status == CL_SUCCESS && count == 0) {
            result.error = "no OpenCL platform is installed (the ICD loader found none; install a driver, e.g. pocl-opencl-icd)"
            return result
        }
        guard status == CL_SUCCESS else {
            result.error = "clGetPlatformIDs failed: \(clStatusName(status)) (\(status))"
            return result
        }
        var ids = [cl_platform_id?](repeating: nil, count: Int(count))
        guard clGetPlatformIDs(count, &ids, nil) == CL_SUCCESS else {
            result.error = "clGetPlatformIDs could not list \(count) platforms"
            return result
        }
        var problems: [String] = []
        for p in ids {
            let info = OpenCLPlatformInfo(
                name: platformString(p, CL_PLATFORM_NAME), vendor: platformString(p, CL_PLATFORM_VENDOR),
                version: platformString(p, CL_PLATFORM_VERSION))
            result.platforms.append(info)
            var n: cl_uint = 0
            let st = clGetDeviceIDs(p, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &n)
            if st == CL_DEVICE_NOT_FOUND || n == 0 { continue }
            guard st == CL_SUCCESS else {
                problems.append("platform '\(info.name)': clGetDeviceIDs failed: \(clStatusName(st))")
                continue
            }
            var devs = [cl_device_id?](repeating: nil, count: Int(n))
            guard clGetDeviceIDs(p, cl_device_type(CL_DEVICE_TYPE_ALL), n, &devs, nil) == CL_SUCCESS else { continue }
            for d in devs {
                let spec = "opencl:\(result.devices.count)"
                do {
                    result.devices.append(try OpenCLDevice(platform: p, device: d, platformInfo: info, spec: spec))
                } catch {
                    problems.append("\(deviceString(d, CL_DEVICE_NAME)): \(error)")
                }
            }
        }
        if result.devices.isEmpty {
            result.error = problems.isEmpty
                ? "OpenCL platforms found (\(result.platforms.map(\.name).joined(separator: ", "))) but no devices"
                : problems.joined(separator: "; ")
        } else if !problems.isEmpty {
            result.error = problems.joined(separator: "; ")
        }
        return result
    }
}
