// Convolutions of images with few channels: a network's stem (RGB into 32 or 64 channels).
//
// As a GEMM, a stem is W[O, C·kh·kw] x cols[C·kh·kw, pixels] with a short depth (27 for a 3x3
// over RGB, 147 for ResNet's 7x7) and a column matrix gathered from the image at the stride: the
// gather cost a third of MobileNetV2's 3x3 stride-2 stem and of ResNet-50's 7x7, which ran at
// 58-64% of a core's peak. Here each image is copied once into zero-padded column phases (phase q
// of a padded row holds its columns q, q + s, q + 2s, ... for stride s), so that the inputs of
// tap (c, ky, kx) for 16 adjacent outputs of output row oy are one unaligned vector load: phase
// kx mod s of padded row s·oy + ky, from column ox + kx / s. Eight output channels by three vectors
// (48 outputs) accumulate in 24 registers over every tap: per tap three loads and eight
// broadcasts for 24 multiply-adds, and no column matrix.

import Quarry

struct FewChannelConv {
    let g: ConvGeometry
    let outChannels: Int
    let stride: Int
    /// Rows of the padded image (every row a window reads) and floats of one column phase of a row.
    let paddedHeight, phaseWidth: Int
    /// SIMD16 vectors per output row.
    let vectors: Int
    /// Per tap (c, ky, kx): the offset of its first input in the phases of output row 0.
    let tapOffsets: [Int]

    init(_ g: ConvGeometry, outChannels: Int) {
        self.g = g
        self.outChannels = outChannels
        stride = g.strideW
        vectors = (g.outWidth + 15) / 16
        paddedHeight = stride * (g.outHeight - 1) + g.kernelH
        // A row's last vector reads up to 16·vectors - 1 + (kw - 1) / s; 16 more floats keep the
        // loads of the last tap inside the buffer.
        phaseWidth = 16 * vectors + (g.kernelW - 1) / stride + 16
        var offsets: [Int] = []
        for c in 0..<g.channels {
            for ky in 0..<g.kernelH {
                for kx in 0..<g.kernelW {
                    offsets.append(((c * stride + kx % stride) * paddedHeight + ky) * phaseWidth + kx / stride)
                }
            }
        }
        tapOffsets = offsets
    }

    var taps: Int { tapOffsets.count }
    /// Floats of one image's phases.
    var phaseCount: Int { g.channels * stride * paddedHeight * phaseWidth }

    /// Weights as [O / 8][tap][8]: a tap's eight output channels adjacent, for broadcasts.
    func packWeights(_ w: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>) {
        for oc in 0..<outChannels {
            for t in 0..<taps { packed[((oc / 8) * taps + t) * 8 + oc % 8] = w[oc * taps + t] }
        }
    }

    /// Copies image `x` (C x H x W) into its zero-padded column phases.
    func fillPhases(_ x: UnsafePointer<Float>, _ phases: UnsafeMutablePointer<Float>) {
        for c in 0..<g.channels {
            for q in 0..<stride {
                for y in 0..<paddedHeight {
                    let dst = phases + ((c * stride + q) * paddedHeight + y) * phaseWidth
                    let iy = y - g.padTop
                    if iy < 0 || iy >= g.height {
                        dst.update(repeating: 0, count: phaseWidth)
                    } else {
                        copyWindowRow(from: x + (c * g.height + iy) * g.width, width: g.width, firstX: q - g.padLeft,
                                      stride: stride, count: phaseWidth, to: dst)
                    }
                }
            }
        }
    }

