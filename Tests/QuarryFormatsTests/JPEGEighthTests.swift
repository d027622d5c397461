// The 1/8 JPEG reader (CImageCodecs/jpeg_eighth.c) against a float64 reference built from the DC
// coefficients libjpeg reads, on JPEGs of random sizes, sampling, quality, restart intervals and
// Huffman tables, encoded here by libjpeg; against libjpeg's own 1/8 decode; and on corrupt data.
import CImageCodecs
import Foundation
import XCTest

@testable import QuarryFormats

/// SplitMix64: the seed is printed by each test, so a failure can be replayed.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Photo-like samples: a smooth colour field, a few hard-edged rectangles, noise.
private func photoPixels(width: Int, height: Int, channels: Int, rng: inout SeededGenerator) -> [UInt8] {
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    let base = (0..<channels).map { _ in Double.random(in: 40...200, using: &rng) }
    let slope = (0..<channels).map { _ in Double.random(in: -1.5...1.5, using: &rng) }
    let rects = (0..<4).map { _ in
        (Int.random(in: 0..<width, using: &rng), Int.random(in: 0..<height, using: &rng),
         Int.random(in: 1...max(width / 2, 1), using: &rng), Int.random(in: 1...max(height / 2, 1), using: &rng),
         (0..<channels).map { _ in Double.random(in: -90...90, using: &rng) })
    }
    let noise = Double.random(in: 0...40, using: &rng)
    for y in 0..<height {
        for x in 0..<width {
            for c in 0..<channels {
                var v = base[c] + slope[c] * Double(x + y) * 200 / Double(width + height)
                for (rx, ry, rw, rh, shift) in rects where x >= rx && x < rx + rw && y >= ry && y < ry + rh {
                    v += shift[c]
                }
                v += Double.random(in: -noise...noise, using: &rng)
                pixels[(y * width + x) * channels + c] = UInt8(max(0, min(255, v.rounded())))
            }
        }
    }
    return pixels
}

private struct JPEGLayout: CustomStringConvertible {
    var width, height, channels, quality, hSamp, vSamp, restart: Int
    var optimize = false, progressive = false
    var description: String {
        "\(width)x\(height)x\(channels) q\(quality) \(hSamp)x\(vSamp) restart \(restart)"
            + (optimize ? " optimised" : "") + (progressive ? " progressive" : "")
    }
}

private func encodeJPEG(_ pixels: [UInt8], _ layout: JPEGLayout) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>?
    var size = 0
    let status = qic_encode_jpeg(
        pixels, Int32(layout.width), Int32(layout.height), Int32(layout.channels), Int32(layout.quality),
        Int32(layout.hSamp), Int32(layout.vSamp), Int32(layout.restart), layout.optimize ? 1 : 0,
        layout.progressive ? 1 : 0, &out, &size)
    guard status == 0, let out else { throw XCTSkip("libjpeg could not encode \(layout)") }
    defer { free(out) }
    return Array(UnsafeBufferPointer(start: out, count: size))
}

/// An 8-bit image from one of the decoders: (width, height, channels, samples).
private typealias Samples = (width: Int, height: Int, channels: Int, values: [UInt8])

private func take(_ image: inout qic_image) -> Samples {
    defer { qic_image_free(&image) }
    let count = Int(image.width) * Int(image.height) * Int(image.channels)
    let values = Array(UnsafeBufferPointer(start: image.pixels!.assumingMemoryBound(to: UInt8.self), count: count))
    return (Int(image.width), Int(image.height), Int(image.channels), values)
}

/// The reader's output, or nil when it declines the file.
private let pixelBound = 1 << 22

private func eighth(_ bytes: [UInt8], minimumShortSide: Int = 1) -> Samples? {
    var image = qic_image()
    guard qic_jpeg_decode_eighth(bytes, bytes.count, pixelBound, Int32(minimumShortSide), &image) == 1 else { return nil }
    return take(&image)
}

/// libjpeg-turbo's own decode at the scale qic_decode_scaled would pick, or nil when it fails.
private func libjpegScaled(_ bytes: [UInt8], minimumShortSide: Int = 1) -> Samples? {
    var image = qic_image()
    var error = [CChar](repeating: 0, count: Int(QIC_ERROR_CAPACITY))
    guard qic_decode_scaled_libjpeg(bytes, bytes.count, pixelBound, Int32(minimumShortSide), &image, &error) == 0 else {
        return nil
    }
    return take(&image)
}

