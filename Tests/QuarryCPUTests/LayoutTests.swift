// Layout ops and upsampling against references that compute every output element's source
// index directly from the op's definition.

import Foundation
import Quarry
import XCTest

final class LayoutTests: XCTestCase {
    func randomShape(_ rng: inout SeededGenerator, rank: ClosedRange<Int> = 1...4, maxDim: Int = 7) -> [Int] {
        (0..<Int.random(in: rank, using: &rng)).map { _ in Int.random(in: 1...maxDim, using: &rng) }
    }

    func testConcatAndSplitRoundTrip() throws {
        var rng = makeTestRNG()
        for trial in 0..<20 {
            let base = randomShape(&rng)
            let axis = Int.random(in: 0..<base.count, using: &rng)
            let k = Int.random(in: 1...4, using: &rng)
            let parts = (0..<k).map { _ -> Tensor in var s = base; s[axis] = Int.random(in: 0...4, using: &rng); return randomTensor(s, &rng) }
            let y = try runCPUNode(.concat(axis: axis - (trial % 2) * base.count), parts, threads: trial % 2 + 1)[0]
            var expected: [Double] = []
            let outer = base[..<axis].reduce(1, *)
            for o in 0..<outer {
                for p in parts {
                    let chunk = p.shape[axis...].reduce(1, *)
                    expected += doubles(p)[(o * chunk)..<((o + 1) * chunk)]
                }
            }
            assertClose(y, expected, rtol: 0, atol: 0, "concat \(parts.map(\.shape)) axis \(axis)")
            let pieces = try runCPUNode(.split(axis: axis, sizes: parts.map { $0.shape[axis] }), [y], threads: trial % 2 + 1)
            for (piece, part) in zip(pieces, parts) { assertClose(piece, doubles(part), rtol: 0, atol: 0, "split") }
        }
    }

    func testSliceWithNegativeIndicesAndSteps() throws {
        var rng = makeTestRNG()
        for trial in 0..<40 {
            let shape = randomShape(&rng, maxDim: 9)
            let x = randomTensor(shape, &rng)
            var starts: [Int] = [], ends: [Int] = [], axes: [Int] = [], steps: [Int] = []
            for ax in 0..<shape.count where Bool.random(using: &rng) {
                let d = shape[ax]
                axes.append(Bool.random(using: &rng) ? ax : ax - shape.count)
                starts.append(Int.random(in: -(d + 2)...(d + 2), using: &rng))
                ends.append(Bool.random(using: &rng) ? Int.random(in: -(d + 2)...(d + 2), using: &rng) : (Bool.random(using: &rng) ? Int.max : Int.min))
                steps.append([1, 2, 3, -1, -2][Int.random(in: 0..<5, using: &rng)])
            }
            let y = try runCPUNode(.slice(starts: starts, ends: ends, axes: axes, steps: steps), [x], threads: trial % 2 + 1)[0]
            // Reference: the list of source indices per dimension, from ONNX's definition.
            var picks = shape.map { Array(0..<$0) }
            for i in axes.indices {
                let ax = axes[i] < 0 ? axes[i] + shape.count : axes[i], d = shape[ax], st = steps[i]
                var s = starts[i] < 0 ? starts[i] + d : starts[i]
                var e = ends[i] == Int.max || ends[i] == Int.min ? ends[i] : (ends[i] < 0 ? ends[i] + d : ends[i])
                var list: [Int] = []
                if st > 0 {
                    s = min(max(s, 0), d); e = min(max(e, 0), d)
                    var j = s; while j < e { list.append(j); j += st }
                } else {
                    s = min(max(s, -1), d - 1); e = min(max(e, -1), d - 1)
                    var j = s; while j > e { list.append(j); j += st }
                }
                picks[ax] = list
            }
            XCTAssertEqual(y.shape, picks.map(\.count))
            let v = doubles(x)
            let expected = (0..<y.count).map { i -> Double in
                let idx = multiIndex(i, y.shape)
                return v[flatIndex(idx.enumerated().map { picks[$0.offset][$0.element] }, shape)]
            }
            assertClose(y, expected, rtol: 0, atol: 0, "slice \(shape) \(starts) \(ends) \(axes) \(steps)")
        }
    }

    func testPadConstantReflectEdgeAndCrop() throws {
        var rng = makeTestRNG()
        for trial in 0..<30 {
            let shape = randomShape(&rng, maxDim: 6)
            let mode: PadMode = [.constant, .reflect, .edge][trial % 3]
            let r = shape.count
            var pads = [Int](repeating: 0, count: 2 * r)
            for i in 0..<r {
                let limit = mode == .reflect ? shape[i] - 1 : 3
                pads[i] = Int.random(in: -1...max(limit, 0), using: &rng)
                pads[i + r] = Int.random(in: -1...max(limit, 0), using: &rng)
                if shape[i] + pads[i] + pads[i + r] < 0 || (shape[i] == 1 && (pads[i] < 0 || pads[i + r] < 0)) { pads[i] = 0; pads[i + r] = 0 }
            }
            let x = randomTensor(shape, &rng)
            let y = try runCPUNode(.pad(pads: pads, mode: mode, value: 0.25), [x], threads: trial % 2 + 1)[0]
            let v = doubles(x)
            let expected = (0..<y.count).map { i -> Double in
                var src: [Int] = []
                for (d, o) in multiIndex(i, y.shape).enumerated() {
                    var s = o - pads[d]
                    let n = shape[d]
                    if s < 0 || s >= n {
                        switch mode {
                        case .constant: return 0.25
                        case .edge: s = s < 0 ? 0 : n - 1
                        case .reflect: s = s < 0 ? -s : 2 * (n - 1) - s
                        }
                    }
                    src.append(s)
                }
                return v[flatIndex(src, shape)]
            }
            assertClose(y, expected, rtol: 0, atol: 0, "pad \(mode) \(shape) \(pads)")
        }
    }

