// 2-D convolution and transposed convolution on the CPU, NCHW.
//
// A convolution of one image and one group is the GEMM out[O/g, OH*OW] = W[O/g, C/g*kh*kw] x
// cols[C/g*kh*kw, OH*OW]. The weights are the A operand, packed once at compile time; the B panels
// are packed straight from the image (an implicit im2col: no column matrix is ever materialised),
// and a 1x1 stride-1 unpadded convolution uses the NCHW image itself as B. Bias and the fused
// activation run in the GEMM epilogue. Depthwise convolutions (one input channel per group) do too
// little work per weight for a GEMM and have their own direct kernel.
//
// A transposed convolution is the GEMM cols[O/g*kh*kw, H*W] = W^T x x, then col2im scatters the
// columns into the output.

import CCPUHints
import CQuarryKernels
import Foundation
import Quarry

/// Packed weights of a node, one matrix per group, kept in the pack cache.
final class PackedGroups {
    let groups: [PackedMatrix]
    init(_ groups: [PackedMatrix]) { self.groups = groups }
}

/// Geometry of a 2-D window over an image, shared by the convolution kernels.
struct ConvGeometry {
    var channels, height, width: Int
    var outHeight, outWidth: Int
    var kernelH, kernelW, strideH, strideW, dilationH, dilationW, padTop, padLeft: Int
}

/// The B operand of a convolution's GEMM, packed directly from the image: row k = (c, ky, kx)
/// of the implicit column matrix, column p = an output pixel (oy, ox). With `images` > 1 the
/// columns run over that many images side by side (image n starts `imageStride` floats after
/// `image`): column n * pixels + p.
struct Im2ColSource: GEMMSourceB {
    let image: UnsafePointer<Float>
    let g: ConvGeometry
    var images = 1
    var imageStride = 0
    var isPrepacked: Bool { false }