/// What the reader should produce, in float64, from libjpeg's DC coefficients: each block's DC
/// dequantised, divided by 8, rounded and level-shifted; chroma at half resolution spread over
/// luma's grid by the triangle filter (3/4 of the nearer sample, 1/4 of the next one out, edges
/// replicated, per direction); then JFIF's YCbCr to RGB. Unrounded.
private func referenceEighth(_ bytes: [UInt8]) throws -> (width: Int, height: Int, channels: Int, values: [Double]) {
    var planes: [(info: qic_jpeg_component_info, levels: [Double])] = []
    var components = 1
    var c = 0
    while c < components {
        var info = qic_jpeg_component_info()
        XCTAssertEqual(qic_jpeg_dc_coefficients(bytes, bytes.count, Int32(c), nil, 0, &info), 1)
        var dc = [Int32](repeating: 0, count: Int(info.blocks_wide * info.blocks_high))
        XCTAssertEqual(qic_jpeg_dc_coefficients(bytes, bytes.count, Int32(c), &dc, dc.count, &info), 0)
        components = Int(info.components)
        let levels = dc.map { v -> Double in
            max(0, min(255, (Double(v) * Double(info.quant_dc) / 8 + 0.5).rounded(.down) + 128))
        }
        planes.append((info, levels))
        c += 1
    }
    let width = Int(planes[0].info.blocks_wide), height = Int(planes[0].info.blocks_high)
    var spread: [[Double]] = []
    for (info, levels) in planes {
        let w = Int(info.blocks_wide), h = Int(info.blocks_high)
        let fx = components == 1 ? 1 : Int(info.max_h_samp / info.h_samp)
        let fy = components == 1 ? 1 : Int(info.max_v_samp / info.v_samp)
        // (index of the nearer sample, index of the next one out, weight of the nearer) per axis.
        func taps(_ i: Int, _ factor: Int, _ n: Int) -> (Int, Int, Double) {
            if factor == 1 { return (min(i, n - 1), min(i, n - 1), 1) }
            let near = i / 2
            let far = i % 2 == 1 ? min(near + 1, n - 1) : max(near - 1, 0)
            return (near, far, 0.75)
        }
        var plane = [Double](repeating: 0, count: width * height)
        for y in 0..<height {
            let (ny, fy2, wy) = taps(y, fy, h)
            for x in 0..<width {
                let (nx, fx2, wx) = taps(x, fx, w)
                func at(_ yy: Int, _ xx: Int) -> Double { levels[yy * w + xx] }
                plane[y * width + x] = wy * (wx * at(ny, nx) + (1 - wx) * at(ny, fx2))
                    + (1 - wy) * (wx * at(fy2, nx) + (1 - wx) * at(fy2, fx2))
            }
        }
        spread.append(plane)
    }
    if components == 1 { return (width, height, 1, spread[0]) }
    var rgb = [Double](repeating: 0, count: width * height * 3)
    for i in 0..<(width * height) {
        let l = spread[0][i], cb = spread[1][i] - 128, cr = spread[2][i] - 128
        rgb[3 * i] = l + 1.402 * cr
        rgb[3 * i + 1] = l - 0.344136 * cb - 0.714136 * cr
        rgb[3 * i + 2] = l + 1.772 * cb
    }
    return (width, height, 3, rgb.map { max(0, min(255, $0)) })
}

final class JPEGEighthTests: XCTestCase {
    private func seeded(_ test: String) -> SeededGenerator {
        let seed = UInt64.random(in: 0...UInt64.max)
        FileHandle.standardError.write("\(test): seed \(seed)\n".data(using: .utf8)!)
        return SeededGenerator(state: seed)
    }

    private func randomLayout(_ rng: inout SeededGenerator) -> JPEGLayout {
        let sampling = [(1, 1), (2, 1), (1, 2), (2, 2)].randomElement(using: &rng)!
        return JPEGLayout(
            width: Int.random(in: 1...260, using: &rng), height: Int.random(in: 1...260, using: &rng),
            channels: Bool.random(using: &rng) ? 3 : 1, quality: Int.random(in: 3...100, using: &rng),
            hSamp: sampling.0, vSamp: sampling.1, restart: [0, 0, 1, 2, 5, 17].randomElement(using: &rng)!,
            optimize: Bool.random(using: &rng))
    }

