// Data movement (Kernels/layout.cl): concat, split, slice, pad, transpose and upsample.
// Reshape, flatten and identity normally cost nothing: the memory plan aliases their buffers.

import Quarry

extension Lowering {
    /// [outer, axis length, inner] around `axis` of `shape`.
    private func blocks(_ shape: [Int], _ axis: Int) -> (Int, Int, Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    func lowerConcat(axis: Int) throws {
        let out = outputShape
        guard let ax = normalizeAxis(axis, rank: out.count) else { throw unsupported("axis \(axis)") }
        let (outer, total, inner) = blocks(out, ax)
        var at = 0
        for i in 0..<inputShapes.count {
            let len = shape(i)[ax]
            if len > 0 && inner > 0 && outer > 0 {
                try launch("layout", "copy_block", args: [
                    .buffer(try input(i)), .buffer(output), .int(outer), .int(len), .long(inner),
                    .int(len), .int(0), .int(total), .int(at),
                ], global: [inner, len, outer])
            }
            at += len
        }
    }

    func lowerSplit(axis: Int) throws {
        let x = shape(0)
        guard let ax = normalizeAxis(axis, rank: x.count) else { throw unsupported("axis \(axis)") }
        let (outer, total, inner) = blocks(x, ax)
        var at = 0
        for (i, s) in outputShapes.enumerated() {
            let len = s[ax]
            if len > 0 && inner > 0 && outer > 0 {
                try launch("layout", "copy_block", args: [
                    .buffer(try input(0)), .buffer(outputs[i]), .int(outer), .int(len), .long(inner),
                    .int(total), .int(at), .int(len), .int(0),
                ], global: [inner, len, outer])
            }
            at += len
        }
    }

    /// out[i] = x[start + sum index_d * stride_d]: the shared form of slice and transpose.
    private func gather(start: Int, dims: [Int], strides: [Int]) throws {
        guard dims.count <= 6 else { throw unsupported("rank \(dims.count) exceeds the kernels' 6") }
        let n = outputCount
        if n == 0 { return }
        let (d, s) = padTo6(dims, strides)
        var args: [KernelArg] = [.buffer(try input(0).advanced(by: start)), .buffer(output), .long(n)]
        args += d.dropFirst().map { .int($0) } + s.map { .long($0) }
        try launch("layout", "gather", args: args, global: [n])
    }

    func lowerSlice(starts: [Int], ends: [Int], axes: [Int], steps: [Int]) throws {
        let x = shape(0)
        let st = contiguousStrides(x)
        var start = 0
        var strides = st
        for (i, axis) in axes.enumerated() {
            guard let ax = normalizeAxis(axis, rank: x.count) else { throw unsupported("axis \(axis)") }
            let r = sliceRange(start: starts[i], end: ends[i], step: steps[i], dim: x[ax])
            if r.count > 0 { start += r.start * st[ax] }
            strides[ax] = st[ax] * steps[i]
        }
        try gather(start: start, dims: outputShape, strides: strides)
    }

    func lowerTranspose(_ perm: [Int]) throws {
        let st = contiguousStrides(shape(0))
        try gather(start: 0, dims: outputShape, strides: perm.map { st[$0] })
    }

    func lowerPad(pads: [Int], mode: PadMode, value: Float) throws {
        let x = shape(0), out = outputShape
        guard x.count <= 6 else { throw unsupported("rank \(x.count) exceeds the kernels' 6") }
        let n = outputCount
        if n == 0 { return }
        let extra = 6 - x.count
        let d = Array(repeating: 1, count: extra) + out
        let e = Array(repeating: 1, count: extra) + x
        let p = Array(repeating: 0, count: extra) + Array(pads.prefix(x.count))
        let code = mode == .constant ? 0 : mode == .reflect ? 1 : 2
        var args: [KernelArg] = [.buffer(try input(0)), .buffer(output), .long(n)]
        args += d.dropFirst().map { .int($0) } + e.map { .int($0) } + p.map { .int($0) } + [.float(value)]
        try launch("layout", "pad", options: ["-DMODE=\(code)"], args: args, global: [n])
    }

    /// Bilinear (half pixel) steps through the source by 1 / scale when scales are given and by
    /// in / out when a size is, as PyTorch and the CPU backend do (the two differ when in * scale
    /// is not whole: 9 rows at scale 1.5 give 13, read at steps of 0.667, not 0.692).
    func lowerUpsample(_ mode: UpsampleMode, scaleH: Float, scaleW: Float, size: [Int]?) throws {
        let x = shape(0), out = outputShape
        let code = mode == .nearest ? 0 : mode == .bilinear ? 1 : 2
        let ratioH = size == nil ? 1 / Double(scaleH) : Double(x[2]) / Double(out[2])
        let ratioW = size == nil ? 1 / Double(scaleW) : Double(x[3]) / Double(out[3])
        try launch("layout", "upsample2d", options: ["-DMODE=\(code)"], args: [
            .buffer(try input(0)), .buffer(output), .int(x[0] * x[1]), .int(x[2]), .int(x[3]), .int(out[2]), .int(out[3]),
            .float(Float(ratioH)), .float(Float(ratioW)),
        ], global: [out[2] * out[3], x[0] * x[1]])
    }
}
