import Foundation
import Quarry
import QuarryOpenCL
import XCTest

/// Row-major index helpers for the references.
func unravel(_ i: Int, _ shape: [Int]) -> [Int] {
    var r = i, out = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) { out[d] = r % shape[d]; r /= shape[d] }
    return out
}
func ravel(_ idx: [Int], _ shape: [Int]) -> Int { zip(idx, shape).reduce(0) { $0 * $1.1 + $1.0 } }

final class ElementwiseLayoutTests: XCTestCase {
    func testActivations() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        let acts: [Activation] = [.relu, .relu6, .leakyRelu(alpha: 0.1), .sigmoid, .hardSigmoid(alpha: 0.2, beta: 0.5), .tanh,
                                  .silu, .mish, .gelu(approximate: false), .gelu(approximate: true), .hardSwish,
                                  .sqrt, .exp, .log, .neg, .abs, .erf, .reciprocal, .sin, .cos, .floor, .ceil, .round,
                                  .trunc, .softplus, .elu(alpha: 0.7), .selu(alpha: 1.67326, gamma: 1.0507), .not, .sign]
        let shape = [3, Int.random(in: 1...50, using: &rng)]
        for act in acts {
            let positive: Bool
            switch act { case .sqrt, .log, .reciprocal: positive = true; default: positive = false }
            let x = randomTensor(shape, &rng, in: positive ? 0.1...4 : -4...4)
            // Zeros (not, sign) and halves (round's ties to even) among the values.
            if !positive { x[flat: 0] = 0; x[flat: 1] = 2.5; x[flat: 2] = -0.5 }
            let out = try runOpenCLNode(.activation(act), [x], device: device)[0]
            assertClose(out, doubles(x).map { referenceActivation(act, $0) }, rtol: 1e-4, atol: 1e-5, "\(act)")
        }
    }

    func testBinaryBroadcastAndReduce() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        let ops: [BinaryOp] = [.add, .sub, .mul, .div, .pow, .max, .min]
        for op in ops {
            let out = [2, Int.random(in: 1...4, using: &rng), 3, Int.random(in: 1...5, using: &rng)]
            var aShape = out, bShape = Array(out.dropFirst(Int.random(in: 0...2, using: &rng)))
            for i in 0..<aShape.count where Bool.random(using: &rng) { aShape[i] = 1 }
            for i in 0..<bShape.count where Bool.random(using: &rng) { bShape[i] = 1 }
            let positive = op == .pow || op == .div
            let a = randomTensor(aShape, &rng, in: positive ? 0.5...2 : -2...2), b = randomTensor(bShape, &rng, in: positive ? 0.5...2 : -2...2)
            let act: Activation? = op == .add ? .relu : nil
            let y = try runOpenCLNode(.binary(op, activation: act), [a, b], device: device)[0]
            let full = y.shape
            let ref = (0..<y.count).map { i -> Double in
                let idx = unravel(i, full)
                func at(_ t: Tensor) -> Double {
                    let s = t.shape, off = full.count - s.count
                    return Double(t[flat: ravel(s.indices.map { s[$0] == 1 ? 0 : idx[$0 + off] }, s)])
                }
                let (u, v) = (at(a), at(b))
                var r: Double
                switch op {
                case .add: r = u + v
                case .sub: r = u - v
                case .mul: r = u * v
                case .div: r = u / v
                case .pow: r = pow(u, v)
                case .max: r = max(u, v)
                case .min: r = min(u, v)
                // Comparisons, logic and remainders are checked by the op conformance suite.
                default: preconditionFailure("\(op) has no reference here")
                }
                if act != nil { r = max(r, 0) }
                return r
            }
            assertClose(y, ref, rtol: 1e-4, atol: 1e-5, "\(op) \(aShape) \(bShape)")
        }
        for red in [ReduceOp.mean, .sum, .max] {
            let shape = [2, Int.random(in: 1...4, using: &rng), 3, Int.random(in: 1...5, using: &rng)]
            let axes = [[1], [-1, 0], [1, 3], []][Int.random(in: 0...3, using: &rng)]
            let keep = Bool.random(using: &rng)
            let x = randomTensor(shape, &rng)
            let y = try runOpenCLNode(.reduce(red, axes: axes, keepDims: keep), [x], device: device)[0]
            let set = axes.isEmpty ? Set(0..<4) : Set(axes.map { $0 < 0 ? $0 + 4 : $0 })
            let keptShape = shape.indices.map { set.contains($0) ? 1 : shape[$0] }
            var acc = [Double](repeating: red == .max ? -.infinity : 0, count: keptShape.reduce(1, *))
            for i in 0..<x.count {
                let idx = unravel(i, shape)
                let o = ravel(idx.indices.map { set.contains($0) ? 0 : idx[$0] }, keptShape)
                acc[o] = red == .max ? max(acc[o], Double(x[flat: i])) : acc[o] + Double(x[flat: i])
            }
            let count = Double(set.map { shape[$0] }.reduce(1, *))
            if red == .mean { acc = acc.map { $0 / count } }
            assertClose(y, acc, rtol: 1e-4, atol: 1e-5, "reduce \(red) \(shape) axes \(axes)")
        }
    }

    func testEmbedding() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        let table = randomTensor([11, 7], &rng)
        let ids = Tensor(shape: [2, 5], repeating: 0)
        // Negative ids count from the end, as ONNX Gather (and the CPU) read them.
        for i in 0..<10 { ids[flat: i] = Float(Int.random(in: -11..<11, using: &rng)) }
        ids[flat: 0] = -1
        let y = try runOpenCLNode(.embedding, [ids, table], constantIndices: [1], device: device)[0]
        let ref = (0..<70).map { Double(table[flat: (Int(ids[flat: $0 / 7]) + 11) % 11 * 7 + $0 % 7]) }
        assertClose(y, ref, rtol: 0, atol: 0, "embedding")
    }

    func testLayoutOps() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        let shape = [2, Int.random(in: 2...4, using: &rng), Int.random(in: 2...5, using: &rng), Int.random(in: 2...6, using: &rng)]
        let x = randomTensor(shape, &rng)
        func gatherRef(_ outShape: [Int], _ map: ([Int]) -> [Int]?, pad: Double = 0) -> [Double] {
            (0..<outShape.reduce(1, *)).map { i in map(unravel(i, outShape)).map { Double(x[flat: ravel($0, shape)]) } ?? pad }
        }
        // transpose
        let perm = [0, 3, 1, 2].shuffled(using: &rng)
        let t = try runOpenCLNode(.transpose(perm: perm), [x], device: device)[0]
        assertClose(t, gatherRef(t.shape) { o in var idx = [0, 0, 0, 0]; for (k, p) in perm.enumerated() { idx[p] = o[k] }; return idx }, rtol: 0, atol: 0, "transpose \(perm)")
        // slice with a negative step
        let s = try runOpenCLNode(.slice(starts: [-1, 0], ends: [-100, 100], axes: [2, 3], steps: [-1, 2]), [x], device: device)[0]
        assertClose(s, gatherRef(s.shape) { o in [o[0], o[1], shape[2] - 1 - o[2], o[3] * 2] }, rtol: 0, atol: 0, "slice")
        // pad in each mode
        for mode in [PadMode.constant, .reflect, .edge] {
            let pads = [0, 0, 1, 1, 0, 1, 1, 0]
            let p = try runOpenCLNode(.pad(pads: pads, mode: mode, value: 2.5), [x], device: device)[0]
            let ref = gatherRef(p.shape, { o in
                var idx = o
                for d in 0..<4 {
                    var i = o[d] - pads[d]
                    if i < 0 || i >= shape[d] {
                        switch mode {
                        case .constant: return nil
                        case .edge: i = min(max(i, 0), shape[d] - 1)
                        case .reflect: i = i < 0 ? -i : 2 * (shape[d] - 1) - i
                        }
                    }
                    idx[d] = i
                }
                return idx
            }, pad: 2.5)
            assertClose(p, ref, rtol: 0, atol: 0, "pad \(mode)")
        }
        // concat then split on axis 1
        let y = randomTensor([2, 3, shape[2], shape[3]], &rng)
        let c = try runOpenCLNode(.concat(axis: 1), [x, y], device: device)[0]
        let inner = shape[2] * shape[3]
        var ref: [Double] = []
        for n in 0..<2 { ref += doubles(x)[(n * shape[1] * inner)..<((n + 1) * shape[1] * inner)]; ref += doubles(y)[(n * 3 * inner)..<((n + 1) * 3 * inner)] }
        assertClose(c, ref, rtol: 0, atol: 0, "concat")
        let parts = try runOpenCLNode(.split(axis: 1, sizes: [shape[1], 3]), [c], outputs: 2, device: device)
        assertClose(parts[0], doubles(x), rtol: 0, atol: 0, "split 0")
        assertClose(parts[1], doubles(y), rtol: 0, atol: 0, "split 1")
        // reshape / flatten / identity keep the bytes
        for op in [Op.reshape(shape: [0, -1]), .flatten(axis: 2), .identity] {
            let r = try runOpenCLNode(op, [x], device: device)[0]
            assertClose(r, doubles(x), rtol: 0, atol: 0, op.name)
        }
    }

    func testUpsample() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        // Odd sizes at scale 1.5 / 2.5: out = floor(in * scale), and bilinear steps through the
        // source by 1 / scale (PyTorch), which differs from in / out there.
        let x = randomTensor([1, 2, 2 * Int.random(in: 1...3, using: &rng) + 1, 2 * Int.random(in: 1...3, using: &rng) + 1], &rng)
        let (h, w) = (x.shape[2], x.shape[3])
        for mode in [UpsampleMode.nearest, .bilinear, .bilinearAlignCorners] {
          for (sh, sw) in [(Float(2), Float(3)), (1.5, 2.5)] {
            let y = try runOpenCLNode(.upsample(mode: mode, scaleH: sh, scaleW: sw, size: nil), [x], device: device)[0]
            let (oh, ow) = (y.shape[2], y.shape[3])
            var ref: [Double] = []
            for c in 0..<2 { for oy in 0..<oh { for ox in 0..<ow {
                func px(_ yy: Int, _ xx: Int) -> Double { Double(x[flat: (c * h + yy) * w + xx]) }
                switch mode {
                case .nearest: ref.append(px(min(oy * h / oh, h - 1), min(ox * w / ow, w - 1)))
                default:
                    let fy: Double, fx: Double
                    if mode == .bilinear {
                        fy = max((Double(oy) + 0.5) / Double(sh) - 0.5, 0); fx = max((Double(ox) + 0.5) / Double(sw) - 0.5, 0)
                    } else {
                        fy = oh > 1 ? Double(oy) * Double(h - 1) / Double(oh - 1) : 0; fx = ow > 1 ? Double(ox) * Double(w - 1) / Double(ow - 1) : 0
                    }
                    let y0 = min(Int(fy), h - 1), x0 = min(Int(fx), w - 1), y1 = min(y0 + 1, h - 1), x1 = min(x0 + 1, w - 1)
                    let wy = fy - Double(y0), wx = fx - Double(x0)
                    ref.append((px(y0, x0) * (1 - wx) + px(y0, x1) * wx) * (1 - wy) + (px(y1, x0) * (1 - wx) + px(y1, x1) * wx) * wy)
                }
            } } }
            assertClose(y, ref, rtol: 1e-5, atol: 1e-6, "upsample \(mode) scales \(sh)x\(sw) of \(h)x\(w)")
          }
        }
    }
}
