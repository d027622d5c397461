import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest
@testable import QuarryFormats

/// The index ops as an exporter writes them: a top-k selection whose int64 indices feed the
/// gathers at run time (PyTorch's `scores.topk(k)` then `torch.gather` / advanced indexing,
/// exported as TopK → Unsqueeze → GatherND with batch_dims, Gather on axis 1, GatherElements of an
/// ArgMax), a CumSum, and a ScatterND with add into a run-time tensor from run-time updates.
final class OnnxIndexingTests: XCTestCase {
    func int64Tensor(_ name: String, dims: [Int64], values: [Int64]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name; t.dims = dims; t.dataType = 7; t.int64Data = values
        return t
    }

    func attribute(_ name: String, _ v: Int64) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto(); a.name = name; a.type = .int; a.i = v
        return a
    }

    func testTopKSelectionThroughGathersCumSumAndScatterMatchesAPlainReference() throws {
        let (batch, items, width, rows, k) = (2, 7, 5, 4, 3)
        // Scores: a different permutation of distinct values per row (no ties to break).
        let scores = try Tensor(shape: [batch, items], scalars: (0..<(batch * items)).map { i in
            Float((i % items * 5 + i / items * 3) % items) * 0.25 - 0.8
        })
        let feats = try Tensor(shape: [batch, items, width], scalars: (0..<(batch * items * width)).map { Float(sin(Double($0) * 1.3)) })
        let base = try Tensor(shape: [batch, rows, width], scalars: (0..<(batch * rows * width)).map { Float(cos(Double($0) * 0.7)) })

        var topk = node("TopK", ["scores", "K"], ["vals", "idx"], name: "topk")
        topk.attribute = [attribute("axis", -1)]
        var gnd = node("GatherND", ["feats", "idx3"], ["picked"], name: "gather_nd")
        gnd.attribute = [attribute("batch_dims", 1)]
        var gax = node("Gather", ["feats", "idx"], ["g"], name: "gather_axis1")
        gax.attribute = [attribute("axis", 1)]
        var am = node("ArgMax", ["cs"], ["am"], name: "argmax")
        am.attribute = [attribute("axis", 2), attribute("keepdims", 1)]
        var ge = node("GatherElements", ["picked", "am"], ["best"], name: "gather_elements")
        ge.attribute = [attribute("axis", 2)]
        var sc = node("ScatterND", ["base", "sidx", "upd"], ["sc"], name: "scatter_nd")
        var red = Onnx_AttributeProto(); red.name = "reduction"; red.type = .string; red.s = Data("add".utf8)
        sc.attribute = [red]
        let nodes = [
            topk,
            node("Unsqueeze", ["idx", "last"], ["idx3"], name: "unsqueeze"),
            gnd, gax,
            node("CumSum", ["picked", "one"], ["cs"], name: "cumsum"),
            am, ge,
            node("Gather", ["picked", "zero"], ["upd"], name: "first_batch"),
            sc,
        ]
        let inits = [
            int64Tensor("K", dims: [1], values: [Int64(k)]), int64Tensor("last", dims: [1], values: [-1]),
            int64Tensor("one", dims: [], values: [1]), int64Tensor("zero", dims: [], values: [0]),
            // A repeated tuple: both of its updates add up.
            int64Tensor("sidx", dims: [3, 2], values: [0, 1, 1, 3, 0, 1]),
        ]
        let outputs = ["vals", "idx", "picked", "g", "cs", "am", "best", "sc"]
        let data = try modelBytes(nodes: nodes, inputs: [("scores", [2, 7]), ("feats", [2, 7, 5]), ("base", [2, 4, 5])],
                                  outputs: outputs, initializers: inits)
        let graph = try OnnxModel(data: data, path: "indexing.onnx").graph()

        // The reference, written out from the operators' definitions.
        func f(_ t: Tensor, _ i: [Int]) -> Float { t[flat: zip(i, contiguous(t.shape)).reduce(0) { $0 + $1.0 * $1.1 }] }
        var idx = [[Int]](), vals = [[Float]]()
        for b in 0..<batch {
            let order = (0..<items).sorted { f(scores, [b, $0]) > f(scores, [b, $1]) }
            idx.append(Array(order.prefix(k))); vals.append(idx[b].map { f(scores, [b, $0]) })
        }
        var picked = [Float](), g = [Float](), cs = [Float](), amv = [Float](), best = [Float]()
        for b in 0..<batch { for t in 0..<k { for w in 0..<width { picked.append(f(feats, [b, idx[b][t], w])) } } }
        for b in 0..<batch { for i in 0..<batch { for t in 0..<k { for w in 0..<width { g.append(f(feats, [b, idx[i][t], w])) } } } }
        for b in 0..<batch {
            var acc = [Float](repeating: 0, count: width)
            var rowsOut: [[Float]] = []
            for t in 0..<k {
                for w in 0..<width { acc[w] += picked[(b * k + t) * width + w] }
                rowsOut.append(acc)
            }
            for t in 0..<k {
                cs += rowsOut[t]
                let m = rowsOut[t].indices.max { rowsOut[t][$0] < rowsOut[t][$1] || (rowsOut[t][$0] == rowsOut[t][$1] && $0 > $1) }!
                amv.append(Float(m)); best.append(picked[(b * k + t) * width + m])
            }
        }
        var scattered = base.scalars
        for (r, tuple) in [[0, 1], [1, 3], [0, 1]].enumerated() {
            for w in 0..<width { scattered[(tuple[0] * rows + tuple[1]) * width + w] += picked[r * width + w] }
        }
        let expected: [String: ([Int], [Float])] = [
            "vals": ([batch, k], vals.flatMap { $0 }), "idx": ([batch, k], idx.flatMap { $0 }.map(Float.init)),
            "picked": ([batch, k, width], picked), "g": ([batch, batch, k, width], g), "cs": ([batch, k, width], cs),
            "am": ([batch, k, 1], amv), "best": ([batch, k, 1], best), "sc": ([batch, rows, width], scattered),
        ]

        var devices: [Device] = [CPUDevice(threads: 2)]
        if let cl = OpenCLRuntime.devices().first { devices.append(cl) }
        for device in devices {
            let results = try device.compile(graph, outputs: outputs).run(["scores": scores, "feats": feats, "base": base])
            for (name, (shape, values)) in expected {
                let a = try XCTUnwrap(results[name], "\(name) on \(device.info.spec)")
                XCTAssertEqual(a.shape, shape, "\(name) on \(device.info.spec)")
                XCTAssertLessThanOrEqual(closeness(a, try Tensor(shape: shape, scalars: values), rtol: 1e-6, atol: 1e-6), 1,
                                         "\(name) on \(device.info.spec): \(a.scalars) expected \(values)")
            }
            // Runs on the device, not the CPU fallback.
            if let cl = try device.compile(graph, outputs: outputs) as? OpenCLCompiledGraph {
                XCTAssertEqual(cl.fallbacks, [:], "\(device.info.spec)")
            }
        }
    }

    /// Run-time indices are rounded (ties to even) and wrap from [-n, 0); any other value reads
    /// nothing and writes nothing: a gather gives NaN there, ScatterND skips that update (the rule
    /// Op.swift documents), on every device.
    func testOutOfRangeIndicesGiveNaNAndSkipUpdates() throws {
        var gax = node("Gather", ["x", "ids"], ["g"], name: "gather"); gax.attribute = [attribute("axis", 1)]
        var ge = node("GatherElements", ["x", "eids"], ["ge"], name: "gather_elements"); ge.attribute = [attribute("axis", 0)]
        let nodes = [gax, ge, node("GatherND", ["x", "nids"], ["gnd"], name: "gather_nd"),
                     node("ScatterND", ["x", "sids", "u"], ["sc"], name: "scatter_nd")]
        let data = try modelBytes(nodes: nodes, inputs: [("x", [3, 4]), ("ids", [2, 3]), ("eids", [1, 4]), ("nids", [3, 2]),
                                                         ("sids", [4, 2]), ("u", [4])], outputs: ["g", "ge", "gnd", "sc"])
        let graph = try OnnxModel(data: data, path: "oob.onnx").graph()
        let x = try Tensor(shape: [3, 4], scalars: (0..<12).map { Float($0) + 0.5 })
        let nan = Float.nan
        let feeds = [
            "x": x,
            // 1.6 -> 2, -1 -> 3, 4 out, NaN out, -5 out, 2.5 -> 2 (ties to even).
            "ids": try Tensor(shape: [2, 3], scalars: [1.6, -1, 4, nan, -5, 2.5]),
            "eids": try Tensor(shape: [1, 4], scalars: [0, 3, -3, 1.2]),
            "nids": try Tensor(shape: [3, 2], scalars: [0, 0, 5, 1, 2, -1]),
            "sids": try Tensor(shape: [4, 2], scalars: [0, 1, 3, 0, -1, -4, 1, 9]),
            "u": try Tensor(shape: [4], scalars: [100, 200, 300, 400]),
        ]
        func row(_ r: Int, _ cols: [Int?]) -> [Float] { cols.map { $0.map { x[flat: r * 4 + $0] } ?? nan } }
        let cols: [Int?] = [2, 3, nil, nil, nil, 2]
        var scattered = x.scalars
        scattered[1] = 100; scattered[8] = 300
        let expected: [String: [Float]] = [
            "g": row(0, cols) + row(1, cols) + row(2, cols),
            "ge": [x[flat: 0], nan, x[flat: 2], x[flat: 7]],
            "gnd": [x[flat: 0], nan, x[flat: 11]],
            "sc": scattered,
        ]
        var devices: [Device] = [CPUDevice(threads: 2)]
        if let cl = OpenCLRuntime.devices().first { devices.append(cl) }
        for device in devices {
            let results = try device.compile(graph, outputs: ["g", "ge", "gnd", "sc"]).run(feeds)
            for (name, values) in expected {
                let a = try XCTUnwrap(results[name]).scalars
                // NaN where expected, the exact element elsewhere.
                XCTAssertTrue(a.count == values.count && zip(a, values).allSatisfy { $0.isNaN ? $1.isNaN : $0 == $1 },
                              "\(name) on \(device.info.spec): \(a), expected \(values)")
            }
        }
    }

    /// TopK's K sets the output shape: a K known only at run time is refused with the node named.
    func testTopKNeedsAConstantK() throws {
        let data = try modelBytes(nodes: [node("TopK", ["x", "k"], ["v", "i"], name: "pick")], inputs: [("x", [2, 6]), ("k", [1])],
                                  outputs: ["v", "i"])
        XCTAssertThrowsError(try OnnxModel(data: data, path: "k.onnx").graph()) {
            XCTAssertTrue("\($0)".contains("pick (TopK)") && "\($0)".contains("K (input 1)"), "\($0)")
        }
    }

    private func contiguous(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { s[i] = s[i + 1] * shape[i + 1] }
        return s
    }
}
