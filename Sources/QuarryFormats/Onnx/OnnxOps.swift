// The ONNX operator table: one handler per operator type, following the ONNX operator
// specification for opsets 7–28 (attributes in the form each opset uses). Handlers fold nodes
// whose inputs are all constant and lower the rest to Quarry ops, with each op's operand order and
// layout as Op.swift documents it.

import Foundation
import Quarry

typealias OnnxHandler = @Sendable (inout NodeContext) throws -> Void

extension NodeContext {
    func normAxis(_ a: Int, rank: Int) throws -> Int {
        guard let n = normalizeAxis(a, rank: rank) else { throw QuarryError.invalidArgument("axis \(a) out of range for rank \(rank)") }
        return n
    }

    /// Axes from the attribute (older opsets) or from input `i` (newer ones).
    mutating func axes(input i: Int) throws -> [Int]? {
        if let a = ints("axes") { return a }
        if hasInput(i) { return try requireConstant(i, "axes").sizes }
        return nil
    }

    mutating func unary(_ act: Activation, fold: ((Double) -> Double)? = nil) throws {
        if allInputsConstant, let fold, let t = try constant(0) {
            try setConstant(0, HostTensor(doubles: t.doubles.map(fold), shape: t.shape, kind: .float))
            return
        }
        try emit(.activation(act), [try value(0)])
    }

    mutating func binary(_ op: BinaryOp, fold: @escaping (Double, Double) -> Double) throws {
        if allInputsConstant, let a = try constant(0), let b = try constant(1) {
            let kind: HostTensor.Kind = a.kind == .float || b.kind == .float ? .float : .int
            var f = fold
            if kind == .int, op == .div { f = { y, z in z == 0 ? 0 : (y / z).rounded(.towardZero) } }
            try setConstant(0, try HostTensor.broadcast(a, b, kind: kind, f))
            return
        }
        let integer = try isInteger(0) && isInteger(1)
        if integer && op == .div { throw unsupported("integer division of run-time values") }
        try emit(.binary(op, activation: nil), [try value(0), try value(1)], integer: integer)
    }

    /// Concrete reshape of input 0 to `shape` (constant or run-time).
    mutating func reshape(to shape: [Int]) throws {
        if let t = try constant(0) {
            try setConstant(0, t.reshaped(shape))
        } else {
            try emit(.reshape(shape: shape), [try value(0)], integer: try isInteger(0))
        }
    }

    /// The 2-D window attributes shared by Conv and the pools, with auto_pad resolved against the
    /// concrete input size.
    mutating func window(kernel: [Int], input: [Int]) throws -> (stride: [Int], dilation: [Int], pads: Padding2D) {
        guard kernel.count == 2 else { throw unsupported("only 2-D windows are supported (kernel \(kernel))") }
        let w = try windowND(kernel: kernel, input: input)
        return (w.stride, w.dilation, Padding2D(top: w.begin[0], left: w.begin[1], bottom: w.end[0], right: w.end[1]))
    }

    /// Window attributes for any number of spatial axes (strides, dilations, pads begin / end per
    /// axis), with auto_pad resolved against the concrete input size.
    /// Input `i` of rank 3 ([N, C, L] data or [O, C, k] weights) with a height of one inserted,
    /// [.., .., 1, L]: 1-D convolution, transposed convolution and pooling run as their 2-D forms
    /// on it. A constant is reshaped once as a parameter, a run-time value through a reshape node.
    mutating func withHeightOne(_ i: Int, _ suffix: String) throws -> String {
        let s = try shape(i), s4 = [s[0], s[1], 1, s[2]]
        if let t = try constant(i) { return parameter(t.reshaped(s4), key: inputName(i) + ":2d") }
        return try emitInternal(.reshape(shape: s4), [try value(i)], suffix).name
    }

    /// The node's output from the [N, C, 1, L] result of a 1-D op run as 2-D: the height dropped.
    mutating func emitDroppingHeight(_ y: (name: String, shape: [Int])) throws {
        try emit(.reshape(shape: [y.shape[0], y.shape[1], y.shape[3]]), [y.name])
    }

    mutating func windowND(kernel: [Int], input: [Int]) throws -> (stride: [Int], dilation: [Int], begin: [Int], end: [Int]) {
        let n = kernel.count
        let strides = ints("strides") ?? [Int](repeating: 1, count: n)
        let dilations = ints("dilations") ?? [Int](repeating: 1, count: n)
        let autoPad = string("auto_pad", "NOTSET")
        guard strides.count == n, dilations.count == n, input.count == n else {
            throw QuarryError.invalidArgument("strides \(strides) and dilations \(dilations) must have one value per axis of kernel \(kernel)")
        }
        guard strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw QuarryError.invalidArgument("strides \(strides) and dilations \(dilations) must be positive")
        }
        var begin = [Int](repeating: 0, count: n), end = begin
        switch autoPad {
        case "NOTSET":
            let p = ints("pads") ?? [Int](repeating: 0, count: 2 * n)
            guard p.count == 2 * n else { throw QuarryError.invalidArgument("pads \(p) must have \(2 * n) values") }
            begin = Array(p[..<n]); end = Array(p[n...])
        case "VALID":
            ignore("pads")
        case "SAME_UPPER", "SAME_LOWER":
            ignore("pads")
            for d in 0..<n {
                let out = (input[d] + strides[d] - 1) / strides[d]
                let total = max(0, (out - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - input[d])
                let small = total / 2
                if autoPad == "SAME_UPPER" { begin[d] = small; end[d] = total - small } else { begin[d] = total - small; end[d] = small }
            }
        default:
            throw unsupported("auto_pad '\(autoPad)'")
        }
        return (strides, dilations, begin, end)
    }

    /// Converts a const weight with ONNX gate order to Quarry's: `perm` lists, for each Quarry gate,
    /// the ONNX gate it comes from. Rows are gate blocks of `hidden` along `axis` 1.
    static func permuteGates(_ t: HostTensor, gates perm: [Int], hidden: Int) -> HostTensor {
        let d = t.shape[0], rows = t.shape[1], cols = t.shape.count > 2 ? t.shape[2] : 1
        let blocks = rows / hidden
        var src: [Int] = []
        src.reserveCapacity(t.count)
        for dir in 0..<d {
            for b in 0..<blocks {
                // A bias holds two sets of gates (input then recurrent); each set is permuted.
                let set = b / perm.count, g = b % perm.count
                let from = set * perm.count + perm[g]
                for r in 0..<hidden { for c in 0..<cols { src.append(((dir * rows) + from * hidden + r) * cols + c) } }
            }
        }
        return t.gathered(src, shape: t.shape)
    }
}

