import Quarry

extension CPUKernels {
    static func makeConv2D(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
    static func makeConvTranspose2D(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
}
