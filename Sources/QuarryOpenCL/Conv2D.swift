// Convolutions (Kernels/conv2d.cl, depthwise.cl, gemm.cl): on devices with the tiled GEMM (GPUs),
// an implicit GEMM that gathers the column matrix from the input inside the GEMM's tile loads;
// elsewhere im2col into scratch for the general case, a 1x1 path that skips im2col,
// grouped convolution as one batched GEMM (batch index = group), depthwise as its own kernel,
// and transposed convolution as a direct gather kernel.

import Quarry

extension Lowering {
    func lowerConv2D(_ a: Conv2DAttributes) throws {
        let x = shape(0), w = shape(1), out = outputShape
        let n = x[0], c = x[1], h = x[2], wd = x[3], o = w[0], oh = out[2], ow = out[3]
        let g = a.groups
        let bias: BufferRef? = has(2) ? try input(2) : nil
        // Operand 3, a skip connection the plan fused in, is added before the activation.
        let residual: BufferRef? = has(3) ? try input(3) : nil
        let variant = KernelChoice.convolution(
            ConvolutionQuery(a, input: x, weight: w, output: out, constantWeights: constants[1] != nil, residual: residual != nil),
            device: DeviceCapabilities(kind: .opencl, threads: device.info.computeUnits, dedicatedLocalMemory: device.hasDedicatedLocalMemory,
                                       maxWorkGroupSize: device.maxWorkGroupSize),
            gemm: gemmSchedule.variant)
        if variant.name == "opencl.conv2d.depthwise" {
            try lowerDepthwise(a, bias: bias, residual: residual)
            return
        }
        let cg = c / g, og = o / g
        let kk = cg * a.kernelH * a.kernelW
        let p = oh * ow, np = n * p
        let schedule = gemmSchedule
        let call = GEMMCall(
            m: og, n: np, k: kk, batch: g,
            a: try input(1), lda: kk, strideA: og * kk,
            b: try input(0), strideB: cg * h * wd,
            c: output, ldc: np, strideC: og * p,
            bias: bias, biasPerRow: true, residual: residual, activation: a.activation,
            convPixels: p, imageStride: o * p)
        if variant.name == "opencl.conv2d.implicit_gemm" {
            // No column matrix: the tiled GEMM gathers B from the input through a table of the K
            // rows' offsets (one per (channel, ky, kx) of a group; the group's first channel is
            // the batch stride).
            guard a.dilationH * (a.kernelH - 1) < 1 << 15, a.dilationW * (a.kernelW - 1) < 1 << 15 else {
                throw unsupported("a dilated kernel reaching \(a.dilationH * (a.kernelH - 1)) rows")
            }
            let table = try packed("conv_rows(\(cg),\(a.kernelH),\(a.kernelW),\(a.dilationH),\(a.dilationW),\(h),\(wd))") {
                let t = Tensor(shape: [2 * kk], repeating: 0)
                for ci in 0..<cg { for ky in 0..<a.kernelH { for kx in 0..<a.kernelW {
                    let row = (ci * a.kernelH + ky) * a.kernelW + kx
                    let dy = ky * a.dilationH, dx = kx * a.dilationW
                    t.pointer[2 * row] = Float(bitPattern: UInt32(truncatingIfNeeded: (ci * h + dy) * wd + dx))
                    t.pointer[2 * row + 1] = Float(bitPattern: UInt32(truncatingIfNeeded: dy << 16 | dx))
                } } }
                return t
            }
            try gemm(call, implicitConvolution: ImplicitConvolution(
                table: table, imageFloats: c * h * wd, h: h, w: wd, ow: ow, strideH: a.strideH, strideW: a.strideW,
                padTop: a.padding.top, padLeft: a.padding.left))
            return
        }
        let ldp = roundUp(np, schedule.columnTile)
        let pointwise = variant.name == "opencl.conv2d.pointwise_gemm"
        let rows = c * a.kernelH * a.kernelW
        let bRef = scratch(rows * ldp)
        if pointwise {
            // 1x1: the operand is the input itself, regrouped channel-major; no im2col.
            try launch("conv2d", "channels_first", options: schedule.panelOptions, args: [
                .buffer(try input(0)), .int(c), .int(p), .int(n), .buffer(bRef), .int(ldp), .int(kk),
            ], global: [ldp, c])
        } else {
            try launch("conv2d", "im2col", options: schedule.panelOptions, args: [
                .buffer(try input(0)), .int(c), .int(h), .int(wd), .int(oh), .int(ow),
                .int(a.kernelH), .int(a.kernelW), .int(a.strideH), .int(a.strideW),
                .int(a.padding.top), .int(a.padding.left), .int(a.dilationH), .int(a.dilationW), .int(n),
                .buffer(bRef), .int(ldp), .int(kk),
            ], global: [ldp, rows])
        }
        var packedCall = call
        packedCall.b = bRef
        packedCall.strideB = kk * ldp
        try gemm(packedCall)
    }

    func lowerDepthwise(_ a: Conv2DAttributes, bias: BufferRef?, residual: BufferRef?) throws {
        let x = shape(0), w = shape(1), out = outputShape
        let options = activationOptions(a.activation) + [
            "-DKH=\(a.kernelH)", "-DKW=\(a.kernelW)", "-DHAS_BIAS=\(bias == nil ? 0 : 1)",
            "-DHAS_RESIDUAL=\(residual == nil ? 0 : 1)",
        ]
        try launch("depthwise", "depthwise_conv2d", options: options, args: [
            .buffer(try input(0)), .buffer(try input(1)), .buffer(try bias ?? dummy()), .buffer(try residual ?? dummy()),
            .buffer(output), .int(x[1]), .int(x[2]), .int(x[3]), .int(w[0]), .int(out[2]), .int(out[3]),
            .int(a.strideH), .int(a.strideW), .int(a.padding.top), .int(a.padding.left),
            .int(a.dilationH), .int(a.dilationW),
        ], global: [out[2] * out[3], w[0], x[0]])
    }

    func lowerConvTranspose2D(_ a: ConvTranspose2DAttributes) throws {
        let x = shape(0), out = outputShape
        let bias: BufferRef? = has(2) ? try input(2) : nil
        let options = activationOptions(a.activation) + ["-DHAS_BIAS=\(bias == nil ? 0 : 1)"]
        try launch("conv2d", "conv_transpose2d", options: options, args: [
            .buffer(try input(0)), .buffer(try input(1)), .buffer(try bias ?? dummy()), .buffer(output),
            .int(x[1]), .int(x[2]), .int(x[3]), .int(out[1]), .int(out[2]), .int(out[3]),
            .int(a.kernelH), .int(a.kernelW), .int(a.strideH), .int(a.strideW),
            .int(a.padding.top), .int(a.padding.left), .int(a.dilationH), .int(a.dilationW), .int(a.groups),
        ], global: [out[2] * out[3], out[1], x[0]])
    }
}
