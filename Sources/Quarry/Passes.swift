// Graph passes run at compile time, in this order: dead-node removal past the requested outputs,
// constant folding, batch-norm folding into the preceding conv / dense, bias adds folded into
// dense, GELU recognised in its exported erf form, and activation fusion into conv / dense /
// binary epilogues. A pass never removes or renames a value the caller asked for.

import Foundation

extension Graph {
    /// The graph ready to run for `outputs`: pruned, constant subgraphs evaluated once (when an
    /// evaluator is given), batch norm folded, activations fused.
    public func optimized(for outputs: [String], evaluate: NodeEvaluator? = nil) throws -> Graph {
        var g = try pruned(to: outputs)
        let keep = Set(outputs)
        if let evaluate { g = try g.foldingConstants(keeping: keep, evaluate: evaluate) }
        g = g.foldingBatchNorm(keeping: keep)
        g = g.foldingBiasAdds(keeping: keep)
        g = g.recognisingGELU(keeping: keep)
        g = g.fusingActivations(keeping: keep)
        return g
    }

    /// Evaluates every node whose operands are all parameters with values (e.g. a model that
    /// stacks PyTorch's per-layer LSTM tensors with concat / reshape) and makes its outputs
    /// parameters, so kernels see them as constants and pack them once. A node whose output is
    /// requested, or would be far larger than its operands (a broadcast), is left to run.
    public func foldingConstants(keeping keep: Set<String>, evaluate: NodeEvaluator) throws -> Graph {
        var g = self
        var folded = Set<String>()
        for node in nodes {
            let operands = node.inputs.filter { !$0.isEmpty }
            guard !operands.isEmpty, !node.outputs.contains(where: keep.contains),
                  operands.allSatisfy({ g.parameters[$0]?.value != nil }) else { continue }
            let inputShapes = node.inputs.map { $0.isEmpty ? nil : g.parameters[$0]!.shape }
            let outputShapes = try Graph.inferNode(node, inputShapes)
            let inCount = operands.reduce(0) { $0 + g.parameters[$1]!.count }
            let outCount = outputShapes.reduce(0) { $0 + $1.reduce(1, *) }
            guard outCount <= max(2 * inCount, 1 << 16) else { continue }
            let values = try evaluate(node, node.inputs.map { $0.isEmpty ? nil : g.parameters[$0]!.value }, outputShapes)
            for (name, value) in zip(node.outputs, values) {
                g.parameters[name] = Parameter(shape: value.shape, initializer: .constant(0), value: value)
            }
            folded.insert(node.name)
        }
        if folded.isEmpty { return self }
        g.nodes.removeAll { folded.contains($0.name) }
        return g.droppingUnreadParameters()
    }

    /// Keeps only the nodes that `outputs` depend on, and the parameters those nodes read.
    /// Throws if an output names no value of the graph.
    public func pruned(to outputs: [String]) throws -> Graph {
        let known = valueNames
        let missing = outputs.filter { !known.contains($0) }
        if !missing.isEmpty {
            let sample = nodes.suffix(5).map(\.name).joined(separator: ", ")
            throw QuarryError.unknownValue(
                "\(missing.joined(separator: ", ")) (the graph's last nodes are: \(sample))")
        }
        var needed = Set(outputs)
        var kept: [Node] = []
        for node in nodes.reversed() where node.outputs.contains(where: needed.contains) {
            kept.append(node)
            needed.formUnion(node.inputs.filter { !$0.isEmpty })
        }
        var g = self
        g.nodes = kept.reversed()
        g.parameters = parameters.filter { needed.contains($0.key) }
        g.inputs = inputs.filter { needed.contains($0.name) }
        g.outputs = outputs
        return g
    }

    /// The index of the node that produces each value.
    public func producerIndices() -> [String: Int] {
        var index: [String: Int] = [:]
        for (i, n) in nodes.enumerated() { for o in n.outputs { index[o] = i } }
        return index
    }

