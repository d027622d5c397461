import Foundation
import Quarry
import QuarryOpenCL
import XCTest

func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

final class SequenceTests: XCTestCase {
    func testAttention() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for trial in 0..<4 {
            let b = Int.random(in: 1...2, using: &rng), heads = Int.random(in: 1...3, using: &rng)
            let d = Int.random(in: 1...9, using: &rng), dv = trial == 3 ? d + 2 : d
            let sq = Int.random(in: 1...37, using: &rng), sk = Int.random(in: 1...45, using: &rng)
            let causal = trial % 2 == 1
            let q = randomTensor([b, sq, heads * d], &rng), k = randomTensor([b, sk, heads * d], &rng)
            let v = randomTensor([b, sk, heads * dv], &rng)
            var mask: Tensor? = nil
            if trial >= 2 {
                let m = Tensor(shape: [b, sk], repeating: 1)
                for i in 0..<m.count where Int.random(in: 0..<4, using: &rng) == 0 { m[flat: i] = 0 }
                for bb in 0..<b { m[flat: bb * sk] = 1 }  // every row keeps its first key
                mask = m
            }
            let out = try runOpenCLNode(.attention(heads: heads, causal: causal), [q, k, v, mask], device: device)[0]
            var ref = [Double](repeating: 0, count: b * sq * heads * dv)
            for bb in 0..<b { for h in 0..<heads { for i in 0..<sq {
                var scores: [Double] = []
                var keys: [Int] = []
                for j in 0..<sk {
                    if causal && j > i { continue }
                    if let mask, mask[flat: bb * sk + j] == 0 { continue }
                    var s = 0.0
                    for e in 0..<d { s += Double(q[flat: (bb * sq + i) * heads * d + h * d + e]) * Double(k[flat: (bb * sk + j) * heads * d + h * d + e]) }
                    scores.append(s / Double(d).squareRoot()); keys.append(j)
                }
                guard let m = scores.max() else { continue }
                let w = scores.map { exp($0 - m) }, z = w.reduce(0, +)
                for e in 0..<dv {
                    var acc = 0.0
                    for (wi, j) in zip(w, keys) { acc += wi * Double(v[flat: (bb * sk + j) * heads * dv + h * dv + e]) }
                    ref[(bb * sq + i) * heads * dv + h * dv + e] = acc / z
                }
            } } }
            assertClose(out, ref, rtol: 1e-4, atol: 1e-5, "attention b \(b) h \(heads) d \(d)/\(dv) sq \(sq) sk \(sk) causal \(causal) mask \(mask != nil)")
        }
    }

    /// LSTM and GRU against a step-by-step float64 reference, both directions, with and without
    /// initial states.
    func testRecurrent() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for (trial, dir) in [RecurrentDirection.forward, .bidirectional, .reverse].enumerated() {
            for isLSTM in [true, false] {
                let b = Int.random(in: 1...3, using: &rng), s = Int.random(in: 1...6, using: &rng)
                let i = Int.random(in: 1...9, using: &rng), h = Int.random(in: 1...8, using: &rng)
                let d = dir.count, gates = isLSTM ? 4 : 3
                let x = randomTensor([b, s, i], &rng), w = randomTensor([d, gates * h, i], &rng)
                let r = randomTensor([d, gates * h, h], &rng), bias = randomTensor([d, 2 * gates * h], &rng)
                let h0: Tensor? = trial > 0 ? randomTensor([d, b, h], &rng) : nil
                let c0: Tensor? = trial > 0 && isLSTM ? randomTensor([d, b, h], &rng) : nil
                let attrs = RecurrentAttributes(hiddenSize: h, direction: dir)
                let op: Op = isLSTM ? .lstm(attrs) : .gru(attrs)
                let ins: [Tensor?] = isLSTM ? [x, w, r, bias, h0, c0] : [x, w, r, bias, h0]
                let outs = try runOpenCLNode(op, ins, constantIndices: [1, 2, 3], outputs: isLSTM ? 3 : 2, device: device)
                var y = [Double](repeating: 0, count: b * s * d * h)
                var hn = [Double](repeating: 0, count: d * b * h), cn = hn
                for dd in 0..<d { for bb in 0..<b {
                    let stateBase = (dd * b + bb) * h
                    var hs = [Double](repeating: 0, count: h), cs = hs
                    for j in 0..<h {
                        if let h0 { hs[j] = Double(h0[flat: stateBase + j]) }
                        if let c0 { cs[j] = Double(c0[flat: stateBase + j]) }
                    }
                    let reverse = dd == 1 || dir == .reverse
                    for step in 0..<s {
                        let t = reverse ? s - 1 - step : step
                        func pre(_ gate: Int, _ j: Int) -> (Double, Double) {
                            let row = gate * h + j
                            var xi = Double(bias[flat: dd * 2 * gates * h + row]), hr = Double(bias[flat: dd * 2 * gates * h + gates * h + row])
                            for e in 0..<i { xi += Double(w[flat: (dd * gates * h + row) * i + e]) * Double(x[flat: (bb * s + t) * i + e]) }
                            for e in 0..<h { hr += Double(r[flat: (dd * gates * h + row) * h + e]) * hs[e] }
                            return (xi, hr)
                        }
                        var newH = hs
                        for j in 0..<h {
                            if isLSTM {
                                let a = (0..<4).map { let p = pre($0, j); return p.0 + p.1 }
                                cs[j] = sigmoid(a[1]) * cs[j] + sigmoid(a[0]) * tanh(a[2])
                                newH[j] = sigmoid(a[3]) * tanh(cs[j])
                            } else {
                                let pr = pre(0, j), pz = pre(1, j), pn = pre(2, j)
                                let rg = sigmoid(pr.0 + pr.1), z = sigmoid(pz.0 + pz.1)
                                let n = tanh(pn.0 + rg * pn.1)
                                newH[j] = (1 - z) * n + z * hs[j]
                            }
                        }
                        hs = newH
                        for j in 0..<h { y[(bb * s + t) * d * h + dd * h + j] = hs[j] }
                    }
                    for j in 0..<h { hn[(dd * b + bb) * h + j] = hs[j]; cn[(dd * b + bb) * h + j] = cs[j] }
                } }
                let what = "\(isLSTM ? "lstm" : "gru") \(dir) b \(b) s \(s) i \(i) h \(h)"
                assertClose(outs[0], y, rtol: 1e-4, atol: 1e-5, what + " y")
                assertClose(outs[1], hn, rtol: 1e-4, atol: 1e-5, what + " h_n")
                if isLSTM { assertClose(outs[2], cn, rtol: 1e-4, atol: 1e-5, what + " c_n") }
            }
        }
    }
}
