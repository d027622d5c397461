// Activations against Foundation's double-precision functions, over a range wide enough to reach
// both tails of every approximation, including the vector tail (counts not a multiple of 16).

import Foundation
import Quarry
@testable import QuarryCPU
import XCTest

final class ActivationTests: XCTestCase {
    /// Where float evaluation itself cancels (1 + tanh in gelu's tail, a·x + b near 0 in the
    /// hard sigmoid), the bound is absolute: 1e-7, a few ulp of the terms that cancel.
    func tailFloor(_ act: Activation) -> Double {
        switch act {
        case .gelu, .hardSigmoid, .hardSwish: return 1e-7
        default: return 1e-30
        }
    }

    func testEveryActivationMatchesDoubleReference() throws {
        var rng = makeTestRNG()
        let acts: [Activation] = [
            .relu, .relu6, .clip(min: -0.5, max: 2), .leakyRelu(alpha: 0.1), .sigmoid,
            .hardSigmoid(alpha: 0.2, beta: 0.5), .tanh, .silu, .mish, .gelu(approximate: false),
            .gelu(approximate: true), .hardSwish, .sqrt, .exp, .log, .neg, .abs, .erf, .reciprocal,
            .sin, .cos, .floor, .ceil, .round, .trunc, .softplus, .elu(alpha: 0.7), .selu(alpha: 1.67326, gamma: 1.0507),
            .not, .sign,
        ]
        for act in acts {
            let count = Int.random(in: 1...300, using: &rng)
            let positive: Bool
            switch act { case .sqrt, .log: positive = true; default: positive = false }
            let range: ClosedRange<Float> = positive ? 0.001...50 : -12...12
            let x = randomTensor([count], &rng, in: range)
            // Points around the switch-over between approximations and far into the tails.
            let specials: [Float] = positive ? [0.001, 1, 2, 40] : [0, 0.3, -0.3, 0.62, -0.63, 0.7, -0.72, 5, -5, 30, -30, 80, -80, 2.5, -0.5, 1e-5, -1e-5]
            for (i, s) in specials.enumerated() where i < count { x[flat: i] = s }
            // Every kernel level the host has (the transcendental ones run in CQuarryKernels).
            try CPUInstructionSet.forEachAvailable { level in
                for threads in [1, 2] {
                    let y = try runCPUNode(.activation(act), [x], threads: threads)[0]
                    let expected = x.scalars.map { referenceActivation(act, Double($0)) }
                    // 2e-6 relative; the absolute floor covers results that underflow towards 0.
                    assertClose(y, expected, rtol: 2e-6, atol: tailFloor(act), "\(act) \(level)")
                }
            }
        }
    }

    func testTranscendentalsOnADenseGrid() {
        // exp, tanh, erf and exact gelu sampled every 1/64 over [-20, 20].
        let xs = (-1280...1280).map { Float($0) / 64 }
        let t = Tensor(shape: [xs.count], repeating: 0)
        for (name, act) in [("exp", Activation.exp), ("tanh", .tanh), ("erf", .erf), ("gelu", .gelu(approximate: false)), ("sigmoid", .sigmoid), ("mish", .mish)] {
            CPUInstructionSet.forEachAvailable { level in
                for (i, x) in xs.enumerated() { t[flat: i] = x }
                applyActivation(act, t.pointer, count: xs.count)
                assertClose(t, xs.map { referenceActivation(act, Double($0)) }, rtol: 2e-6, atol: tailFloor(act), "\(name) \(level)")
            }
        }
    }

    func testExpOverflowAndUnderflowLikeFloatExp() {
        CPUInstructionSet.forEachAvailable { _ in expOverflowAndUnderflow() }
    }

    private func expOverflowAndUnderflow() {
        let t = try! Tensor(shape: [4], scalars: [100, -100, 88.5, -87])
        applyActivation(.exp, t.pointer, count: 4)
        XCTAssertEqual(t[flat: 0], .infinity)
        XCTAssertEqual(t[flat: 1], 0)
        XCTAssertEqual(Double(t[flat: 2]), Foundation.exp(88.5), accuracy: Foundation.exp(88.5) * 2e-6)
        XCTAssertEqual(Double(t[flat: 3]), Foundation.exp(-87.0), accuracy: Foundation.exp(-87.0) * 2e-6)
    }
}
