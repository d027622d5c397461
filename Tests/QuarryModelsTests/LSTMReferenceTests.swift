import Foundation
import Quarry
import XCTest
@testable import QuarryModels

// The LSTM network's graph stacks PyTorch's per-layer tensors (weight_ih_lK, weight_hh_lK, bias_ih_lK,
// bias_hh_lK, and _reverse) into the op's [D, 4H, I] / [D, 4H, H] / [D, 8H] operands. This checks the
// mapping end to end against nn.LSTM's equations written plainly in float64 over the named tensors.
final class LSTMReferenceTests: XCTestCase {
    /// nn.LSTM(batch_first=True), zero initial state, gates i, f, g, o.
    func reference(_ g: Graph, _ x: [Double], batch: Int, steps: Int, input: Int, hidden h: Int, layers: Int,
                   bidirectional: Bool) -> [Double] {
        func p(_ name: String) -> [Double] { g.parameters["lstm.\(name)"]!.value!.scalars.map(Double.init) }
        func sigmoid(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
        var seq = x, width = input
        for l in 0..<layers {
            let dirs = bidirectional ? ["", "_reverse"] : [""]
            var out = [Double](repeating: 0, count: batch * steps * dirs.count * h)
            for (d, sfx) in dirs.enumerated() {
                let wih = p("weight_ih_l\(l)\(sfx)"), whh = p("weight_hh_l\(l)\(sfx)")
                let bih = p("bias_ih_l\(l)\(sfx)"), bhh = p("bias_hh_l\(l)\(sfx)")
                for n in 0..<batch {
                    var hs = [Double](repeating: 0, count: h), cs = [Double](repeating: 0, count: h)
                    let order = d == 0 ? Array(0..<steps) : Array((0..<steps).reversed())
                    for t in order {
                        var gates = [Double](repeating: 0, count: 4 * h)
                        for r in 0..<(4 * h) {
                            var s = bih[r] + bhh[r]
                            for k in 0..<width { s += wih[r * width + k] * seq[(n * steps + t) * width + k] }
                            for k in 0..<h { s += whh[r * h + k] * hs[k] }
                            gates[r] = s
                        }
                        for j in 0..<h {
                            let i = sigmoid(gates[j]), f = sigmoid(gates[h + j])
                            let gg = Foundation.tanh(gates[2 * h + j]), o = sigmoid(gates[3 * h + j])
                            cs[j] = f * cs[j] + i * gg
                            hs[j] = o * Foundation.tanh(cs[j])
                            out[(n * steps + t) * dirs.count * h + d * h + j] = hs[j]
                        }
                    }
                }
            }
            seq = out
            width = dirs.count * h
        }
        return seq
    }

    func testGraphMatchesPyTorchEquations() throws {
        for bidirectional in [false, true] {
            let (batch, steps, input, hidden, layers) = (2, 5, 3, 4, 2)
            var g = try LSTMNetwork.build(LSTMNetworkConfig(inputSize: input, hiddenSize: hidden, layers: layers,
                                                            bidirectional: bidirectional))
            g.materializeParameters(seed: 17)
            var rng = SeededGenerator(seed: 23)
            let x = Tensor.random(shape: [batch, steps, input], in: -1...1, using: &rng)
            let y = try runOnCPU(g, ["input": x], outputs: ["lstm"])["lstm"]!
            let expected = reference(g, x.scalars.map(Double.init), batch: batch, steps: steps, input: input,
                                     hidden: hidden, layers: layers, bidirectional: bidirectional)
            XCTAssertEqual(y.shape, [batch, steps, (bidirectional ? 2 : 1) * hidden])
            for (a, e) in zip(y.scalars, expected) { XCTAssertEqual(Double(a), e, accuracy: 1e-5 + 1e-4 * abs(e)) }
        }
    }
}
