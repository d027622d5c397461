// The zip container of .npz files: the central directory (with its zip64 extensions, which numpy
// always writes), stored and deflated members, and a writer of stored archives. Deflate is decoded
// here (RFC 1951) because zlib is not reliably importable from Swift on Linux.

import Foundation
import Quarry

struct ZipArchive {
    struct Entry {
        var name: String
        var method: UInt16
        var crc: UInt32
        var compressedSize: Int
        var size: Int
        var localHeaderOffset: Int
    }

    let reader: ByteReader
    let entries: [Entry]
    var path: String { reader.path }
    /// A member that claims to expand to more than this is refused (a "zip bomb").
    static let maxMemberBytes = 1 << 36

    init(bytes: UnsafeRawBufferPointer, path: String) throws {
        let r = ByteReader(bytes: bytes, path: path)
        reader = r
        func fail(_ m: String) -> QuarryError { .file(path: path, message: "not a valid .npz (zip) archive: \(m)") }
        // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
        var eocd = -1
        var o = bytes.count - 22
        let stop = max(0, bytes.count - 22 - 65535)
        while o >= stop {
            if try r.u32(o) == 0x0605_4B50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record") }
        var count = Int(try r.u16(eocd + 10))
        var cdSize = Int(try r.u32(eocd + 12))
        var cdOffset = Int(try r.u32(eocd + 16))
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            let loc = eocd - 20
            guard loc >= 0, try r.u32(loc) == 0x0706_4B50 else { throw fail("zip64 locator missing") }
            let z = try r.u64(loc + 8)
            guard z < UInt64(bytes.count), try r.u32(Int(z)) == 0x0606_4B50 else { throw fail("zip64 end record missing") }
            let zo = Int(z)
            let c = try r.u64(zo + 32), s = try r.u64(zo + 40), off = try r.u64(zo + 48)
            guard c < UInt64(bytes.count), s <= UInt64(bytes.count), off <= UInt64(bytes.count) else { throw fail("zip64 end record out of range") }
            count = Int(c); cdSize = Int(s); cdOffset = Int(off)
        }
        try r.check(cdOffset, cdSize)
        var entries: [Entry] = []
        var p = cdOffset
        for _ in 0..<count {
            guard try r.u32(p) == 0x0201_4B50 else { throw fail("bad central directory entry at byte \(p)") }
            let method = try r.u16(p + 10)
            let crc = try r.u32(p + 16)
            var csize = UInt64(try r.u32(p + 20)), usize = UInt64(try r.u32(p + 24))
            let nameLen = Int(try r.u16(p + 28)), extraLen = Int(try r.u16(p + 30)), commentLen = Int(try r.u16(p + 32))
            var local = UInt64(try r.u32(p + 42))
            let nameBytes = try r.slice(p + 46, nameLen)
            guard let name = String(bytes: nameBytes, encoding: .utf8) else { throw fail("member name is not UTF-8") }
            // zip64 extra field: the 64-bit values replace, in order, those that read 0xFFFFFFFF.
            var e = p + 46 + nameLen
            let end = e + extraLen
            try r.check(e, extraLen)
            while e + 4 <= end {
                let id = try r.u16(e), len = Int(try r.u16(e + 2))
                guard e + 4 + len <= end else { throw fail("extra field of '\(name)' overruns its entry") }
                if id == 0x0001 {
                    var q = e + 4
                    if usize == 0xFFFF_FFFF, q + 8 <= e + 4 + len { usize = try r.u64(q); q += 8 }
                    if csize == 0xFFFF_FFFF, q + 8 <= e + 4 + len { csize = try r.u64(q); q += 8 }
                    if local == 0xFFFF_FFFF, q + 8 <= e + 4 + len { local = try r.u64(q); q += 8 }
                }
                e += 4 + len
            }
            guard csize <= UInt64(bytes.count), local <= UInt64(bytes.count), usize <= UInt64(ZipArchive.maxMemberBytes) else {
                throw fail("member '\(name)' declares sizes beyond the archive")
            }
            entries.append(Entry(name: name, method: method, crc: crc, compressedSize: Int(csize), size: Int(usize), localHeaderOffset: Int(local)))
            p = end + commentLen
        }
        self.entries = entries
    }

