// Host-mapped input buffers (CL_MEM_ALLOC_HOST_PTR): a tensor in one runs a graph exactly as an
// ordinary tensor does, and its buffer is reused for the next tensor of the same size.

import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest

final class HostMappedTests: XCTestCase {
    func testHostMappedInputRunsLikeOrdinaryMemoryAndIsReused() throws {
        let device = try testDevice()
        var rng = SeededGenerator(seed: 41)
        let b = GraphBuilder()
        let x = b.input("x", shape: [.fixed(3), .fixed(5), .fixed(7)])
        let square = b.add("square", .binary(.mul, activation: nil), x, x)
        let y = b.add("y", .activation(.relu), square)
        let graph = b.build(outputs: [y])
        let compiled = try device.compile(graph, outputs: ["y"])

        let pool = HostMappedPool(device: device)
        for round in 0..<3 {
            let ordinary = Tensor.random(shape: [3, 5, 7], in: -2...2, using: &rng)
            let mapped = try pool.tensor(shape: [3, 5, 7])
            mapped.pointer.update(from: ordinary.pointer, count: ordinary.count)
            let expected = ordinary.scalars.map { max($0 * $0, 0) }
            XCTAssertEqual(try compiled.run(["x": mapped])["y"]!.scalars, expected, "round \(round)")
            XCTAssertEqual(try compiled.run(["x": ordinary])["y"]!.scalars, expected, "round \(round)")
        }
        XCTAssertEqual(pool.buffersMade, 1, "each round's tensor was gone before the next: one buffer serves all")
        let held = try pool.tensor(shape: [3, 5, 7])
        let other = try pool.tensor(shape: [3, 5, 7])
        XCTAssertNotEqual(held.pointer, other.pointer)
        XCTAssertEqual(pool.buffersMade, 2)
        XCTAssertThrowsError(try Tensor(shape: [4, 5, 7], sharing: held.storage))
    }
}
