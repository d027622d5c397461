import Foundation
import Quarry
@testable import QuarryCPU
import XCTest

final class DenseTests: XCTestCase {
    func testDenseTwoAndThreeDimensionalInputs() throws {
        var rng = makeTestRNG()
        let cases: [([Int], Int, Bool, Activation?, Bool)] = [
            ([1, 37], 10, true, nil, true), ([5, 64], 33, true, .relu, true), ([2, 3, 17], 40, false, .gelu(approximate: true), true),
            ([4, 7, 300], 13, true, .tanh, false), ([1, 1, 1], 1, true, nil, true),
        ]
        for (xShape, n, hasBias, act, constant) in cases {
            let k = xShape.last!, m = xShape.dropLast().reduce(1, *)
            let x = randomTensor(xShape, &rng), w = randomTensor([n, k], &rng)
            let b = hasBias ? randomTensor([n], &rng) : nil
            let outs = try runCPUNode(.dense(activation: act), [x, w, b], constantIndices: constant ? [1, 2] : [], threads: 2)
            XCTAssertEqual(outs[0].shape, Array(xShape.dropLast()) + [n])
            var expected = [Double](repeating: 0, count: m * n)
            for i in 0..<m {
                for j in 0..<n {
                    var s = b.map { Double($0[flat: j]) } ?? 0
                    for p in 0..<k { s += Double(x[flat: i * k + p]) * Double(w[flat: j * k + p]) }
                    expected[i * n + j] = act.map { referenceActivation($0, s) } ?? s
                }
            }
            assertClose(outs[0], expected, rtol: 1e-4, atol: 1e-4, "dense \(xShape) -> \(n)")
        }
    }

    func testMatMulBroadcastingAndTransposes() throws {
        var rng = makeTestRNG()
        let cases: [([Int], [Int], Bool, Bool, Bool)] = [
            ([3, 5], [5, 4], false, false, false),
            ([2, 3, 7, 5], [5, 9], false, false, true),    // folded batch, constant B
            ([2, 1, 6, 5], [3, 5, 4], false, false, false), // broadcast both ways
            ([4, 8, 3], [4, 8, 6], true, false, false),     // A transposed
            ([1, 6, 7], [2, 5, 7], false, true, false),     // B transposed, A broadcast
            ([3, 9, 4], [13, 9], true, true, true),         // both transposed, constant B
        ]
        for (aShape, bShape, ta, tb, constant) in cases {
            let a = randomTensor(aShape, &rng), b = randomTensor(bShape, &rng)
            let outs = try runCPUNode(.matmul(transposeA: ta, transposeB: tb), [a, b], constantIndices: constant ? [1] : [],
                                      threads: 2)
            let out = outs[0].shape
            let m = out[out.count - 2], n = out[out.count - 1]
            let k = ta ? aShape[aShape.count - 2] : aShape[aShape.count - 1]
            let batch = Array(out.dropLast(2))
            let aB = Array(aShape.dropLast(2)), bB = Array(bShape.dropLast(2))
            var expected: [Double] = []
            for bi in 0..<batch.reduce(1, *) {
                // Decode the batch index, then broadcast it into each operand's batch dims.
                var idx = [Int](repeating: 0, count: batch.count), rest = bi
                for d in stride(from: batch.count - 1, through: 0, by: -1) { idx[d] = rest % batch[d]; rest /= batch[d] }
                func matrixIndex(_ shape: [Int]) -> Int {
                    var off = 0
                    for (d, size) in shape.enumerated() {
                        let i = idx[batch.count - shape.count + d]
                        off = off * size + (size == 1 ? 0 : i)
                    }
                    return off
                }
                let aBase = matrixIndex(aB) * m * k, bBase = matrixIndex(bB) * k * n
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0
                        for p in 0..<k {
                            let av = a[flat: aBase + (ta ? p * m + i : i * k + p)]
                            let bv = b[flat: bBase + (tb ? j * k + p : p * n + j)]
                            s += Double(av) * Double(bv)
                        }
                        expected.append(s)
                    }
                }
            }
            assertClose(outs[0], expected, rtol: 1e-4, atol: 1e-5, "matmul \(aShape) x \(bShape) ta \(ta) tb \(tb)")
        }
    }
}
