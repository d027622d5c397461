// WebDataset-style tar shards: each sample is a run of consecutive members sharing a key (the
// member's path up to the first "." of its file name: `000123.jpg`, `000123.cls` and
// `000123.json` are the sample `000123`), and the sample's image is its member with a .jpg, .jpeg,
// .png or .webp extension. A shard is listed by walking its 512-byte headers (seeking past the
// data, so listing costs one read per member) and read member by member at increasing offsets,
// never unpacked. ustar, GNU long names ('L') and pax `path` records ('x') are understood, which
// covers Python's tarfile (WebDataset's writer) and GNU and BSD tar.
//
// What cannot be read becomes a failed sample named by shard and key, and the rest of the shard
// goes on: a sample with no image member, an image member cut short by the end of the file. A
// header whose checksum is wrong leaves the rest of the shard unreadable (member sizes are in the
// headers), so it ends that shard's listing with one failed entry naming the offset.

import Quarry

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One sample of a shard: its key and where its image is, or why it has none.
public struct TarSample: Equatable, Hashable, Sendable {
    public var shard: String
    public var key: String
    /// The image member's name, byte offset of its data, and size; nil when the sample has none.
    public var member: String?
    public var offset: Int
    public var size: Int
    /// Why the sample cannot be read (no image member, truncated member, corrupt header).
    public var problem: String?

    /// How the manifest and errors name the sample: `shard.tar:key`.
    public var source: String { "\(shard):\(key)" }

    public init(shard: String, key: String, member: String?, offset: Int, size: Int, problem: String?) {
        self.shard = shard
        self.key = key
        self.member = member
        self.offset = offset
        self.size = size
        self.problem = problem
    }
}

/// Image extensions a sample's image member may have.
let tarImageExtensions: Set<String> = ["jpg", "jpeg", "png", "webp"]

/// The samples of the tar file at `path`, in the order they are stored. Throws only when the file
/// cannot be opened or is not a tar file at all; damage inside a shard becomes failed samples.
public func listTarSamples(_ path: String) throws -> [TarSample] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw QuarryError.file(path: path, message: String(cString: strerror(errno)).lowercased()) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw QuarryError.file(path: path, message: String(cString: strerror(errno)).lowercased()) }
    let fileSize = Int(info.st_size)

    struct Member { var name: String; var offset: Int; var size: Int; var truncated: Bool }
    var members: [Member] = []
    var samples: [TarSample] = []
    var header = [UInt8](repeating: 0, count: 512)
    var position = 0
    var longName: String? = nil
    var corruptAt: Int? = nil

    scan: while position + 512 <= fileSize {
        guard readFully(fd, into: &header, at: position) else {
            throw QuarryError.file(path: path, message: String(cString: strerror(errno)).lowercased())
        }
        if header.allSatisfy({ $0 == 0 }) { break }  // end-of-archive block
        guard tarChecksumMatches(header) else {
            if position == 0 { throw QuarryError.file(path: path, message: "not a tar file (first header's checksum is wrong)") }
            corruptAt = position
            break
        }
        guard let size = tarNumber(header[124..<136]) else { corruptAt = position; break }
        let dataStart = position + 512
        let padded = (size + 511) / 512 * 512
        let type = header[156]
        switch type {
        case UInt8(ascii: "L"):
            // GNU long name: the data is the next member's name.
            var data = [UInt8](repeating: 0, count: size)
            guard size <= 65536, dataStart + size <= fileSize, readFully(fd, into: &data, at: dataStart) else {
                corruptAt = position
                break scan
            }
            longName = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
        case UInt8(ascii: "x"):
            var data = [UInt8](repeating: 0, count: size)
            guard size <= 1 << 20, dataStart + size <= fileSize, readFully(fd, into: &data, at: dataStart) else {
                corruptAt = position
                break scan
            }
            if let p = paxPath(data) { longName = p }
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            let name = longName ?? ustarName(header)
            longName = nil
            members.append(Member(name: name, offset: dataStart, size: size, truncated: dataStart + size > fileSize))
        default:
            longName = nil  // directories, links, global pax headers: nothing to read
        }
        position = dataStart + padded
    }

    // Group consecutive members by key.
    var i = 0
    while i < members.count {
        let key = sampleKey(members[i].name)
        var j = i
        var image: Member? = nil
        var names: [String] = []
        while j < members.count, sampleKey(members[j].name) == key {
            names.append(members[j].name)
            if image == nil, tarImageExtensions.contains(lastExtension(members[j].name)) { image = members[j] }
            j += 1
        }
        if let image {
            samples.append(TarSample(
                shard: path, key: key, member: image.name, offset: image.offset, size: image.size,
                problem: image.truncated ? "member \(image.name) is cut short by the end of the shard" : nil))
        } else {
            samples.append(TarSample(
                shard: path, key: key, member: nil, offset: 0, size: 0,
                problem: "sample has no image member (.jpg, .jpeg, .png or .webp); it has \(names.joined(separator: ", "))"))
        }
        i = j
    }
    if let at = corruptAt {
        samples.append(TarSample(
            shard: path, key: "@\(at)", member: nil, offset: 0, size: 0,
            problem: "corrupt tar header at byte \(at): the rest of the shard cannot be read"))
    } else if position + 512 > fileSize && position < fileSize {
        // A partial header at the end: the shard was cut.
        samples.append(TarSample(
            shard: path, key: "@\(position)", member: nil, offset: 0, size: 0,
            problem: "shard ends inside a header at byte \(position)"))
    }
    return samples
}

