import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest
@testable import QuarryFormats

/// The elementwise operators of OnnxElementwise.swift on run-time values, in the forms exporters
/// write them: a padding mask from integer ids (Equal, Unsqueeze, Not), a masked fill with -inf
/// (Where), band selection (Greater, LessOrEqual, Or, Xor, And) between two activations, Round's
/// ties, Floor / Ceil, a comparison of computed values, and integer Div / Mod / Sign of ids.
final class OnnxElementwiseTests: XCTestCase {
    func int64Tensor(_ name: String, dims: [Int64], values: [Int64]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name; t.dims = dims; t.dataType = 7
        t.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
        return t
    }

    func model() throws -> OnnxModel {
        var fmod = node("Mod", ["ids", "three"], ["fm"])
        var a = Onnx_AttributeProto()
        a.name = "fmod"; a.type = .int; a.i = 1
        fmod.attribute = [a]
        let nodes = [
            node("Equal", ["ids", "zero"], ["pad"]),
            node("Unsqueeze", ["pad", "axis1"], ["pad3"]),
            node("Not", ["pad3"], ["keep"]),
            node("Greater", ["x", "half"], ["hi"]),
            node("LessOrEqual", ["x", "minus_half"], ["lo"]),
            node("Or", ["hi", "lo"], ["outside"]),
            node("Xor", ["hi", "lo"], ["outside2"]),
            node("And", ["outside", "keep"], ["chosen"]),
            node("And", ["chosen", "outside2"], ["chosen2"]),
            node("Softplus", ["x"], ["sp"]),
            node("Selu", ["x"], ["se"]),
            node("Where", ["chosen2", "sp", "se"], ["act"]),
            node("Where", ["pad3", "minus_inf", "act"], ["y"]),
            node("Mul", ["x", "two"], ["x2"]),
            node("Round", ["x2"], ["r"]),
            node("Ceil", ["x"], ["ce"]),
            node("Floor", ["x"], ["fl"]),
            node("Sub", ["ce", "fl"], ["frac"]),
            node("Cos", ["x"], ["cx"]),
            node("GreaterOrEqual", ["cx", "x"], ["ge"]),
            node("Div", ["ids", "three"], ["q"]),
            node("Mod", ["ids", "three"], ["m"]),
            fmod,
            node("Sign", ["ids"], ["s"]),
        ]
        let inits = [
            int64Tensor("zero", dims: [], values: [0]), int64Tensor("axis1", dims: [1], values: [1]),
            int64Tensor("three", dims: [], values: [3]),
            floatTensor("half", dims: [], values: [0.5]), floatTensor("minus_half", dims: [], values: [-0.5]),
            floatTensor("minus_inf", dims: [1], values: [-.infinity]), floatTensor("two", dims: [], values: [2]),
        ]
        var proto = try Onnx_ModelProto(serializedData: try modelBytes(
            nodes: nodes, inputs: [("x", [2, 3, 5]), ("ids", [2, 5])],
            outputs: ["y", "r", "frac", "ge", "q", "m", "fm", "s"], initializers: inits, opset: 17))
        proto.graph.input[1].type.tensorType.elemType = 7  // ids: int64
        return try OnnxModel(data: try proto.serializedData(), path: "elementwise.onnx")
    }