    /// Output rows `rows` of one image: all output channels, bias in the accumulators' start and
    /// a clamp before the store.
    func run(rows: Range<Int>, phases: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
             clamp: FusedClamp?, out: UnsafeMutablePointer<Float>) {
        let plane = g.outHeight * g.outWidth, width = g.outWidth
        let clip = clamp.map(Clip.init) ?? Clip(lo: V16(repeating: -.infinity), hi: V16(repeating: .infinity))
        let zeros = [Float](repeating: 0, count: 8)
        tapOffsets.withUnsafeBufferPointer { offsets in
          zeros.withUnsafeBufferPointer { zeros in
            let offsets = offsets.baseAddress!
            for block in 0..<(outChannels / 8) {
                let w = weights + block * taps * 8
                let b = bias.map { $0 + 8 * block } ?? zeros.baseAddress!
                let o = out + 8 * block * plane
                for oy in rows {
                    let src = phases + stride * oy * phaseWidth
                    let dst = o + oy * width
                    var v = 0
                    while v + 3 <= vectors {
                        block3(src + 16 * v, offsets, w, b, clip, dst + 16 * v, plane: plane, valid: width - 16 * v)
                        v += 3
                    }
                    while v < vectors {
                        block1(src + 16 * v, offsets, w, b, clip, dst + 16 * v, plane: plane, valid: width - 16 * v)
                        v += 1
                    }
                }
            }
          }
        }
    }

    /// Eight output channels x 48 outputs; `valid` outputs of the row remain from `dst`.
    @inline(__always)
    private func block3(_ src: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>, _ w: UnsafePointer<Float>,
                        _ b: UnsafePointer<Float>, _ clip: Clip, _ dst: UnsafeMutablePointer<Float>, plane: Int, valid: Int) {
        var x0 = V16(repeating: b[0]), x1 = V16(repeating: b[1]), x2 = V16(repeating: b[2]), x3 = V16(repeating: b[3])
        var x4 = V16(repeating: b[4]), x5 = V16(repeating: b[5]), x6 = V16(repeating: b[6]), x7 = V16(repeating: b[7])
        var y0 = x0, y1 = x1, y2 = x2, y3 = x3, y4 = x4, y5 = x5, y6 = x6, y7 = x7
        var z0 = x0, z1 = x1, z2 = x2, z3 = x3, z4 = x4, z5 = x5, z6 = x6, z7 = x7
        for t in 0..<taps {
            let p = src + offsets[t], wt = w + 8 * t
            let u = load16(p), v = load16(p + 16), s = load16(p + 32)
            x0 = x0.addingProductFast(wt[0], u); y0 = y0.addingProductFast(wt[0], v); z0 = z0.addingProductFast(wt[0], s)
            x1 = x1.addingProductFast(wt[1], u); y1 = y1.addingProductFast(wt[1], v); z1 = z1.addingProductFast(wt[1], s)
            x2 = x2.addingProductFast(wt[2], u); y2 = y2.addingProductFast(wt[2], v); z2 = z2.addingProductFast(wt[2], s)
            x3 = x3.addingProductFast(wt[3], u); y3 = y3.addingProductFast(wt[3], v); z3 = z3.addingProductFast(wt[3], s)
            x4 = x4.addingProductFast(wt[4], u); y4 = y4.addingProductFast(wt[4], v); z4 = z4.addingProductFast(wt[4], s)
            x5 = x5.addingProductFast(wt[5], u); y5 = y5.addingProductFast(wt[5], v); z5 = z5.addingProductFast(wt[5], s)
            x6 = x6.addingProductFast(wt[6], u); y6 = y6.addingProductFast(wt[6], v); z6 = z6.addingProductFast(wt[6], s)
            x7 = x7.addingProductFast(wt[7], u); y7 = y7.addingProductFast(wt[7], v); z7 = z7.addingProductFast(wt[7], s)
        }
        let n = min(16, valid - 32)
        @inline(__always) func put(_ i: Int, _ x: V16, _ y: V16, _ z: V16) {
            let d = dst + i * plane
            store16(clip(x), d); store16(clip(y), d + 16); storePartial(clip(z), d + 32, n)
        }
        put(0, x0, y0, z0); put(1, x1, y1, z1); put(2, x2, y2, z2); put(3, x3, y3, z3)
        put(4, x4, y4, z4); put(5, x5, y5, z5); put(6, x6, y6, z6); put(7, x7, y7, z7)
    }

