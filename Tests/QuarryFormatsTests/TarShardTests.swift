// WebDataset-style tar shards: listing by key, images read from their members, and damage (a corrupt
// member, a sample without an image, a bad header, a cut shard) named and skipped.
import Foundation
import Quarry
import XCTest

@testable import QuarryFormats

/// A minimal ustar writer, so the tests do not depend on a tar tool. A name over 100 bytes goes in
/// a GNU 'L' member first.
struct TarWriter {
    var bytes: [UInt8] = []

    mutating func add(_ name: String, _ data: [UInt8], type: UInt8 = UInt8(ascii: "0")) {
        if name.utf8.count > 100 {
            add("././@LongLink", Array(name.utf8) + [0], type: UInt8(ascii: "L"))
        }
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, at offset: Int, width: Int) {
            for (i, b) in s.utf8.prefix(width).enumerated() { h[offset + i] = b }
        }
        func octal(_ v: Int, at offset: Int, width: Int) {  // zero-padded digits, then a NUL
            let digits = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits, at: offset, width: width - 1)
        }
        put(String(name.utf8.prefix(100))!, at: 0, width: 100)
        octal(0o644, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(data.count, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        h[156] = type
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        for i in 148..<156 { h[i] = UInt8(ascii: " ") }
        let sum = h.reduce(0) { $0 + Int($1) }
        octal(sum, at: 148, width: 7)
        h[155] = 0
        bytes += h + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    mutating func end() { bytes += [UInt8](repeating: 0, count: 1024) }
}

final class TarShardTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "quarry-tar-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func fixtureBytes(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: imageFixture(name))))
    }

    /// Four samples: a JPEG with a label, a PNG, a label without an image, a corrupt WebP.
    private func writeShard(_ path: String) throws -> [UInt8] {
        var tar = TarWriter()
        tar.add("000000.jpg", try fixtureBytes("rgb_37x53.jpg"))
        tar.add("000000.cls", Array("7\n".utf8))
        tar.add("000001.png", try fixtureBytes("rgb_37x53.png"))
        tar.add("000002.cls", Array("3\n".utf8))
        tar.add("000002.json", Array("{}".utf8))
        tar.add("000003.webp", try fixtureBytes("corrupt.webp"))
        let long = String(repeating: "d", count: 120) + "/000004.webp"
        tar.add(long, try fixtureBytes("lossless_35x29.webp"))
        tar.end()
        try Data(tar.bytes).write(to: URL(fileURLWithPath: path))
        return tar.bytes
    }

    func testSamplesAreListedByKeyAndReadFromTheirMembers() throws {
        let path = dir + "/shard-0000.tar"
        _ = try writeShard(path)
        let samples = try listTarSamples(path)
        let long = String(repeating: "d", count: 120) + "/000004"
        XCTAssertEqual(samples.map(\.key), ["000000", "000001", "000002", "000003", long])
        XCTAssertEqual(samples.map(\.member), ["000000.jpg", "000001.png", nil, "000003.webp", long + ".webp"])
        XCTAssertEqual(samples[0].source, path + ":000000")
        XCTAssertNil(samples[0].problem)
        XCTAssertTrue(samples[2].problem?.contains("no image member") ?? false, "\(samples[2])")
        XCTAssertTrue(samples[2].problem?.contains("000002.cls, 000002.json") ?? false, "\(samples[2])")

        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        // The members' bytes are the files' bytes: decoded images equal the fixtures' decode.
        XCTAssertEqual(try decodeImage(readTarSample(samples[0], from: fd), name: "a"), try decodeImage(at: imageFixture("rgb_37x53.jpg")))
        XCTAssertEqual(try decodeImage(readTarSample(samples[1], from: fd), name: "b"), try decodeImage(at: imageFixture("rgb_37x53.png")))
        XCTAssertEqual(try decodeImage(readTarSample(samples[4], from: fd), name: "c"), try decodeImage(at: imageFixture("lossless_35x29.webp")))
        XCTAssertThrowsError(try readTarSample(samples[2], from: fd)) { error in
            XCTAssertTrue("\(error)".hasPrefix(path + ":000002"), "\(error)")
        }
        XCTAssertThrowsError(try decodeImage(readTarSample(samples[3], from: fd), name: path + ":000003.webp")) { error in
            XCTAssertTrue("\(error)".contains("000003.webp") && "\(error)".contains("invalid WebP"), "\(error)")
        }
    }

    func testListingTheShardThroughListInputs() throws {
        for n in 0..<3 { _ = try writeShard(dir + "/shard-000\(n).tar") }
        let items = try listInputs([dir + "/shard-{0000..0002}.tar"])
        XCTAssertEqual(items.count, 15)
        XCTAssertEqual(items.first?.path, dir + "/shard-0000.tar:000000")
        XCTAssertEqual(items.last?.path, dir + "/shard-0002.tar:" + String(repeating: "d", count: 120) + "/000004")
        XCTAssertThrowsError(try listInputs([dir + "/shard-{0000..0003}.tar"])) { error in
            XCTAssertTrue("\(error)".contains("shard-0003.tar"), "\(error)")
        }
        // By content, whatever the name.
        try FileManager.default.copyItem(atPath: dir + "/shard-0000.tar", toPath: dir + "/samples.bin")
        XCTAssertEqual(try listInputs([dir + "/samples.bin"]).count, 5)
    }

    func testPatternsExpandInOrder() throws {
        XCTAssertEqual(try expandShardPattern("s-{08..11}.tar"), ["s-08.tar", "s-09.tar", "s-10.tar", "s-11.tar"])
        XCTAssertEqual(try expandShardPattern("{a,b}/x-{1..2}.tar"), ["a/x-1.tar", "a/x-2.tar", "b/x-1.tar", "b/x-2.tar"])
        XCTAssertEqual(try expandShardPattern("plain.tar"), ["plain.tar"])
        XCTAssertThrowsError(try expandShardPattern("s-{3..1}.tar"))
        XCTAssertThrowsError(try expandShardPattern("s-{1..2.tar"))
    }

    /// A header with a wrong checksum ends the shard's listing with a failed entry naming the byte;
    /// a shard cut inside a member fails that member; what came before is kept.
    func testDamagedShardsKeepWhatCameBefore() throws {
        let bytes = try writeShard(dir + "/good.tar")
        let headers = try listTarSamples(dir + "/good.tar")
        // Corrupt the header of 000001.png (the member after 000000.cls).
        let pngHeader = headers[1].offset - 512
        var corrupt = bytes
        corrupt[pngHeader + 3] ^= 0x40
        try Data(corrupt).write(to: URL(fileURLWithPath: dir + "/corrupt.tar"))
        let damaged = try listTarSamples(dir + "/corrupt.tar")
        XCTAssertEqual(damaged.count, 2)
        XCTAssertEqual(damaged[0].key, "000000")
        XCTAssertNil(damaged[0].problem)
        XCTAssertEqual(damaged[1].source, dir + "/corrupt.tar:@\(pngHeader)")
        XCTAssertTrue(damaged[1].problem?.contains("corrupt tar header at byte \(pngHeader)") ?? false)

        // Cut in the middle of the PNG's data.
        try Data(bytes.prefix(headers[1].offset + 100)).write(to: URL(fileURLWithPath: dir + "/cut.tar"))
        let cut = try listTarSamples(dir + "/cut.tar")
        XCTAssertEqual(cut.map(\.key), ["000000", "000001"])
        XCTAssertTrue(cut[1].problem?.contains("cut short") ?? false, "\(cut[1])")

        try Data("hello, not a tar file".utf8 + [UInt8](repeating: 1, count: 600)).write(to: URL(fileURLWithPath: dir + "/text.tar"))
        XCTAssertThrowsError(try listTarSamples(dir + "/text.tar")) { error in
            XCTAssertTrue("\(error)".contains("not a tar file"), "\(error)")
        }
    }
}
