// Depthwise 3x3 convolution, stride 1 or 2, read straight from the input plane.
//
// MobileNet's depthwise layers are all 3x3, and most of their planes are small (7x7 to 28x28):
// copying each plane into padded phase planes (`DepthwisePlan`) and the result back out cost more
// than the arithmetic (a 7x7 plane: ~480 cycles for 36 vector FMAs). Here each output row is a few
// SIMD16 vectors computed from three input rows with unaligned loads at the tap offsets; lanes
// whose input column falls in the padding are zeroed by a mask (first and last vector of a row
// only), and rows in the padding read a row of zeros. A stride-2 row loads 32 floats and splits them
// into even and odd columns. With one column of left padding (MobileNet's layers) each row's
// vectors are loaded once and the neighbour columns are lane rotations of them: nine unaligned
// loads a vector, six of them split across cache lines, had made the kernel 32 cycles a vector
// (48x48, in L1); now 21, and 4 x 144 planes of 56x56 1.17 -> 0.69 ms. Stores run across row ends: a row's last vector spills into the next row,
// which is written after it; only vectors that would pass the plane's end are stored partially.
//
// Loads reach up to `Depthwise3x3.before` floats before a plane row and `after` floats past it.
// Planes at either end of the tensor, where that could leave the buffer, are first copied into
// a scratch buffer with zeroed margins.

import CCPUHints
import Quarry

