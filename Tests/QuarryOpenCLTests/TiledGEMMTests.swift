// The tiled GEMM and the implicit-GEMM convolution, which devices with local memory on chip (GPUs)
// get by default, run here on whatever device the tests have, under schedules forced for the test:
// odd tiles (work-groups that are not a multiple of a tile's width, loads that do not divide
// evenly, K steps longer than K), against float64 references, outputs poisoned first.

import Foundation
import Quarry
@testable import QuarryOpenCL
import XCTest

final class TiledGEMMTests: XCTestCase {
    /// Schedules that exercise every edge of gemm.cl's tiled kernel: the GPU default, tiles
    /// whose work-group (16) is smaller than their width (32), and uneven load counts.
    let schedules: [GEMMSchedule] = [
        GEMMSchedule(KernelChoice.defaultTiledGEMM),
        GEMMSchedule(KernelVariant("opencl.gemm.tiled", ["lm": 4, "ln": 4, "wm": 2, "wn": 8, "tk": 8])),
        GEMMSchedule(KernelVariant("opencl.gemm.tiled", ["lm": 8, "ln": 4, "wm": 3, "wn": 5, "tk": 7])),
    ]

    func testImplicitConvolutionMatchesTheReference() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for schedule in schedules {
            try device.withGEMMSchedule(schedule) {
                // general, 1x1, grouped, dilated with a wide stride
                for kind in 0..<4 {
                    let n = Int.random(in: 1...3, using: &rng)
                    var groups = 1
                    var c = Int.random(in: 1...9, using: &rng), o = Int.random(in: 1...13, using: &rng)
                    var k = (Int.random(in: 1...5, using: &rng), Int.random(in: 1...4, using: &rng))
                    var stride = (Int.random(in: 1...2, using: &rng), Int.random(in: 1...2, using: &rng))
                    var pad = Padding2D(top: Int.random(in: 0...2, using: &rng), left: Int.random(in: 0...2, using: &rng),
                                        bottom: Int.random(in: 0...1, using: &rng), right: Int.random(in: 0...2, using: &rng))
                    var dil = (1, 1)
                    switch kind {
                    case 1: k = (1, 1); stride = (1, 1); pad = .zero
                    case 2: groups = Int.random(in: 2...3, using: &rng); c = groups * Int.random(in: 2...4, using: &rng); o = groups * Int.random(in: 1...5, using: &rng)
                    case 3: dil = (2, Int.random(in: 1...3, using: &rng)); stride = (3, 2)
                    default: break
                    }
                    let h = Int.random(in: (dil.0 * (k.0 - 1) + 1)...(dil.0 * (k.0 - 1) + 15), using: &rng)
                    let wd = Int.random(in: (dil.1 * (k.1 - 1) + 1)...(dil.1 * (k.1 - 1) + 17), using: &rng)
                    let act: Activation? = Bool.random(using: &rng) ? .relu : nil
                    let a = Conv2DAttributes(kernel: k, stride: stride, padding: pad, dilation: dil, groups: groups, activation: act)
                    let x = randomTensor([n, c, h, wd], &rng), w = randomTensor([o, c / groups, k.0, k.1], &rng)
                    let b = Bool.random(using: &rng) ? randomTensor([o], &rng) : nil
                    let oh = (h + pad.top + pad.bottom - dil.0 * (k.0 - 1) - 1) / stride.0 + 1
                    let ow = (wd + pad.left + pad.right - dil.1 * (k.1 - 1) - 1) / stride.1 + 1
                    let residual = Bool.random(using: &rng) ? randomTensor([n, o, oh, ow], &rng) : nil
                    var operands: [Tensor?] = [x, w, b]
                    if let residual { operands.append(residual) }
                    let variant = KernelChoice.convolution(
                        ConvolutionQuery(a, input: x.shape, weight: w.shape, output: [n, o, oh, ow], constantWeights: true, residual: residual != nil),
                        device: DeviceCapabilities(kind: .opencl, threads: 1), gemm: schedule.variant)
                    XCTAssertEqual(variant.name, "opencl.conv2d.implicit_gemm")
                    let out = try runOpenCLNode(.conv2d(a), operands, constantIndices: [1, 2], device: device)[0]
                    var ref = referenceConv2D(x, w, b, a, outShape: out.shape)
                    if let residual { for i in ref.indices { ref[i] += Double(residual[flat: i]) } }
                    if act != nil { ref = relu(ref) }
                    assertClose(out, ref, rtol: 1e-4, atol: 1e-5,
                                "implicit conv \(schedule.variant) kind \(kind) x \(x.shape) w \(w.shape) residual \(residual != nil) \(a)")
                }
            }
        }
    }

    func testTiledMatMulAndDenseMatchTheReference() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for schedule in schedules {
            try device.withGEMMSchedule(schedule) {
                for _ in 0..<3 {
                    let m = Int.random(in: 1...150, using: &rng), n = Int.random(in: 1...150, using: &rng)
                    let k = Int.random(in: 1...70, using: &rng), batch = Int.random(in: 1...2, using: &rng)
                    let a = randomTensor([batch, m, k], &rng), b = randomTensor([batch, k, n], &rng)
                    let out = try runOpenCLNode(.matmul(transposeA: false, transposeB: false), [a, b], device: device)[0]
                    var ref = [Double](repeating: 0, count: batch * m * n)
                    for g in 0..<batch { for i in 0..<m { for j in 0..<n {
                        var s = 0.0
                        for kk in 0..<k { s += Double(a[flat: (g * m + i) * k + kk]) * Double(b[flat: (g * k + kk) * n + j]) }
                        ref[(g * m + i) * n + j] = s
                    } } }
                    assertClose(out, ref, rtol: 1e-4, atol: 1e-5, "tiled matmul \(schedule.variant) \(batch)x\(m)x\(k)x\(n)")

                    let rows = Int.random(in: 1...40, using: &rng), units = Int.random(in: 1...90, using: &rng)
                    let x = randomTensor([rows, k], &rng), wt = randomTensor([units, k], &rng), bias = randomTensor([units], &rng)
                    let dense = try runOpenCLNode(.dense(activation: .relu), [x, wt, bias], constantIndices: [1, 2], device: device)[0]
                    var dref = [Double](repeating: 0, count: rows * units)
                    for r in 0..<rows { for j in 0..<units {
                        var s = Double(bias[flat: j])
                        for kk in 0..<k { s += Double(x[flat: r * k + kk]) * Double(wt[flat: j * k + kk]) }
                        dref[r * units + j] = max(s, 0)
                    } }
                    assertClose(dense, dref, rtol: 1e-4, atol: 1e-5, "tiled dense \(schedule.variant) \(rows)x\(k)->\(units)")
                }
            }
        }
    }
}
