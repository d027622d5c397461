// The case list: for every computing op of Op.swift, random cases that together cover every
// operand form the op documents. Each case is generated from its own seed (derived from the run's
// seed, the op key and the case's index), so a failing case is named ("conv2d#5, seed 42") and
// comes back the same with that seed whatever else is selected. Inputs are never all zeros and stay
// in the range the op is defined on (integer ids, 0/1 masks, positive operands of sqrt and log).
// The test target and `quarry test-ops` use this one list.

import Foundation
import Quarry

/// How a case's operands reach the graph: every operand a graph input, or operand 0 an input and
/// the others parameters (weights, statistics, the second operand of a binary op), which the
/// backends pack or upload once at compile time.
public enum OperandForm: String, Codable, Sendable {
    case inputs, parameters
}

public struct ConformanceCase: Sendable {
    /// The op key that `--ops` selects: "conv2d", "relu", "add", "reduce_sum"…
    public var key: String
    public var index: Int
    /// The seed this case was generated from (the run's seed, not the derived one, so that
    /// `--seed` reproduces it).
    public var seed: UInt64
    public var op: Op
    /// Absent optional operands are nil.
    public var operands: [Tensor?]
    public var form: OperandForm
    public var outputCount: Int
    /// The attributes and operand forms in words.
    public var summary: String
    /// Set when README documents that OpenCL runs this form on the CPU (the reason).
    public var knownFallback: String?

    public var name: String { "\(key)#\(index)" }
    /// Operand shapes as "2x3x5x5", "-" for an absent one.
    public var shapes: String {
        operands.map { $0.map { $0.shape.map(String.init).joined(separator: "x") } ?? "-" }.joined(separator: ", ")
    }
}

/// An activation's key, as `--ops` names it.
public func activationKey(_ a: Activation) -> String {
    switch a {
    case .relu: return "relu"
    case .clip(let lo, let hi): return lo == 0 && hi == 6 ? "relu6" : "clip"
    case .leakyRelu: return "leaky_relu"
    case .sigmoid: return "sigmoid"
    case .hardSigmoid: return "hard_sigmoid"
    case .tanh: return "tanh"
    case .silu: return "silu"
    case .mish: return "mish"
    case .gelu(let approximate): return approximate ? "gelu_tanh" : "gelu"
    case .hardSwish: return "hardswish"
    case .sqrt: return "sqrt"
    case .exp: return "exp"
    case .log: return "log"
    case .neg: return "neg"
    case .abs: return "abs"
    case .erf: return "erf"
    case .reciprocal: return "reciprocal"
    case .sin: return "sin"
    case .cos: return "cos"
    case .floor: return "floor"
    case .ceil: return "ceil"
    case .round: return "round"
    case .trunc: return "trunc"
    case .softplus: return "softplus"
    case .elu: return "elu"
    case .selu: return "selu"
    case .not: return "not"
    case .sign: return "sign"
    }
}

public enum CaseList {
    /// One activation of every kind with parameters as models use them (unary maths included).
    public static let activations: [Activation] = [
        .relu, .relu6, .clip(min: -0.5, max: 0.75), .leakyRelu(alpha: 0.1), .sigmoid,
        .hardSigmoid(alpha: 0.2, beta: 0.5), .tanh, .silu, .mish, .gelu(approximate: false),
        .gelu(approximate: true), .hardSwish, .sqrt, .exp, .log, .neg, .abs, .erf, .reciprocal,
        .sin, .cos, .floor, .ceil, .round, .trunc, .softplus, .elu(alpha: 0.7),
        .selu(alpha: 1.6732632423543772, gamma: 1.0507009873554805), .not, .sign,
    ]
    /// What conv / dense / binary epilogues fuse, in the order cases take them (case i takes entry
    /// i mod count, so 16 cases of an op cover all): none, then every kind defined on all reals.
    public static let fusedActivations: [Activation?] = [
        nil, .relu, .relu6, .leakyRelu(alpha: 0.1), .sigmoid, .hardSigmoid(alpha: 0.2, beta: 0.5), .tanh,
        .silu, .mish, .gelu(approximate: false), .gelu(approximate: true), .hardSwish, .clip(min: -0.5, max: 0.75),
        .neg, .abs, .erf,
    ]
    static let binaryOps: [BinaryOp] = [
        .add, .sub, .mul, .div, .pow, .max, .min, .equal, .less, .lessOrEqual, .greater, .greaterOrEqual,
        .and, .or, .xor, .mod, .fmod,
    ]
    static let reduceOps: [ReduceOp] = [.mean, .sum, .max]

    /// Every op key, in the order cases run (every case of Op but input, constant and the CPU
    /// plan's expand_depthwise_project; activations, binary ops and reductions one key a kind).
    public static let keys: [String] = [
        "conv2d", "conv_transpose2d", "dense", "matmul", "max_pool2d", "avg_pool2d", "global_avg_pool",
        "global_max_pool", "batch_norm", "layer_norm", "instance_norm", "softmax", "log_softmax",
        "attention", "lstm", "gru", "embedding",
    ] + activations.map(activationKey) + binaryOps.map(\.rawValue) + ["select"] + reduceOps.map { "reduce_\($0.rawValue)" } + [
        "concat", "split", "slice", "pad", "upsample", "reshape", "transpose", "flatten", "identity",
    ] + indexKeys

