// Broadcasting binary ops, reductions and embedding against float64 references computed with
// explicit multi-indices.

import Foundation
import Quarry
import XCTest

/// Row-major multi-index of flat index `i` in `shape`.
func multiIndex(_ i: Int, _ shape: [Int]) -> [Int] {
    var rem = i
    var idx = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = rem % shape[d]; rem /= shape[d] }
    return idx
}

func flatIndex(_ idx: [Int], _ shape: [Int]) -> Int {
    var f = 0
    for (i, d) in zip(idx, shape) { f = f * d + i }
    return f
}

final class ElementwiseTests: XCTestCase {
    func referenceBinary(_ op: BinaryOp, _ a: Double, _ b: Double) -> Double {
        switch op {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        case .div: return a / b
        case .pow: return Foundation.pow(a, b)
        case .max: return max(a, b)
        case .min: return min(a, b)
        // Comparisons, logic and remainders are checked by the op conformance suite.
        default: preconditionFailure("\(op) has no reference here")
        }
    }

    /// A random pair of broadcastable shapes: same shape, per-channel, trailing vector, scalar,
    /// or general.
    func randomShapes(_ rng: inout SeededGenerator) -> ([Int], [Int]) {
        let rank = Int.random(in: 1...4, using: &rng)
        let full = (0..<rank).map { _ in Int.random(in: 1...9, using: &rng) }
        switch Int.random(in: 0..<5, using: &rng) {
        case 0: return (full, full)
        case 1 where rank >= 3:
            var b = full.map { _ in 1 }; b[1] = full[1]
            return (full, Array(b.dropFirst()))
        case 2: return (full, [full[rank - 1]])
        case 3: return ([1], full)
        default:
            let a = full.map { Bool.random(using: &rng) ? 1 : $0 }
            let b = Array(full.map { Bool.random(using: &rng) ? 1 : $0 }.dropFirst(Int.random(in: 0..<rank, using: &rng)))
            return Bool.random(using: &rng) ? (a, b) : (b, a)
        }
    }

    func testBinaryOpsBroadcastAndFuseActivation() throws {
        var rng = makeTestRNG()
        let ops: [BinaryOp] = [.add, .sub, .mul, .div, .pow, .max, .min]
        for trial in 0..<70 {
            let op = ops[trial % ops.count]
            let (sa, sb) = randomShapes(&rng)
            let positive = op == .pow || op == .div
            let a = randomTensor(sa, &rng, in: positive ? 0.5...2 : -2...2)
            let b = randomTensor(sb, &rng, in: positive ? 0.5...2 : -2...2)
            let act: Activation? = trial % 3 == 0 ? .relu : nil
            let y = try runCPUNode(.binary(op, activation: act), [a, b], threads: trial % 2 + 1)[0]
            let out = broadcastShapes(sa, sb)!
            XCTAssertEqual(y.shape, out)
            let va = doubles(a), vb = doubles(b)
            let expected = (0..<out.reduce(1, *)).map { i -> Double in
                let idx = multiIndex(i, out)
                func pick(_ s: [Int]) -> Int {
                    let local = idx.suffix(s.count).enumerated().map { s[$0.offset] == 1 ? 0 : $0.element }
                    return flatIndex(local, s)
                }
                let r = referenceBinary(op, va[pick(sa)], vb[pick(sb)])
                return act == nil ? r : max(r, 0)
            }
            assertClose(y, expected, rtol: 1e-5, atol: 1e-6, "\(op) \(sa) \(sb)")
        }
    }

    func testLargeOperandsSplitAcrossThreadsMidRun() throws {
        // Big enough that two threads split the work inside broadcast runs.
        var rng = makeTestRNG()
        for (sa, sb) in [([2, 37, 19, 23], [37, 1, 1]), ([3, 41, 300], [300]), ([33000], [33000]), ([5, 7001], [5, 1])] {
            let a = randomTensor(sa, &rng), b = randomTensor(sb, &rng)
            let y = try runCPUNode(.binary(.add, activation: .sigmoid), [a, b], threads: 2)[0]
            let out = broadcastShapes(sa, sb)!
            let va = doubles(a), vb = doubles(b)
            let expected = (0..<out.reduce(1, *)).map { i -> Double in
                let idx = multiIndex(i, out)
                let local = idx.suffix(sb.count).enumerated().map { sb[$0.offset] == 1 ? 0 : $0.element }
                return 1 / (1 + Foundation.exp(-(va[i] + vb[flatIndex(local, sb)])))
            }
            assertClose(y, expected, rtol: 2e-6, atol: 1e-7, "add+sigmoid \(sa) \(sb)")
            let m = try runCPUNode(.reduce(.mean, axes: [-1], keepDims: false), [a], threads: 2)[0]
            let last = sa.last!
            assertClose(m, (0..<(a.count / last)).map { r in va[(r * last)..<((r + 1) * last)].reduce(0, +) / Double(last) }, rtol: 1e-5, atol: 1e-6, "mean")
        }
    }

