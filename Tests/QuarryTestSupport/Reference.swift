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
