import Quarry
import QuarryCPU
import XCTest

final class GraphTests: XCTestCase {
    /// conv(3->8) -> bn -> relu -> conv(8->4) -> relu, with parameters materialised.
    func smallConvNet(batchNorm: Bool = true) -> Graph {
        let b = GraphBuilder()
        let x = b.input("x", shape: [.symbol("batch"), 3, .symbol("h"), .symbol("w")])
        var y = b.scope("conv1") {
            b.add("", .conv2d(Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1))), x,
                  b.parameter("weight", shape: [8, 3, 3, 3], initializer: .he(fanIn: 27)), nil)
        }
        if batchNorm {
            y = b.scope("bn1") {
                b.add("", .batchNorm(epsilon: 1e-5), y,
                      b.parameter("weight", shape: [8], initializer: .normal(std: 1)),
                      b.parameter("bias", shape: [8], initializer: .normal(std: 1)),
                      b.parameter("running_mean", shape: [8], initializer: .normal(std: 1)),
                      b.parameter("running_var", shape: [8], initializer: .constant(2)))
            }
        }
        y = b.add("relu1", .activation(.relu), y)
        y = b.scope("conv2") {
            b.add("", .conv2d(Conv2DAttributes(kernel: (1, 1))), y,
                  b.parameter("weight", shape: [4, 8, 1, 1], initializer: .he(fanIn: 8)),
                  b.parameter("bias", shape: [4], initializer: .normal(std: 0.1)))
        }
        y = b.add("relu2", .activation(.relu), y)
        var g = b.build(outputs: [y])
        g.materializeParameters(seed: 7)
        return g
    }

    func testShapeInferenceResolvesSymbolicDimensions() throws {
        let g = smallConvNet()
        let shapes = try g.inferShapes(inputShapes: ["x": [2, 3, 9, 7]])
        XCTAssertEqual(shapes["conv1"], [2, 8, 9, 7])
        XCTAssertEqual(shapes["relu2"], [2, 4, 9, 7])
        let other = try g.inferShapes(inputShapes: ["x": [1, 3, 5, 5]])
        XCTAssertEqual(other["relu2"], [1, 4, 5, 5])
    }

    func testShapeErrorNamesNodeAndMismatch() {
        let b = GraphBuilder()
        let x = b.input("x", shape: [1, 64, 8, 8])
        let w = b.parameter("layer1.0.conv1.weight", shape: [64, 3, 3, 3], initializer: .he(fanIn: 27))
        _ = b.add("layer1.0.conv1", .conv2d(Conv2DAttributes(kernel: (3, 3))), x, w, nil)
        let g = b.build(outputs: [])
        XCTAssertThrowsError(try g.inferShapes(inputShapes: ["x": [1, 64, 8, 8]])) { error in
            XCTAssertEqual("\(error)", "node 'layer1.0.conv1': conv: input has 64 channels, weight expects 3")
        }
        XCTAssertThrowsError(try g.inferShapes(inputShapes: ["x": [1, 64, 8]])) { error in
            XCTAssertTrue("\(error)".contains("input 'x' must have rank 4"), "\(error)")
        }
        XCTAssertThrowsError(try g.inferShapes(inputShapes: ["x": [2, 64, 8, 8]])) { error in
            XCTAssertTrue("\(error)".contains("dimension 0 must be 1"), "\(error)")
        }
    }

    func testPruningDropsEverythingPastTheTap() throws {
        let g = smallConvNet()
        let p = try g.pruned(to: ["relu1"])
        XCTAssertEqual(p.nodes.map(\.name), ["conv1", "bn1", "relu1"])
        XCTAssertNil(p.parameters["conv2.weight"])
        XCTAssertThrowsError(try g.pruned(to: ["nope"])) { error in
            XCTAssertTrue("\(error)".contains("nope"), "\(error)")
        }
    }

    func testBatchNormFoldsAndActivationFuses() throws {
        let g = smallConvNet()
        let o = try g.optimized(for: ["relu2"])
        XCTAssertEqual(o.nodes.map(\.name), ["conv1", "conv2"])
        guard case .conv2d(let a1) = o.nodes[0].op, case .conv2d(let a2) = o.nodes[1].op else {
            return XCTFail("expected two convs, got \(o.nodes.map(\.op.name))")
        }
        XCTAssertEqual(a1.activation, .relu)
        XCTAssertEqual(a2.activation, .relu)
        XCTAssertEqual(o.nodes[0].outputs, ["relu1"])
        // A tap on a value keeps it: folding hands bn1's name to the conv, and relu1 stays a node
        // because fusing it would remove the tapped value.
        let t = try g.optimized(for: ["bn1", "relu2"])
        XCTAssertEqual(t.nodes.map(\.name), ["conv1", "relu1", "conv2"])
        XCTAssertEqual(t.nodes[0].outputs, ["bn1"])
        // A tap on the conv's own output keeps the batch norm unfolded.
        let u = try g.optimized(for: ["conv1", "relu2"])
        XCTAssertEqual(u.nodes.map(\.name), ["conv1", "bn1", "relu1", "conv2"])
    }

    func testMemoryPlanNeverOverlapsLiveValues() throws {
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<50 {
            // A random DAG of elementwise nodes over values of random sizes.
            let b = GraphBuilder()
            var values = [b.input("x", shape: [.symbol("n")])]
            let count = Int.random(in: 2...30, using: &rng)
            for i in 0..<count {
                let a = values.randomElement(using: &rng)!, c = values.randomElement(using: &rng)!
                let v = Bool.random(using: &rng)
                    ? b.add("n\(i)", .binary(.add, activation: nil), a, c)
                    : b.add("n\(i)", Bool.random(using: &rng) ? .reshape(shape: [-1]) : .activation(.relu), a)
                values.append(v)
            }
            let g = b.build(outputs: [values.last!])
            let keep: Set<String> = [values.last!.name, values.randomElement(using: &rng)!.name]
            let shapes = try g.inferShapes(inputShapes: ["x": [Int.random(in: 1...100, using: &rng)]])
            let plan = MemoryPlan(graph: g, shapes: shapes, keep: keep)
            // Live range of each value (by root storage): from its definition to its last use.
            var first: [String: Int] = [:], last: [String: Int] = [:]
            for (i, n) in g.nodes.enumerated() {
                for o in n.outputs { first[o] = i; last[o] = max(last[o] ?? i, i) }
                for v in n.inputs where first[v] != nil { last[v] = max(last[v]!, i) }
            }
            for k in keep where first[k] != nil { last[k] = g.nodes.count }
            let arenaValues = first.keys.compactMap { v -> (String, Int, Int)? in
                if case .arena(let off)? = plan.locations[v] { return (v, off, shapes[v]!.reduce(1, *)) }
                return nil
            }
            for (v1, o1, n1) in arenaValues {
                for (v2, o2, n2) in arenaValues where v1 < v2 && o1 != o2 {
                    let liveTogether = first[v1]! <= last[v2]! && first[v2]! <= last[v1]!
                    let overlap = o1 < o2 + n2 && o2 < o1 + n1
                    XCTAssertFalse(liveTogether && overlap, "\(v1) and \(v2) share bytes while both live")
                }
            }
            XCTAssertLessThanOrEqual(plan.peakBytes, plan.unsharedBytes)
        }
    }

    func testMissingParameterValueIsAnError() {
        let b = GraphBuilder()
        let x = b.input("x", shape: [1, 4])
        let y = b.add("fc", .dense(activation: nil), x, b.parameter("fc.weight", shape: [2, 4], initializer: .he(fanIn: 4)), nil)
        let g = b.build(outputs: [y])
        XCTAssertThrowsError(try CPUDevice().compile(g, outputs: ["fc"])) { error in
            XCTAssertTrue("\(error)".contains("fc.weight"), "\(error)")
        }
    }

    func testConstantSubgraphsFoldIntoParameters() throws {
        // Two weight halves concatenated and reshaped at run time (as a checkpoint-shaped model
        // stacks PyTorch's tensors) fold into one parameter; the outputs do not change.
        let b = GraphBuilder()
        let x = b.input("x", shape: [.symbol("n"), 6])
        let top = b.parameter("top", shape: [2, 6], initializer: .normal(std: 1))
        let bottom = b.parameter("bottom", shape: [3, 6], initializer: .normal(std: 1))
        let stacked = b.add("stack", .concat(axis: 0), top, bottom)
        let weight = b.add("weight", .reshape(shape: [5, 6]), stacked)
        let y = b.add("fc", .dense(activation: .relu), x, weight, nil)
        var g = b.build(outputs: [y])
        g.materializeParameters(seed: 3)
        let o = try g.optimized(for: ["fc"], evaluate: CPUKernels.evaluate)
        XCTAssertEqual(o.nodes.map(\.name), ["fc"])
        XCTAssertEqual(o.parameters["weight"]?.shape, [5, 6])
        XCTAssertNil(o.parameters["top"])
        // A requested constant value stays a node.
        XCTAssertEqual(try g.optimized(for: ["stack", "fc"], evaluate: CPUKernels.evaluate).nodes.map(\.name), ["stack", "weight", "fc"])

        var rng = SeededGenerator(seed: 8)
        let input = Tensor.random(shape: [4, 6], using: &rng)
        let folded = try CPUDevice(threads: 1).compile(g, outputs: ["fc"]).run(["x": input])["fc"]!
        var expected = [Float](repeating: 0, count: 20)
        let top_ = g.parameters["top"]!.value!, bottom_ = g.parameters["bottom"]!.value!
        for r in 0..<4 {
            for o in 0..<5 {
                var acc: Double = 0
                for k in 0..<6 {
                    let wv = o < 2 ? top_[flat: o * 6 + k] : bottom_[flat: (o - 2) * 6 + k]
                    acc += Double(input[flat: r * 6 + k]) * Double(wv)
                }
                expected[r * 5 + o] = Float(max(acc, 0))
            }
        }
        for i in 0..<20 { XCTAssertEqual(folded[flat: i], expected[i], accuracy: 1e-5) }
    }

    func testTransposeChainsThatCancelBecomeAnAlias() throws {
        // A batch-first sequence made time-major, given a unit axis, and made batch-first again
        // (what an exported batch-first LSTM's output goes through) is the input's elements in
        // order: one reshape of x. A chain that does not cancel keeps its transposes.
        func chain(_ perms: [[Int]], unitAfterFirst: Bool) -> Graph {
            let b = GraphBuilder()
            var v = b.input("x", shape: [.symbol("n"), 3, 4])
            for (i, p) in perms.enumerated() {
                v = b.add("t\(i)", .transpose(perm: p), v)
                if i == 0 && unitAfterFirst { v = b.add("unsqueeze", .reshape(shape: [3, -1, 1, 4]), v) }
            }
            let y = b.add("y", .activation(.tanh), v)
            return b.build(outputs: [y])
        }
        var rng = SeededGenerator(seed: 21)
        for n in [1, 2, 5] {
            let shapes = ["x": [n, 3, 4]]
            let cancelling = chain([[1, 0, 2], [1, 0, 2, 3]], unitAfterFirst: true)
            let folded = cancelling.foldingTransposes(keeping: ["y"], shapes: try cancelling.inferShapes(inputShapes: shapes))
            XCTAssertEqual(folded.nodes.map(\.name), ["t1", "y"], "n = \(n)")
            XCTAssertEqual(folded.nodes.first?.inputs, ["x"])
            XCTAssertTrue(folded.nodes.first?.op.isLayoutOnly ?? false)
            // Asked for, the chain's first transpose stays; the last still reads x.
            let kept = cancelling.foldingTransposes(keeping: ["y", "t0"], shapes: try cancelling.inferShapes(inputShapes: shapes))
            XCTAssertEqual(kept.nodes.map(\.name), ["t0", "t1", "y"])
            XCTAssertEqual(kept.nodes[1].inputs, ["x"])
            let other = chain([[1, 0, 2], [0, 2, 1]], unitAfterFirst: false)
            let notFolded = other.foldingTransposes(keeping: ["y"], shapes: try other.inferShapes(inputShapes: shapes))
            // At n = 1 both transposes only move the unit axis: the last is a reshape of x.
            XCTAssertEqual(notFolded.nodes.map(\.name), n == 1 ? ["t1", "y"] : ["t0", "t1", "y"], "n = \(n)")
            XCTAssertEqual(notFolded.nodes.filter { $0.op.isLayoutOnly }.count, n == 1 ? 1 : 0, "n = \(n)")

            // Both run on the CPU as their elements say, with the output poisoned before.
            let x = Tensor.random(shape: [n, 3, 4], using: &rng)
            for (g, expectedIndex) in [(cancelling, { (b: Int, s: Int, i: Int) in (b * 3 + s) * 4 + i }),
                                       (other, { (b: Int, s: Int, i: Int) in (s * 4 + i) * n + b })] {
                let y = try CPUDevice(threads: 1).compile(g, outputs: ["y"]).run(["x": x])["y"]!
                XCTAssertEqual(y.count, n * 12)
                // y[s, i, b] for the second chain ([S, B, I] transposed to [S, I, B]).
                for b in 0..<n { for s in 0..<3 { for i in 0..<4 {
                    let want = Float(tanh(Double(x[flat: (b * 3 + s) * 4 + i])))
                    XCTAssertEqual(y[flat: expectedIndex(b, s, i)], want, accuracy: 1e-6)
                } } }
            }
        }
    }

    /// dense without bias, + b, then GELU written out as PyTorch exports it to ONNX, in both
    /// orders of its final products.
    func exportedLinearGELU(halfFirst: Bool, biasShape: [Int]) -> Graph {
        let b = GraphBuilder()
        let x = b.input("x", shape: [.symbol("n"), 7])
        let w = b.parameter("w", shape: [5, 7], initializer: .normal(std: 1))
        let mm = b.add("mm", .dense(activation: nil), x, w, nil)
        let y = b.add("bias_add", .binary(.add, activation: nil), mm, b.parameter("b", shape: biasShape, initializer: .normal(std: 1)))
        let scalar = { (name: String, v: Float) in b.parameter(name, shape: [], initializer: .constant(v)) }
        let d = b.add("div", .binary(.div, activation: nil), y, scalar("sqrt2", 1.4142135))
        let e = b.add("erf", .activation(.erf), d)
        let a = b.add("plus1", .binary(.add, activation: nil), e, scalar("one", 1))
        let out: Value
        if halfFirst {
            let h = b.add("half_x", .binary(.mul, activation: nil), y, scalar("half", 0.5))
            out = b.add("gelu", .binary(.mul, activation: nil), h, a)
        } else {
            let m = b.add("x_times", .binary(.mul, activation: nil), a, y)
            out = b.add("gelu", .binary(.mul, activation: nil), m, scalar("half", 0.5))
        }
        var g = b.build(outputs: [out])
        g.materializeParameters(seed: 11)
        return g
    }

    /// add(conv(x), skip) then relu becomes one convolution with a residual operand, in the
    /// add's place; a tapped convolution output, an add that broadcasts, or a convolution with an
    /// activation of its own stay as they are. The CPU's plan makes the fusion and its result
    /// matches a float64 reference.
    func testResidualAddFusesIntoTheConvolution() throws {
        var rng = SeededGenerator(seed: 5)
        let b = GraphBuilder()
        let x = b.input("x", shape: [.symbol("batch"), .fixed(8), .fixed(5), .fixed(6)])
        let w = b.constant("w", Tensor.random(shape: [8, 8, 1, 1], using: &rng))
        let bias = b.constant("bias", Tensor.random(shape: [8], using: &rng))
        let conv = b.add("conv", .conv2d(Conv2DAttributes(kernel: (1, 1))), x, w, bias)
        let sum = b.add("sum", .binary(.add, activation: .relu), x, conv)
        let g = b.build(outputs: [sum])
        let shapes = try g.inferShapes(inputShapes: ["x": [2, 8, 5, 6]])

        let fused = g.fusingResidualAdds(keeping: ["sum"], shapes: shapes)
        XCTAssertEqual(fused.nodes.map(\.name), ["conv"])
        XCTAssertEqual(fused.nodes[0].inputs, ["x", "w", "bias", "x"])
        XCTAssertEqual(fused.nodes[0].outputs, ["sum"])
        guard case .conv2d(let a) = fused.nodes[0].op else { return XCTFail("not a convolution") }
        XCTAssertEqual(a.activation, .relu)
        XCTAssertEqual(g.fusingResidualAdds(keeping: ["sum", "conv"], shapes: shapes).nodes.count, 2, "tapped")

        let input = Tensor.random(shape: [2, 8, 5, 6], using: &rng)
        let got = try CPUDevice(threads: 1).compile(g, outputs: ["sum"]).run(["x": input])["sum"]!
        var expected: [Double] = []
        for n in 0..<2 {
            for o in 0..<8 {
                for p in 0..<30 {
                    var s = Double(g.parameters["bias"]!.value![flat: o])
                    for c in 0..<8 { s += Double(g.parameters["w"]!.value![flat: o * 8 + c]) * Double(input[flat: (n * 8 + c) * 30 + p]) }
                    expected.append(max(0, s + Double(input[flat: (n * 8 + o) * 30 + p])))
                }
            }
        }
        for (i, e) in expected.enumerated() {
            XCTAssertEqual(Double(got[flat: i]), e, accuracy: 1e-4 * max(1, abs(e)), "element \(i)")
        }

        // A per-channel add broadcasts: not a residual.
        let b2 = GraphBuilder()
        let x2 = b2.input("x", shape: [.fixed(1), .fixed(4), .fixed(3), .fixed(3)])
        let c2 = b2.add("conv", .conv2d(Conv2DAttributes(kernel: (1, 1))), x2, b2.constant("w", Tensor.random(shape: [4, 4, 1, 1], using: &rng)))
        let pooled = b2.add("pool", .globalAvgPool, x2)
        let g2 = b2.build(outputs: [b2.add("sum", .binary(.add, activation: nil), c2, pooled)])
        XCTAssertEqual(g2.fusingResidualAdds(keeping: ["sum"], shapes: try g2.inferShapes(inputShapes: ["x": [1, 4, 3, 3]])).nodes.count, 3)
    }

    func testBiasAddsFoldAndExportedGELUFusesIntoDense() throws {
        for (halfFirst, biasShape) in [(false, [5]), (true, [1, 5])] {
            let g = exportedLinearGELU(halfFirst: halfFirst, biasShape: biasShape)
            let o = try g.optimized(for: ["gelu"])
            XCTAssertEqual(o.nodes.count, 1, "\(halfFirst) \(biasShape): \(o.nodes.map(\.op.name))")
            guard case .dense(.gelu(approximate: false)) = o.nodes[0].op else { return XCTFail("\(o.nodes[0].op)") }
            XCTAssertEqual(o.nodes[0].outputs, ["gelu"])
            XCTAssertEqual(o.nodes[0].inputs.count, 3, "the bias should be the dense layer's")

            var rng = SeededGenerator(seed: 12)
            let input = Tensor.random(shape: [3, 7], using: &rng)
            let got = try CPUDevice(threads: 1).compile(g, outputs: ["gelu"]).run(["x": input])["gelu"]!
            let w = g.parameters["w"]!.value!, bias = g.parameters["b"]!.value!
            for r in 0..<3 {
                for j in 0..<5 {
                    var v = Double(bias[flat: j])
                    for k in 0..<7 { v += Double(input[flat: r * 7 + k]) * Double(w[flat: j * 7 + k]) }
                    let expected = 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
                    XCTAssertEqual(Double(got[flat: r * 5 + j]), expected, accuracy: 1e-5 * max(1, abs(expected)))
                }
            }
        }
        // A tapped intermediate keeps the written-out form (and the value).
        let g = exportedLinearGELU(halfFirst: false, biasShape: [5])
        XCTAssertTrue(try g.optimized(for: ["erf", "gelu"]).nodes.contains { $0.name == "erf" })
        XCTAssertTrue(try g.optimized(for: ["mm", "gelu"]).nodes.contains { $0.name == "bias_add" })
    }
}
