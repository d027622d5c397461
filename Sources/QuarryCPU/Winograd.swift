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

/// B^T x for a 6-vector (the input transform along one axis).
@inline(__always)
private func inputRows(_ d0: SIMD16<Float>, _ d1: SIMD16<Float>, _ d2: SIMD16<Float>, _ d3: SIMD16<Float>,
                       _ d4: SIMD16<Float>, _ d5: SIMD16<Float>)
    -> (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>) {
    let four: SIMD16<Float> = .init(repeating: 4), five: SIMD16<Float> = .init(repeating: 5)
    let t12 = d4 - four * d2, t34 = d3 - four * d1           // shared terms of rows 1 and 2
    let t56 = d4 - d2, t78 = d3 - d1                          // rows 3 and 4: d4 - d2 ± 2 (d3 - d1)
    return (
        d4 - five * d2 + four * d0,
        t12 + t34,
        t12 - t34,
        t56 + t78 + t78,
        t56 - t78 - t78,
        d5 - five * d3 + four * d1
    )
}

/// A^T m for a 6-vector (the output transform along one axis).
@inline(__always)
private func outputRows(_ m0: SIMD16<Float>, _ m1: SIMD16<Float>, _ m2: SIMD16<Float>, _ m3: SIMD16<Float>,
                        _ m4: SIMD16<Float>, _ m5: SIMD16<Float>)
    -> (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>) {
    let s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4
    let two: SIMD16<Float> = .init(repeating: 2), four: SIMD16<Float> = .init(repeating: 4)
    let eight: SIMD16<Float> = .init(repeating: 8)
    return (m0 + s12 + s34, d12 + two * d34, s12 + four * s34, d12 + eight * d34 + m5)
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
        let inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        let clamp = FusedClamp(activation)

        return { inputs, outputs in
            let x = inputs[0]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            // V and M in the scratch of the thread that transforms into them (warm from the
            // layer before); with one part the calling thread's, shared by the team.
            if parts == 1 && threads.count > 1 {
                ThreadBuffers.current.withScratch(vFloats + mFloats) { base in
                    let v = base, m = v + vFloats
                    for block in 0..<blocks {
                        let t0 = block * tb, count = min(tb, tiles - t0)
                        threads.parallelRanges(channels) { cs in
                            winogradInput(x, g: g, tilesX: tilesX, tilesPerImage: tilesPerImage, inPlane: inPlane,
                                          t0: t0, count: count, tb: tb, v: v, channelRange: cs)
                        }
                        let workers = threads.count
                        threads.parallelFor(workers) { w in
                            for xi in (36 * w / workers)..<(36 * (w + 1) / workers) {
                                gemmDriver(m: outChannels, n: count, k: channels, a: weights.u[xi],
                                           b: PrepackedPanelsB(base: UnsafePointer(v + xi * channels * tb), paddedN: tb),
                                           c: m + xi * outChannels * tb, ldc: tb, epilogue: .none, threads: one)
                            }
                        }
                        threads.parallelRanges(outChannels) { os in
                            winogradOutput(m, y, g: g, outChannels: outChannels, tilesX: tilesX, tilesPerImage: tilesPerImage,
                                           outPlane: outPlane, t0: t0, count: count, tb: tb, bias: bias,
                                           clamp: clamp, activation: clamp == nil ? activation : nil, channelRange: os)
                        }
                    }
                }
                return
            }
            threads.parallelFor(parts) { part in
                ThreadBuffers.current.withScratch(vFloats + mFloats) { base in
                    let v = base, m = v + vFloats
                    for block in (blocks * part / parts)..<(blocks * (part + 1) / parts) {
                        let t0 = block * tb, count = min(tb, tiles - t0)
                        winogradInput(x, g: g, tilesX: tilesX, tilesPerImage: tilesPerImage, inPlane: inPlane,
                                      t0: t0, count: count, tb: tb, v: v, channelRange: 0..<channels)
                        for xi in 0..<36 {
                            gemmDriver(m: outChannels, n: count, k: channels, a: weights.u[xi],
                                       b: PrepackedPanelsB(base: UnsafePointer(v + xi * channels * tb), paddedN: tb),
                                       c: m + xi * outChannels * tb, ldc: tb, epilogue: .none, threads: one)
                        }
                        winogradOutput(m, y, g: g, outChannels: outChannels, tilesX: tilesX, tilesPerImage: tilesPerImage,
                                       outPlane: outPlane, t0: t0, count: count, tb: tb, bias: bias,
                                       clamp: clamp, activation: clamp == nil ? activation : nil, channelRange: 0..<outChannels)
                    }
                }
            }
        }
    }
}