    func blockB(k0: Int, kc: Int, j0: Int, cols: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        let nr = GEMMBlocking.nr
        let khw = g.kernelH * g.kernelW
        let panels = (cols + nr - 1) / nr
        // Each row of the column matrix is built contiguously (long copies, one output row at a
        // time), then cut into the panels with vector copies: cheaper than building each panel's
        // 32 columns piecewise, which cost as much as a third of a 3x3 convolution.
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: panels * nr / 16) { buffer in
            let line = UnsafeMutableRawPointer(buffer.baseAddress!).assumingMemoryBound(to: Float.self)
            for t in cols..<(panels * nr) { line[t] = 0 }
            var geometry = quarry_im2col_geometry(height: g.height, width: g.width, out_height: g.outHeight,
                                                  out_width: g.outWidth, stride_h: g.strideH, stride_w: g.strideW,
                                                  image_stride: imageStride)
            let planeFloats = g.height * g.width, planeLines = (planeFloats + 15) / 16
            let firstImage = image + (j0 / (g.outHeight * g.outWidth)) * imageStride
            for kk in 0..<kc {
                let r = k0 + kk
                let c = r / khw, tap = r % khw, ky = tap / g.kernelW, kx = r % g.kernelW
                // The next channel's plane, a share per tap of this one: its lines come from L3
                // (the image no longer fits L2 beside the packed block) and stalled the copies.
                if c + 1 < g.channels {
                    let next = firstImage + (c + 1) * planeFloats
                    for line in (planeLines * tap / khw)..<(planeLines * (tap + 1) / khw) {
                        quarry_prefetch_for_read(next + line * 16)
                    }
                }
                quarry_im2col_line(image, &geometry, c, ky * g.dilationH - g.padTop, kx * g.dilationW - g.padLeft,
                                   j0, cols, line)
                for panel in 0..<panels {
                    let src = UnsafeRawPointer(line + panel * nr)
                    let dst = UnsafeMutableRawPointer(scratch + panel * nr * kc + kk * nr)
                    dst.storeBytes(of: src.load(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                    dst.storeBytes(of: src.load(fromByteOffset: 64, as: SIMD16<Float>.self), toByteOffset: 64,
                                   as: SIMD16<Float>.self)
                }
            }
        }
        return UnsafePointer(scratch)
    }
}

/// dst[t] = row[firstX + t * stride] for t < count, zero where the index falls outside 0..<width.
@inline(__always)
func copyWindowRow(from row: UnsafePointer<Float>, width: Int, firstX: Int, stride: Int, count: Int,
                   to dst: UnsafeMutablePointer<Float>) {
    // Valid t: 0 <= firstX + t*stride < width.
    let lo = firstX >= 0 ? 0 : min(count, (-firstX + stride - 1) / stride)
    let hi = firstX >= width ? 0 : max(lo, min(count, (width - firstX + stride - 1) / stride))
    for t in 0..<lo { dst[t] = 0 }
    if stride == 1 {
        // Segments are at most NR floats: vector copies beat a call to memmove.
        if hi > lo {
            let s = row + (firstX + lo), d = dst + lo, n = hi - lo
            var t = 0
            while t + 16 <= n {
                UnsafeMutableRawPointer(d + t).storeBytes(
                    of: UnsafeRawPointer(s + t).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                t += 16
            }
            while t < n { d[t] = s[t]; t += 1 }
        }
    } else if stride == 2 {
        // A constant stride lets the compiler vectorise the gather as an interleaved load (two
        // vector loads and a permute) instead of one scalar load per element: stride-2 windows
        // are MobileNet's downsampling depthwise layers and every network's stem.
        let s = row + firstX
        for t in lo..<hi { dst[t] = s[2 * t] }
    } else {
        var x = firstX + lo * stride
        for t in lo..<hi { dst[t] = row[x]; x += stride }
    }
    for t in max(hi, lo)..<count { dst[t] = 0 }
}

/// Runs the GEMM with A either packed or not, and B from any source.
func gemmWith<B: GEMMSourceB>(
    m: Int, n: Int, k: Int, packedA: PackedMatrix?, a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
    b: B, c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: GEMMEpilogue, threads: CPUThreads
) {
    if let packedA {
        gemmDriver(m: m, n: n, k: k, a: packedA, b: b, c: c, ldc: ldc, epilogue: epilogue, threads: threads)
    } else {
        gemmDriver(m: m, n: n, k: k, a: DenseOperand(base: a, ld: lda, transposed: transposeA), b: b, c: c,
                   ldc: ldc, epilogue: epilogue, threads: threads)
    }
}

extension CPUKernels {
    static func makeConv2D(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .conv2d(let a) = ctx.node.op else { preconditionFailure() }
        let x = ctx.shape(0), w = ctx.shape(1), out = ctx.outputShapes[0]
        let batch = x[0], channels = x[1], groups = a.groups
        let outChannels = w[0], groupIn = channels / groups, groupOut = outChannels / groups
        let geometry = ConvGeometry(
            channels: groupIn, height: x[2], width: x[3], outHeight: out[2], outWidth: out[3],
            kernelH: a.kernelH, kernelW: a.kernelW, strideH: a.strideH, strideW: a.strideW,
            dilationH: a.dilationH, dilationW: a.dilationW, padTop: a.padding.top, padLeft: a.padding.left)
        let hasBias = ctx.hasInput(2)
        let threads = ctx.threads
        let hasResidual = ctx.hasInput(3)
        let variant = KernelChoice.convolution(
            ConvolutionQuery(a, input: x, weight: w, output: out, constantWeights: ctx.constants[1] != nil, residual: hasResidual),
            device: CPUKernels.capabilities(threads: threads))
        let winograd = variant.name == "cpu.conv2d.winograd_f4x3"

        // The GEMM paths below add a residual in their epilogue; the depthwise and Winograd
        // kernels run without it and the sum and activation follow in one pass.
        if hasResidual && (winograd || (groupIn == 1 && groupOut == 1)) {
            var plain = a
            plain.activation = nil
            var node = ctx.node
            node.op = .conv2d(plain)
            node.inputs = Array(node.inputs.prefix(3))
            let inner = try makeConv2D(KernelContext(
                node: node, inputShapes: Array(ctx.inputShapes.prefix(3)), outputShapes: ctx.outputShapes,
                constants: ctx.constants.filter { $0.key < 3 }, threads: threads, packCache: ctx.packCache))
            let count = out.reduce(1, *), activation = a.activation
            return { inputs, outputs in
                inner(Array(inputs.prefix(3)), outputs)
                threads.parallelRanges(count, minimumPerThread: 1 << 15) { r in
                    addResidual(outputs[0] + r.lowerBound, inputs[3]! + r.lowerBound, count: r.count, activation: activation)
                }
            }
        }

        if variant.name == "cpu.conv2d.depthwise" {
            return makeDepthwiseConv2D(geometry: geometry, batch: batch, channels: channels, hasBias: hasBias,
                                       activation: a.activation, threads: threads)
        }

        if variant.name == "cpu.conv2d.few_channels_direct" {
            return makeFewChannelConv2D(geometry, batch: batch, outChannels: outChannels, constantWeights: ctx.constants[1],
                                        hasBias: hasBias, activation: a.activation, threads: threads)
        }

        if let weights = ctx.constants[1], winograd {
            let transformed = ctx.packCache.value("\(ctx.node.name)/\(variant.key)") {
                WinogradWeights(weights: weights.pointer, outChannels: outChannels, channels: channels)
            }
            return makeWinogradConv2D(geometry: geometry, batch: batch, outChannels: outChannels, weights: transformed,
                                      hasBias: hasBias, activation: a.activation, threads: threads)
        }

        let depth = groupIn * a.kernelH * a.kernelW
        let pixels = out[2] * out[3], imagePlane = x[2] * x[3]
        let pointwise = a.kernelH == 1 && a.kernelW == 1 && a.strideH == 1 && a.strideW == 1
            && a.padding == .zero
        let stackImages = !pointwise && groups == 1 && batch > 1 && pixels % GEMMBlocking.nr != 0 && pixels < 512
        if variant.name == "cpu.conv2d.pointwise_pixel_major", let weights = ctx.constants[1] {
            let weightsT = ctx.packCache.value("\(ctx.node.name)/\(variant.key)") {
                PackedMatrix(b: weights.pointer, k: channels, n: outChannels, ldb: channels, transposed: true)
            }
            return makePixelMajorPointwise(batch: batch, channels: channels, outChannels: outChannels, pixels: pixels,
                                           weightsT: weightsT, hasBias: hasBias, hasResidual: hasResidual,
                                           activation: a.activation, threads: threads)
        }
        let packed: PackedGroups? = ctx.constants[1].map { weights in
            ctx.packCache.value("\(ctx.node.name)/\(variant.key)") {
                PackedGroups((0..<groups).map { g in
                    PackedMatrix(a: weights.pointer + g * groupOut * depth, m: groupOut, k: depth, lda: depth)
                })
            }
        }
        let activation = a.activation
        // A small image's GEMM (MobileNet's 1x1 layers: 16-320 channels, 7x7-56x56 pixels) has too
        // few panels to split well and pays a thread dispatch per image and group; at batch >= threads
        // each thread takes whole images instead, with one dispatch per run. The split must be even
        // (or the batch large), or the thread with one image more sets the pace.
        let imageWork = groups * groupOut * pixels * depth
        let splitImages = threads.count > 1 && imageWork < 1 << 25
            && (batch % threads.count == 0 || batch >= 4 * threads.count)
        let imageWorkers = splitImages ? threads.count : 1
        let oneThread = CPUThreads(count: 1)
        // Small planes (ResNet's 7x7 and 14x14 stages) leave a partial column panel per image:
        // 49 pixels fill two panels of 32 to 77%, and the partial one goes through the slow edge
        // path. Several such images instead run as one GEMM whose columns are all their pixels
        // side by side (the column matrix packed across images), and the result is scattered to
        // the images: the copy moves out channels x pixels floats against in x out x pixels
        // multiply-adds. At 14x14 (196 pixels, batch 4, one thread) stacking measured 5% faster;
        // at 28x28 (784, 3% of a panel lost per image) the copy costs more: 94-101 GFLOP/s
        // unstacked, 79-94 stacked. A 1x1 layer is not stacked: it had to gather the planes
        // first as well, and since its B panels are read in place with the next one prefetched,
        // each image's own GEMM (the partial panel computed 16 wide) is the faster: MobileNetV2
        // batch 8 25.5-25.9 ms against 26.6-26.8 stacked, ResNet-50 level (alternated 3 times).
        // (1x1 layers of at most 64 pixels run pixel-major instead, see KernelChoice.)
        // A 1x1 layer's B is the image's planes, 32 pixels of each of K planes per panel: the
        // micro-kernel reads them where they are instead of copying them into packed panels
        // first (a copy of the whole input per image). One thread, batch 4: MobileNetV2's
        // projections 32->16 at 112x112 0.77 -> 0.59 ms, 96->24 at 56x56 0.70 -> 0.55, 144->24
        // 1.18 -> 0.81; 1024->256 at 14x14 3% faster. But a panel read in place is re-read from
        // K planes for every 12 output channels: 16->96 at 112x112 (8 row panels of far-apart
        // planes) went 2.2 -> 2.45 ms, so large planes stay packed unless the output has at most
        // 4 row panels. Planes a multiple of 4 KiB long would put a panel's K rows in a few L1 sets.
        func readsInPlace(planeFloats: Int) -> Bool {
            (groupOut <= 4 * GEMMBlocking.mr || planeFloats < 4096) && (planeFloats * 4) % 4096 != 0
        }
        let planesInPlace = readsInPlace(planeFloats: imagePlane)
        let stackedCount = stackImages ? outChannels * batch * pixels : 0
        return { inputs, outputs in
            let xp = inputs[0]!, wp = inputs[1]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            let residual = hasResidual ? inputs[3] : nil
            if stackImages {
                ThreadBuffers.current.withScratch(stackedCount) { buffer in
                    let columns = batch * pixels
                    // With a residual the activation follows the sum, in the scatter.
                    let epilogue = GEMMEpilogue(bias: bias, biasAxis: .rows, activation: residual == nil ? activation : nil)
                    let ys = buffer
                    gemmWith(m: outChannels, n: columns, k: depth, packedA: packed?.groups[0], a: wp, lda: depth,
                             b: Im2ColSource(image: xp, g: geometry, images: batch, imageStride: channels * imagePlane),
                             c: ys, ldc: columns, epilogue: epilogue, threads: threads)
                    for n in 0..<batch {
                        for o in 0..<outChannels {
                            let dst = y + (n * outChannels + o) * pixels, src = ys + o * columns + n * pixels
                            if let residual {
                                addResidual(dst, residual + (n * outChannels + o) * pixels, count: pixels,
                                            activation: activation, from: src)
                            } else {
                                dst.update(from: src, count: pixels)
                            }
                        }
                    }
                }
                return
            }
            func convolve(image n: Int, threads: CPUThreads) {
                for g in 0..<groups {
                    let image = xp + (n * channels + g * groupIn) * imagePlane
                    let c = y + (n * outChannels + g * groupOut) * pixels
                    let epilogue = GEMMEpilogue(bias: bias.map { $0 + g * groupOut }, biasAxis: .rows,
                                                addend: residual.map { $0 + (n * outChannels + g * groupOut) * pixels },
                                                addendLd: pixels, activation: activation)
                    let wg = wp + g * groupOut * depth
                    if pointwise {
                        gemmWith(m: groupOut, n: pixels, k: depth, packedA: packed?.groups[g], a: wg, lda: depth,
                                 b: DenseOperand(base: image, ld: imagePlane, transposed: false, inPlace: planesInPlace),
                                 c: c, ldc: pixels, epilogue: epilogue, threads: threads)
                    } else {
                        gemmWith(m: groupOut, n: pixels, k: depth, packedA: packed?.groups[g], a: wg, lda: depth,
                                 b: Im2ColSource(image: image, g: geometry), c: c, ldc: pixels,
                                 epilogue: epilogue, threads: threads)
                    }
                }
            }
            if splitImages {
                threads.parallelFor(imageWorkers) { w in
                    for n in (batch * w / imageWorkers)..<(batch * (w + 1) / imageWorkers) {
                        convolve(image: n, threads: oneThread)
                    }
                }
            } else {
                for n in 0..<batch { convolve(image: n, threads: threads) }
            }
        }
    }

    static func makeConvTranspose2D(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .convTranspose2d(let a) = ctx.node.op else { preconditionFailure() }
        let x = ctx.shape(0), w = ctx.shape(1), out = ctx.outputShapes[0]
        let batch = x[0], channels = x[1], height = x[2], width = x[3], groups = a.groups
        let groupIn = channels / groups, groupOut = w[1], outChannels = out[1]
        let outH = out[2], outW = out[3]
        let kh = a.kernelH, kw = a.kernelW
        let rows = groupOut * kh * kw, pixels = height * width
        let hasBias = ctx.hasInput(2)
        let threads = ctx.threads
        // A = W_g^T: element (i = (o, ky, kx), c) is w[(g*groupIn + c), i].
        let packed: PackedGroups? = ctx.constants[1].map { weights in
            ctx.packCache.value("\(ctx.node.name)/conv-transpose2d-weights") {
                PackedGroups((0..<groups).map { g in
                    PackedMatrix(a: weights.pointer + g * groupIn * rows, m: rows, k: groupIn, lda: rows, transposed: true)
                })
            }
        }
        let columnCount = rows * pixels
        let activation = a.activation
        return { inputs, outputs in
            let xp = inputs[0]!, wp = inputs[1]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            ThreadBuffers.current.withScratch(columnCount) { cols in
                for n in 0..<batch {
                    for g in 0..<groups {
                        let image = xp + (n * channels + g * groupIn) * pixels
                        gemmWith(m: rows, n: pixels, k: groupIn, packedA: packed?.groups[g], a: wp + g * groupIn * rows,
                                 lda: rows, transposeA: true,
                                 b: DenseOperand(base: image, ld: pixels, transposed: false), c: cols, ldc: pixels,
                                 epilogue: .none, threads: threads)
                        // col2im: each output channel's plane is written by one thread only.
                        threads.parallelFor(groupOut) { o in
                            let oc = g * groupOut + o
                            let plane = y + (n * outChannels + oc) * outH * outW
                            plane.initialize(repeating: bias?[oc] ?? 0, count: outH * outW)
                            for ky in 0..<kh {
                                for kx in 0..<kw {
                                    let col = cols + ((o * kh + ky) * kw + kx) * pixels
                                    let colOffset = kx * a.dilationW - a.padding.left
                                    // Input columns ix whose output column ix*sw + colOffset is inside.
                                    let lo = colOffset >= 0 ? 0 : min(width, (-colOffset + a.strideW - 1) / a.strideW)
                                    let hi = colOffset >= outW ? 0
                                        : max(lo, min(width, (outW - colOffset + a.strideW - 1) / a.strideW))
                                    if hi <= lo { continue }
                                    for iy in 0..<height {
                                        let oy = iy * a.strideH - a.padding.top + ky * a.dilationH
                                        if oy < 0 || oy >= outH { continue }
                                        let dst = plane + oy * outW, src = col + iy * width
                                        var ox = colOffset + lo * a.strideW
                                        for ix in lo..<hi { dst[ox] += src[ix]; ox += a.strideW }
                                    }
                                }
                            }
                            if let activation { applyActivation(activation, plane, count: outH * outW) }
                        }
                    }
                }
            }
        }
    }
}

/// dst = activation(src + residual) over `count` floats (src defaults to dst itself): the binary
/// add's dense loop, the activation on pieces still in L1 (as `makeBinary` does).
func addResidual(_ dst: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>, count: Int,
                 activation: Activation?, from src: UnsafePointer<Float>? = nil) {
    let src = src ?? UnsafePointer(dst)
    var i = 0
    while i < count {
        let n = min(4096, count - i)
        binaryLoop(src + i, 1, residual + i, 1, dst + i, n, { $0 + $1 }, { $0 + $1 })
        if let activation { applyActivation(activation, dst + i, count: n) }
        i += n
    }
}
