// Elementwise maps, broadcasting binaries, reductions and embedding (Kernels/elementwise.cl).

import Quarry

/// Row-major strides of a shape.
func contiguousStrides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
    return s
}

/// Pads dimensions (with 1) and strides (with 0) on the left to rank 6.
func padTo6(_ dims: [Int], _ strides: [Int]) -> ([Int], [Int]) {
    let extra = 6 - dims.count
    return (Array(repeating: 1, count: extra) + dims, Array(repeating: 0, count: extra) + strides)
}

/// Element strides of an operand of shape `s` read at the positions of `out` (numpy
/// broadcasting: leading dimensions added, 0 along a broadcast dimension).
func broadcastStrides(_ s: [Int], _ out: [Int]) -> [Int] {
    let padded = Array(repeating: 1, count: out.count - s.count) + s
    let st = contiguousStrides(padded)
    return zip(padded, st).map { $0.0 == 1 ? 0 : $0.1 }
}

extension Lowering {
    func lowerActivation(_ act: Activation) throws {
        let (code, a, b) = activationCode(act)
        try launch("elementwise", "unary", args: [
            .buffer(try input(0)), .buffer(output), .long(outputCount), .int(code), .float(a), .float(b),
        ], global: [outputCount])
    }

    func lowerBinary(_ op: BinaryOp, _ act: Activation?) throws {
        let a = shape(0), b = shape(1), out = outputShape
        guard out.count <= 6 else { throw unsupported("rank \(out.count) exceeds the kernels' 6") }
        let code: Int
        switch op {
        case .add: code = 0
        case .sub: code = 1
        case .mul: code = 2
        case .div: code = 3
        case .pow: code = 4
        case .max: code = 5
        case .min: code = 6
        case .equal: code = 7
        case .less: code = 8
        case .lessOrEqual: code = 9
        case .greater: code = 10
        case .greaterOrEqual: code = 11
        case .and: code = 12
        case .or: code = 13
        case .xor: code = 14
        case .mod: code = 15
        case .fmod: code = 16
        }
        let same = a == out && b == out
        let (dims, sa) = padTo6(out, broadcastStrides(a, out))
        let (_, sb) = padTo6(out, broadcastStrides(b, out))
        var args: [KernelArg] = [.buffer(try input(0)), .buffer(try input(1)), .buffer(output), .long(outputCount)]
        args += dims.dropFirst().map { .int($0) }
        args += sa.map { .long($0) } + sb.map { .long($0) }
        try launch("elementwise", "binary",
                   options: activationOptions(act) + ["-DOP=\(code)", "-DSAME_SHAPE=\(same ? 1 : 0)"],
                   args: args, global: [outputCount])
    }

    func lowerSelect() throws {
        let out = outputShape
        guard out.count <= 6 else { throw unsupported("rank \(out.count) exceeds the kernels' 6") }
        let (dims, sc) = padTo6(out, broadcastStrides(shape(0), out))
        let (_, sx) = padTo6(out, broadcastStrides(shape(1), out))
        let (_, sz) = padTo6(out, broadcastStrides(shape(2), out))
        var args: [KernelArg] = [.buffer(try input(0)), .buffer(try input(1)), .buffer(try input(2)), .buffer(output),
                                 .long(outputCount)]
        args += dims.dropFirst().map { .int($0) }
        args += sc.map { .long($0) } + sx.map { .long($0) } + sz.map { .long($0) }
        try launch("elementwise", "select3", args: args, global: [outputCount])
    }

    func lowerReduce(_ op: ReduceOp, axes: [Int]) throws {
        let x = shape(0)
        guard x.count <= 6 else { throw unsupported("rank \(x.count) exceeds the kernels' 6") }
        var set = Set(axes.compactMap { normalizeAxis($0, rank: x.count) })
        if axes.isEmpty { set = Set(0..<x.count) }
        let st = contiguousStrides(x)
        let kept = (0..<x.count).filter { !set.contains($0) }, reduced = (0..<x.count).filter { set.contains($0) }
        let (kd, ks) = padTo6(kept.map { x[$0] }, kept.map { st[$0] })
        let (rd, rs) = padTo6(reduced.map { x[$0] }, reduced.map { st[$0] })
        let count = reduced.map { x[$0] }.reduce(1, *)
        let n = max(outputCount, 1)
        var args: [KernelArg] = [.buffer(try input(0)), .buffer(output), .long(n)]
        args += kd.dropFirst().map { .int($0) } + ks.map { .long($0) }
        args += rd.dropFirst().map { .int($0) } + [.long(count)] + rs.map { .long($0) }
        let code = op == .mean ? 0 : op == .sum ? 1 : 2
        try launch("elementwise", "reduce", options: ["-DRED=\(code)"], args: args, global: [n])
    }

    func lowerEmbedding() throws {
        let ids = shape(0), table = shape(1)
        let n = ids.reduce(1, *)
        try launch("elementwise", "embedding", args: [
            .buffer(try input(0)), .buffer(try input(1)), .buffer(output), .int(n), .int(table[0]), .int(table[1]),
        ], global: [table[1], n])
    }
}
