// Shared test machinery: fresh random inputs, outputs poisoned with NaN before each run so that an
// element a kernel forgets to write shows up, and comparison against a float64 reference.

import Foundation
import Quarry
import QuarryCPU
import XCTest

/// A generator seeded from the clock, printed so that a failing case can be replayed with
/// QUARRY_TEST_SEED.
func makeTestRNG(file: StaticString = #filePath, line: UInt = #line) -> SeededGenerator {
    let seed = ProcessInfo.processInfo.environment["QUARRY_TEST_SEED"].flatMap { UInt64($0) }
        ?? UInt64(Date().timeIntervalSince1970 * 1e6)
    print("test seed \(seed) (\(file):\(line))")
    return SeededGenerator(seed: seed)
}

func randomTensor(_ shape: [Int], _ rng: inout SeededGenerator, in range: ClosedRange<Float> = -1...1) -> Tensor {
    Tensor.random(shape: shape, in: range, using: &rng)
}

/// Float64 copy of a tensor's values, for references.
func doubles(_ t: Tensor) -> [Double] { t.scalars.map(Double.init) }

/// Runs one op through the CPU kernel factory. Operands listed in `constantIndices` are passed as
/// constants (weights the kernel may pre-pack). Outputs are poisoned with NaN first.
func runCPUNode(
    _ op: Op, _ inputs: [Tensor?], constantIndices: Set<Int> = [], threads: Int? = nil
) throws -> [Tensor] {
    let inputNames = inputs.enumerated().map { $0.element == nil ? "" : "in\($0.offset)" }
    let shapesIn = inputs.map { $0?.shape }
    let outShapes = try inferOutputShapes(op, shapesIn)
    let node = Node(name: "node", op: op, inputs: inputNames, outputs: outShapes.indices.map { "out\($0)" })
    var constants: [Int: Tensor] = [:]
    for i in constantIndices { if let t = inputs[i] { constants[i] = t } }
    let ctx = KernelContext(
        node: node, inputShapes: shapesIn, outputShapes: outShapes, constants: constants,
        threads: CPUThreads(count: threads), packCache: PackCache())
    let kernel = try CPUKernels.make(ctx)
    let outs = outShapes.map { Tensor(shape: $0, repeating: .nan) }
    kernel(inputs.map { $0.map { UnsafePointer($0.pointer) } }, outs.map { $0.pointer })
    return outs
}

/// The output shapes of `op` on operands of these shapes, via the graph's shape inference.
func inferOutputShapes(_ op: Op, _ shapes: [[Int]?]) throws -> [[Int]] {
    for count in 1...4 {
        let names = shapes.enumerated().map { $0.element == nil ? "" : "in\($0.offset)" }
        let node = Node(name: "node", op: op, inputs: names, outputs: (0..<count).map { "out\($0)" })
        let g = Graph(
            inputs: shapes.enumerated().compactMap { i, s in s.map { GraphInput(name: "in\(i)", shape: $0.map { Dim.fixed($0) }) } },
            nodes: [node], parameters: [:], outputs: [])
        do {
            let all = try g.inferShapes(inputShapes: Dictionary(uniqueKeysWithValues: shapes.enumerated().compactMap { i, s in s.map { ("in\(i)", $0) } }))
            return (0..<count).map { all["out\($0)"]! }
        } catch QuarryError.shapeMismatch(_, let m) where m.contains("outputs, node declares") {
            continue
        }
    }
    throw QuarryError.invalidArgument("could not infer the outputs of \(op.name)")
}

/// Asserts every element is finite and within `atol + rtol * |expected|` of the reference.
func assertClose(
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