    /// A random layout and a photo-like JPEG of it.
    private func randomJPEG(_ rng: inout SeededGenerator) throws -> (JPEGLayout, [UInt8]) {
        let layout = randomLayout(&rng)
        let pixels = photoPixels(width: layout.width, height: layout.height, channels: layout.channels, rng: &rng)
        return (layout, try encodeJPEG(pixels, layout))
    }

    /// Every baseline layout is handled, and its pixels are the reference's within rounding: the
    /// reader rounds chroma before colour conversion (half a level, times at most 1.772), and the
    /// conversion once more.
    func testMatchesTheDCReferenceOnRandomLayouts() throws {
        var rng = seeded(#function)
        for _ in 0..<48 {
            let (layout, bytes) = try randomJPEG(&rng)
            guard let got = eighth(bytes) else {
                XCTFail("\(layout): declined")
                continue
            }
            let want = try referenceEighth(bytes)
            XCTAssertEqual([got.width, got.height, got.channels], [want.width, want.height, want.channels], "\(layout)")
            XCTAssertEqual([got.width, got.height], [(layout.width + 7) / 8, (layout.height + 7) / 8], "\(layout)")
            guard got.values.count == want.values.count else { continue }
            let subsampled = layout.channels == 3 && layout.hSamp * layout.vSamp > 1
            let tolerance = subsampled ? 1.5 : 1.0
            var worst = 0.0
            for (a, b) in zip(got.values, want.values) { worst = max(worst, abs(Double(a) - b)) }
            XCTAssertLessThanOrEqual(worst, tolerance, "\(layout): largest difference from the reference")
        }
    }

    /// libjpeg's 1/8 output has the same size. Where nothing is subsampled it is the same pixels
    /// (grey exactly; colour within a level of the two fixed-point conversions). Subsampled chroma
    /// differs by design (libjpeg gives it a 2x2 inverse DCT), but the luma recomputed from either
    /// RGB is the same luma wherever no channel was clipped: Y = 0.299 R + 0.587 G + 0.114 B
    /// cancels the chroma terms of the conversion, leaving each side's rounding.
    func testAgreesWithLibjpegsEighth() throws {
        var rng = seeded(#function)
        for _ in 0..<24 {
            let (layout, bytes) = try randomJPEG(&rng)
            guard let got = eighth(bytes), let want = libjpegScaled(bytes) else {
                XCTFail("\(layout): a decoder failed")
                continue
            }
            XCTAssertEqual([got.width, got.height, got.channels], [want.width, want.height, want.channels], "\(layout)")
            guard got.values.count == want.values.count else { continue }
            if layout.channels == 1 || layout.hSamp * layout.vSamp == 1 {
                var worst = 0
                for (a, b) in zip(got.values, want.values) { worst = max(worst, abs(Int(a) - Int(b))) }
                XCTAssertLessThanOrEqual(worst, layout.channels == 1 ? 0 : 1, "\(layout)")
                continue
            }
            func luma(_ v: [UInt8], _ i: Int) -> Double {
                0.299 * Double(v[3 * i]) + 0.587 * Double(v[3 * i + 1]) + 0.114 * Double(v[3 * i + 2])
            }
            var worst = 0.0
            for i in 0..<(got.width * got.height) {
                let unclipped = (0..<3).allSatisfy { c in
                    (1...254).contains(got.values[3 * i + c]) && (1...254).contains(want.values[3 * i + c])
                }
                if unclipped { worst = max(worst, abs(luma(got.values, i) - luma(want.values, i))) }
            }
            XCTAssertLessThanOrEqual(worst, 1.0, "\(layout): luma of the two RGB outputs")
        }
    }

    /// What the reader does not handle goes to libjpeg: progressive files, CMYK, files whose 1/8
    /// size is under the target, files cut short or without an end-of-image marker.
    func testDeclinesWhatItDoesNotHandle() throws {
        var rng = seeded(#function)
        var layout = JPEGLayout(width: 120, height: 90, channels: 3, quality: 85, hSamp: 2, vSamp: 2, restart: 0)
        let pixels = photoPixels(width: 120, height: 90, channels: 3, rng: &rng)
        let baseline = try encodeJPEG(pixels, layout)
        XCTAssertNotNil(eighth(baseline, minimumShortSide: 12))
        XCTAssertNil(eighth(baseline, minimumShortSide: 13), "1/8 is 15 x 12: under a target of 13")
        layout.progressive = true
        let progressive = try encodeJPEG(pixels, layout)
        XCTAssertNil(eighth(progressive))
        // Through the public decoder, the progressive file still decodes at 1/8, by libjpeg.
        let viaLibjpeg = try decodeImage(progressive, name: "progressive.jpg", minimumShortSide: 12)
        XCTAssertEqual([viaLibjpeg.width, viaLibjpeg.height, viaLibjpeg.sourceWidth], [15, 12, 120])
        for name in ["cmyk_27x19.jpg", "no_eoi.jpg", "truncated.jpg", "progressive_45x38.jpg"] {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: imageFixture(name))))
            XCTAssertNil(eighth(bytes), name)
        }
        // An Adobe marker saying RGB (transform 0), or an unknown transform, goes to libjpeg; one
        // saying YCbCr (1) does not.
        for (transform, handled) in [(UInt8(0), false), (1, true), (2, false)] {
            let adobe: [UInt8] = [0xFF, 0xEE, 0x00, 0x0E] + Array("Adobe".utf8) + [0x00, 0x64, 0, 0, 0, 0, transform]
            let marked = Array(baseline[0..<2]) + adobe + Array(baseline[2...])
            XCTAssertEqual(eighth(marked) != nil, handled, "Adobe transform \(transform)")
        }
        for cut in stride(from: 0, to: baseline.count - 1, by: 37) {
            XCTAssertNil(eighth(Array(baseline[0..<cut])), "cut at \(cut)")
        }
    }

