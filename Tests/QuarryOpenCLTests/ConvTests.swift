import Foundation
import Quarry
import QuarryOpenCL
import XCTest

/// Plain float64 convolution, NCHW, weights [O, C/g, kh, kw].
func referenceConv2D(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ a: Conv2DAttributes, outShape: [Int]) -> [Double] {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (o, oh, ow) = (outShape[1], outShape[2], outShape[3])
    let cg = c / a.groups, og = o / a.groups
    var out = [Double](repeating: 0, count: n * o * oh * ow)
    for img in 0..<n { for oc in 0..<o {
        let g = oc / og
        for oy in 0..<oh { for ox in 0..<ow {
            var s = b.map { Double($0[flat: oc]) } ?? 0
            for ci in 0..<cg { for ky in 0..<a.kernelH { for kx in 0..<a.kernelW {
                let iy = oy * a.strideH - a.padding.top + ky * a.dilationH
                let ix = ox * a.strideW - a.padding.left + kx * a.dilationW
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                let xv = x[flat: ((img * c + g * cg + ci) * h + iy) * wd + ix]
                let wv = w[flat: ((oc * cg + ci) * a.kernelH + ky) * a.kernelW + kx]
                s += Double(xv) * Double(wv)
            } } }
            out[((img * o + oc) * oh + oy) * ow + ox] = s
        } }
    } }
    return out
}

func relu(_ v: [Double]) -> [Double] { v.map { max($0, 0) } }

final class ConvTests: XCTestCase {
    func testConv2DRandomShapes() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        // (groups kind) general, 1x1, grouped, depthwise, depthwise with multiplier
        for kind in 0..<5 {
            for _ in 0..<3 {
                let n = Int.random(in: 1...2, using: &rng)
                var c = Int.random(in: 1...6, using: &rng), o = Int.random(in: 1...7, using: &rng)
                var groups = 1
                var k = Int.random(in: 1...4, using: &rng), kw = Int.random(in: 1...3, using: &rng)
                var stride = (Int.random(in: 1...2, using: &rng), Int.random(in: 1...3, using: &rng))
                var pad = Padding2D(top: Int.random(in: 0...2, using: &rng), left: Int.random(in: 0...1, using: &rng),
                                    bottom: Int.random(in: 0...2, using: &rng), right: Int.random(in: 0...2, using: &rng))
                let dil = (Int.random(in: 1...2, using: &rng), 1)
                switch kind {
                case 1: k = 1; kw = 1; stride = (1, 1); pad = .zero
                case 2: groups = Int.random(in: 2...3, using: &rng); c = groups * Int.random(in: 1...3, using: &rng); o = groups * Int.random(in: 1...3, using: &rng)
                case 3: groups = c; o = c; if c == 1 { c = 3; groups = 3; o = 3 }
                case 4: c = max(c, 2); groups = c; o = c * 2
                default: break
                }
                let h = Int.random(in: (k * dil.0)...(k * dil.0 + 9), using: &rng), wd = Int.random(in: kw...(kw + 11), using: &rng)
                let act: Activation? = Bool.random(using: &rng) ? .relu : nil
                let a = Conv2DAttributes(kernel: (k, kw), stride: stride, padding: pad, dilation: dil, groups: groups, activation: act)
                let x = randomTensor([n, c, h, wd], &rng), w = randomTensor([o, c / groups, k, kw], &rng)
                let withBias = Bool.random(using: &rng)
                let b = withBias ? randomTensor([o], &rng) : nil
                // Half the cases carry a fused skip connection (operand 3), added before the activation.
                let oh = (h + pad.top + pad.bottom - dil.0 * (k - 1) - 1) / stride.0 + 1
                let ow = (wd + pad.left + pad.right - dil.1 * (kw - 1) - 1) / stride.1 + 1
                let residual = Bool.random(using: &rng) ? randomTensor([n, o, oh, ow], &rng) : nil
                var operands: [Tensor?] = [x, w, b]
                if let residual { operands.append(residual) }
                let out = try runOpenCLNode(.conv2d(a), operands, constantIndices: [1, 2], device: device)[0]
                var ref = referenceConv2D(x, w, b, a, outShape: out.shape)
                if let residual { for i in ref.indices { ref[i] += Double(residual[flat: i]) } }
                if act != nil { ref = relu(ref) }
                assertClose(out, ref, rtol: 1e-4, atol: 1e-5, "conv kind \(kind) x \(x.shape) w \(w.shape) residual \(residual != nil) \(a)")
            }
        }
    }

    func testConvTranspose2D() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for _ in 0..<3 {
            let n = Int.random(in: 1...2, using: &rng), groups = Int.random(in: 1...2, using: &rng)
            let c = groups * Int.random(in: 1...3, using: &rng), og = Int.random(in: 1...3, using: &rng)
            let k = Int.random(in: 1...3, using: &rng), s = Int.random(in: 1...3, using: &rng)
            let p = Int.random(in: 0...((k - 1) / 2), using: &rng), op = Int.random(in: 0...(s - 1), using: &rng)
            let a = ConvTranspose2DAttributes(kernel: (k, k), stride: (s, s), padding: Padding2D(p), outputPadding: (op, op), groups: groups)
            let x = randomTensor([n, c, Int.random(in: 1...6, using: &rng), Int.random(in: 1...6, using: &rng)], &rng)
            let w = randomTensor([c, og, k, k], &rng), b = randomTensor([og * groups], &rng)
            let out = try runOpenCLNode(.convTranspose2d(a), [x, w, b], constantIndices: [1, 2], device: device)[0]
            let (h, wd, o, oh, ow) = (x.shape[2], x.shape[3], out.shape[1], out.shape[2], out.shape[3])
            var ref = [Double](repeating: 0, count: out.count)
            for img in 0..<n { for oc in 0..<o { for i in 0..<(oh * ow) { ref[(img * o + oc) * oh * ow + i] = Double(b[flat: oc]) } } }
            // Scatter form: every input pixel adds its kernel footprint.
            let cg = c / groups
            for img in 0..<n { for ci in 0..<c { for iy in 0..<h { for ix in 0..<wd {
                let g = ci / cg
                for oo in 0..<og { for ky in 0..<k { for kx in 0..<k {
                    let oy = iy * s - p + ky, ox = ix * s - p + kx
                    guard oy >= 0, oy < oh, ox >= 0, ox < ow else { continue }
                    let oc = g * og + oo
                    ref[((img * o + oc) * oh + oy) * ow + ox] += Double(x[flat: ((img * c + ci) * h + iy) * wd + ix]) * Double(w[flat: ((ci * og + oo) * k + ky) * k + kx])
                } } }
            } } } }
            assertClose(out, ref, rtol: 1e-4, atol: 1e-5, "conv transpose \(x.shape) \(w.shape) \(a)")
        }
    }
}
