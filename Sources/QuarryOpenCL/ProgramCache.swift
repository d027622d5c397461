// Built programs, in memory and on disk. A program is identified by its source text (hashed),
// its build options, and the device, driver and platform versions that compiled it; the disk entry
// stores the compiled binary (clGetProgramInfo CL_PROGRAM_BINARIES) behind a header holding that
// key and a checksum, so that a second run of the tool compiles nothing, and an entry that is
// truncated, corrupt, or from another driver is detected, logged and rebuilt.
//
// Entry layout: "QCLB" | version u32 | key length u32 | key (UTF-8) | binary length u64 |
// checksum u64 (FNV-1a of the binary) | binary. Written to a temporary file and renamed into
// place, so that readers never see half an entry and concurrent writers do not corrupt each other.

import COpenCL
import Foundation
import Quarry

/// A kernel file failed to compile: the compiler's log, the file and the options.
public struct OpenCLBuildError: Error, CustomStringConvertible {
    public var kernel: String
    public var options: String
    public var device: String
    public var log: String
    public var description: String {
        "OpenCL build of kernel '\(kernel)' failed on \(device) (options: \(options)):\n\(log)"
    }
}

// @unchecked: `programs` and `statistics` change only under `lock`.
public final class ProgramCache: @unchecked Sendable {
    public struct Statistics: Sendable {
        public var builtFromSource = 0
        public var loadedFromDisk = 0
        public var rejectedEntries = 0
    }

    unowned let device: OpenCLDevice
    /// nil when the disk cache is off (QUARRY_CACHE_DIR set to "off").
    public let directory: URL?
    private var programs: [String: cl_program] = [:]
    private let lock = NSLock()
    public private(set) var statistics = Statistics()

    static let magic: [UInt8] = Array("QCLB".utf8)
    static let formatVersion: UInt32 = 1

    /// The default folder: QUARRY_CACHE_DIR, else ~/.cache/quarry/kernels (`CacheLocation`).
    public static var defaultDirectory: URL? { CacheLocation.programs }

    init(device: OpenCLDevice, directory: URL? = ProgramCache.defaultDirectory) {
        self.device = device
        self.directory = directory
    }

    deinit { for p in programs.values { clReleaseProgram(p) } }

    /// Options every program gets. Signed zeros and NaN/infinity semantics are kept (masked
    /// softmax relies on -INFINITY); mad contraction is allowed.
    static let baseOptions = "-cl-mad-enable"

    /// Options that make this device's programs its own. PoCL keeps one process-wide cache of
    /// loaded kernel binaries, keyed by a hash of the program's source and options, and (in 3.1)
    /// takes an entry by kernel, work-group size and grid specialisation but gives it back by
    /// kernel and work-group size only. Two PoCL devices running one kernel at two grid sizes at
    /// once then give back each other's entries and PoCL aborts (`found->ref_count > 0` in
    /// pocl_release_dlhandle_cache). A per-device define gives each device its own hashes.
    var deviceOptions: [String] {
        device.platform.name.contains("Portable Computing Language")
            ? ["-DQUARRY_POCL_DEVICE=\(device.info.spec.filter { $0.isNumber })"] : []
    }

    /// The built program for a kernel file with these -D options.
    public func program(_ family: String, options: [String] = []) throws -> cl_program {
        let opts = ([ProgramCache.baseOptions] + deviceOptions + options).joined(separator: " ")
        let source = try KernelSources.program(family)
        let memoryKey = "\(family)\n\(opts)\n\(fnv1a64(Array(source.utf8)))"
        lock.lock(); defer { lock.unlock() }
        if let p = programs[memoryKey] { return p }
        let p = try load(family: family, source: source, options: opts)
        programs[memoryKey] = p
        return p
    }

    /// A new kernel object (each user sets its own arguments).
    func kernel(_ family: String, _ name: String, options: [String] = []) throws -> cl_kernel {
        let p = try program(family, options: options)
        var status: cl_int = 0
        guard let k = clCreateKernel(p, name, &status), status == CL_SUCCESS else {
            throw QuarryError.device("kernel '\(name)' in \(family).cl: clCreateKernel failed: \(clStatusName(status))")
        }
        return k
    }

    /// The full disk key of a program: everything that makes its binary valid.
    func diskKey(family: String, source: String, options: String) -> String {
        """
        quarry OpenCL program v\(ProgramCache.formatVersion)
        kernel: \(family)
        source: \(String(fnv1a64(Array(source.utf8)), radix: 16)) \(source.utf8.count)
        options: \(options)
        device: \(device.info.name) / \(device.info.vendor)
        driver: \(device.info.driverVersion)
        platform: \(device.platform.name) \(device.platform.version)
        """
    }

    func entryURL(forKey key: String) -> URL? {
        directory?.appendingPathComponent(String(fnv1a64(Array(key.utf8)), radix: 16) + ".clbin")
    }

    private func load(family: String, source: String, options: String) throws -> cl_program {
        let key = diskKey(family: family, source: source, options: options)
        if let url = entryURL(forKey: key), FileManager.default.fileExists(atPath: url.path) {
            switch ProgramCache.readEntry(url, key: key) {
            case .success(let binary):
                do {
                    let p = try buildFromBinary(binary, family: family, options: options)
                    statistics.loadedFromDisk += 1
                    return p
                } catch {
                    statistics.rejectedEntries += 1
                    OpenCLLog.log("cached program \(url.lastPathComponent) for \(family).cl was rejected by the driver (\(error)); rebuilding")
                }
            case .failure(let reason):
                statistics.rejectedEntries += 1
                OpenCLLog.log("cached program \(url.lastPathComponent) for \(family).cl is unusable (\(reason.message)); rebuilding")
            }
        }
        let p = try buildFromSource(source, family: family, options: options)
        statistics.builtFromSource += 1
        if let url = entryURL(forKey: key) {
            do {
                try ProgramCache.writeEntry(url, key: key, binary: try binary(of: p))
            } catch {
                OpenCLLog.log("could not write the program cache entry \(url.path): \(error)")
            }
        }
        return p
    }

