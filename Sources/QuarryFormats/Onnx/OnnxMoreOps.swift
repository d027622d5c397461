// More ONNX operators, each composed at import of graph ops both backends already run
// (activations, broadcasting binary ops and comparisons, select, reduce, layer norm, argmax,
// gather), so no backend needs a kernel of its own:
//
//   Abs, Log, Reciprocal        the activations of the same names
//   Sum, Mean, Max, Min         a chain of broadcasting binary ops over the inputs (Mean then
//                               divides by their count); one input is passed through
//   Softsign                    x / (1 + |x|)
//   Celu                        alpha · elu(x / alpha)
//   ThresholdedRelu             select(x > alpha, x, 0)
//   Shrink                      select(x < −λ, x + bias, select(x > λ, x − bias, 0))
//   IsNaN                       not(x == x)
//   IsInf                       |x| > FLT_MAX (x > FLT_MAX or x < −FLT_MAX for one sign only)
//   Trilu                       select with a constant 0/1 mask over the last two dimensions
//   Hardmax                     argmax (the first of ties) == a constant 0, 1, … along the axis
//   GroupNormalization          layer norm over each group of an [N, G, rest] view, then the
//                               per-channel (opset 21) or per-group (opset 18) scale and bias
//   LpNormalization             x / ‖x‖ along the axis (p 1 or 2), 0 where the norm is 0
//   MeanVarianceNormalization   (x − mean) / (√mean((x − mean)²) + 1e-9) over the axes
//   QuantizeLinear              clip(round_half_even(x / scale) + zero point) to the output
//                               type's range (uint8 / int8 / 16-, 4- and 2-bit integers)
//   DequantizeLinear            (x − zero point) · scale
//
// Quantisation scales and zero points may be per tensor, per axis or blocked; they broadcast
// against x after a reshape (per axis) or a gather of each block's value along the axis
// (blocked). float8 and float4 types are refused naming the node and the type. Nodes whose
// inputs are all constant (a quantised weight and its scale, say) fold on the host.

import Foundation
import Quarry

extension NodeContext {
    /// The ONNX element type of input `i` as the model declares it: an initializer's, a graph
    /// input's, a value_info entry's, a Constant's value's or a Cast's target; nil when nothing says.
    func elementType(_ i: Int) -> Int32? {
        let name = inputName(i)
        let g = importer.model.graphProto
        if let t = g.initializer.first(where: { $0.name == name }) { return t.dataType }
        for vi in g.input + g.valueInfo + g.output where vi.name == name && vi.type.tensorType.elemType != 0 {
            return vi.type.tensorType.elemType
        }
        for n in importer.model.nodes where n.output.first == name {
            if n.opType == "Constant", let a = n.attribute.first(where: { $0.name == "value" }) { return a.t.dataType }
            if n.opType == "Cast", let a = n.attribute.first(where: { $0.name == "to" }) { return Int32(truncatingIfNeeded: a.i) }
        }
        return nil
    }

    /// Folds a one-input node on the host when its input is constant; true when it did.
    mutating func foldUnary(kind: HostTensor.Kind? = nil, _ f: (Double) -> Double) throws -> Bool {
        guard allInputsConstant, let t = try constant(0) else { return false }
        try setConstant(0, HostTensor(doubles: t.doubles.map(f), shape: t.shape, kind: kind ?? .float))
        return true
    }
}

extension OnnxImporter {
    // MARK: Sum, Mean, Max, Min

