// 1x1 convolutions on planes of at most 64 pixels (MobileNet's and ResNet's 7x7 stages), with
// the pixels of every image in the batch as the GEMM's rows.
//
// The usual orientation, out[O, pixels] = W[O, C] · x[C, pixels], puts the pixels in the
// vector lanes: 49 pixels are one 32-column panel and 17 columns that cost a second whole panel,
// so 77% of the multiply-adds do work. Transposed, outᵀ[pixels, O] = xᵀ[pixels, C] · Wᵀ[C, O]:
// the output channels (multiples of 16, usually of 32) fill the panels, and the 49 pixels are
// four 12-row tiles and a 1-row tile that costs a twelfth of one (at batch 4, 196 rows: 16 full
// tiles and a 4-row one). xᵀ is packed straight from the planes (each k gives 12 adjacent
// pixels; a panel across two images is gathered row by row), Wᵀ is packed once at load, and
// outᵀ, a block at a time in the thread's scratch, goes back to planes through 16x16
// transposes, adding the residual and applying the activation on the way. This replaces the
// stacked-planes path (gather, GEMM, scatter) for these layers.

import Quarry

extension CPUKernels {
    static func makePixelMajorPointwise(batch: Int, channels: Int, outChannels: Int, pixels: Int, weightsT: PackedMatrix,
                                        hasBias: Bool, hasResidual: Bool, activation: Activation?,
                                        threads: CPUThreads) -> CPUKernel {
        let mr = GEMMBlocking.mr, nr = GEMMBlocking.nr, mc = GEMMBlocking.mc
        // Every image's pixels are rows: image n's pixel p is row n * pixels + p.
        let rows = batch * pixels
        let rowPanels = (rows + mr - 1) / mr, colPanels = (outChannels + nr - 1) / nr
        // Split the output channels where they divide evenly over the threads; otherwise the
        // pixels (160 channels are five panels: three against two).
        let splitColumns = colPanels % threads.count == 0 || rowPanels < threads.count
        let parts = max(1, min(threads.count, splitColumns ? colPanels : rowPanels))
        let clamp = FusedClamp(activation)
        // The activation follows the residual; a clamp is applied in registers, others after.
        let inEpilogue: Activation? = hasResidual ? nil : activation
        let clampAfterResidual = hasResidual ? clamp : nil
        let after: Activation? = hasResidual && clamp == nil ? activation : nil
        return { inputs, outputs in
            let xp = inputs[0]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            let residual = hasResidual ? inputs[3] : nil
            let a = PlanesPixelMajor(base: xp, pixels: pixels, imageStride: channels * pixels)
            threads.parallelFor(parts) { t in
                let m0: Int, m1: Int, o0: Int, o1: Int
                if splitColumns {
                    (m0, m1) = (0, rows)
                    (o0, o1) = (colPanels * t / parts * nr, min(outChannels, colPanels * (t + 1) / parts * nr))
                } else {
                    (m0, m1) = (rowPanels * t / parts * mr, min(rows, rowPanels * (t + 1) / parts * mr))
                    (o0, o1) = (0, outChannels)
                }
                ThreadBuffers.current.withPackBuffers { scratchA, scratchB in
                    // outᵀ a block at a time (the GEMM's row block by 256 channels: B is read as
                    // often as in one call, A packed once per 256 channels), transposed out of L2.
                    ThreadBuffers.current.withScratch(mc * 256 + 256) { ct in
                        let tile = ct + mc * 256
                        var c0 = m0
                        while c0 < m1 {
                            let c1 = min(m1, c0 + mc)
                            var j0 = o0
                            while j0 < o1 {
                                let j1 = min(o1, j0 + 256), width = j1 - j0
                                // Row r, channel o of the block at ct[(r - c0) * width + (o - j0)].
                                gemmRegion(m0: c0, m1: c1, n0: j0, n1: j1, k: channels, a: a, b: weightsT,
                                           c: ct - c0 * width - j0, ldc: width,
                                           epilogue: GEMMEpilogue(bias: bias, biasAxis: .columns, activation: inEpilogue),
                                           scratchA: scratchA, scratchB: scratchB)
                                // Per image in the block, its rows to its planes, 16 pixels x 16 channels at a time.
                                for n in (c0 / pixels)...((c1 - 1) / pixels) {
                                    let r0 = max(c0, n * pixels), r1 = min(c1, (n + 1) * pixels)
                                    let out = y + n * outChannels * pixels
                                    let res = residual.map { $0 + n * outChannels * pixels }
                                    var o = j0
                                    while o < j1 {
                                        var r = r0
                                        while r < r1 {
                                            let p = r - n * pixels
                                            storeRowsAsPlanes(ct + (r - c0) * width + (o - j0), ld: width, rows: min(16, r1 - r),
                                                              to: out + o * pixels + p, planeStride: pixels,
                                                              residual: res.map { $0 + o * pixels + p }, clamp: clampAfterResidual, tile: tile)
                                            r += 16
                                        }
                                        if let after {
                                            for c in 0..<16 {
                                                applyActivation(after, out + (o + c) * pixels + (r0 - n * pixels), count: r1 - r0)
                                            }
                                        }
                                        o += 16
                                    }
                                }
                                j0 = j1
                            }
                            c0 = c1
                        }
                    }
                }
            }
        }
    }
}

/// The A operand xᵀ of a pixel-major 1x1 convolution over several images: row m is pixel
/// m % pixels of image m / pixels, column k its channel k, at
/// base[(m / pixels) * imageStride + k * pixels + m % pixels].
struct PlanesPixelMajor: GEMMSourceA {
    let base: UnsafePointer<Float>
    let pixels, imageStride: Int
    var isPrepacked: Bool { false }

    func blockA(i0: Int, rows: Int, k0: Int, kc: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        let mr = GEMMBlocking.mr
        var panel = 0
        while panel < rows {
            let pr = min(mr, rows - panel), m = i0 + panel
            let d = scratch + panel * kc
            let first = base + (m / pixels) * imageStride + k0 * pixels + m % pixels
            if pr == mr && m / pixels == (m + mr - 1) / pixels {
                // Twelve adjacent pixels of one image: each k is one run of 12 floats.
                for kk in 0..<kc {
                    let s = UnsafeRawPointer(first + kk * pixels), t = UnsafeMutableRawPointer(d + kk * mr)
                    t.storeBytes(of: s.loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
                    t.storeBytes(of: s.loadUnaligned(fromByteOffset: 32, as: SIMD4<Float>.self), toByteOffset: 32,
                                 as: SIMD4<Float>.self)
                }
            } else {
                for r in 0..<mr {
                    let row = m + r
                    if r < pr {
                        let s = base + (row / pixels) * imageStride + k0 * pixels + row % pixels
                        for kk in 0..<kc { d[kk * mr + r] = s[kk * pixels] }
                    } else {
                        for kk in 0..<kc { d[kk * mr + r] = 0 }
                    }
                }
            }
            panel += mr
        }
        return UnsafePointer(scratch)
    }
}
