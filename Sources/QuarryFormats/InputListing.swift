// What the paths given to `quarry extract --input` stand for, in the order rows will follow.
//
// - A folder: its JPEG, PNG and WebP files (by extension: .jpg, .jpeg, .png, .webp, any case), recursively, in
//   file-name order — entries sorted by their bytes at each level, so `a.jpg`, `b/c.jpg`, `d.jpg`.
//   Hidden entries (names starting with ".") are skipped, which also skips macOS "._x.jpg" files.
//   A file with an image extension is listed even if it turns out not to decode, so that the
//   extract command can name it as a failed row instead of silently dropping it.
// - A tar file (by content: a ustar header, or by its .tar extension) is a WebDataset-style shard:
//   one item per sample, in stored order (TarShards.swift). A path with braces that does not
//   exist as such is a shard pattern, `shard-{0000..0099}.tar`, expanded in order.
// - A file named explicitly is classified by content: JPEG, PNG or WebP → image; NumPy array → array
//   (one row per item along its first axis); otherwise a .jpg/.jpeg/.png/.npy extension decides,
//   so a broken image still becomes a failed row; otherwise a text file is a list of paths, and
//   anything else is an image that will fail to decode with a reason.
// - A list of paths: one per line; blank lines and lines starting with "#" are ignored; relative
//   paths are relative to the list file's folder. An entry may be a folder, an image, an array or
//   a tar shard; lists do not nest. A missing entry is kept as an image so that it becomes a failed
//   row.
// A path given explicitly that does not exist, a folder with no images in it, or a list naming
// nothing throws: those are mistakes on the command line rather than bad data.

import CImageCodecs
import Quarry

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One input of an extraction: an image file, a .npy array whose first axis enumerates items, or
/// one sample of a tar shard.
public enum InputItem: Equatable, Hashable, Sendable {
    case image(String)
    case array(String)
    case tarSample(TarSample)

    /// The path, or `shard.tar:key` for a shard's sample.
    public var path: String {
        switch self {
        case .image(let p), .array(let p): return p
        case .tarSample(let s): return s.source
        }
    }
}

/// The inputs `paths` stand for, in order (see the file's header for the rules).
public func listInputs(_ paths: [String]) throws -> [InputItem] {
    var items: [InputItem] = []
    for path in paths {
        guard let kind = fileKind(path) else {
            let reason = String(cString: strerror(errno)).lowercased()
            if path.contains("{") {
                let shards = try expandShardPattern(path)
                for shard in shards where fileKind(shard) == nil {
                    throw QuarryError.file(path: shard, message: "\(String(cString: strerror(errno)).lowercased()) (from the pattern \(path))")
                }
                for shard in shards { items += try listTarSamples(shard).map(InputItem.tarSample) }
                continue
            }
            throw QuarryError.file(path: path, message: reason)
        }
        switch kind {
        case .directory:
            let found = try listFolder(path)
            if found.isEmpty {
                throw QuarryError.file(path: path, message: "folder holds no .jpg, .jpeg, .png or .webp files")
            }
            items += found
        case .file:
            switch classifyFile(path) {
            case .image: items.append(.image(path))
            case .array: items.append(.array(path))
            case .tar: items += try listTarSamples(path).map(InputItem.tarSample)
            case .list: items += try listFromTextFile(path)
            }
        }
    }
    return items
}

private enum FileKind { case file, directory }

/// nil when the path cannot be examined (errno says why).
private func fileKind(_ path: String) -> FileKind? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return (info.st_mode & S_IFMT) == S_IFDIR ? .directory : .file
}

private enum FileClass { case image, array, tar, list }

private let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "webp"]

private func lowercasedExtension(_ path: String) -> String {
    let name = path.split(separator: "/", omittingEmptySubsequences: false).last ?? ""
    guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "" }
    return name[name.index(after: dot)...].lowercased()
}