    /// Any number (one or more) of numpy-broadcast inputs combined pairwise, left to right.
    static func variadic(_ c: inout NodeContext, _ op: BinaryOp, mean: Bool = false, fold: @escaping (Double, Double) -> Double) throws {
        let n = c.inputCount
        guard n >= 1, (0..<n).allSatisfy({ c.hasInput($0) }) else {
            throw QuarryError.invalidArgument("\(c.op) needs one or more inputs, all given; got \(c.proto.input)")
        }
        if c.allInputsConstant {
            var acc = try c.constant(0)!
            for i in 1..<n {
                let b = try c.constant(i)!
                let kind: HostTensor.Kind = acc.kind == .float || b.kind == .float ? .float : .int
                acc = try HostTensor.broadcast(acc, b, kind: kind, fold)
            }
            if mean { acc = HostTensor(doubles: acc.doubles.map { $0 / Double(n) }, shape: acc.shape, kind: .float) }
            try c.setConstant(0, acc)
            return
        }
        var integer = !mean
        for i in 0..<n where try !c.isInteger(i) { integer = false }
        if n == 1 { try c.alias(try c.value(0), integer: integer); return }
        var cur = try c.value(0)
        for i in 1..<n {
            if i == n - 1 && !mean {
                try c.emit(.binary(op, activation: nil), [cur, try c.value(i)], integer: integer)
            } else {
                cur = try c.emitInternal(.binary(op, activation: nil), [cur, try c.value(i)], "\(op.rawValue)\(i)").name
            }
        }
        if mean { try c.emit(.binary(.div, activation: nil), [cur, c.scalarParameter(Float(n))]) }
    }

    // MARK: activations

    static func softsign(_ c: inout NodeContext) throws {
        if try c.foldUnary({ $0 / (1 + Swift.abs($0)) }) { return }
        let x = try c.value(0)
        let a = try c.emitInternal(.activation(.abs), [x], "abs")
        let d = try c.emitInternal(.binary(.add, activation: nil), [a.name, c.scalarParameter(1)], "one_plus_abs")
        try c.emit(.binary(.div, activation: nil), [x, d.name])
    }

    static func celu(_ c: inout NodeContext) throws {
        let alpha = c.float("alpha", 1)
        guard alpha != 0, alpha.isFinite else { throw QuarryError.invalidArgument("Celu alpha \(alpha) must be finite and nonzero") }
        let a = Double(alpha)
        if try c.foldUnary({ Swift.max(0, $0) + Swift.min(0, a * Foundation.expm1($0 / a)) }) { return }
        if alpha == 1 { try c.emit(.activation(.elu(alpha: 1)), [try c.value(0)]); return }
        let s = try c.emitInternal(.binary(.div, activation: nil), [try c.value(0), c.scalarParameter(alpha)], "scaled")
        let e = try c.emitInternal(.activation(.elu(alpha: 1)), [s.name], "elu")
        try c.emit(.binary(.mul, activation: nil), [e.name, c.scalarParameter(alpha)])
    }

    static func thresholdedRelu(_ c: inout NodeContext) throws {
        let alpha = c.float("alpha", 1)
        if try c.foldUnary({ $0 > Double(alpha) ? $0 : 0 }) { return }
        let x = try c.value(0)
        let m = try c.emitInternal(.binary(.greater, activation: nil), [x, c.scalarParameter(alpha)], "above")
        try c.emit(.select, [m.name, x, c.scalarParameter(0)])
    }

    static func shrink(_ c: inout NodeContext) throws {
        let lambd = c.float("lambd", 0.5), bias = c.float("bias", 0)
        let integer = try c.isInteger(0)
        let (l, b) = (Double(lambd), Double(bias))
        if try c.foldUnary(kind: integer ? .int : .float, { $0 < -l ? $0 + b : ($0 > l ? $0 - b : 0) }) { return }
        let x = try c.value(0)
        let below = try c.emitInternal(.binary(.less, activation: nil), [x, c.scalarParameter(-lambd)], "below")
        let above = try c.emitInternal(.binary(.greater, activation: nil), [x, c.scalarParameter(lambd)], "above")
        let up = try c.emitInternal(.binary(.add, activation: nil), [x, c.scalarParameter(bias)], "plus_bias")
        let down = try c.emitInternal(.binary(.sub, activation: nil), [x, c.scalarParameter(bias)], "minus_bias")
        let upper = try c.emitInternal(.select, [above.name, down.name, c.scalarParameter(0)], "upper")
        try c.emit(.select, [below.name, up.name, upper.name], integer: integer)
    }