    /// How many node operands read each value.
    public func consumerCounts() -> [String: Int] {
        var counts: [String: Int] = [:]
        for node in nodes { for i in node.inputs where !i.isEmpty { counts[i, default: 0] += 1 } }
        return counts
    }

    /// Folds inference batch norm into the conv or dense layer that feeds it alone:
    /// w' = w · s, b' = (b − mean) · s + beta with s = gamma / sqrt(var + eps), per output channel.
    /// Needs parameter values; a layer whose parameters are not loaded is left as it is.
    public func foldingBatchNorm(keeping keep: Set<String>) -> Graph {
        let consumers = consumerCounts()
        var g = self
        var removed = Set<String>()
        let producerIndex = producerIndices()

        for node in nodes {
            guard case .batchNorm(let eps) = node.op, node.inputs.count == 5,
                  let pi = producerIndex[node.inputs[0]] else { continue }
            let layer = g.nodes[pi]
            let x = node.inputs[0]
            guard consumers[x] == 1, !keep.contains(x), layer.outputs.count == 1 else { continue }
            let foldsConv: Bool
            switch layer.op {
            case .conv2d(let a) where a.activation == nil: foldsConv = true
            case .dense(nil): foldsConv = false
            default: continue
            }
            guard let w = parameters[layer.inputs[1]]?.value,
                  let gamma = parameters[node.inputs[1]]?.value, let beta = parameters[node.inputs[2]]?.value,
                  let mean = parameters[node.inputs[3]]?.value, let variance = parameters[node.inputs[4]]?.value
            else { continue }
            let channels = w.shape[0]
            // Dense feeding a BatchNorm1d over features only: [N, F] with F channels.
            if !foldsConv, !(w.shape.count == 2 && gamma.count == channels) { continue }
            guard gamma.count == channels else { continue }
            let oldBias = layer.inputs.count > 2 && !layer.inputs[2].isEmpty ? parameters[layer.inputs[2]]?.value : nil
            if layer.inputs.count > 2, !layer.inputs[2].isEmpty, oldBias == nil { continue }

            let perChannel = w.count / channels
            let newW = Tensor(uninitializedShape: w.shape)
            let newB = Tensor(uninitializedShape: [channels])
            for c in 0..<channels {
                let s = Double(gamma[flat: c]) / (Double(variance[flat: c]) + Double(eps)).squareRoot()
                for j in 0..<perChannel { newW[flat: c * perChannel + j] = Float(Double(w[flat: c * perChannel + j]) * s) }
                let b = Double(oldBias?[flat: c] ?? 0)
                newB[flat: c] = Float((b - Double(mean[flat: c])) * s + Double(beta[flat: c]))
            }
            let wName = "\(layer.name).weight(bn_folded)", bName = "\(layer.name).bias(bn_folded)"
            g.parameters[wName] = Parameter(shape: w.shape, initializer: .constant(0), value: newW)
            g.parameters[bName] = Parameter(shape: [channels], initializer: .constant(0), value: newB)
            var folded = layer
            folded.inputs = [layer.inputs[0], wName, bName]
            folded.outputs = node.outputs
            g.nodes[pi] = folded
            removed.insert(node.name)
        }
        g.nodes.removeAll { removed.contains($0.name) }
        return g.droppingUnreadParameters()
    }

