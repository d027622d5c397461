// Decoding JPEG, PNG and WebP files into RGB pixels, through libjpeg-turbo, libpng and libwebp
// (CImageCodecs). A JPEG can be decoded at 1/2, 1/4 or 1/8 of its size in the DCT domain
// (`minimumShortSide`), which is several times faster on large photos; see ImagePreprocessing for
// how the resize then maps the reduced image onto the same output grid. At 1/8, baseline JPEGs go
// through CImageCodecs' own reader (jpeg_eighth.c), twice as fast as libjpeg-turbo there; it
// declines anything unusual, which libjpeg-turbo then decodes.
// The format is recognised by content, never by the file's extension. Colour handling follows
// Pillow's `Image.open(path).convert("RGB")`, which is what torchvision's ImageNet pipelines do:
// grey is replicated into three channels, alpha is dropped (not composited), palettes are looked
// up, CMYK JPEGs are converted the way Pillow converts them. EXIF orientation is ignored, as Pillow
// ignores it unless asked. 16-bit PNGs are the one deliberate difference: Pillow clamps 16-bit grey
// to 255 when converting to RGB and truncates 16-bit colour to 8 bits, while we keep every bit and
// scale to [0, 1] by dividing by 65535.

import CImageCodecs
import Quarry

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An image decoded to interleaved RGB: `height` rows of `width` pixels of three samples.
public struct DecodedImage: Sendable, Equatable {
    /// The samples, row-major and interleaved (r, g, b, r, g, b, …), `width * height * 3` of them.
    public enum Pixels: Sendable, Equatable {
        /// 8-bit sources (every JPEG, PNGs of up to 8 bits a sample): 0…255.
        case uint8([UInt8])
        /// 16-bit PNGs, scaled to [0, 1] by dividing by 65535.
        case float([Float])
    }

    public let width: Int
    public let height: Int
    public let pixels: Pixels
    /// The size the file declares. Larger than `width` x `height` when a JPEG was decoded at a
    /// reduced scale; preprocessing computes its resize and crop from this size, so a reduced
    /// decode lands on the same output grid as a full one.
    public let sourceWidth: Int
    public let sourceHeight: Int

