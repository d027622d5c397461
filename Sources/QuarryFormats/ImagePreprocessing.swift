// torchvision's ImageNet evaluation transform, reproduced to the pixel:
//   Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(mean, std)
// applied to a Pillow image. For 8-bit images Resize is Pillow's BILINEAR `Image.resize` (no
// reducing_gap): a triangle filter widened by the downscale factor (antialiasing), separable,
// horizontal pass first, with 22-bit fixed-point weights and rounding to 8 bits after each pass.
// We replicate that arithmetic exactly, so the 8-bit result equals Pillow's byte for byte. 16-bit
// images (decoded to floats) follow Pillow's float ("F" mode) path: the same weights in floating
// point and no rounding.
//
// Only the pixels that survive the crop are computed: each output pixel of the resize depends on
// its own filter taps only, so skipping the cropped-away rows and columns changes nothing.

import CQuarryKernels
import Quarry

/// Resize, centre crop, scale to [0, 1] and normalise; every step optional.
public struct ImagePreprocessing: Sendable {
    /// The length the shorter side is resized to, keeping the aspect ratio as torchvision computes
    /// it (longer side = `Int(resize * long / short)`); nil keeps the decoded size.
    public var resize: Int?
    /// The centre crop, taken after the resize; an image smaller than the crop is padded with zeros
    /// (black) first, as torchvision's CenterCrop does. nil keeps the whole image.
    public var crop: (height: Int, width: Int)?
    /// Per-channel mean and standard deviation, subtracted from and divided into the [0, 1] values:
    /// three values (R, G, B) or one for all channels.
    public var mean: [Float]
    public var std: [Float]

    public init(
        resize: Int? = 256, crop: (height: Int, width: Int)? = (224, 224),
        mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
    ) {
        self.resize = resize
        self.crop = crop
        self.mean = mean
        self.std = std
    }

    /// torchvision's ImageNet evaluation transform.
    public static let imagenet = ImagePreprocessing()

    /// Values scaled to [0, 1], nothing else: no resize, no crop, no normalisation.
    public static let unitScale = ImagePreprocessing(resize: nil, crop: nil, mean: [0], std: [1])

    /// The [height, width] of the tensor `apply` returns for an image of this size.
    public func outputSize(width: Int, height: Int) throws -> (height: Int, width: Int) {
        try validate()
        let g = try Geometry(self, width: width, height: height)
        return (g.outHeight, g.outWidth)
    }

    /// The preprocessed image as a [3, H, W] float32 tensor.
    public func apply(to image: DecodedImage) throws -> Tensor {
        try validate()
        let g = try Geometry(self, width: image.sourceWidth, height: image.sourceHeight)
        let t = Tensor(uninitializedShape: [3, g.outHeight, g.outWidth])
        run(g, image, into: t.pointer)
        return t
    }

    /// Writes the preprocessed image, CHW, to `destination` (`3 * H * W` floats, H and W from
    /// `outputSize`), e.g. straight into one row of a batch.
    public func apply(to image: DecodedImage, into destination: UnsafeMutablePointer<Float>) throws {
        try validate()
        let g = try Geometry(self, width: image.sourceWidth, height: image.sourceHeight)
        run(g, image, into: destination)
    }

    private func validate() throws {
        if let r = resize, r <= 0 {
            throw QuarryError.invalidArgument("resize must be positive, got \(r)")
        }
        if let c = crop, c.height <= 0 || c.width <= 0 {
            throw QuarryError.invalidArgument("crop must be positive, got \(c.height) x \(c.width)")
        }
        guard mean.count == 1 || mean.count == 3, std.count == 1 || std.count == 3 else {
            throw QuarryError.invalidArgument(
                "mean and std need 1 or 3 values, got \(mean.count) and \(std.count)")
        }
        for s in std where !(s.isFinite && s != 0) {
            throw QuarryError.invalidArgument("std values must be finite and non-zero, got \(std)")
        }
        for m in mean where !m.isFinite {
            throw QuarryError.invalidArgument("mean values must be finite, got \(mean)")
        }
    }