/// Writes V (36 matrices [C, tb] in packed B panels) for tiles t0..<t0+count.
private func winogradInput(_ x: UnsafePointer<Float>, g: ConvGeometry, tilesX: Int, tilesPerImage: Int, inPlane: Int,
                           t0: Int, count: Int, tb: Int, v: UnsafeMutablePointer<Float>, channelRange: Range<Int>) {
    let channels = g.channels, kc = GEMMBlocking.kc, nr = GEMMBlocking.nr
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 36) { patchBuffer in
        let patch = UnsafeMutableRawPointer(patchBuffer.baseAddress!).assumingMemoryBound(to: Float.self)
        var lane0 = 0
        while lane0 < count {
            let lanes = min(16, count - lane0)
            // Where each lane's 6x6 patch starts in its image, and whether it needs the padding checks.
            var offsets = (SIMD16<Int32>(), SIMD16<Int32>(), SIMD16<Int32>())  // image offset, iy0, ix0
            for l in 0..<lanes {
                let t = t0 + lane0 + l
                let n = t / tilesPerImage, r = t % tilesPerImage
                offsets.0[l] = Int32(n * channels * inPlane)
                offsets.1[l] = Int32((r / tilesX) * 4 - g.padTop)
                offsets.2[l] = Int32((r % tilesX) * 4 - g.padLeft)
            }
            for c in channelRange {
                for l in 0..<16 {
                    let p = patch + l
                    if l >= lanes {
                        for e in 0..<36 { p[e * 16] = 0 }
                        continue
                    }
                    let src = x + Int(offsets.0[l]) + c * inPlane
                    let iy0 = Int(offsets.1[l]), ix0 = Int(offsets.2[l])
                    if iy0 >= 0, ix0 >= 0, iy0 + 6 <= g.height, ix0 + 6 <= g.width {
                        for i in 0..<6 {
                            let row = src + (iy0 + i) * g.width + ix0
                            for j in 0..<6 { p[(i * 6 + j) * 16] = row[j] }
                        }
                    } else {
                        for i in 0..<6 {
                            let iy = iy0 + i
                            let inside = iy >= 0 && iy < g.height
                            for j in 0..<6 {
                                let ix = ix0 + j
                                p[(i * 6 + j) * 16] = inside && ix >= 0 && ix < g.width ? src[iy * g.width + ix] : 0
                            }
                        }
                    }
                }
                let raw = UnsafeMutableRawPointer(patch)
                @inline(__always) func load(_ e: Int) -> SIMD16<Float> { raw.load(fromByteOffset: e * 64, as: SIMD16<Float>.self) }
                @inline(__always) func store(_ e: Int, _ s: SIMD16<Float>) { raw.storeBytes(of: s, toByteOffset: e * 64, as: SIMD16<Float>.self) }
                // Along each row (j), in place.
                for i in 0..<6 {
                    let r = inputRows(load(i * 6), load(i * 6 + 1), load(i * 6 + 2), load(i * 6 + 3), load(i * 6 + 4), load(i * 6 + 5))
                    store(i * 6, r.0); store(i * 6 + 1, r.1); store(i * 6 + 2, r.2)
                    store(i * 6 + 3, r.3); store(i * 6 + 4, r.4); store(i * 6 + 5, r.5)
                }
                // Along each column (i), straight into V's packed panel: element (c, tile) of matrix xi.
                let k0 = c / kc * kc, kcb = min(kc, channels - k0)
                let column = k0 * tb + (lane0 / nr) * nr * kcb + (c - k0) * nr + lane0 % nr
                let matrix = channels * tb
                for j in 0..<6 {
                    let r = inputRows(load(j), load(6 + j), load(12 + j), load(18 + j), load(24 + j), load(30 + j))
                    let d = UnsafeMutableRawPointer(v + column + j * matrix)
                    let step = 6 * matrix * 4
                    d.storeBytes(of: r.0, as: SIMD16<Float>.self)
                    d.storeBytes(of: r.1, toByteOffset: step, as: SIMD16<Float>.self)
                    d.storeBytes(of: r.2, toByteOffset: 2 * step, as: SIMD16<Float>.self)
                    d.storeBytes(of: r.3, toByteOffset: 3 * step, as: SIMD16<Float>.self)
                    d.storeBytes(of: r.4, toByteOffset: 4 * step, as: SIMD16<Float>.self)
                    d.storeBytes(of: r.5, toByteOffset: 5 * step, as: SIMD16<Float>.self)
                }
            }
            lane0 += 16
        }
    }
}

