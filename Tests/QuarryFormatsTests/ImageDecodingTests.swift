// Decoded pixels against Pillow's `Image.open(path).convert("RGB")` (fixtures written by
// scripts/make_image_fixtures.py), and errors for broken files.
import Foundation
import Quarry
import XCTest

@testable import QuarryFormats

/// The folder holding the image fixtures, copied into the test bundle.
func imageFixture(_ name: String) -> String {
    let root = Bundle.module.resourcePath ?? Bundle.module.bundlePath
    return root + "/Fixtures/images/" + name
}

/// A .npy file written by numpy: little-endian uint8, uint16 or float32, C order.
struct ImageFixtureArray {
    var shape: [Int]
    var values: [Double]

    init(_ path: String) throws {
        let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        guard data.count > 10, data[0] == 0x93, Array(data[1...5]) == Array("NUMPY".utf8) else {
            throw QuarryError.file(path: path, message: "not a .npy file")
        }
        let major = data[6]
        let headerLength: Int
        let headerStart: Int
        if major == 1 {
            headerLength = Int(data[8]) | Int(data[9]) << 8
            headerStart = 10
        } else {
            headerLength = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
            headerStart = 12
        }
        let header = String(decoding: data[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard header.contains("'fortran_order': False"),
            let shapeOpen = header.range(of: "'shape': ("),
            let shapeClose = header[shapeOpen.upperBound...].firstIndex(of: ")")
        else { throw QuarryError.file(path: path, message: "unexpected header \(header)") }
        shape = header[shapeOpen.upperBound..<shapeClose].split(separator: ",").compactMap {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        let body = Array(data[(headerStart + headerLength)...])
        let count = shape.reduce(1, *)
        if header.contains("'|u1'") {
            values = body.prefix(count).map { Double($0) }
        } else if header.contains("'<u2'") {
            values = (0..<count).map { Double(UInt16(body[2 * $0]) | UInt16(body[2 * $0 + 1]) << 8) }
        } else if header.contains("'<f4'") {
            values = (0..<count).map { i in
                let bits = (0..<4).reduce(UInt32(0)) { $0 | UInt32(body[4 * i + $1]) << (8 * UInt32($1)) }
                return Double(Float(bitPattern: bits))
            }
        } else {
            throw QuarryError.file(path: path, message: "unexpected dtype in \(header)")
        }
        guard values.count == count else { throw QuarryError.file(path: path, message: "short body") }
    }
}

final class ImageDecodingTests: XCTestCase {
    private func assertDecodes8(_ name: String, tolerance: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let image = try decodeImage(at: imageFixture(name))
        let expected = try ImageFixtureArray(imageFixture(name + ".rgb.npy"))
        XCTAssertEqual([image.height, image.width, 3], expected.shape, name, file: file, line: line)
        guard case .uint8(let pixels) = image.pixels else {
            return XCTFail("\(name): expected 8-bit pixels", file: file, line: line)
        }
        XCTAssertEqual(pixels.count, expected.values.count, file: file, line: line)
        var worst = 0
        for (a, b) in zip(pixels, expected.values) { worst = max(worst, abs(Int(a) - Int(b))) }
        XCTAssertLessThanOrEqual(worst, tolerance, "\(name): largest difference from Pillow", file: file, line: line)
    }

    func testPNGsEqualPillowExactly() throws {
        for name in [
            "rgb_37x53.png", "grey_31x29.png", "grey_alpha_23x17.png", "rgba_40x23.png",
            "palette_33x21.png", "bilevel_19x13.png", "interlaced_29x31.png",
        ] {
            try assertDecodes8(name, tolerance: 0)
        }
    }

    /// Pillow bundles libjpeg-turbo too, with the same default (integer) IDCT and fancy upsampling,
    /// so the pixels agree exactly even though the library versions differ.
    func testJPEGsEqualPillow() throws {
        for name in [
            "rgb_37x53.jpg", "grey_31x29.jpg", "progressive_45x38.jpg", "cmyk_27x19.jpg", "rgb444_26x24.jpg",
        ] {
            try assertDecodes8(name, tolerance: 0)
        }
    }

    /// Lossless WebPs equal Pillow's decode exactly (alpha dropped, as convert("RGB") drops it);
    /// lossy ones within one level (Pillow bundles a newer libwebp than Debian's).
    func testWebPsEqualPillow() throws {
        try assertDecodes8("lossless_35x29.webp", tolerance: 0)
        try assertDecodes8("rgba_lossless_26x21.webp", tolerance: 0)
        try assertDecodes8("lossy_48x40.webp", tolerance: 1)
    }

    /// A JPEG decoded at 1/2 scale equals Pillow's draft mode (the same libjpeg DCT scaling), and
    /// keeps the size the file declares for the preprocessing geometry.
    func testScaledJPEGEqualsPillowDraft() throws {
        let path = imageFixture("photo_301x263.jpg")
        let half = try decodeImage(at: path, minimumShortSide: 100)
        XCTAssertEqual([half.width, half.height, half.sourceWidth, half.sourceHeight], [151, 132, 301, 263])
        let expected = try ImageFixtureArray(imageFixture("photo_301x263.jpg.half.rgb.npy"))
        XCTAssertEqual(expected.shape, [132, 151, 3])
        guard case .uint8(let pixels) = half.pixels else { return XCTFail("expected 8-bit pixels") }
        XCTAssertEqual(pixels.map(Double.init), expected.values)
        // The scale is the smallest whose shorter side covers the target; none covers 264.
        let scales: [(Int, [Int])] = [(0, [301, 263]), (33, [38, 33]), (34, [76, 66]), (66, [76, 66]),
                                      (67, [151, 132]), (132, [151, 132]), (133, [301, 263]), (264, [301, 263])]
        for (target, size) in scales {
            let image = try decodeImage(at: path, minimumShortSide: target)
            XCTAssertEqual([image.width, image.height], size, "target \(target)")
        }
        // PNGs and WebPs are not scaled.
        let png = try decodeImage(at: imageFixture("rgb_37x53.png"), minimumShortSide: 5)
        XCTAssertEqual([png.width, png.height, png.sourceWidth], [37, 53, 37])
    }

    func testSixteenBitPNGsScaleToUnitRange() throws {
        for name in ["rgb16_19x17.png", "grey16_21x15.png", "grey_alpha16_interlaced_14x11.png"] {
            let image = try decodeImage(at: imageFixture(name))
            let expected = try ImageFixtureArray(imageFixture(name + ".rgb16.npy"))
            XCTAssertEqual([image.height, image.width, 3], expected.shape, name)
            guard case .float(let pixels) = image.pixels else { return XCTFail("\(name): expected float pixels") }
            XCTAssertEqual(pixels, expected.values.map { Float($0) / 65535 }, name)
        }
    }

    func testBrokenFilesThrowErrorsNamingTheFile() {
        let cases: [(String, String)] = [
            ("truncated.jpg", "Premature end of JPEG file"),
            ("no_eoi.jpg", "Premature end of JPEG file"),
            ("truncated.png", "truncated"),
            ("corrupt.png", "invalid PNG"),
            ("bad_crc.png", "CRC error"),
            ("text.jpg", "not a JPEG, PNG or WebP"),
            ("empty.png", "empty"),
            ("gif_named.png", "GIF images are not supported"),
            ("truncated.webp", "invalid WebP"),
            ("corrupt.webp", "invalid WebP"),
            ("no_such_file.png", "no such file"),
        ]
        for (name, reason) in cases {
            let path = imageFixture(name)
            XCTAssertThrowsError(try decodeImage(at: path), name) { error in
                guard case QuarryError.file(let p, let message) = error else {
                    return XCTFail("\(name): unexpected error \(error)")
                }
                XCTAssertEqual(p, path)
                XCTAssertTrue(message.contains(reason), "\(name): '\(message)' should mention '\(reason)'")
                XCTAssertTrue("\(error)".hasPrefix(path))
            }
        }
        XCTAssertThrowsError(try decodeImage(at: imageFixture(""))) { error in
            XCTAssertTrue("\(error)".contains("directory"), "\(error)")
        }
    }

    /// Every prefix of a JPEG and a PNG fails cleanly (no crash, no half-grey image).
    func testEveryTruncationFails() throws {
        for name in ["rgb_37x53.jpg", "progressive_45x38.jpg", "rgb_37x53.png", "interlaced_29x31.png",
                     "lossy_48x40.webp", "lossless_35x29.webp"] {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: imageFixture(name))))
            for cut in stride(from: 0, to: bytes.count - 1, by: max(bytes.count / 97, 1)) {
                XCTAssertThrowsError(try decodeImage(Array(bytes[0..<cut]), name: "cut\(cut)"), "\(name) cut at \(cut)")
            }
            XCTAssertNoThrow(try decodeImage(bytes, name: name))
        }
    }

