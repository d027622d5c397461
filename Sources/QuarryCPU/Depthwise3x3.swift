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
import CQuarryKernels
import Quarry

struct Depthwise3x3 {
    let g: ConvGeometry
    let stride: Int
    /// SIMD16 vectors per output row.
    let vectors: Int
    /// Per vector of a row and tap column, 16 lanes: all ones where the input column is inside
    /// the row, zero where it falls in the padding (an AND, not a compare and a select per use).
    let keep: [UInt32]
    /// Whether vector v has any padding lane (1; only those pay for the masks).
    let padded: [UInt8]
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
        var masks: [UInt32] = [], padded: [UInt8] = []
        for v in 0..<vectors {
            var any = false
            for kx in 0..<3 {
                for lane in 0..<16 {
                    let column = g.strideW * (16 * v + lane) + kx - g.padLeft
                    // Lanes past the output width are never kept; only real outputs count.
                    let invalid = column < 0 || column >= g.width
                    masks.append(invalid ? 0 : .max)
                    if invalid && 16 * v + lane < g.outWidth { any = true }
                }
            }
            padded.append(any ? 1 : 0)
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
    /// `after` floats past it; the last vector of the band is stored partially. The row kernel
    /// runs in CQuarryKernels, in the instruction-set level chosen at run time.
    @inline(__always)
    func run(rows: Range<Int>, src: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: Float, clip: Clip,
             dst: UnsafeMutablePointer<Float>) {
        keep.withUnsafeBufferPointer { keep in
            padded.withUnsafeBufferPointer { padded in
                zeros.withUnsafeBufferPointer { zeros in
                    var plane = quarry_dw3x3_plane(
                        width: g.width, height: g.height, out_width: g.outWidth, pad_top: g.padTop, pad_left: g.padLeft,
                        vectors: vectors, keep: keep.baseAddress, padded: padded.baseAddress,
                        zero: zeros.baseAddress! + Self.zeroMargin)
                    quarry_depthwise3x3_rows(&plane, rows.lowerBound, rows.upperBound, Int32(stride), src, weights, bias,
                                             clip.lo[0], clip.hi[0], dst)
                }
            }
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
}
