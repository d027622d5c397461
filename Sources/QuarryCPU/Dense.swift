import Quarry

extension CPUKernels {
    static func makeDense(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
    static func makeMatMul(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
}