    static func isNaN(_ c: inout NodeContext) throws {
        if try c.foldUnary(kind: .bool, { $0.isNaN ? 1 : 0 }) { return }
        let x = try c.value(0)
        let same = try c.emitInternal(.binary(.equal, activation: nil), [x, x], "equal_self")
        try c.emit(.activation(.not), [same.name], integer: true)
    }

    static func isInf(_ c: inout NodeContext) throws {
        let pos = c.int("detect_positive", 1) != 0, neg = c.int("detect_negative", 1) != 0
        if try c.foldUnary(kind: .bool, { ($0 == .infinity && pos) || ($0 == -.infinity && neg) ? 1 : 0 }) { return }
        // No infinite constant is needed: past the largest finite float there is only infinity,
        // and NaN compares false.
        let x = try c.value(0), big = Float.greatestFiniteMagnitude
        switch (pos, neg) {
        case (true, true):
            let a = try c.emitInternal(.activation(.abs), [x], "abs")
            try c.emit(.binary(.greater, activation: nil), [a.name, c.scalarParameter(big)], integer: true)
        case (true, false):
            try c.emit(.binary(.greater, activation: nil), [x, c.scalarParameter(big)], integer: true)
        case (false, true):
            try c.emit(.binary(.less, activation: nil), [x, c.scalarParameter(-big)], integer: true)
        case (false, false):
            // Never true: |x| < 0 holds for no number, NaN included.
            let a = try c.emitInternal(.activation(.abs), [x], "abs")
            try c.emit(.binary(.less, activation: nil), [a.name, c.scalarParameter(0)], integer: true)
        }
    }

    // MARK: Trilu, Hardmax

    /// The k input sets which elements are kept, so it must be known at import (a constant, a value
    /// computed from shapes, or a graph input given with the input shapes).
    static func trilu(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let upper = c.int("upper", 1) != 0
        guard x.count >= 2 else { throw QuarryError.invalidArgument("Trilu needs an input of rank 2 or more, got \(x)") }
        var kv = 0
        if c.hasInput(1) {
            let t = try c.requireConstant(1, "k")
            guard t.count == 1 else { throw QuarryError.invalidArgument("Trilu's k must hold one value, got shape \(t.shape)") }
            kv = t.sizes[0]
        }
        let k = kv
        let (rows, cols) = (x[x.count - 2], x[x.count - 1])
        guard let cells = checkedCount([rows, cols]), cells <= HostTensor.maxFoldedElements else { throw c.unsupported("Trilu over a \(rows) × \(cols) matrix (its mask is a constant of at most 2^24 elements)") }
        // Element (i, j) is kept when j − i ≥ k (upper) or j − i ≤ k (lower).
        let keep: (Int, Int) -> Bool = { i, j in upper ? j - i >= k : j - i <= k }
        let mask = (0..<cells).map { keep($0 / cols, $0 % cols) }
        if let t = try c.constant(0) {
            let d = t.doubles
            try c.setConstant(0, HostTensor(doubles: d.indices.map { mask[$0 % cells] ? d[$0] : 0 }, shape: x, kind: t.kind))
            return
        }
        let integer = try c.isInteger(0)
        if x.reduce(1, *) == 0 || !mask.contains(false) { try c.alias(try c.value(0), integer: integer); return }
        let m = c.parameter(HostTensor(floats: mask.map { $0 ? 1 : 0 }, shape: [rows, cols]), key: "trilu_mask:\(rows)x\(cols):\(upper):\(k)")
        try c.emit(.select, [m, try c.value(0), c.scalarParameter(0)], integer: integer)
    }

