// Ops along one axis (argmax / argmin, topk, cumsum) and index ops (gather on any axis,
// gather_elements, gather_nd, scatter_nd): Kernels/indexing.cl.

import Quarry

extension Lowering {
    /// The input as [outer, len, inner] around `axis`.
    private func aroundAxis(_ axis: Int) throws -> (rows: Int, len: Int, inner: Int) {
        let x = shape(0)
        guard let ax = normalizeAxis(axis, rank: x.count) else { throw unsupported("axis \(axis) out of range for \(x)") }
        let inner = x[(ax + 1)...].reduce(1, *)
        return (x[..<ax].reduce(1, *) * inner, x[ax], inner)
    }

    func lowerArgExtreme(largest: Bool, axis: Int, selectLast: Bool) throws {
        let (rows, len, inner) = try aroundAxis(axis)
        try launch("indexing", "arg_extreme", args: [
            .buffer(try input(0)), .buffer(output), .long(rows), .int(len), .long(inner),
            .int(largest ? 1 : 0), .int(selectLast ? 1 : 0),
        ], global: [rows])
    }

    func lowerTopK(k: Int, axis: Int, largest: Bool) throws {
        let (rows, len, inner) = try aroundAxis(axis)
        try launch("indexing", "topk", args: [
            .buffer(try input(0)), .buffer(outputs[0]), .buffer(outputs[1]), .long(rows), .int(len), .long(inner),
            .int(k), .int(largest ? 1 : 0),
        ], global: [rows])
    }

    func lowerCumSum(axis: Int, exclusive: Bool, reverse: Bool) throws {
        let (rows, len, inner) = try aroundAxis(axis)
        try launch("indexing", "cumsum", args: [
            .buffer(try input(0)), .buffer(output), .long(rows), .int(len), .long(inner),
            .int(exclusive ? 1 : 0), .int(reverse ? 1 : 0),
        ], global: [rows])
    }

    func lowerGather(axis: Int) throws {
        let x = shape(0)
        guard let ax = normalizeAxis(axis, rank: x.count) else { throw unsupported("axis \(axis) out of range for \(x)") }
        let inner = x[(ax + 1)...].reduce(1, *), m = shape(1).reduce(1, *)
        try launch("indexing", "gather_axis", args: [
            .buffer(try input(0)), .buffer(try input(1)), .buffer(output), .long(outputCount), .long(x[ax]),
            .long(m), .long(inner),
        ], global: [outputCount])
    }

    func lowerGatherElements(axis: Int) throws {
        let x = shape(0), idx = shape(1)
        guard idx.count <= 6 else { throw unsupported("rank \(idx.count) exceeds the kernel's 6") }
        guard let ax = normalizeAxis(axis, rank: x.count) else { throw unsupported("axis \(axis) out of range for \(x)") }
        var strides = contiguousStrides(x)
        let axisStride = strides[ax]
        // The axis's coordinate comes from the index, not from the output position.
        strides[ax] = 0
        let (dims, st) = padTo6(idx, strides)
        var args: [KernelArg] = [.buffer(try input(0)), .buffer(try input(1)), .buffer(output), .long(outputCount)]
        args += dims.dropFirst().map { .int($0) } + st.map { .long($0) }
        args += [.long(x[ax]), .long(axisStride)]
        try launch("indexing", "gather_elements", args: args, global: [outputCount])
    }

    /// The dimensions an index tuple addresses, as a small fixed buffer (keyed by its values, since
    /// plans for other input shapes share the graph's weight store).
    private func tupleDims(_ dims: [Int]) throws -> BufferRef {
        try packed("tuple dims \(dims)") { try Tensor(shape: [dims.count], scalars: dims.map { Float($0) }) }
    }

    func lowerGatherND(batchDims b: Int) throws {
        let x = shape(0), idx = shape(1)
        let k = idx.last ?? 0
        let dims = Array(x[b..<(b + k)])
        let s = x[(b + k)...].reduce(1, *), t = idx[b..<(idx.count - 1)].reduce(1, *)
        try launch("indexing", "gather_nd", args: [
            .buffer(try input(0)), .buffer(try input(1)), .buffer(try tupleDims(dims)), .buffer(output),
            .long(outputCount), .int(k), .long(s), .long(t), .long(x[b...].reduce(1, *)),
        ], global: [outputCount])
    }

    func lowerScatterND(_ reduction: ScatterReduction) throws {
        let x = shape(0), idx = shape(1)
        let k = idx.last ?? 0
        let s = x[k...].reduce(1, *), t = idx.dropLast().reduce(1, *)
        let code: Int
        switch reduction {
        case .none: code = 0
        case .add: code = 1
        case .mul: code = 2
        case .max: code = 3
        case .min: code = 4
        }
        // The data copied first; the in-order queue runs the scatter after it.
        try launch("layout", "copy", args: [.buffer(try input(0)), .buffer(output), .long(outputCount)], global: [outputCount])
        try launch("indexing", "scatter_nd", args: [
            .buffer(try input(1)), .buffer(try tupleDims(Array(x[..<k]))), .buffer(try input(2)), .buffer(output),
            .long(s), .long(t), .int(k), .int(code),
        ], global: [s])
    }
}
