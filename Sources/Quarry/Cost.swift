// The work a node does, from its op and its inferred shapes: multiply-accumulates and bytes moved.
// The zoo reports MACs per item with it and the benchmark's roofline divides one by the other.
//
// Conventions (those of torchvision's and fvcore's published "GFLOPS", which are MACs): only ops
// built on multiply-accumulates count — convolutions, dense / matmul, attention and recurrent
// layers. Elementwise ops, normalisation and pooling count 0 MACs (they are bandwidth, not
// arithmetic, and show up in `bytesMoved`). Causal attention is counted as full attention, as
// the reference counters do.

/// Multiply-accumulates `node` performs for the given shapes (of every value it touches).
/// A node whose shapes are missing counts 0.
public func macs(of node: Node, shapes: [String: [Int]]) -> Int {
    func shape(_ i: Int) -> [Int]? {
        i < node.inputs.count && !node.inputs[i].isEmpty ? shapes[node.inputs[i]] : nil
    }
    func product(_ s: [Int]) -> Int { s.reduce(1, *) }
    guard let out = node.outputs.first.flatMap({ shapes[$0] }) else { return 0 }

    switch node.op {
    case .conv2d(let a):
        guard let w = shape(1), w.count == 4 else { return 0 }
        // Every output element is a dot product over (C / groups) * kh * kw inputs.
        return product(out) * w[1] * a.kernelH * a.kernelW
    case .convTranspose2d(let a):
        guard let x = shape(0), let w = shape(1), w.count == 4 else { return 0 }
        // Every input element scatters into (O / groups) * kh * kw outputs.
        return product(x) * w[1] * a.kernelH * a.kernelW
    case .dense:
        guard let w = shape(1), w.count == 2 else { return 0 }
        return product(out) * w[1]
    case .matmul(let ta, _):
        guard let a = shape(0), a.count >= 2 else { return 0 }
        let k = ta ? a[a.count - 2] : a[a.count - 1]
        return product(out) * k
    case .attention:
        guard let q = shape(0), let k = shape(1), let v = shape(2), q.count == 3, k.count == 3, v.count == 3
        else { return 0 }
        // Q·Kᵀ over the embedding, then the weights times V.
        return q[0] * q[1] * k[1] * q[2] + q[0] * q[1] * k[1] * v[2]
    case .expandDepthwiseProject(let a):
        // The expansion over the input's pixels, the depthwise window over the output's, the projection.
        guard let x = shape(0), x.count == 4, out.count == 4 else { return 0 }
        let e = shape(1)
        let wide = e?[0] ?? x[1], expandedOut = out[0] * wide * out[2] * out[3]
        let expansion = e.map { x[0] * x[2] * x[3] * $0[0] * $0[1] } ?? 0
        return expansion + expandedOut * a.depthwise.kernelH * a.depthwise.kernelW + product(out) * wide
    case .lstm(let a), .gru(let a):
        guard let x = shape(0), x.count == 3 else { return 0 }
        let gates: Int
        if case .lstm = node.op { gates = 4 } else { gates = 3 }
        let h = a.hiddenSize
        return x[0] * x[1] * a.direction.count * gates * h * (x[2] + h)
    default:
        return 0
    }
}

/// Bytes `node` reads and writes once each, float32: every operand (parameters included) and
/// every output. Layout-only ops (reshape, flatten, identity) move nothing: the executor aliases.
public func bytesMoved(of node: Node, shapes: [String: [Int]]) -> Int {
    if node.op.isLayoutOnly { return 0 }
    var elements = 0
    for name in node.inputs where !name.isEmpty { elements += shapes[name]?.reduce(1, *) ?? 0 }
    for name in node.outputs { elements += shapes[name]?.reduce(1, *) ?? 0 }
    return elements * MemoryLayout<Float>.size
}

extension Graph {
    /// Total multiply-accumulates of one run with the given input shapes.
    public func totalMACs(inputShapes: [String: [Int]]) throws -> Int {
        let shapes = try inferShapes(inputShapes: inputShapes)
        return nodes.reduce(0) { $0 + macs(of: $1, shapes: shapes) }
    }

    /// Total bytes moved by one run with the given input shapes (see `bytesMoved(of:shapes:)`).
    public func totalBytesMoved(inputShapes: [String: [Int]]) throws -> Int {
        let shapes = try inferShapes(inputShapes: inputShapes)
        return nodes.reduce(0) { $0 + bytesMoved(of: $1, shapes: shapes) }
    }

    /// Input shapes with every symbolic dimension bound to `symbols[name]`, or to `defaultValue`
    /// when the symbol is not given (batch 1 for a per-item cost).
    public func concreteInputShapes(symbols: [String: Int] = [:], defaultValue: Int = 1) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for input in inputs {
            out[input.name] = input.shape.map {
                switch $0 {
                case .fixed(let n): return n
                case .symbol(let s): return symbols[s] ?? defaultValue
                }
            }
        }
        return out
    }
}
