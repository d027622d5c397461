// Preprocessing against torchvision's transform computed with Pillow + numpy
// (scripts/make_image_fixtures.py, cases.txt), plus the geometry rules on their own.
import Foundation
import Quarry
import QuarryCPU
import XCTest

@testable import QuarryFormats

final class ImagePreprocessingTests: XCTestCase {
    private struct Case {
        var name: String, source: String
        var preprocessing: ImagePreprocessing
    }

    private func cases() throws -> [Case] {
        let text = try String(contentsOfFile: imageFixture("cases.txt"), encoding: .utf8)
        return text.split(separator: "\n").map { line in
            let f = line.split(separator: " ").map(String.init)
            let resize = Int(f[2])!, ch = Int(f[3])!, cw = Int(f[4])!
            var p = f[5] == "unit" ? ImagePreprocessing.unitScale : ImagePreprocessing.imagenet
            p.resize = resize == 0 ? nil : resize
            p.crop = ch == 0 ? nil : (ch, cw)
            return Case(name: f[0], source: f[1], preprocessing: p)
        }
    }

    /// The 8-bit resize runs in CQuarryKernels: every instruction-set level the host has.
    func testMatchesTorchvisionOnPillow() throws {
        try CPUInstructionSet.forEachAvailable { _ in try matchesTorchvisionOnPillow() }
    }

    private func matchesTorchvisionOnPillow() throws {
        let all = try cases()
        XCTAssertEqual(all.count, 8)
        for c in all {
            let image = try decodeImage(at: imageFixture(c.source))
            let out = try c.preprocessing.apply(to: image)
            let expected: [Double]
            let shape: [Int]
            if c.name == "imagenet" {
                // Stored as the uint8 crop (HWC); normalise it here as ToTensor + Normalize do.
                let u8 = try ImageFixtureArray(imageFixture("imagenet.u8.npy"))
                let (h, w) = (u8.shape[0], u8.shape[1])
                shape = [3, h, w]
                let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
                var e = [Double](repeating: 0, count: 3 * h * w)
                for y in 0..<h {
                    for x in 0..<w {
                        for ch in 0..<3 {
                            let v = Float(u8.values[(y * w + x) * 3 + ch]) / 255
                            e[ch * h * w + y * w + x] = Double((v - mean[ch]) / std[ch])
                        }
                    }
                }
                expected = e
            } else {
                let f = try ImageFixtureArray(imageFixture(c.name + ".f32.npy"))
                shape = f.shape
                expected = f.values
            }
            XCTAssertEqual(out.shape, shape, c.name)
            guard out.shape == shape else { continue }
            var worst = 0.0
            var worstAt = 0
            for i in 0..<out.count where abs(Double(out[flat: i]) - expected[i]) > worst {
                worst = abs(Double(out[flat: i]) - expected[i])
                worstAt = i
            }
            XCTAssertLessThanOrEqual(worst, 1e-3, "\(c.name): worst error at flat index \(worstAt)")
            if ProcessInfo.processInfo.environment["QUARRY_PRINT_ERRORS"] != nil { print("\(c.name): max abs error \(worst)") }
            let size = try c.preprocessing.outputSize(width: image.width, height: image.height)
            XCTAssertEqual([3, size.height, size.width], out.shape, c.name)
        }
    }

    func testApplyIntoWritesTheSameValues() throws {
        let image = try decodeImage(at: imageFixture("rgb_37x53.jpg"))
        var p = ImagePreprocessing.imagenet
        p.resize = 40
        p.crop = (32, 30)
        let tensor = try p.apply(to: image)
        var buffer = [Float](repeating: .nan, count: tensor.count + 1)
        try buffer.withUnsafeMutableBufferPointer { try p.apply(to: image, into: $0.baseAddress!) }
        XCTAssertEqual(Array(buffer.prefix(tensor.count)), tensor.scalars)
        XCTAssertTrue(buffer.last!.isNaN, "wrote past the end")
    }

