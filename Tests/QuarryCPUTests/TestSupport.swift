// Running one op through the CPU kernel factory with its outputs poisoned with NaN, so that an
// element a kernel forgets to write shows up. Random inputs and the float64 comparison live in
// QuarryTestSupport, shared with the OpenCL tests.

import Foundation
@_exported import QuarryTestSupport
import Quarry
import QuarryCPU
import XCTest

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
