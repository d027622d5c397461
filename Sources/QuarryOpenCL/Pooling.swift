// Pooling (Kernels/pool.cl): windowed max / average, and global pooling.

import Quarry

extension Lowering {
    func lowerPool(_ a: Pool2DAttributes, isMax: Bool) throws {
        let x = shape(0), out = outputShape
        try launch("pool", "pool2d", options: ["-DIS_MAX=\(isMax ? 1 : 0)"], args: [
            .buffer(try input(0)), .buffer(output),
            .int(x[1]), .int(x[2]), .int(x[3]), .int(out[2]), .int(out[3]),
            .int(a.kernelH), .int(a.kernelW), .int(a.strideH), .int(a.strideW),
            .int(a.padding.top), .int(a.padding.left), .int(a.padding.bottom), .int(a.padding.right),
            .int(a.dilationH), .int(a.dilationW), .int(a.countIncludePad ? 1 : 0),
        ], global: [out[2] * out[3], x[1], x[0]])
    }

    func lowerGlobalPool(isMax: Bool) throws {
        let x = shape(0)
        let nc = x[0] * x[1], p = x.dropFirst(2).reduce(1, *)
        try launch("pool", "global_pool", options: ["-DIS_MAX=\(isMax ? 1 : 0)"], args: [
            .buffer(try input(0)), .buffer(output), .int(nc), .int(p),
        ], global: [nc])
    }
}
