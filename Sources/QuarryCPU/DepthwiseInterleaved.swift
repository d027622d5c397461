// Depthwise 3x3 convolution on small planes, sixteen channels at a time, one channel per lane.
//
// A plane of 7x7 or 14x14 is shorter than a few vectors, so any kernel that keeps pixels in the
// lanes (`DepthwiseFlat`, `Depthwise3x3`) pays for edges: masks at every row end, partial
// vectors, and for stride 2 a gather of every other pixel. MobileNetV2's 14x14 -> 7x7 stride-2
// layer ran at ~410 cycles a plane for 27 multiply-adds' worth of output. With the channels in
// the lanes instead, every tap of every output pixel is one full-vector multiply-add, stride and
// padding become plain address arithmetic, and no lane is wasted: the cost moves to getting
// sixteen planes into that layout and back, which is a 16x16 transpose per sixteen pixels
// (64 two-source permutes, `transpose16`).
//
// Per block of sixteen channels of one image: the planes are transposed into a zero-bordered
// buffer [paddedH][paddedW][16] (the border is zeroed once per thread and never written), the
// output pixels are computed eight at a time into [pixels][16], and those are transposed back
// into the sixteen output planes with the bias and a clamp activation applied on the way.

import CQuarryKernels
import Quarry

struct DepthwiseInterleaved {
    let g: ConvGeometry
    let inPixels, outPixels: Int
    let paddedH, paddedW: Int
    /// Per input pixel, its place in the padded buffer in floats, or -1 where no window reads it.
    let inputOffsets: [Int32]
    /// Per output pixel (rounded up to 8, the extra ones 0), its window's top-left corner in the padded buffer.
    let windowOffsets: [Int32]
    /// Per tap (ky, kx), its offset from the window's corner.
    let tapOffsets: [Int]

    /// 3x3, stride 1 or 2 in both directions, no dilation, sixteen channels at a time, input
    /// planes up to 1,024 pixels. Larger planes pay more for the transposes than they save:
    /// 56x56 -> 28x28 (stride 2) took 0.89 ms against `Depthwise3x3`'s 0.72 (one thread, 8 x 144
    /// planes), while 28x28 took 0.50 against 0.56, 14x14 0.44 against 0.52, 14x14 -> 7x7
    /// 0.26 against 0.52-0.70, and 7x7 0.24 against `DepthwiseFlat`'s 0.35.
    static func supports(_ g: ConvGeometry, channels: Int) -> Bool {
        g.height * g.width <= 1024 && g.kernelH == 3 && g.kernelW == 3 && g.dilationH == 1 && g.dilationW == 1
            && g.strideH == g.strideW && (g.strideH == 1 || g.strideH == 2)
            && g.padTop <= 2 && g.padLeft <= 2 && channels % 16 == 0 && g.outHeight > 0 && g.outWidth > 0
    }

    init(_ g: ConvGeometry) {
        self.g = g
        inPixels = g.height * g.width
        outPixels = g.outHeight * g.outWidth
        paddedH = (g.outHeight - 1) * g.strideH + 3
        paddedW = (g.outWidth - 1) * g.strideW + 3
        var input = [Int32](repeating: -1, count: inPixels)
        for y in 0..<g.height {
            for x in 0..<g.width {
                let py = y + g.padTop, px = x + g.padLeft
                if py < paddedH && px < paddedW { input[y * g.width + x] = Int32((py * paddedW + px) * 16) }
            }
        }
        inputOffsets = input
        var windows = [Int32](repeating: 0, count: (outPixels + 7) & ~7)
        for oy in 0..<g.outHeight {
            for ox in 0..<g.outWidth {
                windows[oy * g.outWidth + ox] = Int32((oy * g.strideH * paddedW + ox * g.strideW) * 16)
            }
        }
        windowOffsets = windows
        let pitch = paddedW
        tapOffsets = (0..<9).map { t in ((t / 3) * pitch + t % 3) * 16 }
    }

    /// Floats of the padded buffer.
    var paddedCount: Int { paddedH * paddedW * 16 }
    /// Floats of the output pixels' scratch: whole blocks of 16 pixels, and room for the nine
    /// filter vectors.
    var outFloats: Int { max((outPixels + 15) & ~15, 16) * 16 }
    /// Scratch floats for one worker: the padded buffer, the output pixels, a 16x16 tile.
    var scratchCount: Int { paddedCount + outFloats + 16 * 16 }

    /// Zeroes the padded buffer's border (all of it): once per worker, before its blocks.
    func prepare(scratch: UnsafeMutablePointer<Float>) {
        scratch.update(repeating: 0, count: paddedCount)
    }

    /// Sixteen channels: `src` is the first of sixteen consecutive input planes, `weights` their
    /// sixteen 3x3 filters, `bias` their biases (or nil), `dst` the first output plane.
    @inline(__always)
    func run(src: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?, clip: Clip,
             scratch: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>) {
        let padded = scratch, out = scratch + paddedCount
        // Sixteen pixels at a time through a 16x16 tile after the output pixels' scratch: planes
        // to pixel vectors, each then stored at its place.
        let tile = out + outFloats
        inputOffsets.withUnsafeBufferPointer { quarry_planes_to_padded(src, inPixels, $0.baseAddress!, padded, tile) }
        // The filters tap-major, one vector of sixteen channels per tap, in the output pixels'
        // scratch (overwritten by them afterwards).
        for t in 0..<9 { for lane in 0..<16 { out[t * 16 + lane] = weights[lane * 9 + t] } }
        // The pixel loop (eight pixels a pass, nine taps each) in CQuarryKernels' variant of the
        // instruction-set level in use.
        windowOffsets.withUnsafeBufferPointer { win in
            tapOffsets.withUnsafeBufferPointer { taps in
                quarry_depthwise_interleaved_pixels(padded, win.baseAddress!, taps.baseAddress!, out, bias,
                                                    clip.lo[0], clip.hi[0], outPixels, out)
            }
        }
        var p0 = 0
        while p0 < outPixels {
            storeRowsAsPlanes(out + p0 * 16, ld: 16, rows: min(16, outPixels - p0), to: dst + p0, planeStride: outPixels,
                              tile: tile)
            p0 += 16
        }
    }
}
