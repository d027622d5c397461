// Test machinery shared by every test target: fresh random inputs from a seed that is printed (and
// can be replayed with QUARRY_TEST_SEED), and comparison against a float64 reference.

import Foundation
import Quarry
import XCTest

/// A generator seeded from the clock, printed so that a failing case can be replayed with
/// QUARRY_TEST_SEED.
public func makeTestRNG(file: StaticString = #filePath, line: UInt = #line) -> SeededGenerator {
    let seed = ProcessInfo.processInfo.environment["QUARRY_TEST_SEED"].flatMap { UInt64($0) }
        ?? UInt64(Date().timeIntervalSince1970 * 1e6)
    print("test seed \(seed) (\(file):\(line))")
    return SeededGenerator(seed: seed)
}

public func randomTensor(_ shape: [Int], _ rng: inout SeededGenerator, in range: ClosedRange<Float> = -1...1) -> Tensor {
    Tensor.random(shape: shape, in: range, using: &rng)
}

/// Float64 copy of a tensor's values, for references.
public func doubles(_ t: Tensor) -> [Double] { t.scalars.map(Double.init) }

/// Asserts every element is finite and within `atol + rtol * |expected|` of the reference.
public func assertClose(
    _ actual: Tensor, _ expected: [Double], rtol: Double = 1e-4, atol: Double = 1e-5,
    _ what: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, "element count \(what())", file: file, line: line)
    var worst = 0.0, worstIndex = -1
    for i in 0..<min(actual.count, expected.count) {
        let a = Double(actual[flat: i]), e = expected[i]
        if !a.isFinite && e.isFinite {
            XCTFail("\(what()): element \(i) is \(a) (unwritten or overflowed), expected \(e)", file: file, line: line)
            return
        }
        let err = abs(a - e) / (atol + rtol * abs(e))
        if err > worst { worst = err; worstIndex = i }
    }
    if worst > 1 {
        XCTFail("\(what()): element \(worstIndex) is \(actual[flat: worstIndex]), expected \(expected[worstIndex]) (error \(worst)x the bound)", file: file, line: line)
    }
}

/// An activation in float64, written out from its definition; the reference for every kernel
/// that applies one (standalone, or fused into a conv / dense / GEMM epilogue), on each backend.
public func referenceActivation(_ act: Activation, _ x: Double) -> Double {
    switch act {
    case .relu: return max(x, 0)
    case .clip(let lo, let hi): return min(max(x, Double(lo)), Double(hi))
    case .leakyRelu(let a): return x >= 0 ? x : Double(a) * x
    case .sigmoid: return 1 / (1 + Foundation.exp(-x))
    case .hardSigmoid(let a, let b): return min(max(Double(a) * x + Double(b), 0), 1)
    case .tanh: return Foundation.tanh(x)
    case .silu: return x / (1 + Foundation.exp(-x))
    case .mish: return x * Foundation.tanh(Foundation.log1p(Foundation.exp(x)))
    case .gelu(let approximate):
        if approximate {
            return 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        }
        // erfc rather than 1 + erf: exact in the far negative tail, where 1 + erf cancels.
        return 0.5 * x * Foundation.erfc(-x / 2.0.squareRoot())
    case .hardSwish: return x * min(max(x + 3, 0), 6) / 6
    case .sqrt: return x.squareRoot()
    case .exp: return Foundation.exp(x)
    case .log: return Foundation.log(x)
    case .neg: return -x
    case .abs: return Swift.abs(x)
    case .erf: return Foundation.erf(x)
    case .reciprocal: return 1 / x
    case .sin: return Foundation.sin(x)
    case .cos: return Foundation.cos(x)
    case .floor: return x.rounded(.down)
    case .ceil: return x.rounded(.up)
    case .round: return x.rounded(.toNearestOrEven)
    case .trunc: return x.rounded(.towardZero)
    case .softplus: return Foundation.log1p(Foundation.exp(x))
    case .elu(let a): return x > 0 ? x : Double(a) * Foundation.expm1(x)
    case .selu(let a, let g): return Double(g) * (x > 0 ? x : Double(a) * Foundation.expm1(x))
    case .not: return x == 0 ? 1 : 0
    case .sign: return x > 0 ? 1 : (x < 0 ? -1 : 0)
    }
}
