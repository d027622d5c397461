import Foundation
import Quarry
@testable import QuarryCPU
import XCTest

/// The Winograd F(4x4, 3x3) path of 3x3 stride-1 convolutions against the float64 direct
/// convolution. Its error is bounded relative to sum |w| |x| + |b| of each output (the scale fp32
/// rounding works at), not to the output itself, which can cancel to near zero.
final class WinogradTests: XCTestCase {
    /// Bound on |quarry - exact| / (sum |w x| + |b|). fp32 im2col stays near 1e-7; F(4,3)'s
    /// transforms (constants up to 8 and 1/24) lose a few more bits: the worst seen was 1.7e-6, so
    /// 1e-5 leaves a margin of about 6x while still catching any wrong tap (an error of order 1).
    let bound = 1e-5

    func check(n: Int, c: Int, h: Int, w: Int, o: Int, padding: Padding2D, activation: Activation? = nil,
               bias: Bool = true, threads: Int, _ rng: inout SeededGenerator,
               file: StaticString = #filePath, line: UInt = #line) throws {
        // Under every instruction-set level the host has: the transforms and the GEMM run in
        // CQuarryKernels' variant of the level in force (vectors of 16, 8 or 4 tiles).
        try CPUInstructionSet.forEachAvailable { level in
            try checkOnce(n: n, c: c, h: h, w: w, o: o, padding: padding, activation: activation, bias: bias,
                          threads: threads, level: level, &rng, file: file, line: line)
        }
    }

