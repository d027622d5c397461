// Normalisations and softmax (Kernels/norm.cl).

import Quarry

extension Lowering {
    func lowerBatchNorm(_ eps: Float) throws {
        let x = shape(0)
        let inner = x.dropFirst(2).reduce(1, *)
        try launch("norm", "batch_norm", args: [
            .buffer(try input(0)), .buffer(try input(1)), .buffer(try input(2)), .buffer(try input(3)),
            .buffer(try input(4)), .buffer(output), .long(outputCount), .int(x[1]), .int(max(inner, 1)), .float(eps),
        ], global: [outputCount])
    }

    func lowerLayerNorm(_ eps: Float, dims: Int) throws {
        let x = shape(0)
        let d = x.suffix(dims).reduce(1, *)
        let rows = outputCount / max(d, 1)
        try launch("norm", "layer_norm", args: [
            .buffer(try input(0)), .buffer(has(1) ? try input(1) : try dummy()), .buffer(has(2) ? try input(2) : try dummy()),
            .buffer(output), .int(rows), .int(d), .float(eps), .int(has(1) ? 1 : 0), .int(has(2) ? 1 : 0),
        ], global: [rows])
    }

    func lowerInstanceNorm(_ eps: Float) throws {
        let x = shape(0)
        let nc = x[0] * x[1], p = x.dropFirst(2).reduce(1, *)
        try launch("norm", "instance_norm", args: [
            .buffer(try input(0)), .buffer(has(1) ? try input(1) : try dummy()), .buffer(has(2) ? try input(2) : try dummy()),
            .buffer(output), .int(nc), .int(x[1]), .int(p), .float(eps), .int(has(1) ? 1 : 0), .int(has(2) ? 1 : 0),
        ], global: [nc])
    }

    func lowerSoftmax(axis: Int, log: Bool) throws {
        let x = shape(0)
        guard let ax = normalizeAxis(axis, rank: x.count) else { throw QuarryError.shapeMismatch(node: name, message: "axis \(axis) out of range for \(x)") }
        let outer = x[..<ax].reduce(1, *), len = x[ax], inner = x[(ax + 1)...].reduce(1, *)
        try launch("norm", "softmax", options: ["-DLOG=\(log ? 1 : 0)"], args: [
            .buffer(try input(0)), .buffer(output), .int(outer), .int(len), .int(inner),
        ], global: [inner, outer])
    }
}