/// Reads M (36 matrices [O, tb], row-major) for tiles t0..<t0+count and writes the output pixels.
private func winogradOutput(_ m: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, g: ConvGeometry, outChannels: Int,
                            tilesX: Int, tilesPerImage: Int, outPlane: Int, t0: Int, count: Int, tb: Int,
                            bias: UnsafePointer<Float>?, clamp: FusedClamp?, activation: Activation?,
                            channelRange: Range<Int>) {
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 36) { buffer in
        let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
        let result = raw.assumingMemoryBound(to: Float.self)
        @inline(__always) func load(_ e: Int) -> SIMD16<Float> { raw.load(fromByteOffset: e * 64, as: SIMD16<Float>.self) }
        @inline(__always) func store(_ e: Int, _ s: SIMD16<Float>) { raw.storeBytes(of: s, toByteOffset: e * 64, as: SIMD16<Float>.self) }
        let matrix = outChannels * tb
        var lane0 = 0
        while lane0 < count {
            let lanes = min(16, count - lane0)
            for o in channelRange {
                let src = UnsafeRawPointer(m + o * tb + lane0)
                // Along each row (j): 6 rows of 6 -> 6 rows of 4, kept in elements i * 4 + s.
                for i in 0..<6 {
                    @inline(__always) func mv(_ j: Int) -> SIMD16<Float> {
                        src.loadUnaligned(fromByteOffset: (i * 6 + j) * matrix * 4, as: SIMD16<Float>.self)
                    }
                    let r = outputRows(mv(0), mv(1), mv(2), mv(3), mv(4), mv(5))
                    store(i * 4, r.0); store(i * 4 + 1, r.1); store(i * 4 + 2, r.2); store(i * 4 + 3, r.3)
                }
                let b = SIMD16<Float>(repeating: bias?[o] ?? 0)
                // Along each column (s): output element (r, s) to slot 24 + r * 4 + s.
                for s in 0..<4 {
                    var r = outputRows(load(s), load(4 + s), load(8 + s), load(12 + s), load(16 + s), load(20 + s))
                    r.0 += b; r.1 += b; r.2 += b; r.3 += b
                    if let clamp {
                        let clip = Clip(clamp)
                        r.0 = clip(r.0); r.1 = clip(r.1); r.2 = clip(r.2); r.3 = clip(r.3)
                    }
                    store(24 + s, r.0); store(28 + s, r.1); store(32 + s, r.2)
                    // Slot 36 does not exist: the fourth output row goes back to slot s (no longer read).
                    store(s, r.3)
                }
                // Output rows 0-2 sit at slots 24 + r * 4 + s, row 3 at slot s.
                if let activation {
                    applyActivation(activation, result + 24 * 16, count: 12 * 16)
                    applyActivation(activation, result, count: 4 * 16)
                }
                for l in 0..<lanes {
                    let t = t0 + lane0 + l
                    let n = t / tilesPerImage, rest = t % tilesPerImage
                    let oy = (rest / tilesX) * 4, ox = (rest % tilesX) * 4
                    let plane = y + (n * outChannels + o) * outPlane
                    let rows = min(4, g.outHeight - oy), cols = min(4, g.outWidth - ox)
                    for r in 0..<rows {
                        let dst = plane + (oy + r) * g.outWidth + ox
                        let slot = r < 3 ? 24 + r * 4 : 0
                        for s in 0..<cols { dst[s] = result[(slot + s) * 16 + l] }
                    }
                }
            }
            lane0 += 16
        }
    }
}
