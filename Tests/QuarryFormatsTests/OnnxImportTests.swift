import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest
@testable import QuarryFormats

final class OnnxImportTests: XCTestCase {
    var cases: [String] {
        let dir = fixture("onnx")
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter {
            FileManager.default.fileExists(atPath: "\(dir)/\($0)/outputs.npz")
        }.sorted()
    }

    /// Every fixture imports, its output shapes equal the reference's, and its values match the
    /// reference (onnxruntime's, or onnx's reference implementation in float64 where the fixture
    /// script says so) to 1e-4 relative on the CPU backend and on the OpenCL backend (PoCL here;
    /// skipped where no OpenCL device exists).
    func testFixturesMatchOnnxRuntime() throws {
        XCTAssertGreaterThan(cases.count, 50, "fixtures missing: run scripts/make_onnx_fixtures.py")
        var devices: [Device] = [CPUDevice(threads: 2)]
        if let cl = OpenCLRuntime.devices().first { devices.append(cl) }
        for name in cases {
            let dir = fixture("onnx", name)
            let model = try OnnxModel(path: "\(dir)/model.onnx")
            let inputs = try NumPy.readArchive(path: "\(dir)/inputs.npz")
            let expected = try NumPy.readArchive(path: "\(dir)/outputs.npz")
            let shapes = inputs.mapValues(\.shape)
            // Inputs the import reads as values (a Reshape target fed as an input) specialise the graph.
            let values = inputs.filter { model.valueInputs.contains($0.key) }.mapValues { $0.tensor() }
            let runInputs = inputs.filter { values[$0.key] == nil }
            let graph: Graph
            do { graph = try model.graph(inputShapes: shapes, values: values) } catch {
                XCTFail("\(name): import failed: \(error)"); continue
            }
            let inferred = try graph.inferShapes(inputShapes: shapes)
            for (out, e) in expected {
                XCTAssertEqual(inferred[out], e.shape, "\(name): shape of '\(out)'")
            }
            for device in devices {
                let compiled = try device.compile(graph, outputs: expected.keys.sorted())
                let results = try compiled.run(runInputs.mapValues { $0.tensor() })
                for (out, e) in expected {
                    guard let a = results[out] else { XCTFail("\(name): no output '\(out)' on \(device.info.spec)"); continue }
                    let c = closeness(a, e.tensor(), rtol: 1e-4, atol: 1e-5)
                    XCTAssertLessThanOrEqual(c, 1, "\(name) on \(device.info.spec): '\(out)' differs from the reference (worst error ratio \(c))")
                }
            }
        }
        print("ONNX fixtures compared with their references: \(cases.count) on \(devices.map(\.info.spec))")
    }

