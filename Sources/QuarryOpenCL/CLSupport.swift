// Thin helpers over the OpenCL C API: status checks that name the call and the error, and typed
// info queries. Everything above this file speaks Swift types and QuarryError.

import COpenCL
import Foundation
import Quarry

/// The symbolic name of an OpenCL status code, for error messages.
func clStatusName(_ status: cl_int) -> String {
    switch status {
    case CL_SUCCESS: return "CL_SUCCESS"
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND"
    case CL_DEVICE_NOT_AVAILABLE: return "CL_DEVICE_NOT_AVAILABLE"
    case CL_COMPILER_NOT_AVAILABLE: return "CL_COMPILER_NOT_AVAILABLE"
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE"
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES"
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY"
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE"
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE"
    case CL_INVALID_PLATFORM: return "CL_INVALID_PLATFORM"
    case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE"
    case CL_INVALID_CONTEXT: return "CL_INVALID_CONTEXT"
    case CL_INVALID_COMMAND_QUEUE: return "CL_INVALID_COMMAND_QUEUE"
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT"
    case CL_INVALID_BINARY: return "CL_INVALID_BINARY"
    case CL_INVALID_BUILD_OPTIONS: return "CL_INVALID_BUILD_OPTIONS"
    case CL_INVALID_PROGRAM: return "CL_INVALID_PROGRAM"
    case CL_INVALID_PROGRAM_EXECUTABLE: return "CL_INVALID_PROGRAM_EXECUTABLE"
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME"
    case CL_INVALID_KERNEL: return "CL_INVALID_KERNEL"
    case CL_INVALID_ARG_INDEX: return "CL_INVALID_ARG_INDEX"
    case CL_INVALID_ARG_VALUE: return "CL_INVALID_ARG_VALUE"
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE"
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS"
    case CL_INVALID_WORK_DIMENSION: return "CL_INVALID_WORK_DIMENSION"
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE"
    case CL_INVALID_WORK_ITEM_SIZE: return "CL_INVALID_WORK_ITEM_SIZE"
    case CL_INVALID_GLOBAL_OFFSET: return "CL_INVALID_GLOBAL_OFFSET"
    case CL_INVALID_EVENT_WAIT_LIST: return "CL_INVALID_EVENT_WAIT_LIST"
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE"
    case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE"
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR"
    default: return "OpenCL error"
    }
}

/// Throws a device error naming the call when `status` is not CL_SUCCESS.
@inline(__always)
func clCheck(_ status: cl_int, _ what: @autoclosure () -> String) throws {
    if status != CL_SUCCESS {
        throw QuarryError.device("\(what()) failed: \(clStatusName(status)) (\(status))")
    }
}

/// Where the backend reports what it chose and why (fallbacks to the CPU, rebuilt cache entries).
/// Defaults to standard error; tests and the CLI replace the handler.
public enum OpenCLLog {
    nonisolated(unsafe) private static var handler: (@Sendable (String) -> Void) = { message in
        FileHandle.standardError.write(Data("quarry opencl: \(message)\n".utf8))
    }
    private static let lock = NSLock()

    public static func setHandler(_ h: @escaping @Sendable (String) -> Void) {
        lock.lock(); handler = h; lock.unlock()
    }

    public static func log(_ message: String) {
        lock.lock(); let h = handler; lock.unlock()
        h(message)
    }
}

func platformString(_ p: cl_platform_id?, _ param: Int32) -> String {
    var size = 0
    guard clGetPlatformInfo(p, cl_platform_info(param), 0, nil, &size) == CL_SUCCESS, size > 0 else { return "" }
    var bytes = [CChar](repeating: 0, count: size + 1)
    guard clGetPlatformInfo(p, cl_platform_info(param), size, &bytes, nil) == CL_SUCCESS else { return "" }
    return String(cString: bytes).trimmingCharacters(in: .whitespaces)
}

func deviceString(_ d: cl_device_id?, _ param: Int32) -> String {
    var size = 0
    guard clGetDeviceInfo(d, cl_device_info(param), 0, nil, &size) == CL_SUCCESS, size > 0 else { return "" }
    var bytes = [CChar](repeating: 0, count: size + 1)
    guard clGetDeviceInfo(d, cl_device_info(param), size, &bytes, nil) == CL_SUCCESS else { return "" }
    return String(cString: bytes).trimmingCharacters(in: .whitespaces)
}

func deviceValue<T: FixedWidthInteger>(_ d: cl_device_id?, _ param: Int32, as: T.Type) -> T {
    var v: T = 0
    _ = clGetDeviceInfo(d, cl_device_info(param), MemoryLayout<T>.size, &v, nil)
    return v
}
