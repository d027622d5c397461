import Foundation
import Quarry
@testable import QuarryCPU
import XCTest

final class ConvTests: XCTestCase {
    /// Direct float64 convolution from the definition.
    func referenceConv(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, _ a: Conv2DAttributes, outShape: [Int],
                       residual: Tensor? = nil) -> [Double] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, oh, ow) = (outShape[1], outShape[2], outShape[3])
        let cg = c / a.groups, og = o / a.groups
        var out = [Double](repeating: 0, count: n * o * oh * ow)
        for b in 0..<n {
            for oc in 0..<o {
                let g = oc / og
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var s = bias.map { Double($0[flat: oc]) } ?? 0
                        for ci in 0..<cg {
                            for ky in 0..<a.kernelH {
                                for kx in 0..<a.kernelW {
                                    let iy = oy * a.strideH - a.padding.top + ky * a.dilationH
                                    let ix = ox * a.strideW - a.padding.left + kx * a.dilationW
                                    if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                                    let xv = x[flat: ((b * c + g * cg + ci) * h + iy) * wd + ix]
                                    let wv = w[flat: ((oc * cg + ci) * a.kernelH + ky) * a.kernelW + kx]
                                    s += Double(xv) * Double(wv)
                                }
                            }
                        }
                        let index = ((b * o + oc) * oh + oy) * ow + ox
                        if let residual { s += Double(residual[flat: index]) }
                        if let act = a.activation { s = referenceActivation(act, s) }
                        out[index] = s
                    }
                }
            }
        }
        return out
    }

    func check(n: Int, c: Int, h: Int, w: Int, o: Int, _ a: Conv2DAttributes, bias: Bool = true,
               constantWeights: Bool = true, threads: Int = 2, residual: Bool = false, _ rng: inout SeededGenerator,
               file: StaticString = #filePath, line: UInt = #line) throws {
        // Under every instruction-set level the host has: the GEMM and depthwise kernels run in
        // CQuarryKernels' variant of the level in force.
        try CPUInstructionSet.forEachAvailable { level in
            try checkOnce(n: n, c: c, h: h, w: w, o: o, a, bias: bias, constantWeights: constantWeights, threads: threads,
                          residual: residual, level: level, &rng, file: file, line: line)
        }
    }

    func checkOnce(n: Int, c: Int, h: Int, w: Int, o: Int, _ a: Conv2DAttributes, bias: Bool, constantWeights: Bool,
                   threads: Int, residual: Bool, level: CPUInstructionSet, _ rng: inout SeededGenerator,
                   file: StaticString, line: UInt) throws {
        let x = randomTensor([n, c, h, w], &rng)
        let wt = randomTensor([o, c / a.groups, a.kernelH, a.kernelW], &rng)
        let b = bias ? randomTensor([o], &rng) : nil
        let r = residual ? randomTensor(try inferOutputShapes(.conv2d(a), [x.shape, wt.shape])[0], &rng) : nil
        let outs = try runCPUNode(.conv2d(a), [x, wt, b] + (r.map { [$0] } ?? []),
                                  constantIndices: constantWeights ? [1, 2] : [], threads: threads)
        let depth = Double(c / a.groups * a.kernelH * a.kernelW)
        assertClose(outs[0], referenceConv(x, wt, b, a, outShape: outs[0].shape, residual: r), rtol: 1e-4,
                    atol: 2e-5 * depth.squareRoot(), "\(level) conv n\(n) c\(c) \(h)x\(w) o\(o) \(a) residual \(residual)",
                    file: file, line: line)
    }

    /// A residual (skip connection) added before the activation, on every convolution path:
    /// the GEMM epilogue per image (and on the last of several depth blocks), the scatter of
    /// stacked small images, and the pass after depthwise and Winograd.
    func testResidualBeforeTheActivation() throws {
        var rng = makeTestRNG()
        try check(n: 2, c: 24, h: 8, w: 8, o: 40, Conv2DAttributes(kernel: (1, 1), activation: .relu), residual: true, &rng)
        try check(n: 1, c: 300, h: 8, w: 4, o: 13, Conv2DAttributes(kernel: (1, 1), activation: .relu6), threads: 1,
                  residual: true, &rng)
        try check(n: 3, c: 20, h: 7, w: 7, o: 30, Conv2DAttributes(kernel: (1, 1), activation: .relu), residual: true, &rng)
        try check(n: 3, c: 12, h: 7, w: 7, o: 9, Conv2DAttributes(kernel: (1, 1), activation: .silu), bias: false,
                  residual: true, &rng)
        try check(n: 2, c: 8, h: 13, w: 10, o: 11, Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1)),
                  residual: true, &rng)
        try check(n: 1, c: 6, h: 8, w: 8, o: 7, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), activation: .relu),
                  residual: true, &rng)
        try check(n: 1, c: 16, h: 16, w: 16, o: 18, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), activation: .relu),
                  residual: true, &rng)
        try check(n: 2, c: 10, h: 9, w: 9, o: 10, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 10,
                                                                  activation: .relu6), residual: true, &rng)
    }

    func testGeneralConvolutions() throws {
        var rng = makeTestRNG()
        try check(n: 1, c: 3, h: 9, w: 11, o: 5, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1)), &rng)
        try check(n: 2, c: 4, h: 13, w: 10, o: 7, Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1)), &rng)
        try check(n: 1, c: 5, h: 12, w: 15, o: 13, Conv2DAttributes(
            kernel: (3, 2), stride: (1, 2), padding: Padding2D(top: 2, left: 0, bottom: 1, right: 3),
            dilation: (2, 1), activation: .relu), &rng)
        try check(n: 1, c: 3, h: 17, w: 19, o: 8, Conv2DAttributes(kernel: (7, 7), stride: (2, 2), padding: Padding2D(3)), &rng)
        try check(n: 2, c: 6, h: 8, w: 9, o: 33, Conv2DAttributes(kernel: (5, 3), padding: Padding2D(2, 1), activation: .relu6),
                  constantWeights: false, threads: 1, &rng)
        // Channels and pixels past the GEMM's KC and NR blocks.
        try check(n: 1, c: 40, h: 11, w: 7, o: 14, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), activation: .silu), &rng)
        // Several images whose column matrices are packed side by side (depth past KC, a panel
        // crossing from one image into the next).
        try check(n: 3, c: 31, h: 14, w: 14, o: 20, Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1),
                                                                    activation: .relu), &rng)
        try check(n: 5, c: 6, h: 9, w: 8, o: 9, Conv2DAttributes(kernel: (3, 2), stride: (2, 1), padding: Padding2D(top: 1, left: 0, bottom: 0, right: 1),
                                                                 dilation: (1, 2)), constantWeights: false, threads: 1, &rng)
        // Output rows longer than two 16-lane steps of the im2col row copy (stride 2 and 1, the
        // last step partial), padding on both ends of each row.
        try check(n: 2, c: 5, h: 9, w: 70, o: 13, Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1)), &rng)
        try check(n: 1, c: 3, h: 6, w: 37, o: 7, Conv2DAttributes(kernel: (3, 3), stride: (1, 3), padding: Padding2D(2),
                                                                  dilation: (1, 2)), threads: 1, &rng)
    }

    func testPointwiseConvolutions() throws {
        var rng = makeTestRNG()
        try check(n: 1, c: 7, h: 6, w: 9, o: 13, Conv2DAttributes(kernel: (1, 1)), &rng)
        try check(n: 3, c: 16, h: 5, w: 5, o: 25, Conv2DAttributes(kernel: (1, 1), activation: .relu), bias: false, &rng)
        try check(n: 2, c: 300, h: 3, w: 4, o: 5, Conv2DAttributes(kernel: (1, 1)), constantWeights: false, &rng)
        // Batches split whole images over the threads (even split, or a batch of at least 4 per thread).
        try check(n: 4, c: 24, h: 7, w: 7, o: 40, Conv2DAttributes(kernel: (1, 1), activation: .relu6), &rng)
        try check(n: 9, c: 17, h: 5, w: 3, o: 6, Conv2DAttributes(kernel: (1, 1)), constantWeights: false, &rng)
        try check(n: 2, c: 6, h: 9, w: 9, o: 8, Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1),
                                                                 groups: 2, activation: .relu), &rng)
        // Several small planes (not a whole number of 32-column panels), each image its own GEMM
        // with a partial last panel read in place.
        try check(n: 3, c: 40, h: 14, w: 14, o: 29, Conv2DAttributes(kernel: (1, 1), activation: .relu), threads: 1, &rng)
        try check(n: 2, c: 33, h: 8, w: 8, o: 14, Conv2DAttributes(kernel: (1, 1)), &rng)
        // Strided 1x1 (ResNet downsampling) goes through the im2col packing.
        try check(n: 2, c: 8, h: 9, w: 7, o: 12, Conv2DAttributes(kernel: (1, 1), stride: (2, 2)), &rng)
    }

    /// 1x1 convolutions on planes of at most 64 pixels, pixel-major (every image's pixels as
    /// rows, the output transposed back into planes): 7x7 with MobileNet's channel counts (five
    /// column panels split by pixels, ten by channels, more than 256 channels in blocks, 12-row
    /// panels and 16-pixel blocks across image boundaries), a 1x1 plane, random planes, depths
    /// and batches, a residual with a clamp and with another activation after it, with and
    /// without bias, one and two threads.
    func testPointwiseOnSmallPlanesPixelMajor() throws {
        var rng = makeTestRNG()
        try check(n: 1, c: 960, h: 7, w: 7, o: 160, Conv2DAttributes(kernel: (1, 1)), residual: true, &rng)
        try check(n: 1, c: 320, h: 7, w: 7, o: 1280, Conv2DAttributes(kernel: (1, 1), activation: .relu6), &rng)
        try check(n: 4, c: 96, h: 7, w: 7, o: 320, Conv2DAttributes(kernel: (1, 1), activation: .relu6), threads: 1,
                  residual: true, &rng)
        try check(n: 6, c: 40, h: 7, w: 7, o: 48, Conv2DAttributes(kernel: (1, 1)), &rng)
        try check(n: 1, c: 5, h: 1, w: 1, o: 16, Conv2DAttributes(kernel: (1, 1)), bias: false, threads: 1, &rng)
        let activations: [Activation?] = [nil, .relu, .relu6, .silu]
        for _ in 0..<12 {
            let h = Int.random(in: 1...8, using: &rng), w = Int.random(in: 1...8, using: &rng)
            if h * w % 32 == 0 { continue }
            try check(n: Int.random(in: 1...5, using: &rng), c: Int.random(in: 1...300, using: &rng), h: h, w: w,
                      o: 16 * Int.random(in: 1...20, using: &rng),
                      Conv2DAttributes(kernel: (1, 1), activation: activations.randomElement(using: &rng)!),
                      bias: Bool.random(using: &rng), threads: Int.random(in: 1...2, using: &rng),
                      residual: Bool.random(using: &rng), &rng)
        }
    }

    func testGroupedAndDepthwiseConvolutions() throws {
        var rng = makeTestRNG()
        try check(n: 2, c: 6, h: 7, w: 8, o: 9, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 3), &rng)
        try check(n: 1, c: 8, h: 10, w: 6, o: 16, Conv2DAttributes(kernel: (1, 1), groups: 4, activation: .relu), &rng)
        // Depthwise 3x3, stride 1 and 2, rows wide enough for the SIMD path.
        try check(n: 2, c: 5, h: 9, w: 37, o: 5, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 5,
                                                                  activation: .relu6), &rng)
        try check(n: 1, c: 4, h: 12, w: 21, o: 4, Conv2DAttributes(kernel: (3, 3), stride: (2, 2),
                                                                   padding: Padding2D(top: 0, left: 1, bottom: 1, right: 1), groups: 4), &rng)
        try check(n: 1, c: 3, h: 11, w: 20, o: 3, Conv2DAttributes(kernel: (5, 5), padding: Padding2D(4), dilation: (2, 2),
                                                                   groups: 3), bias: false, constantWeights: false, &rng)
        // Channel multiplier 2: one input channel per group but two outputs, through the GEMM.
        try check(n: 1, c: 3, h: 6, w: 7, o: 6, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 3), &rng)
    }

    /// Depthwise shapes of MobileNet-style networks (7x7, 14x14 planes, shorter than a vector) and
    /// random odd ones, stride 1 and 2, symmetric and lopsided padding, fused and unfused activations.
    func testDepthwiseOnSmallAndOddPlanes() throws {
        var rng = makeTestRNG()
        try check(n: 2, c: 5, h: 7, w: 7, o: 5, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 5,
                                                                 activation: .relu6), &rng)
        try check(n: 3, c: 4, h: 14, w: 14, o: 4, Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1),
                                                                   groups: 4, activation: .relu6), &rng)
        try check(n: 1, c: 3, h: 14, w: 14, o: 3, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 3),
                  bias: false, threads: 1, &rng)
        let activations: [Activation?] = [nil, .relu, .relu6, .silu]
        for _ in 0..<10 {
            let stride = Int.random(in: 1...2, using: &rng), kernel = [1, 3, 3, 5].randomElement(using: &rng)!
            let dilation = Int.random(in: 1...2, using: &rng)
            let h = Int.random(in: 1...19, using: &rng), w = Int.random(in: 1...23, using: &rng)
            let pad = Padding2D(top: Int.random(in: 0...2, using: &rng), left: Int.random(in: 0...2, using: &rng),
                                bottom: Int.random(in: 0...2, using: &rng), right: Int.random(in: 0...2, using: &rng))
            // Skip shapes whose window does not fit the padded input.
            let span = dilation * (kernel - 1) + 1
            if h + pad.top + pad.bottom < span || w + pad.left + pad.right < span { continue }
            let c = Int.random(in: 1...6, using: &rng)
            try check(n: Int.random(in: 1...3, using: &rng), c: c, h: h, w: w, o: c,
                      Conv2DAttributes(kernel: (kernel, kernel), stride: (stride, stride), padding: pad,
                                       dilation: (dilation, dilation), groups: c,
                                       activation: activations.randomElement(using: &rng)!),
                      bias: Bool.random(using: &rng), constantWeights: Bool.random(using: &rng),
                      threads: Int.random(in: 1...2, using: &rng), &rng)
        }
    }

    /// The sixteen-channel kernel for small planes: channels in sixteens (with batch 1 to 3 and
    /// one or two threads, blocks split across images), planes from 1x1 to 32x32 (pixel counts
    /// that are and are not multiples of 16, input pixels a stride-2 window never reads), stride
    /// 1 and 2, every padding from 0 to 2 on each side, fused and unfused activations.
    func testDepthwiseSixteenChannelsAtATime() throws {
        var rng = makeTestRNG()
        try check(n: 2, c: 32, h: 7, w: 7, o: 32, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 32,
                                                                   activation: .relu6), &rng)
        try check(n: 1, c: 48, h: 14, w: 14, o: 48, Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1),
                                                                     groups: 48, activation: .relu6), &rng)
        try check(n: 3, c: 16, h: 1, w: 1, o: 16, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 16),
                  bias: false, threads: 1, &rng)
        for _ in 0..<14 {
            try checkRandomDepthwise3x3(channels: 16 * Int.random(in: 1...3, using: &rng), h: Int.random(in: 1...32, using: &rng),
                                        w: Int.random(in: 1...32, using: &rng), randomConstantWeights: true, &rng)
        }
    }

    /// A depthwise 3x3 case of random stride (1 or 2), padding (0 to 2 on each side; a shape the
    /// window does not fit is skipped), batch (1 to 3), activation, bias and thread count, with
    /// constant weights or, if `randomConstantWeights`, either.
    func checkRandomDepthwise3x3(channels c: Int, h: Int, w: Int, randomConstantWeights: Bool,
                                 _ rng: inout SeededGenerator, file: StaticString = #filePath, line: UInt = #line) throws {
        let activations: [Activation?] = [nil, .relu, .relu6, .silu]
        let stride = Int.random(in: 1...2, using: &rng)
        let pad = Padding2D(top: Int.random(in: 0...2, using: &rng), left: Int.random(in: 0...2, using: &rng),
                            bottom: Int.random(in: 0...2, using: &rng), right: Int.random(in: 0...2, using: &rng))
        if h + pad.top + pad.bottom < 3 || w + pad.left + pad.right < 3 { return }
        try check(n: Int.random(in: 1...3, using: &rng), c: c, h: h, w: w, o: c,
                  Conv2DAttributes(kernel: (3, 3), stride: (stride, stride), padding: pad, groups: c,
                                   activation: activations.randomElement(using: &rng)!),
                  bias: Bool.random(using: &rng), constantWeights: randomConstantWeights ? Bool.random(using: &rng) : true,
                  threads: Int.random(in: 1...2, using: &rng), &rng, file: file, line: line)
    }

    /// The direct 3x3 depthwise kernel: enough planes that most are read in place (the few at
    /// the tensor's ends are copied first), rows of one to three vectors, stride 1 and 2, every
    /// padding from 0 to 2 on each side.
    func testDepthwise3x3ReadInPlaceAndCopied() throws {
        var rng = makeTestRNG()
        for _ in 0..<12 {
            try checkRandomDepthwise3x3(channels: Int.random(in: 8...40, using: &rng), h: Int.random(in: 2...30, using: &rng),
                                        w: Int.random(in: 2...40, using: &rng), randomConstantWeights: false, &rng)
        }
        // Full 16-column vectors at stride 2 without the one-column left padding (each vector's
        // last lane reads 32 columns on), at every padding but 1.
        for left in [0, 2] {
            for width in [34, 47, 66] {
                try check(n: 1, c: 5, h: 7, w: width, o: 5,
                          Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(top: 1, left: left, bottom: 0, right: left),
                                           groups: 5), &rng)
            }
        }
    }

    /// Stems (few input channels, `FewChannelConv`): random kernel sizes to 7, strides 1 and 2,
    /// asymmetric padding, rows of one to several vectors with a partial last one, batches of
    /// one to three on one or two threads (whole images per thread, or an image's rows split),
    /// clamps fused and other activations after, constant and run-time weights.
    func testFewInputChannelConvolutions() throws {
        var rng = makeTestRNG()
        let activations: [Activation?] = [nil, .relu, .relu6, .leakyRelu(alpha: 0.1), .silu]
        var cases = 0
        while cases < 14 {
            let kh = [1, 3, 3, 5, 7].randomElement(using: &rng)!, kw = [1, 3, 3, 5, 7].randomElement(using: &rng)!
            let stride = Int.random(in: 1...2, using: &rng)
            let pad = Padding2D(top: Int.random(in: 0...kh / 2 + 1, using: &rng), left: Int.random(in: 0...kw / 2 + 1, using: &rng),
                                bottom: Int.random(in: 0...kh / 2, using: &rng), right: Int.random(in: 0...kw / 2, using: &rng))
            let h = Int.random(in: kh...24, using: &rng), w = Int.random(in: (16 * stride + kw)...(70 * stride), using: &rng)
            let c = Int.random(in: 1...4, using: &rng), o = 8 * Int.random(in: 1...4, using: &rng)
            let a = Conv2DAttributes(kernel: (kh, kw), stride: (stride, stride), padding: pad,
                                     activation: activations.randomElement(using: &rng)!)
            let out = try inferOutputShapes(.conv2d(a), [[1, c, h, w], [o, c, kh, kw]])[0]
            let query = ConvolutionQuery(a, input: [1, c, h, w], weight: [o, c, kh, kw], output: out, constantWeights: true, residual: false)
            guard KernelChoice.convolution(query, device: CPUKernels.capabilities(threads: CPUThreads(count: 1))).name
                    == "cpu.conv2d.few_channels_direct" else { continue }
            try check(n: Int.random(in: 1...3, using: &rng), c: c, h: h, w: w, o: o, a, bias: Bool.random(using: &rng),
                      constantWeights: Bool.random(using: &rng), threads: Int.random(in: 1...2, using: &rng), &rng)
            cases += 1
        }
    }

    /// The flattened-plane kernel (stride 1, output as large as the input, up to 32 wide): every
    /// kernel size up to 7 in each direction with every split of its "same" padding, planes from
    /// 1x1 to 32 wide (a vector count that is and is not a multiple of four), one and two threads
    /// (a thread's last plane is stored partially, the others spill into the next plane).
    func testDepthwiseFlattenedPlanes() throws {
        var rng = makeTestRNG()
        try check(n: 2, c: 37, h: 7, w: 7, o: 37, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 37,
                                                                   activation: .relu6), &rng)
        try check(n: 1, c: 9, h: 14, w: 14, o: 9, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 9),
                  bias: false, threads: 1, &rng)
        try check(n: 1, c: 5, h: 1, w: 1, o: 5, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 5), &rng)
        let activations: [Activation?] = [nil, .relu, .relu6, .silu]
        for _ in 0..<14 {
            let kh = [1, 3, 3, 5, 7].randomElement(using: &rng)!, kw = [1, 3, 3, 5, 7].randomElement(using: &rng)!
            let top = Int.random(in: 0..<kh, using: &rng), left = Int.random(in: 0..<kw, using: &rng)
            let pad = Padding2D(top: top, left: left, bottom: kh - 1 - top, right: kw - 1 - left)
            let h = Int.random(in: 1...20, using: &rng), w = Int.random(in: 1...32, using: &rng)
            let c = Int.random(in: 1...40, using: &rng)
            try check(n: Int.random(in: 1...3, using: &rng), c: c, h: h, w: w, o: c,
                      Conv2DAttributes(kernel: (kh, kw), padding: pad, groups: c,
                                       activation: activations.randomElement(using: &rng)!),
                      bias: Bool.random(using: &rng), constantWeights: Bool.random(using: &rng),
                      threads: Int.random(in: 1...2, using: &rng), &rng)
        }
    }

    func referenceConvTranspose(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, _ a: ConvTranspose2DAttributes,
                                outShape: [Int]) -> [Double] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, oh, ow) = (outShape[1], outShape[2], outShape[3])
        let cg = c / a.groups, og = o / a.groups
        var out = [Double](repeating: 0, count: n * o * oh * ow)
        for b in 0..<n {
            for oc in 0..<o {
                let initial: Double = bias.map { Double($0[flat: oc]) } ?? 0
                let base = (b * o + oc) * oh * ow
                for p in 0..<(oh * ow) { out[base + p] = initial }
            }
            for ci in 0..<c {
                let g = ci / cg
                for iy in 0..<h {
                    for ix in 0..<wd {
                        let xv = Double(x[flat: ((b * c + ci) * h + iy) * wd + ix])
                        for o2 in 0..<og {
                            for ky in 0..<a.kernelH {
                                for kx in 0..<a.kernelW {
                                    let oy = iy * a.strideH - a.padding.top + ky * a.dilationH
                                    let ox = ix * a.strideW - a.padding.left + kx * a.dilationW
                                    if oy < 0 || oy >= oh || ox < 0 || ox >= ow { continue }
                                    let wi: Int = ((ci * og + o2) * a.kernelH + ky) * a.kernelW + kx
                                    let oi: Int = ((b * o + g * og + o2) * oh + oy) * ow + ox
                                    out[oi] += xv * Double(w[flat: wi])
                                }
                            }
                        }
                    }
                }
            }
        }
        if let act = a.activation { out = out.map { referenceActivation(act, $0) } }
        return out
    }

    func testTransposedConvolutions() throws {
        var rng = makeTestRNG()
        let cases: [(Int, Int, Int, Int, Int, ConvTranspose2DAttributes, Bool)] = [
            (1, 4, 5, 6, 3, ConvTranspose2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1),
                                                      outputPadding: (1, 1)), true),
            (2, 6, 4, 3, 4, ConvTranspose2DAttributes(kernel: (4, 4), stride: (2, 2), padding: Padding2D(1), groups: 2,
                                                      activation: .relu), true),
            (1, 3, 7, 5, 5, ConvTranspose2DAttributes(kernel: (2, 3), stride: (1, 3),
                                                      padding: Padding2D(top: 0, left: 2, bottom: 1, right: 0),
                                                      dilation: (2, 1)), false),
            (2, 2, 3, 3, 2, ConvTranspose2DAttributes(kernel: (1, 1)), true),
        ]
        for (n, c, h, w, og, a, constant) in cases {
            let x = randomTensor([n, c, h, w], &rng)
            let wt = randomTensor([c, og, a.kernelH, a.kernelW], &rng)
            let b = randomTensor([og * a.groups], &rng)
            let outs = try runCPUNode(.convTranspose2d(a), [x, wt, b], constantIndices: constant ? [1, 2] : [], threads: 2)
            assertClose(outs[0], referenceConvTranspose(x, wt, b, a, outShape: outs[0].shape), rtol: 1e-4, atol: 1e-4,
                        "conv transpose \(a)")
        }
    }
}
