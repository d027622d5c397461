import Foundation
import Quarry
import QuarryOpenCL
import XCTest

final class PoolNormTests: XCTestCase {
    func testPooling() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for isMax in [true, false] {
            for _ in 0..<3 {
                let k = (Int.random(in: 1...3, using: &rng), Int.random(in: 1...3, using: &rng))
                let s = (Int.random(in: 1...2, using: &rng), Int.random(in: 1...3, using: &rng))
                let pad = Padding2D(top: Int.random(in: 0...(k.0 - 1), using: &rng), left: Int.random(in: 0...(k.1 - 1), using: &rng),
                                    bottom: Int.random(in: 0...(k.0 - 1), using: &rng), right: Int.random(in: 0...(k.1 - 1), using: &rng))
                let a = Pool2DAttributes(kernel: k, stride: s, padding: pad, ceilMode: Bool.random(using: &rng),
                                         countIncludePad: Bool.random(using: &rng))
                let x = randomTensor([Int.random(in: 1...2, using: &rng), Int.random(in: 1...4, using: &rng),
                                      Int.random(in: k.0...(k.0 + 7), using: &rng), Int.random(in: k.1...(k.1 + 7), using: &rng)], &rng)
                let out = try runOpenCLNode(isMax ? .maxPool2d(a) : .avgPool2d(a), [x], device: device)[0]
                let (n, c, h, w, oh, ow) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], out.shape[2], out.shape[3])
                var ref = [Double]()
                for img in 0..<n { for ch in 0..<c { for oy in 0..<oh { for ox in 0..<ow {
                    var m = -Double.infinity, sum = 0.0, inside = 0, padded = 0
                    for ky in 0..<k.0 { for kx in 0..<k.1 {
                        let iy = oy * s.0 - pad.top + ky, ix = ox * s.1 - pad.left + kx
                        if iy >= -pad.top && iy < h + pad.bottom && ix >= -pad.left && ix < w + pad.right { padded += 1 }
                        guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                        let v = Double(x[flat: ((img * c + ch) * h + iy) * w + ix])
                        m = max(m, v); sum += v; inside += 1
                    } }
                    ref.append(isMax ? m : sum / Double(a.countIncludePad ? padded : inside))
                } } } }
                assertClose(out, ref, rtol: 1e-5, atol: 1e-6, "\(isMax ? "max" : "avg") pool \(x.shape) \(a)")
            }
        }
        let x = randomTensor([2, 3, 5, 7], &rng)
        for isMax in [true, false] {
            let out = try runOpenCLNode(isMax ? .globalMaxPool : .globalAvgPool, [x], device: device)[0]
            let ref = (0..<6).map { i -> Double in
                let v = (0..<35).map { Double(x[flat: i * 35 + $0]) }
                return isMax ? v.max()! : v.reduce(0, +) / 35
            }
            assertClose(out, ref, rtol: 1e-5, atol: 1e-6, "global pool")
        }
    }

    func testNorms() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        let x = randomTensor([2, 3, 4, 5], &rng)
        let g = randomTensor([3], &rng), b = randomTensor([3], &rng), mean = randomTensor([3], &rng)
        let variance = randomTensor([3], &rng, in: 0.1...2)
        let bn = try runOpenCLNode(.batchNorm(epsilon: 1e-5), [x, g, b, mean, variance], device: device)[0]
        assertClose(bn, (0..<x.count).map { i in
            let c = (i / 20) % 3
            return (Double(x[flat: i]) - Double(mean[flat: c])) / (Double(variance[flat: c]) + 1e-5).squareRoot() * Double(g[flat: c]) + Double(b[flat: c])
        }, rtol: 1e-4, atol: 1e-5, "batch norm")

        let inorm = try runOpenCLNode(.instanceNorm(epsilon: 1e-5), [x, g, b], device: device)[0]
        var ref = [Double]()
        for nc in 0..<6 {
            let v = (0..<20).map { Double(x[flat: nc * 20 + $0]) }
            let m = v.reduce(0, +) / 20, vr = v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 20
            ref += v.map { ($0 - m) / (vr + 1e-5).squareRoot() * Double(g[flat: nc % 3]) + Double(b[flat: nc % 3]) }
        }
        assertClose(inorm, ref, rtol: 1e-4, atol: 1e-5, "instance norm")

        let d = Int.random(in: 1...40, using: &rng)
        let y = randomTensor([3, Int.random(in: 1...5, using: &rng), d], &rng, in: 2...5)
        let lg = randomTensor([d], &rng), lb = randomTensor([d], &rng)
        let ln = try runOpenCLNode(.layerNorm(epsilon: 1e-5, normalizedDims: 1), [y, lg, lb], device: device)[0]
        ref = []
        for r in 0..<(y.count / d) {
            let v = (0..<d).map { Double(y[flat: r * d + $0]) }
            let m = v.reduce(0, +) / Double(d), vr = v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(d)
            ref += v.enumerated().map { ($0.element - m) / (vr + 1e-5).squareRoot() * Double(lg[flat: $0.offset]) + Double(lb[flat: $0.offset]) }
        }
        assertClose(ln, ref, rtol: 1e-3, atol: 1e-4, "layer norm")
    }

    func testSoftmax() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for log in [false, true] {
            let shape = [Int.random(in: 1...3, using: &rng), Int.random(in: 1...9, using: &rng), Int.random(in: 1...4, using: &rng)]
            let axis = Int.random(in: -3...2, using: &rng)
            let x = randomTensor(shape, &rng, in: -5...5)
            let out = try runOpenCLNode(log ? .logSoftmax(axis: axis) : .softmax(axis: axis), [x], device: device)[0]
            let ax = axis < 0 ? axis + 3 : axis
            let outer = shape[..<ax].reduce(1, *), len = shape[ax], inner = shape[(ax + 1)...].reduce(1, *)
            var ref = [Double](repeating: 0, count: x.count)
            for o in 0..<outer { for i in 0..<inner {
                let idx = (0..<len).map { (o * len + $0) * inner + i }
                let v = idx.map { Double(x[flat: $0]) }
                let m = v.max()!, s = v.map { exp($0 - m) }.reduce(0, +)
                for (j, e) in idx.enumerated() { ref[e] = log ? v[j] - m - Foundation.log(s) : exp(v[j] - m) / s }
            } }
            assertClose(out, ref, rtol: 1e-4, atol: 1e-6, "\(log ? "log " : "")softmax \(shape) axis \(axis)")
        }
    }
}