    static func hardmax(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        guard !x.isEmpty else { throw QuarryError.invalidArgument("Hardmax of a scalar") }
        let axis = try c.normAxis(c.int("axis", c.opset >= 13 ? -1 : 1), rank: x.count)
        // Before opset 13 the input is seen as 2-D [prod(..axis), prod(axis..)].
        let coerced = c.opset < 13 && axis != x.count - 1
        let view = coerced ? [x[..<axis].reduce(1, *), x[axis...].reduce(1, *)] : x
        let ax = coerced ? 1 : axis
        guard view[ax] > 0 else { throw QuarryError.invalidArgument("Hardmax over the empty axis \(axis) of \(x)") }
        if let t = try c.constant(0) {
            let d = t.doubles, inner = view[(ax + 1)...].reduce(1, *), n = view[ax]
            var out = [Double](repeating: 0, count: d.count)
            for o in 0..<(d.isEmpty ? 0 : d.count / (n * inner)) {
                for i in 0..<inner {
                    var best = 0
                    for j in 1..<n where d[(o * n + j) * inner + i] > d[(o * n + best) * inner + i] { best = j }
                    out[(o * n + best) * inner + i] = 1
                }
            }
            try c.setConstant(0, HostTensor(doubles: out, shape: x, kind: .float))
            return
        }
        var v = try c.value(0)
        if coerced { v = try c.emitInternal(.reshape(shape: view), [v], "2d").name }
        let am = try c.emitInternal(.argExtreme(largest: true, axis: ax, keepDims: true, selectLast: false), [v], "argmax")
        var iotaShape = [Int](repeating: 1, count: view.count)
        iotaShape[ax] = view[ax]
        let iota = c.parameter(HostTensor(floats: (0..<view[ax]).map(Float.init), shape: iotaShape), key: "iota:\(iotaShape)")
        if coerced {
            let h = try c.emitInternal(.binary(.equal, activation: nil), [am.name, iota], "one_hot")
            try c.emit(.reshape(shape: x), [h.name])
        } else {
            try c.emit(.binary(.equal, activation: nil), [am.name, iota])
        }
    }

    // MARK: normalisations

    /// Input `i` reshaped to `shape`: a parameter for a constant, a reshape node otherwise.
    static func reshaped(_ c: inout NodeContext, _ i: Int, _ shape: [Int], _ suffix: String) throws -> String {
        if let t = try c.constant(i) { return c.parameter(t.converted(to: .float).reshaped(shape), key: c.inputName(i) + ":\(shape)") }
        return try c.emitInternal(.reshape(shape: shape), [try c.value(i)], suffix).name
    }

    static func groupNormalization(_ c: inout NodeContext) throws {
        // stash_type names the statistics' precision; Quarry computes them in float32 (the default, 1).
        c.ignore("stash_type")
        let x = try c.shape(0)
        let groups = c.int("num_groups", 0)
        let eps = c.float("epsilon", 1e-5)
        guard x.count >= 2 else { throw QuarryError.invalidArgument("input \(x) has no channel axis") }
        let ch = x[1]
        guard groups > 0, groups <= ch, ch % groups == 0 else { throw QuarryError.invalidArgument("num_groups \(groups) must be positive and divide the \(ch) channels of \(x)") }
        // Opset 18 scales and shifts each group; from opset 21 each channel.
        let perChannel = c.opset >= 21
        let want = perChannel ? ch : groups
        for i in 1...2 {
            let s = try c.shape(i)
            guard s.reduce(1, *) == want, s.count <= 1 else {
                throw QuarryError.invalidArgument("\(i == 1 ? "scale" : "bias") has shape \(s), not [\(want)] (one per \(perChannel ? "channel" : "group") at opset \(c.opset))")
            }
        }
        let rest = x.reduce(1, *) / Swift.max(x[0] * groups, 1)
        let grouped = [x[0], groups, rest]
        let view = try c.emitInternal(.reshape(shape: grouped), [try c.value(0)], "groups")
        let zeros = c.parameter(HostTensor(floats: [Float](repeating: 0, count: rest), shape: [rest]), key: "zeros:[\(rest)]")
        var normed = try c.emitInternal(.layerNorm(epsilon: eps, normalizedDims: 1), [view.name, "", zeros], "normalised").name
        var shape = [Int](repeating: 1, count: perChannel ? x.count - 1 : 2)
        shape[0] = want
        if !perChannel {
            let s = try c.emitInternal(.binary(.mul, activation: nil), [normed, try reshaped(&c, 1, shape, "scale")], "scaled")
            let b = try c.emitInternal(.binary(.add, activation: nil), [s.name, try reshaped(&c, 2, shape, "bias")], "shifted")
            try c.emit(.reshape(shape: x), [b.name])
            return
        }
        normed = try c.emitInternal(.reshape(shape: x), [normed], "channels").name
        let s = try c.emitInternal(.binary(.mul, activation: nil), [normed, try reshaped(&c, 1, shape, "scale")], "scaled")
        try c.emit(.binary(.add, activation: nil), [s.name, try reshaped(&c, 2, shape, "bias")])
    }