    func testResizedSizeFollowsTorchvision() {
        XCTAssertEqual(Geometry.resizedSize(width: 500, height: 375, shorter: 256).0, 341)  // int(256*500/375)
        XCTAssertEqual(Geometry.resizedSize(width: 500, height: 375, shorter: 256).1, 256)
        XCTAssertEqual(Geometry.resizedSize(width: 375, height: 500, shorter: 256).1, 341)
        XCTAssertEqual(Geometry.resizedSize(width: 300, height: 300, shorter: 256).0, 256)
        XCTAssertEqual(Geometry.resizedSize(width: 10, height: 30, shorter: nil).1, 30)
        // Python's int() truncates: 256 * 333 / 256 = 333 exactly, 7 * 10 / 3 = 23.33 -> 23.
        XCTAssertEqual(Geometry.resizedSize(width: 3, height: 10, shorter: 7).1, 23)
    }

    func testCenterCropRoundsHalfToEvenLikePython() {
        // (257 - 224) / 2 = 16.5 -> 16; (259 - 224) / 2 = 17.5 -> 18.
        XCTAssertEqual(Geometry.centerCrop(size: 257, crop: 224).start, 16)
        XCTAssertEqual(Geometry.centerCrop(size: 259, crop: 224).start, 18)
        // A crop larger than the image: padding (5 - 2) // 2 = 1 before, 2 after.
        let padded = Geometry.centerCrop(size: 2, crop: 5)
        XCTAssertEqual(padded.start, 0)
        XCTAssertEqual(padded.count, 2)
        XCTAssertEqual(padded.outStart, 1)
    }

    func testInvalidSettingsThrow() throws {
        let image = try decodeImage(at: imageFixture("grey_31x29.png"))
        var p = ImagePreprocessing.imagenet
        p.std = [1, 0, 1]
        XCTAssertThrowsError(try p.apply(to: image))
        p = .imagenet
        p.mean = [0.5, 0.5]
        XCTAssertThrowsError(try p.apply(to: image))
        p = .imagenet
        p.resize = 0
        XCTAssertThrowsError(try p.apply(to: image))
        p = .imagenet
        p.crop = (0, 3)
        XCTAssertThrowsError(try p.apply(to: image))
    }

    /// A JPEG decoded at a reduced scale lands on the same output grid as the full decode (the
    /// geometry comes from the declared size) and its values stay close to the full decode's.
    func testScaledDecodeLandsOnTheSameGrid() throws {
        let path = imageFixture("photo_301x263.jpg")
        var p = ImagePreprocessing.imagenet
        p.resize = 100
        p.crop = (96, 96)
        let full = try p.apply(to: try decodeImage(at: path))
        let half = try p.apply(to: try decodeImage(at: path, minimumShortSide: 100))
        XCTAssertEqual(full.shape, [3, 96, 96])
        XCTAssertEqual(half.shape, full.shape)
        var dot = 0.0, nf = 0.0, nh = 0.0, worst = 0.0
        for i in 0..<full.count {
            let a = Double(full[flat: i]), b = Double(half[flat: i])
            dot += a * b; nf += a * a; nh += b * b
            worst = max(worst, abs(a - b))
        }
        let cosine = dot / (nf * nh).squareRoot()
        XCTAssertGreaterThan(cosine, 0.99, "scaled and full decodes differ too much")
        XCTAssertLessThan(cosine, 1.0, "the scaled decode was not used")
        XCTAssertLessThan(worst, 1.5)  // about 0.34 of the [0, 1] range after normalisation
    }

    /// Against a plain float64 reimplementation of Pillow's fixed-point bilinear resize, on random
    /// images and sizes (up and down, one axis or both), so cases the fixtures miss are covered.
    func testRandomSizesAgainstPlainReference() throws {
        try CPUInstructionSet.forEachAvailable { _ in try randomSizesAgainstPlainReference() }
    }

