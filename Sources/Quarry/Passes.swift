// Graph passes run at compile time, in this order: dead-node removal past the requested outputs,
// batch-norm folding into the preceding conv / dense, and activation fusion into conv / dense /
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

    /// How many node operands read each value.
    func consumerCounts() -> [String: Int] {
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
        var producerIndex: [String: Int] = [:]
        for (i, n) in nodes.enumerated() { for o in n.outputs { producerIndex[o] = i } }

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

    /// Moves an activation into the epilogue of the conv, dense or binary node that feeds it alone.
    public func fusingActivations(keeping keep: Set<String>) -> Graph {
        let consumers = consumerCounts()
        var g = self
        var producerIndex: [String: Int] = [:]
        for (i, n) in nodes.enumerated() { for o in n.outputs { producerIndex[o] = i } }
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