    static func lpNormalization(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let axis = try c.normAxis(c.int("axis", -1), rank: x.count)
        let p = c.int("p", 2)
        guard p == 1 || p == 2 else { throw QuarryError.invalidArgument("LpNormalization p \(p) must be 1 or 2") }
        let v = try c.value(0)
        let norm: String
        if p == 1 {
            let a = try c.emitInternal(.activation(.abs), [v], "abs")
            norm = try c.emitInternal(.reduce(.sum, axes: [axis], keepDims: true), [a.name], "l1").name
        } else {
            let sq = try c.emitInternal(.binary(.mul, activation: nil), [v, v], "square")
            let s = try c.emitInternal(.reduce(.sum, axes: [axis], keepDims: true), [sq.name], "sum_square")
            norm = try c.emitInternal(.activation(.sqrt), [s.name], "l2").name
        }
        // A zero norm means a zero slice: divided by 1 instead, it stays 0 (onnx's reference), not NaN.
        let zero = try c.emitInternal(.binary(.equal, activation: nil), [norm, c.scalarParameter(0)], "norm_is_zero")
        let safe = try c.emitInternal(.binary(.add, activation: nil), [norm, zero.name], "divisor")
        try c.emit(.binary(.div, activation: nil), [v, safe.name])
    }

    static func meanVarianceNormalization(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let raw = c.ints("axes") ?? [0, 2, 3]
        let axes = Array(Set(try raw.map { try c.normAxis($0, rank: x.count) })).sorted()
        guard axes.count == raw.count else { throw QuarryError.invalidArgument("repeated axes \(raw)") }
        let v = try c.value(0)
        let mean = try c.emitInternal(.reduce(.mean, axes: axes, keepDims: true), [v], "mean")
        let d = try c.emitInternal(.binary(.sub, activation: nil), [v, mean.name], "centred")
        let sq = try c.emitInternal(.binary(.mul, activation: nil), [d.name, d.name], "squared")
        let variance = try c.emitInternal(.reduce(.mean, axes: axes, keepDims: true), [sq.name], "variance")
        let sd = try c.emitInternal(.activation(.sqrt), [variance.name], "stddev")
        let den = try c.emitInternal(.binary(.add, activation: nil), [sd.name, c.scalarParameter(1e-9)], "stddev_eps")
        try c.emit(.binary(.div, activation: nil), [d.name, den.name])
    }

    // MARK: QuantizeLinear, DequantizeLinear

    /// The integer types a quantised tensor may have, with their ranges.
    static let quantizedIntegerTypes: [Int32: (name: String, lo: Double, hi: Double)] = [
        2: ("uint8", 0, 255), 3: ("int8", -128, 127), 4: ("uint16", 0, 65535), 5: ("int16", -32768, 32767),
        6: ("int32", -2147483648, 2147483647),
        21: ("uint4", 0, 15), 22: ("int4", -8, 7), 25: ("uint2", 0, 3), 26: ("int2", -2, 1),
    ]
    /// The float8 / float4 types ONNX quantises to, which Quarry refuses.
    static let quantizedFloatTypes: [Int32: String] = [
        17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 23: "float4e2m1", 24: "float8e8m0",
    ]

