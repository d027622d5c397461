// Attention against the textbook float64 computation: full score matrix, masks, softmax, P·V.

import Foundation
import Quarry
import XCTest

final class AttentionTests: XCTestCase {
    func reference(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ mask: Tensor?, heads: Int, causal: Bool) -> [Double] {
        let (b, sq, sk) = (q.shape[0], q.shape[1], k.shape[1])
        let dq = q.shape[2] / heads, dv = v.shape[2] / heads
        let qd = doubles(q), kd = doubles(k), vd = doubles(v)
        var out = [Double](repeating: 0, count: b * sq * heads * dv)
        for bi in 0..<b {
            for h in 0..<heads {
                for i in 0..<sq {
                    var scores = [Double](repeating: -.infinity, count: sk)
                    for j in 0..<sk {
                        if causal && j > i { continue }
                        if let mask, mask[flat: bi * sk + j] == 0 { continue }
                        var dot = 0.0
                        for d in 0..<dq { dot += qd[(bi * sq + i) * heads * dq + h * dq + d] * kd[(bi * sk + j) * heads * dq + h * dq + d] }
                        scores[j] = dot / Double(dq).squareRoot()
                    }
                    let m = scores.max()!
                    if m == -.infinity { continue }  // nothing to attend: zeros
                    let e = scores.map { Foundation.exp($0 - m) }
                    let total = e.reduce(0, +)
                    for c in 0..<dv {
                        var acc = 0.0
                        for j in 0..<sk { acc += e[j] * vd[(bi * sk + j) * heads * dv + h * dv + c] }
                        out[(bi * sq + i) * heads * dv + h * dv + c] = acc / total
                    }
                }
            }
        }
        return out
    }

    func testAttentionWithMasksAndOddSizes() throws {
        var rng = makeTestRNG()
        for trial in 0..<14 {
            let heads = Int.random(in: 1...3, using: &rng)
            let dq = [1, 5, 16, 24, 33][Int.random(in: 0..<5, using: &rng)]
            let dv = trial % 3 == 0 ? Int.random(in: 1...40, using: &rng) : dq
            let b = Int.random(in: 1...2, using: &rng)
            let sq = Int.random(in: 1...70, using: &rng)
            let sk = trial % 2 == 0 ? sq : Int.random(in: 1...140, using: &rng)
            let causal = trial % 4 == 1
            let q = randomTensor([b, sq, heads * dq], &rng, in: -2...2)
            let k = randomTensor([b, sk, heads * dq], &rng, in: -2...2)
            let v = randomTensor([b, sk, heads * dv], &rng)
            var mask: Tensor? = nil
            if trial % 3 != 2 {
                let m = Tensor(shape: [b, sk], repeating: 1)
                for i in 0..<(b * sk) where Float.random(in: 0...1, using: &rng) < 0.3 { m[flat: i] = 0 }
                // One batch row entirely padded: its outputs must be zeros, not NaN.
                if trial % 5 == 0 { for j in 0..<sk { m[flat: j] = 0 } }
                mask = m
            }
            let y = try runCPUNode(.attention(heads: heads, causal: causal), [q, k, v, mask], threads: trial % 2 + 1)[0]
            XCTAssertEqual(y.shape, [b, sq, heads * dv])
            assertClose(y, reference(q, k, v, mask, heads: heads, causal: causal), rtol: 1e-4, atol: 1e-5,
                        "attention b\(b) sq\(sq) sk\(sk) h\(heads) dq\(dq) dv\(dv) causal \(causal) mask \(mask != nil)")
        }
    }
}