extension OnnxImporter {
    static let handlers: [String: OnnxHandler] = {
        var h: [String: OnnxHandler] = [:]

        // MARK: activations and unary maths
        h["Relu"] = { try $0.unary(.relu, fold: { max($0, 0) }) }
        h["Sigmoid"] = { try $0.unary(.sigmoid, fold: { 1 / (1 + Foundation.exp(-$0)) }) }
        h["Tanh"] = { try $0.unary(.tanh, fold: { Foundation.tanh($0) }) }
        h["Sqrt"] = { try $0.unary(.sqrt, fold: { Foundation.sqrt($0) }) }
        h["Exp"] = { try $0.unary(.exp, fold: { Foundation.exp($0) }) }
        h["Erf"] = { try $0.unary(.erf, fold: { Foundation.erf($0) }) }
        h["Mish"] = { try $0.unary(.mish) }
        h["HardSwish"] = { try $0.unary(.hardSwish) }
        h["Sin"] = { try $0.unary(.sin, fold: { Foundation.sin($0) }) }
        h["Cos"] = { try $0.unary(.cos, fold: { Foundation.cos($0) }) }
        h["Softplus"] = { try $0.unary(.softplus, fold: { Swift.max($0, 0) + Foundation.log1p(Foundation.exp(-Swift.abs($0))) }) }
        h["Elu"] = { c in let a = c.float("alpha", 1); try c.unary(.elu(alpha: a), fold: { $0 > 0 ? $0 : Double(a) * Foundation.expm1($0) }) }
        h["Selu"] = { c in
            let a = c.float("alpha", 1.67326319217681884765625), g = c.float("gamma", 1.05070102214813232421875)
            try c.unary(.selu(alpha: a, gamma: g), fold: { Double(g) * ($0 > 0 ? $0 : Double(a) * Foundation.expm1($0)) })
        }
        h["Floor"] = { try unaryKeepingKind(&$0, .floor, { $0.rounded(.down) }) }
        h["Ceil"] = { try unaryKeepingKind(&$0, .ceil, { $0.rounded(.up) }) }
        h["Round"] = { try unaryKeepingKind(&$0, .round, { $0.rounded(.toNearestOrEven) }) }
        h["Sign"] = { try unaryKeepingKind(&$0, .sign, { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }) }
        h["Neg"] = { c in
            if c.allInputsConstant, let t = try c.constant(0) {
                try c.setConstant(0, HostTensor(doubles: t.doubles.map { -$0 }, shape: t.shape, kind: t.kind))
            } else {
                try c.emit(.activation(.neg), [try c.value(0)], integer: try c.isInteger(0))
            }
        }
        h["LeakyRelu"] = { c in try c.unary(.leakyRelu(alpha: c.float("alpha", 0.01))) }
        h["HardSigmoid"] = { c in try c.unary(.hardSigmoid(alpha: c.float("alpha", 0.2), beta: c.float("beta", 0.5))) }
        h["Gelu"] = { c in
            let approx = c.string("approximate", "none")
            guard approx == "none" || approx == "tanh" else { throw c.unsupported("approximate '\(approx)'") }
            try c.unary(.gelu(approximate: approx == "tanh"))
        }
        h["Clip"] = { c in
            var lo = -Float.infinity, hi = Float.infinity
            if c.has("min") { lo = c.float("min", lo) }
            if c.has("max") { hi = c.float("max", hi) }
            if c.hasInput(1) { guard let t = try c.constant(1), t.count == 1 else { throw c.unsupported("min must be a constant scalar") }; lo = Float(t.double(0)) }
            if c.hasInput(2) { guard let t = try c.constant(2), t.count == 1 else { throw c.unsupported("max must be a constant scalar") }; hi = Float(t.double(0)) }
            if let t = try c.constant(0) {
                try c.setConstant(0, HostTensor(doubles: t.doubles.map { min(max($0, Double(lo)), Double(hi)) }, shape: t.shape, kind: t.kind))
                return
            }
            if lo == 0 && hi == .infinity { try c.emit(.activation(.relu), [try c.value(0)]); return }
            try c.emit(.activation(.clip(min: lo, max: hi)), [try c.value(0)])
        }
        h["PRelu"] = { c in
            let x = try c.value(0)
            if let s = try c.constant(1), s.count == 1 {
                try c.emit(.activation(.leakyRelu(alpha: Float(s.double(0)))), [x]); return
            }
            // prelu(x) = max(x, 0) + slope · min(x, 0), slope broadcast as ONNX allows.
            let zero = c.parameter(HostTensor(floats: [0], shape: [1]), key: "zero:[1]")
            let pos = try c.emitInternal(.binary(.max, activation: nil), [x, zero], "pos")
            let neg = try c.emitInternal(.binary(.min, activation: nil), [x, zero], "neg")
            let scaled = try c.emitInternal(.binary(.mul, activation: nil), [neg.name, try c.value(1)], "scaled")
            try c.emit(.binary(.add, activation: nil), [pos.name, scaled.name])
        }
        h["Softmax"] = { try softmax(&$0, log: false) }
        h["LogSoftmax"] = { try softmax(&$0, log: true) }
        h["Identity"] = { c in
            if let t = try c.constant(0) { try c.setConstant(0, t) } else { try c.alias(try c.value(0), integer: try c.isInteger(0)) }
        }
        h["Dropout"] = { c in
            c.ignore("seed", "ratio")
            if c.hasInput(2) {
                guard let t = try c.constant(2), t.count == 1, t.double(0) == 0 else { throw c.unsupported("training_mode must be false") }
            }
            if c.outputUsed(1) { throw c.unsupported("the mask output") }
            if let t = try c.constant(0) { try c.setConstant(0, t) } else { try c.alias(try c.value(0)) }
        }

        // MARK: binary
        h["Add"] = { try $0.binary(.add, fold: +) }
        h["Sub"] = { try $0.binary(.sub, fold: -) }
        h["Mul"] = { try $0.binary(.mul, fold: *) }
        h["Div"] = { try div(&$0) }
        h["Pow"] = { try $0.binary(.pow, fold: { Foundation.pow($0, $1) }) }
        h["Max"] = { try variadic(&$0, .max, fold: { Swift.max($0, $1) }) }
        h["Min"] = { try variadic(&$0, .min, fold: { Swift.min($0, $1) }) }
        h["Sum"] = { try variadic(&$0, .add, fold: +) }
        h["Mean"] = { try variadic(&$0, .add, mean: true, fold: +) }
        h["Equal"] = { try compare(&$0, .equal) }
        h["Less"] = { try compare(&$0, .less) }
        h["LessOrEqual"] = { try compare(&$0, .lessOrEqual) }
        h["Greater"] = { try compare(&$0, .greater) }
        h["GreaterOrEqual"] = { try compare(&$0, .greaterOrEqual) }
        h["And"] = { try compare(&$0, .and) }
        h["Or"] = { try compare(&$0, .or) }
        h["Xor"] = { try compare(&$0, .xor) }
        h["Not"] = { try not(&$0) }
        h["Mod"] = { try mod(&$0) }
        h["Where"] = { try select(&$0) }

        // MARK: linear algebra
        h["MatMul"] = { c in
            let a = try c.shape(0), b = try c.shape(1)
            guard !a.isEmpty, !b.isEmpty else { throw QuarryError.invalidArgument("MatMul of a scalar (\(a), \(b))") }
            if a.count == 1 || b.count == 1 {
                // numpy's rule: a 1-D left operand is a row [1, K], a 1-D right one a column [K, 1],
                // and the added dimension is removed from the product.
                var av = try c.value(0), bv = try c.value(1)
                if a.count == 1 { av = try c.emitInternal(.reshape(shape: [1, a[0]]), [av], "row").name }
                if b.count == 1 { bv = try c.emitInternal(.reshape(shape: [b[0], 1]), [bv], "column").name }
                let y = try c.emitInternal(.matmul(transposeA: false, transposeB: false), [av, bv], "matmul")
                var out = y.shape
                let rowAxis = out.count - 2
                if b.count == 1 { out.removeLast() }
                if a.count == 1 { out.remove(at: rowAxis) }
                try c.emit(.reshape(shape: out), [y.name])
                return
            }
            if case .runtime = try c.input(0), let w = try c.constant(1), w.shape.count == 2, w.kind == .float {
                // x·W with a constant W [K, N] is a Linear layer: dense takes the weight as [N, K].
                let wt = c.parameter(w.transposed([1, 0]), key: c.inputName(1) + "^T")
                try c.emit(.dense(activation: nil), [try c.value(0), wt])
                return
            }
            try c.emit(.matmul(transposeA: false, transposeB: false), [try c.value(0), try c.value(1)])
        }
        h["Gemm"] = { c in
            let alpha = c.float("alpha", 1), beta = c.float("beta", 1)
            let ta = c.int("transA", 0) != 0, tb = c.int("transB", 0) != 0
            c.ignore("broadcast")
            guard try c.shape(0).count == 2, try c.shape(1).count == 2 else { throw QuarryError.invalidArgument("Gemm operands must be matrices, got \(try c.shape(0)) and \(try c.shape(1))") }
            var a = try c.value(0)
            if ta { a = try c.emitInternal(.transpose(perm: [1, 0]), [a], "transA").name }
            var bias: String? = nil
            var addC: String? = nil
            if c.hasInput(2) && beta != 0 {
                if let cv = try c.constant(2), cv.count == (tb ? try c.shape(1)[0] : try c.shape(1)[1]), cv.shape.count <= 1 || cv.shape.first == 1 {
                    if beta == 1 && cv.shape.count == 1 {
                        bias = try c.value(2)
                    } else {
                        bias = c.parameter(HostTensor(floats: cv.doubles.map { Float($0 * Double(beta)) }, shape: [cv.count]), key: c.inputName(2) + "*beta\(beta)")
                    }
                } else {
                    addC = try c.value(2)
                }
            }
            // With alpha ≠ 1 the product is scaled first, so an (already beta-scaled) bias is added after.
            var cScaled = false
            if alpha != 1, bias != nil { addC = bias; bias = nil; cScaled = true }
            var out: String
            if let w = try c.constant(1) {
                let weight = tb ? try c.value(1) : c.parameter(w.transposed([1, 0]), key: c.inputName(1) + "^T")
                let final = alpha == 1 && addC == nil
                out = try (final ? c.emit(.dense(activation: nil), [a, weight] + (bias.map { [$0] } ?? [])) : c.emitInternal(.dense(activation: nil), [a, weight] + (bias.map { [$0] } ?? []), "dense")).name
                if final { return }
            } else {
                let final = alpha == 1 && addC == nil
                out = try (final ? c.emit(.matmul(transposeA: false, transposeB: tb), [a, try c.value(1)]) : c.emitInternal(.matmul(transposeA: false, transposeB: tb), [a, try c.value(1)], "matmul")).name
                if final { return }
            }
            if alpha != 1 {
                let s = c.parameter(HostTensor(floats: [alpha], shape: [1]), key: "scalar:\(alpha)")
                out = try (addC == nil ? c.emit(.binary(.mul, activation: nil), [out, s]) : c.emitInternal(.binary(.mul, activation: nil), [out, s], "alpha")).name
            }
            if var cc = addC {
                if beta != 1 && !cScaled {
                    let s = c.parameter(HostTensor(floats: [beta], shape: [1]), key: "scalar:\(beta)")
                    cc = try c.emitInternal(.binary(.mul, activation: nil), [cc, s], "beta").name
                }
                try c.emit(.binary(.add, activation: nil), [out, cc])
            }
        }

        // MARK: convolution and pooling
        h["Conv"] = { c in
            let x = try c.shape(0), w = try c.shape(1)
            let group = c.int("group", 1)
            _ = c.ints("kernel_shape")
            if x.count == 3 {
                // 1-D convolution runs as 2-D with a height of one (any auto_pad; weights constant or run-time).
                guard w.count == 3 else { throw QuarryError.invalidArgument("1-D Conv needs an [O, C, k] weight, got \(w)") }
                let win = try c.windowND(kernel: [w[2]], input: [x[2]])
                let x4 = try c.withHeightOne(0, "as2d"), w4 = try c.withHeightOne(1, "weight2d")
                let attrs = Conv2DAttributes(kernel: (1, w[2]), stride: (1, win.stride[0]), padding: Padding2D(top: 0, left: win.begin[0], bottom: 0, right: win.end[0]),
                                             dilation: (1, win.dilation[0]), groups: group)
                try c.emitDroppingHeight(try c.emitInternal(.conv2d(attrs), [x4, w4] + (c.hasInput(2) ? [try c.value(2)] : []), "conv"))
                return
            }
            if x.count == 5 { try conv3d(&c, group: group); return }
            guard x.count == 4, w.count == 4 else { throw c.unsupported("Conv on rank \(x.count) input (1-D, 2-D and 3-D are supported)") }
            let win = try c.window(kernel: [w[2], w[3]], input: [x[2], x[3]])
            let attrs = Conv2DAttributes(kernel: (w[2], w[3]), stride: (win.stride[0], win.stride[1]), padding: win.pads, dilation: (win.dilation[0], win.dilation[1]), groups: group)
            try c.emit(.conv2d(attrs), [try c.value(0), try c.value(1)] + (c.hasInput(2) ? [try c.value(2)] : []))
        }
        h["ConvTranspose"] = { c in
            let x = try c.shape(0), w = try c.shape(1)
            let nd = x.count - 2
            guard (1...3).contains(nd), w.count == x.count else { throw c.unsupported("ConvTranspose on rank \(x.count) input (1-D, 2-D and 3-D are supported)") }
            let group = c.int("group", 1)
            _ = c.ints("kernel_shape")
            let ones = [Int](repeating: 1, count: nd), zeros = [Int](repeating: 0, count: nd)
            let strides = c.ints("strides") ?? ones, dil = c.ints("dilations") ?? ones
            var outPad = c.ints("output_padding") ?? zeros
            guard strides.count == nd, dil.count == nd, outPad.count == nd else { throw QuarryError.invalidArgument("attributes must have \(nd) values") }
            let autoPad = c.string("auto_pad", "NOTSET")
            var pads = c.ints("pads") ?? zeros + zeros
            let k = Array(w[2...]), spatial = Array(x[2...])
            if let outShape = c.ints("output_shape") {
                let os = Array(outShape.suffix(nd))
                guard os.count == nd else { throw QuarryError.invalidArgument("output_shape \(outShape) needs \(nd) spatial sizes") }
                for d in 0..<nd {
                    let total = strides[d] * (spatial[d] - 1) + outPad[d] + (k[d] - 1) * dil[d] + 1 - os[d]
                    if total < 0 {
                        // An output_shape past the full output extends it at the end (zeros plus
                        // bias), as onnx's reference computes it: that is output padding.
                        pads[d] = 0; pads[d + nd] = 0; outPad[d] -= total
                    } else if autoPad == "SAME_UPPER" {
                        pads[d] = total / 2; pads[d + nd] = total - total / 2
                    } else {
                        pads[d] = total - total / 2; pads[d + nd] = total / 2
                    }
                }
            } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
                for d in 0..<nd {
                    let total = Swift.max(0, strides[d] * (spatial[d] - 1) + outPad[d] + (k[d] - 1) * dil[d] + 1 - spatial[d] * strides[d])
                    if autoPad == "SAME_UPPER" { pads[d] = total / 2; pads[d + nd] = total - total / 2 } else { pads[d] = total - total / 2; pads[d + nd] = total / 2 }
                }
            } else if autoPad == "VALID" {
                pads = zeros + zeros
            } else if autoPad != "NOTSET" {
                throw c.unsupported("auto_pad '\(autoPad)'")
            }
            guard pads.count == 2 * nd else { throw QuarryError.invalidArgument("pads \(pads) must have \(2 * nd) values") }
            if nd == 3 {
                try convTranspose3d(&c, group: group, strides: strides, dilations: dil, pads: pads, outputPadding: outPad)
                return
            }
            let bias = c.hasInput(2) ? [try c.value(2)] : []
            if nd == 2 {
                let attrs = ConvTranspose2DAttributes(kernel: (k[0], k[1]), stride: (strides[0], strides[1]), padding: Padding2D(top: pads[0], left: pads[1], bottom: pads[2], right: pads[3]), outputPadding: (outPad[0], outPad[1]), dilation: (dil[0], dil[1]), groups: group)
                try c.emit(.convTranspose2d(attrs), [try c.value(0), try c.value(1)] + bias)
                return
            }
            // 1-D runs as 2-D with a height of one.
            let x4 = try c.withHeightOne(0, "as2d"), w4 = try c.withHeightOne(1, "weight2d")
            let attrs = ConvTranspose2DAttributes(kernel: (1, k[0]), stride: (1, strides[0]), padding: Padding2D(top: 0, left: pads[0], bottom: 0, right: pads[1]), outputPadding: (0, outPad[0]), dilation: (1, dil[0]), groups: group)
            try c.emitDroppingHeight(try c.emitInternal(.convTranspose2d(attrs), [x4, w4] + bias, "conv"))
        }
        @Sendable func pool(_ c: inout NodeContext, max isMax: Bool) throws {
            let x = try c.shape(0)
            guard (3...5).contains(x.count) else { throw c.unsupported("pooling on rank \(x.count) input (1-D, 2-D and 3-D are supported)") }
            let n = x.count - 2
            guard let k = c.ints("kernel_shape"), k.count == n else { throw QuarryError.invalidArgument("kernel_shape must have \(n) values") }
            let win = try c.windowND(kernel: k, input: Array(x[2...]))
            let ceil = c.int("ceil_mode", 0) != 0
            var countPad = false
            var storageOrder = 0
            if isMax {
                storageOrder = c.int("storage_order", 0)
                if c.outputUsed(1) && n != 2 { throw c.unsupported("the Indices output of a \(n)-D pooling") }
            } else {
                countPad = c.int("count_include_pad", 0) != 0
            }
            func attrs(_ a: Int, _ b: Int) -> Pool2DAttributes {
                // Axes a and b of the window (-1: a size-one axis with no window).
                func pick(_ v: [Int], _ i: Int, _ one: Int) -> Int { i < 0 ? one : v[i] }
                return Pool2DAttributes(kernel: (pick(k, a, 1), pick(k, b, 1)), stride: (pick(win.stride, a, 1), pick(win.stride, b, 1)),
                                        padding: Padding2D(top: pick(win.begin, a, 0), left: pick(win.begin, b, 0), bottom: pick(win.end, a, 0), right: pick(win.end, b, 0)),
                                        dilation: (pick(win.dilation, a, 1), pick(win.dilation, b, 1)), ceilMode: ceil, countIncludePad: countPad)
            }
            func op(_ a: Pool2DAttributes) -> Op { isMax ? .maxPool2d(a) : .avgPool2d(a) }
            switch n {
            case 2:
                let y = try c.emit(op(attrs(0, 1)), [try c.value(0)])
                if isMax && c.outputUsed(1) {
                    try maxPoolIndices(&c, x: x, kernel: k, stride: win.stride, dilation: win.dilation, begin: win.begin,
                                       out: [y.shape[2], y.shape[3]], storageOrder: storageOrder)
                }
            case 1:
                // 1-D pooling runs as 2-D with a height of one.
                try c.emitDroppingHeight(try c.emitInternal(op(attrs(-1, 0)), [try c.withHeightOne(0, "as2d")], "pool"))
            default:
                // 3-D pooling as two 2-D pools, height × width then depth. Exact for both: a max is
                // a max of maxima; a box window's element count (the average's divisor, with or
                // without padding) is the product of its counts along each axis, and the output
                // size, ceil mode and dropped windows are decided per axis.
                let hw = try c.emitInternal(.reshape(shape: [x[0], x[1] * x[2], x[3], x[4]]), [try c.value(0)], "hw")
                let p1 = try c.emitInternal(op(attrs(1, 2)), [hw.name], "pool_hw")
                let (oh, ow) = (p1.shape[2], p1.shape[3])
                let d = try c.emitInternal(.reshape(shape: [x[0], x[1], x[2], oh * ow]), [p1.name], "depth")
                let p2 = try c.emitInternal(op(attrs(0, -1)), [d.name], "pool_depth")
                try c.emit(.reshape(shape: [x[0], x[1], p2.shape[2], oh, ow]), [p2.name])
            }
        }
        h["MaxPool"] = { try pool(&$0, max: true) }
        h["AveragePool"] = { try pool(&$0, max: false) }
        h["GlobalAveragePool"] = { c in try c.emit(.globalAvgPool, [try c.value(0)]) }
        h["GlobalMaxPool"] = { c in try c.emit(.globalMaxPool, [try c.value(0)]) }

