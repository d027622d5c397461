// 1x1 convolutions on planes of at most 64 pixels (MobileNet's and ResNet's 7x7 stages), one
// image at a time, with the pixels as the GEMM's rows.
//
// The usual orientation, out[O, pixels] = W[O, C] · x[C, pixels], puts the pixels in the
// vector lanes: 49 pixels are one 32-column panel and 17 columns that cost a second whole panel,
// so 77% of the multiply-adds do work. Transposed, outᵀ[pixels, O] = xᵀ[pixels, C] · Wᵀ[C, O]:
// the output channels (multiples of 16, usually of 32) fill the panels, and the 49 pixels are
// four 12-row tiles and a 1-row tile that costs a twelfth of one. xᵀ is packed straight from
// the planes (each k gives 12 adjacent pixels), Wᵀ is packed once at load, and outᵀ, kept in
// the thread's scratch, goes back to planes through 16x16 transposes, adding the residual and
// applying the activation on the way.

import CCPUHints
import Quarry

extension CPUKernels {
    /// Whether a 1x1 convolution runs pixel-major: one group, a plane of at most 64 pixels that
    /// does not fill whole column panels, output channels in sixteens.
    static func runsPixelMajor(groups: Int, pixels: Int, outChannels: Int) -> Bool {
        groups == 1 && pixels <= 64 && pixels % GEMMBlocking.nr != 0 && outChannels % 16 == 0
    }

    static func makePixelMajorPointwise(batch: Int, channels: Int, outChannels: Int, pixels: Int, weightsT: PackedMatrix,
                                        hasBias: Bool, hasResidual: Bool, activation: Activation?,
                                        threads: CPUThreads) -> CPUKernel {
        let mr = GEMMBlocking.mr, nr = GEMMBlocking.nr
        let rowPanels = (pixels + mr - 1) / mr, colPanels = (outChannels + nr - 1) / nr
        // Split the output channels where they divide evenly over the threads (each thread then
        // transposes whole 16-channel blocks); otherwise the pixels (160 channels are five
        // panels: three against two).
        let splitColumns = colPanels % threads.count == 0 || rowPanels < threads.count
        let parts = max(1, min(threads.count, splitColumns ? colPanels : rowPanels))
        let clamp = FusedClamp(activation)
        // The activation follows the residual; a clamp is applied in registers, others after.
        let inEpilogue: Activation? = hasResidual ? nil : activation
        let clip = (hasResidual ? clamp : nil).map(Clip.init)
        let after: Activation? = hasResidual && clamp == nil ? activation : nil
        let tileRows = (pixels + 15) & ~15
        return { inputs, outputs in
            let xp = inputs[0]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            let residual = hasResidual ? inputs[3] : nil
            for n in 0..<batch {
                let image = xp + n * channels * pixels, out = y + n * outChannels * pixels
                let res = residual.map { $0 + n * outChannels * pixels }
                threads.parallelFor(parts) { t in
                    let m0: Int, m1: Int, o0: Int, o1: Int
                    if splitColumns {
                        (m0, m1) = (0, pixels)
                        (o0, o1) = (colPanels * t / parts * nr, min(outChannels, colPanels * (t + 1) / parts * nr))
                    } else {
                        (m0, m1) = (rowPanels * t / parts * mr, min(pixels, rowPanels * (t + 1) / parts * mr))
                        (o0, o1) = (0, outChannels)
                    }
                    let width = o1 - o0
                    ThreadBuffers.current.withPackBuffers { scratchA, scratchB in
                        ThreadBuffers.current.withScratch(tileRows * width + 256) { ct in
                            // outᵀ rows m0..<m1, columns o0..<o1, at ct[(p - m0) * width + (o - o0)].
                            gemmRegion(m0: m0, m1: m1, n0: o0, n1: o1, k: channels,
                                       a: DenseOperand(base: image, ld: pixels, transposed: true), b: weightsT,
                                       c: ct - m0 * width - o0, ldc: width,
                                       epilogue: GEMMEpilogue(bias: bias, biasAxis: .columns, activation: inEpilogue),
                                       scratchA: scratchA, scratchB: scratchB)
                            let tile = ct + tileRows * width
                            var o = o0
                            while o < o1 {
                                var p = m0
                                while p < m1 {
                                    let np = min(16, m1 - p), src = ct + (p - m0) * width + (o - o0)
                                    let dst = out + o * pixels + p
                                    if np == 16 && res == nil {
                                        quarry_transpose16x16(src, width, dst, pixels)
                                    } else {
                                        for r in 0..<np { store16(load16(src + r * width), tile + r * 16) }
                                        quarry_transpose16x16(tile, 16, tile, 16)
                                        for c in 0..<16 {
                                            var v = load16(tile + c * 16)
                                            if let res {
                                                let r = res + (o + c) * pixels + p
                                                v += np == 16 ? load16(r) : loadPartial(r, np)
                                            }
                                            if let clip { v = clip(v) }
                                            if np == 16 { store16(v, dst + c * pixels) } else { storePartial(v, dst + c * pixels, np) }
                                        }
                                    }
                                    p += 16
                                }
                                if let after {
                                    for c in 0..<16 { applyActivation(after, out + (o + c) * pixels + m0, count: m1 - m0) }
                                }
                                o += 16
                            }
                        }
                    }
                }
            }
        }
    }
}