/// The image bytes of a sample, read with one pread from an open shard.
public func readTarSample(_ sample: TarSample, from fd: Int32) throws -> [UInt8] {
    let name = "\(sample.shard):\(sample.member ?? sample.key)"
    if let problem = sample.problem { throw QuarryError.file(path: sample.source, message: problem) }
    var bytes = [UInt8](repeating: 0, count: sample.size)
    guard readFully(fd, into: &bytes, at: sample.offset) else {
        throw QuarryError.file(path: name, message: "cannot read member: \(String(cString: strerror(errno)).lowercased())")
    }
    return bytes
}

/// The shard paths a pattern stands for: `shard-{0000..0099}.tar` (a numeric range, zero-padded to
/// the width of its bounds) or `{a,b,c}` lists, expanded left to right; no braces: the path itself.
public func expandShardPattern(_ pattern: String) throws -> [String] {
    guard let open = pattern.firstIndex(of: "{") else { return [pattern] }
    guard let close = pattern[open...].firstIndex(of: "}") else {
        throw QuarryError.invalidArgument("'\(pattern)': a '{' without its '}'")
    }
    let head = String(pattern[..<open])
    let body = String(pattern[pattern.index(after: open)..<close])
    let tails = try expandShardPattern(String(pattern[pattern.index(after: close)...]))
    var choices: [String] = []
    if let dots = body.range(of: "..") {
        let lo = String(body[..<dots.lowerBound]), hi = String(body[dots.upperBound...])
        guard let a = Int(lo), let b = Int(hi), a <= b, b - a < 1_000_000 else {
            throw QuarryError.invalidArgument("'\(pattern)': a range is {FIRST..LAST} with FIRST <= LAST, got {\(body)}")
        }
        let width = lo.count == hi.count ? lo.count : 0
        for n in a...b {
            let digits = String(n)
            choices.append(String(repeating: "0", count: max(0, width - digits.count)) + digits)
        }
    } else {
        choices = body.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    }
    return choices.flatMap { c in tails.map { head + c + $0 } }
}

// MARK: - Header fields

private func readFully(_ fd: Int32, into buffer: inout [UInt8], at offset: Int) -> Bool {
    let count = buffer.count
    var done = 0
    while done < count {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 {
            if n == 0 { errno = EIO }
            return false
        }
        done += n
    }
    return true
}

/// The stored checksum against the sum of the header with its checksum field read as spaces
/// (unsigned, as POSIX says; some old writers summed signed bytes, which is accepted too).
private func tarChecksumMatches(_ h: [UInt8]) -> Bool {
    guard let stored = tarNumber(h[148..<156]) else { return false }
    var unsigned = 0, signed = 0
    for i in 0..<512 {
        let b = (148..<156).contains(i) ? UInt8(ascii: " ") : h[i]
        unsigned += Int(b)
        signed += Int(Int8(bitPattern: b))
    }
    return stored == unsigned || stored == signed
}

/// An octal field (NUL or space terminated), or GNU's base-256 form for sizes of 8 GiB and more.
private func tarNumber(_ field: ArraySlice<UInt8>) -> Int? {
    if let first = field.first, first & 0x80 != 0 {
        var value = Int(first & 0x7F)
        for b in field.dropFirst() {
            guard value < Int.max >> 8 else { return nil }
            value = value << 8 | Int(b)
        }
        return value
    }
    var value = 0
    var seen = false
    for b in field {
        if b == 0 || b == UInt8(ascii: " ") {
            if seen { break } else { continue }
        }
        guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "7"), value < Int.max >> 3 else { return nil }
        value = value << 3 | Int(b - UInt8(ascii: "0"))
        seen = true
    }
    return seen ? value : 0
}

private func cString(_ field: ArraySlice<UInt8>) -> String {
    String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
}

/// ustar's prefix "/" name, or the name alone.
private func ustarName(_ h: [UInt8]) -> String {
    let name = cString(h[0..<100])
    let isUstar = h[257..<262].elementsEqual("ustar".utf8)
    let prefix = isUstar ? cString(h[345..<500]) : ""
    return prefix.isEmpty ? name : prefix + "/" + name
}

/// The `path` record of a pax extended header ("LEN path=VALUE\n" records).
private func paxPath(_ data: [UInt8]) -> String? {
    var i = 0
    while i < data.count {
        var j = i
        var length = 0
        while j < data.count, data[j] >= UInt8(ascii: "0"), data[j] <= UInt8(ascii: "9") {
            length = length * 10 + Int(data[j] - UInt8(ascii: "0"))
            j += 1
        }
        guard length > 0, i + length <= data.count, j < data.count, data[j] == UInt8(ascii: " ") else { return nil }
        let record = String(decoding: data[(j + 1)..<(i + length - 1)], as: UTF8.self)
        if record.hasPrefix("path=") { return String(record.dropFirst(5)) }
        i += length
    }
    return nil
}

/// WebDataset's key: the path up to the first "." of its last component.
func sampleKey(_ name: String) -> String {
    let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
    guard let dot = name[slash...].firstIndex(of: ".") else { return name }
    return String(name[..<dot])
}

private func lastExtension(_ name: String) -> String {
    let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
    guard let dot = name[slash...].lastIndex(of: ".") else { return "" }
    return name[name.index(after: dot)...].lowercased()
}
