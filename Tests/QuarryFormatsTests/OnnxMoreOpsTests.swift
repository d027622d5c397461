import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest
@testable import QuarryFormats

/// The operators of OnnxMoreOps.swift (Abs, Log, Reciprocal, variadic Sum / Mean / Max / Min,
/// Softsign, Celu, ThresholdedRelu, Shrink, IsNaN, IsInf, Trilu, Hardmax, GroupNormalization,
/// LpNormalization, MeanVarianceNormalization, QuantizeLinear, DequantizeLinear), each imported
/// from a small graph and checked against a float64 reference written here on fresh random inputs,
/// on the CPU and (where one exists, PoCL here) the OpenCL backend with its buffers poisoned with
/// NaN first and no node left to the CPU fallback; and their errors, which name the node.
final class OnnxMoreOpsTests: XCTestCase {
    var rng = SystemRandomNumberGenerator()

    func values(_ n: Int, _ range: ClosedRange<Float> = -2...2) -> [Float] {
        (0..<n).map { _ in Float.random(in: range, using: &rng) }
    }

    func random(_ shape: [Int], _ range: ClosedRange<Float> = -2...2) -> (Tensor, [Double]) {
        let v = values(shape.reduce(1, *), range)
        return (try! Tensor(shape: shape, scalars: v), v.map(Double.init))
    }

    /// `checkImportedModel` at this file's opset.
    @discardableResult
    func check(_ what: String, nodes: [Onnx_NodeProto], inputs: [(String, [Int], Tensor)], types: [String: Int32] = [:],
               initializers: [Onnx_TensorProto] = [], opset: Int64 = 22, expected: [Double], shape: [Int],
               rtol: Float = 1e-4, atol: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) throws -> Graph {
        try checkImportedModel(what, nodes: nodes, inputs: inputs, types: types, initializers: initializers, opset: opset,
                               expected: expected, shape: shape, rtol: rtol, atol: atol, file: file, line: line)
    }

    /// One node `op` on input x (and the given initializers), output y.
    func checkUnary(_ op: String, _ attrs: [Onnx_AttributeProto] = [], shape: [Int] = [2, 3, 4], range: ClosedRange<Float> = -2...2,
                    opset: Int64 = 22, file: StaticString = #filePath, line: UInt = #line, _ f: (Double) -> Double) throws {
        let (x, xv) = random(shape, range)
        var n = node(op, ["x"], ["y"])
        n.attribute = attrs
        try check("\(op) \(attrs.map(\.name))", nodes: [n], inputs: [("x", shape, x)], opset: opset, expected: xv.map(f), shape: shape,
                  file: file, line: line)
    }

    /// An initializer of an 8- or 16-bit integer type (2 uint8, 3 int8, 4 uint16, 5 int16), raw.
    func integerTensor(_ name: String, type: Int32, dims: [Int], values: [Int]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name; t.dims = dims.map(Int64.init); t.dataType = type
        switch type {
        case 2: t.rawData = Data(values.map { UInt8($0) })
        case 3: t.rawData = Data(values.map { UInt8(bitPattern: Int8($0)) })
        case 4: t.rawData = values.map { UInt16($0) }.withUnsafeBufferPointer { Data(buffer: $0) }
        default: t.rawData = values.map { Int16($0) }.withUnsafeBufferPointer { Data(buffer: $0) }
        }
        return t
    }

