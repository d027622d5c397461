// Shared machinery for the OpenCL tests: the device under test (skipping cleanly when there is
// none), one op run through a compiled single-node graph, and the same random / reference helpers
// as the CPU tests. Programs are cached by the device, so tests of one kernel family share builds.

import Foundation
@_exported import QuarryTestSupport
import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest

/// The device the tests run on: QUARRY_TEST_OPENCL_DEVICE (default opencl:0), or a skip.
func testDevice() throws -> OpenCLDevice {
    let spec = ProcessInfo.processInfo.environment["QUARRY_TEST_OPENCL_DEVICE"] ?? "opencl:0"
    guard !OpenCLRuntime.devices().isEmpty else {
        throw XCTSkip("no OpenCL device: \(OpenCLRuntime.discoveryError ?? "none found")")
    }
    return try OpenCLRuntime.device(spec: spec)
}

/// Runs `op` on the OpenCL device as a one-node graph. Operands in `constantIndices` become
/// parameters (weights uploaded once, packed as the backend packs them); the others are inputs.
/// The device writes into fresh output tensors, and the arena is filled with NaN first so that
/// an unwritten element shows up.
func runOpenCLNode(
    _ op: Op, _ inputs: [Tensor?], constantIndices: Set<Int> = [], outputs: Int = 1,
    device: OpenCLDevice
) throws -> [Tensor] {
    var graphInputs: [GraphInput] = []
    var params: [String: Parameter] = [:]
    var feeds: [String: Tensor] = [:]
    var names: [String] = []
    for (i, t) in inputs.enumerated() {
        guard let t else { names.append(""); continue }
        let name = "in\(i)"
        names.append(name)
        if constantIndices.contains(i) {
            params[name] = Parameter(shape: t.shape, initializer: .constant(0), value: t)
        } else {
            graphInputs.append(GraphInput(name: name, shape: t.shape.map { .fixed($0) }))
            feeds[name] = t
        }
    }
    let outNames = (0..<outputs).map { "out\($0)" }
    let node = Node(name: "node", op: op, inputs: names, outputs: outNames)
    let graph = Graph(inputs: graphInputs, nodes: [node], parameters: params, outputs: outNames)
    let compiled = try device.compile(graph, outputs: outNames) as! OpenCLCompiledGraph
    try compiled.poisonArena(inputShapes: feeds.mapValues(\.shape))
    let result = try compiled.run(feeds)
    XCTAssertTrue(compiled.fallbacks.isEmpty, "\(op.name) fell back to the CPU: \(compiled.fallbacks)")
    return outNames.map { result[$0]! }
}