    /// How input `i` (a scale or zero point) lines up with x: per tensor (one element), per axis
    /// (1-D, one per element of x's axis) or blocked (x's rank, ⌈K / block⌉ along the axis).
    enum QuantLayout { case tensor, axis(Int), blocked(axis: Int, block: Int) }

    static func quantLayout(_ c: inout NodeContext, x: [Int], what: String) throws -> QuantLayout {
        let s = try c.shape(1)
        let axisAttr = c.int("axis", 1)
        let block = c.opset >= 21 ? c.int("block_size", 0) : 0
        guard block >= 0 else { throw QuarryError.invalidArgument("block_size \(block) must not be negative") }
        if block == 0 && s.reduce(1, *) == 1 && s.count <= 1 { return .tensor }
        let axis = try c.normAxis(axisAttr, rank: x.count)
        if block == 0 {
            guard s == [x[axis]] else {
                throw QuarryError.invalidArgument("\(what) scale of shape \(s) is neither one value nor one per element of axis \(axis) of \(x)")
            }
            return .axis(axis)
        }
        let blocks = (x[axis] + block - 1) / block
        var want = x
        want[axis] = blocks
        guard s == want else {
            throw QuarryError.invalidArgument("blocked \(what) scale of shape \(s) does not fit \(x) with block_size \(block) on axis \(axis) (want \(want))")
        }
        return .blocked(axis: axis, block: block)
    }

    /// Input `i` laid out to broadcast against x; for a constant, the host tensor that does.
    static func quantHost(_ t: HostTensor, _ layout: QuantLayout, x: [Int]) -> HostTensor {
        switch layout {
        case .tensor: return t.reshaped(t.shape.isEmpty || x.isEmpty ? [] : [1])
        case .axis(let a):
            var s = [Int](repeating: 1, count: x.count); s[a] = x[a]
            return t.reshaped(s)
        case .blocked(let a, let b): return t.taking((0..<x[a]).map { $0 / b }, axis: a)
        }
    }

    static func quantOperand(_ c: inout NodeContext, _ i: Int, _ layout: QuantLayout, x: [Int], _ suffix: String) throws -> String {
        if let t = try c.constant(i) {
            return c.parameter(quantHost(t, layout, x: x).converted(to: .float), key: c.inputName(i) + ":quant\(x):\(layout)")
        }
        switch layout {
        case .tensor: return try c.value(i)
        case .axis(let a):
            var s = [Int](repeating: 1, count: x.count); s[a] = x[a]
            return try c.emitInternal(.reshape(shape: s), [try c.value(i)], suffix).name
        case .blocked(let a, let b):
            let idx = c.parameter(HostTensor(floats: (0..<x[a]).map { Float($0 / b) }, shape: [x[a]]), key: "blocks:\(x[a])/\(b)")
            return try c.emitInternal(.gather(axis: a), [try c.value(i), idx], suffix).name
        }
    }

    /// The zero point (input 2) must be laid out as the scale is (one value: [] and [1] alike).
    static func checkZeroPoint(_ c: inout NodeContext) throws {
        guard c.hasInput(2) else { return }
        let z = try c.shape(2), s = try c.shape(1)
        guard z == s || (z.reduce(1, *) == 1 && s.reduce(1, *) == 1 && z.count <= 1 && s.count <= 1) else {
            throw QuarryError.invalidArgument("zero point of shape \(z) differs from the scale's \(s)")
        }
    }

    static func typeName(_ t: Int32) -> String {
        quantizedIntegerTypes[t]?.name ?? quantizedFloatTypes[t] ?? "data type \(t)"
    }