    /// Imports a one-node model that must fail, with an error naming the node and containing `message`.
    func expectError(_ n: Onnx_NodeProto, inputs: [(String, [Int64], Int32)], initializers: [Onnx_TensorProto] = [], opset: Int64 = 22,
                     _ message: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let data = try typedModelBytes(nodes: [n], inputs: inputs, outputs: n.output, initializers: initializers, opset: opset)
        XCTAssertThrowsError(try OnnxModel(data: data, path: "bad.onnx").graph(), file: file, line: line) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("node '\(n.name)' (\(n.opType))") || s.contains("\(n.name) (\(n.opType))"), "\(n.opType): \(s)", file: file, line: line)
            XCTAssertTrue(s.contains(message), "\(n.opType): \(s)", file: file, line: line)
        }
    }

    // MARK: elementwise

    func testUnaryOpsMatchTheirDefinitions() throws {
        try checkUnary("Abs") { abs($0) }
        try checkUnary("Log", range: 0.05...4) { log($0) }
        try checkUnary("Reciprocal", range: 0.25...3) { 1 / $0 }
        try checkUnary("Reciprocal", range: -3 ... -0.25) { 1 / $0 }
        try checkUnary("Softsign") { $0 / (1 + abs($0)) }
        for alpha in [1.0, 2.0, 0.5] {
            try checkUnary("Celu", alpha == 1 ? [] : [floatAttribute("alpha", Float(alpha))]) { max(0, $0) + min(0, alpha * (exp($0 / alpha) - 1)) }
        }
        try checkUnary("ThresholdedRelu") { $0 > 1 ? $0 : 0 }
        try checkUnary("ThresholdedRelu", [floatAttribute("alpha", -0.5)]) { $0 > -0.5 ? $0 : 0 }
        try checkUnary("Shrink") { $0 < -0.5 ? $0 : ($0 > 0.5 ? $0 : 0) }
        try checkUnary("Shrink", [floatAttribute("lambd", 0.75), floatAttribute("bias", 0.25)], opset: 9) {
            $0 < -0.75 ? $0 + 0.25 : ($0 > 0.75 ? $0 - 0.25 : 0)
        }
    }

    /// Sum, Mean, Max and Min of one to four inputs that broadcast against each other.
    func testVariadicOpsBroadcastOverAllInputs() throws {
        let shapes = [[2, 3, 4], [3, 1], [4], [1, 1, 4]]
        let ins = shapes.map { random($0) }
        let out = [2, 3, 4]
        func at(_ k: Int, _ i: Int) -> Double {
            // Element i of the output read from input k by numpy broadcasting.
            let s = shapes[k], idx = [i / 12, (i / 4) % 3, i % 4]
            var flat = 0
            for (d, n) in s.enumerated() { flat = flat * n + (n == 1 ? 0 : idx[3 - s.count + d]) }
            return ins[k].1[flat]
        }
        let names = ["a", "b", "c", "d"]
        let sum: ([Double]) -> Double = { $0.reduce(0, +) }
        let mean: ([Double]) -> Double = { $0.reduce(0, +) / Double($0.count) }
        let largest: ([Double]) -> Double = { $0.max()! }
        let smallest: ([Double]) -> Double = { $0.min()! }
        let ops: [(String, ([Double]) -> Double)] = [("Sum", sum), ("Mean", mean), ("Max", largest), ("Min", smallest)]
        for (op, f) in ops {
            for count in [1, 2, 3, 4] {
                // A single input is passed through; its shape is the output's, so it is the first.
                let want = (0..<24).map { i in f((0..<count).map { at($0, i) }) }
                let g = try check("\(op) of \(count)", nodes: [node(op, Array(names.prefix(count)), ["y"])],
                                  inputs: (0..<count).map { (names[$0], shapes[$0], ins[$0].0) }, expected: want, shape: out)
                XCTAssertEqual(g.nodes.count, count == 1 ? 1 : count - 1 + (op == "Mean" ? 1 : 0), "\(op) of \(count): \(g.nodes.map(\.op.name))")
            }
        }
        // Constant inputs fold (integers stay integers); a constant beside a run-time input is a parameter.
        let (x, xv) = random([3])
        try check("Max with constants", nodes: [node("Max", ["x", "c1", "c2"], ["y"])], inputs: [("x", [3], x)],
                  initializers: [floatTensor("c1", dims: [3], values: [0.5, -1, 0]), floatTensor("c2", dims: [1], values: [-0.25])],
                  expected: zip(xv, [0.5, -1, 0]).map { max($0, $1, -0.25) }, shape: [3])
        var cast = node("Cast", ["s"], ["sf"])
        cast.attribute = [intAttribute("to", 1)]
        try check("Sum of integer constants", nodes: [node("Sum", ["i1", "i2"], ["s"]), cast, node("Add", ["x", "sf"], ["y"])],
                  inputs: [("x", [3], x)], initializers: [int64Tensor("i1", [1, 2, 3]), int64Tensor("i2", [10])],
                  expected: zip(xv, [11.0, 12, 13]).map { $0 + $1 }, shape: [3])
    }

    /// NaN and ±infinity at random places among random finite values.
    func testIsNaNAndIsInf() throws {
        var v = values(40)
        let specials: [Float] = [.nan, .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        for k in 0..<12 { v[Int.random(in: 0..<40, using: &rng)] = specials[k % specials.count] }
        let x = try Tensor(shape: [5, 8], scalars: v)
        try check("IsNaN", nodes: [node("IsNaN", ["x"], ["y"])], inputs: [("x", [5, 8], x)], opset: 20,
                  expected: v.map { $0.isNaN ? 1 : 0 }, shape: [5, 8])
        for (pos, neg) in [(1, 1), (1, 0), (0, 1), (0, 0)] {
            var n = node("IsInf", ["x"], ["y"])
            n.attribute = [intAttribute("detect_positive", pos), intAttribute("detect_negative", neg)]
            try check("IsInf \(pos) \(neg)", nodes: [n], inputs: [("x", [5, 8], x)], opset: 20,
                      expected: v.map { ($0 == .infinity && pos == 1) || ($0 == -.infinity && neg == 1) ? 1 : 0 }, shape: [5, 8])
        }
    }

    // MARK: Trilu, Hardmax

    func testTriluKeepsTheBandOfTheLastTwoDimensions() throws {
        for (shape, upper, k) in [([4, 5], true, nil), ([4, 5], false, nil), ([4, 5], false, 0), ([2, 3, 4, 3], true, 1), ([2, 3, 4, 3], false, -1),
                                  ([3, 6], true, -2), ([3, 6], false, 2), ([2, 5, 4], true, 7), ([2, 5, 4], false, -9)] as [([Int], Bool, Int?)] {
            let (x, xv) = random(shape)
            let (rows, cols) = (shape[shape.count - 2], shape[shape.count - 1])
            let kk = k ?? 0
            let want = xv.indices.map { i -> Double in
                let (r, c) = ((i / cols) % rows, i % cols)
                return (upper ? c - r >= kk : c - r <= kk) ? xv[i] : 0
            }
            var n = node("Trilu", k == nil ? ["x"] : ["x", "k"], ["y"])
            n.attribute = [intAttribute("upper", upper ? 1 : 0)]
            try check("Trilu \(shape) upper \(upper) k \(kk)", nodes: [n], inputs: [("x", shape, x)],
                      initializers: k == nil ? [] : [int64Tensor("k", [kk], dims: [])], opset: 14, expected: want, shape: shape)
        }
        // Infinite values outside the band do not leak (the mask selects, it does not multiply).
        let x = try Tensor(shape: [2, 2], scalars: [1, .infinity, -.infinity, 2])
        try check("Trilu of infinities", nodes: [node("Trilu", ["x"], ["y"])], inputs: [("x", [2, 2], x)], opset: 14,
                  expected: [1, .infinity, 0, 2], shape: [2, 2])
    }

    func testHardmaxIsOneHotOfTheFirstMaximum() throws {
        let shape = [3, 4, 5]
        for (axis, opset) in [(0, 13), (1, 13), (2, 13), (-1, 13), (nil, 13), (1, 11), (nil, 11), (0, 11)] as [(Int?, Int64)] {
            let (x, xv) = random(shape)
            var n = node("Hardmax", ["x"], ["y"])
            if let axis { n.attribute = [intAttribute("axis", axis)] }
            let a = ((axis ?? (opset >= 13 ? -1 : 1)) + 3) % 3
            // Before opset 13 the input is a 2-D [prod(..axis), prod(axis..)] matrix, one-hot per row.
            let (outer, len, inner) = opset >= 13 ? (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
                                                  : (shape[..<a].reduce(1, *), shape[a...].reduce(1, *), 1)
            var want = [Double](repeating: 0, count: xv.count)
            for o in 0..<outer {
                for i in 0..<inner {
                    let best = (0..<len).max { xv[(o * len + $0) * inner + i] < xv[(o * len + $1) * inner + i] }!
                    want[(o * len + best) * inner + i] = 1
                }
            }
            try check("Hardmax axis \(String(describing: axis)) opset \(opset)", nodes: [n], inputs: [("x", shape, x)], opset: opset,
                      expected: want, shape: shape)
        }
        let ties = try Tensor(shape: [2, 4], scalars: [3, 3, 3, 1, -1, 2, -1, 2])
        try check("Hardmax ties", nodes: [node("Hardmax", ["x"], ["y"])], inputs: [("x", [2, 4], ties)], opset: 13,
                  expected: [1, 0, 0, 0, 0, 1, 0, 0], shape: [2, 4])
    }

    // MARK: normalisations

    func testGroupNormalization() throws {
        let shape = [2, 6, 3, 4], groups = 3, eps = 1e-3
        let (x, xv) = random(shape)
        func reference(scale: [Double], bias: [Double], perChannel: Bool) -> [Double] {
            let per = 2 * 12
            var out = xv
            for n in 0..<2 {
                for g in 0..<groups {
                    let base = (n * 6 + g * 2) * 12
                    let s = xv[base..<(base + per)]
                    let mean = s.reduce(0, +) / Double(per)
                    let v = s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(per)
                    for j in 0..<per {
                        let ch = g * 2 + j / 12
                        let w = perChannel ? scale[ch] : scale[g], b = perChannel ? bias[ch] : bias[g]
                        out[base + j] = (xv[base + j] - mean) / (v + eps).squareRoot() * w + b
                    }
                }
            }
            return out
        }
        for perChannel in [true, false] {
            let count = perChannel ? 6 : groups
            let (s, sv) = random([count]), (b, bv) = random([count])
            var n = node("GroupNormalization", ["x", "scale", "bias"], ["y"])
            n.attribute = [intAttribute("num_groups", groups), floatAttribute("epsilon", Float(eps))]
            let opset: Int64 = perChannel ? 21 : 18
            // Scale and bias as run-time inputs, then as initializers.
            try check("GroupNormalization opset \(opset)", nodes: [n], inputs: [("x", shape, x), ("scale", [count], s), ("bias", [count], b)],
                      opset: opset, expected: reference(scale: sv, bias: bv, perChannel: perChannel), shape: shape)
            try check("GroupNormalization opset \(opset), constant scale", nodes: [n], inputs: [("x", shape, x)],
                      initializers: [floatTensor("scale", dims: [Int64(count)], values: s.scalars), floatTensor("bias", dims: [Int64(count)], values: b.scalars)],
                      opset: opset, expected: reference(scale: sv, bias: bv, perChannel: perChannel), shape: shape)
        }
    }

    func testLpNormalization() throws {
        let shape = [3, 4, 5]
        for (p, axis) in [(2, -1), (1, -1), (2, 0), (1, 1), (2, 1)] {
            var xv = random(shape).1
            let a = (axis + 3) % 3
            let (outer, len, inner) = (shape[..<a].reduce(1, *), shape[a], shape[(a + 1)...].reduce(1, *))
            // One slice all zeros: it stays zero (onnx's reference), not NaN.
            for j in 0..<len { xv[j * inner] = 0 }
            let x = try Tensor(shape: shape, scalars: xv.map(Float.init))
            var want = xv
            for o in 0..<outer {
                for i in 0..<inner {
                    let idx = (0..<len).map { (o * len + $0) * inner + i }
                    let norm = p == 1 ? idx.reduce(0) { $0 + abs(xv[$1]) } : idx.reduce(0) { $0 + xv[$1] * xv[$1] }.squareRoot()
                    for k in idx { want[k] = norm == 0 ? 0 : xv[k] / norm }
                }
            }
            var n = node("LpNormalization", ["x"], ["y"])
            n.attribute = [intAttribute("p", p), intAttribute("axis", axis)]
            try check("LpNormalization p \(p) axis \(axis)", nodes: [n], inputs: [("x", shape, x)], expected: want, shape: shape)
        }
    }

    func testMeanVarianceNormalization() throws {
        let shape = [2, 3, 4, 5]
        for axes in [nil, [1], [2, 3], [0, 1, 2, 3]] as [[Int]?] {
            let (x, xv) = random(shape)
            let reduced = Set(axes ?? [0, 2, 3])
            var groups: [[Int]: [Int]] = [:]
            for i in 0..<xv.count {
                let idx = [i / 60, (i / 20) % 3, (i / 5) % 4, i % 5]
                groups[idx.enumerated().map { reduced.contains($0.offset) ? 0 : $0.element }, default: []].append(i)
            }
            var want = xv
            for members in groups.values {
                let mean = members.reduce(0) { $0 + xv[$1] } / Double(members.count)
                let sd = (members.reduce(0) { $0 + (xv[$1] - mean) * (xv[$1] - mean) } / Double(members.count)).squareRoot()
                for i in members { want[i] = (xv[i] - mean) / (sd + 1e-9) }
            }
            var n = node("MeanVarianceNormalization", ["x"], ["y"])
            if let axes { n.attribute = [{ var a = Onnx_AttributeProto(); a.name = "axes"; a.type = .ints; a.ints = axes.map(Int64.init); return a }()] }
            try check("MeanVarianceNormalization axes \(String(describing: axes))", nodes: [n], inputs: [("x", shape, x)], opset: 13,
                      expected: want, shape: shape)
        }
    }

    // MARK: quantisation

    /// round-half-to-even(x / scale) + zero point, saturated; the division in float32 as the graph does it.
    func quantize(_ x: Double, _ scale: Double, _ zp: Double, _ lo: Double, _ hi: Double) -> Double {
        min(max(Double((Float(x) / Float(scale)).rounded(.toNearestOrEven)) + zp, lo), hi)
    }

    func testQuantizeLinearPerTensorPerAxisAndBlocked() throws {
        let shape = [2, 3, 5]
        // Values well past the ranges, so that both ends saturate.
        let (x, xv) = random(shape, -40...40)
        // Per tensor, uint8 with a zero point; int8 with one; uint8 without (the default type); int16 by output_dtype.
        for (type, zp, lo, hi) in [(Int32(2), 100, 0.0, 255.0), (3, -7, -128, 127), (2, nil, 0, 255), (5, nil, -32768, 32767)] as [(Int32, Int?, Double, Double)] {
            let scale: Float = type == 5 ? 0.001 : 0.2
            var n = node("QuantizeLinear", zp == nil ? ["x", "s"] : ["x", "s", "z"], ["y"])
            if zp == nil && type != 2 { n.attribute = [intAttribute("output_dtype", Int(type))] }
            var inits = [floatTensor("s", dims: [], values: [scale])]
            if let zp { inits.append(integerTensor("z", type: type, dims: [], values: [zp])) }
            try check("QuantizeLinear per tensor type \(type) zero point \(String(describing: zp))", nodes: [n], inputs: [("x", shape, x)],
                      initializers: inits, expected: xv.map { quantize($0, Double(scale), Double(zp ?? 0), lo, hi) }, shape: shape, rtol: 0, atol: 1e-3)
        }
        // Per axis (axis 1, and axis -1 with int8), scale and zero point as initializers and as run-time inputs.
        for (axis, type) in [(1, Int32(2)), (-1, 3)] {
            let a = (axis + 3) % 3
            let c = shape[a]
            let scales = values(c, 0.1...0.5).map(Double.init)
            let zps = (0..<c).map { _ in type == 2 ? Int.random(in: 0...255, using: &rng) : Int.random(in: -128...127, using: &rng) }
            let (lo, hi) = type == 2 ? (0.0, 255.0) : (-128.0, 127.0)
            let want = xv.indices.map { i -> Double in
                let k = [i / 15, (i / 5) % 3, i % 5][a]
                return quantize(xv[i], scales[k], Double(zps[k]), lo, hi)
            }
            var n = node("QuantizeLinear", ["x", "s", "z"], ["y"])
            n.attribute = [intAttribute("axis", axis)]
            try check("QuantizeLinear per axis \(axis)", nodes: [n], inputs: [("x", shape, x)],
                      initializers: [floatTensor("s", dims: [Int64(c)], values: scales.map(Float.init)), integerTensor("z", type: type, dims: [c], values: zps)],
                      expected: want, shape: shape, rtol: 0, atol: 1e-3)
            try check("QuantizeLinear per axis \(axis), run-time scale and zero point", nodes: [n],
                      inputs: [("x", shape, x), ("s", [c], try Tensor(shape: [c], scalars: scales.map(Float.init))),
                               ("z", [c], try Tensor(shape: [c], scalars: zps.map(Float.init)))],
                      types: ["z": type], expected: want, shape: shape, rtol: 0, atol: 1e-3)
        }
        // Blocked along the last axis (5 elements in blocks of 2: the last block is short).
        let scales = values(2 * 3 * 3, 0.1...0.5).map(Double.init)
        let zps = (0..<18).map { _ in Int.random(in: -128...127, using: &rng) }
        let want = xv.indices.map { i -> Double in
            let k = (i / 5) * 3 + (i % 5) / 2
            return quantize(xv[i], scales[k], Double(zps[k]), -128, 127)
        }
        var n = node("QuantizeLinear", ["x", "s", "z"], ["y"])
        n.attribute = [intAttribute("axis", 2), intAttribute("block_size", 2)]
        try check("QuantizeLinear blocked", nodes: [n], inputs: [("x", shape, x)],
                  initializers: [floatTensor("s", dims: [2, 3, 3], values: scales.map(Float.init)), integerTensor("z", type: 3, dims: [2, 3, 3], values: zps)],
                  opset: 21, expected: want, shape: shape, rtol: 0, atol: 1e-3)
        try check("QuantizeLinear blocked, run-time scale", nodes: [n],
                  inputs: [("x", shape, x), ("s", [2, 3, 3], try Tensor(shape: [2, 3, 3], scalars: scales.map(Float.init)))],
                  initializers: [integerTensor("z", type: 3, dims: [2, 3, 3], values: zps)],
                  opset: 21, expected: want, shape: shape, rtol: 0, atol: 1e-3)
    }

    func testDequantizeLinearAndTheQDQPattern() throws {
        let shape = [2, 4, 3]
        // x int8 at run time, per tensor and per axis (axis 1), and blocked on axis 1 (blocks of 2).
        let xi = (0..<24).map { _ in Int.random(in: -128...127, using: &rng) }
        let x = try Tensor(shape: shape, scalars: xi.map(Float.init))
        let s = values(4, 0.01...0.5).map(Double.init), z = (0..<4).map { _ in Int.random(in: -20...20, using: &rng) }
        for (what, sDims, pick) in [("per tensor", [Int](), { (_: Int) in 0 }), ("per axis", [4], { (i: Int) in (i / 3) % 4 }),
                                    ("blocked", [2, 2, 3], { (i: Int) in (i / 12) * 6 + ((i / 3) % 4 / 2) * 3 + i % 3 })] {
            let count = sDims.reduce(1, *)
            let sv = what == "blocked" ? values(count, 0.01...0.5).map(Double.init) : Array(s.prefix(count))
            let zv = what == "blocked" ? (0..<count).map { _ in Int.random(in: -20...20, using: &rng) } : Array(z.prefix(count))
            var n = node("DequantizeLinear", ["x", "s", "z"], ["y"])
            if what == "blocked" { n.attribute = [intAttribute("axis", 1), intAttribute("block_size", 2)] }
            let want = xi.indices.map { i in Double(Float(Double(xi[i] - zv[pick(i)])) * Float(sv[pick(i)])) }
            try check("DequantizeLinear \(what)", nodes: [n], inputs: [("x", shape, x)], types: ["x": 3],
                      initializers: [floatTensor("s", dims: sDims.map(Int64.init), values: sv.map(Float.init)),
                                     integerTensor("z", type: 3, dims: sDims, values: zv)],
                      opset: 21, expected: want, shape: shape)
        }
        // uint8 without a zero point.
        let xu = (0..<24).map { _ in Int.random(in: 0...255, using: &rng) }
        try check("DequantizeLinear uint8 without zero point", nodes: [node("DequantizeLinear", ["x", "s"], ["y"])],
                  inputs: [("x", shape, try Tensor(shape: shape, scalars: xu.map(Float.init)))], types: ["x": 2],
                  initializers: [floatTensor("s", dims: [], values: [0.125])], expected: xu.map { Double($0) * 0.125 }, shape: shape)

        // The QDQ pattern: a quantised weight dequantised (folded at import) times a fake-quantised
        // activation (QuantizeLinear then DequantizeLinear at run time).
        let (a, av) = random([3, 4])
        let wq = (0..<20).map { _ in Int.random(in: -127...127, using: &rng) }
        let ws = values(5, 0.001...0.02).map(Double.init)
        let nodes = [
            node("QuantizeLinear", ["a", "as", "az"], ["aq"]), node("DequantizeLinear", ["aq", "as", "az"], ["ad"]),
            { var d = node("DequantizeLinear", ["wq", "ws"], ["w"]); d.attribute = [intAttribute("axis", 1)]; return d }(),
            node("MatMul", ["ad", "w"], ["y"]),
        ]
        let ad = av.map { (quantize($0, 1.0 / 64, 10, 0, 255) - 10) * (1.0 / 64) }
        var want = [Double](repeating: 0, count: 15)
        for r in 0..<3 { for c in 0..<5 { for k in 0..<4 { want[r * 5 + c] += ad[r * 4 + k] * Double(wq[k * 5 + c]) * ws[c] } } }
        let g = try check("QDQ MatMul", nodes: nodes, inputs: [("a", [3, 4], a)],
                          initializers: [floatTensor("as", dims: [], values: [1.0 / 64]), integerTensor("az", type: 2, dims: [], values: [10]),
                                         integerTensor("wq", type: 3, dims: [4, 5], values: wq), floatTensor("ws", dims: [5], values: ws.map(Float.init))],
                          opset: 19, expected: want, shape: [3, 5])
        // The weight's DequantizeLinear folded into the dense op's parameter.
        XCTAssertTrue(g.nodes.contains { if case .dense = $0.op { return true }; return false }, "\(g.nodes.map(\.op.name))")
    }

    // MARK: errors

    /// Random shapes (empty dimensions among them) and hostile attributes import or fail with an
    /// error; none traps.
    func testHostileFormsNeverCrash() throws {
        var g = SeededGenerator(seed: 27)
        let ops: [(String, Int, [String])] = [
            ("Trilu", 2, ["upper"]), ("Hardmax", 1, ["axis"]), ("GroupNormalization", 3, ["num_groups"]), ("LpNormalization", 1, ["axis", "p"]),
            ("MeanVarianceNormalization", 1, []), ("QuantizeLinear", 3, ["axis", "block_size", "output_dtype"]),
            ("DequantizeLinear", 3, ["axis", "block_size"]), ("Sum", 3, []), ("Mean", 2, []), ("Celu", 1, []), ("Shrink", 1, []), ("IsInf", 1, ["detect_positive"]),
        ]
        let extremes: [Int] = [0, 1, 2, 3, -1, -5, 7, 1 << 31, -(1 << 31), 17, 23]
        var imported = 0
        for _ in 0..<400 {
            let (op, inputs, attrs) = ops[Int.random(in: 0..<ops.count, using: &g)]
            var n = node(op, Array(["x", "s", "z"].prefix(inputs)), ["y"], name: "hostile")
            n.attribute = attrs.filter { _ in Bool.random(using: &g) }.map { intAttribute($0, extremes[Int.random(in: 0..<extremes.count, using: &g)]) }
            let shapes = (0..<inputs).map { _ in (0..<Int.random(in: 0...4, using: &g)).map { _ in Int64.random(in: 0...4, using: &g) } }
            let types: [Int32] = (0..<inputs).map { _ in [1, 2, 3, 7][Int.random(in: 0..<4, using: &g)] }
            let data = try typedModelBytes(nodes: [n], inputs: (0..<inputs).map { (["x", "s", "z"][$0], shapes[$0], types[$0]) }, outputs: ["y"],
                                           opset: [13, 18, 21, 22][Int.random(in: 0..<4, using: &g)])
            if (try? OnnxModel(data: data, path: "h.onnx").graph()) != nil { imported += 1 }
        }
        XCTAssertGreaterThan(imported, 20)
    }

    func testBadInputsGiveErrorsNamingTheNode() throws {
        func n(_ op: String, _ ins: [String], _ attrs: [Onnx_AttributeProto] = []) -> Onnx_NodeProto {
            var n = node(op, ins, ["y"], name: "bad_\(op.lowercased())")
            n.attribute = attrs
            return n
        }
        let f: Int32 = 1
        try expectError(n("QuantizeLinear", ["x", "s"], [intAttribute("output_dtype", 17)]), inputs: [("x", [4], f)],
                        initializers: [floatTensor("s", dims: [], values: [0.5])], "quantising to float8e4m3fn")
        try expectError(n("QuantizeLinear", ["x", "s"], [intAttribute("output_dtype", 23)]), inputs: [("x", [4], f)],
                        initializers: [floatTensor("s", dims: [], values: [0.5])], "quantising to float4e2m1")
        try expectError(n("DequantizeLinear", ["x", "s"]), inputs: [("x", [4], 19)],
                        initializers: [floatTensor("s", dims: [], values: [0.5])], "dequantising float8e5m2")
        try expectError(n("QuantizeLinear", ["x", "s"], [intAttribute("axis", 1)]), inputs: [("x", [2, 3, 4], f)],
                        initializers: [floatTensor("s", dims: [4], values: [1, 2, 3, 4])], "neither one value nor one per element of axis 1")
        try expectError(n("DequantizeLinear", ["x", "s"], [intAttribute("axis", 1), intAttribute("block_size", 2)]), inputs: [("x", [2, 5], 3)],
                        initializers: [floatTensor("s", dims: [2, 2], values: [1, 2, 3, 4])], "does not fit [2, 5] with block_size 2")
        try expectError(n("QuantizeLinear", ["x", "s", "z"]), inputs: [("x", [4], f)],
                        initializers: [floatTensor("s", dims: [], values: [0.5]), integerTensor("z", type: 3, dims: [2], values: [1, 2])],
                        "zero point of shape [2] differs from the scale's []")
        try expectError(n("GroupNormalization", ["x", "s", "b"], [intAttribute("num_groups", 4)]), inputs: [("x", [1, 6, 2], f), ("s", [6], f), ("b", [6], f)],
                        "num_groups 4 must be positive and divide the 6 channels")
        try expectError(n("GroupNormalization", ["x", "s", "b"], [intAttribute("num_groups", 3)]), inputs: [("x", [1, 6, 2], f), ("s", [3], f), ("b", [3], f)],
                        opset: 21, "scale has shape [3], not [6]")
        try expectError(n("Trilu", ["x"]), inputs: [("x", [5], f)], opset: 14, "rank 2 or more")
        try expectError(n("Trilu", ["x", "k"]), inputs: [("x", [3, 3], f), ("k", [], 7)], opset: 14, "k (input 1) is the graph input 'k'")
        try expectError(n("LpNormalization", ["x"], [intAttribute("p", 3)]), inputs: [("x", [3, 3], f)], "p 3 must be 1 or 2")
        try expectError(n("Hardmax", ["x"], [intAttribute("axis", 2)]), inputs: [("x", [3, 3], f)], opset: 13, "axis 2 out of range")
        try expectError(n("Celu", ["x"], [floatAttribute("alpha", 0)]), inputs: [("x", [3], f)], "alpha 0.0 must be finite and nonzero")
        try expectError(n("Sum", []), inputs: [("x", [3], f)], "needs one or more inputs")
        try expectError(n("Max", ["x", "w"]), inputs: [("x", [3], f), ("w", [4], f)], "shapes [3] and [4] do not broadcast")
        try expectError(n("MeanVarianceNormalization", ["x"]), inputs: [("x", [3, 4], f)], opset: 13, "out of range for rank 2")
    }
}