    /// The uncompressed bytes of `entry`, checked against its CRC.
    func contents(of entry: Entry) throws -> Data {
        func fail(_ m: String) -> QuarryError { .file(path: path, message: "member '\(entry.name)': \(m)") }
        let h = entry.localHeaderOffset
        guard try reader.u32(h) == 0x0403_4B50 else { throw fail("bad local header") }
        let start = h + 30 + Int(try reader.u16(h + 26)) + Int(try reader.u16(h + 28))
        let raw = try reader.slice(start, entry.compressedSize)
        let out: Data
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.size else { throw fail("stored member sizes differ") }
            out = Data(raw)
        case 8:
            var inflater = Inflater(input: raw, expected: entry.size)
            guard let d = inflater.run() else { throw fail("corrupt deflate data") }
            out = d
        default:
            throw fail("compression method \(entry.method) is not supported (stored and deflate are)")
        }
        guard out.count == entry.size else { throw fail("expands to \(out.count) bytes, the directory says \(entry.size)") }
        guard crc32(out) == entry.crc else { throw fail("CRC mismatch (corrupt archive)") }
        return out
    }

    /// An archive of stored (uncompressed) members.
    static func storedArchive(_ members: [(String, Data)]) throws -> Data {
        var out = Data()
        var central = Data()
        for (name, data) in members {
            guard data.count < 0xFFFF_FFFF, out.count < 0xFFFF_FFFF else {
                throw QuarryError.unsupported("npz members over 4 GiB (zip64) are not written; save separate .npy files")
            }
            let crc = crc32(data)
            let nameBytes = Array(name.utf8)
            let offset = UInt32(out.count)
            out.appendLE(UInt32(0x0403_4B50)); out.appendLE(UInt16(20)); out.appendLE(UInt16(0)); out.appendLE(UInt16(0))
            out.appendLE(UInt16(0)); out.appendLE(UInt16(0x21))  // time, date (1980-01-01)
            out.appendLE(crc); out.appendLE(UInt32(data.count)); out.appendLE(UInt32(data.count))
            out.appendLE(UInt16(nameBytes.count)); out.appendLE(UInt16(0))
            out.append(contentsOf: nameBytes); out.append(data)
            central.appendLE(UInt32(0x0201_4B50)); central.appendLE(UInt16(20)); central.appendLE(UInt16(20))
            central.appendLE(UInt16(0)); central.appendLE(UInt16(0)); central.appendLE(UInt16(0)); central.appendLE(UInt16(0x21))
            central.appendLE(crc); central.appendLE(UInt32(data.count)); central.appendLE(UInt32(data.count))
            central.appendLE(UInt16(nameBytes.count)); central.appendLE(UInt16(0)); central.appendLE(UInt16(0))
            central.appendLE(UInt16(0)); central.appendLE(UInt16(0)); central.appendLE(UInt32(0)); central.appendLE(offset)
            central.append(contentsOf: nameBytes)
        }
        let cdOffset = UInt32(out.count)
        out.append(central)
        out.appendLE(UInt32(0x0605_4B50)); out.appendLE(UInt16(0)); out.appendLE(UInt16(0))
        out.appendLE(UInt16(members.count)); out.appendLE(UInt16(members.count))
        out.appendLE(UInt32(central.count)); out.appendLE(cdOffset); out.appendLE(UInt16(0))
        return out
    }
}

let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