    /// Folds `dense(x, W) + b`, with b a parameter of one value per output feature, into the dense
    /// layer's bias, as ONNX exports of PyTorch's Linear write it (MatMul, then Add): the add's
    /// pass over the output goes, and an activation after it can then fuse into the dense.
    public func foldingBiasAdds(keeping keep: Set<String>) -> Graph {
        let consumers = consumerCounts()
        var g = self
        let producerIndex = producerIndices()
        var removed = Set<String>()
        for node in nodes {
            guard case .binary(.add, nil) = node.op, node.inputs.count == 2 else { continue }
            for (y, b) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
                guard let pi = producerIndex[y], case .dense(nil) = g.nodes[pi].op,
                      g.nodes[pi].inputs.count == 2 || (g.nodes[pi].inputs.count == 3 && g.nodes[pi].inputs[2].isEmpty),
                      consumers[y] == 1, !keep.contains(y), !removed.contains(g.nodes[pi].name),
                      let w = g.parameters[g.nodes[pi].inputs[1]], w.shape.count == 2,
                      let bias = g.parameters[b], bias.shape.last == w.shape[0],
                      bias.shape.dropLast().allSatisfy({ $0 == 1 }) else { continue }
                var biasName = b
                if bias.shape.count != 1 {
                    guard let v = bias.value else { continue }
                    biasName = b + "(as dense bias)"
                    g.parameters[biasName] = Parameter(shape: [w.shape[0]], initializer: .constant(0),
                                                       value: try? v.reshaped([w.shape[0]]))
                    if g.parameters[biasName]?.value == nil { g.parameters[biasName] = nil; continue }
                }
                var dense = g.nodes[pi]
                dense.inputs = [dense.inputs[0], dense.inputs[1], biasName]
                dense.outputs = node.outputs
                g.nodes[pi] = dense
                removed.insert(node.name)
                break
            }
        }
        if removed.isEmpty { return self }
        g.nodes.removeAll { removed.contains($0.name) }
        return g.droppingUnreadParameters()
    }

    /// Replaces GELU written out in elementary ops, as PyTorch exports `F.gelu` to ONNX before
    /// opset 20 — x · 0.5 · (1 + erf(x / √2)), five nodes — by one gelu activation, which the
    /// activation fusion then moves into the epilogue of the dense layer before it (BERT's
    /// intermediate layers: five passes over a [batch, 128, 3072] tensor become none).
    public func recognisingGELU(keeping keep: Set<String>) -> Graph {
        let consumers = consumerCounts()
        var byInput: [String: [Int]] = [:]
        for (i, n) in nodes.enumerated() { for x in n.inputs where !x.isEmpty { byInput[x, default: []].append(i) } }
        func scalar(_ name: String) -> Float? {
            guard let v = parameters[name]?.value, v.count == 1 else { return nil }
            return v[flat: 0]
        }
        func near(_ v: Float?, _ target: Float) -> Bool { v.map { abs($0 - target) <= 1e-5 * abs(target) } ?? false }
        /// The single node reading `value`, when the value is an intermediate that can vanish.
        func soleReader(_ value: String) -> Int? {
            guard consumers[value] == 1, !keep.contains(value), let r = byInput[value]?.first else { return nil }
            return r
        }
        /// The operand of a two-operand node other than `value`.
        func other(_ node: Node, _ value: String) -> String? {
            guard node.inputs.count == 2 else { return nil }
            return node.inputs[0] == value ? node.inputs[1] : node.inputs[1] == value ? node.inputs[0] : nil
        }
        var g = self
        var removed = Set<String>()
        var replaced: [Int: Node] = [:]
        for (i, div) in nodes.enumerated() {
            // x / √2 (or x · 1/√2) → erf → + 1 → then · x and · 0.5 in either order.
            guard div.inputs.count == 2, div.outputs.count == 1 else { continue }
            let x = div.inputs[0]
            switch div.op {
            case .binary(.div, nil) where near(scalar(div.inputs[1]), 1.41421356): break
            case .binary(.mul, nil) where near(scalar(div.inputs[1]), 0.70710678): break
            default: continue
            }
            guard let ei = soleReader(div.outputs[0]), case .activation(.erf) = nodes[ei].op,
                  let ai = soleReader(nodes[ei].outputs[0]), case .binary(.add, nil) = nodes[ai].op,
                  near(other(nodes[ai], nodes[ei].outputs[0]).flatMap(scalar), 1),
                  let mi = soleReader(nodes[ai].outputs[0]), case .binary(.mul, nil) = nodes[mi].op,
                  let mOther = other(nodes[mi], nodes[ai].outputs[0]) else { continue }
            let last: Int
            var half: Int? = nil
            if mOther == x {
                // (x · (1 + erf)) · 0.5
                guard let hi = soleReader(nodes[mi].outputs[0]), case .binary(.mul, nil) = nodes[hi].op,
                      near(other(nodes[hi], nodes[mi].outputs[0]).flatMap(scalar), 0.5) else { continue }
                last = hi
            } else {
                // (x · 0.5) · (1 + erf)
                guard let hi = nodes.firstIndex(where: { $0.outputs == [mOther] }),
                      case .binary(.mul, nil) = nodes[hi].op, soleReader(mOther) == mi,
                      other(nodes[hi], x).flatMap(scalar).map({ near($0, 0.5) }) == true else { continue }
                half = hi
                last = mi
            }
            let chain = [i, ei, ai, mi, last] + (half.map { [$0] } ?? [])
            guard chain.allSatisfy({ !removed.contains(nodes[$0].name) && replaced[$0] == nil }) else { continue }
            for j in chain where j != last { removed.insert(nodes[j].name) }
            replaced[last] = Node(name: nodes[last].name, op: .activation(.gelu(approximate: false)), inputs: [x],
                                  outputs: nodes[last].outputs)
        }
        if removed.isEmpty && replaced.isEmpty { return self }
        for (j, node) in replaced { g.nodes[j] = node }
        g.nodes.removeAll { removed.contains($0.name) }
        return g.droppingUnreadParameters()
    }

    /// Moves an activation into the epilogue of the conv, dense or binary node that feeds it alone.
    public func fusingActivations(keeping keep: Set<String>) -> Graph {
        let consumers = consumerCounts()
        var g = self
        let producerIndex = producerIndices()
        var removed = Set<String>()
        for node in nodes {
            guard case .activation(let act) = node.op, act.isFusable,
                  let pi = producerIndex[node.inputs[0]] else { continue }
            let x = node.inputs[0]
            guard consumers[x] == 1, !keep.contains(x), g.nodes[pi].outputs.count == 1 else { continue }
            var producer = g.nodes[pi]
            switch producer.op {
            case .conv2d(var a) where a.activation == nil:
                a.activation = act; producer.op = .conv2d(a)
            case .convTranspose2d(var a) where a.activation == nil:
                a.activation = act; producer.op = .convTranspose2d(a)
            case .dense(nil):
                producer.op = .dense(activation: act)
            case .binary(let b, nil):
                producer.op = .binary(b, activation: act)
            default: continue
            }
            producer.outputs = node.outputs
            g.nodes[pi] = producer
            removed.insert(node.name)
        }
        g.nodes.removeAll { removed.contains($0.name) }
        return g
    }

    /// Moves a residual add into the convolution that produces one of its operands: `add(conv(x),
    /// r)` (with the add's activation) becomes `conv(x, residual: r)` then that activation, so the
    /// sum is formed in the convolution's epilogue instead of in a pass over both tensors. Needs
    /// concrete shapes: only an add of two tensors of the same shape fuses (no broadcast). The
    /// convolution must have no activation of its own, and its output no other reader and no
    /// tap. The fused node takes the add's place in the order (the residual may be computed
    /// after the convolution) and its output name.
    public func fusingResidualAdds(keeping keep: Set<String>, shapes: [String: [Int]]) -> Graph {
        let consumers = consumerCounts()
        let producerIndex = producerIndices()
        var g = self
        var moved = Set<Int>()
        for (ai, node) in nodes.enumerated() {
            guard case .binary(.add, let act) = node.op, node.inputs.count == 2,
                  let shape = shapes[node.inputs[0]], shapes[node.inputs[1]] == shape else { continue }
            for side in 0..<2 {
                let x = node.inputs[side], residual = node.inputs[1 - side]
                guard let pi = producerIndex[x], !moved.contains(pi), consumers[x] == 1,
                      !keep.contains(x), parameters[residual] == nil, x != residual,
                      case .conv2d(var a) = g.nodes[pi].op, a.activation == nil,
                      g.nodes[pi].outputs.count == 1, g.nodes[pi].inputs.count <= 3 else { continue }
                var conv = g.nodes[pi]
                a.activation = act
                conv.op = .conv2d(a)
                while conv.inputs.count < 3 { conv.inputs.append("") }
                conv.inputs = Array(conv.inputs.prefix(3)) + [residual]
                conv.outputs = node.outputs
                g.nodes[ai] = conv
                moved.insert(pi)
                break
            }
        }
        g.nodes = g.nodes.enumerated().filter { !moved.contains($0.offset) }.map(\.element)
        return g
    }

    /// A transpose at the end of a chain of transposes and reshapes that only add or drop
    /// size-1 dimensions, whose elements end in their source's order, becomes a reshape of the
    /// source: an alias, no copy; the chain's copies that nothing else reads are dropped. A
    /// batch-first LSTM exported by PyTorch is transposed to ONNX's time-major layout, back to
    /// batch-major for the kernel, and the same again on the way out: four copies of the
    /// sequence that cancel (2% of the 256->512 LSTM at batch 8). Needs concrete shapes: which
    /// dimensions are 1 decides.
    public func foldingTransposes(keeping keep: Set<String>, shapes: [String: [Int]]) -> Graph {
        // Per value made by such a chain: its source, and for each of its dimensions above 1,
        // in order, which of the source's dimensions above 1 it is.
        var chain: [String: (source: String, order: [Int])] = [:]
        func aboveOne(_ shape: [Int]) -> [Int] { shape.indices.filter { shape[$0] != 1 } }
        var g = self
        var folded = false
        for (i, node) in nodes.enumerated() {
            guard node.outputs.count == 1, let x = node.inputs.first, !x.isEmpty,
                  let inShape = shapes[x], let outShape = shapes[node.outputs[0]] else { continue }
            let from = chain[x] ?? (x, Array(aboveOne(inShape).indices))
            switch node.op {
            case .transpose(let perm):
                // Output dimension d is input dimension perm[d].
                var rank: [Int: Int] = [:]
                for (k, d) in aboveOne(inShape).enumerated() { rank[d] = k }
                let order = aboveOne(outShape).map { from.order[rank[perm[$0]]!] }
                chain[node.outputs[0]] = (from.source, order)
                if order == Array(order.indices) {
                    g.nodes[i] = Node(name: node.name, op: .reshape(shape: outShape), inputs: [from.source], outputs: node.outputs)
                    folded = true
                }
            case .reshape, .flatten, .identity:
                if inShape.filter({ $0 != 1 }) == outShape.filter({ $0 != 1 }) { chain[node.outputs[0]] = from }
            default:
                continue
            }
        }
        guard folded else { return self }
        // Nodes whose outputs nothing reads any more (and no one asked for) go.
        var read = keep
        var kept: [Node] = []
        for node in g.nodes.reversed() where node.outputs.contains(where: read.contains) || node.outputs.isEmpty {
            kept.append(node)
            read.formUnion(node.inputs.filter { !$0.isEmpty })
        }
        g.nodes = kept.reversed()
        return g
    }

    func droppingUnreadParameters() -> Graph {
        var read = Set<String>()
        for n in nodes { read.formUnion(n.inputs) }
        var g = self
        g.parameters = parameters.filter { read.contains($0.key) || outputs.contains($0.key) }
        return g
    }
}

/// Runs one node on concrete operand values (nil for an absent optional operand) and returns its
/// outputs, whose shapes are given. Backends pass the CPU kernels.
public typealias NodeEvaluator = (_ node: Node, _ inputs: [Tensor?], _ outputShapes: [[Int]]) throws -> [Tensor]

extension Activation {
    /// Activations that an epilogue applies (all elementwise ones with cheap, exact forms).
    public var isFusable: Bool {
        switch self {
        case .relu, .clip, .leakyRelu, .sigmoid, .hardSigmoid, .tanh, .silu, .mish, .gelu, .hardSwish: return true
        default: return false
        }
    }
}