    private func run(_ g: Geometry, _ image: DecodedImage, into out: UnsafeMutablePointer<Float>) {
        let means = (0..<3).map { mean.count == 3 ? mean[$0] : mean[0] }
        let stds = (0..<3).map { std.count == 3 ? std[$0] : std[0] }
        let plane = g.outHeight * g.outWidth
        // Padding (a crop larger than the image) is black before normalisation.
        for c in 0..<3 {
            let fill = (0 - means[c]) / stds[c]
            if g.region.isEmpty || g.region.rows != g.outHeight || g.region.columns != g.outWidth {
                (out + c * plane).initialize(repeating: fill, count: plane)
            }
        }
        guard !g.region.isEmpty else { return }
        switch image.pixels {
        case .uint8(let pixels):
            // ToTensor then Normalize, in float32 as torchvision computes it, through a table: the
            // one u8 -> f32 conversion, fused into the last resampling pass.
            var table = [Float](repeating: 0, count: 3 * 256)
            for c in 0..<3 {
                for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - means[c]) / stds[c] }
            }
            table.withUnsafeBufferPointer { lut in
                pixels.withUnsafeBufferPointer {
                    resample8(source: $0.baseAddress!, width: image.width, height: image.height, g,
                              table: lut.baseAddress!, into: out)
                }
            }
        case .float(let pixels):
            let resized = pixels.withUnsafeBufferPointer {
                resampleRegionFloat(source: $0.baseAddress!, width: image.width, height: image.height, g)
            }
            resized.withUnsafeBufferPointer { src in
                scatterPlanes(src.baseAddress!, g, into: out) { c, v in (v - means[c]) / stds[c] }
            }
        }
    }
}

/// Interleaved RGB rows of the region to the channel planes of the output window.
@inline(__always)
private func scatterPlanes<T>(
    _ src: UnsafePointer<T>, _ g: Geometry, into out: UnsafeMutablePointer<Float>,
    _ convert: (Int, T) -> Float
) {
    let plane = g.outHeight * g.outWidth
    let r = g.region
    for y in 0..<r.rows {
        let row = src + y * r.columns * 3
        let base = (r.outTop + y) * g.outWidth + r.outLeft
        for c in 0..<3 {
            let dst = out + c * plane + base
            for x in 0..<r.columns { dst[x] = convert(c, row[3 * x + c]) }
        }
    }
}

// MARK: - Geometry

/// The sizes torchvision computes, and the part of the resized image that lands in the output.
struct Geometry {
    /// Size after the resize.
    let resizedWidth: Int, resizedHeight: Int
    /// Size of the output tensor's planes.
    let outWidth: Int, outHeight: Int
    let region: Region

    /// Rows [top, top + rows) and columns [left, left + columns) of the resized image, written at
    /// (outTop, outLeft) in the output; the rest of the output is padding.
    struct Region {
        var top = 0, left = 0, rows = 0, columns = 0, outTop = 0, outLeft = 0
        var isEmpty: Bool { rows <= 0 || columns <= 0 }
    }

    init(_ p: ImagePreprocessing, width: Int, height: Int) throws {
        guard width > 0, height > 0 else {
            throw QuarryError.invalidArgument("image of \(width) x \(height) has no pixels")
        }
        (resizedWidth, resizedHeight) = Geometry.resizedSize(width: width, height: height, shorter: p.resize)
        guard let crop = p.crop else {
            outWidth = resizedWidth
            outHeight = resizedHeight
            region = Region(top: 0, left: 0, rows: resizedHeight, columns: resizedWidth)
            return
        }
        outWidth = crop.width
        outHeight = crop.height
        let (top, rows, outTop) = Geometry.centerCrop(size: resizedHeight, crop: crop.height)
        let (left, columns, outLeft) = Geometry.centerCrop(size: resizedWidth, crop: crop.width)
        region = Region(top: top, left: left, rows: rows, columns: columns, outTop: outTop, outLeft: outLeft)
    }

    /// torchvision's `_compute_resized_output_size` for a single size: the shorter side becomes
    /// `shorter`, the longer `int(shorter * long / short)` (true division, truncated).
    static func resizedSize(width: Int, height: Int, shorter: Int?) -> (Int, Int) {
        guard let s = shorter else { return (width, height) }
        let (short, long) = width <= height ? (width, height) : (height, width)
        let newLong = Int((Double(s * long) / Double(short)).rounded(.towardZero))
        return width <= height ? (s, newLong) : (newLong, s)
    }

    /// One axis of torchvision's `center_crop`: pad symmetrically (the extra pixel after) when the
    /// crop is larger, then offset `int(round((size - crop) / 2.0))` with Python's round half to
    /// even. Returns the first source index, the count taken, and where they land in the crop.
    static func centerCrop(size: Int, crop: Int) -> (start: Int, count: Int, outStart: Int) {
        var padBefore = 0
        var padded = size
        if crop > size {
            padBefore = (crop - size) / 2
            padded = size + padBefore + (crop - size + 1) / 2
        }
        let offset = Int((Double(padded - crop) / 2.0).rounded(.toNearestOrEven))
        // Crop window [offset, offset + crop) in padded coordinates; the image is [padBefore, padBefore + size).
        let first = max(offset, padBefore)
        let last = min(offset + crop, padBefore + size)
        return (first - padBefore, max(last - first, 0), first - offset)
    }
}

// MARK: - Filter weights