    /// Eight output channels x 16 outputs (a row's last vectors).
    @inline(__always)
    private func block1(_ src: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>, _ w: UnsafePointer<Float>,
                        _ b: UnsafePointer<Float>, _ clip: Clip, _ dst: UnsafeMutablePointer<Float>, plane: Int, valid: Int) {
        var x0 = V16(repeating: b[0]), x1 = V16(repeating: b[1]), x2 = V16(repeating: b[2]), x3 = V16(repeating: b[3])
        var x4 = V16(repeating: b[4]), x5 = V16(repeating: b[5]), x6 = V16(repeating: b[6]), x7 = V16(repeating: b[7])
        for t in 0..<taps {
            let u = load16(src + offsets[t]), wt = w + 8 * t
            x0 = x0.addingProductFast(wt[0], u); x1 = x1.addingProductFast(wt[1], u)
            x2 = x2.addingProductFast(wt[2], u); x3 = x3.addingProductFast(wt[3], u)
            x4 = x4.addingProductFast(wt[4], u); x5 = x5.addingProductFast(wt[5], u)
            x6 = x6.addingProductFast(wt[6], u); x7 = x7.addingProductFast(wt[7], u)
        }
        let n = min(16, valid)
        storePartial(clip(x0), dst, n); storePartial(clip(x1), dst + plane, n)
        storePartial(clip(x2), dst + 2 * plane, n); storePartial(clip(x3), dst + 3 * plane, n)
        storePartial(clip(x4), dst + 4 * plane, n); storePartial(clip(x5), dst + 5 * plane, n)
        storePartial(clip(x6), dst + 6 * plane, n); storePartial(clip(x7), dst + 7 * plane, n)
    }
}

extension CPUKernels {
    /// A convolution with few input channels (chosen by `KernelChoice.convolution`), without a residual.
    static func makeFewChannelConv2D(_ g: ConvGeometry, batch: Int, outChannels: Int, constantWeights: Tensor?,
                                     hasBias: Bool, activation: Activation?, threads: CPUThreads) -> CPUKernel {
        let conv = FewChannelConv(g, outChannels: outChannels)
        let weightCount = outChannels * conv.taps
        // Packed once when the weights are parameters; else per run (a few thousand floats).
        let packed: TensorStorage? = constantWeights.map { w in
            let p = TensorStorage(count: weightCount)
            conv.packWeights(w.pointer, into: p.pointer)
            return p
        }
        let clamp = FusedClamp(activation)
        // An activation that is not a clamp runs over each finished row block, still in L1.
        let after = clamp == nil ? activation : nil
        let inPlane = g.channels * g.height * g.width, outPlane = outChannels * g.outHeight * g.outWidth
        let rowFloats = g.outWidth
        return { inputs, outputs in
            let x = inputs[0]!, bias = hasBias ? inputs[2] : nil, out = outputs[0]
            func body(_ weights: UnsafePointer<Float>) {
                // Whole images per thread when every thread gets one; else each image's rows split.
                let perImage = batch >= threads.count || threads.count == 1
                func image(_ n: Int, rows: Range<Int>, phases: UnsafeMutablePointer<Float>) {
                    conv.run(rows: rows, phases: phases, weights: weights, bias: bias, clamp: clamp, out: out + n * outPlane)
                    if let after {
                        for oc in 0..<outChannels {
                            applyActivation(after, out + n * outPlane + (oc * g.outHeight + rows.lowerBound) * rowFloats,
                                            count: rows.count * rowFloats)
                        }
                    }
                }
                if perImage {
                    threads.parallelFor(batch) { n in
                        ThreadBuffers.current.withScratch(conv.phaseCount) { phases in
                            conv.fillPhases(x + n * inPlane, phases)
                            image(n, rows: 0..<g.outHeight, phases: phases)
                        }
                    }
                } else {
                    ThreadBuffers.current.withScratch(conv.phaseCount) { phases in
                        for n in 0..<batch {
                            conv.fillPhases(x + n * inPlane, phases)
                            threads.parallelRanges(g.outHeight) { rows in image(n, rows: rows, phases: phases) }
                        }
                    }
                }
            }
            if let packed { body(packed.pointer); return }
            let scratch = TensorStorage(count: weightCount)
            conv.packWeights(inputs[1]!, into: scratch.pointer)
            body(scratch.pointer)
        }
    }
}