    static func quantizeLinear(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        // saturate applies to float8 outputs only, which are refused below.
        c.ignore("saturate")
        let precision = c.int("precision", 0)
        guard [0, 1].contains(precision) else { throw c.unsupported("precision \(typeName(Int32(precision))) (the division runs in float32)") }
        let attrType = Int32(truncatingIfNeeded: c.int("output_dtype", 0))
        var outType = attrType == 0 ? 2 : attrType
        if c.hasInput(2) {
            guard let z = c.elementType(2) else {
                throw c.unsupported("the zero point's data type is declared nowhere (an initializer, graph input or value_info gives it)")
            }
            if attrType != 0 && attrType != z {
                throw QuarryError.invalidArgument("output_dtype \(typeName(attrType)) differs from the zero point's type \(typeName(z))")
            }
            outType = z
        }
        if let f = quantizedFloatTypes[outType] { throw c.unsupported("quantising to \(f) (float8 and float4 types are not supported)") }
        guard outType != 6, let range = quantizedIntegerTypes[outType] else { throw c.unsupported("quantising to \(typeName(outType))") }
        let layout = try quantLayout(&c, x: x, what: "QuantizeLinear")
        try checkZeroPoint(&c)
        if c.allInputsConstant, let t = try c.constant(0), let s = try c.constant(1) {
            let scale = quantHost(s, layout, x: x)
            // Divided in float32 as the graph does, rounded half to even.
            var q = try HostTensor.broadcast(t, scale, kind: .float) { Double((Float($0) / Float($1)).rounded(.toNearestOrEven)) }
            if c.hasInput(2), let z = try c.constant(2) { q = try HostTensor.broadcast(q, quantHost(z, layout, x: x), kind: .float, +) }
            try c.setConstant(0, HostTensor(doubles: q.doubles.map { Swift.min(Swift.max($0, range.lo), range.hi) }, shape: x, kind: .int))
            return
        }
        let clip = Activation.clip(min: Float(range.lo), max: Float(range.hi))
        let scale = try quantOperand(&c, 1, layout, x: x, "scale")
        if c.hasInput(2) {
            let q = try c.emitInternal(.binary(.div, activation: .round), [try c.value(0), scale], "rounded")
            try c.emit(.binary(.add, activation: clip), [q.name, try quantOperand(&c, 2, layout, x: x, "zero_point")], integer: true)
        } else {
            let q = try c.emitInternal(.binary(.div, activation: .round), [try c.value(0), scale], "rounded")
            try c.emit(.activation(clip), [q.name], integer: true)
        }
    }

    static func dequantizeLinear(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let outType = c.int("output_dtype", 0)
        guard [0, 1, 10, 11, 16].contains(outType) else { throw c.unsupported("output_dtype \(outType) (a float type is needed)") }
        for i in [0, 2] where c.hasInput(i) {
            if let t = c.elementType(i), let f = quantizedFloatTypes[t] {
                throw c.unsupported("dequantising \(f) (float8 and float4 types are not supported)")
            }
        }
        let layout = try quantLayout(&c, x: x, what: "DequantizeLinear")
        try checkZeroPoint(&c)
        if c.allInputsConstant, let t = try c.constant(0), let s = try c.constant(1) {
            var d = t
            if c.hasInput(2), let z = try c.constant(2) { d = try HostTensor.broadcast(t, quantHost(z, layout, x: x), kind: .float, -) }
            let y = try HostTensor.broadcast(d, quantHost(s, layout, x: x), kind: .float) { Double(Float($0) * Float($1)) }
            try c.setConstant(0, y)
            return
        }
        var v = try c.value(0)
        if c.hasInput(2) {
            v = try c.emitInternal(.binary(.sub, activation: nil), [v, try quantOperand(&c, 2, layout, x: x, "zero_point")], "centred").name
        }
        try c.emit(.binary(.mul, activation: nil), [v, try quantOperand(&c, 1, layout, x: x, "scale")])
    }
}
