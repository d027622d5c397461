// File access shared by the readers and writers: a read-only memory map, bounds-checked
// little-endian reads, atomic writes, and the element types the formats carry.

import Foundation
import Quarry
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only. The mapping lives as long as this object; readers keep it and
/// copy out (converting to float32) only the tensors asked for.
// @unchecked: a read-only mapping, immutable for the object's life.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    private let base: UnsafeRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw QuarryError.file(path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw QuarryError.file(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw QuarryError.file(path: path, message: "not a regular file")
        }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        guard let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw QuarryError.file(path: path, message: "cannot map \(count) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// The mapped bytes; valid while `self` is alive.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// A copy of `range`, checked against the file's size.
    public func data(_ range: Range<Int>) throws -> Data {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw QuarryError.file(path: path, message: "byte range \(range) lies outside the file (\(count) bytes)")
        }
        guard let base, !range.isEmpty else { return Data() }
        return Data(bytes: base + range.lowerBound, count: range.count)
    }
}

/// Little-endian reads that throw instead of reading past the end.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String

    func check(_ offset: Int, _ size: Int) throws {
        guard offset >= 0, size >= 0, offset <= bytes.count, size <= bytes.count - offset else {
            throw QuarryError.file(path: path, message: "truncated: needs bytes \(offset)..<\(offset &+ size), file has \(bytes.count)")
        }
    }
    func u8(_ o: Int) throws -> UInt8 { try check(o, 1); return bytes[o] }
    func u16(_ o: Int) throws -> UInt16 {
        try check(o, 2); return UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8
    }
    func u32(_ o: Int) throws -> UInt32 {
        try check(o, 4)
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[o + i]) << (8 * UInt32(i)) }
        return v
    }
    func u64(_ o: Int) throws -> UInt64 {
        try check(o, 8)
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[o + i]) << (8 * UInt64(i)) }
        return v
    }
    func slice(_ o: Int, _ n: Int) throws -> UnsafeRawBufferPointer {
        try check(o, n)
        return UnsafeRawBufferPointer(rebasing: bytes[o..<(o + n)])
    }
}

extension Data {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}

/// Writes `data` to `path` through a temporary file in the same folder and a rename, so a reader
/// never sees a half-written file and a failed write leaves the old file in place.
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    let tmp = "\(dir)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    guard fd >= 0 else {
        throw QuarryError.file(path: path, message: "cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))")
    }
    var ok = false
    defer {
        if !ok { unlink(tmp) }
    }
    let written: Bool = data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = write(fd, raw.baseAddress! + off, raw.count - off)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return false
            }
            off += n
        }
        return true
    }
    let err = String(cString: strerror(errno))
    guard written, fsync(fd) == 0 else {
        close(fd)
        throw QuarryError.file(path: path, message: "write failed: \(err)")
    }
    close(fd)
    guard rename(tmp, path) == 0 else {
        throw QuarryError.file(path: path, message: "cannot rename the temporary file into place: \(String(cString: strerror(errno)))")
    }
    ok = true
}

/// Element types the file formats carry. Everything is converted to float32 on read.
public enum ElementType: String, Sendable, CaseIterable {
    case float32, float16, bfloat16, float64, int64, int32, bool

    public var byteSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float16, .bfloat16: return 2
        case .float64, .int64: return 8
        case .bool: return 1
        }
    }
}

/// Multiplies dimensions, failing on negative values or overflow (hostile headers declare huge sizes).
func checkedCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    return n
}

/// Converts `count` little-endian elements of `type` at `src` into float32 at `dst`.
func convertToFloat(_ src: UnsafeRawPointer, type: ElementType, count: Int, into dst: UnsafeMutablePointer<Float>) {
    switch type {
    case .float32:
        // memcpy rather than a typed load: the source may not be 4-byte aligned.
        memcpy(dst, src, count * 4)
    case .float16:
        for i in 0..<count {
            let bits = src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
            dst[i] = Float(Float16(bitPattern: bits))
        }
    case .bfloat16:
        for i in 0..<count {
            let bits = src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
            dst[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    case .float64:
        for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
    case .int64:
        for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
    case .int32:
        for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
    case .bool:
        let p = src.assumingMemoryBound(to: UInt8.self)
        for i in 0..<count { dst[i] = p[i] != 0 ? 1 : 0 }
    }
}