    func checkOnce(n: Int, c: Int, h: Int, w: Int, o: Int, padding: Padding2D, activation: Activation?, bias: Bool,
                   threads: Int, level: CPUInstructionSet, _ rng: inout SeededGenerator,
                   file: StaticString, line: UInt) throws {
        let a = Conv2DAttributes(kernel: (3, 3), padding: padding, activation: activation)
        let x = randomTensor([n, c, h, w], &rng)
        let wt = randomTensor([o, c, 3, 3], &rng)
        let b = bias ? randomTensor([o], &rng) : nil
        let oh = h + padding.top + padding.bottom - 2, ow = w + padding.left + padding.right - 2
        XCTAssertTrue(usesWinograd(a, channels: c, outChannels: o, batch: n, outHeight: oh, outWidth: ow,
                                              constantWeights: true, threads: threads),
                      "case does not exercise the Winograd path", file: file, line: line)
        let out = try runCPUNode(.conv2d(a), [x, wt, b], constantIndices: [1, 2], threads: threads)[0]
        XCTAssertEqual(out.shape, [n, o, oh, ow], file: file, line: line)

        var worst = 0.0
        for bi in 0..<n {
            for oc in 0..<o {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var s = b.map { Double($0[flat: oc]) } ?? 0
                        var scale = abs(s)
                        for ci in 0..<c {
                            for ky in 0..<3 {
                                let iy = oy - padding.top + ky
                                if iy < 0 || iy >= h { continue }
                                for kx in 0..<3 {
                                    let ix = ox - padding.left + kx
                                    if ix < 0 || ix >= w { continue }
                                    let p = Double(x[flat: ((bi * c + ci) * h + iy) * w + ix]) * Double(wt[flat: ((oc * c + ci) * 3 + ky) * 3 + kx])
                                    s += p; scale += abs(p)
                                }
                            }
                        }
                        if let act = activation { s = referenceActivation(act, s) }
                        let got = Double(out[flat: ((bi * o + oc) * oh + oy) * ow + ox])
                        guard got.isFinite else {
                            XCTFail("output (\(bi), \(oc), \(oy), \(ox)) is \(got) (unwritten?)", file: file, line: line)
                            return
                        }
                        worst = max(worst, abs(got - s) / scale)
                    }
                }
            }
        }
        print("winograd \(level) n\(n) c\(c) \(h)x\(w) o\(o): worst error / scale = \(worst)")
        XCTAssertLessThanOrEqual(worst, bound, "\(level) n\(n) c\(c) \(h)x\(w) o\(o) pad \(padding) threads \(threads)",
                                 file: file, line: line)
    }

    func testOddSizesAndEdges() throws {
        var rng = makeTestRNG()
        // Output sizes that are not multiples of 4 (partial tiles at the right and bottom).
        try check(n: 1, c: 16, h: 27, w: 17, o: 17, padding: Padding2D(1), activation: .relu, threads: 2, &rng)
        try check(n: 5, c: 19, h: 13, w: 7, o: 24, padding: Padding2D(1), bias: false, threads: 2, &rng)
        // No padding, and uneven padding.
        try check(n: 1, c: 16, h: 34, w: 18, o: 33, padding: Padding2D(0), activation: .silu, threads: 1, &rng)
        try check(n: 3, c: 17, h: 11, w: 12, o: 16,
                  padding: Padding2D(top: 0, left: 2, bottom: 1, right: 1), activation: .relu6, threads: 2, &rng)
    }

    func testDeepChannelsAndManyTileBlocks() throws {
        var rng = makeTestRNG()
        // Channels past the GEMM's KC block (V is written in two K blocks).
        try check(n: 4, c: 300, h: 12, w: 9, o: 20, padding: Padding2D(1), threads: 2, &rng)
        // One block of tiles for two threads: they split the transforms by channels and the 36
        // products between them (channels past KC, an odd count of output channels).
        try check(n: 1, c: 270, h: 14, w: 14, o: 23, padding: Padding2D(1), activation: .relu, threads: 2, &rng)
        try check(n: 1, c: 16, h: 13, w: 15, o: 17, padding: Padding2D(1), threads: 2, &rng)
        // Many tiles: several blocks per thread, blocks crossing images.
        try check(n: 5, c: 16, h: 30, w: 29, o: 18, padding: Padding2D(1), activation: .relu, threads: 2, &rng)
    }

    func testSmallCasesStayOnIm2col() {
        let a = Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1))
        // 7x7 output at batch 1 and 2: 4 and 8 tiles would mostly multiply padding. 16 tiles (7x7
        // at batch 4, 14x14 at batch 1) is where Winograd starts to win.
        XCTAssertFalse(usesWinograd(a, channels: 512, outChannels: 512, batch: 1, outHeight: 7, outWidth: 7,
                                               constantWeights: true, threads: 2))
        XCTAssertFalse(usesWinograd(a, channels: 512, outChannels: 512, batch: 2, outHeight: 7, outWidth: 7,
                                               constantWeights: true, threads: 2))
        XCTAssertTrue(usesWinograd(a, channels: 512, outChannels: 512, batch: 4, outHeight: 7, outWidth: 7,
                                              constantWeights: true, threads: 2))
        XCTAssertTrue(usesWinograd(a, channels: 256, outChannels: 256, batch: 1, outHeight: 14, outWidth: 14,
                                              constantWeights: true, threads: 2))
        XCTAssertFalse(usesWinograd(Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1)),
                                               channels: 64, outChannels: 64, batch: 1, outHeight: 28, outWidth: 28,
                                               constantWeights: true, threads: 2))
        XCTAssertFalse(usesWinograd(a, channels: 64, outChannels: 64, batch: 1, outHeight: 56, outWidth: 56,
                                               constantWeights: false, threads: 2))
    }
}

/// Whether the CPU's kernel choice takes Winograd for this layer (the input's size does not enter).
private func usesWinograd(_ a: Conv2DAttributes, channels: Int, outChannels: Int, batch: Int, outHeight: Int, outWidth: Int,
                          constantWeights: Bool, threads: Int) -> Bool {
    let q = ConvolutionQuery(a, input: [batch, channels, outHeight, outWidth], weight: [outChannels, channels, 3, 3],
                             output: [batch, outChannels, outHeight, outWidth], constantWeights: constantWeights, residual: false)
    return KernelChoice.convolution(q, device: CPUKernels.capabilities(threads: CPUThreads(count: threads))).name
        == "cpu.conv2d.winograd_f4x3"
}
