// Depthwise 3x3 convolution, stride 1 or 2, read straight from the input plane.
//
// MobileNet's depthwise layers are all 3x3, and most of their planes are small (7x7 to 28x28):
// copying each plane into padded phase planes (`DepthwisePlan`) and the result back out cost more
// than the arithmetic (a 7x7 plane: ~480 cycles for 36 vector FMAs). Here each output row is a few
// SIMD16 vectors computed from three input rows with unaligned loads at the tap offsets; lanes
// whose input column falls in the padding are zeroed by a select (first and last vector of a row
// only), and rows in the padding are skipped. A stride-2 row loads 32 floats and splits them into
// even and odd columns. Stores run across row ends: a row's last vector spills into the next row,
// which is written after it; only vectors that would pass the plane's end are stored partially.
//
// Loads reach up to `Depthwise3x3.before` floats before a plane row and `after` floats past it.
// Planes at either end of the tensor, where that could leave the buffer, are first copied into
// a scratch buffer with zeroed margins.

import Quarry

struct Depthwise3x3 {
    let g: ConvGeometry
    let stride: Int
    /// SIMD16 vectors per output row.
    let vectors: Int
    /// Per vector of a row and tap column: lanes whose input column is padding.
    let padding: [SIMDMask<SIMD16<Int32>>]
    /// Whether vector v has any padding lane (only those pay for the selects).
    let padded: [Bool]

    /// Floats read before a plane's first element and after its last, at most.
    static let before = 2, after = 48

    static func supports(_ g: ConvGeometry) -> Bool {
        g.kernelH == 3 && g.kernelW == 3 && g.dilationH == 1 && g.dilationW == 1 && g.strideH == g.strideW
            && (g.strideH == 1 || g.strideH == 2) && (0...2).contains(g.padLeft) && g.padTop >= 0
            && g.outWidth > 0 && g.outHeight > 0
    }

    init(_ g: ConvGeometry) {
        self.g = g
        stride = g.strideW
        vectors = (g.outWidth + 15) / 16
        var masks: [SIMDMask<SIMD16<Int32>>] = [], padded: [Bool] = []
        for v in 0..<vectors {
            var any = false
            for kx in 0..<3 {
                var m = SIMDMask<SIMD16<Int32>>()
                for lane in 0..<16 {
                    let column = g.strideW * (16 * v + lane) + kx - g.padLeft
                    // Lanes past the output width are never kept; only real outputs count.
                    let invalid = column < 0 || column >= g.width
                    m[lane] = invalid
                    if invalid && 16 * v + lane < g.outWidth { any = true }
                }
                masks.append(m)
            }
            padded.append(any)
        }
        padding = masks
        self.padded = padded
    }

    /// Scratch floats for one worker: a plane with its margins (for the planes at the tensor's ends).
    var scratchCount: Int { Self.before + g.height * g.width + Self.after + 16 }

    /// Convolves one plane. `src` must be readable from `before` floats ahead of the plane to
    /// `after` floats past its end.
    @inline(__always)
    func run(src: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: Float, clip: Clip,
             dst: UnsafeMutablePointer<Float>) {
        run(rows: 0..<g.outHeight, src: src, weights: weights, bias: bias, clip: clip, dst: dst)
    }

    /// Output rows `rows` of one plane, written from `dst` on (row oy at `dst + (oy - rows.lowerBound)
    /// * outWidth`); input row iy is read at `src + iy * width`, for the rows inside the image the
    /// window of those output rows covers. Loads reach `before` floats ahead of such a row and
    /// `after` floats past it; the last vector of the band is stored partially.
    @inline(__always)
    func run(rows: Range<Int>, src: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: Float, clip: Clip,
             dst: UnsafeMutablePointer<Float>) {
        if stride == 1 {
            self.rows(rows, stride: 1, src, weights, bias, clip, dst)
        } else {
            self.rows(rows, stride: 2, src, weights, bias, clip, dst)
        }
    }