func crc32(_ data: Data) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    data.withUnsafeBytes { raw in
        for b in raw { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
}

/// A raw deflate decoder. Returns nil on any malformed input rather than trapping.
struct Inflater {
    let input: UnsafeRawBufferPointer
    var pos = 0
    var bitBuf: UInt32 = 0
    var bitCount = 0
    var out: [UInt8] = []
    let expected: Int

    init(input: UnsafeRawBufferPointer, expected: Int) {
        self.input = input; self.expected = expected
        out.reserveCapacity(expected)
    }

    mutating func bits(_ n: Int) -> Int? {
        while bitCount < n {
            guard pos < input.count else { return nil }
            bitBuf |= UInt32(input[pos]) << UInt32(bitCount)
            pos += 1; bitCount += 8
        }
        let v = Int(bitBuf & ((1 << UInt32(n)) - 1))
        bitBuf >>= UInt32(n); bitCount -= n
        return v
    }

    /// Canonical Huffman code: counts per length and symbols sorted by code.
    struct Huffman { var counts = [Int](repeating: 0, count: 16); var symbols: [Int] = [] }

    static func build(_ lengths: [Int]) -> Huffman? {
        var h = Huffman()
        for l in lengths { h.counts[l] += 1 }
        h.counts[0] = 0
        var left = 1
        for len in 1..<16 {
            left <<= 1; left -= h.counts[len]
            if left < 0 { return nil }  // over-subscribed
        }
        var offs = [Int](repeating: 0, count: 16)
        for len in 1..<15 { offs[len + 1] = offs[len] + h.counts[len] }
        h.symbols = [Int](repeating: 0, count: lengths.count)
        for (sym, l) in lengths.enumerated() where l != 0 { h.symbols[offs[l]] = sym; offs[l] += 1 }
        return h
    }

    mutating func decode(_ h: Huffman) -> Int? {
        var code = 0, first = 0, index = 0
        for len in 1..<16 {
            guard let b = bits(1) else { return nil }
            code |= b
            let count = h.counts[len]
            if code - count < first { return h.symbols[index + (code - first)] }
            index += count; first += count
            first <<= 1; code <<= 1
        }
        return nil
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    mutating func codes(_ lit: Huffman, _ dist: Huffman) -> Bool {
        while true {
            guard let sym = decode(lit) else { return false }
            if sym < 256 {
                out.append(UInt8(sym))
            } else if sym == 256 {
                return true
            } else {
                let li = sym - 257
                guard li < 29, let e = bits(Inflater.lengthExtra[li]) else { return false }
                let len = Inflater.lengthBase[li] + e
                guard let ds = decode(dist), ds < 30, let de = bits(Inflater.distExtra[ds]) else { return false }
                let d = Inflater.distBase[ds] + de
                guard d <= out.count else { return false }
                let start = out.count - d
                for k in 0..<len { out.append(out[start + k]) }
            }
            if out.count > expected { return false }
        }
    }

    mutating func run() -> Data? {
        var last = 0
        repeat {
            guard let l = bits(1), let type = bits(2) else { return nil }
            last = l
            switch type {
            case 0:
                bitBuf = 0; bitCount = 0
                guard pos + 4 <= input.count else { return nil }
                let len = Int(input[pos]) | Int(input[pos + 1]) << 8
                let nlen = Int(input[pos + 2]) | Int(input[pos + 3]) << 8
                pos += 4
                guard len == (~nlen & 0xFFFF), pos + len <= input.count, out.count + len <= expected else { return nil }
                out.append(contentsOf: input[pos..<(pos + len)])
                pos += len
            case 1:
                var lengths = [Int](repeating: 8, count: 288)
                for i in 144..<256 { lengths[i] = 9 }
                for i in 256..<280 { lengths[i] = 7 }
                guard let lit = Inflater.build(lengths), let dist = Inflater.build([Int](repeating: 5, count: 30)),
                      codes(lit, dist) else { return nil }
            case 2:
                guard let hl = bits(5), let hd = bits(5), let hc = bits(4) else { return nil }
                let nlen = hl + 257, ndist = hd + 1, ncode = hc + 4
                guard nlen <= 286, ndist <= 30 else { return nil }
                let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
                var cl = [Int](repeating: 0, count: 19)
                for i in 0..<ncode { guard let v = bits(3) else { return nil }; cl[order[i]] = v }
                guard let lencode = Inflater.build(cl) else { return nil }
                var lengths: [Int] = []
                while lengths.count < nlen + ndist {
                    guard let sym = decode(lencode) else { return nil }
                    if sym < 16 {
                        lengths.append(sym)
                    } else {
                        var rep = 0, val = 0
                        if sym == 16 {
                            guard let prev = lengths.last, let r = bits(2) else { return nil }
                            val = prev; rep = 3 + r
                        } else if sym == 17 {
                            guard let r = bits(3) else { return nil }; rep = 3 + r
                        } else {
                            guard let r = bits(7) else { return nil }; rep = 11 + r
                        }
                        guard lengths.count + rep <= nlen + ndist else { return nil }
                        lengths += [Int](repeating: val, count: rep)
                    }
                }
                guard lengths[256] != 0,
                      let lit = Inflater.build(Array(lengths[0..<nlen])),
                      let dist = Inflater.build(Array(lengths[nlen...])),
                      codes(lit, dist) else { return nil }
            default:
                return nil
            }
        } while last == 0
        return Data(out)
    }
}