    func testTransposeAnyPermutationAndBatched2D() throws {
        var rng = makeTestRNG()
        var cases: [([Int], [Int])] = [([3, 40, 37], [0, 2, 1]), ([2, 35, 150], [0, 2, 1]), ([2, 5, 6, 7], [0, 2, 3, 1]), ([70, 33], [1, 0]), ([2, 3, 4, 5], [0, 2, 1, 3])]
        for _ in 0..<20 {
            let shape = randomShape(&rng, rank: 1...5, maxDim: 6)
            cases.append((shape, Array(0..<shape.count).shuffled(using: &rng)))
        }
        for (t, (shape, perm)) in cases.enumerated() {
            let x = randomTensor(shape, &rng)
            let y = try runCPUNode(.transpose(perm: perm), [x], threads: t % 2 + 1)[0]
            let v = doubles(x)
            let expected = (0..<y.count).map { i -> Double in
                let idx = multiIndex(i, y.shape)
                var src = [Int](repeating: 0, count: shape.count)
                for (k, p) in perm.enumerated() { src[p] = idx[k] }
                return v[flatIndex(src, shape)]
            }
            assertClose(y, expected, rtol: 0, atol: 0, "transpose \(shape) \(perm)")
        }
    }

    func testReshapeFlattenIdentityCopy() throws {
        var rng = makeTestRNG()
        let x = randomTensor([2, 3, 4, 5], &rng)
        for op: Op in [.reshape(shape: [0, -1, 5]), .flatten(axis: 2), .identity] {
            for threads in [1, 2] {
                let y = try runCPUNode(op, [x], threads: threads)[0]
                assertClose(y, doubles(x), rtol: 0, atol: 0, op.name)
            }
        }
    }

    func testUpsampleNearestAndBilinear() throws {
        var rng = makeTestRNG()
        for trial in 0..<24 {
            let shape = [Int.random(in: 1...2, using: &rng), Int.random(in: 1...3, using: &rng), Int.random(in: 1...7, using: &rng), Int.random(in: 1...9, using: &rng)]
            let mode: UpsampleMode = [.nearest, .bilinear, .bilinearAlignCorners][trial % 3]
            let useSize = trial % 2 == 1
            let scales: [Float] = [[2, 2], [1.5, 3], [0.5, 2.5], [3, 1]][trial / 6 % 4]
            let size = useSize ? [Int.random(in: 1...15, using: &rng), Int.random(in: 1...15, using: &rng)] : nil
            if !useSize && (Int(Float(shape[2]) * scales[0]) == 0 || Int(Float(shape[3]) * scales[1]) == 0) { continue }
            let x = randomTensor(shape, &rng)
            let y = try runCPUNode(.upsample(mode: mode, scaleH: scales[0], scaleW: scales[1], size: size), [x], threads: trial % 2 + 1)[0]
            let (h, w, oh, ow) = (shape[2], shape[3], y.shape[2], y.shape[3])
            let v = doubles(x)
            func coord(_ o: Int, _ n: Int, _ on: Int, _ scale: Float) -> (Int, Int, Double) {
                switch mode {
                case .nearest: return (min(o * n / on, n - 1), 0, 0)
                case .bilinear:
                    let ratio = useSize ? Double(n) / Double(on) : 1 / Double(scale)
                    let s = max((Double(o) + 0.5) * ratio - 0.5, 0)
                    let i0 = min(Int(s.rounded(.down)), n - 1)
                    return (i0, min(i0 + 1, n - 1), s - Double(i0))
                case .bilinearAlignCorners:
                    let s = on > 1 ? Double(o) * Double(n - 1) / Double(on - 1) : 0
                    let i0 = min(Int(s.rounded(.down)), n - 1)
                    return (i0, min(i0 + 1, n - 1), s - Double(i0))
                }
            }
            var expected: [Double] = []
            for p in 0..<(shape[0] * shape[1]) {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let (y0, y1, fy) = coord(oy, h, oh, scales[0]), (x0, x1, fx) = coord(ox, w, ow, scales[1])
                        func at(_ yy: Int, _ xx: Int) -> Double { v[p * h * w + yy * w + xx] }
                        if mode == .nearest { expected.append(at(y0, x0)); continue }
                        let top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
                        let bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
                        expected.append(top * (1 - fy) + bottom * fy)
                    }
                }
            }
            assertClose(y, expected, rtol: 1e-5, atol: 1e-6, "upsample \(mode) \(shape) -> \(y.shape)")
        }
    }
}