        // MARK: normalisation
        h["BatchNormalization"] = { c in
            c.ignore("spatial")
            let eps = c.float("epsilon", 1e-5)
            let momentum = c.float("momentum", 0.9)
            if c.int("training_mode", 0) != 0 {
                try batchNormTraining(&c, epsilon: eps, momentum: momentum)
                return
            }
            if c.outputUsed(1) || c.outputUsed(2) { throw c.unsupported("the running mean / variance outputs outside training_mode") }
            var ins: [String] = []
            for i in 0..<5 { ins.append(try c.value(i)) }
            try c.emit(.batchNorm(epsilon: eps), ins)
        }
        h["InstanceNormalization"] = { c in
            var ins: [String] = []
            for i in 0..<3 { ins.append(try c.value(i)) }
            try c.emit(.instanceNorm(epsilon: c.float("epsilon", 1e-5)), ins)
        }
        h["LayerNormalization"] = { c in
            // stash_type names the statistics' precision; Quarry computes them in float32 (the default, 1).
            c.ignore("stash_type")
            let x = try c.shape(0)
            let axis = try c.normAxis(c.int("axis", -1), rank: x.count)
            let eps = c.float("epsilon", 1e-5)
            let nd = x.count - axis
            if c.outputUsed(1) || c.outputUsed(2) {
                // Mean and InvStdDev = 1 / sqrt(mean((x − mean)²) + ε), over the normalised axes, kept as 1s.
                let axes = Array(axis..<x.count)
                let mean = try c.emitInternal(.reduce(.mean, axes: axes, keepDims: true), [try c.value(0)], "mean")
                if c.outputUsed(1) { try c.alias(mean.name, output: 1) }
                if c.outputUsed(2) {
                    let d = try c.emitInternal(.binary(.sub, activation: nil), [try c.value(0), mean.name], "centred")
                    let sq = try c.emitInternal(.binary(.mul, activation: nil), [d.name, d.name], "squared")
                    let v = try c.emitInternal(.reduce(.mean, axes: axes, keepDims: true), [sq.name], "variance")
                    let e = c.parameter(HostTensor(floats: [eps], shape: [1]), key: "scalar:\(eps)")
                    let ve = try c.emitInternal(.binary(.add, activation: nil), [v.name, e], "variance_eps")
                    let sd = try c.emitInternal(.activation(.sqrt), [ve.name], "stddev")
                    try c.emit(.activation(.reciprocal), [sd.name], output: 2)
                }
            }
            let norm = Array(x.suffix(nd)), n = norm.reduce(1, *)
            func param(_ i: Int) throws -> String? {
                guard c.hasInput(i) else { return nil }
                let s = try c.shape(i)
                if s.reduce(1, *) == n { return try c.value(i) }
                // A scale that broadcasts (e.g. a scalar) is expanded to the normalised size.
                guard let t = try c.constant(i) else { throw c.unsupported("scale/bias of shape \(s) for normalised shape \(norm)") }
                let full = try HostTensor.broadcast(t, HostTensor(floats: [Float](repeating: 0, count: n), shape: norm), kind: .float, +)
                return c.parameter(full, key: c.inputName(i) + ":\(norm)")
            }
            let gamma = try param(1)
            let beta = try param(2) ?? c.parameter(HostTensor(floats: [Float](repeating: 0, count: n), shape: norm), key: "zeros:\(norm)")
            try c.emit(.layerNorm(epsilon: eps, normalizedDims: nd), [try c.value(0), gamma ?? "", beta])
        }

