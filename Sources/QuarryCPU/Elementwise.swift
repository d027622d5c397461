import Quarry

extension CPUKernels {
    static func makeBinary(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
    static func makeReduce(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
    static func makeEmbedding(_ ctx: KernelContext) throws -> CPUKernel {
        throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not implemented on the CPU yet")
    }
}
