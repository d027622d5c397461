// Batch lanes: with several threads and at least one row each, the CPU runs a batch as slices of
// rows, one per thread, each through its own single-threaded plan. Every row must come back
// exactly as a run of that row alone gives it, whatever the split; graphs that mix rows, or that
// cannot take a slice's shapes, must run whole.

import Quarry
@testable import QuarryCPU
import XCTest

final class BatchLaneTests: XCTestCase {
    /// conv 3x3 (relu), then the rows flattened (a reshape to [batch, -1] when the batch is fixed,
    /// as an ONNX import folds it) into a dense layer; `reduceRows` adds a sum over the batch.
    func graph(batch: Dim, reduceRows: Bool = false, seed: UInt64 = 11) -> Graph {
        var rng = SeededGenerator(seed: seed)
        let b = GraphBuilder()
        let x = b.input("x", shape: [batch, .fixed(3), .fixed(7), .fixed(6)])
        let w = b.constant("w", randomTensor([4, 3, 3, 3], &rng))
        let bias = b.constant("b", randomTensor([4], &rng))
        let conv = b.add("conv", .conv2d(Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), activation: .relu)), x, w, bias)
        let flat: Value
        if case .fixed(let n) = batch {
            flat = b.add("flat", .reshape(shape: [n, -1]), conv)
        } else {
            flat = b.add("flat", .flatten(axis: 1), conv)
        }
        let fw = b.constant("fw", randomTensor([5, 4 * 7 * 6], &rng))
        let fb = b.constant("fb", randomTensor([5], &rng))
        var out = b.add("fc", .dense(activation: nil), flat, fw, fb)
        if reduceRows { out = b.add("sum", .reduce(.sum, axes: [0], keepDims: false), out) }
        return b.build(outputs: [out])
    }

    /// Each row of `batch` run alone on one thread.
    func rowByRow(_ g: Graph, _ input: Tensor, output: String) throws -> [Tensor] {
        let one = try CPUDevice(threads: 1).compile(g, outputs: [output])
        return try (0..<input.shape[0]).map { r in
            try one.run(["x": Tensor.stacking(rowsOf: [input.rows(r..<r + 1)])])[output]!
        }
    }

    func testEveryRowMatchesItsRunAlone() throws {
        var rng = makeTestRNG()
        let g = graph(batch: .symbol("batch"))
        let laned = try XCTUnwrap(CPUDevice(threads: 2).compile(g, outputs: ["fc"]) as? CPUCompiledGraph)
        for rows in [2, 3, 5, 8] {
            let input = randomTensor([rows, 3, 7, 6], &rng)
            let got = try laned.run(["x": input])["fc"]!
            XCTAssertEqual(laned.lastRunLanes, 2, "batch \(rows)")
            XCTAssertEqual(got.shape, [rows, 5])
            for (r, alone) in try rowByRow(g, input, output: "fc").enumerated() {
                assertClose(got.rows(r..<r + 1), doubles(alone), "batch \(rows) row \(r)")
            }
        }
        // One row: nothing to split.
        _ = try laned.run(["x": randomTensor([1, 3, 7, 6], &rng)])
        XCTAssertEqual(laned.lastRunLanes, 1)
    }

    func testGraphThatMixesRowsRunsWhole() throws {
        var rng = makeTestRNG()
        let g = graph(batch: .symbol("batch"), reduceRows: true)
        let laned = try XCTUnwrap(CPUDevice(threads: 2).compile(g, outputs: ["sum"]) as? CPUCompiledGraph)
        let input = randomTensor([4, 3, 7, 6], &rng)
        let got = try laned.run(["x": input])["sum"]!
        XCTAssertEqual(laned.lastRunLanes, 1, "a sum over the batch cannot be split by rows")
        let rows = try rowByRow(graph(batch: .symbol("batch")), input, output: "fc")
        var expected = [Double](repeating: 0, count: 5)
        for row in rows { for (j, v) in doubles(row).enumerated() { expected[j] += v } }
        assertClose(got, expected, "sum over rows")
    }

    func testFixedBatchGraphSplitsOnlyWithGraphsForItsSlices() throws {
        var rng = makeTestRNG()
        let input = randomTensor([5, 3, 7, 6], &rng)
        let alone = try rowByRow(graph(batch: .symbol("batch")), input, output: "fc")
        for withSlices in [false, true] {
            let c = try XCTUnwrap(CPUDevice(threads: 2).compile(graph(batch: .fixed(5)), outputs: ["fc"]) as? CPUCompiledGraph)
            if withSlices { c.graphForShapes = { self.graph(batch: .fixed($0["x"]![0])) } }
            let got = try c.run(["x": input])["fc"]!
            XCTAssertEqual(c.lastRunLanes, withSlices ? 2 : 1)
            for r in 0..<5 {
                assertClose(got.rows(r..<r + 1), doubles(alone[r]), "row \(r), slices \(withSlices)")
            }
        }
    }

    /// Requested outputs are computed in the caller's buffers (a layout op's input in its
    /// output's): an intermediate output that later layers read ("conv", read by "flat" and
    /// "fc"), one reached through a flatten ("flat": "conv" writes into it), and two outputs
    /// sharing bytes (copied), in one lane and in two. Every set must give the values of the
    /// copy path, and "fc" must be the dense layer of the returned "flat".
    func testOutputsComputedInTheCallersBuffers() throws {
        var rng = makeTestRNG()
        let g = graph(batch: .symbol("batch"))
        let fw = try XCTUnwrap(g.parameters["fw"]?.value), fb = try XCTUnwrap(g.parameters["fb"]?.value)
        for threads in [1, 2] {
            let input = randomTensor([3, 3, 7, 6], &rng)
            // conv and flat share their bytes: both copied out after the run.
            let copied = try CPUDevice(threads: threads).compile(g, outputs: ["conv", "flat", "fc"]).run(["x": input])
            let flat = try XCTUnwrap(copied["flat"])
            var expected = [Double](repeating: 0, count: 3 * 5)
            for r in 0..<3 {
                for j in 0..<5 {
                    var sum = Double(fb[flat: j])
                    for k in 0..<(4 * 7 * 6) { sum += Double(flat[flat: r * 168 + k]) * Double(fw[flat: j * 168 + k]) }
                    expected[r * 5 + j] = sum
                }
            }
            assertClose(copied["fc"]!, expected, "fc, threads \(threads)")
            XCTAssertEqual(copied["conv"]!.scalars, flat.scalars)
            for outputs in [["conv", "fc"], ["flat", "fc"], ["fc"], ["conv"]] {
                let got = try CPUDevice(threads: threads).compile(g, outputs: outputs).run(["x": input])
                for name in outputs {
                    XCTAssertEqual(got[name]!.scalars, copied[name]!.scalars, "\(name) of \(outputs), threads \(threads)")
                }
            }
        }
    }
}
