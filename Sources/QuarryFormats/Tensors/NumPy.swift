// NumPy's .npy format (version 1.0, 2.0 and 3.0 headers): magic, a Python-literal dict header
// ('descr', 'fortran_order', 'shape'), then the raw elements. Read: little-endian f4, f2, f8, i8,
// i4 and b1 in C order, and i2, i1, u8, u4, u2, u1 widened to i4 / i8; anything else (big-endian, Fortran order, other types) is an error that
// names the file. Written: version 1.0 (2.0 when the header needs it), C order, atomically.

import Foundation
import Quarry

/// An array as stored in a .npy file: element type, shape and the little-endian element bytes.
public struct NumPyArray: Sendable {
    public var type: ElementType
    public var shape: [Int]
    public var data: Data

    public init(type: ElementType, shape: [Int], data: Data) throws {
        guard let n = checkedCount(shape), n.multipliedReportingOverflow(by: type.byteSize).overflow == false,
              n * type.byteSize == data.count else {
            throw QuarryError.invalidArgument("array of \(type) \(shape) needs \((checkedCount(shape) ?? -1) * type.byteSize) bytes, got \(data.count)")
        }
        self.type = type; self.shape = shape; self.data = data
    }

    /// A float32 array holding a copy of `tensor`.
    public init(_ tensor: Tensor) {
        type = .float32
        shape = tensor.shape
        data = Data(bytes: tensor.pointer, count: tensor.count * 4)
    }

    /// Integer (int64) arrays, as models take token ids.
    public init(int64 values: [Int64], shape: [Int]) throws {
        var d = Data(capacity: values.count * 8)
        for v in values { d.appendLE(v) }
        try self.init(type: .int64, shape: shape, data: d)
    }

    public var count: Int { shape.reduce(1, *) }

    /// The values as a float32 tensor (integers and booleans converted exactly where float32 can).
    public func tensor() -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        data.withUnsafeBytes { raw in
            if count > 0, let base = raw.baseAddress { convertToFloat(base, type: type, count: count, into: t.pointer) }
        }
        return t
    }
}

public enum NumPy {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
    /// Headers larger than this are refused: numpy itself caps them far lower for sane shapes.
    static let maxHeaderBytes = 1 << 20

    /// Reads a .npy file.
    public static func read(path: String) throws -> NumPyArray {
        let file = try MappedFile(path: path)
        return try decode(file.bytes, name: path)
    }

    /// Reads a .npy file as a float32 tensor.
    public static func readTensor(path: String) throws -> Tensor {
        try read(path: path).tensor()
    }

    /// Writes `array` to `path` atomically.
    public static func write(_ array: NumPyArray, to path: String) throws {
        try writeAtomically(encode(array), to: path)
    }

    public static func write(_ tensor: Tensor, to path: String) throws {
        try write(NumPyArray(tensor), to: path)
    }

    static func descr(_ t: ElementType) -> String? {
        switch t {
        case .float32: return "<f4"
        case .float16: return "<f2"
        case .float64: return "<f8"
        case .int64: return "<i8"
        case .int32: return "<i4"
        case .bool: return "|b1"
        case .bfloat16: return nil
        }
    }

    /// The bytes of a .npy file holding `array`.
    public static func encode(_ array: NumPyArray) throws -> Data {
        guard let d = descr(array.type) else {
            throw QuarryError.unsupported(".npy has no \(array.type) type; convert to float32 first")
        }
        let shape = array.shape.count == 1 ? "(\(array.shape[0]),)" : "(\(array.shape.map(String.init).joined(separator: ", ")))"
        var header = "{'descr': '\(d)', 'fortran_order': False, 'shape': \(shape), }"
        // The data starts on a 64-byte boundary (numpy's rule); the header ends with a newline.
        var version: UInt8 = 1
        var prefix = 10
        if (prefix + header.utf8.count + 1) > 65535 + 10 { version = 2; prefix = 12 }
        let total = (prefix + header.utf8.count + 1 + 63) / 64 * 64
        header += String(repeating: " ", count: total - prefix - header.utf8.count - 1) + "\n"
        var out = Data(magic)
        out.append(version); out.append(0)
        if version == 1 { out.appendLE(UInt16(header.utf8.count)) } else { out.appendLE(UInt32(header.utf8.count)) }
        out.append(contentsOf: Array(header.utf8))
        out.append(array.data)
        return out
    }