private func classifyFile(_ path: String) -> FileClass {
    let head = leadingBytes(of: path, count: 4096)
    let format = head.withUnsafeBufferPointer { qic_detect_format($0.baseAddress, $0.count) }
    switch format {
    case QIC_FORMAT_JPEG, QIC_FORMAT_PNG, QIC_FORMAT_WEBP: return .image
    case QIC_FORMAT_NPY: return .array
    default: break
    }
    if head.count >= 262, head[257..<262].elementsEqual("ustar".utf8) { return .tar }
    let ext = lowercasedExtension(path)
    if imageExtensions.contains(ext) { return .image }
    if ext == "npy" { return .array }
    if ext == "tar" { return .tar }
    // Text: no NUL bytes and valid UTF-8, allowing for a character cut by the 4096-byte window.
    if !head.isEmpty, !head.contains(0) {
        let cut = head.count == 4096 ? 3 : 0
        for drop in 0...cut where String(validating: head.dropLast(drop), as: UTF8.self) != nil {
            return .list
        }
    }
    return .image
}

/// Up to `count` bytes from the start of the file; empty when it cannot be read.
private func leadingBytes(of path: String, count: Int) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: count)
    var filled = 0
    while filled < count {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, count - filled) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { break }
        filled += n
    }
    return Array(buffer[0..<filled])
}

private func joinPath(_ folder: String, _ name: String) -> String {
    if folder.isEmpty { return name }
    return folder.hasSuffix("/") ? folder + name : folder + "/" + name
}

/// Image files under `folder`, depth first, entries in byte order at each level. Folders reached
/// twice (through symbolic links) are walked once.
private func listFolder(_ folder: String) throws -> [InputItem] {
    var items: [InputItem] = []
    var visited = Set<[UInt64]>()
    func walk(_ dir: String) throws {
        var info = stat()
        guard stat(dir, &info) == 0 else {
            throw QuarryError.file(path: dir, message: String(cString: strerror(errno)).lowercased())
        }
        guard visited.insert([UInt64(info.st_dev), UInt64(info.st_ino)]).inserted else { return }
        guard let handle = opendir(dir) else {
            throw QuarryError.file(path: dir, message: String(cString: strerror(errno)).lowercased())
        }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name.hasPrefix(".") { continue }
            names.append(name)
        }
        closedir(handle)
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for name in names {
            let path = joinPath(dir, name)
            switch fileKind(path) {
            case .directory?: try walk(path)
            case .file?:
                if imageExtensions.contains(lowercasedExtension(name)) { items.append(.image(path)) }
            case nil:
                // A dangling link or a file that vanished: list it if it claims to be an image,
                // so the failure is reported with the rest.
                if imageExtensions.contains(lowercasedExtension(name)) { items.append(.image(path)) }
            }
        }
    }
    try walk(folder)
    return items
}

private func listFromTextFile(_ listPath: String) throws -> [InputItem] {
    let fd = open(listPath, O_RDONLY)
    guard fd >= 0 else {
        throw QuarryError.file(path: listPath, message: String(cString: strerror(errno)).lowercased())
    }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        if n < 0 {
            let reason = String(cString: strerror(errno)).lowercased()
            close(fd)
            throw QuarryError.file(path: listPath, message: reason)
        }
        if n == 0 { break }
        bytes += chunk[0..<n]
    }
    close(fd)
    let text = String(decoding: bytes, as: UTF8.self)
    let folder: String = {
        guard let slash = listPath.lastIndex(of: "/") else { return "" }
        return slash == listPath.startIndex ? "/" : String(listPath[..<slash])
    }()

    var items: [InputItem] = []
    // isNewline also splits "\r\n", which Swift sees as one Character, not as "\r" then "\n".
    let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline })
    for (number, rawLine) in lines.enumerated() {
        let line = rawLine.trimmingWhitespace()
        if line.isEmpty || line.hasPrefix("#") { continue }
        let path = line.hasPrefix("/") ? String(line) : joinPath(folder, String(line))
        switch fileKind(path) {
        case .directory?:
            let found = try listFolder(path)
            if found.isEmpty {
                throw QuarryError.file(
                    path: listPath, message: "line \(number + 1): folder \(path) holds no images")
            }
            items += found
        case .file?:
            switch classifyFile(path) {
            case .array: items.append(.array(path))
            case .tar: items += try listTarSamples(path).map(InputItem.tarSample)
            default: items.append(.image(path))
            }
        case nil:
            items.append(lowercasedExtension(path) == "npy" ? .array(path) : .image(path))
        }
    }
    if items.isEmpty { throw QuarryError.file(path: listPath, message: "list of paths names no inputs") }
    return items
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return s
    }
}