    /// decodeImage takes the reader whenever the chosen scale is 1/8.
    func testDecodeImageUsesTheReaderAtEighth() throws {
        var rng = seeded(#function)
        let layout = JPEGLayout(width: 203, height: 161, channels: 3, quality: 90, hSamp: 2, vSamp: 2, restart: 3)
        let bytes = try encodeJPEG(photoPixels(width: 203, height: 161, channels: 3, rng: &rng), layout)
        let decoded = try decodeImage(bytes, name: "photo.jpg", minimumShortSide: 21)
        let direct = try XCTUnwrap(eighth(bytes))
        XCTAssertEqual([decoded.width, decoded.height, decoded.sourceWidth, decoded.sourceHeight], [26, 21, 203, 161])
        XCTAssertEqual(decoded.pixels, .uint8(direct.values))
        let libjpeg = try XCTUnwrap(libjpegScaled(bytes))
        XCTAssertNotEqual(decoded.pixels, .uint8(libjpeg.values), "4:2:0 chroma differs from libjpeg's 2x2 IDCT")
    }

    /// Damaged entropy data, headers and restart markers: the reader never crashes or reads out
    /// of bounds, declines what it cannot read, and whatever it accepts has the declared size and
    /// libjpeg reads too (so no file becomes an image here that is an error there).
    func testCorruptDataIsDeclinedOrDecodedNeverCrashes() throws {
        var rng = seeded(#function)
        var accepted = 0, declined = 0
        for _ in 0..<12 {
            var layout = randomLayout(&rng)
            layout.width = Int.random(in: 16...200, using: &rng)
            layout.height = Int.random(in: 16...200, using: &rng)
            let bytes = try encodeJPEG(
                photoPixels(width: layout.width, height: layout.height, channels: layout.channels, rng: &rng), layout)
            for _ in 0..<40 {
                var damaged = bytes
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let at = Int.random(in: 2..<damaged.count, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: damaged[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                    case 1: damaged[at] = 0xFF
                    case 2: damaged[at] = UInt8.random(in: 0...255, using: &rng)
                    default: damaged.remove(at: at)
                    }
                }
                if let got = eighth(damaged) {
                    accepted += 1
                    XCTAssertEqual(got.values.count, got.width * got.height * got.channels)
                    if libjpegScaled(damaged) == nil {
                        var image = qic_image()
                        var error = [CChar](repeating: 0, count: Int(QIC_ERROR_CAPACITY))
                        _ = qic_decode_scaled_libjpeg(damaged, damaged.count, pixelBound, 1, &image, &error)
                        let path = NSTemporaryDirectory() + "quarry-eighth-accepted.jpg"
                        _ = FileManager.default.createFile(atPath: path, contents: Data(damaged))
                        let message = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                        XCTFail("\(layout): accepted here, but libjpeg says \(message) (written to \(path))")
                    }
                } else {
                    declined += 1
                }
                // The public path never crashes either: it decodes or throws.
                _ = try? decodeImage(damaged, name: "damaged.jpg", minimumShortSide: 1)
            }
        }
        XCTAssertGreaterThan(declined, 0)
        print("corrupt JPEGs: \(accepted) accepted, \(declined) declined")
    }
}
