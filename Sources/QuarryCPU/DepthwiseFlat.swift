// Depthwise convolution, stride 1, output the size of the input, on planes up to 32 wide.
//
// Row by row (`Depthwise3x3`), a 7x7 or 14x14 plane is one short vector per row, and each row
// pays for its padding selects and, near the plane's end, a partial store: MobileNetV2's 7x7 and
// 14x14 depthwise layers took ~360 and ~600 cycles a plane for 63 and 126 vector FMAs.
//
// With stride 1 and the output as large as the input, output pixel q of the flattened plane
// reads input q + (ky - padTop)·W + (kx - padLeft) for tap (ky, kx): a constant offset per tap. So
// the plane is copied once between zeroed margins (taps above the first row and below the last
// read zeros) and the flattened output is computed four vectors at a time straight across row
// ends. For a tap column kx ≠ padLeft the flat offset lands in the neighbouring row for pixels at
// the row's left or right end: those lanes are dropped by a mask that depends only on the
// pixel's column, so one set of masks serves every plane. At 56 and 112 wide the row kernel's
// vectors are (nearly) full and it skips the copy: it measured faster there.

import Quarry

struct DepthwiseFlat {
    let g: ConvGeometry
    /// Pixels of a plane, and SIMD16 vectors covering them.
    let pixels, vectors: Int
    /// Zeroed floats ahead of the plane's copy in the scratch buffer (the taps above its first row).
    let lead: Int
    /// Per tap column kx and vector: lanes whose input column is outside the row.
    let columnMasks: [SIMDMask<SIMD16<Int32>>]

    static func supports(_ g: ConvGeometry) -> Bool {
        g.strideH == 1 && g.strideW == 1 && g.dilationH == 1 && g.dilationW == 1
            && g.outHeight == g.height && g.outWidth == g.width && g.width <= 32
            && g.padTop < g.kernelH && g.padLeft < g.kernelW && g.kernelH * g.kernelW <= 49
    }

    init(_ g: ConvGeometry) {
        self.g = g
        pixels = g.height * g.width
        vectors = (pixels + 15) / 16
        lead = (g.padTop * g.width + g.padLeft + 15) & ~15
        var masks: [SIMDMask<SIMD16<Int32>>] = []
        for kx in 0..<g.kernelW {
            for v in 0..<vectors {
                var m = SIMDMask<SIMD16<Int32>>()
                for lane in 0..<16 {
                    let column = (16 * v + lane) % g.width + kx - g.padLeft
                    m[lane] = column < 0 || column >= g.width
                }
                masks.append(m)
            }
        }
        columnMasks = masks
    }

    /// Scratch floats for one worker: the margins, the plane's vectors, and what the taps read
    /// past them (a multiple of 16).
    var scratchCount: Int {
        lead + (16 * vectors + (g.kernelH - 1 - g.padTop) * g.width + (g.kernelW - 1 - g.padLeft) + 31) & ~15
    }

    /// Convolves one plane. With `spill` the last vector is stored whole, up to 15 floats past
    /// the plane's end, into output that the same thread writes next; otherwise partially.
    @inline(__always)
    func run(src: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: Float, clip: Clip,
             scratch: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>, spill: Bool) {
        // Margins zeroed and the plane copied with vector stores (calls to memset cost more).
        let z = V16()
        let base = scratch + lead
        var i = 0
        while i < lead { store16(z, scratch + i); i += 16 }
        i = 0
        while i + 16 <= pixels { store16(load16(src + i), base + i); i += 16 }
        let rest = pixels - i
        if rest > 0 {
            // The last partial vector, then zeros to the end of the scratch.
            var v = z
            for j in 0..<rest { v[j] = src[i + j] }
            store16(v, base + i)
            i += 16
        }
        while i < scratchCount - lead { store16(z, base + i); i += 16 }
        // 3x3 (every MobileNet layer) with the tap loops unrolled; other sizes as they come.
        if g.kernelH == 3 && g.kernelW == 3 {
            convolve(kh: 3, kw: 3, base, weights, bias, clip, dst, spill)
        } else {
            convolve(kh: g.kernelH, kw: g.kernelW, base, weights, bias, clip, dst, spill)
        }
    }

    @inline(__always)
    private func convolve(kh: Int, kw: Int, _ base: UnsafeMutablePointer<Float>, _ weights: UnsafePointer<Float>,
                          _ bias: Float, _ clip: Clip, _ dst: UnsafeMutablePointer<Float>, _ spill: Bool) {
        let width = g.width, padTop = g.padTop, padLeft = g.padLeft
        let b = V16(repeating: bias), z = V16()
        columnMasks.withUnsafeBufferPointer { masks in
            let m0 = masks.baseAddress!
            var v = 0
            // Four vectors at a time: per tap column, four chains of kh FMAs, masked once.
            while v + 4 <= vectors {
                let q = 16 * v
                var r0 = b, r1 = b, r2 = b, r3 = b
                for kx in 0..<kw {
                    var s0 = z, s1 = z, s2 = z, s3 = z
                    var p = UnsafePointer(base + q - padTop * width + kx - padLeft)
                    for ky in 0..<kh {
                        let w = V16(repeating: weights[ky * kw + kx])
                        s0 = s0.addingProductFast(load16(p), w)
                        s1 = s1.addingProductFast(load16(p + 16), w)
                        s2 = s2.addingProductFast(load16(p + 32), w)
                        s3 = s3.addingProductFast(load16(p + 48), w)
                        p += width
                    }
                    if kx != padLeft {
                        let m = m0 + kx * vectors + v
                        s0.replace(with: 0, where: m[0]); s1.replace(with: 0, where: m[1])
                        s2.replace(with: 0, where: m[2]); s3.replace(with: 0, where: m[3])
                    }
                    r0 += s0; r1 += s1; r2 += s2; r3 += s3
                }
                let out = dst + q
                store16(clip(r0), out); store16(clip(r1), out + 16); store16(clip(r2), out + 32)
                let left = pixels - q - 48
                if left >= 16 || spill { store16(clip(r3), out + 48) } else { storePartial(clip(r3), out + 48, left) }
                v += 4
            }
            // The last one to three vectors one at a time.
            while v < vectors {
                let q = 16 * v
                var r = b
                for kx in 0..<kw {
                    var s = z
                    var p = UnsafePointer(base + q - padTop * width + kx - padLeft)
                    for ky in 0..<kh {
                        s = s.addingProductFast(load16(p), V16(repeating: weights[ky * kw + kx]))
                        p += width
                    }
                    if kx != padLeft { s.replace(with: 0, where: m0[kx * vectors + v]) }
                    r += s
                }
                let left = pixels - q
                if left >= 16 || spill { store16(clip(r), dst + q) } else { storePartial(clip(r), dst + q, left) }
                v += 1
            }
        }
    }
}