    /// The ops along an axis and the index ops (run-time float indices).
    static let indexKeys = ["argmax", "argmin", "topk", "cumsum", "gather", "gather_elements", "gather_nd", "scatter_nd"]

    /// Names that select several keys.
    public static let groups: [String: [String]] = [
        "gemm": ["dense", "matmul"],
        "conv": ["conv2d", "conv_transpose2d"],
        "pool": ["max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool"],
        "norm": ["batch_norm", "layer_norm", "instance_norm", "softmax", "log_softmax"],
        "recurrent": ["lstm", "gru"],
        "activation": activations.map(activationKey),
        "binary": binaryOps.map(\.rawValue) + ["select"],
        "reduce": reduceOps.map { "reduce_\($0.rawValue)" },
        "layout": ["concat", "split", "slice", "pad", "upsample", "reshape", "transpose", "flatten", "identity"],
        "index": indexKeys,
    ]

    /// The keys a comma list of keys and group names selects, in run order; throws naming an
    /// unknown name.
    public static func select(_ list: String) throws -> [String] {
        var chosen = Set<String>()
        for raw in list.split(separator: ",") {
            let name = raw.trimmingCharacters(in: .whitespaces)
            if name.isEmpty { continue }
            if let g = groups[name] { chosen.formUnion(g) } else if keys.contains(name) { chosen.insert(name) } else {
                throw QuarryError.invalidArgument(
                    "unknown op '\(name)' in --ops; ops: \(keys.joined(separator: ",")); groups: \(groups.keys.sorted().joined(separator: ","))")
            }
        }
        return keys.filter(chosen.contains)
    }

    /// `perOp` cases of each key (every key when `keys` is nil) from the run's `seed`: the cases
    /// numbered `firstIndex` on. Operand forms follow the case number (see CaseGenerator), so 16
    /// cases from any start cover every form of every op, and fewer from a start that changes from
    /// run to run cover them across runs.
    public static func cases(seed: UInt64, perOp: Int, keys selected: [String]? = nil, firstIndex: Int = 0) -> [ConformanceCase] {
        var out: [ConformanceCase] = []
        for key in selected ?? keys {
            for i in firstIndex..<(firstIndex + perOp) { out.append(makeCase(key: key, index: i, seed: seed)) }
        }
        return out
    }

    /// The case `key#index` of a run with `seed`.
    public static func makeCase(key: String, index: Int, seed: UInt64) -> ConformanceCase {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var g = CaseGenerator(rng: SeededGenerator(seed: seed ^ h ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15)), index: index)
        let made = g.make(key)
        return ConformanceCase(
            key: key, index: index, seed: seed, op: made.op, operands: made.operands,
            form: made.operands.count > 1 && index % 2 == 0 ? .parameters : .inputs,
            outputCount: made.outputs, summary: made.summary, knownFallback: made.knownFallback)
    }
}

/// What one generator call makes.
struct MadeCase {
    var op: Op
    var operands: [Tensor?]
    var outputs = 1
    var summary: String
    var knownFallback: String? = nil
}

