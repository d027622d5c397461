// Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions (A. Lavin, S. Gray, "Fast Algorithms for
// Convolutional Neural Networks", CVPR 2016).
//
// Each 4x4 block of output pixels ("tile") is computed from a 6x6 input patch as
// Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A: 36 multiplies per tile and channel pair instead of 144, so the
// GEMM part does 4x fewer flops than im2col. The 36 element-wise products summed over input
// channels are 36 independent GEMMs M_xi[O, tiles] = U_xi[O, C] x V_xi[C, tiles]; U (the transformed
// weights) is packed once at compile time into the GEMM's A layout, V is written by the input
// transform straight into the packed B layout (no packing copy), and the output transform reads M.
//
// Tiles of every image of the batch form one tile axis, cut into blocks of TB tiles (a multiple of
// the GEMM's NR) small enough that V and M of a block stay in L2/L3; each thread takes whole
// blocks with single-threaded GEMMs, so threads never wait on each other and batch > 1 splits
// naturally. Transforms run on 16 tiles at a time in SIMD16 lanes.
//
// Accuracy: the transforms' constants (up to 8 and 1/24) cost a few bits; the tests bound the error
// against the float64 direct convolution by a multiple of the fp32 rounding of sum |w| |x|.

import Foundation
import CQuarryKernels
import Quarry

/// The transformed weights of a 3x3 convolution, one packed [O, C] matrix per element xi of the
/// 6x6 transform domain.
final class WinogradWeights {
    let u: [PackedMatrix]
    init(weights: UnsafePointer<Float>, outChannels: Int, channels: Int) {
        // G g G^T in Double, element (i, j) of the 6x6 result to matrix xi = i * 6 + j.
        let gm: [[Double]] = [
            [1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
            [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1],
        ]
        let oc = outChannels * channels
        let buffer = allocateFloats(36 * oc)
        defer { buffer.deallocate() }
        for o in 0..<outChannels {
            for c in 0..<channels {
                let g = weights + (o * channels + c) * 9
                var t = [Double](repeating: 0, count: 18)  // G g: 6 x 3
                for i in 0..<6 { for j in 0..<3 { t[i * 3 + j] = (0..<3).reduce(0.0) { $0 + gm[i][$1] * Double(g[$1 * 3 + j]) } } }
                for i in 0..<6 {
                    for j in 0..<6 {
                        let v = (0..<3).reduce(0.0) { $0 + t[i * 3 + $1] * gm[j][$1] }
                        buffer[(i * 6 + j) * oc + o * channels + c] = Float(v)
                    }
                }
            }
        }
        u = (0..<36).map { PackedMatrix(a: buffer + $0 * oc, m: outChannels, k: channels, lda: channels) }
    }
}

/// A B operand already in the packed panel layout of `PackedMatrix` (side B) with `paddedN` columns.
struct PrepackedPanelsB: GEMMSourceB {
    let base: UnsafePointer<Float>
    let paddedN: Int
    var isPrepacked: Bool { true }
    @inline(__always)
    func blockB(k0: Int, kc: Int, j0: Int, cols: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        base + k0 * paddedN + j0 * kc
    }
}

extension CPUKernels {
    static func makeWinogradConv2D(geometry g: ConvGeometry, batch: Int, outChannels: Int, weights: WinogradWeights,
                                   hasBias: Bool, activation: Activation?, threads: CPUThreads) -> CPUKernel {
        let channels = g.channels, nr = GEMMBlocking.nr
        let tilesY = (g.outHeight + 3) / 4, tilesX = (g.outWidth + 3) / 4
        let tilesPerImage = tilesY * tilesX, tiles = batch * tilesPerImage
        // About 1 MiB of V or M per block, but at least one block per thread.
        let preferred = max(nr, min(256, (1 << 18) / (36 * max(channels, outChannels)) / nr * nr))
        let perThread = ((tiles + threads.count - 1) / threads.count + nr - 1) / nr * nr
        let tb = max(nr, min(preferred, perThread))
        let blocks = (tiles + tb - 1) / tb
        // Threads take whole blocks. With fewer blocks than threads (a small image at batch 1),
        // the blocks run one after the other and the threads split each: the transforms by
        // channels, the 36 products between them. Splitting each product instead (M = channels,
        // N = one panel of tiles) ran slower on two threads than on one.
        let parts = blocks >= threads.count ? threads.count : 1
        let one = CPUThreads(count: 1)
        let vFloats = 36 * channels * tb, mFloats = 36 * outChannels * tb
        let geometry = quarry_winograd_geometry(
            channels: channels, height: g.height, width: g.width, pad_top: g.padTop, pad_left: g.padLeft,
            out_height: g.outHeight, out_width: g.outWidth, tiles_x: tilesX, tiles_per_image: tilesPerImage, tb: tb,
            kc: GEMMBlocking.kc, nr: nr)
        let clamp = FusedClamp(activation)
        // An activation other than a clamp runs over the whole output once the transforms have
        // written it (each pixel is written once, by one tile).
        let after = clamp == nil ? activation : nil
        let outCount = batch * outChannels * g.outHeight * g.outWidth

        return { inputs, outputs in
            let x = inputs[0]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            func input(_ t0: Int, _ count: Int, _ channels: Range<Int>, _ v: UnsafeMutablePointer<Float>) {
                withUnsafePointer(to: geometry) { quarry_winograd_input(x, $0, t0, count, channels.lowerBound, channels.upperBound, v) }
            }
            func output(_ m: UnsafePointer<Float>, _ t0: Int, _ count: Int, _ channels: Range<Int>) {
                withUnsafePointer(to: geometry) {
                    quarry_winograd_output(m, y, $0, outChannels, t0, count, channels.lowerBound, channels.upperBound,
                                       bias, clamp == nil ? 0 : 1, clamp?.lo ?? 0, clamp?.hi ?? 0)
                }
            }
            func product(_ xi: Int, _ count: Int, _ v: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>) {
                gemmDriver(m: outChannels, n: count, k: channels, a: weights.u[xi],
                           b: PrepackedPanelsB(base: UnsafePointer(v + xi * channels * tb), paddedN: tb),
                           c: m + xi * outChannels * tb, ldc: tb, epilogue: .none, threads: one)
            }
            // V and M in the scratch of the thread that transforms into them (warm from the
            // layer before); with one part the calling thread's, shared by the team.
            if parts == 1 && threads.count > 1 {
                ThreadBuffers.current.withScratch(vFloats + mFloats) { base in
                    let v = base, m = v + vFloats
                    for block in 0..<blocks {
                        let t0 = block * tb, count = min(tb, tiles - t0)
                        threads.parallelRanges(channels) { cs in input(t0, count, cs, v) }
                        let workers = threads.count
                        threads.parallelFor(workers) { w in
                            for xi in (36 * w / workers)..<(36 * (w + 1) / workers) { product(xi, count, v, m) }
                        }
                        threads.parallelRanges(outChannels) { os in output(m, t0, count, os) }
                    }
                }
            } else {
                threads.parallelFor(parts) { part in
                    ThreadBuffers.current.withScratch(vFloats + mFloats) { base in
                        let v = base, m = v + vFloats
                        for block in (blocks * part / parts)..<(blocks * (part + 1) / parts) {
                            let t0 = block * tb, count = min(tb, tiles - t0)
                            input(t0, count, 0..<channels, v)
                            for xi in 0..<36 { product(xi, count, v, m) }
                            output(m, t0, count, 0..<outChannels)
                        }
                    }
                }
            }
            if let after {
                threads.parallelRanges(outCount) { r in applyActivation(after, y + r.lowerBound, count: r.count) }
            }
        }
    }
}