    func testReduceOverAnEmptyAxisGivesTheIdentity() throws {
        let x = Tensor(shape: [3, 0, 2], repeating: 0)
        let sum = try runCPUNode(.reduce(.sum, axes: [1], keepDims: false), [x])[0]
        XCTAssertEqual(sum.shape, [3, 2])
        XCTAssertEqual(sum.scalars, [Float](repeating: 0, count: 6))
        let mx = try runCPUNode(.reduce(.max, axes: [1], keepDims: true), [x])[0]
        XCTAssertEqual(mx.scalars, [Float](repeating: -.infinity, count: 6))
    }

    func testPowWithConstantExponentFastPaths() throws {
        var rng = makeTestRNG()
        for e: Float in [2, 0.5, 1, 3] {
            let a = randomTensor([3, 17], &rng, in: 0.1...3)
            let b = try Tensor(shape: [1], scalars: [e])
            let y = try runCPUNode(.binary(.pow, activation: nil), [a, b], constantIndices: [1])[0]
            assertClose(y, doubles(a).map { Foundation.pow($0, Double(e)) }, rtol: 1e-5, atol: 0, "pow \(e)")
        }
    }

    func testReduceOverAnyAxes() throws {
        var rng = makeTestRNG()
        for trial in 0..<30 {
            let rank = Int.random(in: 1...4, using: &rng)
            let shape = (0..<rank).map { _ in Int.random(in: 1...8, using: &rng) }
            var axes = (0..<rank).filter { _ in Bool.random(using: &rng) }.map { Bool.random(using: &rng) ? $0 - rank : $0 }
            if trial % 7 == 0 { axes = [] }
            let keep = Bool.random(using: &rng)
            let op: ReduceOp = [.mean, .sum, .max][trial % 3]
            let x = randomTensor(shape, &rng)
            let y = try runCPUNode(.reduce(op, axes: axes, keepDims: keep), [x], threads: trial % 2 + 1)[0]
            let set = axes.isEmpty ? Set(0..<rank) : Set(axes.map { $0 < 0 ? $0 + rank : $0 })
            let keptShape = shape.enumerated().map { set.contains($0.offset) ? 1 : $0.element }
            var acc = [Double](repeating: op == .max ? -.infinity : 0, count: keptShape.reduce(1, *))
            var counts = [Int](repeating: 0, count: acc.count)
            for (i, v) in doubles(x).enumerated() {
                let idx = multiIndex(i, shape).enumerated().map { set.contains($0.offset) ? 0 : $0.element }
                let o = flatIndex(idx, keptShape)
                acc[o] = op == .max ? max(acc[o], v) : acc[o] + v
                counts[o] += 1
            }
            if op == .mean { for i in acc.indices { acc[i] /= Double(counts[i]) } }
            XCTAssertEqual(y.shape, keep ? keptShape : shape.enumerated().filter { !set.contains($0.offset) }.map(\.element))
            assertClose(y, acc, rtol: 1e-5, atol: 1e-6, "reduce \(op) \(shape) axes \(axes)")
        }
    }

    func testEmbeddingGathersRowsAndWritesNaNForBadIds() throws {
        var rng = makeTestRNG()
        let v = Int.random(in: 2...20, using: &rng), d = Int.random(in: 1...33, using: &rng)
        let table = randomTensor([v, d], &rng)
        let ids = Tensor(shape: [2, 5], repeating: 0)
        for i in 0..<10 { ids[flat: i] = Float(Int.random(in: -v..<v, using: &rng)) }
        ids[flat: 3] = Float(v)      // one past the end
        ids[flat: 7] = 1.5           // not an integer
        for threads in [1, 2] {
            let y = try runCPUNode(.embedding, [ids, table], threads: threads)[0]
            XCTAssertEqual(y.shape, [2, 5, d])
            for i in 0..<10 {
                let id = ids[flat: i]
                for j in 0..<d {
                    if i == 3 || i == 7 {
                        XCTAssertTrue(y[flat: i * d + j].isNaN, "id \(id) must give a NaN row")
                    } else {
                        let row = Int(id) < 0 ? Int(id) + v : Int(id)
                        XCTAssertEqual(y[flat: i * d + j], table[flat: row * d + j])
                    }
                }
            }
        }
        // Constant ids are checked when the node is bound.
        XCTAssertThrowsError(try runCPUNode(.embedding, [ids, table], constantIndices: [0])) { error in
            XCTAssertTrue("\(error)".contains("not a row"), "\(error)")
        }
    }
}