/// Filter taps for a range of output positions along one axis, as Pillow's `precompute_coeffs`
/// computes them for the bilinear (triangle, support 1) filter.
struct ResampleTaps {
    /// First input index of each output position, and how many taps it has.
    var first: [Int32]
    var count: [Int32]
    /// `stride` weights per output position, normalised to sum 1.
    var weights: [Double]
    var stride: Int

    init(inputSize: Int, outputSize: Int, outputs: Range<Int>) {
        let scale = Double(Float(inputSize)) / Double(outputSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale
        stride = Int(support.rounded(.up)) * 2 + 1
        first = []
        count = []
        first.reserveCapacity(outputs.count)
        count.reserveCapacity(outputs.count)
        weights = [Double](repeating: 0, count: outputs.count * stride)
        let inverse = 1.0 / filterScale
        for (i, xx) in outputs.enumerated() {
            let center = (Double(xx) + 0.5) * scale
            // C's (int) cast truncates toward zero; the clamps make negative values harmless.
            let xmin = max(Int((center - support + 0.5).rounded(.towardZero)), 0)
            let xmax = min(Int((center + support + 0.5).rounded(.towardZero)), inputSize) - xmin
            var total = 0.0
            for x in 0..<max(xmax, 0) {
                var t = (Double(x + xmin) - center + 0.5) * inverse
                if t < 0 { t = -t }
                let w = t < 1.0 ? 1.0 - t : 0.0
                weights[i * stride + x] = w
                total += w
            }
            if total != 0 {
                for x in 0..<max(xmax, 0) { weights[i * stride + x] /= total }
            }
            first.append(Int32(xmin))
            count.append(Int32(max(xmax, 0)))
        }
    }

    /// Pillow's `normalize_coeffs_8bpc`: weights in 22-bit fixed point, rounded half away from zero.
    var fixedPoint: [Int32] {
        weights.map { w in
            let scaled = w * Double(1 << resamplePrecisionBits)
            return Int32((w < 0 ? scaled - 0.5 : scaled + 0.5).rounded(.towardZero))
        }
    }

    /// The input range the outputs read.
    var inputSpan: Range<Int> {
        var lo = Int.max, hi = Int.min
        for i in 0..<first.count {
            lo = min(lo, Int(first[i]))
            hi = max(hi, Int(first[i] + count[i]))
        }
        return lo < hi ? lo..<hi : 0..<0
    }
}

private let resamplePrecisionBits = 22

// MARK: - 8-bit resampling (Pillow's fixed-point arithmetic)

/// Resizes the region of an interleaved RGB uint8 image, crops, and writes the channel planes of
/// the output through `table` (value -> normalised float, 256 entries a channel).
///
/// Two separable passes, as Pillow runs them: horizontal first (over the source rows the vertical
/// pass reads and the columns the crop keeps), rounded to 8 bits, then vertical, rounded to 8 bits
/// again and looked up in the table straight into the output planes. The horizontal pass works on
/// four neighbouring output pixels' channels as one 16-lane vector a tap (two in 8 lanes); the vertical pass on
/// 16 bytes of a row at a time, both in CQuarryKernels (per instruction-set level: their 32-bit
/// vector multiplies are emulated in the SSE2 that Swift code gets in a plain build). The weights are Pillow's 22-bit fixed-point ones, precomputed per
/// output position, so the result equals Pillow's to the byte.
private func resample8(
    source: UnsafePointer<UInt8>, width: Int, height: Int, _ g: Geometry,
    table: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>
) {
    let r = g.region
    let needHorizontal = g.resizedWidth != width
    let needVertical = g.resizedHeight != height
    let columns = r.left..<(r.left + r.columns)
    let rows = r.top..<(r.top + r.rows)
    let vertical = needVertical
        ? ResampleTaps(inputSize: height, outputSize: g.resizedHeight, outputs: rows) : nil
    let sourceRows = vertical?.inputSpan ?? rows
    let rowBytes = r.columns * 3

    // Horizontal pass.
    let temp = UnsafeMutablePointer<UInt8>.allocate(capacity: sourceRows.count * rowBytes)
    defer { temp.deallocate() }
    if needHorizontal {
        let taps = ResampleTaps(inputSize: width, outputSize: g.resizedWidth, outputs: columns)
        let k = taps.fixedPoint
        k.withUnsafeBufferPointer { kk in
            taps.first.withUnsafeBufferPointer { firsts in
                taps.count.withUnsafeBufferPointer { counts in
                    // A 4-byte load of the image's very last pixel would read past the buffer.
                    let lastRow = sourceRows.upperBound - 1
                    quarry_resample_horizontal_rows_u8(
                        source + sourceRows.lowerBound * width * 3, width * 3, sourceRows.count,
                        lastRow < height - 1 ? width : width - 1, temp, rowBytes, r.columns, kk.baseAddress!,
                        taps.stride, firsts.baseAddress!, counts.baseAddress!, width, Int32(resamplePrecisionBits))
                }
            }
        }
    } else {
        for (i, y) in sourceRows.enumerated() {
            (temp + i * rowBytes).update(from: source + (y * width + r.left) * 3, count: rowBytes)
        }
    }

    let plane = g.outHeight * g.outWidth
    let line = UnsafeMutablePointer<UInt8>.allocate(capacity: rowBytes)
    defer { line.deallocate() }
    let k = vertical?.fixedPoint ?? []
    let base = sourceRows.lowerBound
    for i in 0..<r.rows {
        let row: UnsafePointer<UInt8>
        if let vertical {
            // Vertical pass: a weighted sum of whole rows, 16 bytes at a time.
            let first = temp + (Int(vertical.first[i]) - base) * rowBytes
            let count = Int(vertical.count[i])
            k.withUnsafeBufferPointer { kk in
                quarry_resample_vertical_u8(first, rowBytes, kk.baseAddress! + i * vertical.stride, count,
                                            Int32(resamplePrecisionBits), line)
            }
            row = UnsafePointer(line)
        } else {
            row = UnsafePointer(temp + i * rowBytes)
        }
        // Interleaved bytes to the three normalised planes.
        let at = (r.outTop + i) * g.outWidth + r.outLeft
        let red = out + at, green = out + plane + at, blue = out + 2 * plane + at
        let tableG = table + 256, tableB = table + 512
        for x in 0..<r.columns {
            red[x] = table[Int(row[3 * x])]
            green[x] = tableG[Int(row[3 * x + 1])]
            blue[x] = tableB[Int(row[3 * x + 2])]
        }
    }
}

// MARK: - Float resampling (Pillow's "F" mode path)

private func resampleRegionFloat(
    source: UnsafePointer<Float>, width: Int, height: Int, _ g: Geometry
) -> [Float] {
    let r = g.region
    let needHorizontal = g.resizedWidth != width
    let needVertical = g.resizedHeight != height
    let columns = r.left..<(r.left + r.columns)
    let rows = r.top..<(r.top + r.rows)
    let vertical = needVertical
        ? ResampleTaps(inputSize: height, outputSize: g.resizedHeight, outputs: rows) : nil
    let sourceRows = vertical?.inputSpan ?? rows
    let rowFloats = r.columns * 3

    var temp = [Float](repeating: 0, count: sourceRows.count * rowFloats)
    temp.withUnsafeMutableBufferPointer { tmp in
        let dst = tmp.baseAddress!
        if needHorizontal {
            let taps = ResampleTaps(inputSize: width, outputSize: g.resizedWidth, outputs: columns)
            for (i, y) in sourceRows.enumerated() {
                let src = source + y * width * 3
                let out = dst + i * rowFloats
                for x in 0..<r.columns {
                    let p = src + Int(taps.first[x]) * 3
                    var s0 = 0.0, s1 = 0.0, s2 = 0.0
                    for t in 0..<Int(taps.count[x]) {
                        let wt = taps.weights[x * taps.stride + t]
                        s0 += Double(p[3 * t]) * wt
                        s1 += Double(p[3 * t + 1]) * wt
                        s2 += Double(p[3 * t + 2]) * wt
                    }
                    out[3 * x] = Float(s0)
                    out[3 * x + 1] = Float(s1)
                    out[3 * x + 2] = Float(s2)
                }
            }
        } else {
            for (i, y) in sourceRows.enumerated() {
                (dst + i * rowFloats).update(from: source + (y * width + r.left) * 3, count: rowFloats)
            }
        }
    }
    guard let vertical else { return temp }

    let base = sourceRows.lowerBound
    var result = [Float](repeating: 0, count: r.rows * rowFloats)
    var accumulator = [Double](repeating: 0, count: rowFloats)
    temp.withUnsafeBufferPointer { tmp in
        result.withUnsafeMutableBufferPointer { res in
            accumulator.withUnsafeMutableBufferPointer { acc in
                let a = acc.baseAddress!
                for i in 0..<r.rows {
                    a.update(repeating: 0, count: rowFloats)
                    let first = Int(vertical.first[i]) - base
                    for t in 0..<Int(vertical.count[i]) {
                        let wt = vertical.weights[i * vertical.stride + t]
                        let row = tmp.baseAddress! + (first + t) * rowFloats
                        for j in 0..<rowFloats { a[j] += Double(row[j]) * wt }
                    }
                    let out = res.baseAddress! + i * rowFloats
                    for j in 0..<rowFloats { out[j] = Float(a[j]) }
                }
            }
        }
    }
    return result
}