        // MARK: reductions
        // ReduceMean, ReduceSum and ReduceMax map onto Quarry's reduce op; the others are composed
        // of graph ops every backend runs: Min = −max(−x), L1 = sum(|x|), SumSquare = sum(x·x),
        // L2 = √sum(x·x), LogSumExp = m + log(sum(exp(x − m))) with m = max(x) (kept dims), and
        // Prod = a tree of multiplies over the slices along each reduced axis (up to 64 per axis).
        @Sendable func reduce(_ c: inout NodeContext, _ kind: OnnxReduceKind, axesInputFrom: Int) throws {
            let keep = c.int("keepdims", 1) != 0
            let noop = c.int("noop_with_empty_axes", 0) != 0
            let x = try c.shape(0)
            let axesFromInput = c.opset >= axesInputFrom
            let raw: [Int]? = axesFromInput ? (c.hasInput(1) ? try c.requireConstant(1, "axes").sizes : nil) : c.ints("axes")
            if !axesFromInput { c.ignore("axes") }
            var axes = try (raw ?? []).map { try c.normAxis($0, rank: x.count) }
            if axes.isEmpty {
                if noop { if let t = try c.constant(0) { try c.setConstant(0, t) } else { try c.alias(try c.value(0)) }; return }
                axes = Array(0..<x.count)
            }
            axes = Array(Set(axes)).sorted()
            let set = Set(axes)
            let outShape = x.enumerated().compactMap { set.contains($0.offset) ? (keep ? 1 : nil) : $0.element }
            let keptShape = x.enumerated().map { set.contains($0.offset) ? 1 : $0.element }
            // A reduction over no elements does not depend on the input: each output is the
            // reduction's value for the empty set (0, 1, −∞, +∞, NaN for the mean).
            let emptySet = axes.contains { x[$0] == 0 }
            if let t = try c.constant(0) ?? (emptySet ? HostTensor(doubles: [], shape: x, kind: .float) : nil) {
                let ks = strides(of: keptShape), d = t.doubles
                var groups = [[Double]](repeating: [], count: keptShape.reduce(1, *))
                var flat = 0
                forEachIndex(x) { idx in
                    var o = 0
                    for i in 0..<x.count where !set.contains(i) { o += idx[i] * ks[i] }
                    groups[o].append(d[flat]); flat += 1
                }
                let acc = groups.map { kind.fold($0) }
                try c.setConstant(0, HostTensor(doubles: acc, shape: outShape, kind: t.kind))
                return
            }
            let v = try c.value(0)
            switch kind {
            case .mean: try c.emit(.reduce(.mean, axes: axes, keepDims: keep), [v])
            case .sum: try c.emit(.reduce(.sum, axes: axes, keepDims: keep), [v])
            case .max: try c.emit(.reduce(.max, axes: axes, keepDims: keep), [v])
            case .min:
                let n = try c.emitInternal(.activation(.neg), [v], "neg")
                let m = try c.emitInternal(.reduce(.max, axes: axes, keepDims: keep), [n.name], "max_of_neg")
                try c.emit(.activation(.neg), [m.name])
            case .l1:
                let a = try c.emitInternal(.activation(.abs), [v], "abs")
                try c.emit(.reduce(.sum, axes: axes, keepDims: keep), [a.name])
            case .sumSquare:
                let sq = try c.emitInternal(.binary(.mul, activation: nil), [v, v], "square")
                try c.emit(.reduce(.sum, axes: axes, keepDims: keep), [sq.name])
            case .l2:
                let sq = try c.emitInternal(.binary(.mul, activation: nil), [v, v], "square")
                let s = try c.emitInternal(.reduce(.sum, axes: axes, keepDims: keep), [sq.name], "sum_square")
                try c.emit(.activation(.sqrt), [s.name])
            case .logSumExp:
                let m = try c.emitInternal(.reduce(.max, axes: axes, keepDims: true), [v], "max")
                let d = try c.emitInternal(.binary(.sub, activation: nil), [v, m.name], "shifted")
                let e = try c.emitInternal(.activation(.exp), [d.name], "exp")
                let s = try c.emitInternal(.reduce(.sum, axes: axes, keepDims: true), [e.name], "sum_exp")
                let l = try c.emitInternal(.activation(.log), [s.name], "log")
                if keep {
                    try c.emit(.binary(.add, activation: nil), [l.name, m.name])
                } else {
                    let r = try c.emitInternal(.binary(.add, activation: nil), [l.name, m.name], "kept")
                    try c.emit(.reshape(shape: outShape), [r.name])
                }
            case .prod:
                var cur = v
                for a in axes where x[a] > 1 {
                    guard x[a] <= 64 else { throw c.unsupported("ReduceProd over axis \(a) of extent \(x[a]) (at most 64 per axis)") }
                    var parts = try (0..<x[a]).map { i in
                        try c.emitInternal(.slice(starts: [i], ends: [i + 1], axes: [a], steps: [1]), [cur], "axis\(a)_\(i)").name
                    }
                    var level = 0
                    while parts.count > 1 {
                        var next: [String] = []
                        for k in stride(from: 0, to: parts.count - 1, by: 2) {
                            next.append(try c.emitInternal(.binary(.mul, activation: nil), [parts[k], parts[k + 1]], "axis\(a)_mul\(level)_\(k / 2)").name)
                        }
                        if parts.count % 2 == 1 { next.append(parts[parts.count - 1]) }
                        parts = next; level += 1
                    }
                    cur = parts[0]
                }
                // The product so far keeps every dimension (a reduced one as 1).
                if keep { try c.emit(.identity, [cur]) } else { try c.emit(.reshape(shape: outShape), [cur]) }
            }
        }
        h["ReduceMean"] = { try reduce(&$0, .mean, axesInputFrom: 18) }
        h["ReduceSum"] = { try reduce(&$0, .sum, axesInputFrom: 13) }
        h["ReduceMax"] = { try reduce(&$0, .max, axesInputFrom: 18) }
        h["ReduceMin"] = { try reduce(&$0, .min, axesInputFrom: 18) }
        h["ReduceProd"] = { try reduce(&$0, .prod, axesInputFrom: 18) }
        h["ReduceL1"] = { try reduce(&$0, .l1, axesInputFrom: 18) }
        h["ReduceL2"] = { try reduce(&$0, .l2, axesInputFrom: 18) }
        h["ReduceLogSumExp"] = { try reduce(&$0, .logSumExp, axesInputFrom: 18) }
        h["ReduceSumSquare"] = { try reduce(&$0, .sumSquare, axesInputFrom: 18) }