    func testRunTimeElementwiseOpsMatchTheirDefinitions() throws {
        let graph = try model().graph(inputShapes: ["x": [2, 3, 5], "ids": [2, 5]])
        // Where is one select node each (no arithmetic blend that -inf would turn into NaN), and
        // the integer Div truncates in the division's epilogue.
        XCTAssertEqual(graph.nodes.filter { $0.op == .select }.count, 2)
        XCTAssertTrue(graph.nodes.contains { $0.op == .binary(.div, activation: .trunc) })

        // Multiples of 1/4 (zeros and halves of 2x among them) and ids of both signs, with zeros.
        let xv = (0..<30).map { Float(($0 * 7) % 23 - 11) / 4 }
        let idv: [Float] = [3, 0, 7, -5, 12, 0, 9, -8, 1, -3]
        let x = try Tensor(shape: [2, 3, 5], scalars: xv), ids = try Tensor(shape: [2, 5], scalars: idv)

        // The float64 expectations, from the ONNX definitions.
        var y: [Double] = [], r: [Double] = [], frac: [Double] = [], ge: [Double] = []
        for i in 0..<30 {
            let v = Double(xv[i]), id = idv[(i / 15) * 5 + i % 5]
            let hi = v > 0.5, lo = v <= -0.5
            let softplus = Foundation.log1p(Foundation.exp(v))
            let selu = 1.05070102214813232421875 * (v > 0 ? v : 1.67326319217681884765625 * Foundation.expm1(v))
            let act = (hi || lo) && id != 0 && (hi != lo) ? softplus : selu
            y.append(id == 0 ? -.infinity : act)
            r.append((2 * v).rounded(.toNearestOrEven))
            frac.append(v.rounded(.up) - v.rounded(.down))
            ge.append(Foundation.cos(v) >= v ? 1 : 0)
        }
        let q = idv.map { Double(($0 / 3).rounded(.towardZero)) }
        let m = idv.map { v -> Double in let t = Double(v).truncatingRemainder(dividingBy: 3); return t < 0 ? t + 3 : t }
        let fm = idv.map { Double($0).truncatingRemainder(dividingBy: 3) }
        let s = idv.map { Double($0 > 0 ? 1 : ($0 < 0 ? -1 : 0)) }
        XCTAssertEqual(r.filter { $0 == 0 }.count > 0 && q.contains(-2) && m.contains(1) && fm.contains(-2), true, "inputs cover the signs")

        var devices: [Device] = [CPUDevice(threads: 2)]
        if let cl = OpenCLRuntime.devices().first { devices.append(cl) }
        for device in devices {
            let out = try device.compile(graph, outputs: ["y", "r", "frac", "ge", "q", "m", "fm", "s"]).run(["x": x, "ids": ids])
            let got = try XCTUnwrap(out["y"]).scalars
            for i in 0..<30 {
                if y[i].isInfinite { XCTAssertEqual(Double(got[i]), y[i], "y[\(i)] on \(device.info.spec)"); continue }
                XCTAssertEqual(Double(got[i]), y[i], accuracy: 1e-6 * (1 + abs(y[i])), "y[\(i)] on \(device.info.spec)")
            }
            for (name, want) in [("r", r), ("frac", frac), ("ge", ge), ("q", q), ("m", m), ("fm", fm), ("s", s)] {
                XCTAssertEqual(try XCTUnwrap(out[name]).scalars.map(Double.init), want, "\(name) on \(device.info.spec)")
            }
        }
    }

    /// Constant operands fold on the host with their integer kinds (a shape computation stays exact).
    func testConstantComparisonsAndIntegerDivisionFold() throws {
        let nodes = [
            node("Less", ["a", "b"], ["lt"]), node("Div", ["a", "b"], ["q"]), node("Mod", ["a", "b"], ["m"]),
            node("Where", ["lt", "q", "m"], ["w"]), node("Cast", ["w"], ["wf"]), node("Add", ["x", "wf"], ["y"]),
        ]
        var cast = nodes[4]
        var to = Onnx_AttributeProto(); to.name = "to"; to.type = .int; to.i = 1
        cast.attribute = [to]
        let data = try modelBytes(
            nodes: [nodes[0], nodes[1], nodes[2], nodes[3], cast, nodes[5]], inputs: [("x", [4])], outputs: ["y"],
            initializers: [int64Tensor("a", dims: [4], values: [-7, 7, 9, -9]), int64Tensor("b", dims: [4], values: [2, -2, 4, -4])])
        let graph = try OnnxModel(data: data, path: "fold.onnx").graph(inputShapes: ["x": [4]])
        XCTAssertEqual(graph.nodes.count, 1, "everything but the Add folds")
        let y = try CPUDevice(threads: 1).compile(graph, outputs: ["y"]).run(["x": Tensor(shape: [4], repeating: 0)])["y"]!
        // lt = [1, 0, 0, 1]: q = trunc(-7 / 2) = -3, m = 7 mod -2 = -1, 9 mod 4 = 1, trunc(-9 / -4) = 2.
        XCTAssertEqual(y.scalars, [-3, -1, 1, 2])
    }
}
