// Shape inference: given concrete input shapes for one run, the shape of every value. Each rule
// checks its operands and throws an error that names the node and the mismatch.

/// Output size of a strided window along one axis (conv and pooling share it).
public func windowOutputSize(
    input: Int, kernel: Int, stride: Int, dilation: Int, padBegin: Int, padEnd: Int, ceilMode: Bool = false
) -> Int {
    let span = dilation * (kernel - 1) + 1
    let padded = input + padBegin + padEnd
    if padded < span { return 0 }
    if !ceilMode { return (padded - span) / stride + 1 }
    var out = (padded - span + stride - 1) / stride + 1
    // PyTorch / ONNX: the last window must start inside the input or the leading padding.
    if (out - 1) * stride >= input + padBegin { out -= 1 }
    return out
}

/// Numpy broadcasting of two shapes, or nil when they do not broadcast.
public func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int]? {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return out
}

/// Normalises a possibly negative axis for a tensor of rank `rank`, or nil if out of range.
public func normalizeAxis(_ axis: Int, rank: Int) -> Int? {
    let a = axis < 0 ? axis + rank : axis
    return (0..<rank).contains(a) ? a : nil
}

/// The effective [start, end, step] of an ONNX Slice on a dimension of size `dim`, and its length.
public func sliceRange(start: Int, end: Int, step: Int, dim: Int) -> (start: Int, count: Int) {
    var s = start < 0 ? start + dim : start
    var e = end < 0 ? end + dim : end
    if step > 0 {
        s = min(max(s, 0), dim); e = min(max(e, 0), dim)
        return (s, e > s ? (e - s + step - 1) / step : 0)
    } else {
        s = min(max(s, -1), dim - 1); e = min(max(e, -1), dim - 1)
        return (s, s > e ? (s - e + (-step) - 1) / (-step) : 0)
    }
}

/// Resolves an ONNX-style reshape target (0 copies, -1 inferred) against an input shape.
public func resolveReshape(_ target: [Int], input: [Int], node: String) throws -> [Int] {
    var out = target
    var inferred: Int? = nil
    for (i, d) in target.enumerated() {
        if d == 0 {
            guard i < input.count else {
                throw QuarryError.shapeMismatch(node: node, message: "reshape copies dimension \(i) of a rank-\(input.count) input")
            }
            out[i] = input[i]
        } else if d == -1 {
            guard inferred == nil else {
                throw QuarryError.shapeMismatch(node: node, message: "reshape target \(target) has more than one -1")
            }
            inferred = i
        } else if d < -1 {
            throw QuarryError.shapeMismatch(node: node, message: "reshape target \(target) has a negative dimension")
        }
    }
    let total = input.reduce(1, *)
    if let i = inferred {
        let known = out.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
        guard known > 0, total % known == 0 else {
            throw QuarryError.shapeMismatch(node: node, message: "cannot reshape \(input) to \(target)")
        }
        out[i] = total / known
    }
    guard out.reduce(1, *) == total else {
        throw QuarryError.shapeMismatch(node: node, message: "cannot reshape \(input) (\(total) elements) to \(out)")
    }
    return out
}