        // MARK: layout
        h["Reshape"] = { c in
            let x = try c.shape(0)
            let target = try c.requireConstant(1, "shape").sizes
            guard checkedCount(target.map { $0 <= 0 ? 1 : $0 }) != nil, target.allSatisfy({ $0 >= -1 }) else {
                throw QuarryError.invalidArgument("reshape target \(target) is not valid")
            }
            let allowZero = c.int("allowzero", 0) != 0
            let resolved: [Int]
            if allowZero && target.contains(0) {
                // With allowzero a 0 is a zero-sized dimension, and then no -1 may be inferred.
                guard !target.contains(-1), target.reduce(1, *) == x.reduce(1, *) else { throw QuarryError.invalidArgument("reshape of \(x) to \(target) with allowzero") }
                // Quarry's reshape reads 0 as "copy the input's dimension", as ONNX does without allowzero.
                if case .runtime = try c.input(0) { throw c.unsupported("allowzero reshape of a run-time value to the empty shape \(target)") }
                resolved = target
            } else {
                resolved = try resolveReshape(target, input: x, node: c.name)
            }
            try c.reshape(to: resolved)
        }
        h["Flatten"] = { c in
            let x = try c.shape(0)
            var axis = c.int("axis", 1)
            if axis < 0 { axis += x.count }
            guard (0...x.count).contains(axis) else { throw QuarryError.invalidArgument("Flatten axis \(axis) out of range for \(x)") }
            try c.reshape(to: [x[..<axis].reduce(1, *), x[axis...].reduce(1, *)])
        }
        h["Squeeze"] = { c in
            let x = try c.shape(0)
            let axes = try c.axes(input: 1).map { try $0.map { try c.normAxis($0, rank: x.count) } }
            var out: [Int] = []
            for (i, d) in x.enumerated() {
                if let axes { if axes.contains(i) { guard d == 1 else { throw QuarryError.invalidArgument("cannot squeeze dimension \(i) of \(x)") }; continue } } else if d == 1 { continue }
                out.append(d)
            }
            try c.reshape(to: out)
        }
        h["Unsqueeze"] = { c in
            let x = try c.shape(0)
            guard let raw = try c.axes(input: 1) else { throw QuarryError.invalidArgument("Unsqueeze needs axes") }
            let r = x.count + raw.count
            let axes = Set(try raw.map { try c.normAxis($0, rank: r) })
            guard axes.count == raw.count else { throw QuarryError.invalidArgument("repeated axes \(raw)") }
            var out: [Int] = [], it = x.makeIterator()
            for i in 0..<r { out.append(axes.contains(i) ? 1 : (it.next() ?? 1)) }
            try c.reshape(to: out)
        }
        h["Transpose"] = { c in
            let x = try c.shape(0)
            let perm = c.ints("perm") ?? Array((0..<x.count).reversed())
            guard perm.sorted() == Array(0..<x.count) else { throw QuarryError.invalidArgument("perm \(perm) does not fit rank \(x.count)") }
            if let t = try c.constant(0) { try c.setConstant(0, t.transposed(perm)); return }
            try c.emit(.transpose(perm: perm), [try c.value(0)], integer: try c.isInteger(0))
        }
        h["Concat"] = { c in
            let first = try c.shape(0)
            let axis = try c.normAxis(c.int("axis", 0), rank: first.count)
            if c.allInputsConstant {
                let parts = try (0..<c.inputCount).compactMap { try c.constant($0) }
                for p in parts where p.shape.count != first.count || (0..<first.count).contains(where: { $0 != axis && p.shape[$0] != first[$0] }) {
                    throw QuarryError.invalidArgument("concat of \(first) and \(p.shape) on axis \(axis)")
                }
                try c.setConstant(0, HostTensor.concat(parts, axis: axis))
                return
            }
            // Operands empty along the axis (PyTorch emits them for empty caches) are dropped.
            var ins: [String] = []
            for i in 0..<c.inputCount where c.hasInput(i) {
                if try c.shape(i)[axis] > 0 { ins.append(try c.value(i)) }
            }
            if ins.count == 1 { try c.alias(ins[0]); return }
            try c.emit(.concat(axis: axis), ins)
        }
        h["Split"] = { c in
            let x = try c.shape(0)
            let axis = try c.normAxis(c.int("axis", 0), rank: x.count)
            let n = c.proto.output.count
            var sizes: [Int]
            if let s = c.ints("split") { sizes = s } else if c.hasInput(1) { sizes = try c.requireConstant(1, "split").sizes } else {
                let parts = c.int("num_outputs", n)
                guard parts > 0 else { throw QuarryError.invalidArgument("num_outputs \(parts)") }
                let chunk = (x[axis] + parts - 1) / parts
                sizes = (0..<parts).map { Swift.min(chunk, Swift.max(0, x[axis] - $0 * chunk)) }
            }
            guard sizes.count == n, sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == x[axis] else { throw QuarryError.invalidArgument("split sizes \(sizes) do not fit dimension \(x[axis]) into \(n) outputs") }
            if let t = try c.constant(0) {
                var start = 0
                for (i, s) in sizes.enumerated() { try c.setConstant(i, t.taking(Array(start..<(start + s)), axis: axis)); start += s }
                return
            }
            _ = try c.emitMulti(.split(axis: axis, sizes: sizes), [try c.value(0)], outputs: c.proto.output.map { $0 })
        }
        h["Slice"] = { c in
            let x = try c.shape(0)
            var starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?
            if c.opset < 10 {
                starts = c.ints("starts") ?? []; ends = c.ints("ends") ?? []; axes = c.ints("axes"); steps = nil
            } else {
                starts = try c.requireConstant(1, "starts").sizes
                ends = try c.requireConstant(2, "ends").sizes
                axes = c.hasInput(3) ? try c.requireConstant(3, "axes").sizes : nil
                steps = c.hasInput(4) ? try c.requireConstant(4, "steps").sizes : nil
            }
            let ax = try (axes ?? Array(0..<starts.count)).map { try c.normAxis($0, rank: x.count) }
            let st = steps ?? [Int](repeating: 1, count: starts.count)
            guard ends.count == starts.count, ax.count == starts.count, st.count == starts.count, !st.contains(0) else {
                throw QuarryError.invalidArgument("slice starts \(starts), ends \(ends), axes \(ax), steps \(st) do not fit")
            }
            if var t = try c.constant(0) {
                for i in 0..<ax.count {
                    let r = sliceRange(start: starts[i], end: ends[i], step: st[i], dim: t.shape[ax[i]])
                    t = t.taking((0..<r.count).map { r.start + $0 * st[i] }, axis: ax[i])
                }
                try c.setConstant(0, t)
                return
            }
            try c.emit(.slice(starts: starts, ends: ends, axes: ax, steps: st), [try c.value(0)], integer: try c.isInteger(0))
        }
        h["Gather"] = { c in
            let data = try c.shape(0)
            let axis = try c.normAxis(c.int("axis", 0), rank: data.count)
            if let idx = try c.constant(1) {
                let positions = try idx.int64s.map { v -> Int in
                    let p = Int(v) < 0 ? Int(v) + data[axis] : Int(v)
                    guard (0..<data[axis]).contains(p) else { throw QuarryError.invalidArgument("index \(v) out of range for dimension \(data[axis])") }
                    return p
                }
                let outShape = Array(data[..<axis]) + idx.shape + Array(data[(axis + 1)...])
                if let t = try c.constant(0) {
                    try c.setConstant(0, t.taking(positions, axis: axis).reshaped(outShape))
                    return
                }
                // Constant indices into run-time data: one slice per index, concatenated.
                let x = try c.value(0)
                var parts: [String] = []
                for (k, p) in positions.enumerated() {
                    parts.append(try c.emitInternal(.slice(starts: [p], ends: [p + 1], axes: [axis], steps: [1]), [x], "take\(k)").name)
                }
                let joined = parts.count == 1 ? parts[0] : try c.emitInternal(.concat(axis: axis), parts, "concat").name
                try c.emit(.reshape(shape: outShape), [joined], integer: try c.isInteger(0))
                return
            }
            // Run-time indices: an embedding lookup into rows of the data (axis 0).
            guard axis == 0 else { try gatherOnAxis(&c, axis: axis); return }
            let ids = try c.shape(1)
            let rest = Array(data.dropFirst())
            let width = rest.reduce(1, *)
            var table = try c.value(0)
            if data.count != 2 {
                if let t = try c.constant(0) { table = c.parameter(t.reshaped([data[0], width]), key: c.inputName(0) + ":2d") } else {
                    table = try c.emitInternal(.reshape(shape: [data[0], width]), [table], "table").name
                }
            }
            if data.count == 2 {
                try c.emit(.embedding, [try c.value(1), table])
            } else {
                let e = try c.emitInternal(.embedding, [try c.value(1), table], "embedding")
                try c.emit(.reshape(shape: ids + rest), [e.name])
            }
        }
        h["Shape"] = { c in
            let x = try c.foldedShape(0)
            var start = c.int("start", 0), end = c.int("end", x.count)
            if start < 0 { start += x.count }
            if end < 0 { end += x.count }
            start = Swift.min(Swift.max(start, 0), x.count); end = Swift.min(Swift.max(end, start), x.count)
            let dims = x[start..<end].map { Int64($0) }
            try c.setConstant(0, HostTensor(ints: dims, shape: [dims.count]))
        }
        h["Size"] = { c in try c.setConstant(0, HostTensor(scalar: Int64(try c.foldedShape(0).reduce(1, *)))) }
        h["Cast"] = { c in
            let to = c.int("to", 1)
            c.ignore("saturate", "round_mode")
            let kind: HostTensor.Kind
            switch to {
            case 1, 10, 11, 16: kind = .float
            case 9: kind = .bool
            case 2, 3, 4, 5, 6, 7, 12, 13: kind = .int
            default: throw c.unsupported("Cast to data type \(to)")
            }
            if let t = try c.constant(0) { try c.setConstant(0, t.converted(to: kind)); return }
            let integer = try c.isInteger(0)
            if kind == .int && !integer {
                // Float to integer truncates toward zero (the values stay float32 in the runtime).
                try c.emit(.activation(.trunc), [try c.value(0)], integer: true)
                return
            }
            if kind == .bool {
                // Any nonzero value is true (an integer 2 too), as 0 / 1.
                try c.emit(.activation(.not), [try c.emitInternal(.activation(.not), [try c.value(0)], "is_zero").name], integer: true)
                return
            }
            try c.alias(try c.value(0), integer: kind != .float)
        }
        h["Constant"] = { c in
            if c.has("value") {
                try c.setConstant(0, try OnnxModel.hostTensor(c.attributes["value"]!.t, baseDirectory: nil, modelPath: c.importer.model.path))
            } else if c.has("value_float") {
                try c.setConstant(0, HostTensor(floats: [c.float("value_float", 0)], shape: []))
            } else if c.has("value_floats") {
                let f = c.attributes["value_floats"]!.floats
                try c.setConstant(0, HostTensor(floats: f, shape: [f.count]))
            } else if c.has("value_int") {
                try c.setConstant(0, HostTensor(scalar: Int64(c.int("value_int", 0))))
            } else if c.has("value_ints") {
                let v = c.attributes["value_ints"]!.ints
                try c.setConstant(0, HostTensor(ints: v, shape: [v.count]))
            } else {
                throw c.unsupported("Constant without a numeric value (sparse or string values are not supported)")
            }
        }
        h["ConstantOfShape"] = { c in
            let shape = try c.requireConstant(0, "shape").sizes
            guard let n = checkedCount(shape), n <= HostTensor.maxFoldedElements else { throw QuarryError.invalidArgument("ConstantOfShape of \(shape) is too large") }
            var fill = HostTensor(floats: [0], shape: [1])
            if c.has("value") { fill = try OnnxModel.hostTensor(c.attributes["value"]!.t, baseDirectory: nil, modelPath: c.importer.model.path) }
            guard fill.count == 1 else { throw QuarryError.invalidArgument("ConstantOfShape value must hold one element") }
            try c.setConstant(0, HostTensor(doubles: [Double](repeating: fill.double(0), count: n), shape: shape, kind: fill.kind))
        }
        h["Range"] = { c in
            let s = try c.requireConstant(0, "start"), l = try c.requireConstant(1, "limit"), d = try c.requireConstant(2, "delta")
            let start = s.double(0), limit = l.double(0), delta = d.double(0)
            guard delta != 0 else { throw QuarryError.invalidArgument("Range delta 0") }
            let steps = ((limit - start) / delta).rounded(.up)
            guard steps.isFinite, steps <= Double(HostTensor.maxFoldedElements) else { throw QuarryError.invalidArgument("Range of \(steps) elements is too large") }
            let n = Swift.max(0, Int(steps))
            guard n <= HostTensor.maxFoldedElements else { throw QuarryError.invalidArgument("Range of \(n) elements is too large") }
            try c.setConstant(0, HostTensor(doubles: (0..<n).map { start + Double($0) * delta }, shape: [n], kind: s.kind))
        }
        h["Expand"] = { c in
            let x = try c.shape(0)
            let target = try c.requireConstant(1, "shape").sizes
            guard let out = broadcastShapes(x, target) else { throw QuarryError.invalidArgument("cannot expand \(x) to \(target)") }
            guard let n = checkedCount(out), n <= HostTensor.maxFoldedElements else { throw QuarryError.invalidArgument("Expand to \(out) is too large") }
            if let t = try c.constant(0) {
                try c.setConstant(0, try HostTensor.broadcast(t, HostTensor(ints: [Int64](repeating: 0, count: n), shape: out), kind: t.kind, +))
                return
            }
            if out == x { try c.alias(try c.value(0), integer: try c.isInteger(0)); return }
            // Broadcasting against zeros of the target shape: exact, and the add kernel does the copy.
            let zeros = c.parameter(HostTensor(floats: [Float](repeating: 0, count: n), shape: out), key: "zeros:\(out)")
            try c.emit(.binary(.add, activation: nil), [try c.value(0), zeros], integer: try c.isInteger(0))
        }
        h["Pad"] = { c in
            let x = try c.shape(0)
            let modeName = c.string("mode", "constant")
            guard let mode = PadMode(rawValue: modeName) else { throw c.unsupported("Pad mode '\(modeName)'") }
            var pads: [Int], value: Float = 0
            if c.opset < 11 {
                pads = c.ints("pads") ?? []
                value = c.float("value", 0)
            } else {
                pads = try c.requireConstant(1, "pads").sizes
                if c.hasInput(2) { guard let v = try c.constant(2), v.count == 1 else { throw c.unsupported("constant_value must be a constant") }; value = Float(v.double(0)) }
            }
            if c.hasInput(3) {
                let axes = try c.requireConstant(3, "axes").int64s.map { try c.normAxis(Int($0), rank: x.count) }
                guard pads.count == 2 * axes.count else { throw QuarryError.invalidArgument("pads \(pads) do not fit axes \(axes)") }
                var full = [Int](repeating: 0, count: 2 * x.count)
                for (k, a) in axes.enumerated() { full[a] = pads[k]; full[a + x.count] = pads[k + axes.count] }
                pads = full
            }
            guard pads.count == 2 * x.count else { throw QuarryError.invalidArgument("pads \(pads) must have \(2 * x.count) values") }
            if pads.allSatisfy({ $0 == 0 }) { try c.alias(try c.value(0)); return }
            try c.emit(.pad(pads: pads, mode: mode, value: value), [try c.value(0)])
        }
        h["Resize"] = { try resize(&$0, upsample: false) }
        h["Upsample"] = { try resize(&$0, upsample: true) }
        h["Attention"] = { try attention(&$0) }
        h["ArgMax"] = { try argExtreme(&$0) }
        h["ArgMin"] = { try argExtreme(&$0) }
        h["TopK"] = { try topK(&$0) }
        h["CumSum"] = { try cumSum(&$0) }
        h["GatherElements"] = { try gatherElements(&$0) }
        h["GatherND"] = { try gatherND(&$0) }
        h["ScatterND"] = { try scatterND(&$0) }
        h["Tile"] = { try tile(&$0) }
        h["DepthToSpace"] = { try depthToSpace(&$0) }
        h["SpaceToDepth"] = { try spaceToDepth(&$0) }
        h["Einsum"] = { try einsum(&$0) }
        h["RMSNormalization"] = { try rmsNormalization(&$0) }
        h["RotaryEmbedding"] = { try rotaryEmbedding(&$0) }
        h["Abs"] = { try unaryKeepingKind(&$0, .abs, { Swift.abs($0) }) }
        h["Log"] = { try $0.unary(.log, fold: { Foundation.log($0) }) }
        h["Reciprocal"] = { try $0.unary(.reciprocal, fold: { 1 / $0 }) }
        h["Softsign"] = { try softsign(&$0) }
        h["Celu"] = { try celu(&$0) }
        h["ThresholdedRelu"] = { try thresholdedRelu(&$0) }
        h["Shrink"] = { try shrink(&$0) }
        h["IsNaN"] = { try isNaN(&$0) }
        h["IsInf"] = { try isInf(&$0) }
        h["Trilu"] = { try trilu(&$0) }
        h["Hardmax"] = { try hardmax(&$0) }
        h["GroupNormalization"] = { try groupNormalization(&$0) }
        h["LpNormalization"] = { try lpNormalization(&$0) }
        h["MeanVarianceNormalization"] = { try meanVarianceNormalization(&$0) }
        h["QuantizeLinear"] = { try quantizeLinear(&$0) }
        h["DequantizeLinear"] = { try dequantizeLinear(&$0) }
        h["LSTM"] = { try recurrent(&$0, lstm: true) }
        h["GRU"] = { try recurrent(&$0, lstm: false) }
        return h
    }()

    /// BatchNormalization with training_mode 1 (opset 14 on): normalised with the batch's mean and
    /// (population) variance over every axis but the channels; outputs 1 and 2 are the running
    /// statistics, mean · momentum + batch statistic · (1 − momentum).
    static func batchNormTraining(_ c: inout NodeContext, epsilon: Float, momentum: Float) throws {
        let x = try c.shape(0)
        guard x.count >= 2 else { throw QuarryError.invalidArgument("input \(x) has no channel axis") }
        let ch = x[1]
        let axes = (0..<x.count).filter { $0 != 1 }
        var perChannel = [Int](repeating: 1, count: x.count)
        perChannel[1] = ch
        func channels(_ i: Int) throws -> String {
            guard try c.shape(i) == [ch] else { throw QuarryError.invalidArgument("input \(i) has shape \(try c.shape(i)), not [\(ch)]") }
            return try c.emitInternal(.reshape(shape: perChannel), [try c.value(i)], "channels\(i)").name
        }
        let mean = try c.emitInternal(.reduce(.mean, axes: axes, keepDims: true), [try c.value(0)], "batch_mean")
        let d = try c.emitInternal(.binary(.sub, activation: nil), [try c.value(0), mean.name], "centred")
        let sq = try c.emitInternal(.binary(.mul, activation: nil), [d.name, d.name], "squared")
        let variance = try c.emitInternal(.reduce(.mean, axes: axes, keepDims: true), [sq.name], "batch_variance")
        let ve = try c.emitInternal(.binary(.add, activation: nil), [variance.name, c.scalarParameter(epsilon)], "variance_eps")
        let sd = try c.emitInternal(.activation(.sqrt), [ve.name], "stddev")
        let gain = try c.emitInternal(.binary(.div, activation: nil), [try channels(1), sd.name], "gain")
        let scaled = try c.emitInternal(.binary(.mul, activation: nil), [d.name, gain.name], "scaled")
        try c.emit(.binary(.add, activation: nil), [scaled.name, try channels(2)])
        for (i, stat, input) in [(1, mean.name, 3), (2, variance.name, 4)] where c.outputUsed(i) {
            guard try c.shape(input) == [ch] else { throw QuarryError.invalidArgument("input \(input) has shape \(try c.shape(input)), not [\(ch)]") }
            let flat = try c.emitInternal(.reshape(shape: [ch]), [stat], "stat\(i)")
            let old = try c.emitInternal(.binary(.mul, activation: nil), [try c.value(input), c.scalarParameter(momentum)], "running\(i)")
            let new = try c.emitInternal(.binary(.mul, activation: nil), [flat.name, c.scalarParameter(1 - momentum)], "batch\(i)")
            try c.emit(.binary(.add, activation: nil), [old.name, new.name], output: i)
        }
    }

    /// MaxPool's Indices (2-D): the flat input position of each window's first maximum, row-major
    /// (storage_order 0) or column-major within each image and channel, as onnx's reference gives
    /// it. The float32 runtime has no argmax, so the windows are scanned position by position: the
    /// padded input (padding −FLT_MAX, finite so no −inf − −inf) sliced at each kernel offset, a 0/1
    /// "strictly greater" from clip((v − best) · 2¹⁰⁰ · 2¹⁰⁰, 0, 1) (1 for any positive difference,
    /// even the smallest subnormal), the index moved by take · (offset's index − index). Every
    /// index is an integer below 2²⁴, so every step is exact.
    static func maxPoolIndices(_ c: inout NodeContext, x: [Int], kernel k: [Int], stride s: [Int], dilation d: [Int], begin: [Int],
                               out: [Int], storageOrder: Int) throws {
        let (batch, ch, h, w) = (x[0], x[1], x[2], x[3])
        guard batch * ch * h * w <= 1 << 24 else {
            throw c.unsupported("Indices of an input past 2^24 elements (the float32 runtime holds integers exactly up to 2^24)")
        }
        guard storageOrder == 0 || storageOrder == 1 else { throw QuarryError.invalidArgument("storage_order \(storageOrder) must be 0 or 1") }
        let need: [Int] = (0..<2).map { a -> Int in (out[a] - 1) * s[a] + (k[a] - 1) * d[a] + 1 }
        let endPad: [Int] = [Swift.max(0, need[0] - begin[0] - h), Swift.max(0, need[1] - begin[1] - w)]
        let padded = try c.emitInternal(.pad(pads: [0, 0, begin[0], begin[1], 0, 0, endPad[0], endPad[1]], mode: .constant, value: -.greatestFiniteMagnitude),
                                        [try c.value(0)], "indices_padded")
        var best = "", index = ""
        for i in 0..<k[0] {
            for j in 0..<k[1] {
                let tag = "window\(i)_\(j)"
                let starts: [Int] = [i * d[0], j * d[1]]
                let ends: [Int] = [starts[0] + (out[0] - 1) * s[0] + 1, starts[1] + (out[1] - 1) * s[1] + 1]
                let v = try c.emitInternal(.slice(starts: starts, ends: ends, axes: [2, 3], steps: [s[0], s[1]]), [padded.name], tag).name
                var plane = [Float](repeating: 0, count: out[0] * out[1])
                for oh in 0..<out[0] {
                    for ow in 0..<out[1] {
                        let ih: Int = oh * s[0] + starts[0] - begin[0]
                        let iw: Int = ow * s[1] + starts[1] - begin[1]
                        guard (0..<h).contains(ih), (0..<w).contains(iw) else { continue }
                        let flat: Int = storageOrder == 0 ? ih * w + iw : ih + iw * h
                        plane[oh * out[1] + ow] = Float(flat)
                    }
                }
                let p = c.parameter(HostTensor(floats: plane, shape: out), key: "maxpool_indices:\(c.name):\(i),\(j)")
                if best.isEmpty { best = v; index = p; continue }
                let diff = try c.emitInternal(.binary(.sub, activation: nil), [v, best], "\(tag)_gain")
                let s1 = try c.emitInternal(.binary(.mul, activation: nil), [diff.name, c.scalarParameter(0x1p100)], "\(tag)_steep")
                let s2 = try c.emitInternal(.binary(.mul, activation: nil), [s1.name, c.scalarParameter(0x1p100)], "\(tag)_steeper")
                let take = try c.emitInternal(.activation(.clip(min: 0, max: 1)), [s2.name], "\(tag)_greater")
                let delta = try c.emitInternal(.binary(.sub, activation: nil), [p, index], "\(tag)_delta")
                let move = try c.emitInternal(.binary(.mul, activation: nil), [take.name, delta.name], "\(tag)_move")
                index = try c.emitInternal(.binary(.add, activation: nil), [index, move.name], "\(tag)_index").name
                best = try c.emitInternal(.binary(.max, activation: nil), [best, v], "\(tag)_best").name
            }
        }
        let offsets = HostTensor(floats: (0..<(batch * ch)).map { Float($0 * h * w) }, shape: [batch, ch, 1, 1])
        try c.emit(.binary(.add, activation: nil), [index, c.parameter(offsets, key: "maxpool_offsets:\(batch)x\(ch)x\(h * w)")], output: 1, integer: true)
    }

    static func softmax(_ c: inout NodeContext, log: Bool) throws {
        let x = try c.shape(0)
        let axis = try c.normAxis(c.int("axis", c.opset >= 13 ? -1 : 1), rank: x.count)
        let op: Op = log ? .logSoftmax(axis: c.opset >= 13 ? axis : 1) : .softmax(axis: c.opset >= 13 ? axis : 1)
        if c.opset >= 13 || axis == x.count - 1 {
            let fixed: Op = log ? .logSoftmax(axis: axis) : .softmax(axis: axis)
            try c.emit(fixed, [try c.value(0)]); return
        }
        // Before opset 13 the input is seen as 2-D [prod(..axis), prod(axis..)].
        let flat = try c.emitInternal(.reshape(shape: [x[..<axis].reduce(1, *), x[axis...].reduce(1, *)]), [try c.value(0)], "2d")
        let s = try c.emitInternal(op, [flat.name], "softmax")
        try c.emit(.reshape(shape: x), [s.name])
    }

    /// Resize / Upsample: Quarry's upsample op where it computes the same thing (NCHW, nearest or
    /// bilinear with a matching coordinate mapping), else one interpolation matrix per resized axis
    /// (OnnxResize.swift), which covers every mode.
    static func resize(_ c: inout NodeContext, upsample: Bool) throws {
        let saved = c
        do {
            try resizeWithUpsampleOp(&c, upsample: upsample)
        } catch is Unsupported {
            c = saved
            try resizeByMatrices(&c, upsample: upsample)
        }
    }

    static func resizeWithUpsampleOp(_ c: inout NodeContext, upsample: Bool) throws {
        let x = try c.shape(0)
        guard x.count == 4 else { throw c.unsupported("resizing a rank-\(x.count) tensor (NCHW is supported)") }
        let mode = c.string("mode", "nearest")
        var ctm = upsample ? "asymmetric" : c.string("coordinate_transformation_mode", c.opset >= 11 ? "half_pixel" : "asymmetric")
        let nearestMode = upsample ? "floor" : c.string("nearest_mode", c.opset >= 11 ? "round_prefer_floor" : "floor")
        c.ignore("cubic_coeff_a", "exclude_outside", "extrapolation_value")
        if !upsample {
            if c.int("antialias", 0) != 0 { throw c.unsupported("antialias") }
            let policy = c.string("keep_aspect_ratio_policy", "stretch")
            if policy != "stretch" { throw c.unsupported("keep_aspect_ratio_policy '\(policy)'") }
        }
        var axes = Array(0..<4)
        if !upsample, let a = c.ints("axes") { axes = try a.map { try c.normAxis($0, rank: 4) } }
        var scales: [Double]? = nil, sizes: [Int]? = nil
        if upsample {
            if let s = c.attributes["scales"] { c.ignore("scales"); scales = s.floats.map(Double.init) } else { scales = try c.requireConstant(1, "scales").doubles }
        } else {
            let scalesInput = c.opset >= 11 ? 2 : 1
            if c.opset >= 11, c.hasInput(1), try c.constant(1) == nil { throw c.unsupported("run-time roi") }
            if c.hasInput(scalesInput), let s = try c.constant(scalesInput), s.count > 0 { scales = s.doubles } else if c.hasInput(scalesInput), try c.constant(scalesInput) == nil { throw c.unsupported("run-time scales") }
            if c.opset >= 11, c.hasInput(3) { sizes = try c.requireConstant(3, "sizes").sizes }
        }
        var out = x
        var scale = [Double](repeating: 1, count: 4)
        if let sizes {
            guard sizes.count == axes.count else { throw QuarryError.invalidArgument("sizes \(sizes) do not fit axes \(axes)") }
            for (k, a) in axes.enumerated() { out[a] = sizes[k]; scale[a] = Double(sizes[k]) / Double(Swift.max(x[a], 1)) }
        } else if let scales {
            guard scales.count == axes.count else { throw QuarryError.invalidArgument("scales \(scales) do not fit axes \(axes)") }
            for (k, a) in axes.enumerated() {
                scale[a] = scales[k]
                guard scales[k].isFinite, scales[k] > 0, Double(x[a]) * scales[k] < Double(OnnxImporter.maxAttributeMagnitude) else {
                    throw QuarryError.invalidArgument("scale \(scales[k]) is not valid")
                }
                out[a] = Int((Double(x[a]) * scales[k]).rounded(.down))
                // Quarry maps output to input positions with in/out; ONNX uses 1/scale. They agree
                // only when the scale gives a whole output size.
                if Double(out[a]) != Double(x[a]) * scales[k] { throw c.unsupported("scale \(scales[k]) does not give a whole output size for dimension \(x[a])") }
            }
        } else {
            throw QuarryError.invalidArgument("Resize needs scales or sizes")
        }
        guard out[0] == x[0], out[1] == x[1] else { throw c.unsupported("resizing the batch or channel dimension") }
        guard out[2] > 0, out[3] > 0 else { throw QuarryError.invalidArgument("empty output size \(out)") }
        if out == x { try c.alias(try c.value(0)); return }
        let quarryMode: UpsampleMode
        switch mode {
        case "nearest":
            // asymmetric + floor is Quarry's nearest; half-pixel with round-prefer-floor picks the
            // same source pixel when the scale is a whole number ≥ 1.
            let whole = (2...3).allSatisfy { scale[$0] >= 1 && scale[$0] == scale[$0].rounded() }
            if ctm == "asymmetric" && nearestMode == "floor" {
                quarryMode = .nearest
            } else if (ctm == "half_pixel" || ctm == "pytorch_half_pixel") && nearestMode == "round_prefer_floor" && whole {
                quarryMode = .nearest
            } else if ctm == "asymmetric" && (nearestMode == "round_prefer_ceil" || nearestMode == "round_prefer_floor") && whole && false {
                quarryMode = .nearest
            } else {
                throw c.unsupported("nearest resize with coordinate_transformation_mode '\(ctm)' and nearest_mode '\(nearestMode)'")
            }
        case "linear", "bilinear":
            if ctm == "pytorch_half_pixel" && out[2] > 1 && out[3] > 1 { ctm = "half_pixel" }
            if ctm == "half_pixel" { quarryMode = .bilinear } else if ctm == "align_corners" { quarryMode = .bilinearAlignCorners } else {
                throw c.unsupported("linear resize with coordinate_transformation_mode '\(ctm)'")
            }
        default:
            throw c.unsupported("resize mode '\(mode)'")
        }
        try c.emit(.upsample(mode: quarryMode, scaleH: Float(out[2]) / Float(x[2]), scaleW: Float(out[3]) / Float(x[3]), size: [out[2], out[3]]), [try c.value(0)])
    }

    static func recurrent(_ c: inout NodeContext, lstm: Bool) throws {
        let x = try c.shape(0)
        guard x.count == 3 else { throw QuarryError.invalidArgument("input must have rank 3, got \(x)") }
        let hidden = c.int("hidden_size", 0)
        guard hidden > 0 else { throw QuarryError.invalidArgument("hidden_size must be positive") }
        let dirName = c.string("direction", "forward")
        guard let direction = RecurrentDirection(rawValue: dirName) else { throw c.unsupported("direction '\(dirName)'") }
        let layout = c.int("layout", 0)
        if c.has("clip") { throw c.unsupported("clip") }
        if lstm, c.int("input_forget", 0) != 0 { throw c.unsupported("input_forget") }
        if let acts = c.attributes["activations"] {
            c.ignore("activations", "activation_alpha", "activation_beta")
            let names = acts.strings.map { String(decoding: $0, as: UTF8.self) }
            let standard = lstm ? ["Sigmoid", "Tanh", "Tanh"] : ["Sigmoid", "Tanh"]
            guard names == standard || names == standard + standard else { throw c.unsupported("activations \(names)") }
        }
        var lengths: [Int]? = nil
        if c.hasInput(4) {
            guard let lens = try c.constant(4) else { throw c.unsupported("sequence_lens computed at run time") }
            let seq = layout == 0 ? x[0] : x[1], batch = layout == 0 ? x[1] : x[0]
            guard lens.count == batch, lens.sizes.allSatisfy({ (0...seq).contains($0) }) else {
                throw QuarryError.invalidArgument("sequence_lens \(lens.sizes) must hold \(batch) lengths of at most \(seq)")
            }
            if lens.sizes.contains(where: { $0 != seq }) { lengths = lens.sizes }
        }
        // Peepholes and shorter sequences: the LSTM unrolled over its steps (OnnxLSTMUnrolled.swift).
        if lstm && (c.hasInput(7) || lengths != nil) {
            try lstmUnrolled(&c, hidden: hidden, direction: direction, layout: layout, lengths: lengths)
            return
        }
        if lengths != nil { throw c.unsupported("GRU with sequence_lens shorter than the sequence") }
        let linearBeforeReset = lstm ? true : c.int("linear_before_reset", 0) != 0
        // ONNX gate order → Quarry's: LSTM i,o,f,c → i,f,g(c),o; GRU z,r,h → r,z,n(h).
        let perm = lstm ? [0, 2, 3, 1] : [1, 0, 2]
        let gates = lstm ? 4 : 3, dirs = direction.count
        let ws = try c.shape(1), rs = try c.shape(2)
        guard ws == [dirs, gates * hidden, x[2]], rs == [dirs, gates * hidden, hidden] else {
            throw QuarryError.invalidArgument("W \(ws) / R \(rs) do not fit \(dirs) direction(s), hidden \(hidden), input \(x[2])")
        }
        if c.hasInput(3), try c.shape(3) != [dirs, 2 * gates * hidden] {
            throw QuarryError.invalidArgument("B \(try c.shape(3)) must be \([dirs, 2 * gates * hidden])")
        }
        /// Input `i` with its gate blocks (of `hidden` rows along axis 1) in Quarry's order: permuted
        /// on the host for a constant, by slices and a concat for a run-time value (weights fed as
        /// graph inputs).
        func gated(_ i: Int) throws -> String {
            let s = try c.shape(i)
            if let t = try c.constant(i) {
                let t3 = s.count == 3 ? t : t.reshaped([s[0], s[1], 1])
                return c.parameter(NodeContext.permuteGates(t3, gates: perm, hidden: hidden).reshaped(s), key: c.inputName(i) + ":gates")
            }
            let blocks = s[1] / hidden
            var parts: [String] = []
            for b in 0..<blocks {
                let from = (b / perm.count) * perm.count + perm[b % perm.count]
                parts.append(try c.emitInternal(.slice(starts: [from * hidden], ends: [(from + 1) * hidden], axes: [1], steps: [1]), [try c.value(i)], "gate\(i)_\(b)").name)
            }
            return try c.emitInternal(.concat(axis: 1), parts, "gates\(i)").name
        }
        let wp = try gated(1), rp = try gated(2)
        let bp = c.hasInput(3) ? try gated(3) : ""
        let batchFirst = layout == 1
        var xin = try c.value(0)
        if !batchFirst { xin = try c.emitInternal(.transpose(perm: [1, 0, 2]), [xin], "batch_first").name }
        func state(_ i: Int) throws -> String {
            guard c.hasInput(i) else { return "" }
            // layout 1 keeps states as [B, D, H]; Quarry's are [D, B, H].
            return batchFirst ? try c.emitInternal(.transpose(perm: [1, 0, 2]), [try c.value(i)], "state\(i)").name : try c.value(i)
        }
        let h0 = try state(5), c0 = lstm ? try state(6) : ""
        let attrs = RecurrentAttributes(hiddenSize: hidden, direction: direction, linearBeforeReset: linearBeforeReset)
        let op: Op = lstm ? .lstm(attrs) : .gru(attrs)
        var ins = [xin, wp, rp, bp, h0]
        if lstm { ins.append(c0) }
        while ins.last == "" { ins.removeLast() }
        let nOut = lstm ? 3 : 2
        let stateOuts: [String?] = (1..<nOut).map { i in (c.outputUsed(i) && !batchFirst) ? c.outputName(i) : nil }
        let outs = try c.emitMulti(op, ins, outputs: [nil] + stateOuts, suffix: "cell")
        let (y, yShape) = outs[0]
        let d = direction.count, b = yShape[0], s = yShape[1]
        if c.outputUsed(0) {
            let y4 = try c.emitInternal(.reshape(shape: [b, s, d, hidden]), [y], "y4")
            // ONNX Y: layout 0 [S, D, B, H]; layout 1 [B, S, D, H].
            if batchFirst { try c.alias(y4.name) } else { try c.emit(.transpose(perm: [1, 2, 0, 3]), [y4.name]) }
        }
        for i in 1..<nOut where c.outputUsed(i) && batchFirst {
            try c.emit(.transpose(perm: [1, 0, 2]), [outs[i].0], output: i)
        }
    }
}

/// The ONNX reductions, and how each folds a group of constant values.
enum OnnxReduceKind: Sendable {
    case mean, sum, max, min, prod, l1, l2, logSumExp, sumSquare

    func fold(_ g: [Double]) -> Double {
        switch self {
        case .mean: return g.reduce(0, +) / Double(g.count)
        case .sum: return g.reduce(0, +)
        case .max: return g.max() ?? -.infinity
        case .min: return g.min() ?? .infinity
        case .prod: return g.reduce(1, *)
        case .l1: return g.reduce(0) { $0 + abs($1) }
        case .l2: return g.reduce(0) { $0 + $1 * $1 }.squareRoot()
        case .sumSquare: return g.reduce(0) { $0 + $1 * $1 }
        case .logSumExp:
            guard let m = g.max(), m.isFinite else { return g.max() ?? -.infinity }
            return m + Foundation.log(g.reduce(0) { $0 + Foundation.exp($1 - m) })
        }
    }
}