    private func randomSizesAgainstPlainReference() throws {
        var rng = SeededGenerator(seed: 99)
        for trial in 0..<40 {
            let w = Int.random(in: 1...70, using: &rng), h = Int.random(in: 1...70, using: &rng)
            let pixels = (0..<(w * h * 3)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let image = try DecodedImage(width: w, height: h, pixels: .uint8(pixels))
            var p = ImagePreprocessing.unitScale
            p.resize = Int.random(in: 1...90, using: &rng)
            if trial % 3 != 0 { p.crop = (Int.random(in: 1...80, using: &rng), Int.random(in: 1...80, using: &rng)) }
            let out = try p.apply(to: image)
            let expected = referencePipeline(pixels, width: w, height: h, p)
            XCTAssertEqual(out.shape, expected.shape, "trial \(trial)")
            guard out.shape == expected.shape else { continue }
            let mismatches = zip(out.scalars, expected.values).filter { $0 != $1 }.count
            XCTAssertEqual(mismatches, 0, "trial \(trial): \(w)x\(h) resize \(p.resize!) crop \(String(describing: p.crop))")
        }
    }

    // MARK: - Plain reference (written from Pillow's documented algorithm, unoptimised)

    private func referenceTaps(_ inSize: Int, _ outSize: Int) -> [(Int, [Int])] {
        let scale = Double(inSize) / Double(outSize)
        let fs = max(scale, 1)
        return (0..<outSize).map { xx in
            let center = (Double(xx) + 0.5) * scale
            let lo = max(Int(center - fs + 0.5), 0), hi = min(Int(center + fs + 0.5), inSize)
            let raw = (lo..<hi).map { x in max(0, 1 - abs((Double(x) - center + 0.5) * (1 / fs))) }
            let total = raw.reduce(0, +)
            return (lo, raw.map { Int(($0 / total) * Double(1 << 22) + 0.5) })
        }
    }

    private func referenceResizeAxis(_ src: [[Int]], _ outSize: Int) -> [[Int]] {
        // src: [position][other * 3 + channel]; resizes along the first index.
        let taps = referenceTaps(src.count, outSize)
        return taps.map { (lo, ks) in
            (0..<src[0].count).map { j in
                var s = 1 << 21
                for (t, k) in ks.enumerated() { s += src[lo + t][j] * k }
                return min(max(s >> 22, 0), 255)
            }
        }
    }

    private func referencePipeline(_ pixels: [UInt8], width w: Int, height h: Int, _ p: ImagePreprocessing)
        -> (shape: [Int], values: [Float])
    {
        var (rw, rh) = (w, h)
        if let s = p.resize {
            if w <= h { (rw, rh) = (s, Int(Double(s * h) / Double(w))) } else { (rw, rh) = (Int(Double(s * w) / Double(h)), s) }
        }
        // rows[y][x * 3 + c]
        var rows = (0..<h).map { y in (0..<(w * 3)).map { Int(pixels[y * w * 3 + $0]) } }
        if rw != w {
            let columns = (0..<w).map { x in (0..<h).flatMap { y in (0..<3).map { rows[y][x * 3 + $0] } } }
            let resized = referenceResizeAxis(columns, rw)
            rows = (0..<h).map { y in (0..<rw).flatMap { x in (0..<3).map { resized[x][y * 3 + $0] } } }
        }
        if rh != h { rows = referenceResizeAxis(rows, rh) }
        let (ch, cw) = p.crop ?? (rh, rw)
        func window(_ size: Int, _ crop: Int) -> Int {
            // Offset of the crop in image coordinates (negative: padding before).
            if crop > size { return -((crop - size) / 2) }
            return Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
        }
        let top = window(rh, ch), left = window(rw, cw)
        var values = [Float](repeating: 0, count: 3 * ch * cw)
        for c in 0..<3 {
            for y in 0..<ch {
                for x in 0..<cw {
                    let sy = y + top, sx = x + left
                    let v = (sy >= 0 && sy < rh && sx >= 0 && sx < rw) ? rows[sy][sx * 3 + c] : 0
                    values[(c * ch + y) * cw + x] = Float(v) / 255
                }
            }
        }
        return ([3, ch, cw], values)
    }
}