struct Depthwise3x3 {
    let g: ConvGeometry
    let stride: Int
    /// SIMD16 vectors per output row.
    let vectors: Int
    /// Per vector of a row and tap column: all ones in lanes whose input column is inside the
    /// row, zero in those that fall in the padding (an AND, not a compare and a select per use).
    let keep: [SIMD16<UInt32>]
    /// Whether vector v has any padding lane (only those pay for the masks).
    let padded: [Bool]
    /// Zeros read in place of the rows above and below the image (no branch per vector):
    /// `zeroMargin` floats before the row a window reads and enough after it.
    let zeros: [Float]
    static let zeroMargin = 16

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
        var masks: [SIMD16<UInt32>] = [], padded: [Bool] = []
        for v in 0..<vectors {
            var any = false
            for kx in 0..<3 {
                var m = SIMD16<UInt32>(repeating: .max)
                for lane in 0..<16 {
                    let column = g.strideW * (16 * v + lane) + kx - g.padLeft
                    // Lanes past the output width are never kept; only real outputs count.
                    let invalid = column < 0 || column >= g.width
                    if invalid { m[lane] = 0 }
                    if invalid && 16 * v + lane < g.outWidth { any = true }
                }
                masks.append(m)
            }
            padded.append(any)
        }
        keep = masks
        self.padded = padded
        zeros = [Float](repeating: 0, count: Self.zeroMargin + g.strideW * 16 * vectors + 64)
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
        let width = g.width, height = g.height, outW = g.outWidth, padLeft = g.padLeft, vectors = vectors
        let end = range.upperBound * outW
        keep.withUnsafeBufferPointer { keep in
            padded.withUnsafeBufferPointer { padded in
                zeros.withUnsafeBufferPointer { zeros in
                    let zero = zeros.baseAddress! + Self.zeroMargin
                    for oy in range {
                        let iy = s * oy - g.padTop
                        // Rows above or below the image read zeros.
                        let r0 = iy >= 0 && iy < height ? src + iy * width : zero
                        let r1 = iy + 1 >= 0 && iy + 1 < height ? src + (iy + 1) * width : zero
                        let r2 = iy + 2 >= 0 && iy + 2 < height ? src + (iy + 2) * width : zero
                        let out = dst + (oy - range.lowerBound) * outW
                        if padLeft == 1 {
                            // Each row's vectors loaded once. Stride 1: the left and right
                            // neighbours are lane rotations of the vector and the ones beside it.
                            // Stride 2: a vector's 32 columns split into even and odd ones, and the
                            // left neighbour is the odd one before, a lane rotation.
                            var p0 = V16(), c0 = s == 1 ? load16(r0) : V16(), p1 = V16(), c1 = s == 1 ? load16(r1) : V16()
                            var p2 = V16(), c2 = s == 1 ? load16(r2) : V16()
                            for v in 0..<vectors {
                                var a0: V16, m0: V16, e0: V16, a1: V16, m1: V16, e1: V16, a2: V16, m2: V16, e2: V16
                                if s == 1 {
                                    let n0 = load16(r0 + 16 * v + 16), n1 = load16(r1 + 16 * v + 16), n2 = load16(r2 + 16 * v + 16)
                                    a0 = quarry_prev1(p0, c0); m0 = c0; e0 = quarry_next1(c0, n0)
                                    a1 = quarry_prev1(p1, c1); m1 = c1; e1 = quarry_next1(c1, n1)
                                    a2 = quarry_prev1(p2, c2); m2 = c2; e2 = quarry_next1(c2, n2)
                                    p0 = c0; c0 = n0; p1 = c1; c1 = n1; p2 = c2; c2 = n2
                                } else {
                                    let q0 = r0 + 32 * v, q1 = r1 + 32 * v, q2 = r2 + 32 * v
                                    let x0 = load16(q0), y0 = load16(q0 + 16), x1 = load16(q1), y1 = load16(q1 + 16)
                                    let x2 = load16(q2), y2 = load16(q2 + 16)
                                    m0 = quarry_even(x0, y0); e0 = quarry_odd(x0, y0); a0 = quarry_prev1(p0, e0)
                                    m1 = quarry_even(x1, y1); e1 = quarry_odd(x1, y1); a1 = quarry_prev1(p1, e1)
                                    m2 = quarry_even(x2, y2); e2 = quarry_odd(x2, y2); a2 = quarry_prev1(p2, e2)
                                    p0 = e0; p1 = e1; p2 = e2
                                }
                                if padded[v] {
                                    let k = keep.baseAddress! + 3 * v
                                    func and(_ x: inout V16, _ m: SIMD16<UInt32>) {
                                        x = unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & m, to: V16.self)
                                    }
                                    and(&a0, k[0]); and(&m0, k[1]); and(&e0, k[2])
                                    and(&a1, k[0]); and(&m1, k[1]); and(&e1, k[2])
                                    and(&a2, k[0]); and(&m2, k[1]); and(&e2, k[2])
                                }
                                let acc0 = b.addingProductFast(a0, w0).addingProductFast(m0, w1).addingProductFast(e0, w2)
                                let acc1 = (a1 * w3).addingProductFast(m1, w4).addingProductFast(e1, w5)
                                let acc2 = (a2 * w6).addingProductFast(m2, w7).addingProductFast(e2, w8)
                                let acc = clip(acc0 + acc1 + acc2)
                                let left = end - (oy * outW + 16 * v)
                                if left < 16 { storePartial(acc, out + 16 * v, left) } else { store16(acc, out + 16 * v) }
                            }
                            continue
                        }
                        for v in 0..<vectors {
                            let x = s * 16 * v - padLeft
                            let mask = padded[v] ? keep.baseAddress! + 3 * v : nil
                            // One sum per input row, added at the end: three short dependency chains
                            // instead of one of nine FMAs.
                            let acc0 = tapRow(s, r0 + x, mask, w0, w1, w2, b)
                            let acc1 = tapRow(s, r1 + x, mask, w3, w4, w5, V16())
                            let acc2 = tapRow(s, r2 + x, mask, w6, w7, w8, V16())
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
    }

    /// acc + the three taps of one input row for 16 outputs; `p` is the input at the first tap.
    @_transparent
    private func tapRow(_ s: Int, _ p: UnsafePointer<Float>, _ mask: UnsafePointer<SIMD16<UInt32>>?,
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
            a = unsafeBitCast(unsafeBitCast(a, to: SIMD16<UInt32>.self) & mask[0], to: V16.self)
            b = unsafeBitCast(unsafeBitCast(b, to: SIMD16<UInt32>.self) & mask[1], to: V16.self)
            c = unsafeBitCast(unsafeBitCast(c, to: SIMD16<UInt32>.self) & mask[2], to: V16.self)
        }
        return acc.addingProductFast(a, wa).addingProductFast(b, wb).addingProductFast(c, wc)
    }
}