    func testPixelBoundRefusesLargeImages() {
        XCTAssertThrowsError(try decodeImage(at: imageFixture("rgb_37x53.png"), maxPixels: 37 * 53 - 1)) { error in
            XCTAssertTrue("\(error)".contains("exceeds the limit"), "\(error)")
        }
        XCTAssertThrowsError(try decodeImage(at: imageFixture("rgb_37x53.jpg"), maxPixels: 100))
        XCTAssertNoThrow(try decodeImage(at: imageFixture("rgb_37x53.jpg"), maxPixels: 37 * 53))
    }

    /// A few kilobytes declaring 20000 x 20000 pixels are refused from the header, before libjpeg
    /// allocates anything for them.
    func testDeclaredSizeIsCheckedBeforeDecoding() throws {
        for name in ["rgb_37x53.jpg", "progressive_45x38.jpg"] {
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: imageFixture(name))))
            let sof = try XCTUnwrap((0..<(bytes.count - 1)).first {
                bytes[$0] == 0xFF && (bytes[$0 + 1] == 0xC0 || bytes[$0 + 1] == 0xC2)
            })
            for i in 5...8 { bytes[sof + i] = i % 2 == 1 ? 0x4E : 0x20 }  // 0x4E20 = 20000
            XCTAssertThrowsError(try decodeImage(bytes, name: "bomb.jpg")) { error in
                XCTAssertTrue("\(error)".contains("20000 x 20000 pixels exceeds the limit"), "\(error)")
            }
        }
    }

    func testDecodedImageChecksItsSampleCount() {
        XCTAssertThrowsError(try DecodedImage(width: 2, height: 2, pixels: .uint8([0, 1, 2])))
        XCTAssertNoThrow(try DecodedImage(width: 1, height: 1, pixels: .float([0, 0.5, 1])))
    }
}