    /// Parses .npy bytes; `name` is the file (or archive member) named in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, name: String) throws -> NumPyArray {
        func fail(_ m: String) -> QuarryError { .file(path: name, message: m) }
        let r = ByteReader(bytes: bytes, path: name)
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("not a .npy file (bad magic)") }
        let major = try r.u8(6)
        let headerLen: Int, headerStart: Int
        switch major {
        case 1: headerLen = Int(try r.u16(8)); headerStart = 10
        case 2, 3: headerLen = Int(try r.u32(8)); headerStart = 12
        default: throw fail("unsupported .npy format version \(major)")
        }
        guard headerLen <= maxHeaderBytes else { throw fail("header of \(headerLen) bytes is too large") }
        let hb = try r.slice(headerStart, headerLen)
        guard let header = String(bytes: hb, encoding: major == 3 ? .utf8 : .isoLatin1) else { throw fail("header is not text") }
        let dict = try parseHeader(header, name: name)
        guard case .string(let descr)? = dict["descr"] else { throw fail("header has no 'descr' string: \(header)") }
        guard case .bool(let fortran)? = dict["fortran_order"] else { throw fail("header has no 'fortran_order': \(header)") }
        guard case .tuple(let shape)? = dict["shape"] else { throw fail("header has no 'shape' tuple: \(header)") }
        if fortran { throw fail("fortran_order True is not supported; save a C-ordered array (np.ascontiguousarray)") }
        let type: ElementType
        switch descr {
        case "<f4": type = .float32
        case "<f2": type = .float16
        case "<f8": type = .float64
        case "<i8": type = .int64
        case "<i4": type = .int32
        case "|b1", "<b1": type = .bool
        // Narrower and unsigned integers are widened on load to int32 / int64, which hold them exactly.
        case "|i1", "<i1", "|u1", "<u1", "<i2", "<u2": type = .int32
        case "<u4", "<u8": type = .int64
        default:
            if descr.hasPrefix(">") { throw fail("big-endian dtype '\(descr)' is not supported; use a little-endian array") }
            throw fail("dtype '\(descr)' is not supported (float32, float16, float64, int64, int32, int16, int8, uint64, uint32, uint16, uint8, bool are)")
        }
        let stored: Int
        switch descr {
        case "|i1", "<i1", "|u1", "<u1": stored = 1
        case "<i2", "<u2": stored = 2
        case "<u4": stored = 4
        default: stored = type.byteSize
        }
        guard let n = checkedCount(shape), n <= Int.max / 8 else { throw fail("shape \(shape) is not valid") }
        let start = headerStart + headerLen
        let size = n * stored
        guard bytes.count - start == size else {
            throw fail("shape \(shape) of \(descr) needs \(size) data bytes, the file has \(bytes.count - start)")
        }
        if stored == type.byteSize && descr != "<u8" {
            let data = size == 0 ? Data() : Data(bytes: bytes.baseAddress! + start, count: size)
            return try NumPyArray(type: type, shape: shape, data: data)
        }
        let p = UnsafeRawPointer(bytes.baseAddress!) + start
        var data = Data(capacity: n * type.byteSize)
        for i in 0..<n {
            switch descr {
            case "|i1", "<i1": data.appendLE(Int32(p.load(fromByteOffset: i, as: Int8.self)))
            case "|u1", "<u1": data.appendLE(Int32(p.load(fromByteOffset: i, as: UInt8.self)))
            case "<i2": data.appendLE(Int32(p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
            case "<u2": data.appendLE(Int32(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            case "<u4": data.appendLE(Int64(p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            default:
                let v = p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)
                guard v <= UInt64(Int64.max) else { throw fail("uint64 value \(v) at element \(i) does not fit int64") }
                data.appendLE(Int64(v))
            }
        }
        return try NumPyArray(type: type, shape: shape, data: data)
    }

    enum HeaderValue { case string(String), bool(Bool), tuple([Int]) }

    /// A parser for the small subset of Python literals numpy writes in headers.
    static func parseHeader(_ s: String, name: String) throws -> [String: HeaderValue] {
        let chars = Array(s.unicodeScalars)
        var i = 0
        func fail(_ m: String) -> QuarryError { .file(path: name, message: "malformed header (\(m)): \(s.prefix(200))") }
        func skipSpace() { while i < chars.count, chars[i] == " " || chars[i] == "\n" || chars[i] == "\t" { i += 1 } }
        func expect(_ c: Unicode.Scalar) throws {
            skipSpace()
            guard i < chars.count, chars[i] == c else { throw fail("expected '\(c)'") }
            i += 1
        }
        func string() throws -> String {
            skipSpace()
            guard i < chars.count, chars[i] == "'" || chars[i] == "\"" else { throw fail("expected a string") }
            let q = chars[i]; i += 1
            var out = ""
            while i < chars.count, chars[i] != q { out.unicodeScalars.append(chars[i]); i += 1 }
            guard i < chars.count else { throw fail("unterminated string") }
            i += 1
            return out
        }
        func integer() throws -> Int {
            skipSpace()
            var digits = ""
            while i < chars.count, ("0"..."9").contains(chars[i]) { digits.unicodeScalars.append(chars[i]); i += 1 }
            // numpy on Windows once wrote "3L"; tolerate it.
            if i < chars.count, chars[i] == "L" { i += 1 }
            guard let v = Int(digits) else { throw fail("expected a non-negative integer") }
            return v
        }
        try expect("{")
        var out: [String: HeaderValue] = [:]
        while true {
            skipSpace()
            if i < chars.count, chars[i] == "}" { i += 1; break }
            let key = try string()
            try expect(":")
            skipSpace()
            guard i < chars.count else { throw fail("truncated") }
            if chars[i] == "'" || chars[i] == "\"" {
                out[key] = .string(try string())
            } else if chars[i] == "(" {
                i += 1
                var dims: [Int] = []
                while true {
                    skipSpace()
                    if i < chars.count, chars[i] == ")" { i += 1; break }
                    dims.append(try integer())
                    skipSpace()
                    if i < chars.count, chars[i] == "," { i += 1 }
                    guard dims.count <= 64 else { throw fail("too many dimensions") }
                }
                out[key] = .tuple(dims)
            } else if s.unicodeScalars.count >= i + 4, String(String.UnicodeScalarView(chars[i..<(i + 4)])) == "True" {
                out[key] = .bool(true); i += 4
            } else if s.unicodeScalars.count >= i + 5, String(String.UnicodeScalarView(chars[i..<(i + 5)])) == "False" {
                out[key] = .bool(false); i += 5
            } else {
                throw fail("unexpected value for '\(key)'")
            }
            skipSpace()
            if i < chars.count, chars[i] == "," { i += 1 }
        }
        return out
    }

    // MARK: .npz

    /// Reads every array of an .npz archive (stored or deflated members), keyed by name without ".npy".
    public static func readArchive(path: String) throws -> [String: NumPyArray] {
        let file = try MappedFile(path: path)
        let zip = try ZipArchive(bytes: file.bytes, path: path)
        var out: [String: NumPyArray] = [:]
        for entry in zip.entries {
            let data = try zip.contents(of: entry)
            let key = entry.name.hasSuffix(".npy") ? String(entry.name.dropLast(4)) : entry.name
            out[key] = try data.withUnsafeBytes { try decode($0, name: "\(path)[\(entry.name)]") }
        }
        return out
    }

    /// Writes an uncompressed .npz archive (as np.savez does), atomically.
    public static func writeArchive(_ arrays: [String: NumPyArray], to path: String) throws {
        var members: [(String, Data)] = []
        for key in arrays.keys.sorted() { members.append(("\(key).npy", try encode(arrays[key]!))) }
        try writeAtomically(try ZipArchive.storedArchive(members), to: path)
    }
}

extension NumPy {
    /// The file name a tensor is written under: its name with every character outside
    /// [A-Za-z0-9._-] replaced by '_', then ".npy". Names that would be hidden or special
    /// ("", ".", "..") are prefixed so that the file stays inside the output folder.
    public static func fileName(forTensor name: String) -> String {
        var s = String(name.unicodeScalars.map { c -> Character in
            let ok = ("A"..."Z").contains(c) || ("a"..."z").contains(c) || ("0"..."9").contains(c) || c == "." || c == "_" || c == "-"
            return ok ? Character(c) : "_"
        })
        if s.isEmpty || s == "." || s == ".." { s = "_" + s }
        return s + ".npy"
    }
}
