import Quarry

extension CPUKernels {
    static func makeNorm(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
    static func makeSoftmax(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
}