    /// Copies the plane into `scratch` between zeroed margins and convolves the copy.
    func runCopied(src: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: Float, clip: Clip,
                   scratch: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>) {
        let n = g.height * g.width
        scratch.update(repeating: 0, count: Self.before)
        (scratch + Self.before).update(from: src, count: n)
        (scratch + Self.before + n).update(repeating: 0, count: scratchCount - Self.before - n)
        run(src: scratch + Self.before, weights: weights, bias: bias, clip: clip, dst: dst)
    }

    @inline(__always)
    private func rows(_ range: Range<Int>, stride s: Int, _ src: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                      _ bias: Float, _ clip: Clip, _ dst: UnsafeMutablePointer<Float>) {
        let w0 = V16(repeating: weights[0]), w1 = V16(repeating: weights[1]), w2 = V16(repeating: weights[2])
        let w3 = V16(repeating: weights[3]), w4 = V16(repeating: weights[4]), w5 = V16(repeating: weights[5])
        let w6 = V16(repeating: weights[6]), w7 = V16(repeating: weights[7]), w8 = V16(repeating: weights[8])
        let b = V16(repeating: bias)
        let width = g.width, height = g.height, outW = g.outWidth, padLeft = g.padLeft
        let end = range.upperBound * outW
        padding.withUnsafeBufferPointer { masks in
            padded.withUnsafeBufferPointer { padded in
                for oy in range {
                    let iy = s * oy - g.padTop
                    let has0 = iy >= 0 && iy < height, has1 = iy + 1 >= 0 && iy + 1 < height
                    let has2 = iy + 2 >= 0 && iy + 2 < height
                    let r0 = src + iy * width, r1 = r0 + width, r2 = r1 + width
                    let out = dst + (oy - range.lowerBound) * outW
                    for v in 0..<vectors {
                        let x = s * 16 * v - padLeft
                        let mask = padded[v] ? masks.baseAddress! + 3 * v : nil
                        // One sum per input row, added at the end: three short dependency chains
                        // instead of one of nine FMAs.
                        let z = V16()
                        let acc0 = has0 ? tapRow(s, r0 + x, mask, w0, w1, w2, b) : b
                        let acc1 = has1 ? tapRow(s, r1 + x, mask, w3, w4, w5, z) : z
                        let acc2 = has2 ? tapRow(s, r2 + x, mask, w6, w7, w8, z) : z
                        let acc = clip(acc0 + acc1 + acc2)
                        // A vector that would pass the band's end (into a plane that another
                        // thread may own) is stored partially.
                        let left = end - (oy * outW + 16 * v)
                        if left < 16 {
                            storePartial(acc, out + 16 * v, left)
                        } else {
                            store16(acc, out + 16 * v)
                        }
                    }
                }
            }
        }
    }

    /// acc + the three taps of one input row for 16 outputs; `p` is the input at the first tap.
    @_transparent
    private func tapRow(_ s: Int, _ p: UnsafePointer<Float>, _ mask: UnsafePointer<SIMDMask<SIMD16<Int32>>>?,
                        _ wa: V16, _ wb: V16, _ wc: V16, _ acc: V16) -> V16 {
        var a: V16, b: V16, c: V16
        if s == 1 {
            a = load16(p); b = load16(p + 1); c = load16(p + 2)
        } else {
            let first = UnsafeRawPointer(p).loadUnaligned(as: SIMD32<Float>.self)
            a = first.evenHalf; b = first.oddHalf
            c = UnsafeRawPointer(p + 2).loadUnaligned(as: SIMD32<Float>.self).evenHalf
        }
        if let mask {
            a.replace(with: 0, where: mask[0]); b.replace(with: 0, where: mask[1]); c.replace(with: 0, where: mask[2])
        }
        return acc.addingProductFast(a, wa).addingProductFast(b, wb).addingProductFast(c, wc)
    }
}
