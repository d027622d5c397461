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

import CQuarryKernels
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
    /// a clamp before the store. Runs in CQuarryKernels, in the instruction-set level chosen at run
    /// time (eight channels by three SIMD16 vectors on AVX-512, by one vector elsewhere).
    func run(rows: Range<Int>, phases: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
             clamp: FusedClamp?, out: UnsafeMutablePointer<Float>) {
        tapOffsets.withUnsafeBufferPointer { offsets in
            quarry_few_channel_rows(phases, stride * phaseWidth, offsets.baseAddress!, taps, weights, bias, outChannels,
                                    rows.lowerBound, rows.upperBound, g.outWidth, g.outHeight * g.outWidth,
                                    clamp?.lo ?? -.infinity, clamp?.hi ?? .infinity, out)
        }
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
