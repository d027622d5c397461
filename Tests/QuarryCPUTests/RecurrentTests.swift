// LSTM and GRU against float64 step-by-step references written from the equations in
// Recurrent.swift's header (PyTorch's gate order and bias layout).

import Foundation
import Quarry
import QuarryCPU
import XCTest

final class RecurrentTests: XCTestCase {
    func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    /// Returns (y, h_n, c_n) flattened.
    func reference(
        isLSTM: Bool, lbr: Bool, x: Tensor, w: Tensor, r: Tensor, bias: Tensor?, h0: Tensor?, c0: Tensor?,
        hidden h: Int, direction: RecurrentDirection
    ) -> ([Double], [Double], [Double]) {
        let (b, s, inp) = (x.shape[0], x.shape[1], x.shape[2])
        let dirs = direction.count, g = isLSTM ? 4 : 3
        let xd = doubles(x), wd = doubles(w), rd = doubles(r)
        let bd = bias.map(doubles) ?? [Double](repeating: 0, count: dirs * 2 * g * h)
        var y = [Double](repeating: 0, count: b * s * dirs * h)
        var hn = [Double](repeating: 0, count: dirs * b * h), cn = hn
        for d in 0..<dirs {
            let reverse = d == 1 || direction == .reverse
            for bi in 0..<b {
                var hs = (0..<h).map { j in h0.map { Double($0[flat: (d * b + bi) * h + j]) } ?? 0 }
                var cs = (0..<h).map { j in c0.map { Double($0[flat: (d * b + bi) * h + j]) } ?? 0 }
                for step in 0..<s {
                    let t = reverse ? s - 1 - step : step
                    // Wx + Wb and Rh + Rb per gate row.
                    func wx(_ row: Int) -> Double {
                        var a = bd[d * 2 * g * h + row]
                        for i in 0..<inp { a += wd[(d * g * h + row) * inp + i] * xd[(bi * s + t) * inp + i] }
                        return a
                    }
                    func rh(_ row: Int, _ hv: [Double]) -> Double {
                        var a = bd[d * 2 * g * h + g * h + row]
                        for k in 0..<h { a += rd[(d * g * h + row) * h + k] * hv[k] }
                        return a
                    }
                    var newH = [Double](repeating: 0, count: h)
                    if isLSTM {
                        for j in 0..<h {
                            let i = sigmoid(wx(j) + rh(j, hs)), f = sigmoid(wx(h + j) + rh(h + j, hs))
                            let gg = Foundation.tanh(wx(2 * h + j) + rh(2 * h + j, hs)), o = sigmoid(wx(3 * h + j) + rh(3 * h + j, hs))
                            cs[j] = f * cs[j] + i * gg
                            newH[j] = o * Foundation.tanh(cs[j])
                        }
                    } else {
                        let rg = (0..<h).map { j in sigmoid(wx(j) + rh(j, hs)) }
                        let rTimesH = (0..<h).map { rg[$0] * hs[$0] }
                        for j in 0..<h {
                            let z = sigmoid(wx(h + j) + rh(h + j, hs))
                            let n = lbr ? Foundation.tanh(wx(2 * h + j) + rg[j] * rh(2 * h + j, hs))
                                        : Foundation.tanh(wx(2 * h + j) + rh(2 * h + j, rTimesH))
                            newH[j] = (1 - z) * n + z * hs[j]
                        }
                    }
                    hs = newH
                    for j in 0..<h { y[(bi * s + t) * dirs * h + d * h + j] = hs[j] }
                }
                for j in 0..<h { hn[(d * b + bi) * h + j] = hs[j]; cn[(d * b + bi) * h + j] = cs[j] }
            }
        }
        return (y, hn, cn)
    }

    /// Checks one configuration under every instruction-set level the host has (the recurrent
    /// product and the LSTM cell run in CQuarryKernels' variant of that level).
    func check(isLSTM: Bool, lbr: Bool, batch: Int, steps: Int, input: Int, hidden: Int,
               direction: RecurrentDirection, withBias: Bool, withState: Bool, constants: Bool, threads: Int,
               _ rng: inout SeededGenerator) throws {
        try CPUInstructionSet.forEachAvailable { level in
            try checkOnce(isLSTM: isLSTM, lbr: lbr, batch: batch, steps: steps, input: input, hidden: hidden,
                          direction: direction, withBias: withBias, withState: withState, constants: constants,
                          threads: threads, level: level, &rng)
        }
    }