struct CaseGenerator {
    var rng: SeededGenerator
    let index: Int

    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }
    mutating func bool() -> Bool { Bool.random(using: &rng) }
    mutating func pick<T>(_ xs: [T]) -> T { xs[int(0...(xs.count - 1))] }

    /// Uniform values in `range`, never all zero (a zero tensor would hide a dropped operand).
    mutating func tensor(_ shape: [Int], _ range: ClosedRange<Float> = -1...1) -> Tensor {
        let t = Tensor.random(shape: shape, in: range, using: &rng)
        if t.count > 0 && t.scalars.allSatisfy({ $0 == 0 }) { t[flat: 0] = range.upperBound }
        return t
    }

    /// Values whose magnitude lies in `magnitude`, of either sign (divisors, operands kept away
    /// from zero).
    mutating func signed(_ shape: [Int], _ magnitude: ClosedRange<Float>) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        for i in 0..<t.count { t[flat: i] = Float.random(in: magnitude, using: &rng) * (bool() ? 1 : -1) }
        return t
    }

    /// A batch size: 1 in a third of the cases, else small or (one case in six) large.
    mutating func batch(large: Int = 16) -> Int {
        switch index % 6 {
        case 1, 4: return 1
        case 5: return int(max(2, large / 2)...large)
        default: return int(2...4)
        }
    }

    var fused: Activation? { CaseList.fusedActivations[index % CaseList.fusedActivations.count] }

    func describe(_ a: Activation?) -> String { a.map { "act \(activationKey($0))" } ?? "no act" }

    mutating func make(_ key: String) -> MadeCase {
        if let act = CaseList.activations.first(where: { activationKey($0) == key }) { return activation(act) }
        if let b = CaseList.binaryOps.first(where: { $0.rawValue == key }) { return binary(b) }
        if let r = CaseList.reduceOps.first(where: { "reduce_\($0.rawValue)" == key }) { return reduce(r) }
        switch key {
        case "conv2d": return conv2d()
        case "conv_transpose2d": return convTranspose2d()
        case "dense": return dense()
        case "matmul": return matmul()
        case "max_pool2d": return pool(isMax: true)
        case "avg_pool2d": return pool(isMax: false)
        case "global_avg_pool", "global_max_pool":
            let rank = index % 3 == 2 ? pick([3, 5]) : 4
            let shape = [batch(), int(1...12)] + (2..<rank).map { _ in int(1...15) }
            return MadeCase(op: key == "global_avg_pool" ? .globalAvgPool : .globalMaxPool, operands: [tensor(shape)], summary: "rank \(rank)")
        case "batch_norm": return batchNorm()
        case "layer_norm": return layerNorm()
        case "instance_norm": return instanceNorm()
        case "softmax", "log_softmax":
            let rank = int(1...4)
            let shape = (0..<rank).map { _ in int(1...17) }
            let axis = int(-rank...(rank - 1))
            let wide: Float = index % 3 == 0 ? 12 : 3
            return MadeCase(op: key == "softmax" ? .softmax(axis: axis) : .logSoftmax(axis: axis),
                            operands: [tensor(shape, -wide...wide)], summary: "axis \(axis)")
        case "attention": return attention()
        case "lstm": return recurrent(isLSTM: true)
        case "gru": return recurrent(isLSTM: false)
        case "embedding":
            let rows = int(2...40), width = int(1...70)
            let ids = Tensor(uninitializedShape: (0..<int(1...3)).map { _ in int(1...9) })
            // Negative ids count from the end (ONNX Gather); a third of the cases use them.
            for i in 0..<ids.count { ids[flat: i] = Float(index % 3 == 2 ? int(-rows...(rows - 1)) : int(0...(rows - 1))) }
            // Never all row 0.
            ids[flat: int(0...(ids.count - 1))] = index % 3 == 2 ? -1 : Float(rows - 1)
            return MadeCase(op: .embedding, operands: [ids, tensor([rows, width])], summary: "\(rows) rows\(index % 3 == 2 ? ", negative ids" : "")")
        case "concat":
            let rank = int(1...4)
            let base = (0..<rank).map { _ in int(1...7) }
            let axis = int(-rank...(rank - 1)), ax = axis < 0 ? axis + rank : axis
            let parts = (0..<int(1...4)).map { _ -> Tensor in
                var s = base
                s[ax] = int(1...6)
                return tensor(s)
            }
            return MadeCase(op: .concat(axis: axis), operands: parts, summary: "\(parts.count) parts, axis \(axis)")
        case "split":
            let rank = int(1...4)
            var shape = (0..<rank).map { _ in int(1...7) }
            let axis = int(-rank...(rank - 1)), ax = axis < 0 ? axis + rank : axis
            let sizes = (0..<int(1...4)).map { _ in int(1...5) }
            shape[ax] = sizes.reduce(0, +)
            return MadeCase(op: .split(axis: axis, sizes: sizes), operands: [tensor(shape)], outputs: sizes.count,
                            summary: "axis \(axis), sizes \(sizes)")
        case "select": return select()
        case "slice": return slice()
        case "pad": return pad()
        case "upsample": return upsample()
        case "reshape":
            let shape = (0..<int(1...4)).map { _ in int(1...6) }
            let total = shape.reduce(1, *)
            // Target: 0 copies a leading dimension, -1 takes the rest.
            var target: [Int] = []
            var rest = total
            if index % 2 == 0 && shape.count > 1 { target.append(0); rest /= shape[0] }
            let divisors = (1...rest).filter { rest % $0 == 0 }
            target.append(pick(divisors))
            target.append(-1)
            return MadeCase(op: .reshape(shape: target), operands: [tensor(shape)], summary: "to \(target)")
        case "transpose":
            let shape = (0..<int(1...5)).map { _ in int(1...7) }
            let perm = Array(0..<shape.count).shuffled(using: &rng)
            return MadeCase(op: .transpose(perm: perm), operands: [tensor(shape)], summary: "perm \(perm)")
        case "flatten":
            let shape = (0..<int(1...4)).map { _ in int(1...6) }
            let axis = int(0...shape.count)
            return MadeCase(op: .flatten(axis: axis), operands: [tensor(shape)], summary: "axis \(axis)")
        case "identity":
            return MadeCase(op: .identity, operands: [tensor((0..<int(1...4)).map { _ in int(1...9) })], summary: "")
        case "argmax", "argmin": return argExtreme(largest: key == "argmax")
        case "topk": return topK()
        case "cumsum":
            let shape = (0..<int(1...4)).map { _ in int(1...9) }
            let axis = int(-shape.count...(shape.count - 1))
            let exclusive = index % 2 == 1, reverse = index % 4 >= 2
            return MadeCase(op: .cumSum(axis: axis, exclusive: exclusive, reverse: reverse), operands: [tensor(shape)],
                            summary: "axis \(axis), exclusive \(exclusive), reverse \(reverse)")
        case "gather": return gather()
        case "gather_elements": return gatherElements()
        case "gather_nd": return gatherND()
        case "scatter_nd": return scatterND()
        default:
            preconditionFailure("no generator for op key '\(key)'")
        }
    }

    mutating func conv2d() -> MadeCase {
        // Four shapes of convolution in turn: plain, depthwise (channel multiplier 1 or 2),
        // grouped, 1x1; strides, dilation and asymmetric padding drawn for each.
        let kind = index % 4
        let n = batch(large: 8)
        var c = int(1...12), o = int(1...12), groups = 1
        var kh = int(1...5), kw = int(1...5)
        switch kind {
        case 1: groups = int(1...12); c = groups; o = groups * int(1...2); kh = pick([3, 3, 5, int(1...4)]); kw = kh
        case 2: groups = int(2...3); c = groups * int(1...4); o = groups * int(1...4)
        case 3: kh = 1; kw = 1; c = int(1...40); o = int(1...40)
        default: if index % 8 == 0 { kh = 3; kw = 3 }  // the 3x3 paths (Winograd on the CPU)
        }
        let stride = index % 8 == 0 ? (1, 1) : (int(1...3), int(1...3))
        let dilation = index % 5 == 3 ? (int(1...2), int(1...3)) : (1, 1)
        let pad = Padding2D(top: int(0...(kh - 1)), left: int(0...(kw - 1)), bottom: int(0...(kh - 1)), right: int(0...(kw - 1)))
        let spanH = dilation.0 * (kh - 1) + 1, spanW = dilation.1 * (kw - 1) + 1
        let h = int(max(1, spanH - pad.top - pad.bottom)...(spanH + 12)), w = int(max(1, spanW - pad.left - pad.right)...(spanW + 14))
        let a = Conv2DAttributes(kernel: (kh, kw), stride: stride, padding: pad, dilation: dilation, groups: groups, activation: fused)
        let x = tensor([n, c, h, w])
        let wt = tensor([o, c / groups, kh, kw], -0.5...0.5)
        let hasBias = index % 4 != 2, hasResidual = index % 3 != 1
        let oh = windowOutputSize(input: h, kernel: kh, stride: stride.0, dilation: dilation.0, padBegin: pad.top, padEnd: pad.bottom)
        let ow = windowOutputSize(input: w, kernel: kw, stride: stride.1, dilation: dilation.1, padBegin: pad.left, padEnd: pad.right)
        let bias = hasBias ? tensor([o]) : nil
        let residual = hasResidual ? tensor([n, o, oh, ow]) : nil
        let kindName = ["", "depthwise, ", "grouped, ", "1x1, "][kind]
        return MadeCase(
            op: .conv2d(a), operands: [x, wt, bias, residual],
            summary: "\(kindName)k \(kh)x\(kw), stride \(stride.0)x\(stride.1), dil \(dilation.0)x\(dilation.1), pad \(pad.top)/\(pad.left)/\(pad.bottom)/\(pad.right), groups \(groups), \(hasBias ? "bias" : "no bias"), \(hasResidual ? "residual" : "no residual"), \(describe(fused))")
    }

    mutating func convTranspose2d() -> MadeCase {
        let n = batch(large: 6)
        let groups = index % 3 == 1 ? int(2...3) : 1
        let c = groups * int(1...5), og = int(1...5)
        let kh = int(1...4), kw = int(1...4)
        let stride = (int(1...3), int(1...3))
        let dilation = index % 4 == 3 ? (int(1...2), int(1...2)) : (1, 1)
        let pad = Padding2D(top: int(0...(kh - 1)), left: int(0...(kw - 1)), bottom: int(0...(kh - 1)), right: int(0...(kw - 1)))
        // Output padding must be smaller than the stride or the dilation (PyTorch's rule).
        let outPad = (int(0...(max(stride.0, dilation.0) - 1)), int(0...(max(stride.1, dilation.1) - 1)))
        var h = int(1...7), w = int(1...8)
        // The output must not be empty: grow the input until it is not.
        func outSize(_ i: Int, _ s: Int, _ p0: Int, _ p1: Int, _ d: Int, _ k: Int, _ op: Int) -> Int { (i - 1) * s - p0 - p1 + d * (k - 1) + op + 1 }
        while outSize(h, stride.0, pad.top, pad.bottom, dilation.0, kh, outPad.0) < 1 { h += 1 }
        while outSize(w, stride.1, pad.left, pad.right, dilation.1, kw, outPad.1) < 1 { w += 1 }
        let a = ConvTranspose2DAttributes(kernel: (kh, kw), stride: stride, padding: pad, outputPadding: outPad,
                                          dilation: dilation, groups: groups, activation: fused)
        let hasBias = index % 3 != 2
        return MadeCase(
            op: .convTranspose2d(a),
            operands: [tensor([n, c, h, w]), tensor([c, og, kh, kw], -0.5...0.5), hasBias ? tensor([og * groups]) : nil],
            summary: "k \(kh)x\(kw), stride \(stride.0)x\(stride.1), dil \(dilation.0)x\(dilation.1), pad \(pad.top)/\(pad.left)/\(pad.bottom)/\(pad.right), out pad \(outPad.0)x\(outPad.1), groups \(groups), \(hasBias ? "bias" : "no bias"), \(describe(fused))")
    }

    mutating func dense() -> MadeCase {
        let k = index % 5 == 4 ? int(200...600) : int(1...70), n = int(1...70)
        let lead = index % 3 == 2 ? [batch(), int(1...9)] : [batch(large: 64)]
        let hasBias = index % 4 != 3
        return MadeCase(
            op: .dense(activation: fused),
            operands: [tensor(lead + [k]), tensor([n, k], -0.5...0.5), hasBias ? tensor([n]) : nil],
            summary: "K \(k), N \(n), \(hasBias ? "bias" : "no bias"), \(describe(fused))")
    }

    mutating func matmul() -> MadeCase {
        let ta = index % 2 == 1, tb = index / 2 % 2 == 1
        let m = int(1...40), k = index % 7 == 6 ? int(100...300) : int(1...40), n = int(1...40)
        var aBatch: [Int] = [], bBatch: [Int] = []
        var fallback: String? = nil
        var form = "no batch"
        switch index % 5 {
        case 1: let b = batch(large: 8); aBatch = [b]; bBatch = [b]; form = "batch \(b)"
        case 2: aBatch = [int(2...3), int(1...4)]; form = "B is one matrix"
        case 3: bBatch = [int(2...5)]; form = "A is one matrix"
        case 4:
            // Batch dimensions that broadcast against each other dimension by dimension.
            let p = int(2...3), q = int(2...3)
            aBatch = [p, 1]; bBatch = [1, q]; form = "batch \(p)x1 by 1x\(q)"
            fallback = "matmul whose batch dimensions broadcast against each other dimension by dimension"
        default: break
        }
        let aShape = aBatch + (ta ? [k, m] : [m, k]), bShape = bBatch + (tb ? [n, k] : [k, n])
        return MadeCase(op: .matmul(transposeA: ta, transposeB: tb), operands: [tensor(aShape), tensor(bShape)],
                        summary: "M \(m), K \(k), N \(n), \(ta ? "A transposed" : "A"), \(tb ? "B transposed" : "B"), \(form)",
                        knownFallback: fallback)
    }

    mutating func pool(isMax: Bool) -> MadeCase {
        let kh = int(1...4), kw = int(1...4)
        let dilation = index % 5 == 4 ? (int(1...2), int(1...2)) : (1, 1)
        let stride = index % 4 == 0 ? (2, 2) : (int(1...3), int(1...3))
        let pad = Padding2D(top: int(0...(kh - 1)), left: int(0...(kw - 1)), bottom: int(0...(kh - 1)), right: int(0...(kw - 1)))
        let ceil = index % 2 == 1, includePad = index / 2 % 2 == 0
        let a = Pool2DAttributes(kernel: (kh, kw), stride: stride, padding: pad, dilation: dilation, ceilMode: ceil, countIncludePad: includePad)
        let spanH = dilation.0 * (kh - 1) + 1, spanW = dilation.1 * (kw - 1) + 1
        let shape = [batch(), int(1...6), int(max(spanH, 2)...15), index % 4 == 0 ? int(40...80) : int(max(spanW, 2)...30)]
        return MadeCase(op: isMax ? .maxPool2d(a) : .avgPool2d(a), operands: [tensor(shape)],
                        summary: "k \(kh)x\(kw), stride \(stride.0)x\(stride.1), dil \(dilation.0)x\(dilation.1), pad \(pad.top)/\(pad.left)/\(pad.bottom)/\(pad.right), ceil \(ceil)\(isMax ? "" : ", count_include_pad \(includePad)")")
    }

    mutating func batchNorm() -> MadeCase {
        let rank = index % 3 == 2 ? pick([2, 3]) : 4
        let c = int(1...16)
        let shape = [batch()] + [c] + (2..<rank).map { _ in int(1...11) }
        return MadeCase(
            op: .batchNorm(epsilon: 1e-5),
            operands: [tensor(shape, -2...2), tensor([c], 0.5...1.5), tensor([c]), tensor([c], -0.5...0.5), tensor([c], 0.1...2)],
            summary: "rank \(rank)")
    }

    mutating func layerNorm() -> MadeCase {
        let rank = int(2...4), nd = int(1...min(2, rank))
        let shape = [batch(large: 32)] + (1..<rank).map { _ in int(1...40) }
        let normalized = Array(shape.suffix(nd))
        // Gamma and beta each present or absent; given as the normalised shape or flattened.
        let hasGamma = index % 4 != 3, hasBeta = index % 4 != 2
        let pShape = index % 2 == 0 ? normalized : [normalized.reduce(1, *)]
        return MadeCase(
            op: .layerNorm(epsilon: index % 2 == 0 ? 1e-5 : 1e-12, normalizedDims: nd),
            operands: [tensor(shape, -3...3), hasGamma ? tensor(pShape, 0.5...1.5) : nil, hasBeta ? tensor(pShape) : nil],
            summary: "over \(nd) dims, \(hasGamma ? "gamma" : "no gamma"), \(hasBeta ? "beta" : "no beta")")
    }

    mutating func instanceNorm() -> MadeCase {
        let rank = index % 3 == 2 ? 3 : 4
        let c = int(1...8)
        let shape = [batch()] + [c] + (2..<rank).map { _ in int(2...20) }
        let hasParams = index % 4 != 3
        return MadeCase(
            op: .instanceNorm(epsilon: 1e-5),
            operands: [tensor(shape, -2...2)] + (hasParams ? [tensor([c], 0.5...1.5), tensor([c])] : [nil, nil]),
            summary: "rank \(rank), \(hasParams ? "gamma and beta" : "no gamma, beta")")
    }

    mutating func attention() -> MadeCase {
        let heads = int(1...4)
        let dq = pick([1, 5, 8, 16, 24, 33, 64]), dv = index % 3 == 0 ? int(1...40) : dq
        let b = batch(large: 6), sq = int(1...40), sk = index % 2 == 0 ? sq : int(1...70)
        let causal = index % 4 == 1 || index % 4 == 2
        var mask: Tensor? = nil
        if index % 3 != 2 {
            let m = Tensor(shape: [b, sk], repeating: 1)
            for i in 0..<(b * sk) where Float.random(in: 0...1, using: &rng) < 0.3 { m[flat: i] = 0 }
            // A batch row entirely padded in some cases: its outputs are zeros, not NaN.
            if index % 5 == 0 && b > 1 { for j in 0..<sk { m[flat: j] = 0 } }
            // The last batch row attends to at least one key, so the mask is never all zeros.
            m[flat: (b - 1) * sk + int(0...(sk - 1))] = 1
            mask = m
        }
        return MadeCase(
            op: .attention(heads: heads, causal: causal),
            operands: [tensor([b, sq, heads * dq], -2...2), tensor([b, sk, heads * dq], -2...2), tensor([b, sk, heads * dv]), mask],
            summary: "heads \(heads), dq \(dq), dv \(dv), sq \(sq), sk \(sk), \(causal ? "causal" : "not causal"), \(mask == nil ? "no mask" : "key padding mask")")
    }

    mutating func recurrent(isLSTM: Bool) -> MadeCase {
        let directions: [RecurrentDirection] = [.forward, .reverse, .bidirectional]
        let direction = directions[index % 3]
        let lbr = isLSTM || index % 4 != 3
        let b = batch(large: 10), s = int(1...6), input = int(1...19), h = pick([1, 7, 16, 37, int(2...40)])
        let d = direction.count, g = isLSTM ? 4 : 3
        let hasBias = index % 4 != 1
        // h0 and c0 present or absent independently.
        let hasH0 = index % 2 == 0 || index % 5 == 1, hasC0 = isLSTM && index / 2 % 2 == 0
        let attrs = RecurrentAttributes(hiddenSize: h, direction: direction, linearBeforeReset: lbr)
        var operands: [Tensor?] = [
            tensor([b, s, input]), tensor([d, g * h, input], -0.5...0.5), tensor([d, g * h, h], -0.5...0.5),
            hasBias ? tensor([d, 2 * g * h]) : nil, hasH0 ? tensor([d, b, h]) : nil,
        ]
        if isLSTM { operands.append(hasC0 ? tensor([d, b, h]) : nil) }
        return MadeCase(
            op: isLSTM ? .lstm(attrs) : .gru(attrs), operands: operands, outputs: isLSTM ? 3 : 2,
            summary: "\(direction), hidden \(h), steps \(s), \(hasBias ? "bias" : "no bias"), \(hasH0 ? "h0" : "no h0")\(isLSTM ? (hasC0 ? ", c0" : ", no c0") : (lbr ? ", linear_before_reset" : ", reset before the recurrent product"))",
            knownFallback: lbr ? nil : "GRU with ONNX's linear_before_reset = 0")
    }

    mutating func activation(_ act: Activation) -> MadeCase {
        let rank = int(1...5)
        var shape = (0..<rank).map { _ in int(1...9) }
        if index % 3 == 0 { shape[rank - 1] = int(30...200) }  // long rows: the vector paths and a tail
        let x: Tensor
        switch act {
        case .sqrt, .log: x = tensor(shape, 0.05...6)
        case .reciprocal: x = signed(shape, 0.1...4)
        case .exp: x = tensor(shape, -6...6)
        case .round, .floor, .ceil, .trunc, .not, .sign:
            // Exact halves (round's ties go to even), whole numbers and zeros (not, sign) among
            // the values, about one element in three each.
            x = tensor(shape, -6...6)
            for i in 0..<x.count where int(0...2) == 0 { x[flat: i] = Float(int(-12...12)) / 2 }
            for i in 0..<x.count where int(0...4) == 0 { x[flat: i] = 0 }
            if x.scalars.allSatisfy({ $0 == 0 }) { x[flat: 0] = 2.5 }
        default: x = tensor(shape, -6...6)
        }
        return MadeCase(op: .activation(act), operands: [x], summary: "\(act)")
    }

    mutating func binary(_ op: BinaryOp) -> MadeCase {
        let (sa, sb) = broadcastPair()
        let a: Tensor, b: Tensor
        switch op {
        case .pow: a = tensor(sa, 0.1...3); b = tensor(sb, -2...2)
        case .div: a = tensor(sa, -2...2); b = signed(sb, 0.5...2)
        case .equal, .less, .lessOrEqual, .greater, .greaterOrEqual, .and, .or, .xor:
            // Few distinct values so that equal operands are common; 0 and 1 among them for the
            // logic ops (which read any non-zero value as true).
            a = small(sa); b = small(sb)
        case .mod, .fmod:
            // Whole numbers of both signs (the importer's integer Mod) in cases 0, 1 mod 4,
            // fractions in 2, 3 (so each comes in both operand forms); divisors away from zero.
            if index % 4 < 2 {
                a = small(sa, -20...20); b = small(sb, -6...6, nonZero: true)
            } else {
                a = tensor(sa, -8...8); b = signed(sb, 0.5...3)
            }
        default: a = tensor(sa, -2...2); b = tensor(sb, -2...2)
        }
        return MadeCase(op: .binary(op, activation: fused), operands: [a, b], summary: describe(fused))
    }

    /// Whole numbers in `range` (skipping 0 when `nonZero`), never all zero.
    mutating func small(_ shape: [Int], _ range: ClosedRange<Int> = -2...2, nonZero: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        for i in 0..<t.count {
            var v = int(range)
            while nonZero && v == 0 { v = int(range) }
            t[flat: i] = Float(v)
        }
        if t.count > 0 && t.scalars.allSatisfy({ $0 == 0 }) { t[flat: 0] = 1 }
        return t
    }

    /// select: a 0/1 condition and two value operands, the three shapes broadcasting against one
    /// another in every way broadcastPair draws (the condition sometimes the full shape, sometimes
    /// a broadcast one); y holds infinities in some cases, which must not reach elements taking x.
    mutating func select() -> MadeCase {
        let (sx, sy) = broadcastPair()
        let out = broadcastShapes(sx, sy)!
        var sc = out.map { bool() ? 1 : $0 }
        if index % 3 == 0 { sc = out } else if index % 3 == 1 { sc = Array(sc.dropFirst(int(0...sc.count))) }
        let cond = small(sc, 0...1)
        let x = tensor(sx, -2...2), y = tensor(sy, -2...2)
        if index % 4 == 3 { for i in 0..<y.count where bool() { y[flat: i] = bool() ? .infinity : -.infinity } }
        return MadeCase(op: .select, operands: [cond, x, y], summary: "condition \(sc)\(index % 4 == 3 ? ", infinite y" : "")")
    }

    /// A pair of broadcastable shapes: equal, per channel, trailing vector, scalar, or general.
    mutating func broadcastPair() -> ([Int], [Int]) {
        let rank = int(1...5)
        let full = (0..<rank).map { _ in int(1...9) }
        switch index % 5 {
        case 0: return (full, full)
        case 1 where rank >= 3:
            var b = full.map { _ in 1 }
            b[1] = full[1]
            return (full, Array(b.dropFirst()))
        case 2: return (full, [full[rank - 1]])
        case 3: return bool() ? ([1], full) : (full, [1])
        default:
            let a = full.map { bool() ? 1 : $0 }
            let b = Array(full.map { bool() ? 1 : $0 }.dropFirst(int(0...(rank - 1))))
            return bool() ? (a, b) : (b, a)
        }
    }

    mutating func reduce(_ op: ReduceOp) -> MadeCase {
        let rank = int(1...5)
        let shape = (0..<rank).map { _ in int(1...9) }
        var axes: [Int] = []
        if index % 4 != 3 {
            for a in 0..<rank where bool() { axes.append(bool() ? a - rank : a) }
            if axes.isEmpty { axes = [int(-rank...(rank - 1))] }
        }
        let keep = index % 2 == 0
        return MadeCase(op: .reduce(op, axes: axes, keepDims: keep), operands: [tensor(shape, -2...2)],
                        summary: "axes \(axes.isEmpty ? "all" : "\(axes)"), keepDims \(keep)")
    }

    mutating func slice() -> MadeCase {
        let rank = int(1...4)
        let shape = (0..<rank).map { _ in int(1...9) }
        var starts: [Int] = [], ends: [Int] = [], axes: [Int] = [], steps: [Int] = []
        for ax in 0..<rank where bool() || ax == rank - 1 {
            let d = shape[ax]
            let step = pick([1, 1, 2, 3, -1, -2])
            axes.append(bool() ? ax - rank : ax)
            steps.append(step)
            // Starts and ends past either end clamp; negative ones count from the end.
            starts.append(int((-d - 2)...(d + 2)))
            ends.append(step > 0 ? pick([int((-d)...(d + 3)), Int.max]) : pick([int((-d - 2)...d), Int.min]))
        }
        return MadeCase(op: .slice(starts: starts, ends: ends, axes: axes, steps: steps), operands: [tensor(shape)],
                        summary: "starts \(starts), ends \(ends), axes \(axes), steps \(steps)")
    }

    mutating func pad() -> MadeCase {
        let mode: PadMode = [.constant, .reflect, .edge][index % 3]
        let rank = int(1...4)
        let shape = (0..<rank).map { _ in int(2...7) }
        var pads = [Int](repeating: 0, count: 2 * rank)
        for i in 0..<rank {
            let limit = mode == .reflect ? shape[i] - 1 : 3
            // Negative pads crop.
            pads[i] = int(-1...limit); pads[i + rank] = int(-1...limit)
            if shape[i] + pads[i] + pads[i + rank] < 1 { pads[i] = 0 }
        }
        return MadeCase(op: .pad(pads: pads, mode: mode, value: 0.25), operands: [tensor(shape)], summary: "\(mode), pads \(pads)")
    }

    mutating func upsample() -> MadeCase {
        let mode: UpsampleMode = [.nearest, .bilinear, .bilinearAlignCorners][index % 3]
        let shape = [batch(large: 4), int(1...4), int(1...9), int(1...11)]
        if index % 2 == 1 {
            let size = [int(1...20), int(1...24)]
            return MadeCase(op: .upsample(mode: mode, scaleH: 1, scaleW: 1, size: size), operands: [tensor(shape)], summary: "\(mode), size \(size)")
        }
        let sh = pick([Float(2), 3, 1.5, 0.5]), sw = pick([Float(2), 1, 2.5])
        var s = shape
        if Int((Float(s[2]) * sh).rounded(.down)) < 1 { s[2] = 2 }
        return MadeCase(op: .upsample(mode: mode, scaleH: sh, scaleW: sw, size: nil), operands: [tensor(s)], summary: "\(mode), scales \(sh)x\(sw)")
    }

    /// Whole numbers in -2...2 (never all zero), so that equal values are common: the cases of
    /// argmax / argmin and topk that check which of equal values wins.
    mutating func ties(_ shape: [Int]) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        for i in 0..<t.count { t[flat: i] = Float(int(-2...2)) }
        if t.count > 0 { t[flat: 0] = 1 }
        return t
    }

    /// Index values for an axis of length `n`: in [0, n), or (a third of the cases) in [-n, n),
    /// negative ones counting from the end.
    mutating func positions(_ shape: [Int], _ n: Int) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        for i in 0..<t.count { t[flat: i] = Float(index % 3 == 2 ? int(-n...(n - 1)) : int(0...(n - 1))) }
        notAllZero(t, n)
        return t
    }

    /// An index tensor of zeros only would not show a dropped operand: its first entry then names
    /// the last position, as -1 where that is position 0 too (an axis of length 1).
    func notAllZero(_ t: Tensor, _ n: Int) {
        if t.count > 0 && t.scalars.allSatisfy({ $0 == 0 }) { t[flat: 0] = n > 1 ? Float(n - 1) : -1 }
    }

    mutating func argExtreme(largest: Bool) -> MadeCase {
        let shape = (0..<int(1...4)).map { _ in int(1...8) }
        let axis = int(-shape.count...(shape.count - 1))
        let keep = index % 2 == 0, last = index % 4 >= 2
        let withTies = index % 3 != 0
        return MadeCase(op: .argExtreme(largest: largest, axis: axis, keepDims: keep, selectLast: last),
                        operands: [withTies ? ties(shape) : tensor(shape)],
                        summary: "axis \(axis), keepDims \(keep), selectLast \(last)\(withTies ? ", ties" : "")")
    }

    mutating func topK() -> MadeCase {
        let shape = (0..<int(1...4)).map { _ in int(1...9) }
        let axis = int(-shape.count...(shape.count - 1))
        let n = shape[axis < 0 ? axis + shape.count : axis]
        let k = int(1...n), largest = index % 2 == 0
        let withTies = index % 3 != 0
        return MadeCase(op: .topK(k: k, axis: axis, largest: largest), operands: [withTies ? ties(shape) : tensor(shape)],
                        outputs: 2, summary: "k \(k), axis \(axis), largest \(largest)\(withTies ? ", ties" : "")")
    }

    mutating func gather() -> MadeCase {
        let shape = (0..<int(1...4)).map { _ in int(1...7) }
        let axis = int(-shape.count...(shape.count - 1))
        let n = shape[axis < 0 ? axis + shape.count : axis]
        let ids = positions((0..<int(1...2)).map { _ in int(1...5) }, n)
        return MadeCase(op: .gather(axis: axis), operands: [tensor(shape), ids],
                        summary: "axis \(axis)\(index % 3 == 2 ? ", negative indices" : "")")
    }

    mutating func gatherElements() -> MadeCase {
        let shape = (0..<int(1...4)).map { _ in int(1...7) }
        let axis = int(-shape.count...(shape.count - 1)), ax = axis < 0 ? axis + shape.count : axis
        // Off the axis the indices may be smaller than the data; on it, any length.
        let ishape = shape.indices.map { $0 == ax ? int(1...6) : int(1...shape[$0]) }
        return MadeCase(op: .gatherElements(axis: axis), operands: [tensor(shape), positions(ishape, shape[ax])],
                        summary: "axis \(axis), indices \(ishape)\(index % 3 == 2 ? ", negative indices" : "")")
    }

    mutating func gatherND() -> MadeCase {
        let shape = (0..<int(1...4)).map { _ in int(1...6) }
        let b = int(0...min(2, shape.count - 1)), k = int(1...(shape.count - b))
        let ishape = Array(shape[..<b]) + (0..<int(0...2)).map { _ in int(1...4) } + [k]
        let ids = Tensor(uninitializedShape: ishape)
        // Component j of a tuple indexes data dimension b + j.
        for i in 0..<ids.count {
            let n = shape[b + i % k]
            ids[flat: i] = Float(index % 3 == 2 ? int(-n...(n - 1)) : int(0...(n - 1)))
        }
        notAllZero(ids, shape[b])
        return MadeCase(op: .gatherND(batchDims: b), operands: [tensor(shape), ids],
                        summary: "batch dims \(b), indices \(ishape)\(index % 3 == 2 ? ", negative indices" : "")")
    }

    mutating func scatterND() -> MadeCase {
        let reduction: ScatterReduction = [.none, .add, .mul, .max, .min][index % 5]
        let shape = (0..<int(1...4)).map { _ in int(1...6) }
        let k = int(1...shape.count)
        let ishape = (0..<int(0...2)).map { _ in int(1...4) } + [k]
        let ids = Tensor(uninitializedShape: ishape)
        // Tuples may repeat: their updates then combine in order.
        for i in 0..<ids.count {
            let n = shape[i % k]
            ids[flat: i] = Float(index % 3 == 2 ? int(-n...(n - 1)) : int(0...(n - 1)))
        }
        notAllZero(ids, shape[0])
        let updates = tensor(Array(ishape.dropLast()) + Array(shape[k...]))
        return MadeCase(op: .scatterND(reduction), operands: [tensor(shape), ids, updates],
                        summary: "\(reduction), indices \(ishape)\(index % 3 == 2 ? ", negative indices" : "")")
    }
}