    /// Fails unless there are exactly `width * height * 3` samples. `sourceSize` defaults to the
    /// decoded size.
    public init(width: Int, height: Int, pixels: Pixels, sourceSize: (width: Int, height: Int)? = nil) throws {
        let expected = width * height * 3
        let count: Int
        switch pixels {
        case .uint8(let v): count = v.count
        case .float(let v): count = v.count
        }
        guard width > 0, height > 0, count == expected else {
            throw QuarryError.invalidArgument(
                "an RGB image of \(width) x \(height) needs \(max(expected, 0)) samples, got \(count)")
        }
        let source = sourceSize ?? (width, height)
        guard source.width >= width, source.height >= height else {
            throw QuarryError.invalidArgument(
                "an image decoded at \(width) x \(height) cannot come from a \(source.width) x \(source.height) source")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
        self.sourceWidth = source.width
        self.sourceHeight = source.height
    }

    public static func == (a: DecodedImage, b: DecodedImage) -> Bool {
        a.width == b.width && a.height == b.height && a.sourceWidth == b.sourceWidth
            && a.sourceHeight == b.sourceHeight && a.pixels == b.pixels
    }

    /// Images larger than this many pixels are refused unless the caller raises the bound: a
    /// 20000 x 20000 JPEG of a few kilobytes would otherwise ask for over a gigabyte.
    public static let defaultMaxPixels = 178_956_970  // Pillow's decompression-bomb error bound
}

/// Reads and decodes the JPEG, PNG or WebP file at `path`. Every failure — missing, unreadable,
/// empty, truncated, corrupt, not an image, an unsupported format — throws `QuarryError.file` naming
/// `path`. With `minimumShortSide` > 0 a JPEG is decoded at the smallest of 1/8, 1/4, 1/2 and full
/// size whose shorter side is at least that many pixels.
public func decodeImage(
    at path: String, maxPixels: Int = DecodedImage.defaultMaxPixels, minimumShortSide: Int = 0
) throws -> DecodedImage {
    let bytes = try readWholeImageFile(at: path)
    return try decodeImage(bytes, name: path, maxPixels: maxPixels, minimumShortSide: minimumShortSide)
}

/// Decodes a JPEG, PNG or WebP held in memory; `name` is what errors call it (a path, a URL, a key).
public func decodeImage(
    _ bytes: [UInt8], name: String, maxPixels: Int = DecodedImage.defaultMaxPixels, minimumShortSide: Int = 0
) throws -> DecodedImage {
    try bytes.withUnsafeBufferPointer {
        try decodeImage(UnsafeRawBufferPointer($0), name: name, maxPixels: maxPixels, minimumShortSide: minimumShortSide)
    }
}

/// Decodes an image held in memory that the caller owns (a member of a mapped tar shard, say).
public func decodeImage(
    _ bytes: UnsafeRawBufferPointer, name: String, maxPixels: Int = DecodedImage.defaultMaxPixels,
    minimumShortSide: Int = 0
) throws -> DecodedImage {
    var image = qic_image()
    var message = [CChar](repeating: 0, count: Int(QIC_ERROR_CAPACITY))
    let status = message.withUnsafeMutableBufferPointer { error in
        qic_decode_scaled(
            bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, max(maxPixels, 0),
            Int32(clamping: max(minimumShortSide, 0)), &image, error.baseAddress)
    }
    defer { qic_image_free(&image) }
    guard status == 0, let raw = image.pixels else {
        let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw QuarryError.file(path: name, message: text.isEmpty ? "cannot decode image" : text)
    }
    let width = Int(image.width), height = Int(image.height), channels = Int(image.channels)
    let sourceSize = (width: Int(image.source_width), height: Int(image.source_height))
    let count = width * height
    if image.bit_depth == 16 {
        let source = raw.assumingMemoryBound(to: UInt16.self)
        let samples = [Float](unsafeUninitializedCapacity: count * 3) { out, initialized in
            expandToRGB(source, count: count, channels: channels, into: out.baseAddress!) {
                Float($0) / 65535
            }
            initialized = count * 3
        }
        return try DecodedImage(width: width, height: height, pixels: .float(samples), sourceSize: sourceSize)
    }
    let source = raw.assumingMemoryBound(to: UInt8.self)
    let samples = [UInt8](unsafeUninitializedCapacity: count * 3) { out, initialized in
        if channels == 3 {
            out.baseAddress!.update(from: source, count: count * 3)
        } else {
            expandToRGB(source, count: count, channels: channels, into: out.baseAddress!) { $0 }
        }
        initialized = count * 3
    }
    return try DecodedImage(width: width, height: height, pixels: .uint8(samples), sourceSize: sourceSize)
}

/// Grey (1), grey + alpha (2), RGB (3) or RGBA (4) samples to RGB: grey replicated, alpha dropped.
@inline(__always)
private func expandToRGB<Source, Target>(
    _ source: UnsafePointer<Source>, count: Int, channels: Int,
    into out: UnsafeMutablePointer<Target>, convert: (Source) -> Target
) {
    switch channels {
    case 1, 2:
        for i in 0..<count {
            let v = convert(source[i * channels])
            out[3 * i] = v
            out[3 * i + 1] = v
            out[3 * i + 2] = v
        }
    default:
        for i in 0..<count {
            out[3 * i] = convert(source[i * channels])
            out[3 * i + 1] = convert(source[i * channels + 1])
            out[3 * i + 2] = convert(source[i * channels + 2])
        }
    }
}

/// The whole file, or an error with the system's reason (no such file, permission denied, is a
/// directory…).
private func readWholeImageFile(at path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw QuarryError.file(path: path, message: systemErrorText()) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw QuarryError.file(path: path, message: systemErrorText()) }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        throw QuarryError.file(path: path, message: "is a directory, not an image")
    }
    var bytes = [UInt8]()
    bytes.reserveCapacity(max(Int(info.st_size), 0))
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw QuarryError.file(path: path, message: systemErrorText())
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
}

private func systemErrorText() -> String {
    String(cString: strerror(errno)).lowercased()
}