    private func buildFromSource(_ source: String, family: String, options: String) throws -> cl_program {
        var status: cl_int = 0
        let program: cl_program? = source.withCString { ptr in
            var s: UnsafePointer<CChar>? = ptr
            var len = strlen(ptr)
            return clCreateProgramWithSource(device.context, 1, &s, &len, &status)
        }
        guard let program, status == CL_SUCCESS else {
            throw QuarryError.device("clCreateProgramWithSource for \(family).cl failed: \(clStatusName(status))")
        }
        try build(program, family: family, options: options)
        return program
    }

    private func buildFromBinary(_ binary: [UInt8], family: String, options: String) throws -> cl_program {
        var status: cl_int = 0, binaryStatus: cl_int = 0
        var dev = device.deviceID
        var len = binary.count
        let program: cl_program? = binary.withUnsafeBufferPointer { buf in
            var ptr: UnsafePointer<UInt8>? = buf.baseAddress
            return clCreateProgramWithBinary(device.context, 1, &dev, &len, &ptr, &binaryStatus, &status)
        }
        guard let program, status == CL_SUCCESS, binaryStatus == CL_SUCCESS else {
            if let program { clReleaseProgram(program) }
            throw QuarryError.device("clCreateProgramWithBinary: \(clStatusName(status)) / \(clStatusName(binaryStatus))")
        }
        try build(program, family: family, options: options)
        return program
    }

    private func build(_ program: cl_program, family: String, options: String) throws {
        var dev = device.deviceID
        let status = clBuildProgram(program, 1, &dev, options, nil, nil)
        guard status == CL_SUCCESS else {
            let log = buildLog(program)
            clReleaseProgram(program)
            throw OpenCLBuildError(kernel: "\(family).cl", options: options, device: device.info.name,
                                   log: log.isEmpty ? "(no build log; status \(clStatusName(status)))" : log)
        }
    }

    private func buildLog(_ program: cl_program) -> String {
        var size = 0
        guard clGetProgramBuildInfo(program, device.deviceID, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size) == CL_SUCCESS,
              size > 1 else { return "" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        _ = clGetProgramBuildInfo(program, device.deviceID, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil)
        return String(cString: bytes).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func binary(of program: cl_program) throws -> [UInt8] {
        var size = 0
        try clCheck(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil),
                    "clGetProgramInfo(CL_PROGRAM_BINARY_SIZES)")
        guard size > 0 else { throw QuarryError.device("the driver returned an empty program binary") }
        var bytes = [UInt8](repeating: 0, count: size)
        try bytes.withUnsafeMutableBufferPointer { buf in
            var ptr: UnsafeMutablePointer<UInt8>? = buf.baseAddress
            try clCheck(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES), MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &ptr, nil),
                        "clGetProgramInfo(CL_PROGRAM_BINARIES)")
        }
        return bytes
    }

    struct EntryProblem: Error { var message: String }

    /// The binary of a valid entry for `key`, or why the entry cannot be used.
    static func readEntry(_ url: URL, key: String) -> Result<[UInt8], EntryProblem> {
        guard let data = try? Data(contentsOf: url) else { return .failure(.init(message: "unreadable")) }
        let bytes = [UInt8](data)
        var at = 0
        func take(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, at + n <= bytes.count else { return nil }
            defer { at += n }
            return bytes[at..<at + n]
        }
        func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard let s = take(MemoryLayout<T>.size) else { return nil }
            return s.reversed().reduce(T(0)) { ($0 << 8) | T($1) }
        }
        guard let m = take(4), Array(m) == magic else { return .failure(.init(message: "bad magic: not a Quarry program cache entry")) }
        guard let v = integer(UInt32.self), v == formatVersion else { return .failure(.init(message: "entry format version differs")) }
        guard let keyLength = integer(UInt32.self), let keyBytes = take(Int(keyLength)) else {
            return .failure(.init(message: "truncated header"))
        }
        guard String(decoding: keyBytes, as: UTF8.self) == key else {
            return .failure(.init(message: "stale: written for another source, options, device or driver"))
        }
        guard let length = integer(UInt64.self), let checksum = integer(UInt64.self) else {
            return .failure(.init(message: "truncated header"))
        }
        guard length <= UInt64(bytes.count - at), at + Int(length) == bytes.count else {
            return .failure(.init(message: "truncated or padded: header says \(length) binary bytes, file has \(bytes.count - at)"))
        }
        let binary = Array(bytes[at...])
        guard fnv1a64(binary) == checksum else { return .failure(.init(message: "checksum mismatch (corrupt)")) }
        return .success(binary)
    }

    static func writeEntry(_ url: URL, key: String, binary: [UInt8]) throws {
        var out = magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(formatVersion)
        let keyBytes = Array(key.utf8)
        put(UInt32(keyBytes.count)); out += keyBytes
        put(UInt64(binary.count)); put(fnv1a64(binary))
        out += binary
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp")
        try Data(out).write(to: tmp)
        guard rename(tmp.path, url.path) == 0 else {
            let e = errno
            try? FileManager.default.removeItem(at: tmp)
            throw QuarryError.file(path: url.path, message: "rename failed: \(String(cString: strerror(e)))")
        }
    }
}