    func checkOnce(isLSTM: Bool, lbr: Bool, batch: Int, steps: Int, input: Int, hidden: Int,
                   direction: RecurrentDirection, withBias: Bool, withState: Bool, constants: Bool, threads: Int,
                   level: CPUInstructionSet, _ rng: inout SeededGenerator) throws {
        let dirs = direction.count, g = isLSTM ? 4 : 3
        let x = randomTensor([batch, steps, input], &rng)
        let w = randomTensor([dirs, g * hidden, input], &rng, in: -0.5...0.5)
        let r = randomTensor([dirs, g * hidden, hidden], &rng, in: -0.5...0.5)
        let bias = withBias ? randomTensor([dirs, 2 * g * hidden], &rng) : nil
        let h0 = withState ? randomTensor([dirs, batch, hidden], &rng) : nil
        let c0 = withState && isLSTM ? randomTensor([dirs, batch, hidden], &rng) : nil
        let attrs = RecurrentAttributes(hiddenSize: hidden, direction: direction, linearBeforeReset: lbr)
        let op: Op = isLSTM ? .lstm(attrs) : .gru(attrs)
        let operands: [Tensor?] = isLSTM ? [x, w, r, bias, h0, c0] : [x, w, r, bias, h0]
        let outs = try runCPUNode(op, operands, constantIndices: constants ? [1, 2, 3] : [], threads: threads)
        let (y, hn, cn) = reference(isLSTM: isLSTM, lbr: lbr, x: x, w: w, r: r, bias: bias, h0: h0, c0: c0, hidden: hidden, direction: direction)
        let what = "\(level) \(op.name) lbr \(lbr) b\(batch) s\(steps) i\(input) h\(hidden) \(direction) bias \(withBias) state \(withState) threads \(threads)"
        XCTAssertEqual(outs.count, isLSTM ? 3 : 2)
        assertClose(outs[0], y, rtol: 1e-4, atol: 1e-5, "y " + what)
        assertClose(outs[1], hn, rtol: 1e-4, atol: 1e-5, "h_n " + what)
        if isLSTM { assertClose(outs[2], cn, rtol: 1e-4, atol: 1e-5, "c_n " + what) }
    }

    func testLSTMAndGRURandomConfigurations() throws {
        var rng = makeTestRNG()
        let directions: [RecurrentDirection] = [.forward, .reverse, .bidirectional]
        for trial in 0..<18 {
            try check(
                isLSTM: trial % 3 == 0, lbr: trial % 3 == 1, batch: Int.random(in: 1...5, using: &rng),
                steps: Int.random(in: 1...6, using: &rng), input: Int.random(in: 1...19, using: &rng),
                hidden: Int.random(in: 1...37, using: &rng), direction: directions[trial % 3 == 0 ? trial / 3 % 3 : trial % 3],
                withBias: trial % 4 != 3, withState: trial % 2 == 0, constants: trial % 5 != 0, threads: trial % 2 + 1, &rng)
        }
    }

    func testStepSplitAcrossThreadsByUnitBlocks() throws {
        // Large enough (batch · H · gates · H rounded ≥ 2^16) that a step is split over unit
        // blocks by a team of two threads: wide layers over two steps, and narrower ones over seven
        // steps, so that the team passes many barriers and uses both h buffers in turn (the
        // narrow ones keep float32's accumulated error within the bound over that many steps).
        var rng = makeTestRNG()
        try check(isLSTM: true, lbr: true, batch: 4, steps: 2, input: 5, hidden: 520, direction: .forward,
                  withBias: true, withState: true, constants: true, threads: 2, &rng)
        try check(isLSTM: false, lbr: false, batch: 8, steps: 2, input: 4, hidden: 420, direction: .forward,
                  withBias: true, withState: true, constants: false, threads: 2, &rng)
        try check(isLSTM: true, lbr: true, batch: 5, steps: 7, input: 6, hidden: 64, direction: .reverse,
                  withBias: true, withState: true, constants: true, threads: 2, &rng)
        try check(isLSTM: false, lbr: false, batch: 8, steps: 7, input: 3, hidden: 61, direction: .forward,
                  withBias: true, withState: true, constants: true, threads: 2, &rng)
    }

    func testBatchOneSingleRowPath() throws {
        // Batch 1 takes the one-row product: 64-column parts (LSTM, GRU with linearBeforeReset),
        // 32- and 16-column parts (GRU), odd and even H, with padded unit blocks.
        var rng = makeTestRNG()
        for (trial, hidden) in [37, 16, 67, 200].enumerated() {
            for kind in 0..<3 {
                try check(isLSTM: kind == 0, lbr: kind == 1, batch: 1, steps: Int.random(in: 2...4, using: &rng),
                          input: Int.random(in: 1...9, using: &rng), hidden: hidden,
                          direction: trial == 2 ? .bidirectional : .forward, withBias: true, withState: kind != 2,
                          constants: trial % 2 == 0, threads: 2, &rng)
            }
        }
    }

    func testEightRowProductWithRemainders() throws {
        // Batches of 8 and more take the eight-row product, the rest of the rows the four-row one.
        var rng = makeTestRNG()
        for (trial, batch) in [8, 9, 13, 16].enumerated() {
            for kind in 0..<3 {
                try check(isLSTM: kind == 0, lbr: kind == 1, batch: batch, steps: Int.random(in: 1...3, using: &rng),
                          input: Int.random(in: 1...7, using: &rng), hidden: [21, 16, 35, 40][trial],
                          direction: trial == 1 ? .bidirectional : .forward, withBias: kind != 1, withState: trial % 2 == 0,
                          constants: kind != 2, threads: trial % 2 + 1, &rng)
            }
        }
    }
}
