// Normalisations and softmax against float64 references on random shapes and axes.

import Foundation
import Quarry
import XCTest

final class NormTests: XCTestCase {
    func testBatchNorm() throws {
        var rng = makeTestRNG()
        for threads in [1, 2] {
            let rank = Int.random(in: 2...4, using: &rng)
            let shape = (0..<rank).map { _ in Int.random(in: 1...19, using: &rng) }
            let c = shape[1], inner = shape.dropFirst(2).reduce(1, *)
            let x = randomTensor(shape, &rng, in: -3...3)
            let scale = randomTensor([c], &rng), bias = randomTensor([c], &rng)
            let mean = randomTensor([c], &rng), variance = randomTensor([c], &rng, in: 0.1...2)
            let eps: Float = 1e-5
            let y = try runCPUNode(.batchNorm(epsilon: eps), [x, scale, bias, mean, variance], constantIndices: [1, 2, 3, 4], threads: threads)[0]
            let v = doubles(x)
            let expected = v.indices.map { i -> Double in
                let ch = (i / inner) % c
                return (v[i] - Double(mean[flat: ch])) / (Double(variance[flat: ch]) + Double(eps)).squareRoot()
                    * Double(scale[flat: ch]) + Double(bias[flat: ch])
            }
            assertClose(y, expected, rtol: 1e-5, atol: 1e-5, "batch norm \(shape)")
        }
    }

    func testLayerNormWithAndWithoutAffine() throws {
        var rng = makeTestRNG()
        for trial in 0..<6 {
            let rank = Int.random(in: 2...4, using: &rng)
            let nd = Int.random(in: 1...min(2, rank), using: &rng)
            // At least 4 normalised values per row: with 2 or 3 close values float rounding of the
            // offset mean is amplified by 1/std past any fixed bound (in every float implementation).
            let shape = (0..<rank).map { i in Int.random(in: (i >= rank - nd ? 4 : 1)...37, using: &rng) }
            let normShape = Array(shape.suffix(nd)), d = normShape.reduce(1, *)
            // An offset mean checks that the variance does not come from E[x²] - E[x]².
            let x = randomTensor(shape, &rng, in: 9...11)
            let gamma = trial % 3 == 0 ? nil : randomTensor(normShape, &rng)
            let beta = trial % 2 == 0 ? nil : randomTensor(normShape, &rng)
            let eps: Float = 1e-5
            let y = try runCPUNode(.layerNorm(epsilon: eps, normalizedDims: nd), [x, gamma, beta], threads: trial % 2 + 1)[0]
            let v = doubles(x)
            var expected: [Double] = []
            for r in 0..<(v.count / d) {
                let row = v[(r * d)..<((r + 1) * d)]
                let mean = row.reduce(0, +) / Double(d)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d)
                for (j, e) in row.enumerated() {
                    var o = (e - mean) / (variance + Double(eps)).squareRoot()
                    if let gamma { o *= Double(gamma[flat: j]) }
                    if let beta { o += Double(beta[flat: j]) }
                    expected.append(o)
                }
            }
            assertClose(y, expected, rtol: 1e-4, atol: 1e-4, "layer norm \(shape) over \(nd)")
        }
    }

    func testInstanceNorm() throws {
        var rng = makeTestRNG()
        for threads in [1, 2] {
            let shape = [Int.random(in: 1...3, using: &rng), Int.random(in: 1...5, using: &rng),
                         Int.random(in: 1...9, using: &rng), Int.random(in: 2...21, using: &rng)]
            let c = shape[1], inner = shape[2] * shape[3]
            let x = randomTensor(shape, &rng, in: -2...4)
            let gamma = randomTensor([c], &rng), beta = randomTensor([c], &rng)
            let y = try runCPUNode(.instanceNorm(epsilon: 1e-5), [x, gamma, beta], threads: threads)[0]
            let v = doubles(x)
            var expected: [Double] = []
            for p in 0..<(shape[0] * c) {
                let row = v[(p * inner)..<((p + 1) * inner)]
                let mean = row.reduce(0, +) / Double(inner)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(inner)
                for e in row {
                    expected.append((e - mean) / (variance + 1e-5).squareRoot() * Double(gamma[flat: p % c]) + Double(beta[flat: p % c]))
                }
            }
            assertClose(y, expected, rtol: 1e-4, atol: 1e-4, "instance norm \(shape)")
        }
    }

    func testSoftmaxAndLogSoftmaxOnEveryAxis() throws {
        var rng = makeTestRNG()
        for trial in 0..<12 {
            let rank = Int.random(in: 1...4, using: &rng)
            let shape = (0..<rank).map { _ in Int.random(in: 1...(rank > 2 ? 9 : 40), using: &rng) }
            let axis = Int.random(in: -rank..<rank, using: &rng), ax = axis < 0 ? axis + rank : axis
            // Large values check the max subtraction.
            let x = randomTensor(shape, &rng, in: -30...60)
            let isLog = trial % 2 == 1
            let y = try runCPUNode(isLog ? .logSoftmax(axis: axis) : .softmax(axis: axis), [x], threads: trial % 2 + 1)[0]
            let v = doubles(x)
            let len = shape[ax], inner = shape[(ax + 1)...].reduce(1, *), outer = shape[..<ax].reduce(1, *)
            var expected = [Double](repeating: 0, count: v.count)
            for o in 0..<outer {
                for i in 0..<inner {
                    let idx = (0..<len).map { o * len * inner + $0 * inner + i }
                    let m = idx.map { v[$0] }.max()!
                    let s = idx.map { Foundation.exp(v[$0] - m) }.reduce(0, +)
                    for j in idx { expected[j] = isLog ? v[j] - m - Foundation.log(s) : Foundation.exp(v[j] - m) / s }
                }
            }
            assertClose(y, expected, rtol: 1e-5, atol: isLog ? 1e-5 : 1e-7, "\(isLog ? "log_" : "")softmax \(shape) axis \(axis)")
        }
    }
}