extension Graph {
    /// The concrete shape of every value for one run with the given input shapes. Parameters use
    /// their declared shapes. Throws naming the first node whose operands do not fit.
    public func inferShapes(inputShapes: [String: [Int]]) throws -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        for (name, p) in parameters { shapes[name] = p.shape }
        for input in inputs {
            guard let s = inputShapes[input.name] else {
                throw QuarryError.invalidArgument("no shape given for graph input '\(input.name)'")
            }
            guard s.count == input.shape.count else {
                throw QuarryError.invalidArgument(
                    "input '\(input.name)' must have rank \(input.shape.count) (\(input.shape)), got \(s)")
            }
            var bound: [String: Int] = [:]
            for (d, (decl, actual)) in zip(input.shape, s).enumerated() {
                switch decl {
                case .fixed(let n) where n != actual:
                    throw QuarryError.invalidArgument(
                        "input '\(input.name)' dimension \(d) must be \(n), got \(actual) (shape \(s))")
                case .symbol(let sym):
                    if let b = bound[sym], b != actual {
                        throw QuarryError.invalidArgument("input '\(input.name)': dimension '\(sym)' is both \(b) and \(actual)")
                    }
                    bound[sym] = actual
                default: break
                }
                if actual < 0 { throw QuarryError.invalidArgument("input '\(input.name)' has a negative dimension: \(s)") }
            }
            shapes[input.name] = s
        }
        for node in nodes {
            var ins: [[Int]?] = []
            for name in node.inputs {
                if name.isEmpty { ins.append(nil); continue }
                guard let s = shapes[name] else {
                    throw QuarryError.shapeMismatch(node: node.name, message: "input '\(name)' is not defined before this node")
                }
                ins.append(s)
            }
            let outs = try Graph.inferNode(node, ins)
            guard outs.count == node.outputs.count else {
                throw QuarryError.shapeMismatch(node: node.name, message: "\(node.op.name) produces \(outs.count) outputs, node declares \(node.outputs.count)")
            }
            for (name, s) in zip(node.outputs, outs) { shapes[name] = s }
        }
        return shapes
    }

    static func inferNode(_ node: Node, _ ins: [[Int]?]) throws -> [[Int]] {
        let name = node.name
        func fail(_ m: String) -> QuarryError { .shapeMismatch(node: name, message: m) }
        func need(_ i: Int, _ what: String) throws -> [Int] {
            guard i < ins.count, let s = ins[i] else { throw fail("\(node.op.name) needs its \(what) operand") }
            return s
        }
        func opt(_ i: Int) -> [Int]? { i < ins.count ? ins[i] : nil }
        func rank(_ s: [Int], _ r: Int, _ what: String) throws {
            guard s.count == r else { throw fail("\(what) must have rank \(r), got shape \(s)") }
        }

        switch node.op {
        case .input, .constant:
            throw fail("\(node.op.name) is not a computing node")

        case .conv2d(let a):
            let x = try need(0, "input"), w = try need(1, "weight")
            try rank(x, 4, "input"); try rank(w, 4, "weight")
            guard a.groups >= 1, x[1] % a.groups == 0, w[0] % a.groups == 0 else {
                throw fail("conv: groups \(a.groups) must divide input channels \(x[1]) and output channels \(w[0])")
            }
            guard w[1] * a.groups == x[1] else {
                throw fail("conv: input has \(x[1]) channels, weight expects \(w[1] * a.groups)")
            }
            guard w[2] == a.kernelH, w[3] == a.kernelW else {
                throw fail("conv: weight kernel \(w[2])x\(w[3]) differs from attribute \(a.kernelH)x\(a.kernelW)")
            }
            if let b = opt(2), b != [w[0]] { throw fail("conv: bias shape \(b), expected [\(w[0])]") }
            guard a.strideH > 0, a.strideW > 0, a.dilationH > 0, a.dilationW > 0 else { throw fail("stride and dilation must be positive") }
            let oh = windowOutputSize(input: x[2], kernel: a.kernelH, stride: a.strideH, dilation: a.dilationH, padBegin: a.padding.top, padEnd: a.padding.bottom)
            let ow = windowOutputSize(input: x[3], kernel: a.kernelW, stride: a.strideW, dilation: a.dilationW, padBegin: a.padding.left, padEnd: a.padding.right)
            guard oh > 0, ow > 0 else { throw fail("conv: input \(x[2])x\(x[3]) is smaller than the \(a.kernelH)x\(a.kernelW) kernel") }
            if let r = opt(3), r != [x[0], w[0], oh, ow] {
                throw fail("conv: residual shape \(r), expected the output's \([x[0], w[0], oh, ow])")
            }
            return [[x[0], w[0], oh, ow]]

        case .expandDepthwiseProject(let a):
            // Each convolution's shapes checked as its own node's would be.
            func conv(_ attrs: Conv2DAttributes, _ operands: [[Int]?]) throws -> [Int] {
                try inferNode(Node(name: name, op: .conv2d(attrs), inputs: operands.map { $0 == nil ? "" : "v" }, outputs: [name]),
                              operands)[0]
            }
            // No expansion weight: the depthwise filter reads the input.
            let x = try need(0, "input")
            let expanded = opt(1) == nil ? x : try conv(Conv2DAttributes(kernel: (1, 1), activation: a.expandActivation), [x, opt(1), opt(2)])
            let filtered = try conv(a.depthwise, [expanded, opt(3), opt(4)])
            return [try conv(Conv2DAttributes(kernel: (1, 1), activation: a.projectActivation), [filtered, opt(5), opt(6), opt(7)])]

        case .convTranspose2d(let a):
            let x = try need(0, "input"), w = try need(1, "weight")
            try rank(x, 4, "input"); try rank(w, 4, "weight")
            guard w[0] == x[1] else { throw fail("conv_transpose: input has \(x[1]) channels, weight expects \(w[0])") }
            guard a.groups >= 1, x[1] % a.groups == 0 else { throw fail("groups \(a.groups) must divide input channels \(x[1])") }
            guard w[2] == a.kernelH, w[3] == a.kernelW else { throw fail("weight kernel \(w[2])x\(w[3]) differs from attribute \(a.kernelH)x\(a.kernelW)") }
            let o = w[1] * a.groups
            if let b = opt(2), b != [o] { throw fail("bias shape \(b), expected [\(o)]") }
            let oh = (x[2] - 1) * a.strideH - a.padding.top - a.padding.bottom + a.dilationH * (a.kernelH - 1) + a.outputPaddingH + 1
            let ow = (x[3] - 1) * a.strideW - a.padding.left - a.padding.right + a.dilationW * (a.kernelW - 1) + a.outputPaddingW + 1
            guard oh > 0, ow > 0 else { throw fail("output size \(oh)x\(ow) is not positive") }
            return [[x[0], o, oh, ow]]

        case .dense:
            let x = try need(0, "input"), w = try need(1, "weight")
            try rank(w, 2, "weight")
            guard let k = x.last, k == w[1] else {
                throw fail("dense: input has \(x.last ?? 0) features, weight expects \(w[1])")
            }
            if let b = opt(2), b != [w[0]] { throw fail("bias shape \(b), expected [\(w[0])]") }
            return [Array(x.dropLast()) + [w[0]]]

        case .matmul(let ta, let tb):
            var a = try need(0, "A"), b = try need(1, "B")
            guard a.count >= 2, b.count >= 2 else { throw fail("matmul operands need rank 2 or more, got \(a) and \(b)") }
            if ta { a.swapAt(a.count - 1, a.count - 2) }
            if tb { b.swapAt(b.count - 1, b.count - 2) }
            guard a[a.count - 1] == b[b.count - 2] else { throw fail("matmul: \(a) times \(b): inner dimensions differ") }
            guard let batch = broadcastShapes(Array(a.dropLast(2)), Array(b.dropLast(2))) else {
                throw fail("matmul: batch dimensions of \(a) and \(b) do not broadcast")
            }
            return [batch + [a[a.count - 2], b[b.count - 1]]]

        case .maxPool2d(let a), .avgPool2d(let a):
            let x = try need(0, "input")
            try rank(x, 4, "input")
            guard a.strideH > 0, a.strideW > 0, a.kernelH > 0, a.kernelW > 0 else { throw fail("kernel and stride must be positive") }
            guard a.padding.top < a.kernelH, a.padding.bottom < a.kernelH || a.padding.bottom == 0, a.padding.left < a.kernelW else {
                throw fail("pooling padding must be smaller than the kernel")
            }
            let oh = windowOutputSize(input: x[2], kernel: a.kernelH, stride: a.strideH, dilation: a.dilationH, padBegin: a.padding.top, padEnd: a.padding.bottom, ceilMode: a.ceilMode)
            let ow = windowOutputSize(input: x[3], kernel: a.kernelW, stride: a.strideW, dilation: a.dilationW, padBegin: a.padding.left, padEnd: a.padding.right, ceilMode: a.ceilMode)
            guard oh > 0, ow > 0 else { throw fail("input \(x[2])x\(x[3]) is smaller than the pooling window") }
            return [[x[0], x[1], oh, ow]]

        case .globalAvgPool, .globalMaxPool:
            let x = try need(0, "input")
            guard x.count >= 3 else { throw fail("global pooling needs [N, C, spatial...], got \(x)") }
            return [[x[0], x[1]] + Array(repeating: 1, count: x.count - 2)]

        case .batchNorm:
            let x = try need(0, "input")
            guard x.count >= 2 else { throw fail("batch norm needs [N, C, ...], got \(x)") }
            for i in 1...4 {
                let p = try need(i, "statistics")
                guard p == [x[1]] else { throw fail("batch norm parameter \(i) has shape \(p), expected [\(x[1])]") }
            }
            return [x]

        case .layerNorm(_, let nd):
            let x = try need(0, "input")
            guard nd >= 1, nd <= x.count else { throw fail("layer norm over \(nd) dimensions of \(x)") }
            let norm = Array(x.suffix(nd))
            for i in 1...2 {
                if let p = opt(i), p.reduce(1, *) != norm.reduce(1, *) {
                    throw fail("layer norm parameter shape \(p) does not match normalised shape \(norm)")
                }
            }
            return [x]

        case .instanceNorm:
            let x = try need(0, "input")
            guard x.count >= 3 else { throw fail("instance norm needs [N, C, spatial...], got \(x)") }
            for i in 1...2 { if let p = opt(i), p != [x[1]] { throw fail("parameter \(i) has shape \(p), expected [\(x[1])]") } }
            return [x]

        case .softmax(let axis), .logSoftmax(let axis):
            let x = try need(0, "input")
            guard normalizeAxis(axis, rank: x.count) != nil else { throw fail("axis \(axis) out of range for \(x)") }
            return [x]

        case .attention(let heads, _):
            let q = try need(0, "query"), k = try need(1, "key"), v = try need(2, "value")
            try rank(q, 3, "query"); try rank(k, 3, "key"); try rank(v, 3, "value")
            guard heads > 0, q[2] % heads == 0 else { throw fail("embedding \(q[2]) is not divisible by \(heads) heads") }
            guard k[0] == q[0], v[0] == q[0], k[2] == q[2], v[1] == k[1] else {
                throw fail("attention shapes q \(q), k \(k), v \(v) do not fit")
            }
            guard v[2] % heads == 0 else { throw fail("value width \(v[2]) is not divisible by \(heads) heads") }
            if let m = opt(3), m != [q[0], k[1]] { throw fail("key padding mask shape \(m), expected [\(q[0]), \(k[1])]") }
            return [[q[0], q[1], v[2]]]

        case .lstm(let a), .gru(let a):
            let isLSTM: Bool
            if case .lstm = node.op { isLSTM = true } else { isLSTM = false }
            let gates = isLSTM ? 4 : 3
            let x = try need(0, "input"), w = try need(1, "input weight"), r = try need(2, "recurrent weight")
            try rank(x, 3, "input")
            let d = a.direction.count, h = a.hiddenSize
            guard w == [d, gates * h, x[2]] else { throw fail("input weight shape \(w), expected \([d, gates * h, x[2]])") }
            guard r == [d, gates * h, h] else { throw fail("recurrent weight shape \(r), expected \([d, gates * h, h])") }
            if let b = opt(3), b != [d, 2 * gates * h] { throw fail("bias shape \(b), expected \([d, 2 * gates * h])") }
            if let h0 = opt(4), h0 != [d, x[0], h] { throw fail("initial hidden state shape \(h0), expected \([d, x[0], h])") }
            if isLSTM, let c0 = opt(5), c0 != [d, x[0], h] { throw fail("initial cell state shape \(c0), expected \([d, x[0], h])") }
            let y = [x[0], x[1], d * h], state = [d, x[0], h]
            return isLSTM ? [y, state, state] : [y, state]

        case .embedding:
            let ids = try need(0, "ids"), table = try need(1, "table")
            try rank(table, 2, "table")
            return [ids + [table[1]]]

        case .activation, .identity:
            return [try need(0, "input")]

        case .binary(let op, _):
            let a = try need(0, "A"), b = try need(1, "B")
            guard let s = broadcastShapes(a, b) else { throw fail("\(op.rawValue): shapes \(a) and \(b) do not broadcast") }
            return [s]

        case .select:
            let c = try need(0, "condition"), x = try need(1, "X"), y = try need(2, "Y")
            guard let xy = broadcastShapes(x, y), let s = broadcastShapes(c, xy) else {
                throw fail("select: shapes \(c), \(x) and \(y) do not broadcast")
            }
            return [s]

        case .reduce(_, let axes, let keep):
            let x = try need(0, "input")
            var set = Set<Int>()
            for a in axes {
                guard let n = normalizeAxis(a, rank: x.count) else { throw fail("reduce axis \(a) out of range for \(x)") }
                set.insert(n)
            }
            if axes.isEmpty { set = Set(0..<x.count) }
            var out: [Int] = []
            for (i, d) in x.enumerated() {
                if set.contains(i) { if keep { out.append(1) } } else { out.append(d) }
            }
            return [out]

        case .argExtreme(_, let axis, let keep, _):
            let x = try need(0, "input")
            guard let ax = normalizeAxis(axis, rank: x.count) else { throw fail("axis \(axis) out of range for \(x)") }
            guard x[ax] > 0 else { throw fail("\(node.op.name) over an empty axis \(axis) of \(x)") }
            var out = x
            if keep { out[ax] = 1 } else { out.remove(at: ax) }
            return [out]

        case .topK(let k, let axis, _):
            let x = try need(0, "input")
            guard let ax = normalizeAxis(axis, rank: x.count) else { throw fail("axis \(axis) out of range for \(x)") }
            guard k >= 0, k <= x[ax] else { throw fail("topk k \(k) must lie in 0...\(x[ax]) (axis \(axis) of \(x))") }
            var out = x
            out[ax] = k
            return [out, out]

        case .cumSum(let axis, _, _):
            let x = try need(0, "input")
            guard normalizeAxis(axis, rank: x.count) != nil else { throw fail("axis \(axis) out of range for \(x)") }
            return [x]

        case .gather(let axis):
            let x = try need(0, "data"), idx = try need(1, "indices")
            guard let ax = normalizeAxis(axis, rank: x.count) else { throw fail("gather axis \(axis) out of range for \(x)") }
            return [Array(x[..<ax]) + idx + Array(x[(ax + 1)...])]

        case .gatherElements(let axis):
            let x = try need(0, "data"), idx = try need(1, "indices")
            guard let ax = normalizeAxis(axis, rank: x.count) else { throw fail("gather_elements axis \(axis) out of range for \(x)") }
            // Every other coordinate of an output element is used as it is in the data.
            guard idx.count == x.count, (0..<x.count).allSatisfy({ $0 == ax || idx[$0] <= x[$0] }) else {
                throw fail("gather_elements indices \(idx) must have the data's rank and fit inside \(x) off axis \(axis)")
            }
            return [idx]

        case .gatherND(let b):
            let x = try need(0, "data"), idx = try need(1, "indices")
            guard let k = idx.last, b >= 0, b < idx.count, b < x.count, Array(x[..<b]) == Array(idx[..<b]),
                  k >= 1, k <= x.count - b else {
                throw fail("gather_nd: indices \(idx) do not index data \(x) with \(b) batch dimensions")
            }
            return [Array(idx.dropLast()) + Array(x[(b + k)...])]

        case .scatterND:
            let x = try need(0, "data"), idx = try need(1, "indices"), u = try need(2, "updates")
            guard let k = idx.last, k >= 1, k <= x.count else {
                throw fail("scatter_nd: indices \(idx) do not index data \(x)")
            }
            let expected = Array(idx.dropLast()) + Array(x[k...])
            guard u == expected else { throw fail("scatter_nd: updates shape \(u), expected \(expected)") }
            return [x]

        case .concat(let axis):
            let first = try need(0, "first")
            guard let ax = normalizeAxis(axis, rank: first.count) else { throw fail("concat axis \(axis) out of range for \(first)") }
            var total = 0
            for (i, s) in ins.enumerated() {
                guard let s else { throw fail("concat operand \(i) is missing") }
                guard s.count == first.count, (0..<s.count).allSatisfy({ $0 == ax || s[$0] == first[$0] }) else {
                    throw fail("concat on axis \(axis): operand \(i) has shape \(s), first has \(first)")
                }
                total += s[ax]
            }
            var out = first; out[ax] = total
            return [out]

        case .split(let axis, let sizes):
            let x = try need(0, "input")
            guard let ax = normalizeAxis(axis, rank: x.count) else { throw fail("split axis \(axis) out of range for \(x)") }
            guard sizes.reduce(0, +) == x[ax], sizes.allSatisfy({ $0 >= 0 }) else {
                throw fail("split sizes \(sizes) do not add up to dimension \(x[ax]) of \(x)")
            }
            return sizes.map { var s = x; s[ax] = $0; return s }

        case .slice(let starts, let ends, let axes, let steps):
            let x = try need(0, "input")
            guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
                throw fail("slice starts, ends, axes and steps differ in length")
            }
            var out = x
            for i in 0..<axes.count {
                guard let ax = normalizeAxis(axes[i], rank: x.count) else { throw fail("slice axis \(axes[i]) out of range for \(x)") }
                guard steps[i] != 0 else { throw fail("slice step 0") }
                out[ax] = sliceRange(start: starts[i], end: ends[i], step: steps[i], dim: x[ax]).count
            }
            return [out]

        case .pad(let pads, let mode, _):
            let x = try need(0, "input")
            guard pads.count == 2 * x.count else { throw fail("pad needs \(2 * x.count) values for \(x), got \(pads.count)") }
            var out = x
            for i in 0..<x.count {
                out[i] = x[i] + pads[i] + pads[i + x.count]
                guard out[i] >= 0 else { throw fail("pads \(pads) remove more than dimension \(i) of \(x)") }
                if mode == .reflect, pads[i] >= x[i] || pads[i + x.count] >= x[i], pads[i] > 0 || pads[i + x.count] > 0 {
                    throw fail("reflect padding \(pads) must be smaller than dimension \(i) of \(x)")
                }
            }
            return [out]

        case .upsample(_, let sh, let sw, let size):
            let x = try need(0, "input")
            try rank(x, 4, "input")
            if let size {
                guard size.count == 2, size.allSatisfy({ $0 > 0 }) else { throw fail("upsample size \(size) must be two positive values") }
                return [[x[0], x[1], size[0], size[1]]]
            }
            let oh = Int((Float(x[2]) * sh).rounded(.down)), ow = Int((Float(x[3]) * sw).rounded(.down))
            guard oh > 0, ow > 0 else { throw fail("upsample scales \(sh), \(sw) give an empty output") }
            return [[x[0], x[1], oh, ow]]

        case .reshape(let target):
            return [try resolveReshape(target, input: try need(0, "input"), node: name)]

        case .transpose(let perm):
            let x = try need(0, "input")
            guard perm.sorted() == Array(0..<x.count) else { throw fail("permutation \(perm) does not fit rank \(x.count)") }
            return [perm.map { x[$0] }]

        case .flatten(let axis):
            let x = try need(0, "input")
            guard let ax = axis == x.count ? x.count : normalizeAxis(axis, rank: x.count) else {
                throw fail("flatten axis \(axis) out of range for \(x)")
            }
            return [[x[..<ax].reduce(1, *), x[ax...].reduce(1, *)]]
        }
    }
}