    func testUnsupportedNodesAreAllListed() throws {
        let model = try OnnxModel(path: fixture("onnx", "unsupported", "model.onnx"))
        XCTAssertThrowsError(try model.graph(inputShapes: ["x": [3, 3]])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("3 node(s)"), text)
            XCTAssertTrue(text.contains("first_bad (Unique)"), text)
            XCTAssertTrue(text.contains("second_bad (Det)"), text)
            XCTAssertTrue(text.contains("third_bad (com.microsoft.FusedGemm)"), text)
            XCTAssertFalse(text.contains("fine_after_bad"), text)
        }
    }

    func testUnsupportedAttributeIsNamed() throws {
        var n = node("Relu", ["x"], ["y"], name: "odd_relu")
        var a = Onnx_AttributeProto(); a.name = "mystery"; a.type = .int; a.i = 3
        n.attribute = [a]
        let model = try OnnxModel(data: modelBytes(nodes: [n], inputs: [("x", [2])], outputs: ["y"]), path: "mem.onnx")
        XCTAssertThrowsError(try model.graph()) { XCTAssertTrue("\($0)".contains("odd_relu (Relu): attribute(s) mystery"), "\($0)") }
    }

    func testSymbolicBatchResolvesPerRunAndCaches() throws {
        let model = try OnnxModel(path: fixture("onnx", "shape_subgraph", "model.onnx"))
        XCTAssertEqual(model.inputs[0].shape, [.symbol("batch"), 8, 2])
        for batch in [1, 3, 5] {
            let g = try model.graph(inputShapes: ["x": [batch, 8, 2]])
            let s = try g.inferShapes(inputShapes: ["x": [batch, 8, 2]])
            XCTAssertEqual(s["y"], [batch, 4, 4])
            XCTAssertEqual(s["z"], [batch, 8, 2])
            // The Reshape target was folded from Shape → Gather → Unsqueeze → Concat.
            XCTAssertTrue(g.nodes.contains { if case .reshape(let t) = $0.op { return t == [batch, 4, 4] }; return false })
        }
        XCTAssertThrowsError(try model.graph(inputShapes: ["x": [2, 7, 2]])) { XCTAssertTrue("\($0)".contains("dimension 1 must be 8"), "\($0)") }
        XCTAssertThrowsError(try model.graph()) { XCTAssertTrue("\($0)".contains("symbolic"), "\($0)") }
    }

    /// Paddle2ONNX declares a dynamic batch as dim_value -1; like onnxruntime, Quarry reads it as symbolic.
    func testNegativeDimValueIsDynamic() throws {
        let data = try modelBytes(nodes: [node("Relu", ["x"], ["y"])], inputs: [("x", [-1, 3])], outputs: ["y"])
        let model = try OnnxModel(data: data, path: "paddle.onnx")
        guard case .symbol = model.inputs[0].shape[0] else { return XCTFail("dim_value -1 should be symbolic, got \(model.inputs[0].shape)") }
        XCTAssertEqual(model.inputs[0].shape[1], .fixed(3))
        for batch in [1, 4] {
            let g = try model.graph(inputShapes: ["x": [batch, 3]])
            XCTAssertEqual(try g.inferShapes(inputShapes: ["x": [batch, 3]])["y"], [batch, 3])
            let x = try Tensor(shape: [batch, 3], scalars: (0..<(batch * 3)).map { Float($0) - 4.5 })
            let y = try CPUDevice(threads: 1).compile(g, outputs: ["y"]).run(["x": x])["y"]!
            XCTAssertEqual(y.scalars, x.scalars.map { max($0, 0) })
        }
        XCTAssertThrowsError(try model.graph(inputShapes: ["x": [2, 4]])) { XCTAssertTrue("\($0)".contains("must be 3"), "\($0)") }
    }

    /// Cast of run-time floats: to an integer type truncates toward zero, to bool gives 1 for any
    /// nonzero value (NaN included) and 0 for zero, on both sides of zero and at halves.
    func testCastOfRunTimeFloatsTruncatesAndTestsNonzero() throws {
        func cast(_ to: Int64, _ output: String) -> Onnx_NodeProto {
            var n = node("Cast", ["x"], [output])
            var a = Onnx_AttributeProto(); a.name = "to"; a.type = .int; a.i = to
            n.attribute = [a]
            return n
        }
        let data = try modelBytes(nodes: [cast(7, "i"), cast(9, "b")], inputs: [("x", [8])], outputs: ["i", "b"])
        let g = try OnnxModel(data: data, path: "cast.onnx").graph(inputShapes: ["x": [8]])
        let values: [Float] = [-2.7, -0.5, 0, 0.5, 2.5, 3, -7.9, .nan]
        let out = try CPUDevice(threads: 1).compile(g, outputs: ["i", "b"]).run(["x": try Tensor(shape: [8], scalars: values)])
        XCTAssertEqual(Array(out["i"]!.scalars.prefix(7)), [-2, 0, 0, 0, 2, 3, -7])
        XCTAssertEqual(out["b"]!.scalars, [1, 1, 0, 1, 1, 1, 1, 1])
    }

    /// Opsets 22–28 load (their changes to imported operators only widen types or say what the
    /// handlers already do); 29 is refused by number.
    func testOpsetsThrough28() throws {
        for opset: Int64 in [22, 23, 24, 25, 26, 27, 28] {
            let m = try OnnxModel(data: modelBytes(nodes: [node("Relu", ["x"], ["y"])], inputs: [("x", [2])], outputs: ["y"], opset: opset), path: "o.onnx")
            XCTAssertEqual(m.opset, Int(opset))
            XCTAssertNoThrow(try m.graph())
        }
        XCTAssertThrowsError(try OnnxModel(data: modelBytes(nodes: [node("Relu", ["x"], ["y"])], inputs: [("x", [2])], outputs: ["y"], opset: 29), path: "o.onnx")) {
            XCTAssertTrue("\($0)".contains("opset 29 is not supported (7…28 are)"), "\($0)")
        }
    }

    func testAttentionErrorsNameTheNode() throws {
        let data = try modelBytes(nodes: [node("Attention", ["q", "k", "v"], ["y"], name: "attn")], inputs: [("q", [1, 2, 8]), ("k", [1, 3, 8]), ("v", [1, 3, 8])], outputs: ["y"], opset: 23)
        XCTAssertThrowsError(try OnnxModel(data: data, path: "a.onnx").graph()) {
            XCTAssertTrue("\($0)".contains("node 'attn' (Attention): ") && "\($0)".contains("q_num_heads"), "\($0)")
        }
        let gqa = try modelBytes(nodes: [node("Attention", ["q", "k", "v"], ["y"], name: "attn")], inputs: [("q", [1, 3, 2, 4]), ("k", [1, 2, 2, 4]), ("v", [1, 2, 2, 4])], outputs: ["y"], opset: 23)
        XCTAssertThrowsError(try OnnxModel(data: gqa, path: "a.onnx").graph()) { XCTAssertTrue("\($0)".contains("multiple of kv_num_heads"), "\($0)") }
    }

    /// An If whose condition is a constant initializer imports only the taken branch (reading an
    /// outer-scope tensor); a condition known only at run time is refused with the node named.
    func testIfImportsTheTakenBranchOrNamesTheNode() throws {
        func ifNode(_ cond: String) -> Onnx_NodeProto {
            var n = node("If", [cond], ["y"], name: "pick")
            func branch(_ op: String, _ out: String) -> Onnx_AttributeProto {
                var g = Onnx_GraphProto()
                g.name = out
                g.node = [node(op, ["x"], [out])]
                g.output = [{ var vi = Onnx_ValueInfoProto(); vi.name = out; return vi }()]
                var a = Onnx_AttributeProto()
                a.name = op == "Relu" ? "then_branch" : "else_branch"; a.type = .graph; a.g = g
                return a
            }
            n.attribute = [branch("Relu", "y_then"), branch("Neg", "y_else")]
            return n
        }
        for (flag, expectRelu) in [(Float(1), true), (Float(0), false)] {
            let data = try modelBytes(nodes: [ifNode("c")], inputs: [("x", [2, 3])], outputs: ["y"],
                                      initializers: [floatTensor("c", dims: [], values: [flag])])
            let graph = try OnnxModel(data: data, path: "if.onnx").graph()
            XCTAssertEqual(graph.nodes.contains { $0.op == .activation(.relu) }, expectRelu)
            XCTAssertEqual(graph.nodes.contains { $0.op == .activation(.neg) }, !expectRelu)
            let x = try Tensor(shape: [2, 3], scalars: [-2, -1, 0, 1, 2, 3])
            let y = try CPUDevice(threads: 1).compile(graph, outputs: ["y"]).run(["x": x])["y"]!
            XCTAssertEqual(y.scalars, expectRelu ? [0, 0, 0, 1, 2, 3] : [2, 1, 0, -1, -2, -3])
        }
        // The branch reads 'x2', made by a node listed after the If: the If is ordered after it.
        var late = ifNode("c")
        for k in late.attribute.indices { late.attribute[k].g.node[0].input = ["x2"] }
        let ordered = try modelBytes(nodes: [late, node("Neg", ["x"], ["x2"])], inputs: [("x", [2, 3])], outputs: ["y"],
                                     initializers: [floatTensor("c", dims: [], values: [1])])
        let g2 = try OnnxModel(data: ordered, path: "if.onnx").graph()
        let y2 = try CPUDevice(threads: 1).compile(g2, outputs: ["y"]).run(["x": try Tensor(shape: [2, 3], scalars: [-2, -1, 0, 1, 2, 3])])["y"]!
        XCTAssertEqual(y2.scalars, [2, 1, 0, 0, 0, 0])
    }

    /// An If whose condition is known only at run time imports both branches (here reusing each
    /// other's internal names, as ONNX allows) and selects each output by the condition, rank 0 or
    /// rank 1, on the CPU and on OpenCL; branch outputs of different shapes are refused by name.
    func testIfWithARunTimeConditionRunsBothBranches() throws {
        func graphAttr(_ key: String, _ nodes: [Onnx_NodeProto]) -> Onnx_AttributeProto {
            var g = Onnx_GraphProto()
            g.name = key
            g.node = nodes
            g.output = [{ var vi = Onnx_ValueInfoProto(); vi.name = "r"; return vi }()]
            var a = Onnx_AttributeProto()
            a.name = key; a.type = .graph; a.g = g
            return a
        }
        func ifModel(condDims: [Int64], elseNodes: [Onnx_NodeProto]) throws -> Data {
            var n = node("If", ["c"], ["y"], name: "pick")
            n.attribute = [graphAttr("then_branch", [node("Relu", ["x"], ["t"]), node("Neg", ["t"], ["r"])]),
                           graphAttr("else_branch", elseNodes)]
            return try modelBytes(nodes: [node("Identity", ["x0"], ["x"]), n], inputs: [("x0", [2, 3]), ("c", condDims)], outputs: ["y"])
        }
        var devices: [any Device] = [CPUDevice(threads: 1)]
        if let cl = OpenCLRuntime.devices().first { devices.append(cl) }
        let xs: [Float] = (0..<6).map { _ in Float.random(in: -4...4) }
        let x = try Tensor(shape: [2, 3], scalars: xs)
        for condDims: [Int64] in [[1], []] {
            let model = try OnnxModel(data: try ifModel(condDims: condDims, elseNodes: [node("Mul", ["x", "x"], ["t"]), node("Add", ["t", "x"], ["r"])]), path: "if.onnx")
            let graph = try model.graph(inputShapes: ["x0": [2, 3], "c": condDims.map(Int.init)])
            XCTAssertTrue(graph.nodes.contains { $0.op == .select })
            for device in devices {
                let compiled = try device.compile(graph, outputs: ["y"])
                for flag: Float in [1, 0, -2.5] {
                    let c = try Tensor(shape: condDims.map(Int.init), scalars: [flag])
                    let y = try compiled.run(["x0": x, "c": c])["y"]!
                    XCTAssertEqual(y.scalars, flag != 0 ? xs.map { -max($0, 0) } : xs.map { $0 * $0 + $0 }, "\(device) cond \(flag) \(condDims)")
                }
            }
        }
        let mismatched = try OnnxModel(data: try ifModel(condDims: [1], elseNodes: [node("Transpose", ["x"], ["r"])]), path: "if.onnx")
        XCTAssertThrowsError(try mismatched.graph(inputShapes: ["x0": [2, 3], "c": [1]])) {
            XCTAssertTrue("\($0)".contains("pick (If)") && "\($0)".contains("[2, 3]") && "\($0)".contains("[3, 2]"), "\($0)")
        }
        let wide = try OnnxModel(data: try ifModel(condDims: [2], elseNodes: [node("Neg", ["x"], ["r"])]), path: "if.onnx")
        XCTAssertThrowsError(try wide.graph(inputShapes: ["x0": [2, 3], "c": [2]])) {
            XCTAssertTrue("\($0)".contains("pick (If): condition 'c' has 2 elements"), "\($0)")
        }
    }

    /// A shape folded at import that differs from the graph's shape inference is an error naming
    /// the node; the folded shapes of a real model (Shape -> Slice -> Concat -> Reshape after
    /// stride-(2, 1) convs) agree with it.
    func testFoldedShapesAreCheckedAgainstShapeInference() throws {
        let folded = [OnnxImporter.FoldedShape(node: "shape_of_c3", value: "c3", shape: [2, 16, 2, 25])]
        XCTAssertThrowsError(try OnnxImporter.checkFoldedShapes(folded, against: ["c3": [2, 16, 1, 25]])) {
            XCTAssertTrue("\($0)".contains("shape_of_c3") && "\($0)".contains("[2, 16, 2, 25]") && "\($0)".contains("[2, 16, 1, 25]"), "\($0)")
        }
        XCTAssertNoThrow(try OnnxImporter.checkFoldedShapes(folded, against: ["c3": [2, 16, 2, 25]]))
        let model = try OnnxModel(path: fixture("onnx", "paddle_ocr_stride21_reshape", "model.onnx"))
        for (h, w) in [(32, 25), (29, 8), (32, 1)] {
            let importer = OnnxImporter(model: model)
            let graph = try importer.importGraph(inputShapes: ["x": [2, 3, h, w]])
            XCTAssertEqual(try graph.inferShapes(inputShapes: ["x": [2, 3, h, w]])["seq_cf"], [2, 16, w])
            XCTAssertEqual(importer.foldedShapes.map(\.value), ["c3"])
            XCTAssertEqual(importer.foldedShapes.map(\.shape), [[2, 16, 1, w]])
        }
    }

    /// A Reshape target fed as a graph input is read as values: one graph per set of values, and
    /// without them the error names the input.
    func testValueInputsSpecialiseTheGraph() throws {
        let model = try OnnxModel(path: fixture("onnx", "reshape_shape_input", "model.onnx"))
        XCTAssertEqual(model.valueInputs, ["s", "sc"])
        let shapes = ["x": [2, 3, 4], "s": [3], "x4": [1, 2, 3, 3], "sc": [4]]
        let scales = try Tensor(shape: [4], scalars: [1, 1, 2, 3])
        XCTAssertThrowsError(try model.graph(inputShapes: shapes, values: ["sc": scales])) {
            XCTAssertTrue("\($0)".contains("graph input 's'") && "\($0)".contains("reads as values"), "\($0)")
        }
        for (target, expect) in [([4, -1, 3], [4, 2, 3]), ([0, 12, 1], [2, 12, 1])] as [([Float], [Int])] {
            let g = try model.graph(inputShapes: shapes, values: ["s": try Tensor(shape: [3], scalars: target), "sc": scales])
            XCTAssertEqual(g.inputs.map(\.name).sorted(), ["x", "x4"])
            let x = try Tensor(shape: [2, 3, 4], scalars: (0..<24).map { Float($0) * 0.5 - 3 })
            let y = try CPUDevice(threads: 1).compile(g, outputs: ["y"]).run(["x": x, "x4": Tensor(shape: [1, 2, 3, 3], repeating: 1)])["y"]!
            XCTAssertEqual(y.shape, expect)
            XCTAssertEqual(y.scalars, x.scalars)
        }
    }

    func testAnyNamedTensorIsATap() throws {
        let model = try OnnxModel(path: fixture("onnx", "binary", "model.onnx"))
        let g = try model.graph(inputShapes: ["a": [2, 3, 4], "b": [3, 1], "p": [4]])
        for tap in ["s", "d", "m", "q", "w"] { XCTAssertTrue(g.valueNames.contains(tap), tap) }
        let pruned = try g.pruned(to: ["s"])
        XCTAssertEqual(pruned.nodes.count, 1)
        XCTAssertTrue(model.tensorNames.contains("c"))
    }

    func testLoweringsFollowQuarryLayouts() throws {
        // Gemm with transB keeps the [N, K] weight under its own name as dense's weight.
        let gemm = try OnnxModel(path: fixture("onnx", "gemm_transb", "model.onnx")).graph()
        guard case .dense = gemm.nodes[0].op else { return XCTFail("Gemm should lower to dense") }
        XCTAssertEqual(gemm.nodes[0].inputs, ["x", "w", "b"])
        XCTAssertEqual(gemm.parameters["w"]?.shape, [7, 10])
        // MatMul by a constant [K, N] becomes dense with the weight transposed to [N, K].
        let mm = try OnnxModel(path: fixture("onnx", "matmul_const", "model.onnx")).graph()
        guard case .dense = mm.nodes[0].op, let wt = mm.parameters[mm.nodes[0].inputs[1]] else { return XCTFail("MatMul by a constant should be dense") }
        XCTAssertEqual(wt.shape, [6, 8])
        // SAME_UPPER puts the odd padding at the end, SAME_LOWER at the start.
        let upper = try OnnxModel(path: fixture("onnx", "conv_same_upper", "model.onnx")).graph()
        let lower = try OnnxModel(path: fixture("onnx", "conv_same_lower", "model.onnx")).graph()
        guard case .conv2d(let u) = upper.nodes[0].op, case .conv2d(let l) = lower.nodes[0].op else { return XCTFail() }
        // Input 9x7, kernel 2x3, stride 2: total pads 1 (rows) and 2 (columns).
        XCTAssertEqual(u.padding, Padding2D(top: 0, left: 1, bottom: 1, right: 1))
        XCTAssertEqual(l.padding, Padding2D(top: 1, left: 1, bottom: 0, right: 1))
    }

    func testLSTMGatesArePermutedToIFGO() throws {
        let model = try OnnxModel(path: fixture("onnx", "lstm_forward_layout0", "model.onnx"))
        let g = try model.graph()
        guard let cell = g.nodes.first(where: { if case .lstm = $0.op { return true }; return false }) else { return XCTFail("no lstm node") }
        let w = try XCTUnwrap(g.parameters[cell.inputs[1]]?.value)
        let onnxW = try XCTUnwrap(model.initializers["W"])
        let h = 4, i = 3
        // Quarry gate g (0 i, 1 f, 2 g, 3 o) comes from ONNX gate [0, 2, 3, 1] (i, o, f, c).
        for (q, o) in [(0, 0), (1, 2), (2, 3), (3, 1)] {
            for k in 0..<(h * i) { XCTAssertEqual(w[flat: q * h * i + k], onnxW.floats[o * h * i + k]) }
        }
    }

    func testExternalDataLoadsAndPathsAreConfined() throws {
        let model = try OnnxModel(path: fixture("onnx", "external_data", "model.onnx"))
        XCTAssertEqual(model.initializers["w"]?.shape, [6, 10])
        let dir = try temporaryFolder()
        for (location, expect) in [("../weights.bin", "escapes"), ("/etc/passwd", "relative"), ("missing.bin", "does not exist")] {
            var t = Onnx_TensorProto()
            t.name = "w"; t.dims = [2]; t.dataType = 1; t.dataLocation = .external
            var e = Onnx_StringStringEntryProto(); e.key = "location"; e.value = location
            t.externalData = [e]
            let data = try modelBytes(nodes: [node("Add", ["x", "w"], ["y"])], inputs: [("x", [2])], outputs: ["y"], initializers: [t])
            XCTAssertThrowsError(try OnnxModel(data: data, path: "\(dir)/m.onnx")) { XCTAssertTrue("\($0)".contains(expect), "\($0)") }
        }
        // A symbolic link inside the folder that points outside it is refused too.
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/link.bin", withDestinationPath: "/etc/hostname")
        var t = Onnx_TensorProto()
        t.name = "w"; t.dims = [1]; t.dataType = 1; t.dataLocation = .external
        var e = Onnx_StringStringEntryProto(); e.key = "location"; e.value = "link.bin"
        t.externalData = [e]
        let data = try modelBytes(nodes: [node("Add", ["x", "w"], ["y"])], inputs: [("x", [1])], outputs: ["y"], initializers: [t])
        XCTAssertThrowsError(try OnnxModel(data: data, path: "\(dir)/m.onnx")) { XCTAssertTrue("\($0)".contains("escapes"), "\($0)") }
        // Offsets past the end of the data file.
        FileManager.default.createFile(atPath: "\(dir)/w.bin", contents: Data(count: 8))
        var t2 = Onnx_TensorProto()
        t2.name = "w"; t2.dims = [2]; t2.dataType = 1; t2.dataLocation = .external
        t2.externalData = [("location", "w.bin"), ("offset", "4"), ("length", "8")].map { var p = Onnx_StringStringEntryProto(); p.key = $0.0; p.value = $0.1; return p }
        let d2 = try modelBytes(nodes: [node("Add", ["x", "w"], ["y"])], inputs: [("x", [2])], outputs: ["y"], initializers: [t2])
        XCTAssertThrowsError(try OnnxModel(data: d2, path: "\(dir)/m.onnx")) { XCTAssertTrue("\($0)".contains("outside"), "\($0)") }
    }

    func testHostileModelsGiveClearErrors() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: fixture("onnx", "conv", "model.onnx")))
        XCTAssertThrowsError(try OnnxModel(data: good.prefix(good.count / 2), path: "cut.onnx")) { XCTAssertTrue("\($0)".contains("cut.onnx"), "\($0)") }
        XCTAssertThrowsError(try OnnxModel(data: Data("not a model at all".utf8), path: "text.onnx"))
        XCTAssertThrowsError(try OnnxModel(data: Data(), path: "empty.onnx")) { XCTAssertTrue("\($0)".contains("no graph") || "\($0)".contains("opset"), "\($0)") }
        // Huge declared dims with little data.
        let huge = floatTensor("w", dims: [1 << 40, 1 << 30], values: [1, 2])
        XCTAssertThrowsError(try OnnxModel(data: modelBytes(nodes: [node("Add", ["x", "w"], ["y"])], inputs: [("x", [2])], outputs: ["y"], initializers: [huge]), path: "huge.onnx")) {
            XCTAssertTrue("\($0)".contains("'w'"), "\($0)")
        }
        let mismatch = floatTensor("w", dims: [3], values: [1, 2])
        XCTAssertThrowsError(try OnnxModel(data: modelBytes(nodes: [node("Add", ["x", "w"], ["y"])], inputs: [("x", [3])], outputs: ["y"], initializers: [mismatch]), path: "m.onnx")) {
            XCTAssertTrue("\($0)".contains("need 12"), "\($0)")
        }
        // A cycle.
        func unnamed(_ n: Onnx_NodeProto) -> Onnx_NodeProto { var n = n; n.name = ""; return n }
        let cyc = try modelBytes(nodes: [unnamed(node("Relu", ["b"], ["a"])), node("Relu", ["a"], ["b"])], inputs: [("x", [2])], outputs: ["a"])
        XCTAssertThrowsError(try OnnxModel(data: cyc, path: "cycle.onnx")) {
            // Unnamed nodes (as exporters often leave them) are named by op, place and outputs.
            XCTAssertTrue("\($0)".contains("cycle through unnamed Relu node #0 of the file writing 'a', node 'b' (Relu)"), "\($0)")
        }
        // A shape error names the node once, with its op.
        let narrow = floatTensor("w", dims: [2, 5, 1, 1], values: (0..<10).map(Float.init))
        let badConv = try modelBytes(nodes: [node("Conv", ["x", "w"], ["y"], name: "stem.conv")], inputs: [("x", [1, 3, 4, 4])],
                                     outputs: ["y"], initializers: [narrow])
        XCTAssertThrowsError(try OnnxModel(data: badConv, path: "conv.onnx").graph()) {
            XCTAssertTrue("\($0)".contains("conv.onnx: node 'stem.conv' (Conv): conv: input has 3 channels, weight expects 5"), "\($0)")
            XCTAssertEqual("\($0)".components(separatedBy: "stem.conv").count, 2, "\($0)")
        }
        // A missing initializer.
        let missing = try modelBytes(nodes: [unnamed(node("Add", ["x", "nowhere"], ["y"]))], inputs: [("x", [2])], outputs: ["y"])
        XCTAssertThrowsError(try OnnxModel(data: missing, path: "missing.onnx")) {
            XCTAssertTrue("\($0)".contains("'nowhere' (used by unnamed Add node #0 of the file writing 'y')"), "\($0)")
        }
        // Hostile shapes computed at import.
        var shapeT = Onnx_TensorProto(); shapeT.name = "s"; shapeT.dims = [3]; shapeT.dataType = 7; shapeT.int64Data = [1 << 40, 1 << 40, 1 << 40]
        let bigExpand = try modelBytes(nodes: [node("Expand", ["x", "s"], ["y"])], inputs: [("x", [1])], outputs: ["y"], initializers: [shapeT])
        XCTAssertThrowsError(try OnnxModel(data: bigExpand, path: "expand.onnx").graph())
        let bigReshape = try modelBytes(nodes: [node("Reshape", ["x", "s"], ["y"])], inputs: [("x", [1])], outputs: ["y"], initializers: [shapeT])
        XCTAssertThrowsError(try OnnxModel(data: bigReshape, path: "reshape.onnx").graph())
        let pads = try modelBytes(nodes: [node("MaxPool", ["x"], ["y"], ints: ["kernel_shape": [2, 2], "pads": [Int64.max, 0, Int64.max, 0]])], inputs: [("x", [1, 1, 4, 4])], outputs: ["y"])
        XCTAssertThrowsError(try OnnxModel(data: pads, path: "pads.onnx").graph())
        XCTAssertThrowsError(try OnnxModel(data: try modelBytes(nodes: [node("Relu", ["x"], ["y"])], inputs: [("x", [2])], outputs: ["y"], opset: 99), path: "o.onnx")) {
            XCTAssertTrue("\($0)".contains("opset 99"), "\($0)")
        }
    }

    /// Random byte mutations of every fixture: parsing and import may fail, never crash.
    func testFuzzedModelsNeverCrash() throws {
        var rng = SeededGenerator(seed: 7)
        var originals: [(Data, [String: [Int]])] = []
        for name in cases {
            let dir = fixture("onnx", name)
            let shapes = try NumPy.readArchive(path: "\(dir)/inputs.npz").mapValues(\.shape)
            originals.append((try Data(contentsOf: URL(fileURLWithPath: "\(dir)/model.onnx")), shapes))
        }
        var parsed = 0, imported = 0
        let iterations = 1500
        for it in 0..<iterations {
            var (data, shapes) = originals[it % originals.count]
            let edits = Int.random(in: 1...2, using: &rng)
            for _ in 0..<edits where !data.isEmpty {
                let at = Int.random(in: 0..<data.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: data[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: data[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                case 2: data = data.prefix(at)
                default: data.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                }
            }
            guard let model = try? OnnxModel(data: data, path: "fuzz.onnx") else { continue }
            parsed += 1
            for i in model.inputs where shapes[i.name] == nil { shapes[i.name] = i.shape.map { if case .fixed(let n) = $0 { return n }; return 1 } }
            if (try? model.graph(inputShapes: shapes)) != nil { imported += 1 }
        }
        print("ONNX fuzz: \(iterations) mutated models, \(parsed) parsed, \(imported) imported, no crash")
    }
}
