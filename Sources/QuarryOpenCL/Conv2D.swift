// Convolutions (Kernels/conv2d.cl, depthwise.cl): implicit GEMM through im2col for the general
// case, a 1x1 path that skips im2col (and any copy when one image fills whole column tiles),
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
                                       maxWorkGroupSize: device.maxWorkGroupSize))
        if variant.name == "opencl.conv2d.depthwise" {
            try lowerDepthwise(a, bias: bias, residual: residual)
            return
        }
        let cg = c / g, og = o / g
        let kk = cg * a.kernelH * a.kernelW
        let p = oh * ow, np = n * p
        let schedule = gemmSchedule
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
        try gemm(GEMMCall(
            m: og, n: np, k: kk, batch: g,
            a: try input(1), lda: kk, strideA: og * kk,
            b: bRef, strideB: kk * ldp,
            c: output, ldc: np, strideC: og * p,
            bias: bias, biasPerRow: true, residual: residual, activation: a.activation,
            convPixels: p, imageStride: o * p))
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
